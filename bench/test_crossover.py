"""The crossover grid as a pytest-benchmark suite, for regression tracking.

The quick grid of ``gbdnn bench crossover --quick`` (1024x1024, batch 64,
FP32 and int8, dense and 80 %-zero activations), timed with pytest-benchmark
for gbdnn and the dense peer; and the small products where per-call costs
decide (one and 64 rows, 99 and 99.9 % sparsity, FP32), for gbdnn and SciPy.
Results are checked after timing. The full grid with every peer, crossover
interpolation and figures is ``gbdnn bench crossover``.
"""

import numpy as np
import pytest
from conftest import record

from gbdnn.bench import QUICK_GRID
from gbdnn.bench.crossover import TOLERANCE, Grid, _data
from gbdnn.bench.peers import implementations
from gbdnn.runner import available_cores

#: Products of well under a millisecond, where SciPy is the peer to beat.
SMALL_GRID = Grid(
    batches=(1, 64), sparsities=(0.99, 0.999), activations=(0.0,), dtypes=("float32",)
)
POINTS = [
    (*point, name, "quick")
    for point in QUICK_GRID.points()
    for name in implementations(point[4])
    if name.startswith(("gbdnn", "NumPy"))
] + [(*point, name, "small") for point in SMALL_GRID.points() for name in ("gbdnn", "SciPy CSR")]


@pytest.mark.parametrize(
    ("shape", "batch", "sparsity", "activation", "dtype", "name", "grid"),
    POINTS,
    ids=[f"{p[6]}-{p[0][0]}-b{p[1]}-{p[5]}-{p[4]}-act{p[3]}-s{p[2]}" for p in POINTS],
)
def test_point(benchmark, shape, batch, sparsity, activation, dtype, name, grid):
    w, x = _data(shape, batch, sparsity, activation, QUICK_GRID.seed)
    prepared = implementations(dtype)[name](w, x, dtype)
    out = benchmark(prepared.run)
    ref = x @ w
    err = np.linalg.norm(prepared.to_dense(out) - ref) / max(np.linalg.norm(ref), 1e-300)
    assert err <= TOLERANCE[dtype]
    group = f"crossover {shape[0]}x{shape[1]} b{batch} {dtype} act{activation}"
    if grid == "small":  # gbdnn against SciPy at each sparsity
        group = f"small products {shape[0]}x{shape[1]} b{batch} s={sparsity}"
    record(
        benchmark,
        group,
        f"{name} s={sparsity}",
        1 if name.startswith("SciPy") else available_cores(),  # gbdnn and BLAS use every core
        batch * np.count_nonzero(w),
        baseline=(name.startswith("NumPy") and sparsity == 0) or name.startswith("SciPy"),
    )
