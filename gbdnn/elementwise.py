"""Element-wise kernels after a product: bias, ReLU, clip, scaling.

Each step is one SuiteSparse C call (a python-graphblas expression costs ~10 us
of Python, as much as the product of one row through a Graph Challenge layer)
or, on a full or bitmap matrix, NumPy on its values (:func:`relu`): SuiteSparse's
kernels on a bitmap test each position's flag, a branch the processor mispredicts
on half-dense data, and some operators (``min``, ``round``, casts from integers)
have no prebuilt kernel. Both ways do the same IEEE operations in the same order,
so results are bit-identical whichever a batch takes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from graphblas import Matrix, Vector, binary, select, semiring, unary
from graphblas.dtypes import DataType, lookup_dtype
from graphblas.exceptions import check_status
from suitesparse_graphblas import ffi, lib

from .kernels import (
    empty_matrix,
    give,
    handle,
    plus_assign,
    plus_times_into,
    stored_by_row,
    stores_positions,
    take_positions,
)

#: A full or bitmap matrix of at most this many positions keeps SuiteSparse's kernels
#: (:func:`on_values`): the NumPy way costs ~14 us however small (values taken and
#: handed back). Full FP32 results with a bias, SuiteSparse / NumPy, us: 1 x 1024 8.0 /
#: 17.1, 4 x 1024 16.8 / 20.6, 8 x 1024 28.9 / 26.7, 16 x 1024 52 / 36 (with a clip at
#: 32: 10.7 / 18.4, 22.6 / 22.5, 38.7 / 28.8, 70.5 / 38.8).
NUMPY_MIN_POSITIONS = 4096


def on_values(z: Matrix) -> bool:
    """Whether element-wise steps on ``Z`` are done in NumPy on its values: ``Z`` holds
    a value at every position (full or bitmap) and has more than ``NUMPY_MIN_POSITIONS``.

    SuiteSparse's kernels on a bitmap test each position's flag, a branch half-dense
    data makes the processor mispredict, and some of its operators (``min``,
    ``round``, casts from integers) have no prebuilt kernel; on a small matrix the
    NumPy way's fixed cost is the larger.
    """
    nrows, ncols = z.shape
    return nrows * ncols > NUMPY_MIN_POSITIONS and stores_positions(z)


def add_bias_full(z: Matrix, bias: np.ndarray) -> Matrix:
    """Return ``Z + 1 b'``: the bias reaches every entry, stored or not.

    One addition per entry after the product, as on the stored-entries path.
    ``C`` is stored like ``Z`` (adding across orientations costs a transpose).
    """
    by_row = stored_by_row(z)
    rows = np.broadcast_to(bias, (z.shape[0], bias.size))
    # C = 1 b' (full), then C += Z
    c = give((rows if by_row else rows.T).copy(), lookup_dtype(bias.dtype), by_row=by_row)
    plus_assign(c, z)
    return c


def apply_right(c: Matrix, op: str, a: Matrix, value: float) -> None:
    """``C = op(A, value)`` on the stored entries of ``A``.

    ``op`` names a python-graphblas binary operator ("plus", "min", "times", ...),
    applied in ``C``'s value type (``value`` is converted to it); ``C`` may be ``A``
    (in place) or an empty matrix of its shape. One C call: ``z << z.apply(op,
    right=value)`` cost ~10 us, as much as the product of one row through a
    Graph Challenge layer (``bench/README.md``).
    """
    call = getattr(lib, f"GrB_Matrix_apply_BinaryOp2nd_{c.dtype.name}")
    op_c = handle(binary, op, c.dtype)
    check_status(call(c._carg, ffi.NULL, ffi.NULL, op_c, a._carg, value, ffi.NULL), c)


def select_right(c: Matrix, op: str, a: Matrix, value: float) -> None:
    """``C = A`` on the entries where ``op(A(i,j), value)`` holds, the rest dropped.

    ``op`` names a python-graphblas select operator ("valuegt", "valuene", ...) of
    ``A``'s value type; ``C`` may be ``A`` (in place) or an empty matrix of its
    shape, of any type (the values are cast to it). One C call, as :func:`apply_right`.
    """
    call = getattr(lib, f"GrB_Matrix_select_{a.dtype.name}")
    op_c = handle(select, op, a.dtype)
    check_status(call(c._carg, ffi.NULL, ffi.NULL, op_c, a._carg, value, ffi.NULL), c)


def apply_unary(c: Matrix, op: str, a: Matrix) -> None:
    """``C = op(A)`` on the stored entries of ``A`` (``op`` a python-graphblas unary
    operator of ``C``'s value type, e.g. "round" or "identity" to cast); one C call."""
    op_c = handle(unary, op, c.dtype)
    check_status(lib.GrB_Matrix_apply(c._carg, ffi.NULL, ffi.NULL, op_c, a._carg, ffi.NULL), c)


def like(m: Matrix, dtype: DataType | None = None) -> Matrix:
    """A new empty matrix of ``m``'s shape (and type, unless ``dtype``), by one C call."""
    return empty_matrix(dtype or m.dtype, *m.shape)


def diagonal(values: np.ndarray) -> Matrix:
    """``D = diag(values)``, made once per layer for :func:`times_diagonal` and
    :func:`plus_diagonal` (made per batch, 18 us for 1024 values: more than the
    product of one row through a Graph Challenge layer)."""
    return Vector.from_dense(values).diag()


def plus_diagonal(z: Matrix, d: Matrix) -> None:
    """In place, ``Z(i,j) += d(j)`` for the stored entries of ``Z`` only."""
    # Z = Z (+.+) D: each stored Z(i,j) meets only D(j,j)
    plus_plus = handle(semiring, "plus_plus", z.dtype)
    check_status(lib.GrB_mxm(z._carg, ffi.NULL, ffi.NULL, plus_plus, z._carg, d._carg, ffi.NULL), z)


def times_diagonal(z: Matrix, d: Matrix) -> None:
    """In place, ``Z(i,j) *= d(j)`` for the stored entries of ``Z``."""
    # Z = Z (+.*) D: one product per stored entry
    plus_times_into(z, z, d)


class Columns(NamedTuple):
    """One value per column (a bias, a scale), prepared once per layer (:func:`per_column`)."""

    values: np.ndarray
    diag: Matrix | None  # diag(values) where they differ by column; None: values[0] is every one

    def along(self, by_row: bool) -> Any:
        """The values as NumPy broadcasts them over a matrix's values in storage order
        (``M`` if stored by row, ``M'`` if by column; :func:`gbdnn.kernels.take_positions`)."""
        if self.diag is None:
            return self.values[0]
        return self.values if by_row else self.values[:, None]


def per_column(values: np.ndarray) -> Columns:
    """``values`` (one per column) as :class:`Columns`, ``diag(values)`` made where they differ."""
    return Columns(values, None if (values == values[0]).all() else diagonal(values))


def relu(z: Matrix, bias: Columns | None = None, cap: float | None = None) -> Matrix:
    """Return ``min(max(Z + b, 0), cap)`` with ``b`` added to the stored entries only,
    every entry that is not positive dropped; ``Z`` is used up (modified in place and
    returned, or left empty).

    Where :func:`on_values` says so, in NumPy on ``Z``'s values, the flags rebuilt
    (:func:`_relu_positions`); else by SuiteSparse, the comparison first: ``z > -b``
    holds exactly when the rounded ``z + b`` is positive (``b <= 0``), so only
    surviving entries are shifted. The two ways give the same bits.
    """
    if on_values(z):
        return _relu_positions(z, bias, cap)
    if bias is None:
        # Z<Z > 0> = Z, the rest removed
        select_right(z, "valuegt", z, 0)
    elif bias.diag is None:
        # keep Z(i,j) > -b, then Z(i,j) += b
        select_right(z, "valuegt", z, -bias.values[0])
        apply_right(z, "plus", z, bias.values[0])
    else:
        plus_diagonal(z, bias.diag)
        select_right(z, "valuegt", z, 0)
    if cap is not None:
        clip_max(z, cap)
    return z


def _relu_positions(z: Matrix, bias: Columns | None, cap: float | None) -> Matrix:
    """:func:`relu` of a bitmap or full ``Z`` on its values in NumPy: the
    result is a new bitmap of the positive entries, in ``Z``'s memory (``Z`` left empty)."""
    v, present, by_row = take_positions(z)
    # (values where a bitmap has no entry are undefined: they are shifted and
    # compared, harmlessly, then dropped with their flags)
    with np.errstate(all="ignore"):
        if bias is not None:
            np.add(v, bias.along(by_row), out=v)
        positive = np.greater(v, 0)
        if cap is not None:  # min(Z, cap): a compare and a copy (np.minimum: 3x as long)
            np.copyto(v, cap, where=np.greater(v, cap))
    if present is not None:
        np.logical_and(positive, present, out=positive)
    return give(v, z.dtype, by_row=by_row, flags=positive)


def clip_max(z: Matrix, max_value: float) -> None:
    """In place, ``Z(i,j) = min(Z(i,j), max_value)``."""
    apply_right(z, "min", z, max_value)
