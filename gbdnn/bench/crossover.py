"""The crossover grid: time gbdnn and its peers, find where gbdnn wins.

Every grid point is a layer ``Y = X W`` with ``W`` (in x out) at a weight
sparsity (entries zeroed uniformly at random), ``X`` (batch x in) dense or
ReLU-like (a fraction of zeros), and a value type. For every implementation
the setup (conversions, formats) is untimed; the call is warmed up once, then
repeated until ``budget`` seconds or ``max_repeats``, whichever comes first,
but for at least ``min_seconds`` (sub-millisecond calls get hundreds of
repeats, their medians are otherwise noise); the median and the
interquartile range are kept. Each implementation is timed after ``settle``
idle seconds: thread pools of the one before keep their cores busy for a
while after their last call (OpenBLAS spins ~0.1 s), which made the next one
up to 1.4x slower (gbdnn on 1024 rows through 4096x4096 at 90 %: 212 ms right
after a NumPy product, 149 ms after 0.3 s of idle). The result is checked against a float64 NumPy
reference after timing: relative error below 1e-10 (FP64), 1e-4 (FP32) or
0.1 (int8, a quantized result).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..envinfo import environment
from ..runner import available_cores
from .peers import (
    DENSE_PEERS,
    KERNEL_CHECKS,
    OURS,
    blas_name,
    conversion_seconds,
    implementations,
)

TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "int8": 0.1}
FIELDS = [
    "shape",
    "batch",
    "sparsity",
    "activation",
    "dtype",
    "implementation",
    "median_s",
    "iqr_s",
    "repeats",
    "rel_error",
    "correct",
    "weight_bytes",
    "convert_s",
    "threads",
    "cpu",
    "blas",
    "versions",
]


@dataclass(frozen=True)
class Grid:
    """The points to measure."""

    shapes: tuple[tuple[int, int], ...] = ((1024, 1024), (4096, 4096))
    batches: tuple[int, ...] = (1, 64, 1024)
    sparsities: tuple[float, ...] = (0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
    activations: tuple[float, ...] = (0.0, 0.5, 0.8)  # fraction of zeros in X
    dtypes: tuple[str, ...] = ("float32", "float64", "int8")
    budget: float = 0.5
    max_repeats: int = 10
    min_seconds: float = 0.05
    settle: float = 0.15
    seed: int = 0
    implementations: tuple[str, ...] | None = field(default=None)

    def points(self) -> list[tuple]:
        """``(shape, batch, sparsity, activation, dtype)``, the value type innermost
        so each point's data are made once for all value types."""
        return [
            (s, b, p, a, d)
            for s in self.shapes
            for b in self.batches
            for a in self.activations
            for p in self.sparsities
            for d in self.dtypes
        ]


DEFAULT_GRID = Grid()
QUICK_GRID = Grid(
    shapes=((1024, 1024),),
    batches=(64,),
    sparsities=(0, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.999),
    activations=(0.0, 0.8),
    dtypes=("float32", "int8"),
    budget=0.3,
    max_repeats=7,
)


def _data(shape, batch, sparsity, activation, seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = shape
    w = rng.normal(size=(n_in, n_out)) / math.sqrt(n_in)
    w[rng.random(w.shape) < sparsity] = 0
    x = np.abs(rng.normal(size=(batch, n_in)))
    x[rng.random(x.shape) < activation] = 0
    return w, x


def _time(run, budget: float, max_repeats: int, min_seconds: float):
    out = run()  # warm-up, not timed
    times = []
    start = time.perf_counter()
    while not times or (
        (elapsed := time.perf_counter() - start) < budget
        and (len(times) < max_repeats or elapsed < min_seconds)
    ):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return out, float(med), float(q3 - q1), len(times)


def _key(row: dict) -> tuple:
    return (
        str(row["shape"]),
        int(row["batch"]),
        float(row["sparsity"]),
        float(row["activation"]),
        row["dtype"],
        row["implementation"],
    )


def load_rows(path: str | Path) -> list[dict]:
    """Rows of a CSV written by :func:`run_grid` (numbers parsed)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k in ("batch", "repeats", "weight_bytes", "threads"):
                row[k] = int(row[k])
            for k in ("sparsity", "activation", "median_s", "iqr_s", "rel_error", "convert_s"):
                row[k] = float(row[k])
            row["correct"] = row["correct"] == "True"
            rows.append(row)
    return rows


def run_grid(
    grid: Grid, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> list[dict]:
    """Measure every point of ``grid``; write ``crossover.csv`` and ``.json`` in ``out_dir``.

    With ``resume`` the points already in ``crossover.csv`` are skipped and
    new rows are appended; without it an existing file is an error (nothing
    a user measured is overwritten unasked).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "crossover.csv"
    if csv_path.exists() and not resume:
        raise FileExistsError(f"{csv_path} exists; pass --resume to continue it, or another -o")
    rows = load_rows(csv_path) if csv_path.exists() else []
    done = {_key(r) for r in rows}
    env = environment()
    common = {
        "threads": available_cores(),
        "cpu": env["cpu"],
        "blas": blas_name(),
        "versions": json.dumps(env["versions"], sort_keys=True),
    }
    todo = []
    for shape, batch, sparsity, activation, dtype in grid.points():
        for name, prepare in implementations(dtype).items():
            if grid.implementations and name not in grid.implementations:
                continue
            point = {
                "shape": f"{shape[0]}x{shape[1]}",
                "batch": batch,
                "sparsity": sparsity,
                "activation": activation,
                "dtype": dtype,
                "implementation": name,
            }
            if _key(point) not in done:
                todo.append((shape, point, prepare))
    new_file = not csv_path.exists()
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        cache: dict = {}
        for shape, point, prepare in tqdm(
            todo, desc="crossover grid", unit="point", disable=not progress
        ):
            batch, sparsity, activation = point["batch"], point["sparsity"], point["activation"]
            dtype, name = point["dtype"], point["implementation"]
            data_key = (shape, batch, sparsity, activation)
            if data_key not in cache:  # made once for every value type and implementation
                cache.clear()
                w, x = _data(shape, batch, sparsity, activation, grid.seed)
                cache[data_key] = {"data": (w, x, x @ w)}
            w, x, ref = cache[data_key]["data"]
            if dtype not in cache[data_key]:
                cache[data_key][dtype] = conversion_seconds(x, dtype)
            convert = cache[data_key][dtype]
            run, to_dense, nbytes = prepare(w, x, dtype)
            time.sleep(grid.settle)  # the previous implementation's threads go idle
            out, median, iqr, repeats = _time(run, grid.budget, grid.max_repeats, grid.min_seconds)
            got = to_dense(out).astype(np.float64)
            err = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300))
            row = {
                **point,
                "median_s": median,
                "iqr_s": iqr,
                "repeats": repeats,
                "rel_error": err,
                "correct": err <= TOLERANCE[dtype],
                "weight_bytes": nbytes,
                "convert_s": convert if name.startswith("gbdnn") else 0.0,
                **common,
            }
            writer.writerow(row)
            f.flush()
            rows.append(row)
    tmp = out_dir / ".crossover.json.tmp"
    tmp.write_text(
        json.dumps(
            {
                "environment": env,
                "blas": blas_name(),
                "grid": asdict(grid),
                "rows": rows,
                "crossovers": crossovers(rows),
                "kernel_choice": kernel_choice(rows),
            },
            indent=1,
        )
    )
    os.replace(tmp, out_dir / "crossover.json")
    return rows


def _crossing(sparsities: list[float], mine: list[float], theirs: list[float]) -> float | None:
    """The lowest sparsity from which ``mine`` stays faster, interpolated in log time."""
    faster = [m < t for m, t in zip(mine, theirs, strict=True)]
    if not faster[-1]:
        return None
    i = len(faster) - 1
    while i > 0 and faster[i - 1]:
        i -= 1
    if i == 0:
        return sparsities[0]
    # log(mine/theirs) goes from >= 0 at i-1 to < 0 at i
    d0 = math.log(mine[i - 1] / theirs[i - 1])
    d1 = math.log(mine[i] / theirs[i])
    s0, s1 = sparsities[i - 1], sparsities[i]
    return s0 + (s1 - s0) * d0 / (d0 - d1)


def crossovers(rows: Iterable[dict], ours: str = "gbdnn") -> list[dict]:
    """Where gbdnn overtakes each peer, per (shape, batch, activation, value type).

    ``crossover`` is the interpolated weight sparsity from which gbdnn is the
    faster one, ``None`` ("never") if it is not faster at the sparsest point.
    A dense peer (:data:`~gbdnn.bench.peers.DENSE_PEERS`) does the same work at
    every sparsity, so gbdnn is compared with its median over all the
    sparsities measured (``peer_s``): one slow spell of the peer at one point
    does not move the crossover. Sparse peers are compared point by point
    (``peer_s`` is ``None``).
    """
    rows = list(rows)
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for r in rows:
        g = groups.setdefault((r["shape"], r["batch"], r["activation"], r["dtype"]), {})
        g.setdefault(r["implementation"], {})[float(r["sparsity"])] = float(r["median_s"])
    out = []
    for (shape, batch, activation, dtype), impls in groups.items():
        mine_name = next((n for n in impls if n in OURS and n.startswith(ours)), None)
        if mine_name is None:
            continue
        for peer, times in impls.items():
            if peer.startswith("gbdnn"):
                continue
            common = sorted(set(times) & set(impls[mine_name]))
            if not common:
                continue
            pooled = float(np.median(list(times.values()))) if peer in DENSE_PEERS else None
            theirs = [times[s] if pooled is None else pooled for s in common]
            cross = _crossing(common, [impls[mine_name][s] for s in common], theirs)
            out.append(
                {
                    "shape": shape,
                    "batch": batch,
                    "activation": activation,
                    "dtype": dtype,
                    "implementation": mine_name,
                    "peer": peer,
                    "crossover": cross,
                    "peer_s": pooled,
                }
            )
    return out


def kernel_choice(rows: Iterable[dict]) -> list[dict]:
    """gbdnn's automatic kernel against each kernel alone, at every point timed with both.

    ``ratio`` is the automatic choice's median time over the faster kernel's:
    1.0 means the choice was as fast as the best kernel, 1.10 that it was 10 %
    slower.
    """
    times: dict[tuple, dict[str, float]] = {}
    for r in rows:  # per value type: "gbdnn" is timed in each
        key = (
            r["shape"],
            int(r["batch"]),
            float(r["activation"]),
            float(r["sparsity"]),
            r["dtype"],
        )
        times.setdefault(key, {})[r["implementation"]] = float(r["median_s"])
    out = []
    for (shape, batch, activation, sparsity, dtype), t in sorted(times.items()):
        alone = {k: t[f"gbdnn {k} kernel"] for k in KERNEL_CHECKS if f"gbdnn {k} kernel" in t}
        if "gbdnn" not in t or len(alone) < len(KERNEL_CHECKS):
            continue
        best = min(alone, key=alone.get)
        out.append(
            {
                "shape": shape,
                "batch": batch,
                "activation": activation,
                "sparsity": sparsity,
                "dtype": dtype,
                "auto_s": t["gbdnn"],
                "best_kernel": best,
                "best_s": alone[best],
                "ratio": t["gbdnn"] / alone[best],
            }
        )
    return out
