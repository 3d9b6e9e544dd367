"""Shared fixtures of the benchmarks, and a summary table with ratios.

Each benchmark records ``edges_per_second`` (from its median time) and its
implementation name in ``benchmark.extra_info``; at the end of the session a
table compares every implementation with gbdnn in the same run, and the
machine, thread count and library versions are printed and stored with
pytest-benchmark's JSON (``--benchmark-json``).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gbdnn import challenge
from gbdnn.envinfo import environment
from gbdnn.io import read_categories, read_images, read_layers

DATA = Path(
    os.environ.get(
        "GBDNN_CHALLENGE_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "graphchallenge",
    )
)
TILE = int(os.environ.get("GBDNN_BENCH_TILE", "50"))
RESULTS: list[dict] = []


@pytest.fixture(scope="session")
def real_workload():
    """120 real layers, the 1200 images tiled ``TILE`` times, and the tiled truth."""
    if not (DATA / "neuron1024").is_dir():
        pytest.skip(f"Graph Challenge data not found at {DATA}")
    weights = read_layers(DATA, 1024, 120)
    images = read_images(DATA / "sparse-images-1024-first1200.tsv.gz", 1024)
    truth = read_categories(DATA / "neuron1024-l120-categories.tsv")
    truth = truth[truth < images.nrows]
    x = challenge.tile_rows(images, TILE)
    expected = np.concatenate([truth + k * images.nrows for k in range(TILE)])
    return weights, x, expected


def record(benchmark, group, name, threads, edges, *, baseline=False):
    """Store the median of a finished benchmark for the summary.

    Within a ``group`` every row is compared with the ``baseline`` row (the
    one with the most threads when several are).
    """
    if benchmark.stats is None:  # --benchmark-disable: each call ran once, unmeasured
        return
    median = benchmark.stats.stats.median
    info = {
        "group": group,
        "implementation": name,
        "threads": threads,
        "median_s": median,
        "edges_per_second": edges / median,
        "baseline": baseline,
    }
    benchmark.extra_info.update(info)
    RESULTS.append(info)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["gbdnn_environment"] = environment()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("gbdnn benchmark summary (medians, same run)")
    tr.write_line(json.dumps(environment()))
    for group in dict.fromkeys(r["group"] for r in RESULTS):
        rows = [r for r in RESULTS if r["group"] == group]
        base = max((r for r in rows if r["baseline"]), key=lambda r: r["threads"], default=None)
        tr.write_line(
            f"\n[{group}]  ratio = time / time of {base['implementation'] if base else '-'}"
            f" ({base['threads'] if base else '-'} threads)"
        )
        tr.write_line(
            f"{'implementation':<34}{'threads':>8}{'median s':>11}{'edges/s':>12}{'ratio':>8}"
        )
        for r in rows:
            ratio = f"{r['median_s'] / base['median_s']:.2f}" if base else "-"
            tr.write_line(
                f"{r['implementation']:<34}{r['threads']:>8}{r['median_s']:>11.4g}"
                f"{r['edges_per_second']:>12.3g}{ratio:>8}"
            )
        ones = [r for r in rows if r["baseline"] and r["threads"] == 1]
        if base and ones and base["threads"] > 1:
            tr.write_line(
                f"{base['implementation']} 1 -> {base['threads']} threads: "
                f"{ones[0]['median_s'] / base['median_s']:.2f}x"
            )
