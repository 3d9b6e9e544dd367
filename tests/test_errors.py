"""Bad input to the API gets a clear gbdnn error naming the problem."""

import graphblas as gb
import numpy as np
import pytest
import scipy.sparse as sp

import gbdnn


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    return gbdnn.Sequential(
        [gbdnn.Linear(rng.normal(size=(4, 3)), -0.1), gbdnn.ReLU(), gbdnn.Linear(np.ones((3, 2)))]
    )


def test_layer_widths_must_chain():
    with pytest.raises(gbdnn.ShapeError, match=r"layer 2 .* expects 5 inputs but receives 3"):
        gbdnn.Sequential(
            [gbdnn.Linear(np.ones((4, 3))), gbdnn.ReLU(), gbdnn.Linear(np.ones((5, 2)))]
        )


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.ones((2, 5)), "X has 5 columns but the model expects 4"),
        (np.ones(4), "two-dimensional"),
        (np.ones((2, 4, 1)), "two-dimensional"),
        (sp.csr_matrix(np.ones((2, 3))), "X has 3 columns"),
        (gb.Matrix(float, 2, 7), "X has 7 columns"),
    ],
)
def test_input_shape_mismatch(model, x, match):
    with pytest.raises(gbdnn.ShapeError, match=match):
        model(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(model, bad):
    x = np.zeros((3, 4))
    x[1, 2] = bad
    with pytest.raises(gbdnn.NonFiniteError, match="X contains NaN or Inf"):
        model(x)
    with pytest.raises(gbdnn.NonFiniteError):
        model(sp.csr_matrix(x))
    with pytest.raises(gbdnn.NonFiniteError):
        model(gb.Matrix.from_dense(x, missing_value=0))


@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_check_of_a_bitmap_input(model, dtype, small):
    # a bitmap's values where it has no entry are undefined: NaN there is no error,
    # NaN in an entry is; finite values whose sum overflows are no error either.
    # Small bitmaps are summed by SuiteSparse, large ones in NumPy: both sizes
    from gbdnn.convert import check_finite_matrix
    from gbdnn.kernels import BITMAP_SUM_MIN_BYTES

    rows = 40 if small else BITMAP_SUM_MIN_BYTES // (4 * np.dtype(dtype).itemsize) + 1
    rng = np.random.default_rng(3)
    present = rng.random((rows, 4)) < 0.5
    x = np.where(present, rng.normal(size=present.shape), 0).astype(dtype)
    garbage = np.where(present, x, np.nan).astype(dtype)
    bitmap = gb.Matrix.ss.import_bitmapr(bitmap=present, values=garbage)
    assert bitmap.ss.format == "bitmapr"
    np.testing.assert_allclose(model(bitmap, output="numpy"), model(x), rtol=1e-5, atol=1e-6)
    huge = gb.Matrix.ss.import_bitmapr(
        bitmap=present, values=np.where(present, np.finfo(dtype).max, np.nan).astype(dtype)
    )
    check_finite_matrix(huge, "X")  # the sum overflows, every entry is finite
    garbage[present.nonzero()[0][0], present.nonzero()[1][0]] = np.inf
    with pytest.raises(gbdnn.NonFiniteError, match="X contains NaN or Inf"):
        model(gb.Matrix.ss.import_bitmapr(bitmap=present, values=garbage))


@pytest.mark.parametrize("by_row", [True, False])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_all_finite_of_large_bitmaps(by_row, bad):
    # the NumPy check of large bitmaps against NumPy on the entries alone: finite
    # undefined values (the one-pass sum), huge ones (it overflows) and NaN ones (the
    # entries are checked one by one), no bad entry or one anywhere; iso bitmaps;
    # stored by row and by column
    from gbdnn.kernels import BITMAP_SUM_MIN_BYTES, all_finite

    rng = np.random.default_rng(5)
    shape = (BITMAP_SUM_MIN_BYTES // 8 // 64 + 1, 64)
    present = rng.random(shape) < 0.3
    rows, cols = present.nonzero()
    load = gb.Matrix.ss.import_bitmapr if by_row else gb.Matrix.ss.import_bitmapc
    for undefined in (0.0, 1e300, np.nan):
        for k in (None, 0, len(rows) // 2, len(rows) - 1):
            values = np.where(present, rng.normal(size=shape), undefined)
            if k is not None:
                values[rows[k], cols[k]] = bad
            bitmap = load(bitmap=present, values=values)
            assert bitmap.ss.format == ("bitmapr" if by_row else "bitmapc")
            assert all_finite(bitmap) == np.isfinite(values[present]).all() == (k is None)
    for value in (1.5, bad):
        iso = load(bitmap=present, values=np.array([value]), is_iso=True)
        assert iso.ss.is_iso and iso.ss.format.startswith("bitmap")
        assert all_finite(iso) == np.isfinite(value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_and_bias(bad):
    w = np.ones((3, 3))
    w[0, 1] = bad
    with pytest.raises(gbdnn.NonFiniteError, match="weight contains NaN or Inf"):
        gbdnn.Linear(w)
    with pytest.raises(gbdnn.NonFiniteError, match="weight"):
        gbdnn.Linear(sp.csr_matrix(w))
    with pytest.raises(gbdnn.NonFiniteError, match="bias contains NaN or Inf"):
        gbdnn.Linear(np.ones((3, 3)), [0.0, bad, 1.0])


def test_bias_length_must_match():
    with pytest.raises(gbdnn.ShapeError, match=r"bias must have shape \(3,\), got \(2,\)"):
        gbdnn.Linear(np.ones((2, 3)), [1.0, 2.0])


@pytest.mark.parametrize(
    "x",
    [np.ones((2, 4), dtype=complex), np.array([["a"] * 4] * 2), np.ones((2, 4), dtype=object)],
)
def test_unsupported_input_dtypes(model, x):
    with pytest.raises(gbdnn.DTypeError, match="not a real number type"):
        model(x)


def test_unsupported_containers_and_dtypes():
    with pytest.raises(gbdnn.DTypeError, match="not list"):
        gbdnn.Linear([[1.0, 2.0]])
    with pytest.raises(gbdnn.DTypeError, match="dtype 'int8' is not supported"):
        gbdnn.Linear(np.ones((2, 2)), dtype="int8")
    with pytest.raises(gbdnn.DTypeError, match="not a real number type"):
        gbdnn.Linear(np.ones((2, 2), dtype=complex))
    with pytest.raises(gbdnn.DTypeError, match="must share one dtype"):
        gbdnn.Sequential(
            [gbdnn.Linear(np.ones((2, 2))), gbdnn.Linear(np.ones((2, 2)), dtype="fp64")]
        )


def test_model_construction_errors():
    with pytest.raises(gbdnn.GbdnnError, match="at least one layer"):
        gbdnn.Sequential([])
    with pytest.raises(gbdnn.GbdnnError, match="at least one Linear"):
        gbdnn.Sequential([gbdnn.ReLU()])
    with pytest.raises(gbdnn.ParameterTypeError, match="layer 0 is a ndarray"):
        gbdnn.Sequential([np.ones((2, 2))])
    with pytest.raises(gbdnn.ParameterError, match="max_value must be finite and positive"):
        gbdnn.ReLU(max_value=-1)
    with pytest.raises(gbdnn.ParameterError, match="max_value must be finite and positive"):
        gbdnn.ReLU(max_value=float("nan"))
    with pytest.raises(gbdnn.ParameterError, match="path must be one of"):
        gbdnn.Linear(np.eye(2), path="gpu")
    # parameter errors are also the built-in exceptions users catch
    assert issubclass(gbdnn.ParameterError, ValueError)
    assert issubclass(gbdnn.ParameterTypeError, TypeError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"threads": -1}, "threads must be a positive integer"),
        ({"threads": 1.5}, "threads must be a positive integer"),
        ({"output": "torch"}, "output must be one of"),
    ],
)
def test_bad_options(model, kwargs, match):
    with pytest.raises(gbdnn.ParameterError, match=match):
        model(np.ones((2, 4)), **kwargs)


def test_inputs_are_not_modified(model):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    before = x.copy()
    model(x)
    np.testing.assert_array_equal(x, before)
    g = gb.Matrix.from_dense(x, missing_value=0)
    nvals = g.nvals
    model(g)
    assert g.nvals == nvals and np.array_equal(g.to_dense(fill_value=0), before)


def test_graphblas_inputs_are_not_modified_by_in_place_stages():
    g = gb.Matrix.from_dense(np.array([[-1.0, 2.0], [3.0, -4.0]]), missing_value=0)
    gbdnn.ReLU()(g)
    gbdnn.Sequential([gbdnn.ReLU(), gbdnn.Linear(np.eye(2), dtype="float64")])(g)
    assert g.nvals == 4 and g[0, 0].new().value == -1.0
