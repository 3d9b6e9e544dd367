"""GraphBLAS kernels of sparse DNN inference: the bottom of gbdnn.

Every function takes and returns ``graphblas.Matrix`` objects whose rows are
samples. Each GraphBLAS call runs on one thread (``nthreads=1``): gbdnn runs in
parallel over row batches instead (see :mod:`gbdnn.runner`), which on the
Graph Challenge workload is faster than SuiteSparse's own threading and keeps
each kernel's floating-point sums in the same order whatever the batch size
and thread count (different kernels may round differently).

All calls use built-in types and semirings (``plus_times``, ``plus_plus``,
``select.valuegt``, ``binary.plus``, ``binary.min``) so SuiteSparse runs its
precompiled factory kernels.
"""

from __future__ import annotations

import threading

import numpy as np
from graphblas import Matrix, Vector, binary, select, semiring

_OPTS = {"nthreads": 1}
#: Rows per tile of :func:`plus_times_dense` (measured best for 32-64 on 4096-wide layers).
DENSE_TILE = 64
#: Tiles of :func:`plus_times_dense` are padded to a multiple of this many rows.
DENSE_LANES = 16
_BLAS_LOCK = threading.Lock()


def sparse_format(w: Matrix) -> Matrix:
    """Keep ``w`` in a sparse (CSR / hypersparse) format, never bitmap or full; returns ``w``.

    SuiteSparse stores a matrix denser than a few percent as a bitmap, and its
    products with a bitmap or full weight matrix are 7-30x slower than with
    the same weights in CSR (1024-1536 wide layers, 25-100 % dense; measured in
    ``bench/README.md``): weights are always kept sparse.
    """
    w.ss.config["sparsity_control"] = ["sparse", "hypersparse"]
    return w


def plus_times(x: Matrix, w: Matrix) -> Matrix:
    """Return ``Z = X W`` over the ``plus_times`` semiring."""
    # Z(i,j) = sum_k X(i,k) * W(k,j)
    return x.mxm(w, semiring.plus_times).new(**_OPTS)


def padded_width(rows: int) -> int:
    """Rows of a dense-kernel tile holding ``rows`` rows: a multiple of ``DENSE_LANES``."""
    return -(-rows // DENSE_LANES) * DENSE_LANES


def plus_times_dense(x: Matrix, wt: Matrix) -> Matrix:
    """Return ``Z = X W`` for dense activations, computed as ``Z' = W' X'``.

    ``wt`` is ``W'`` (stored by row). ``X'`` is made full, in tiles of
    ``DENSE_TILE`` rows of ``X``, and each tile's product is accumulated into
    a full zero matrix: SuiteSparse's saxpy kernel for a sparse times a full
    matrix into a full result, much faster than ``X W`` when ``X`` is dense.
    Tiles are padded with zero rows to a multiple of ``DENSE_LANES``:
    SuiteSparse's vectorised loop over the columns of ``X'`` rounds
    differently from its scalar remainder loop (columns beyond the last
    multiple of 16 for FP32, of 8 for FP64, on the project's machines), so
    without padding a row's result would depend on its place in the batch.
    """
    dense = x.to_dense(fill_value=0, dtype=x.dtype)  # keep FP32 FP32
    z = np.empty((x.nrows, wt.nrows), dense.dtype)
    for start in range(0, x.nrows, DENSE_TILE):  # tiles of rows keep Z' in cache
        rows = dense[start : start + DENSE_TILE]
        width = padded_width(rows.shape[0])
        xt = np.zeros((rows.shape[1], width), dense.dtype)
        xt[:, : rows.shape[0]] = rows.T
        c = Matrix.ss.import_fullr(np.zeros((wt.nrows, width), xt.dtype), take_ownership=True)
        # Z' = 0, then Z' += W' X'
        c(binary.plus, **_OPTS) << wt.mxm(
            Matrix.ss.import_fullr(xt, take_ownership=True), semiring.plus_times
        )
        z[start : start + rows.shape[0]] = c.ss.export("fullr", raw=False)["values"].T[
            : rows.shape[0]
        ]
    return Matrix.ss.import_fullr(z, take_ownership=True)


def plus_times_blas(x: Matrix, w_dense: np.ndarray) -> Matrix:
    """Return ``Z = X W`` by dense BLAS (NumPy), for weights too dense for sparse kernels.

    BLAS uses every core itself, so concurrent calls from gbdnn's batch threads
    take turns instead of competing for the cores.
    """
    dense = x.to_dense(fill_value=0, dtype=w_dense.dtype)
    with _BLAS_LOCK:
        z = dense @ w_dense
    return Matrix.ss.import_fullr(z, take_ownership=True)


def add_bias_full(z: Matrix, bias: np.ndarray) -> Matrix:
    """Return ``Z + 1 b'``: the bias reaches every entry, stored or not.

    One addition per entry after the product, as on the stored-entries path.
    """
    # C = 1 b' (full), then C += Z
    c = Matrix.ss.import_fullr(
        np.broadcast_to(bias, (z.nrows, bias.size)).copy(), take_ownership=True
    )
    c(binary.plus, **_OPTS) << z
    return c


def add_bias_stored(z: Matrix, bias: np.ndarray) -> None:
    """In place, ``Z(i,j) += b(j)`` for the stored entries of ``Z`` only."""
    if bias[0] == bias[-1] and (bias == bias[0]).all():
        # Z(i,j) = Z(i,j) + b   (one bias for all columns)
        z(**_OPTS) << z.apply(binary.plus, right=bias[0])
    else:
        # Z = Z (+.+) diag(b): each stored Z(i,j) meets only diag(b)(j,j)
        d = Vector.from_dense(bias).diag()
        z(**_OPTS) << z.mxm(d, semiring.plus_plus)


def relu(z: Matrix) -> None:
    """In place, ``Z = max(Z, 0)``, dropping every entry that is not positive."""
    # Z<Z > 0> = Z, the rest removed
    z(**_OPTS) << select.valuegt(z, 0)


def relu_bias_stored(z: Matrix, bias: np.ndarray) -> None:
    """In place, ``Z = max(Z + b, 0)`` with ``b`` added to stored entries only.

    With one bias for all columns the comparison comes first: ``z > -b`` holds
    exactly when the rounded ``z + b`` is positive, so only surviving entries
    are shifted, and the result is bit-identical to adding first.
    """
    if bias[0] == bias[-1] and (bias == bias[0]).all():
        # keep Z(i,j) > -b, then Z(i,j) += b
        z(**_OPTS) << select.valuegt(z, -bias[0])
        z(**_OPTS) << z.apply(binary.plus, right=bias[0])
    else:
        add_bias_stored(z, bias)
        relu(z)


def clip_max(z: Matrix, max_value: float) -> None:
    """In place, ``Z(i,j) = min(Z(i,j), max_value)``."""
    z(**_OPTS) << z.apply(binary.min, right=max_value)
