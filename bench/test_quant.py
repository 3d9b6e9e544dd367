"""Quantized sparse inference against FP32 sparse and FP32 dense, same run.

A 3-layer ReLU network, 1024 wide, weights 90 % sparse (magnitude), 4096 input
rows (dense, non-negative): timed for

* gbdnn FP32 (sparse weights);
* gbdnn int8 and int4 (QuantizedLinear: exact integer products, kernel chosen per
  batch as for FP32: sparse, dense-activation, or BLAS on the integers);
* NumPy dense FP32 (BLAS) on the same float weights;

and, one layer each, the integer formulations considered for the exact
product: INT32 operands (chosen), FP32 operands holding the integers, and
int8 x int8 -> int32 (a mixed-type semiring, SuiteSparse's generic kernel).
Outputs are checked after timing (the first 256 rows against NumPy).
"""

import graphblas as gb
import numpy as np
import pytest
from conftest import record

import gbdnn
from gbdnn.prune import magnitude_prune
from gbdnn.quant import UniformQuantizer, quantize_model

WIDTH, ROWS, LAYERS, SPARSITY = 1024, 4096, 3, 0.9
CHECK = 256  # rows checked after timing (NumPy's int64 matmul has no BLAS)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    weights = [
        magnitude_prune(rng.normal(size=(WIDTH, WIDTH)) / 10, SPARSITY).toarray()
        for _ in range(LAYERS)
    ]
    layers = []
    for w in weights:
        layers += [gbdnn.Linear(w, -0.05 * np.ones(WIDTH)), gbdnn.ReLU()]
    model = gbdnn.Sequential(layers)
    x = np.abs(rng.normal(size=(ROWS, WIDTH))).astype(np.float32)
    return model, weights, x


def numpy_dense(x, weights):
    a = x
    for w in weights:
        a = np.maximum(a @ w - np.float32(0.05), 0)
    return a


def edges(model):
    return ROWS * model.nnz


def test_fp32_sparse(benchmark, setup):
    model, weights, x = setup
    y = benchmark(model.predict, x, threads=2)
    np.testing.assert_allclose(
        y, numpy_dense(x, [w.astype(np.float32) for w in weights]), rtol=1e-4, atol=1e-4
    )
    record(
        benchmark,
        "quantized 1024x1024x3, 90 % sparse",
        "gbdnn FP32",
        2,
        edges(model),
        baseline=True,
    )


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_sparse(benchmark, setup, bits):
    model, _, x = setup
    q = quantize_model(model, x[:512], UniformQuantizer(bits, per_channel=True))
    y = benchmark(q.predict, x, threads=2)
    ref, y = x[:CHECK].astype(np.float32), y[:CHECK]
    for layer in q:
        ref = np.maximum(ref, 0) if isinstance(layer, gbdnn.ReLU) else layer.reference(ref)
    np.testing.assert_array_equal(y, ref)
    record(
        benchmark,
        "quantized 1024x1024x3, 90 % sparse",
        f"gbdnn int{bits} (exact)",
        2,
        edges(model),
    )


def test_numpy_dense_fp32(benchmark, setup):
    model, weights, x = setup
    w32 = [w.astype(np.float32) for w in weights]
    y = benchmark(numpy_dense, x, w32)
    assert y.shape == (ROWS, WIDTH)
    record(
        benchmark, "quantized 1024x1024x3, 90 % sparse", "NumPy dense FP32 (BLAS)", 2, edges(model)
    )


@pytest.mark.parametrize(
    ("name", "operand", "result"),
    [
        ("INT32 x INT32 -> INT32 (chosen)", "INT32", "INT32"),
        ("FP32 holding integers", "FP32", "FP32"),
        ("INT8 x INT8 -> INT32 (mixed, generic)", "INT8", "INT32"),
    ],
)
def test_integer_formulations(benchmark, name, operand, result):
    rng = np.random.default_rng(1)
    w = (rng.random((WIDTH, WIDTH)) < 0.1) * rng.integers(-127, 128, size=(WIDTH, WIDTH))
    x = rng.integers(0, 256, size=(ROWS, WIDTH)) * (rng.random((ROWS, WIDTH)) < 0.5)
    if operand == "INT8":
        x = x // 2  # int8 holds 0..127
    xm = gb.Matrix.from_dense(x.astype(np.int64), missing_value=0).dup(operand)
    wm = gb.Matrix.from_dense(w.astype(np.int64), missing_value=0).dup(operand)
    semiring = gb.semiring.plus_times[result]
    z = benchmark(lambda: xm.mxm(wm, semiring).new(dtype=result, nthreads=1))
    expected = x[:CHECK].astype(np.int64) @ w.astype(np.int64)
    got = z[:CHECK, :].new().to_dense(fill_value=0).astype(np.int64)
    np.testing.assert_array_equal(got, expected)
    record(
        benchmark,
        "one exact integer product, 1 thread",
        name,
        1,
        ROWS * int((w != 0).sum()),
        baseline=name.endswith("(chosen)"),
    )
