"""gbdnn.quant: quantizers, codebooks, packing, exact integer inference."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

import gbdnn
from gbdnn.quant import (
    ActivationQuantizer,
    CodebookQuantizer,
    QuantizedLinear,
    UniformQuantizer,
    codebook_model,
    lloyd_max,
    pack_int4,
    quantize_model,
    round_half_away,
    unpack_int4,
)


@pytest.fixture
def w():
    rng = np.random.default_rng(0)
    w = rng.standard_t(4, size=(64, 16))
    w[rng.random(w.shape) < 0.5] = 0  # pruned
    return w


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_symmetric_max_quantizer(w, bits, per_channel):
    q = UniformQuantizer(bits, per_channel=per_channel).fit(w)
    qmax = 2 ** (bits - 1) - 1
    assert (q.qmin_, q.qmax_) == (-qmax, qmax)
    ints = q.quantize(w)
    assert ints.min() >= -qmax and ints.max() <= qmax
    assert (ints[w == 0] == 0).all()  # zero stays zero
    expected = np.abs(w).max(axis=0) / qmax if per_channel else [np.abs(w).max() / qmax]
    np.testing.assert_allclose(q.scale_, expected, rtol=1e-6)
    # nothing is clipped with "max": the error is at most half a step
    err = np.abs(q.dequantize(ints) - w)
    assert (err <= q.scale_ / 2 * (1 + 1e-5) + 1e-7).all()


def test_asymmetric_quantizer_represents_zero_exactly(w):
    q = UniformQuantizer(4, symmetric=False, per_channel=True).fit(w + 0.3 * (w != 0))
    ints = q.quantize(w)
    assert (q.qmin_, q.qmax_) == (0, 15) and ints.min() >= 0 and ints.max() <= 15
    np.testing.assert_array_equal(q.dequantize(ints)[w == 0], 0)
    assert (q.centered(w)[w == 0] == 0).all()


@pytest.mark.parametrize("clip", ["percentile", "mse", "sawb"])
def test_clipping_shrinks_the_threshold_and_mse_wins(w, clip):
    full = UniformQuantizer(4, per_channel=True).fit(w)
    clipped = UniformQuantizer(4, per_channel=True, clip=clip).fit(w)
    assert (clipped.scale_ <= full.scale_ * (1 + 1e-6)).all()
    mse = UniformQuantizer(4, per_channel=True, clip="mse").fit(w)

    def err(q):
        return np.mean((q.dequantize(q.quantize(w)) - w)[w != 0] ** 2)

    assert err(mse) <= err(full) and err(mse) <= err(clipped) * (1 + 1e-9)


def test_all_zero_channel_gets_a_safe_scale():
    w = np.zeros((8, 3))
    w[:, 0] = np.linspace(-1, 1, 8)
    for sym in (True, False):
        q = UniformQuantizer(8, symmetric=sym, per_channel=True).fit(w)
        assert (q.scale_ > 0).all() and np.isfinite(q.scale_).all()
        np.testing.assert_array_equal(q.dequantize(q.quantize(w))[:, 1:], 0)
    assert (UniformQuantizer(8).fit(np.zeros((4, 4))).scale_ == 1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bits": 1}, "bits must be an integer from 2 to 8"),
        ({"bits": 9}, "bits must be an integer from 2 to 8"),
        ({"bits": 4.0}, "bits must be an integer from 2 to 8"),
        ({"bits": 4, "clip": "kl"}, "clip must be one of"),
        ({"bits": 4, "clip": "percentile", "percentile": 0}, "percentile must be in"),
    ],
)
def test_bad_quantizer_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniformQuantizer(**kwargs)


def test_bad_quantizer_input(w):
    bad = w.copy()
    bad[0, 0] = np.nan
    with pytest.raises(gbdnn.NonFiniteError, match="weight contains NaN or Inf"):
        UniformQuantizer(8).fit(bad)
    with pytest.raises(gbdnn.ShapeError, match="two-dimensional"):
        UniformQuantizer(8).fit(np.ones(3))
    with pytest.raises(RuntimeError, match="call fit before quantize"):
        UniformQuantizer(8).quantize(w)
    with pytest.raises(gbdnn.ShapeError, match="weight has 3 channels, fitted 16"):
        UniformQuantizer(8, per_channel=True).fit(w).quantize(w[:, :3])
    with pytest.raises(ValueError, match="method must be one of"):
        ActivationQuantizer(8, method="kl")
    with pytest.raises(gbdnn.ShapeError, match="calibration data is empty"):
        ActivationQuantizer(8).fit(np.zeros((0, 4)))


def test_activation_ranges():
    relu_out = np.abs(np.random.default_rng(1).normal(size=(100, 8)))
    a = ActivationQuantizer(4).fit(relu_out)
    assert not a.signed_ and (a.qmin_, a.qmax_) == (0, 15)
    assert a.scale_ == np.float32(relu_out.max() / 15)
    s = ActivationQuantizer(8, method="percentile", percentile=99).fit(relu_out - 1)
    assert s.signed_ and (s.qmin_, s.qmax_) == (-127, 127)
    assert s.scale_ < np.abs(relu_out - 1).max() / 127


def test_lloyd_max_is_a_fixed_point():
    values = np.random.default_rng(2).laplace(size=5000)
    c = lloyd_max(values, 8)
    assert np.all(np.diff(c) > 0)
    labels = np.argmin(np.abs(values[:, None] - c[None, :]), axis=1)
    for k in range(8):  # each centroid is the mean of the values nearest to it
        np.testing.assert_allclose(c[k], values[labels == k].mean(), rtol=1e-9)
    np.testing.assert_array_equal(lloyd_max(np.array([1.0, 1.0, 2.0]), 4), [1, 2, 2, 2])


@pytest.mark.parametrize("per_channel", [False, True])
def test_codebook_keeps_zeros_and_uses_the_table(w, per_channel):
    cq = CodebookQuantizer(3, per_channel=per_channel).fit(w)
    assert cq.tables_.shape == ((16 if per_channel else 1), 8)
    out = cq.quantize(w)
    np.testing.assert_array_equal(out == 0, w == 0)
    for j in range(w.shape[1]):
        table = cq.tables_[j if per_channel else 0]
        assert np.isin(out[w[:, j] != 0, j], table).all()
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 8"):
        CodebookQuantizer(10)


def test_int4_packing():
    signed = np.random.default_rng(3).integers(-8, 8, size=33)
    packed = pack_int4(signed)
    assert packed.dtype == np.uint8 and packed.size == 17
    np.testing.assert_array_equal(unpack_int4(packed, 33, signed=True), signed)
    unsigned = np.arange(16)
    np.testing.assert_array_equal(unpack_int4(pack_int4(unsigned), 16, signed=False), unsigned)
    with pytest.raises(ValueError, match=r"values in \[-8, 15\]"):
        pack_int4(np.array([16]))
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_int4(packed, 40, signed=True)


def test_round_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, 2.4999998], dtype=np.float32)
    np.testing.assert_array_equal(round_half_away(x), [1, 2, 3, -1, -2, 0, 2])


def reference(model, x):
    """The quantized model in NumPy, integer sums in int64."""
    a = np.asarray(x, dtype=np.float32)
    for layer in model:
        if isinstance(layer, gbdnn.ReLU):
            a = np.maximum(a, 0)
            if layer.max_value is not None:
                a = np.minimum(a, np.float32(layer.max_value))
        else:
            a = layer.reference(a)
    return a


def random_model(rng, bias_sign):
    sizes = (40, 64, 32, 10)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        w = rng.normal(size=(a, b)) * (rng.random((a, b)) < 0.3)
        bias = {
            "none": None,
            "neg": -rng.uniform(0, 1, b),
            "pos": rng.uniform(0, 1, b),
            "mixed": rng.normal(size=b),
        }[bias_sign]
        layers.append(gbdnn.Linear(w, bias))
        if i < 2:
            layers.append(gbdnn.ReLU())
    return gbdnn.Sequential(layers)


@pytest.mark.parametrize("bias_sign", ["none", "neg", "pos", "mixed"])
@pytest.mark.parametrize(
    "quantizer",
    [
        UniformQuantizer(8),
        UniformQuantizer(4, per_channel=True, clip="mse"),
        UniformQuantizer(3, symmetric=False, per_channel=True),
    ],
    ids=["int8", "int4-pc-mse", "int3-asym"],
)
def test_integer_inference_is_bit_identical_to_int64_reference(bias_sign, quantizer, monkeypatch):
    rng = np.random.default_rng(4)
    model = random_model(rng, bias_sign)
    x = rng.normal(size=(300, 40))
    q = quantize_model(model, x, quantizer, activations=ActivationQuantizer(8))
    assert all(layer.acc_type == "INT32" for layer in q if isinstance(layer, QuantizedLinear))
    y = q(x, threads=1)
    np.testing.assert_array_equal(y, reference(q, x))
    for batch_size, threads in [(7, 2), (None, 2)]:
        np.testing.assert_array_equal(q(x, batch_size=batch_size, threads=threads), y)
    # sparse and small activations are quantized and rescaled by SuiteSparse, larger
    # full ones in NumPy (elementwise.on_values): the same bits either way
    paths = []
    # the SuiteSparse path, the NumPy path
    for module, name in ((gbdnn.elementwise, "apply_unary"), (gbdnn.kernels, "take_positions")):
        real = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, real=real, name=name: paths.append(name) or real(*a)
        )
    sparse_x = sp.csr_array(np.where(rng.random(x.shape) < 0.8, 0, x))
    np.testing.assert_array_equal(q(sparse_x).toarray(), reference(q, sparse_x.toarray()))
    assert "apply_unary" in paths
    for numpy_min, way, other in (
        (0, "take_positions", None),
        (x.size, "apply_unary", "take_positions"),
    ):
        monkeypatch.setattr(gbdnn.elementwise, "NUMPY_MIN_POSITIONS", numpy_min)
        paths.clear()
        np.testing.assert_array_equal(q(x[:50], threads=1), y[:50])
        assert way in paths and other not in paths
    # each layer computes s_x s_w (X_q W_c) + b: a float64 "fake-quant" of the same
    # integers agrees up to float32 rounding
    a = x.astype(np.float32)
    for layer in q:
        if isinstance(layer, gbdnn.ReLU):
            a = np.maximum(a, 0)
            continue
        lo, hi = layer.input_range
        xq = np.clip(round_half_away(a / layer.input_scale), lo, hi).astype(np.float64)
        wc = layer.weight_int.to_dense(fill_value=0).astype(np.float64)
        fake = (xq * float(layer.input_scale)) @ (wc * layer.weight_scale.astype(np.float64))
        fake = fake + (0 if layer.bias is None else layer.bias)
        out = layer.reference(a)
        np.testing.assert_allclose(out, fake, rtol=1e-5, atol=1e-5 * np.abs(fake).max())
        a = out
    # and the quantized model approximates the float one, within the weight step
    f = model(x)
    assert np.linalg.norm(y - f) / np.linalg.norm(f) < 2.0 ** (2 - quantizer.bits) + 0.05


@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_every_kernel_of_an_integer_layer_is_exact(path):
    # the dense and dot kernels multiply the integers as FP32 numbers (exact: every
    # partial sum is below 2^24), BLAS too; the sparse kernel in INT32
    rng = np.random.default_rng(8)
    x = rng.normal(size=(37, 40))
    q = quantize_model(
        random_model(rng, "mixed"),
        x,
        UniformQuantizer(8, per_channel=True),
        activations=ActivationQuantizer(8),
    )
    layers = [layer for layer in q if isinstance(layer, QuantizedLinear)]
    for layer in layers:
        assert layer.acc_bound < 2**24
        layer.path = path
    for rows in (x, x[:3], sp.csr_array(np.where(x > 0.5, x, 0))):
        got = q(rows, threads=1)
        dense = rows.toarray() if sp.issparse(rows) else rows
        np.testing.assert_array_equal(
            got.toarray() if sp.issparse(got) else got, reference(q, dense)
        )
    if path in ("dense", "dot"):
        assert {layer._weight_t().dtype.name for layer in layers} == {"FP32"}
        assert {layer.weight_int.dtype.name for layer in layers} == {"INT32"}


def test_int64_accumulator_when_int32_could_overflow():
    n = 70000  # 255 * 127 * 70000 > 2^31
    weight = sp.csr_array(np.full((n, 1), 127, dtype=np.int64))
    layer = QuantizedLinear(weight, [1.0], 1.0, (0, 255))
    assert layer.acc_bound == 255 * 127 * n and layer.acc_type == "INT64"
    x = np.full((2, n), 255.0)
    y = gbdnn.Sequential([layer])(x)
    assert y[0, 0] == np.float32(255 * 127 * n)  # not wrapped around
    np.testing.assert_array_equal(y, layer.reference(x))
    small = QuantizedLinear(weight[:1000], [1.0], 1.0, (0, 255))
    assert small.acc_type == "INT32"


def test_quantized_layer_checks_its_input():
    with pytest.raises(TypeError, match="must hold integers"):
        QuantizedLinear(np.ones((2, 2)), [1.0], 1.0, (0, 255))
    with pytest.raises(ValueError, match="weight_scale must be finite and positive"):
        QuantizedLinear(np.ones((2, 2), dtype=int), [0.0], 1.0, (0, 255))
    with pytest.raises(gbdnn.ShapeError, match="weight_scale must have 1 or 2 entries"):
        QuantizedLinear(np.ones((2, 2), dtype=int), [1.0, 1.0, 1.0], 1.0, (0, 255))
    with pytest.raises(ValueError, match="input_scale must be finite and positive"):
        QuantizedLinear(np.ones((2, 2), dtype=int), [1.0], float("nan"), (0, 255))
    model = random_model(np.random.default_rng(0), "none")
    with pytest.raises(gbdnn.ShapeError, match=r"calibration data must have shape \(n, 40\)"):
        quantize_model(model, np.ones((5, 3)))
    with pytest.raises(gbdnn.GbdnnError, match="NaN or Inf"):
        quantize_model(model, np.full((5, 40), np.inf))


@pytest.mark.parametrize(
    "make",
    [
        lambda m, x: quantize_model(m, x, UniformQuantizer(4, per_channel=True)),
        lambda m, x: quantize_model(m, x, UniformQuantizer(4, symmetric=False)),
        lambda m, x: quantize_model(m, x, UniformQuantizer(8, per_channel=True)),
        lambda m, x: codebook_model(m, CodebookQuantizer(3, per_channel=True)),
    ],
    ids=["int4-sym", "int4-asym", "int8", "codebook3"],
)
def test_quantized_model_files_round_trip(tmp_path, make):
    rng = np.random.default_rng(5)
    model = random_model(rng, "mixed")
    x = rng.normal(size=(50, 40))
    q = make(model, x)
    back = gbdnn.load(gbdnn.save(q, tmp_path / "q.npz"))
    assert [type(a) for a in back] == [type(b) for b in q]
    np.testing.assert_array_equal(back(x), q(x))


def test_int4_is_packed_on_disk(tmp_path):
    w = np.random.default_rng(6).normal(size=(256, 256))
    q = quantize_model(gbdnn.Sequential([gbdnn.Linear(w)]), np.ones((4, 256)), UniformQuantizer(4))
    path = gbdnn.save(q, tmp_path / "q.npz")
    with np.load(path, allow_pickle=False) as store:
        assert store["layer0.q"].dtype == np.uint8
        assert store["layer0.q"].size == (q.nnz + 1) // 2
        store_bytes = sum(store[k].nbytes for k in store.files)
    # values at half a byte, column indices at one byte: far below FP32 + int64 indices
    assert store_bytes < q.nnz * 1.6 + 4096
