"""Which kernel gbdnn's automatic choice took at each FP32 point of a crossover grid.

The grid times the automatic choice and the sparse, dense and BLAS kernels
alone as separate implementations (in turn, round by round); when the choice
picked one of them, the two timings of the same kernel still differ by the
machine's noise, which a comparison of the two judges as much as the choice.
A grid of this gbdnn records the kernel its layer ran (the ``kernel`` column;
``kernel_choice``'s ``pick_ratio``); this script tells the same of a grid of an
older gbdnn, or what this machine's costs pick at another machine's grid points.
It replays each point (same data, same seed, this machine's costs)
and records the kernel that computed every batch of the timed calls (after
two warm-up calls, as in the grid, which make the layer's trials of kernels
the cost model finds close: ``tuning.trial``; a replay's trial is timed
afresh, so it may pick otherwise than the grid's did), then judges a sparse, dense or
BLAS pick by the kernels' own times from the grid (sparse and dense only in a
grid of an older gbdnn, which timed no BLAS kernel alone). Dot picks (a kernel
the grid does not time alone) are reported by the direct timing; a pick shared
with the helper thread (``tuning.splits``, ``tuning.dense_splits``) as "dot,
shared" or "dense, shared", a dense one judged by the dense kernel's time (the
grid's "gbdnn dense kernel" shares as the automatic choice does).

    python bench/kernel_picks.py bench/results/default/crossover.csv
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from unittest import mock

from gbdnn import kernels
from gbdnn.bench import DEFAULT_GRID, load_rows
from gbdnn.bench.crossover import _data
from gbdnn.bench.peers import KERNEL_CHECKS, gbdnn_float
from gbdnn.layers import Product


def _picked(run) -> Counter:
    """The kernels that compute the products while ``run`` runs, one count each.

    ``run`` runs twice first, as the grid's warm-up does for calls shorter than a
    slice: a layer's choice for sparse activations uses what its earlier sparse
    products made (``tuning``, ``spread``), so its trial of close kernels may come
    with the second call.
    """
    run()
    run()
    compute, kinds = Product._compute, Counter()
    dense, dot_halves = kernels.plus_times_dense, kernels.plus_times_dot_halves

    def spy(self, kind, *args, **kwargs):
        kinds[kind] += 1
        return compute(self, kind, *args, **kwargs)

    def shared(kind, kernel):  # a pick shared with the helper thread (a core to spare)
        def call(*args, **kwargs):
            kinds[kind] -= 1
            kinds[f"{kind}, shared"] += 1
            return kernel(*args, **kwargs)

        return call

    def spy_dense(x, wt):
        return (shared("dense", dense) if isinstance(wt, tuple) else dense)(x, wt)

    with (
        mock.patch.object(Product, "_compute", spy),
        mock.patch.object(kernels, "plus_times_dense", spy_dense),
        mock.patch.object(kernels, "plus_times_dot_halves", shared("dot", dot_halves)),
    ):
        run()
    return +kinds  # (no zero counts)


def picks(csv_path: str) -> list[dict]:
    """One dict per FP32 point: the kernels picked and the times to judge them by."""
    times: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in load_rows(csv_path):
        if r["dtype"] == "float32":
            key = (r["shape"], r["batch"], r["activation"], r["sparsity"])
            times[key][r["implementation"]] = r["median_s"]
    out = []
    for (shape, batch, activation, sparsity), t in sorted(times.items()):
        n_in, n_out = (int(v) for v in shape.split("x"))
        w, x = _data((n_in, n_out), batch, sparsity, activation, DEFAULT_GRID.seed)
        kinds = _picked(gbdnn_float(w, x, "float32").run)
        alone = {k: t[f"gbdnn {k} kernel"] for k in KERNEL_CHECKS if f"gbdnn {k} kernel" in t}
        best = min(alone, key=alone.get)
        (kind,) = kinds if len(kinds) == 1 else ("",)
        judged = alone.get(kind.removesuffix(", shared"))
        out.append(
            {
                "point": (shape, batch, activation, sparsity),
                "picked": dict(kinds),
                "faster": best,
                "ratio": (judged if judged is not None else t["gbdnn"]) / alone[best],
                "by": "own times" if judged is not None else "direct timing",
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="crossover.csv of a grid run")
    parser.add_argument("--limit", type=float, default=1.10, help="report points over this ratio")
    args = parser.parse_args()
    try:
        rows = picks(args.csv)
    except (OSError, KeyError, ValueError) as e:  # missing, unreadable or not a grid CSV
        parser.error(f"cannot read a crossover grid from {args.csv}: {e}")
    if not rows:
        parser.error(f"{args.csv} holds no FP32 grid point")
    by_kind = Counter(next(iter(r["picked"])) if len(r["picked"]) == 1 else "mixed" for r in rows)
    own = [r for r in rows if r["by"] == "own times"]
    print(f"{len(rows)} FP32 points; picks: {dict(by_kind)}")
    print(
        f"picks judged by the kernels' own times: {len(own)}, "
        f"{sum(r['ratio'] <= args.limit for r in own)} within {args.limit:.2f}x of the faster"
    )
    print("| shape | batch | input zeros | weight sparsity | picked | / faster kernel | by |")
    print("| --- | ---: | ---: | ---: | --- | ---: | --- |")
    for r in rows:
        if r["ratio"] > args.limit:
            shape, batch, act, sp = r["point"]
            picked = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in r["picked"].items())
            print(
                f"| {shape} | {batch} | {100 * act:.0f} % | {100 * sp:g} % | {picked} "
                f"| {r['ratio']:.2f} ({r['faster']}) | {r['by']} |"
            )


if __name__ == "__main__":
    main()
