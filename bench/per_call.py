"""Per-call cost of one product: one row (``--rows`` rows) through a square layer.

Times gbdnn's ``predict`` (GraphBLAS input and output, as the crossover grid
does; the same with ``threads=1``, which keeps every call on the calling
thread, no helper thread sharing the dot or dense kernel's products; and NumPy
input and output, as most callers use it), the same product as one
python-graphblas expression, SciPy CSR and NumPy's dense BLAS (NumPy in and
out), in one run; medians of ``--calls`` calls after a warm-up. Only public
API, so the same script measures older commits too. ``--idle MS`` sleeps that
long before every timed call, as a service answering single requests runs:
every call then starts with cold caches and idle cores.

    python bench/per_call.py
    python bench/per_call.py --width 4096 --sparsity 0.99 --idle 20 --calls 200
    python bench/per_call.py --width 4096 --sparsity 0.9 --rows 64 --calls 200
    python bench/per_call.py --width 1024 --sparsity 0 --rows 1024 --dtype float64 --calls 50
"""

from __future__ import annotations

import argparse
import time

import graphblas as gb
import numpy as np
import scipy.sparse as sp

import gbdnn
from gbdnn.envinfo import environment


def median_us(call, calls: int, idle: float = 0.0) -> float:
    call()  # warm-up
    times = []
    for _ in range(calls):
        if idle:
            time.sleep(idle)
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per implementation")
    parser.add_argument("--width", type=int, default=1024, help="layer width")
    parser.add_argument("--sparsity", type=float, default=0.999, help="weight sparsity")
    parser.add_argument("--rows", type=int, default=1, help="rows of the input")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--idle", type=float, default=0.0, help="milliseconds of sleep before every timed call"
    )
    args = parser.parse_args()
    if min(args.calls, args.width, args.rows) < 1 or not 0 <= args.sparsity < 1:
        parser.error("--calls, --width and --rows must be positive, --sparsity in [0, 1)")
    if not 0 <= args.idle < float("inf"):
        parser.error("--idle must be a finite number of milliseconds, not negative")
    idle = args.idle / 1e3
    rng = np.random.default_rng(0)
    n = args.width
    w = (rng.standard_normal((n, n)) * (rng.random((n, n)) >= args.sparsity)).astype(args.dtype)
    x = rng.standard_normal((args.rows, n)).astype(args.dtype)
    model = gbdnn.Sequential([gbdnn.Linear(w, dtype=args.dtype)])
    xm, wm = gb.Matrix.from_dense(x), gb.Matrix.from_dense(w, missing_value=0)
    ws = sp.csr_array(w)
    rows = {
        "gbdnn predict": median_us(lambda: model.predict(xm, output="graphblas"), args.calls, idle),
        "gbdnn predict, threads=1": median_us(
            lambda: model.predict(xm, output="graphblas", threads=1), args.calls, idle
        ),
        "gbdnn predict, NumPy in and out": median_us(lambda: model.predict(x), args.calls, idle),
        "python-graphblas x.mxm(w).new()": median_us(
            lambda: xm.mxm(wm, gb.semiring.plus_times).new(), args.calls, idle
        ),
        "SciPy CSR": median_us(lambda: x @ ws, args.calls, idle),
        "NumPy dense": median_us(lambda: x @ w, args.calls, idle),
    }
    print(environment())
    after = f", each after {args.idle:g} ms idle" if idle else ""
    print(
        f"{args.rows} x {n} through {n} x {n}, {args.dtype}, {100 * args.sparsity:g} % sparse, "
        f"medians of {args.calls} calls" + after
    )
    for name, us in rows.items():
        print(f"{name:<34}{us:>9.1f} us")


if __name__ == "__main__":
    main()
