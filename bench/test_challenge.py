"""The Graph Challenge workload: 1024 neurons x 120 layers, real images tiled.

Run with ``python -m pytest bench`` (not part of the default test run).
Timed in the same run:

* gbdnn (``Sequential.predict``) on 1 and 2 threads;
* the LAGraph recipe written literally in python-graphblas: per layer a
  ``plus_times`` product, the bias by ``min_plus`` with a diagonal matrix,
  ``select > 0`` and ``apply min 32``, each a new matrix, with SuiteSparse's
  own threading;
* a plain SciPy implementation (CSR products, bias and clip on ``.data``).

Setup (reading, conversion) is not timed; categories are checked after timing.
"""

import graphblas as gb
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import record
from graphblas import Matrix, Vector, binary, select, semiring

from gbdnn import challenge

BIAS = np.float32(-0.3)
YMAX = np.float32(32)
ROUNDS = 3


def lagraph_literal(x: Matrix, weights: list[Matrix], nthreads: int) -> Matrix:
    """LAGraph_DNN written literally: every step a new matrix."""
    n = weights[0].nrows
    bias = Vector.from_dense(np.full(n, BIAS)).diag()
    y = x
    for w in weights:
        z = y.mxm(w, semiring.plus_times).new(nthreads=nthreads)
        z = z.mxm(bias, semiring.min_plus).new(nthreads=nthreads)
        z = select.valuegt(z, 0).new(nthreads=nthreads)
        y = z.apply(binary.min, right=YMAX).new(nthreads=nthreads)
    return y


def scipy_plain(x: sp.csr_array, weights: list[sp.csr_array]) -> sp.csr_array:
    """The challenge in plain SciPy: Y = min(max(Y W + b, 0), 32), b on stored entries."""
    y = x
    for w in weights:
        y = y @ w
        y.data += BIAS
        np.clip(y.data, 0, YMAX, out=y.data)
        y.eliminate_zeros()
    return y


def edges(x, weights):
    return x.shape[0] * sum(w.nvals for w in weights)


@pytest.mark.parametrize("threads", [1, 2])
def test_gbdnn(benchmark, real_workload, threads):
    weights, x, expected = real_workload
    model = challenge.challenge_model(weights, float(BIAS))
    y = benchmark.pedantic(
        model.predict,
        args=(x,),
        kwargs={"threads": threads, "output": "graphblas"},
        rounds=ROUNDS,
        iterations=1,
        warmup_rounds=0,
    )
    np.testing.assert_array_equal(challenge.categories(y), expected)
    record(benchmark, "challenge", "gbdnn", threads, edges(x, weights), baseline=True)


def test_lagraph_literal(benchmark, real_workload):
    weights, x, expected = real_workload
    threads = gb.ss.config["nthreads"]
    y = benchmark.pedantic(lagraph_literal, args=(x, weights, threads), rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(challenge.categories(y), expected)
    record(benchmark, "challenge", "LAGraph recipe (literal)", threads, edges(x, weights))


def test_scipy(benchmark, real_workload):
    weights, x, expected = real_workload
    xs = gb.io.to_scipy_sparse(x, format="csr")
    ws = [gb.io.to_scipy_sparse(w, format="csr") for w in weights]
    y = benchmark.pedantic(scipy_plain, args=(xs, ws), rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(y.indptr)), expected)
    record(benchmark, "challenge", "SciPy", 1, edges(x, weights))
