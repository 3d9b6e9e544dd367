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

The same network also answers single requests: ``LATENCY_IMAGES`` images sent one
call each (``test_*_one_image``), gbdnn against SciPy, each image's category
checked against the truth after timing.
"""

import graphblas as gb
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import record
from graphblas import Matrix, Vector, binary, select, semiring

from gbdnn import challenge
from gbdnn.runner import available_cores

BIAS = np.float32(-0.3)
YMAX = np.float32(32)
ROUNDS = 3
LATENCY_IMAGES = 200


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


@pytest.fixture(scope="module")
def one_at_a_time(real_workload):
    """The first ``LATENCY_IMAGES`` images, one 1-row matrix each, and their truth."""
    weights, x, expected = real_workload
    images = [x[i : i + 1, :].new() for i in range(LATENCY_IMAGES)]
    return weights, images, expected[expected < LATENCY_IMAGES]


def categories_of(outputs, count_nonzero) -> np.ndarray:
    """The images whose single-row output has any entry that is not zero."""
    return np.array([i for i, y in enumerate(outputs) if count_nonzero(y)], dtype=np.int64)


def test_gbdnn_one_image(benchmark, one_at_a_time):
    weights, images, expected = one_at_a_time
    model = challenge.challenge_model(weights, float(BIAS))
    ys = benchmark.pedantic(
        lambda: [model.predict(x, output="graphblas") for x in images], rounds=ROUNDS, iterations=1
    )
    got = categories_of(ys, lambda y: select.valuene(y, 0).new().nvals)
    np.testing.assert_array_equal(got, expected)
    total = edges(images[0], weights) * len(images)
    record(benchmark, "one image a call", "gbdnn", available_cores(), total, baseline=True)


def test_scipy_one_image(benchmark, one_at_a_time):
    weights, images, expected = one_at_a_time
    xs = [gb.io.to_scipy_sparse(x, format="csr") for x in images]
    ws = [gb.io.to_scipy_sparse(w, format="csr") for w in weights]
    ys = benchmark.pedantic(lambda: [scipy_plain(x, ws) for x in xs], rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(categories_of(ys, lambda y: y.count_nonzero()), expected)
    record(benchmark, "one image a call", "SciPy", 1, edges(images[0], weights) * len(images))
