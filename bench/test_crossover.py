"""The crossover grid as a pytest-benchmark suite, for regression tracking.

The quick grid of ``gbdnn bench crossover --quick`` (1024x1024, batch 64,
FP32 and int8, dense and 80 %-zero activations), timed with pytest-benchmark
for gbdnn and the dense peer; results are checked after timing. The full grid
with every peer, crossover interpolation and figures is ``gbdnn bench
crossover``.
"""

import numpy as np
import pytest
from conftest import record

from gbdnn.bench import QUICK_GRID
from gbdnn.bench.crossover import TOLERANCE, _data
from gbdnn.bench.peers import implementations

POINTS = [
    (s, b, p, a, d, name)
    for s, b, p, a, d in QUICK_GRID.points()
    for name in implementations(d)
    if name.startswith(("gbdnn", "NumPy"))
]


@pytest.mark.parametrize(
    ("shape", "batch", "sparsity", "activation", "dtype", "name"),
    POINTS,
    ids=[f"{p[5]}-{p[4]}-act{p[3]}-s{p[2]}" for p in POINTS],
)
def test_point(benchmark, shape, batch, sparsity, activation, dtype, name):
    w, x = _data(shape, batch, sparsity, activation, QUICK_GRID.seed)
    run, to_dense, _ = implementations(dtype)[name](w, x, dtype)
    out = benchmark(run)
    ref = x @ w
    err = np.linalg.norm(to_dense(out) - ref) / max(np.linalg.norm(ref), 1e-300)
    assert err <= TOLERANCE[dtype]
    record(
        benchmark,
        f"crossover {shape[0]}x{shape[1]} b{batch} {dtype} act{activation}",
        f"{name} s={sparsity}",
        1,
        batch * np.count_nonzero(w),
        baseline=name.startswith("NumPy") and sparsity == 0,
    )
