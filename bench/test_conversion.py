"""Conversion cost against compute: NumPy / SciPy in and out of GraphBLAS.

One 1024 x 1024 challenge layer on 60000 MNIST-like rows (10 % nonzero), with
the conversions timed apart from the product they feed.
"""

import graphblas as gb
import numpy as np
import pytest

from gbdnn import challenge, kernels
from gbdnn.convert import to_matrix
from gbdnn.dtypes import value_type

FP32 = value_type("float32")
ROWS = 60000


@pytest.fixture(scope="module")
def data():
    x = challenge.sparse_inputs(ROWS, 1024, seed=0)
    w = challenge.radixnet(1024, 1)[0]
    return x, gb.io.to_scipy_sparse(x, format="csr"), x.to_dense(fill_value=0), w


def test_numpy_to_graphblas(benchmark, data):
    _, _, dense, _ = data
    m = benchmark(to_matrix, dense, FP32, "X")
    assert m.nvals == np.count_nonzero(dense)


def test_scipy_to_graphblas(benchmark, data):
    _, csr, _, _ = data
    m = benchmark(to_matrix, csr, FP32, "X")
    assert m.nvals == csr.nnz


def test_graphblas_to_numpy(benchmark, data):
    x, _, dense, _ = data
    out = np.empty_like(dense)
    benchmark(kernels.dense_into, x, out)
    np.testing.assert_array_equal(out, dense)


def test_compute_one_layer(benchmark, data):
    x, csr, _, w = data
    z = benchmark(kernels.plus_times, x, w)
    ref = csr @ gb.io.to_scipy_sparse(w, format="csr")
    np.testing.assert_allclose(z.to_dense(fill_value=0), ref.toarray(), rtol=1e-6)
