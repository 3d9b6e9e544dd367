"""Conversions between NumPy / SciPy arrays and ``graphblas.Matrix``.

Inputs are validated here once (two dimensions, a real value type, finite
values) so that nothing malformed reaches GraphBLAS. Each conversion copies
the data at most once: into the GraphBLAS matrix, casting on the way when the
value type differs.
"""

from __future__ import annotations

import math
from typing import Literal

import graphblas as gb
import numpy as np
import scipy.sparse as sp
from graphblas import Matrix, select

from .dtypes import ValueType, check_real_dtype
from .errors import DTypeError, NonFiniteError, ShapeError
from .kernels import all_finite, give

ArrayLike = np.ndarray | sp.spmatrix | sp.sparray | Matrix
Family = Literal["numpy", "scipy", "graphblas"]

#: A dense NumPy input with at most this fraction of nonzeros is stored sparse.
SPARSE_INPUT_DENSITY = 0.5


def family_of(x: object, name: str = "X") -> Family:
    """Name the array family of ``x``: ``"numpy"``, ``"scipy"`` or ``"graphblas"``."""
    if isinstance(x, Matrix):
        return "graphblas"
    if sp.issparse(x):
        return "scipy"
    if isinstance(x, np.ndarray):
        return "numpy"
    raise DTypeError(
        f"{name} must be a numpy.ndarray, a scipy.sparse matrix or a graphblas.Matrix, "
        f"not {type(x).__name__}"
    )


def check_finite_matrix(m: Matrix, name: str) -> None:
    """Raise :class:`NonFiniteError` if a floating-point ``m`` stores NaN or Inf."""
    if m.dtype.np_type.kind == "f" and not all_finite(m):
        raise NonFiniteError(f"{name} contains NaN or Inf values")


def _check_values(values: np.ndarray, name: str) -> None:
    check_real_dtype(values.dtype, name)
    if values.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = values.sum()  # finite only if every value is (or it overflowed)
    if not math.isfinite(total) and not np.isfinite(values).all():
        raise NonFiniteError(f"{name} contains NaN or Inf values")


def to_matrix(
    x: ArrayLike,
    vtype: ValueType,
    name: str,
    *,
    check_finite: bool = True,
    drop_zeros: bool = False,
) -> Matrix:
    """Convert a 2-D array of any supported family to a ``graphblas.Matrix``.

    Parameters
    ----------
    x : numpy.ndarray, scipy.sparse matrix or array, or graphblas.Matrix
        The data, two-dimensional, of a real (or bool) value type.
    vtype : ValueType
        The value type of the result.
    name : str
        How error messages name ``x``.
    check_finite : bool, default True
        Reject NaN and Inf.
    drop_zeros : bool, default False
        Never store zeros (used for weights). When False, a dense NumPy input
        is stored sparse only if at most ``SPARSE_INPUT_DENSITY`` of it is
        nonzero, and full otherwise.

    Returns
    -------
    graphblas.Matrix
        ``x`` itself when it already is a GraphBLAS matrix of the right type
        with nothing to drop; the caller must not modify it.
    """
    family = family_of(x, name)
    if getattr(x, "ndim", 2) != 2:
        raise ShapeError(f"{name} must be two-dimensional, got shape {x.shape}")
    if family == "graphblas":
        same_type = x.dtype == vtype.graphblas
        if not same_type:  # (gbdnn's value types are all real)
            check_real_dtype(x.dtype.np_type, name)
        if check_finite:
            check_finite_matrix(x, name)
        m = x if same_type else x.dup(vtype.graphblas)
        if drop_zeros:
            m = select.valuene(m, 0).new()
        return m
    if family == "scipy":
        csr = sp.csr_array(x)
        if check_finite:
            _check_values(csr.data, name)
        else:
            check_real_dtype(csr.dtype, name)
        if drop_zeros and csr.nnz and not np.all(csr.data):
            csr = csr.copy()
            csr.eliminate_zeros()
        return Matrix.from_csr(
            csr.indptr,
            csr.indices,
            csr.data.astype(vtype.numpy, copy=False),
            ncols=csr.shape[1],
            dtype=vtype.graphblas,
        )
    if check_finite:
        _check_values(x, name)
    else:
        check_real_dtype(x.dtype, name)
    values = np.ascontiguousarray(x, dtype=vtype.numpy)
    if np.shares_memory(values, x):
        values = values.copy()  # a cast or a copy is handed over, never the caller's array
    # (np.count_nonzero of a float array took 2.5-5x as long as of ``values != 0``)
    sparse = drop_zeros or np.count_nonzero(values != 0) <= SPARSE_INPUT_DENSITY * values.size
    full = give(values, vtype.graphblas)
    if sparse:
        # M<M != 0> = M: keep the nonzeros only
        return select.valuene(full, 0).new()
    return full


def dense_float64(x: object, name: str) -> np.ndarray:
    """``x`` (NumPy or SciPy) as a 2-D float64 NumPy array, checked finite."""
    out = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    if out.ndim != 2:
        raise ShapeError(f"{name} must be two-dimensional, got shape {out.shape}")
    if not np.isfinite(out).all():
        raise NonFiniteError(f"{name} contains NaN or Inf values")
    return out


def to_vector(x: object, length: int, vtype: ValueType, name: str) -> np.ndarray:
    """Validate a 1-D vector (or a scalar to broadcast) of ``length`` entries.

    Returns a new NumPy array of type ``vtype``; a ``graphblas.Vector`` counts
    its missing entries as zeros.
    """
    if isinstance(x, gb.Vector):
        x = x.to_dense(fill_value=0)
    arr = np.asarray(x)
    check_real_dtype(arr.dtype, name)
    if arr.ndim == 0:
        arr = np.full(length, arr)
    if arr.shape != (length,):
        raise ShapeError(f"{name} must have shape ({length},), got {arr.shape}")
    _check_values(arr, name)
    return arr.astype(vtype.numpy, copy=True)


def row_slice(x: ArrayLike, start: int, stop: int) -> ArrayLike:
    """Rows ``start:stop`` of ``x``: a view where the family allows one, ``x`` itself
    when that is all of it."""
    if start == 0 and stop == x.shape[0]:
        return x
    if isinstance(x, Matrix):
        return x[start:stop, :].new()
    return x[start:stop]


def from_matrices(parts: list[Matrix], family: Family, like: object = None) -> ArrayLike:
    """Stack row blocks computed by GraphBLAS into one result of ``family``.

    A SciPy result is CSR and of the same kind (``sparray`` or ``spmatrix``)
    as ``like`` when ``like`` is a SciPy object.
    """
    if family == "graphblas":
        if len(parts) == 1:
            return parts[0]
        # stored like the parts (concatenating across orientations transposes: 2.5x slower)
        out = Matrix(parts[0].dtype, sum(p.nrows for p in parts), parts[0].ncols)
        out.ss.config["format"] = parts[0].ss.config["format"]
        out.ss.concat([[p] for p in parts])
        return out
    if family == "scipy":
        blocks = [gb.io.to_scipy_sparse(p, format="csr") for p in parts]
        out = blocks[0] if len(blocks) == 1 else sp.vstack(blocks, format="csr")
        return sp.csr_matrix(out) if isinstance(like, sp.spmatrix) else sp.csr_array(out)
    raise ValueError(f"unknown family {family!r}")  # numpy is written in place by the runner
