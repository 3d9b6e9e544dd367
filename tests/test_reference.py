"""gbdnn against an independent NumPy reference on random models."""

import dataclasses
import functools
import itertools
import json
import warnings

import graphblas as gb
import numpy as np
import pytest
import scipy.sparse as sp
from fp_bounds import FP32, FP64, bound
from graphblas import Matrix

import gbdnn
from gbdnn import elementwise

SIZES = (20, 30, 25, 10)
TOL = {"float32": {"rtol": 2e-5, "atol": 2e-5}, "float64": {"rtol": 1e-12, "atol": 1e-12}}


def random_weights(rng, n_in, n_out, density=0.3):
    w = rng.normal(size=(n_in, n_out)) * (rng.random((n_in, n_out)) < density)
    return w


def random_bias(rng, n, kind):
    return {
        "none": None,
        "negative": -rng.uniform(0.01, 1.0, n),
        "positive": rng.uniform(0.01, 1.0, n),
        "mixed": rng.normal(size=n),
        "uniform": np.full(n, -0.25),
    }[kind]


def as_kind(w, kind):
    if kind == "numpy":
        return w
    if kind == "scipy":
        return sp.csr_matrix(w)
    return gb.Matrix.from_dense(w, missing_value=0)


def reference(x, weights, biases, clip=None):
    """Y = relu(X W_1 + b_1) ... then a last Linear without ReLU, in float64 NumPy."""
    y = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        y = y @ w + (0 if b is None else b)
        if i < len(weights) - 1:
            y = np.maximum(y, 0)
            if clip is not None:
                y = np.minimum(y, clip)
    return y


def build(rng, weight_kind, bias_kind, dtype, clip=None, path="auto"):
    weights = [random_weights(rng, a, b) for a, b in itertools.pairwise(SIZES)]
    biases = [random_bias(rng, w.shape[1], bias_kind) for w in weights]
    layers = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        layers.append(gbdnn.Linear(as_kind(w, weight_kind), b, dtype=dtype, path=path))
        if i < len(weights) - 1:
            layers.append(gbdnn.ReLU(max_value=clip))
    # the reference sees exactly the weights gbdnn stores
    cast = [w.astype(dtype).astype(np.float64) for w in weights]
    casted_b = [None if b is None else b.astype(dtype).astype(np.float64) for b in biases]
    return gbdnn.Sequential(layers), cast, casted_b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias_kind", ["none", "negative", "positive", "mixed", "uniform"])
@pytest.mark.parametrize("weight_kind", ["numpy", "scipy", "graphblas"])
@pytest.mark.parametrize("nrows", [1, 57])
def test_matches_numpy_reference(weight_kind, bias_kind, dtype, nrows):
    seed = abs(hash((weight_kind, bias_kind, dtype, nrows))) % 2**32
    model, weights, biases = build(np.random.default_rng(seed), weight_kind, bias_kind, dtype)
    x = np.random.default_rng(seed + 1).normal(size=(nrows, SIZES[0])).astype(dtype)
    expected = reference(x, weights, biases)

    # "auto" may use BLAS for these 30 % dense weights: equal to rounding
    y = model(x)
    assert isinstance(y, np.ndarray) and y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y, expected, **TOL[dtype])

    # a fixed GraphBLAS kernel: bit-identical results for any batch size and thread count
    for path in ("sparse", "dense", "dot"):
        exact = build(np.random.default_rng(seed), weight_kind, bias_kind, dtype, path=path)[0]
        first = exact(x, threads=1)
        np.testing.assert_allclose(first, expected, **TOL[dtype])
        for batch_size, threads in [(1, 1), (5, 2), (16, 2), (None, 2)]:
            np.testing.assert_array_equal(exact(x, batch_size=batch_size, threads=threads), first)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clipped_relu_and_sparse_inputs(dtype):
    rng = np.random.default_rng(7)
    model, weights, biases = build(rng, "scipy", "mixed", dtype, clip=0.5)
    x = sp.random(200, SIZES[0], density=0.2, random_state=3, format="csr", dtype=dtype)
    expected = reference(x.toarray(), weights, biases, clip=0.5)
    y = model(x, batch_size=32, threads=2)
    assert sp.issparse(y) and y.format == "csr" and isinstance(y, sp.spmatrix)
    np.testing.assert_allclose(y.toarray(), expected, **TOL[dtype])


def test_bias_reaches_entries_the_product_leaves_empty():
    # column 1 of W is empty: X W has no entry there, the bias must still arrive
    w = np.array([[1.0, 0.0], [2.0, 0.0]])
    x = np.array([[1.0, 1.0], [0.0, 0.0]])
    positive = gbdnn.Sequential([gbdnn.Linear(w, [0.5, 0.25], dtype="float64"), gbdnn.ReLU()])
    np.testing.assert_array_equal(positive(x), [[3.5, 0.25], [0.5, 0.25]])
    # a negative bias with no ReLU after it reaches every entry too
    negative = gbdnn.Sequential([gbdnn.Linear(w, [-0.5, -0.25], dtype="float64")])
    np.testing.assert_array_equal(negative(x), [[2.5, -0.25], [-0.5, -0.25]])
    # ... and with a ReLU after it, the stored-entry fast path gives the same as NumPy
    relu = gbdnn.Sequential([gbdnn.Linear(w, [-0.5, -0.25], dtype="float64"), gbdnn.ReLU()])
    np.testing.assert_array_equal(relu(x), [[2.5, 0.0], [0.0, 0.0]])


def test_relu_keeps_activations_sparse():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(50, 40))
    model = gbdnn.Sequential([gbdnn.Linear(w, -0.1), gbdnn.ReLU()])
    x = rng.normal(size=(30, 50))
    y = model(x, output="graphblas")
    dense = np.maximum(x @ w - 0.1, 0)
    assert y.nvals == np.count_nonzero(dense)  # no stored zeros
    assert gb.select.valuele(y, 0).new().nvals == 0


def relus_in_numpy(monkeypatch, numpy_min: int | None) -> list:
    """Set ``elementwise.NUMPY_MIN_POSITIONS`` (None: leave it); return a list that
    grows by one for every ReLU done in NumPy."""
    if numpy_min is not None:
        monkeypatch.setattr(elementwise, "NUMPY_MIN_POSITIONS", numpy_min)
    in_numpy = []
    positions = elementwise._relu_positions
    monkeypatch.setattr(
        elementwise, "_relu_positions", lambda *a: in_numpy.append(1) or positions(*a)
    )
    return in_numpy


@pytest.mark.parametrize("cap", [None, 0.5])
@pytest.mark.parametrize("stored", ["full", "bitmap", "sparse"])
@pytest.mark.parametrize("numpy_min", [0, None])
def test_a_relu_alone_matches_numpy_and_leaves_its_input(monkeypatch, cap, stored, numpy_min):
    # a ReLU not fused into a Linear: large full and bitmap inputs in NumPy on a copy
    # of the values, the others by SuiteSparse into a new matrix
    in_numpy = relus_in_numpy(monkeypatch, numpy_min)
    rng = np.random.default_rng(7)
    z = rng.normal(size=(37, 23)).astype(np.float32)
    present = np.ones(z.shape, bool) if stored == "full" else rng.random(z.shape) < 0.6
    m = gb.Matrix.from_coo(*np.nonzero(present), z[present], nrows=37, ncols=23)
    m.ss.config["sparsity_control"] = [stored]
    before = m.dup()
    relu, _ = gbdnn.ReLU(cap).stage()
    y = relu(m)
    expected = np.where(present & (z > 0), z, 0)
    if cap is not None:
        expected = np.minimum(expected, np.float32(cap))
    np.testing.assert_array_equal(y.to_dense(fill_value=0), expected)
    assert y.nvals == np.count_nonzero(expected)  # no stored zeros
    assert m.isequal(before) and m.ss.format == before.ss.format
    assert bool(in_numpy) == (numpy_min == 0 and stored != "sparse")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stored", ["full", "bitmap", "sparse", "iso", "sparse, every entry"])
@pytest.mark.parametrize("by_row", [True, False])
@pytest.mark.parametrize("numpy_min", [0, None])
def test_relu_kernel_is_bit_identical_to_numpy_in_every_format(
    monkeypatch, dtype, stored, by_row, numpy_min
):
    # full and bitmap Z go through NumPy, sparse Z through SuiteSparse: the same bits;
    # so do full and bitmap Z of up to NUMPY_MIN_POSITIONS positions (37 x 23 here)
    in_numpy = relus_in_numpy(monkeypatch, numpy_min)
    rng = np.random.default_rng(42)
    z = rng.normal(size=(37, 23)).astype(dtype)
    every = stored in ("full", "iso", "sparse, every entry")
    present = np.ones(z.shape, bool) if every else rng.random(z.shape) < 0.6
    if stored == "iso":
        z[:] = np.asarray(0.75, dtype)
    uniform = np.full(23, -0.3, dtype)
    columns = (-np.abs(rng.normal(size=23))).astype(dtype)
    for bias in (None, uniform, columns):
        for cap in (None, 0.5):
            m = gb.Matrix.from_coo(*np.nonzero(present), z[present], nrows=37, ncols=23)
            m.ss.config["format"] = "by_row" if by_row else "by_col"
            control = {"full": "full", "iso": "full", "bitmap": "bitmap"}
            m.ss.config["sparsity_control"] = [control.get(stored, "sparse")]
            kind = {"full": "full", "iso": "full", "bitmap": "bitmap"}.get(stored, "cs")
            assert m.ss.format.startswith(kind) and m.dtype.np_type == dtype
            assert m.ss.is_iso == (stored == "iso")
            shift = None if bias is None else elementwise.per_column(bias)
            m = elementwise.relu(m, shift, cap)
            v = z + (0 if bias is None else bias)  # in dtype, as the kernels add
            keep = present & (v > 0)
            if cap is not None:
                v = np.minimum(v, np.asarray(cap, dtype))
            rows, cols, values = m.to_coo()
            got = np.zeros(z.shape, bool)
            got[rows, cols] = True
            np.testing.assert_array_equal(got, keep)
            np.testing.assert_array_equal(values, v[rows, cols])
            assert values.dtype == dtype
    assert 37 * 23 <= elementwise.NUMPY_MIN_POSITIONS or numpy_min == 0
    if stored != "sparse, every entry":  # (SuiteSparse reports that one full, too)
        assert bool(in_numpy) == (numpy_min == 0 and stored in ("full", "bitmap", "iso"))


def test_matrices_handed_over_as_values_and_flags_and_back():
    from gbdnn import kernels

    rng = np.random.default_rng(3)
    values = rng.normal(size=(5, 7))
    flags = rng.random((5, 7)) < 0.5
    for by_row in (True, False):
        m = kernels.give(values.copy(), gb.dtypes.FP64, by_row=by_row, flags=flags.copy())
        assert m.ss.format.startswith("bitmap") and m.nvals == flags.sum()
        expected = np.where(flags, values, 0)
        np.testing.assert_array_equal(m.to_dense(fill_value=0), expected if by_row else expected.T)
        back, present, stored_by_row = kernels.take_positions(m)
        assert stored_by_row == by_row and m.nvals == 0  # m left empty, nothing copied
        np.testing.assert_array_equal(present, flags)
        np.testing.assert_array_equal(back[flags], values[flags])
    full, none, _ = kernels.take_positions(kernels.give(values.copy(), gb.dtypes.FP64))
    assert none is None
    np.testing.assert_array_equal(full, values)
    with pytest.raises(ValueError, match="values must be a C-ordered array"):
        kernels.give(values.copy()[:, :3], gb.dtypes.FP64)
    with pytest.raises(ValueError, match="flags must be a C-ordered array"):
        kernels.give(values.copy(), gb.dtypes.FP64, flags=flags.copy()[::-1])
    with pytest.raises(ValueError, match="flags must be bools of the shape"):
        kernels.give(values.copy(), gb.dtypes.FP64, flags=flags[:, :3].copy())


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_positive_bias_and_clipped_relu_reach_every_entry(path):
    # a full product takes the bias on its stored entries (all of them), a sparse one
    # is made full first: column 1 of W is empty, the bias still arrives
    w = np.array([[1.0, 0.0], [2.0, 0.0]])
    model = gbdnn.Sequential(
        [gbdnn.Linear(w, [0.5, 0.25], dtype="float64", path=path), gbdnn.ReLU(0.4)]
    )
    x = np.array([[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(model(x), [[0.4, 0.25], [0.4, 0.25]])
    np.testing.assert_array_equal(model(sp.csr_array(x)).toarray(), [[0.4, 0.25], [0.4, 0.25]])


@pytest.mark.parametrize(
    ("make", "family"),
    [
        (lambda x: x, np.ndarray),
        (sp.csr_matrix, sp.csr_matrix),
        (sp.csc_matrix, sp.csr_matrix),
        (sp.coo_array, sp.csr_array),
        (lambda x: gb.Matrix.from_dense(x, missing_value=0), gb.Matrix),
    ],
)
def test_result_comes_back_in_the_input_family(make, family):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(6, 4))
    model = gbdnn.Sequential([gbdnn.Linear(w, 0.5, dtype="float64"), gbdnn.ReLU()])
    x = rng.normal(size=(9, 6)) * (rng.random((9, 6)) < 0.5)
    y = model(make(x))
    assert type(y) is family
    expected = np.maximum(x @ w + 0.5, 0)
    dense = y.to_dense(fill_value=0) if isinstance(y, gb.Matrix) else y
    dense = dense.toarray() if sp.issparse(dense) else dense
    np.testing.assert_allclose(dense, expected, rtol=1e-12)
    assert isinstance(model(make(x), output="numpy"), np.ndarray)
    assert isinstance(model(make(x), output="graphblas"), gb.Matrix)
    as_scipy = model(make(x), output="scipy")
    assert sp.issparse(as_scipy) and as_scipy.format == "csr"


@pytest.mark.parametrize("batch_size", [None, 4])
def test_a_graphblas_result_is_freed_when_dropped(batch_size):
    # python-graphblas keeps every matrix in a reference cycle (its issue 559): a result
    # handed to the caller is out of it, freed without the cyclic collector, and works
    import gc
    import weakref

    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4))
    model = gbdnn.Sequential([gbdnn.Linear(w, 0.5, dtype="float64")])
    x = rng.normal(size=(9, 6))
    mine = gb.Matrix.from_dense(x)
    enabled = gc.isenabled()
    gc.disable()
    try:
        y = model(mine, batch_size=batch_size, threads=1)
        np.testing.assert_allclose(y.to_dense(), x @ w + 0.5, rtol=1e-12)
        assert y.ss.config["format"] == "by_row" and y.ss.format == "fullr"
        y2 = y.dup()  # a copy of the caller's own: in the cycle, as python-graphblas makes it
        np.testing.assert_array_equal(y2.to_dense(), y.to_dense())
        y.ss.config["format"] = "by_col"  # (the config reaches the matrix through its proxy)
        assert y.ss.format == "fullc"
        exported = y.ss.export()
        assert exported["format"] == "fullc" and exported["values"].shape == (9, 4)
        alive = weakref.ref(y)
        del y
        assert alive() is None
        # the caller's own matrix is left as it was: its accessor still holds it
        assert mine.ss._parent is mine and model(mine, output="numpy").shape == (9, 4)
    finally:
        if enabled:
            gc.enable()


def test_integer_and_bool_inputs_are_cast():
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    model = gbdnn.Sequential([gbdnn.Linear(w)])
    np.testing.assert_array_equal(model(np.array([[1, 0], [1, 1]])), [[1, 2], [4, 6]])
    np.testing.assert_array_equal(model(np.array([[True, False]])), [[1, 2]])


def test_empty_input_gives_empty_output():
    model = gbdnn.Sequential([gbdnn.Linear(np.eye(3)), gbdnn.ReLU()])
    assert model(np.zeros((0, 3))).shape == (0, 3)
    assert model(sp.csr_matrix((0, 3))).shape == (0, 3)


def test_single_layers_can_be_called():
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, 3))
    x = rng.normal(size=(4, 5))
    np.testing.assert_allclose(gbdnn.Linear(w, 1.0, dtype="fp64")(x), x @ w + 1.0, rtol=1e-12)
    np.testing.assert_array_equal(gbdnn.ReLU(max_value=0.5)(x), np.clip(x, 0, 0.5))


def test_model_introspection():
    rng = np.random.default_rng(5)
    model, weights, _ = build(rng, "numpy", "none", "float32")
    assert model.in_features == SIZES[0] and model.out_features == SIZES[-1]
    assert model.nnz == sum(np.count_nonzero(w) for w in weights)
    assert len(model) == 5 and isinstance(model[1], gbdnn.ReLU)
    assert "Linear(in_features=20" in repr(model)


def test_path_choice():
    from gbdnn import tuning

    costs = tuning.Costs()
    # a dense batch on sparse weights: the dense GraphBLAS kernel; weights denser than
    # the crossover (77-81 % sparse in the default grid): BLAS
    assert tuning.choose("auto", 64, 64 * 4096, 4096, 4096, 4096 * 205, costs) == "dense"
    assert tuning.choose("auto", 64, 64 * 4096, 4096, 4096, 4096 * 1229, costs) == "blas"
    # one or two dense rows: dot products (measured, one row through 4096x4096 at 90 %:
    # dot 0.97 ms, sparse 1.3 ms)
    assert tuning.choose("auto", 1, 4096, 4096, 4096, 4096 * 410, costs) == "dot"
    # ... but not for sparse rows, which it would first make full
    assert tuning.choose("auto", 1, 2048, 4096, 4096, 4096 * 410, costs) == "sparse"
    assert tuning.choose("auto", 2, 2 * 4096, 4096, 4096, 4096 * 205, costs) == "dot"
    # ... and four rows through 4096x4096 at 99.9 % (measured: sparse 34 us, dot 27 us),
    # but not through 1024x1024 at 99.9 %, fewer weights than 4 x 1024, where SuiteSparse
    # computes the dot products one at a time (measured: sparse 10 us, dot 28 us)
    assert tuning.choose("auto", 4, 4 * 4096, 4096, 4096, 16777, costs) == "dot"
    assert tuning.estimates(4, 4 * 1024, 1024, 1024, 1049, costs)["dot"] == float("inf")
    assert tuning.estimates(1, 1024, 1024, 1024, 1049, costs)["dot"] < float("inf")
    assert tuning.choose("auto", 4, 4 * 1024, 1024, 1024, 1049, costs) == "sparse"
    # one row through 1024x1024 at 95 %: the sparse kernel reads W once
    # per call, the dot kernel once per row, and a lone row runs in one of the sparse
    # kernel's lanes (measured: dot 26 us, sparse 40 us)
    assert tuning.choose("auto", 1, 1024, 1024, 1024, 52429, costs) == "dot"
    # ... and two (measured: dot 34 us, sparse 43 us; dot took 49 us before it accumulated
    # into a full result, a mispick then)
    assert tuning.choose("auto", 2, 2048, 1024, 1024, 52429, costs) == "dot"
    # with a core to spare, a dot product is shared with the helper thread where half the
    # work and the hand-over cost less: one row through 4096x4096 at 90 % (measured: 0.55
    # against 0.93 ms), not at 99.9 % (9 us) nor through 1024x1024 at 95 % (26 us)
    assert tuning.splits(1, 4096, 4096 * 410, costs)
    assert not tuning.splits(1, 4096, 16777, costs)
    assert not tuning.splits(1, 1024, 52429, costs)
    # ... nor where the model expects less than SPLIT_MAX_RATIO of one thread's time saved
    work = tuning._dot_seconds(1, 4096, 4096 * 410, costs)
    call = (tuning.SPLIT_MAX_RATIO - costs.dot_split_share) * work
    for factor, shared in ((0.99, True), (1.01, False)):
        near = dataclasses.replace(costs, split_call=factor * call)
        assert tuning.splits(1, 4096, 4096 * 410, near) == shared
    assert not tuning.splits(1, 1, 4096, dataclasses.replace(costs, split_call=0.0))
    assert not tuning.splits(1, 4096, 4096 * 410, dataclasses.replace(costs, dot_split_share=1.0))
    no_weight = dataclasses.replace(costs, sparse_weight=0.0)
    assert tuning.choose("auto", 1, 1024, 1024, 1024, 52429, no_weight) == "sparse"
    # a full batch of 64 on very sparse weights: the sparse kernel, as the dense
    # kernel's transposes cost more than the products
    assert tuning.choose("auto", 64, 64 * 1024, 1024, 1024, 1049, costs) == "sparse"
    # ... but not 4096 wide, where its loop over every activation and the zero result
    # (sparse_full_entry, 4 entries of Z per stored weight) cost more than the dense kernel
    assert tuning.choose("auto", 64, 64 * 4096, 4096, 4096, 16777, costs) == "dense"
    no_entry = dataclasses.replace(costs, sparse_full_entry=0.0)
    with_entries, without = (
        tuning.estimates(64, 64 * 4096, 4096, 4096, 16777, c)["sparse"] for c in (costs, no_entry)
    )
    assert with_entries - without == pytest.approx(costs.sparse_full_entry * 64 * (4096 + 4096))
    assert tuning.estimates(64, 64 * 1024, 1024, 1024, 0, costs)["dense"] == pytest.approx(
        costs.dense_call + costs.dense_entry * 64 * 2048
    )
    # never for larger batches: it computes every output entry, stored weights or not
    assert tuning.estimates(5, 5 * 1024, 1024, 1024, 1, costs)["dot"] == float("inf")
    assert tuning.choose("auto", 64, 64 * 1024, 1024, 1024, 1049, costs) != "dot"
    # sparse activations (5 % dense): the sparse kernel while the result entries it
    # made per multiply-add are unknown or few (structured weights); ReLU-like
    # activations (20 % dense) on random weights, whose results are nearly full: the
    # dense kernel (measured: Gustavson 4.9 ms, the dense kernel 0.93 ms)
    for spread in (None, 0.005):
        assert tuning.choose("auto", 64, 64 * 205, 4096, 4096, 4096 * 41, costs, spread=spread) == (
            "sparse"
        )
    assert tuning.choose("auto", 64, 64 * 820, 4096, 4096, 4096 * 41, costs, spread=0.6) == "dense"
    assert tuning.choose("auto", 64, 64 * 8, 4096, 4096, 4096 * 41, costs, spread=1.0) == "sparse"
    # on weights with about one entry per row, the sparse kernel makes ReLU-like
    # activations full first (Gustavson pays per stored activation and result entry),
    # once it has seen how many result entries they make
    assert tuning.choose("auto", 64, 64 * 205, 1024, 1024, 1049, costs, spread=1.0) == "sparse"
    assert tuning.fills(64, 64 * 205, 1024, 1024, 1049, costs, 1.0)
    assert not tuning.fills(64, 64 * 205, 1024, 1024, 1049, costs, None)
    few = tuning.FILL_MIN_ROWS - 1  # a few rows: a full product reads all of W per call
    assert not tuning.fills(few, few * 205, 1024, 1024, 1049, costs, 1.0)
    assert not tuning.fills(64, 64 * 51, 1024, 1024, 104858, costs, 1.0)  # denser weights
    # the kernels that read X full pay for making a sparse X full
    sparse_x, full_x = (tuning.estimates(64, n, 1024, 1024, 1049, costs) for n in (13120, 65536))
    for kernel in ("dense", "blas"):
        made_full = costs.fill_call + costs.fill_entry * 64 * 1024
        assert sparse_x[kernel] - full_x[kernel] == pytest.approx(made_full)
    assert tuning.choose("blas", 1, 1, 10, 10, 1, costs) == "blas"
    # a batch alone has BLAS to itself, where busy batches take turns, and shares the
    # dense kernel's products with the helper thread: 64 rows through 4096x4096 at 75 %
    # (measured alone: the dense kernel 19.5 ms on one thread, 13.5 shared, BLAS 11.3)
    at_75 = (64, 64 * 4096, 4096, 4096, 4096 * 1024, costs)
    busy, alone = tuning.estimates(*at_75), tuning.estimates(*at_75, alone=True)
    # (the multiply-adds' time, not the read of W)
    assert busy["blas"] - alone["blas"] == pytest.approx(
        (1 - costs.blas_alone_share) * costs.blas_mac * 64 * 4096 * 4096
    )
    # one row through 4096x4096 at 90 %: the dot kernel, alone too (measured: BLAS alone
    # 2.1 ms, the dot kernel 0.9 ms on one thread, 0.5-0.6 ms shared)
    assert tuning.choose("auto", 1, 4096, 4096, 4096, 4096 * 410, costs, alone=True) == "dot"
    assert tuning.dense_splits(*at_75[:1], *at_75[2:])
    assert alone["dense"] == pytest.approx(  # one tile of 64 rows, one hand-over
        costs.split_call
        + costs.dense_split_entry * 64 * 8192
        + costs.dense_split_share * busy["dense"]
    )
    assert alone["sparse"] == busy["sparse"] and alone["dot"] == busy["dot"]
    assert tuning.choose("auto", *at_75) == "dense"
    # ... both on two cores alone, about 12 ms each (measured: BLAS 11.3-13.6 ms, the
    # shared dense kernel 12.5-13.5), against 21-23 ms busy
    for kernel in ("dense", "blas"):
        assert 0.5 * busy[kernel] < alone[kernel] < 0.62 * busy[kernel]
    # shared: 64 rows through 4096x4096 at 90 % (measured: 0.61x one thread's time), not
    # at 99 % (1.07x) nor 16 rows through 1024x1024 at 90 % (1.46x), where what the
    # hand-over and the tiles crossing between the cores cost is a larger part
    assert tuning.dense_splits(64, 4096, 4096, 1677722, costs)
    assert tuning.choose("auto", 64, 64 * 4096, 4096, 4096, 1677722, costs, alone=True) == "dense"
    assert not tuning.dense_splits(64, 4096, 4096, 167772, costs)
    assert not tuning.dense_splits(16, 1024, 1024, 104858, costs)
    at_99 = (64, 64 * 4096, 4096, 4096, 167772, costs)
    assert tuning.estimates(*at_99, alone=True)["dense"] == tuning.estimates(*at_99)["dense"]
    # choices are remembered, the costs part of the question: other costs, other answer
    slow_dense = dataclasses.replace(costs, dense_mac=1.0, sparse_full_mac=1.0)
    assert tuning.choose("auto", 64, 64 * 4096, 4096, 4096, 4096 * 205, slow_dense) == "blas"
    with pytest.raises(ValueError, match="path must be one of"):
        gbdnn.Linear(np.eye(2), path="gpu")


@pytest.mark.parametrize("structured", [False, True])
def test_layer_learns_result_entries_per_multiply_add(structured, monkeypatch):
    # the sparse kernel's cost is mostly the entries of Z, known only after a product:
    # random weights fill Z, structured ones (as the Graph Challenge's) keep it sparse
    rng = np.random.default_rng(16)
    n = 1024
    if structured:  # dense 32 x 32 diagonal blocks; each row of X active in two blocks
        w = np.kron(np.eye(n // 32), rng.normal(size=(32, 32)))
        x = np.zeros((64, n))
        for row in x:
            for block in rng.choice(n // 32, 2, replace=False):
                row[32 * block : 32 * block + 32] = rng.normal(size=32)
    else:
        w = rng.normal(size=(n, n)) * (rng.random((n, n)) < 0.01)
        x = rng.normal(size=(64, n)) * (rng.random((64, n)) < 0.2)
    layer = gbdnn.Linear(w, dtype="float64")
    chosen = []
    real_contenders = gbdnn.tuning.contenders

    def contenders(nrows, nnz_x, *args, **kwargs):  # asked by each batch's product
        rivals = real_contenders(nrows, nnz_x, *args, **kwargs)
        chosen.append(rivals[0])
        return rivals

    monkeypatch.setattr(gbdnn.tuning, "contenders", contenders)
    first = layer(x)
    second = layer(x)
    expected = x @ w
    np.testing.assert_allclose(first, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(second, expected, rtol=1e-12, atol=1e-12)
    macs = np.count_nonzero(x) * np.count_nonzero(w) / n
    spread = np.count_nonzero(expected) / macs  # kept rounded, as batches are priced
    assert chosen[0] == "sparse" and layer._spread == gbdnn.tuning.coarse(spread)
    assert len(chosen) == 2 and chosen[1] == ("sparse" if structured else "dense")
    layer.set_weight(w)  # new weights: learnt afresh
    assert layer._spread is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_kernel_on_activations_made_full_is_bit_identical(monkeypatch, dtype):
    # making a sparse X full adds only zero terms, in the same order: the same bits
    rng = np.random.default_rng(21)
    w = rng.normal(size=(300, 200)) * (rng.random((300, 200)) < 0.02)
    x = np.maximum(rng.normal(size=(50, 300)), 0) * (rng.random((50, 300)) < 0.4)
    layer = gbdnn.Linear(w, rng.normal(size=200), dtype=dtype, path="sparse")
    xm = gb.Matrix.from_dense(x.astype(dtype), missing_value=0)  # a bitmap
    results, made_full = {}, []
    real_dense_rows = gbdnn.kernels.dense_rows
    monkeypatch.setattr(
        gbdnn.kernels, "dense_rows", lambda *a, **k: made_full.append(1) or real_dense_rows(*a, **k)
    )
    for fill in (False, True):
        monkeypatch.setattr(gbdnn.tuning, "fills", lambda *args, fill=fill: fill)
        made_full.clear()
        results[fill] = layer(xm, output="numpy", check_finite=False)
        assert len(made_full) == fill  # (the full result goes to NumPy directly)
    np.testing.assert_array_equal(results[True], results[False])
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(results[True], x @ w + layer.bias, rtol=tol, atol=tol)


@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_weight_bytes_count_the_copies_the_kernels_built(path):
    rng = np.random.default_rng(9)
    n_in, n_out, dtype = 64, 48, np.float32
    w = random_weights(rng, n_in, n_out)
    nnz = np.count_nonzero(w)
    model = gbdnn.Sequential([gbdnn.Linear(w, dtype="float32", path=path), gbdnn.ReLU()])

    def csr(rows):  # values, column indices, row pointers (64-bit), and a header
        return nnz * (dtype().itemsize + 8) + (rows + 1) * 8

    before = model.weight_bytes
    assert csr(n_in) <= before <= csr(n_in) + 1024
    model.predict(rng.normal(size=(1, n_in)))
    # W' for the dense and dot kernels (too small to be cut in halves), a dense array for BLAS
    built = {"sparse": 0, "dense": csr(n_out), "dot": csr(n_out), "blas": n_in * n_out * 4}[path]
    grown = model.weight_bytes - before
    assert built <= grown <= built + 1024
    assert model.weight_bytes == model[0].weight_bytes and model[1].weight_bytes == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_every_kernel_keeps_the_model_dtype(dtype, path):
    # a mixed-type product would fall to SuiteSparse's slow generic kernels
    rng = np.random.default_rng(8)
    layer = gbdnn.Linear(rng.normal(size=(16, 8)), -0.1, dtype=dtype, path=path)
    stage, _ = layer.stage(gbdnn.ReLU())
    x = gb.Matrix.from_dense(rng.normal(size=(5, 16)).astype(dtype), missing_value=0)
    assert stage(x).dtype == layer.dtype.graphblas


@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_every_kernel_overflows_to_inf_without_a_warning(path):
    # each product (1e60) overflows FP32; pytest makes RuntimeWarnings errors here
    w = np.full((50, 4), 1e30)
    w[:, 3] = -1e30
    x = np.full((3, 50), 1e30)
    x[2] = 0
    y = gbdnn.Sequential([gbdnn.Linear(w, path=path)]).predict(x)
    expected = np.array([[np.inf] * 3 + [-np.inf]] * 2 + [[0.0] * 4], np.float32)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("fmt", ["fullc", "bitmapc", "csc", "fullr"])
@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_every_kernel_reads_inputs_stored_by_column(fmt, path):
    # a user's GraphBLAS input may be stored by column; the kernels' C calls
    # that read values in storage order must not take it for rows
    rng = np.random.default_rng(13)
    w = rng.normal(size=(12, 7))
    x = rng.normal(size=(3, 12))
    if not fmt.startswith("full"):
        x[rng.random(x.shape) < 0.5] = 0
    m = gb.Matrix.from_dense(x, missing_value=None if fmt.startswith("full") else 0)
    m.ss.config["format"] = "by_col" if fmt.endswith("c") else "by_row"
    m.ss.config["sparsity_control"] = {"f": "full", "b": "bitmap", "c": "sparse"}[fmt[0]]
    assert m.ss.format == fmt
    layer = gbdnn.Linear(w, np.arange(7.0), dtype="float64", path=path)
    got = layer(m, output="numpy")
    np.testing.assert_allclose(got, x @ w + np.arange(7.0), rtol=1e-12, atol=1e-12)


def test_calibration_is_cached(tmp_path, monkeypatch):
    from gbdnn import tuning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tuning.current_costs.cache_clear()
    try:
        assert tuning.current_costs() == tuning.Costs()  # defaults without a cache
        measured = tuning.calibrate(size=256, rows=32, threads=1, runs=1)
        assert tuning.cache_path().is_file()
        assert tuning.current_costs() == measured
        assert all(v > 0 for v in dataclasses.astuple(measured))
        # calibrate_once measures only where no complete set is cached
        small = functools.partial(tuning.calibrate, size=256, rows=32, threads=1, runs=1)
        monkeypatch.setattr(tuning, "calibrate", small)
        assert not tuning.calibrate_once() and tuning.current_costs() == measured
        older = {k: v for k, v in dataclasses.asdict(measured).items() if k != "dot_entry"}
        tuning.cache_path().write_text(json.dumps(older))
        assert tuning.calibrate_once()
        cached = json.loads(tuning.cache_path().read_text())
        assert set(cached) == set(older) | {"dot_entry", "version"}
        assert cached["version"] == tuning.KERNELS_VERSION
        # costs measured on a kernel that has changed since are measured again
        tuning.cache_path().write_text(json.dumps(dict(cached, version=1)))
        assert tuning.calibrate_once()
        assert json.loads(tuning.cache_path().read_text())["version"] == tuning.KERNELS_VERSION
        tuning.cache_path().unlink()
        assert tuning.calibrate_once() and tuning.cache_path().is_file()
    finally:
        tuning.current_costs.cache_clear()


def test_split_costs_are_a_line_through_two_shared_products():
    from gbdnn import tuning

    def times(call, share):  # one-row times of a dot kernel with a fixed cost of 5 us
        t = {"dot": 5e-6, "dot_mid": 25e-6, "dot_big": 205e-6}
        for w in ("mid", "big"):
            t[f"split_{w}"] = t["dot"] + call + share * (t[f"dot_{w}"] - t["dot"])
        return t

    got = tuning._split_costs(times(60e-6, 0.6))
    assert got == pytest.approx({"split_call": 60e-6, "dot_split_share": 0.6})
    # two cores take at least half each; a share over 1 (noise) is never shared
    assert tuning._split_costs(times(60e-6, 0.3))["dot_split_share"] == 0.5
    assert tuning._split_costs(times(60e-6, 1.4))["dot_split_share"] == 1.0


def test_calibration_is_the_median_of_several(tmp_path, monkeypatch):
    # one calibration in a slow spell moves no cost
    from gbdnn import tuning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    base = tuning.Costs()
    runs = iter(
        [
            dataclasses.replace(base, blas_mac=2e-11, dot_split_share=0.6),
            dataclasses.replace(base, blas_mac=4e-11, sparse_call=1e-4, dot_split_share=0.5),
            dataclasses.replace(base, blas_mac=2.2e-11, dot_split_share=0.7),
        ]
    )
    seen = []
    monkeypatch.setattr(tuning, "_measure", lambda *args: seen.append(args) or next(runs))
    try:
        costs = tuning.calibrate(size=256, rows=8, threads=1)
        assert costs == dataclasses.replace(base, blas_mac=2.2e-11, dot_split_share=0.6)
        assert seen == [(256, 8, 1)] * tuning.CALIBRATE_RUNS == [(256, 8, 1)] * 3
        assert tuning.current_costs() == costs  # cached
    finally:
        tuning.current_costs.cache_clear()


def test_calibration_times_the_one_row_calls_in_turns():
    # costs taken from differences of one-row times are measured together, turn by turn,
    # so a slow spell of the machine weighs on each alike
    from gbdnn import tuning

    order, in_batch = [], []

    def kernel(name):
        def call(x):
            order.append(name)
            in_batch.append(gbdnn.kernels._LOCAL.inside)  # one thread, as a batch runs
            return np.zeros(1)  # (an array: given back for reuse, as making X full)

        return call

    t = tuning._calls_seconds({"a": (kernel("a"), None), "b": (kernel("b"), None)}, 14)
    assert set(t) == {"a", "b"} and all(v > 0 for v in t.values())
    per = tuning.CALLS_PER_TURN
    turns = -(-14 // (per - 1))  # the first call of each turn is not counted
    assert order == (["a"] * per + ["b"] * per) * turns
    assert all(in_batch) and not gbdnn.kernels._LOCAL.inside


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0}, "size must be an integer of at least 256, got 0"),
        ({"size": 8}, "size must be an integer of at least 256, got 8"),
        ({"size": 512.0}, "size must be an integer of at least 256, got 512.0"),
        ({"rows": 1}, "rows must be an integer of at least 2, got 1"),
        ({"rows": True}, "rows must be an integer of at least 2, got True"),
        ({"threads": 0}, "threads must be a positive integer or None, got 0"),
        ({"runs": 0}, "runs must be an integer of at least 1, got 0"),
        ({"runs": 2.0}, "runs must be an integer of at least 1, got 2.0"),
    ],
)
def test_calibrate_rejects_bad_arguments(tmp_path, monkeypatch, kwargs, message):
    from gbdnn import ParameterError, tuning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ParameterError, match=message):
        tuning.calibrate(**kwargs)
    assert not tuning.cache_path().exists()  # nothing measured, nothing written


def test_an_unreadable_or_incomplete_costs_cache_warns(tmp_path, monkeypatch):
    from gbdnn import CacheWarning, tuning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tuning.cache_path()
    path.parent.mkdir(parents=True)
    measured = dict(dataclasses.asdict(tuning.Costs()), sparse_mac=1.5e-9, dot_call=2e-4)

    def costs(text):
        path.write_text(text)
        tuning.current_costs.cache_clear()
        return tuning.current_costs()

    try:
        measured["version"] = tuning.KERNELS_VERSION
        assert costs(json.dumps(measured)) == tuning.Costs(sparse_mac=1.5e-9, dot_call=2e-4)
        # a cost gbdnn no longer models (the dot kernel's second thread) is ignored, unwarned
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = costs(json.dumps(dict(measured, dot_thread_gain=0.65)))
        assert got == tuning.Costs(sparse_mac=1.5e-9, dot_call=2e-4)
        # a cache of an older gbdnn, without a version: its dot kernel's and BLAS's costs
        # are stale; of version 2, BLAS's (calibrated on smaller batches); of version 3,
        # BLAS's (on all of its threads)
        unversioned = {k: v for k, v in measured.items() if k != "version"}
        blas = "blas_mac, blas_weight, blas_call, blas_alone_share "
        stale = "lack dot_mac, dot_entry, blas_mac, blas_weight, dot_call, blas_call, "
        with pytest.warns(CacheWarning, match=stale + "blas_alone_share "):
            assert costs(json.dumps(unversioned)) == tuning.Costs(sparse_mac=1.5e-9)
        for version in (2, 3):
            with pytest.warns(CacheWarning, match="lack " + blas):
                got = costs(json.dumps(dict(measured, version=version)))
            assert got == tuning.Costs(sparse_mac=1.5e-9, dot_call=2e-4)
        older = {k: v for k, v in measured.items() if k != "sparse_weight"}  # an older gbdnn's
        with pytest.warns(CacheWarning, match="lack sparse_weight "):
            got = costs(json.dumps(older))
        assert got == tuning.Costs(sparse_mac=1.5e-9, dot_call=2e-4)  # measured ones kept
        for bad in (-1.0, "1e-9", None, True, float("inf")):
            with pytest.warns(CacheWarning, match="lack dense_mac "):
                got = costs(json.dumps(dict(measured, dense_mac=bad)))
            assert got.dense_mac == tuning.Costs().dense_mac and got.sparse_mac == 1.5e-9
        for garbled in ("{not json", "", "[1, 2]"):
            with pytest.warns(CacheWarning, match="cannot read|lack sparse_mac"):
                assert costs(garbled) == tuning.Costs()
    finally:
        tuning.current_costs.cache_clear()


def test_batches_are_balanced_over_threads():
    from gbdnn.runner import plan_batches

    batches = plan_batches(60000, 4096, 2)
    assert len(batches) == 16 and {b - a for a, b in batches} == {3750}
    assert plan_batches(10, 4, 1) == [(0, 4), (4, 8), (8, 10)]
    assert plan_batches(5, 100, 2) == [(0, 3), (3, 5)]
    assert plan_batches(0, 10, 2) == []
    for n, size, threads in [(1, 1, 2), (7, 3, 2), (1000, 64, 3)]:
        b = plan_batches(n, size, threads)
        assert b[0][0] == 0 and b[-1][1] == n and all(y - x <= size for x, y in b)
        assert all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))


def test_explicit_zeros_are_not_stored():
    w = sp.csr_matrix((np.array([0.0, 2.0]), np.array([0, 1]), np.array([0, 1, 2])), shape=(2, 2))
    assert gbdnn.Linear(w).nnz == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])
@pytest.mark.parametrize("kernel", ["dense", "dense-tiled", "dot"])
def test_kernel_rows_do_not_depend_on_the_batch(dtype, density, kernel, monkeypatch):
    # SuiteSparse rounds its vector and remainder loops differently; padded tiles hide that.
    from gbdnn import kernels

    if kernel == "dense-tiled":  # tiles of 32 rows: the 70 rows span three
        monkeypatch.setattr(kernels, "DENSE_TILE_BYTES", 300 * 32 * np.dtype(dtype).itemsize)
        assert kernels.tile_rows(300, 70, np.dtype(dtype).itemsize) == 32
        kernel = "dense"
    product = getattr(kernels, f"plus_times_{kernel}")
    rng = np.random.default_rng(5)
    w = (rng.normal(size=(300, 70)) * (rng.random((300, 70)) < density)).astype(dtype)
    wt = kernels.sparse_format(Matrix.from_dense(w.T.copy(), missing_value=0))
    x = rng.normal(size=(70, 300)).astype(dtype)
    with kernels.batch_threads():
        whole = product(Matrix.from_dense(x), wt).to_dense(dtype=dtype)
    unit = FP32 if dtype == "float32" else FP64
    assert (np.abs(whole - x.astype(np.float64) @ w) <= bound(x, [w], [None], unit)).all()
    for start, stop in [(0, 1), (3, 5), (10, 27), (20, 70), (69, 70), (1, 66)]:
        with kernels.batch_threads():
            part = product(Matrix.from_dense(x[start:stop]), wt)
        np.testing.assert_array_equal(part.to_dense(dtype=dtype), whole[start:stop])


def _halves_case(seed: int, dtype: str):
    """Random weights 300 x 71 of ``dtype`` (integers for INT32), ``W'`` and its halves."""
    from gbdnn import kernels

    rng = np.random.default_rng(seed)
    w = random_weights(rng, 300, 71, density=0.2)
    if dtype == "int32":
        w = np.round(w * 50)
    w = w.astype(dtype)
    wm = kernels.sparse_format(Matrix.from_dense(w, missing_value=0))
    return rng, w, kernels.sparse_format(wm.T.new()), kernels.transposed_halves(wm)


def _same_bits(shared: Matrix, whole: Matrix, x: np.ndarray, w: np.ndarray) -> None:
    """``shared`` is ``whole`` bit for bit, and ``X W`` (exactly for integers)."""
    assert shared.shape == whole.shape and shared.dtype == whole.dtype
    assert shared.ss.format == whole.ss.format  # every entry, stored alike
    np.testing.assert_array_equal(shared.to_dense(), whole.to_dense())
    if x.dtype == np.int32:  # exact
        np.testing.assert_array_equal(shared.to_dense(), x.astype(np.int64) @ w)
    else:
        unit = FP32 if x.dtype == np.float32 else FP64
        err = np.abs(shared.to_dense() - x.astype(np.float64) @ w)
        assert (err <= bound(x, [w], [None], unit)).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("zeros", [False, True])
def test_dot_kernel_halves_give_its_bits(dtype, zeros):
    # the same dot products, half on the helper thread: bit for bit the one-thread result
    from gbdnn import kernels

    rng, w, wt, halves = _halves_case(13, dtype)
    for rows in (1, 2, 4):
        x = rng.normal(size=(rows, 300)) * (rng.random((rows, 300)) < (0.5 if zeros else 1.1))
        x = np.round(x * 10).astype(dtype) if dtype == "int32" else x.astype(dtype)
        xm = Matrix.from_dense(x, missing_value=0)
        with kernels.batch_threads():
            whole = kernels.plus_times_dot(xm, wt)
            shared = kernels.plus_times_dot_halves(xm, halves)
        assert shared.ss.format == "fullr"
        _same_bits(shared, whole, x, w)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_dense_kernel_halves_give_its_bits(dtype):
    # each tile's product, half on the helper thread: bit for bit the one-thread result,
    # for a batch of one tile (Z by column), one padded tile, several tiles, and X by column
    from gbdnn import kernels

    rng, w, wt, halves = _halves_case(17, dtype)
    tile = kernels.tile_rows(300, 71, np.dtype(dtype).itemsize)
    for rows in (16, 20, 2 * tile + 5):
        x = rng.normal(size=(rows, 300))
        x = np.round(x * 10).astype(dtype) if dtype == "int32" else x.astype(dtype)
        for xm in (Matrix.from_dense(x), Matrix.ss.import_fullc(np.asfortranarray(x))):
            with kernels.batch_threads():
                whole = kernels.plus_times_dense(xm, wt)
                shared = kernels.plus_times_dense(xm, halves)
            _same_bits(shared, whole, x, w)


def test_weights_cut_in_two_by_columns_of_equal_entries():
    from gbdnn import ShapeError, kernels

    rng = np.random.default_rng(14)
    w = random_weights(rng, 50, 40, density=0.3)
    w[:, :10] *= rng.random((50, 10)) < 0.1  # the first columns hold few entries
    wm = Matrix.from_dense(w, missing_value=0)
    first, second = kernels.transposed_halves(wm)
    assert first.nrows + second.nrows == 40 and first.ncols == second.ncols == 50
    np.testing.assert_array_equal(np.vstack([first.to_dense(0), second.to_dense(0)]), w.T)
    counts = (w != 0).sum(axis=0)
    assert abs(first.nvals - second.nvals) <= counts.max()  # as even as whole columns allow
    assert first.nrows > 20  # more columns on the side of the few-entry ones
    for part in (first, second):
        assert part.ss.format == "csr"
    for two in (np.eye(2), np.array([[0.0, 1.0], [0.0, 2.0]])):  # a part may hold nothing
        a, b = kernels.transposed_halves(Matrix.from_dense(two, missing_value=0))
        assert a.nrows == b.nrows == 1
    with pytest.raises(ShapeError, match="W needs two columns or more"):
        kernels.transposed_halves(Matrix.from_dense(np.ones((3, 1))))


@pytest.mark.skipif(not gbdnn.helper.available(), reason="needs two cores and sched_getcpu")
@pytest.mark.parametrize("path", ["dot", "dense"])
def test_a_lone_batch_shares_large_products_with_the_helper(monkeypatch, path):
    from gbdnn import kernels, runner, tuning

    shared = []
    name = {"dot": "plus_times_dot_halves", "dense": "plus_times_dense"}[path]
    kernel = getattr(kernels, name)

    def spy(x, w, **kwargs):
        shared.extend([1] if isinstance(w, tuple) else [])  # W' in halves
        return kernel(x, w, **kwargs)

    monkeypatch.setattr(kernels, name, spy)
    rng = np.random.default_rng(15)
    w = random_weights(rng, 400, 300, density=0.5).astype(np.float32)
    x = rng.normal(size=(3, 400)).astype(np.float32)
    layer = gbdnn.Linear(w, rng.normal(size=300), path=path)
    splits = {
        "dot": lambda c: tuning.splits(3, 300, layer.nnz, c),
        "dense": lambda c: tuning.dense_splits(3, 400, 300, layer.nnz, c),
    }[path]

    def calls(costs, **kwargs):
        shared.clear()
        monkeypatch.setattr(tuning, "current_costs", lambda: costs)
        return layer(x, **kwargs), len(shared)

    work = {
        "dot": tuning._dot_seconds(3, 300, layer.nnz, tuning.Costs()),
        "dense": tuning._dense_seconds(3, 400, 300, layer.nnz, tuning.Costs()),
    }[path]
    cheap, dear = (tuning.Costs(split_call=f * work, dense_split_entry=1e-14) for f in (0.1, 0.5))
    alone, n = calls(cheap)
    assert n == 1 and splits(cheap)
    assert calls(dear)[1] == 0 and not splits(dear)
    one_thread, n = calls(cheap, threads=1)  # no core to spare
    assert n == 0
    np.testing.assert_array_equal(alone, one_thread)
    np.testing.assert_allclose(alone, x @ w + layer.bias, **TOL["float32"])
    # batches in parallel: every core busy already
    monkeypatch.setattr(runner, "PARALLEL_MIN_SECONDS", 0.0)
    parallel, n = calls(cheap, batch_size=1, threads=2)
    assert n == 0
    np.testing.assert_array_equal(parallel, one_thread)


@pytest.mark.skipif(gbdnn.runner.available_cores() < 2, reason="needs two cores")
def test_batch_threads_run_one_thread_and_keep_the_callers_context(capfd, monkeypatch):
    # gbdnn engages SuiteSparse contexts by C calls: python-graphblas's own must stay in force
    import re

    from graphblas.core.ss.context import Context

    from gbdnn import kernels

    rng = np.random.default_rng(9)
    w = rng.random((2000, 2000)) * (rng.random((2000, 2000)) < 0.1)
    wt = kernels.sparse_format(Matrix.from_dense(w, missing_value=0))
    x = Matrix.from_dense(rng.random((2, 2000)))

    def threads(call):  # the threads SuiteSparse reports for its dot products (burble)
        with gb.ss.burble:
            call()
        return [int(t) for t in re.findall(r"nthreads: (\d+)", capfd.readouterr().out)]

    def own():  # a python-graphblas call of the caller's: enough work for two threads
        x.mxm(wt.T).new()

    multiply = kernels.plus_times_into

    def probed(*args, **kwargs):  # the dot kernel's product (whose method reports no
        own()  # threads), preceded by a call that does, in the context then in force
        multiply(*args, **kwargs)

    def dot(halves=None):
        with monkeypatch.context() as patch:
            patch.setattr(kernels, "plus_times_into", probed)
            if halves is None:
                kernels.plus_times_dot(x, wt)
            else:  # each half on one thread, the helper's too
                kernels.plus_times_dot_halves(x, halves)

    assert threads(own) == [2]
    with kernels.batch_threads():
        assert threads(own) == [1]
        # the dot kernel too, though its sums would not depend on two (a latency trap:
        # batch_threads)
        assert threads(dot) == [1]
        assert threads(lambda: dot(kernels.transposed_halves(wt))) == [1, 1]
        with kernels.batch_threads():  # re-entrant
            assert threads(own) == [1]
        assert threads(own) == [1]
    assert threads(own) == [2]
    with Context(nthreads=1):
        with kernels.batch_threads():
            assert threads(dot) == [1]
        assert threads(own) == [1]
    assert threads(own) == [2]


def test_tiles_fit_the_cache_and_are_aligned():
    from gbdnn import kernels

    assert kernels.tile_rows(4096, 4096, 4) == 64 and kernels.tile_rows(4096, 4096, 8) == 32
    assert kernels.tile_rows(1024, 1024, 4) == kernels.DENSE_TILE_MAX
    assert kernels.tile_rows(1 << 20, 10, 8) == kernels.DENSE_LANES
    for shape in [(1, 1), (7, 3), (4096, 64)]:
        a = kernels.aligned_zeros(*shape, np.float32)
        assert a.shape == shape and a.flags.owndata and a.flags.c_contiguous
        assert a.ctypes.data % kernels.ALIGNMENT == 0 and not a.any()
    # SuiteSparse takes the memory without a copy and frees it itself
    m = Matrix.ss.import_fullr(a, take_ownership=True)
    assert m.nvals == 4096 * 64 and not a.flags.owndata


def test_large_work_arrays_ask_for_huge_pages(monkeypatch):
    # posix_memalign's memory is not NumPy's, which asks for huge pages itself
    from gbdnn import kernels

    calls = []
    monkeypatch.setattr(kernels, "_MADVISE", lambda *args: calls.append(args) or 0)
    # over RECYCLE_BYTES: never one kept for reuse
    big = kernels.aligned_empty(kernels.RECYCLE_BYTES // (8 * 1029) + 1, 1029, np.float64)
    small = kernels.aligned_empty(61, 1029, np.float64)
    assert big.ctypes.data % kernels.ALIGNMENT == 0 and small.ctypes.data % kernels.ALIGNMENT == 0
    # the whole huge pages inside the array, not more
    ((start, length, advice),) = calls
    assert (
        advice == kernels.MADV_HUGEPAGE
        and start % kernels.HUGE_PAGE == length % kernels.HUGE_PAGE == 0
    )
    assert big.ctypes.data <= start < big.ctypes.data + kernels.HUGE_PAGE
    assert big.ctypes.data + big.nbytes - kernels.HUGE_PAGE < start + length
    assert start + length <= big.ctypes.data + big.nbytes
    big[...] = 2.0  # writable, and SuiteSparse takes it over and frees it as any other
    entries = big.size
    m = kernels.give(big, gb.dtypes.FP64)
    assert m.reduce_scalar().new().value == 2.0 * entries
    kernels.release(m)


def test_tiles_without_posix_memalign(monkeypatch):
    from gbdnn import kernels

    monkeypatch.setattr(kernels, "_MEMALIGN", None)  # as on Windows
    a = kernels.aligned_zeros(5, 3, np.float64)
    assert a.shape == (5, 3) and a.dtype == np.float64 and a.flags.owndata and not a.any()


def test_work_arrays_are_recycled_per_thread_within_a_budget(monkeypatch):
    import threading

    from gbdnn import kernels

    monkeypatch.setattr(kernels, "_LOCAL", kernels._ThreadState())  # nothing kept by earlier tests
    a = kernels.aligned_empty(64, 1024, np.float32)
    address = a.ctypes.data
    kernels.recycle(a)
    seen = []
    thread = threading.Thread(  # another thread does not get this thread's arrays
        target=lambda: seen.append(kernels.aligned_empty(64, 1024, np.float32).ctypes.data)
    )
    thread.start()
    thread.join()
    assert seen[0] != address
    assert kernels.aligned_empty(64, 1024, np.float64).ctypes.data != address  # other dtype
    assert kernels.aligned_empty(1024, 64, np.float32).ctypes.data != address  # other shape
    b = kernels.aligned_empty(64, 1024, np.float32)
    assert b.ctypes.data == address and b.flags.owndata
    assert kernels.aligned_empty(64, 1024, np.float32).ctypes.data != address  # taken once
    # not kept: views, arrays off the alignment, and arrays beyond the budget alone
    kernels.recycle(b[:32])
    kernels.recycle(np.empty(64 * 1024 + 1, np.float32)[1:].reshape(64, 1024))
    big = kernels.aligned_empty(kernels.RECYCLE_BYTES // 4096 + 1, 1024, np.float32)
    kernels.recycle(big)
    assert kernels.aligned_empty(64, 1024, np.float32).ctypes.data != address
    assert kernels.aligned_empty(*big.shape, np.float32).ctypes.data != big.ctypes.data
    # within the budget, the shapes used longest ago make room for new ones
    quarter = kernels.RECYCLE_BYTES // 4 // 4096  # rows of 1024 FP32 in a quarter
    old = [kernels.aligned_empty(quarter, 1024, np.float32) for _ in range(4)]
    addresses = [a.ctypes.data for a in old]
    for a in old:
        kernels.recycle(a)  # the whole budget, one shape
    new = kernels.aligned_empty(quarter, 512, np.float32)
    kernels.recycle(new)  # half a quarter: the oldest array of the old shape goes
    assert kernels.aligned_empty(quarter, 512, np.float32).ctypes.data == new.ctypes.data
    reused = {kernels.aligned_empty(quarter, 1024, np.float32).ctypes.data for _ in range(4)}
    assert len(reused & set(addresses)) == 3 and addresses[0] not in reused
    kept = kernels._recycled()
    assert sum(a.nbytes for arrays in kept.values() for a in arrays) <= kernels.RECYCLE_BYTES


def test_zero_matrices_are_new_full_and_their_own(monkeypatch):
    # small zero matrices are copies of one kept per thread and shape: a result written
    # into must never show in the next one
    from gbdnn import kernels

    monkeypatch.setattr(kernels, "_LOCAL", kernels._ThreadState())
    for dtype in (gb.dtypes.FP32, gb.dtypes.FP64):
        first = kernels._zeros(dtype, 3, 50)
        first[1, 7] = 2.5
        first(gb.binary.plus) << first  # in place, as the sparse kernel accumulates
        second = kernels._zeros(dtype, 3, 50)
        assert second.dtype == dtype and second.shape == (3, 50)
        assert second.ss.format == "fullr" and not second.ss.is_iso
        np.testing.assert_array_equal(second.to_dense(), np.zeros((3, 50)))
        assert first[1, 7].new().value == 5.0
    for ncols in range(1, 2 * kernels.ZERO_SHAPES):  # only the last shapes are kept
        kernels._zeros(gb.dtypes.FP32, 1, ncols)
    kept = kernels._LOCAL.zeros
    assert len(kept) == kernels.ZERO_SHAPES and ("FP32", 1, 2 * kernels.ZERO_SHAPES - 1) in kept
    big = kernels.ZERO_COPY_BYTES // 4 + 1  # FP32 entries: made afresh, not kept
    z = kernels._zeros(gb.dtypes.FP32, 1, big)
    assert z.ss.format == "fullr" and z.reduce_scalar().new().value == 0
    assert ("FP32", 1, big) not in kept


def test_numpy_inputs_are_copied_never_taken_over():
    # a dense NumPy input is handed to GraphBLAS as a copy (or as the cast): the caller's
    # array keeps its memory and its values, and later changes to it do not reach the model
    from gbdnn.convert import to_matrix
    from gbdnn.dtypes import value_type

    rng = np.random.default_rng(30)
    for x in (
        rng.normal(size=(4, 6)).astype(np.float32),  # the model's type: copied
        rng.normal(size=(4, 6)),  # cast
        rng.normal(size=(6, 4)).astype(np.float32).T,  # F-ordered: made C-ordered
        rng.normal(size=(4, 12)).astype(np.float32)[:, ::2],  # strided view
    ):
        before = x.copy()
        owned = x.flags.owndata
        m = to_matrix(x, value_type("float32"), "X")
        assert x.flags.owndata == owned and x.flags.writeable
        np.testing.assert_array_equal(x, before)
        x[...] = 7
        np.testing.assert_array_equal(m.to_dense(), before.astype(np.float32))


@pytest.mark.parametrize("batch_size", [None, 7])
@pytest.mark.parametrize("output", ["graphblas", "numpy"])
def test_intermediates_are_released_but_never_the_input_or_result(monkeypatch, batch_size, output):
    # python-graphblas matrices live until the cyclic garbage collector runs: the runner
    # frees the entries of every matrix it made and no longer uses, and only those
    from gbdnn import kernels, runner

    rng = np.random.default_rng(21)
    weights = [rng.normal(size=(24, 24)) * (rng.random((24, 24)) < 0.4) for _ in range(3)]
    biases = [rng.normal(size=24) for _ in range(3)]
    layers = []
    for w, b, path in zip(weights, biases, ("sparse", "dense", "blas"), strict=True):
        layers += [gbdnn.Linear(w, bias=b, dtype="float64", path=path), gbdnn.ReLU()]
    model = gbdnn.Sequential(layers)
    x = np.abs(rng.normal(size=(20, 24)))
    xm = gb.Matrix.from_dense(x)
    before = xm.dup()
    released = []

    def spy(m):
        released.append(m)
        kernels.release(m)

    monkeypatch.setattr(runner, "release", spy)
    got = model.predict(xm, output=output, batch_size=batch_size, threads=1)
    assert xm.isequal(before)  # the caller's matrix keeps every entry
    assert released and all(m.nvals == 0 and m is not xm for m in released)
    dense = got if output == "numpy" else got.to_dense(fill_value=0)
    ref = x
    for w, b in zip(weights, biases, strict=True):
        ref = np.maximum(ref @ w + b, 0)
    np.testing.assert_allclose(dense, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_kernel_results_do_not_share_recycled_memory(dtype):
    # the dense kernel reuses its work arrays (X', tiles of Z'); every result it returns
    # must stay its own while later calls run: one unpadded tile (Z stored by column), a
    # padded one, several tiles, and an input stored by column
    rng = np.random.default_rng(16)
    w = rng.normal(size=(48, 48)) * (rng.random((48, 48)) < 0.3)
    model = gbdnn.Sequential([gbdnn.Linear(w, dtype=dtype, path="dense")])
    inputs = [rng.normal(size=(rows, 48)) for rows in (32, 32, 20, 700, 700, 16)]
    inputs.append(inputs[0] + 1)
    results = []
    for i, x in enumerate(inputs):
        xm = gb.Matrix.from_dense(x.astype(dtype))
        if i == len(inputs) - 1:
            xm.ss.config["format"] = "by_col"
            assert xm.ss.format == "fullc"
        results.append(model.predict(xm, threads=1))
    cast = w.astype(dtype).astype(np.float64)
    for x, got in zip(inputs, results, strict=True):
        expected = x.astype(dtype).astype(np.float64) @ cast
        np.testing.assert_allclose(got.to_dense(fill_value=0), expected, **TOL[dtype])


@pytest.mark.parametrize("by_column", [False, True])
@pytest.mark.parametrize("fmt", ["full", "bitmap", "sparse", "hypersparse", "empty"])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_dense_rows_fills_missing_entries_with_zeros(fmt, dtype, by_column):
    from gbdnn import kernels

    rng = np.random.default_rng(11)
    x = (rng.normal(size=(9, 40)) * 10).astype(dtype)
    if fmt != "full":
        x[
            rng.random(x.shape) < (1.0 if fmt == "empty" else 0.95 if fmt == "hypersparse" else 0.6)
        ] = 0
    m = Matrix.from_dense(x, missing_value=None if fmt == "full" else 0)
    if fmt in ("bitmap", "sparse", "hypersparse"):
        m.ss.config["sparsity_control"] = fmt
    names = {"full": "fullr", "bitmap": "bitmapr", "sparse": "csr", "hypersparse": "hypercsr"}
    if by_column:  # a user's matrix may be stored by column
        m.ss.config["format"] = "by_col"
        names = {"full": "fullc", "bitmap": "bitmapc", "sparse": "csc", "hypersparse": "hypercsc"}
    assert fmt == "empty" or m.ss.format == names[fmt]
    got = kernels.dense_rows(m, np.dtype(np.float32))
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x.astype(np.float32))
    flipped = kernels.dense_rows(m, np.dtype(np.float32), transpose=True)
    assert flipped.flags.c_contiguous and flipped.flags.owndata
    np.testing.assert_array_equal(flipped, x.T.astype(np.float32))
    stored = kernels.dense_stored(m, np.dtype(np.float64))  # no transpose: F-ordered if by column
    assert stored.flags.f_contiguous if by_column else stored.flags.c_contiguous
    np.testing.assert_array_equal(stored, x.astype(np.float64))
    # into rows 2:11 of a larger result, and into an F-ordered array, cast on the way
    for block in (np.full((12, 40), -1.0), np.full((12, 40), -1.0, order="F")):
        kernels.dense_into(m, block[2:11])
        np.testing.assert_array_equal(block[2:11], x.astype(np.float64))
        assert (block[:2] == -1).all() and (block[11:] == -1).all()
    for shape in [(10, 40), (9, 39), (40, 9)]:  # never a part filled, nor one too small
        with pytest.raises(gbdnn.ShapeError, match=r"out has shape .* but X has shape \(9, 40\)"):
            kernels.dense_into(m, np.zeros(shape))


@pytest.mark.parametrize("shape", [(33, 70), (1, 1)])
@pytest.mark.parametrize("by_column", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int8"])
def test_dense_rows_of_a_bitmap_ignores_values_where_it_has_no_entry(dtype, by_column, shape):
    # a bitmap's values at positions without an entry are undefined: NaN here must not
    # leak, also where there is one value in all (1 x 1, no entry: not iso)
    from gbdnn import kernels

    rng = np.random.default_rng(12)
    present = rng.random(shape) < (0.5 if shape != (1, 1) else 0)
    x = (rng.normal(size=present.shape) * 10).astype(dtype)
    values = np.where(present, x, np.nan if dtype.startswith("float") else 7).astype(dtype)
    m = Matrix.ss.import_bitmapr(bitmap=present, values=values)
    if by_column:
        m.ss.config["sparsity_control"] = ["bitmap"]  # (one without entries would turn CSC)
        m.ss.config["format"] = "by_col"
    assert m.ss.format == ("bitmapc" if by_column else "bitmapr")
    want = np.where(present, x, 0).astype(dtype)
    for transpose in (False, True):
        got = kernels.dense_rows(m, np.dtype(dtype), transpose=transpose)
        assert got.flags.c_contiguous and got.flags.owndata and got.dtype == dtype
        assert got.ctypes.data % kernels.ALIGNMENT == 0
        np.testing.assert_array_equal(got, want.T if transpose else want)
    np.testing.assert_array_equal(m.to_dense(fill_value=0), want)  # the input is untouched
    # one value for every entry (iso)
    iso = Matrix.ss.import_bitmapr(bitmap=present, values=np.array([3], dtype), is_iso=True)
    np.testing.assert_array_equal(kernels.dense_rows(iso, np.dtype(dtype)), 3 * present)


@pytest.mark.parametrize(
    "shape", [(0, 3), (1, 5), (130, 1), (300, 255), (300, 257), (128, 256), (37, 1030), (0, 300)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int8])
def test_blocked_transpose(shape, dtype):
    # blocks below TRANSPOSE_STRIP_COLUMNS columns, strips of rows (a partial last one) above
    from gbdnn import kernels

    a = np.random.default_rng(14).normal(size=shape).astype(dtype)
    out = np.full(shape[::-1], 99, dtype)
    kernels.transpose_into(out, a)
    np.testing.assert_array_equal(out, a.T)


@pytest.mark.parametrize("following", ["sparse", "dense", "dot", "blas"])
@pytest.mark.parametrize("relu", [False, True])
def test_dense_kernel_output_stored_by_column_feeds_every_kernel(following, relu):
    # the dense kernel hands a batch of one unpadded tile back stored by column (its memory
    # is the Z' it computed); bias, ReLU, the next layer's kernels and every output family
    # must read it as rows
    from gbdnn import kernels

    rng = np.random.default_rng(15)
    w1, w2 = rng.normal(size=(40, 33)), rng.normal(size=(33, 9))
    b1, b2 = rng.normal(size=33), rng.normal(size=9)
    x = rng.normal(size=(32, 40))  # two tiles of 16 rows, or one of 32
    wt = kernels.sparse_format(gb.Matrix.from_dense(w1.T.copy()))
    z = kernels.plus_times_dense(gb.Matrix.from_dense(x), wt)
    assert z.ss.format == "fullc"
    np.testing.assert_allclose(z.to_dense(), x @ w1, rtol=1e-12, atol=1e-12)
    padded = kernels.plus_times_dense(gb.Matrix.from_dense(x[:20]), wt)  # transposed back
    assert padded.ss.format == "fullr"
    np.testing.assert_array_equal(padded.to_dense(), z.to_dense()[:20])

    hidden = x @ w1 + b1
    layers = [gbdnn.Linear(w1, b1, dtype="float64", path="dense")]
    if relu:
        hidden = np.maximum(hidden, 0)
        layers.append(gbdnn.ReLU())
    layers.append(gbdnn.Linear(w2, b2, dtype="float64", path=following))
    model = gbdnn.Sequential(layers)
    expected = hidden @ w2 + b2
    for batch_size in (None, 16, 7):  # by column: one batch, two stacked; by row: five
        got = model.predict(x, batch_size=batch_size, threads=2)
        assert got.flags.c_contiguous
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        as_graphblas = model.predict(x, batch_size=batch_size, threads=2, output="graphblas")
        np.testing.assert_array_equal(as_graphblas.to_dense(fill_value=0), got)
        as_scipy = model.predict(x, batch_size=batch_size, threads=2, output="scipy")
        np.testing.assert_array_equal(as_scipy.toarray(), got)


def test_blas_layers_run_as_one_batch():
    # BLAS shares a batch alone with the helper; two batches would read the weight twice
    rng = np.random.default_rng(12)
    dense = gbdnn.Linear(rng.normal(size=(512, 512)))
    sparse = gbdnn.Linear(rng.normal(size=(512, 512)) * (rng.random((512, 512)) < 0.02))
    assert dense.row_seconds() == 0.0 and gbdnn.ReLU().row_seconds() == 0.0
    assert sparse.row_seconds() == pytest.approx(
        gbdnn.tuning.current_costs().dense_mac * sparse.nnz
    )
    model = gbdnn.Sequential([sparse, gbdnn.ReLU(), dense])
    assert model.row_seconds() == sparse.row_seconds()


@pytest.mark.parametrize(
    ("threads", "nrows", "alone"), [(2, 4, True), (1, 4, False), (2, 64, False)]
)
def test_a_batch_alone_prices_blas_alone(monkeypatch, threads, nrows, alone):
    # a batch that runs alone with a core to spare has BLAS to itself; batch threads
    # (or threads=1, leaving no core to spare) price it as taking turns
    from gbdnn import tuning

    rng = np.random.default_rng(30)
    w = rng.normal(size=(64, 32)) * (rng.random((64, 32)) < 0.5)
    layer = gbdnn.Linear(w, dtype="float64")
    asked = []
    real_contenders = tuning.contenders

    def contenders(*args, **kwargs):  # asked by a batch's product (a later one's is kept)
        asked.append(kwargs["alone"])
        return real_contenders(*args, **kwargs)

    monkeypatch.setattr(tuning, "contenders", contenders)
    # enough work per row for batch threads at 64 rows, not at 4
    monkeypatch.setattr(layer, "row_seconds", lambda: 0.001)
    x = rng.normal(size=(nrows, 64))
    got = gbdnn.Sequential([layer]).predict(x, threads=threads, batch_size=nrows // 2)
    np.testing.assert_allclose(got, x @ w, rtol=1e-12, atol=1e-12)
    expected = alone and gbdnn.kernels.helper.SUPPORTED
    assert asked  # (two batch threads may both ask before either keeps the answer)
    assert set(asked) == {expected}


def test_small_inputs_run_batch_after_batch_on_the_callers_thread():
    import threading

    from gbdnn import kernels, runner
    from gbdnn.dtypes import value_type

    seen, spare = [], []

    def stage(z):
        seen.append((threading.get_ident(), kernels._LOCAL.inside))
        spare.append(kernels.spare_core())
        return z

    def run(row_seconds, threads=2):
        seen.clear()
        spare.clear()
        runner.run(
            [stage],
            np.ones((6, 3)),
            in_features=3,
            out_features=3,
            max_width=3,
            vtype=value_type("float32"),
            batch_size=2,
            threads=threads,
            row_seconds=lambda: row_seconds,
        )
        return seen

    # little work: three batches one after another on the caller's thread, the other
    # core spare for the dot kernel's helper thread
    assert run(0.0) == [(threading.get_ident(), True)] * 3
    assert spare == [kernels.helper.SUPPORTED] * 3
    assert run(0.0, threads=1) == [(threading.get_ident(), True)] * 3 and not any(spare)
    # enough work: batch threads; every batch in its thread's one-thread context, no core
    # to spare
    busy = run(1.0)
    assert len(busy) == 3 and {inside for _, inside in busy} == {True}
    assert threading.get_ident() not in {ident for ident, _ in busy}
    assert not any(spare) and not kernels.spare_core()


def test_contenders_are_the_kernels_near_the_cheapest_estimate():
    from gbdnn import tuning

    costs = tuning.Costs()
    # 64 rows through 4096x4096 at 80 %: the dense kernel and BLAS within the margin,
    # alone or busy, the cheapest first
    at_80 = (64, 64 * 4096, 4096, 4096, 4096 * 819, costs)
    question = (64, 64 * 4096, (4096, 4096, 4096 * 819), costs)
    for alone in (False, True):
        estimate = tuning.estimates(*at_80, alone=alone)
        rivals = tuning.contenders(*question, alone=alone)
        assert len(rivals) >= 2 and set(rivals) <= set(tuning.KERNELS)
        assert [estimate[k] for k in rivals] == sorted(estimate[k] for k in rivals)
        assert rivals[0] == tuning.choose("auto", *at_80, alone=alone)
        least = estimate[rivals[0]]
        for kernel in tuning.KERNELS:
            near = estimate[kernel] <= tuning.TRIAL_MARGIN * least
            assert (kernel in rivals) == near
    # the layer's own kernels only (integer layers have no BLAS kernel)
    no_blas = ("sparse", "dense", "dot")
    assert "blas" not in tuning.contenders(*question, kernels=no_blas)
    # short products are not tried: the cheapest alone
    small = (1, 1024, 1024, 1024, 10486, costs)
    assert min(tuning.estimates(*small).values()) < tuning.TRIAL_MIN_SECONDS
    only = tuning.contenders(1, 1024, (1024, 1024, 10486), costs)
    assert only == (tuning.choose("auto", *small),)
    with pytest.raises(gbdnn.ParameterError, match="dims must be"):
        tuning.contenders(1, 1024, (1024, 1024), costs)


def test_sparse_batches_are_priced_coarsely_so_their_choice_is_cached():
    from gbdnn import tuning

    # rounded to 5 significant bits: at most 1/32 off, 16 values an octave
    values = np.geomspace(1e-4, 1e6, 4999)
    rounded = np.array([tuning.coarse(v) for v in values])
    assert np.all(np.abs(rounded / values - 1) <= 1 / 32)
    assert len(np.unique(rounded)) == pytest.approx(10 * np.log2(10) * 16, abs=4)
    assert tuning.coarse(0) == 0 and tuning.coarse(24) == 24 and tuning.coarse(1000) == 992
    # full batches are priced exactly, sparse ones rounded but never as full
    assert tuning.priced_entries(64 * 1024, 64, 1024) == 64 * 1024
    assert tuning.priced_entries(64 * 1024 - 1, 64, 1024) == 64 * 1024 - 1
    assert tuning.priced_entries(0, 64, 1024) == 0
    assert tuning.priced_entries(1000, 64, 1024) == 992
    assert tuning.priced_entries(1020, 1, 1021) == 1020  # 1024 rounded: never priced as full
    # one row of a Graph Challenge-like layer: batches of nearby density, one estimate
    rng = np.random.default_rng(5)
    w = rng.normal(size=(1024, 1024)) * (rng.random((1024, 1024)) < 0.03)
    layer = gbdnn.Linear(w, -0.3)
    tuning._ranked.cache_clear()
    for nnz in range(100, 110):
        x = np.zeros((1, 1024))
        x[0, rng.choice(1024, nnz, replace=False)] = 1.0
        np.testing.assert_allclose(layer(x), x @ w - 0.3, rtol=1e-5, atol=1e-5)
    assert tuning._ranked.cache_info().misses <= 4


def test_an_automatic_layer_keeps_its_pick_for_each_batch_as_priced(monkeypatch):
    import dataclasses

    from gbdnn import layers, tuning

    rng = np.random.default_rng(23)
    w = random_weights(rng, 256, 128, density=0.05)
    layer = gbdnn.Linear(w, dtype="float64")
    asked = []
    real_contenders = tuning.contenders

    def contenders(*args, **kwargs):
        asked.append(args[:2])  # (rows, entries as priced)
        return real_contenders(*args, **kwargs)

    monkeypatch.setattr(tuning, "contenders", contenders)

    def check(x):  # the product is right whether the pick was kept or made
        np.testing.assert_allclose(layer(x, threads=1), x @ w, rtol=1e-12, atol=1e-12)

    x = rng.normal(size=(3, 256))
    for _ in range(3):
        check(x)
    assert asked == [(3, 3 * 256)]  # the same batch again: the pick kept
    check(rng.normal(size=(3, 256)))
    assert len(asked) == 1  # another full batch of three rows: the same question
    check(rng.normal(size=(5, 256)))
    assert asked[1:] == [(5, 5 * 256)]  # another number of rows: asked
    # a sparse product records the entries it made per multiply-add (the spread): a
    # batch after a new spread is asked again, then kept for that spread
    asked.clear()
    layer._spread = 0.5
    check(x)
    check(x)
    assert len(asked) == 1
    relu = np.where(rng.random((3, 256)) < 0.9, 0, x)
    for _ in range(3):
        check(relu)
    n = len(asked)
    check(relu)
    assert len(asked) == n
    # other costs (calibrated again), and new weights, are asked again
    asked.clear()
    other = dataclasses.replace(tuning.current_costs(), sparse_call=1e-3)
    monkeypatch.setattr(layer, "_costs", lambda: other)
    layer._spread = None  # (as new weights start)
    check(x)
    check(x)
    assert len(asked) == 1
    w = random_weights(rng, 256, 128, density=0.05)
    layer.set_weight(w)
    check(x)
    assert len(asked) == 2
    # a layer keeps at most MAX_PICKS picks, then starts afresh
    monkeypatch.setattr(layers, "MAX_PICKS", 2)
    for nrows in (1, 2, 4, 6):
        check(rng.normal(size=(nrows, 256)))
        assert 1 <= len(layer._picks) <= 2


def test_a_trial_keeps_the_fastest_median_and_releases_the_rest(monkeypatch):
    import time

    from gbdnn import tuning

    released, order = [], []
    monkeypatch.setattr(tuning, "release", released.append)
    seconds = {"blas": 0.004, "dense": 0.001, "sparse": 0.002}

    def call(name):
        def run():
            order.append(name)
            time.sleep(seconds[name])
            return f"{name} {len(order)}"

        return run

    best, out = tuning.trial({name: call(name) for name in seconds})
    per_round = 3 * (1 + tuning.TRIAL_CALLS)
    # (dense runs first in the last round)
    assert best == "dense"
    assert out == f"dense {(tuning.TRIAL_ROUNDS - 1) * per_round + 1 + tuning.TRIAL_CALLS}"
    assert len(order) == tuning.TRIAL_ROUNDS * per_round
    # BLAS last in every round (its threads spin after it), each kernel's calls together
    one_round = order[:per_round]
    assert one_round[-(1 + tuning.TRIAL_CALLS) :] == ["blas"] * (1 + tuning.TRIAL_CALLS)
    assert one_round == order[per_round : 2 * per_round]
    block = 1 + tuning.TRIAL_CALLS
    assert one_round == [name for name in one_round[::block] for _ in range(block)]
    # every result but the winner's last one is released, once
    assert len(released) == len(order) - 1 and out not in released
    assert len(set(released)) == len(released)
    with pytest.raises(gbdnn.ParameterError, match="at least one call"):
        tuning.trial({})


def test_an_automatic_layer_tries_near_kernels_once_per_kind_of_batch(monkeypatch):
    import time

    from gbdnn import blas, tuning

    rng = np.random.default_rng(17)
    w = random_weights(rng, 96, 80, density=0.3).astype(np.float32)
    layer = gbdnn.Linear(w, rng.normal(size=80), path="auto")
    monkeypatch.setattr(tuning, "contenders", lambda *args, **kwargs: ("blas", "dense"))
    plus_times_blas, calls = blas.plus_times_blas, []

    def slow_blas(x, wd, **kwargs):  # BLAS made the slower of the two
        calls.append(x.shape[0])
        time.sleep(0.005)
        return plus_times_blas(x, wd, **kwargs)

    monkeypatch.setattr(blas, "plus_times_blas", slow_blas)
    x = rng.normal(size=(32, 96)).astype(np.float32)
    expected = x.astype(np.float64) @ w + layer.bias
    first = layer(x, threads=1)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)
    assert layer._tried == {(32, 10, False): "dense"}
    assert len(calls) == tuning.TRIAL_ROUNDS * (1 + tuning.TRIAL_CALLS)
    # the next batch of that kind goes to the kernel the trial found fastest, no trial;
    # one of another kind (half its entries stored) is tried
    calls.clear()
    np.testing.assert_array_equal(layer(x, threads=1), first)
    assert not calls
    half = np.where(rng.random(x.shape) < 0.5, x, 0)
    np.testing.assert_allclose(
        layer(sp.csr_matrix(half), threads=1, output="numpy"),
        half.astype(np.float64) @ w + layer.bias,
        rtol=1e-5,
        atol=1e-5,
    )
    assert layer._tried[(32, 10 * np.count_nonzero(half) // half.size, False)] == "dense"
    assert calls
    # a fixed path is never tried; new weights forget the trials
    layer.path = "blas"
    calls.clear()
    layer(x, threads=1)
    assert calls == [32]
    layer.path = "auto"
    layer._set_stored(layer._stored)
    assert layer._tried == {}
