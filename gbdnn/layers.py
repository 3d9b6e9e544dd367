"""Layers: :class:`Linear` (``Y = X W + b``) and :class:`ReLU`.

A layer keeps its parameters as GraphBLAS objects and offers two things: a
call on user data (NumPy, SciPy or GraphBLAS, batched and threaded like
:meth:`gbdnn.Sequential.predict`) and ``stage``, the function on GraphBLAS
matrices that :class:`gbdnn.Sequential` chains. A Linear layer followed by a
ReLU becomes one fused stage.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from graphblas import Matrix
from graphblas.dtypes import lookup_dtype

from . import blas, elementwise, kernels, runner, tuning
from .convert import ArrayLike, family_of, to_matrix, to_vector
from .dtypes import ValueType, value_type
from .errors import ParameterError, ParameterTypeError, ShapeError

#: Kernel picks a layer keeps (see :meth:`Product.product`) before it starts afresh.
MAX_PICKS = 4096


class Layer:
    """Base class of gbdnn layers.

    Layers with weights set ``in_features``, ``dtype`` (a ValueType) and
    ``nnz``; element-wise layers leave them at None / 0.
    """

    #: Number of input features, or None when any width is accepted.
    in_features: int | None = None
    #: Value type of the weights and outputs, or None for element-wise layers.
    dtype: ValueType | None = None
    #: Number of stored weights.
    nnz: int = 0
    #: Bytes the layer's weights hold (see :attr:`Product.weight_bytes`).
    weight_bytes: int = 0

    def output_width(self, in_features: int) -> int:
        """Width of the output for an input of ``in_features`` columns."""
        return in_features

    def row_seconds(self) -> float:
        """Estimated seconds of one dense row that batch threads can share (see
        :func:`gbdnn.runner.run`); element-wise layers count as none."""
        return 0.0

    def stage(self, following: Layer | None = None) -> tuple[runner.Stage, int]:
        """The GraphBLAS function of this layer, and how many layers it consumes.

        Parameters
        ----------
        following : Layer or None
            The next layer in the model, which this one may fuse with.
        """
        raise NotImplementedError

    def __call__(self, x: ArrayLike, **kwargs: Any) -> ArrayLike:
        """Apply the layer to the rows of ``x``; see :meth:`gbdnn.Sequential.predict`."""
        family_of(x, "X")
        width = self.in_features
        if width is None:
            width = x.shape[1] if len(x.shape) == 2 else 0
        out = self.output_width(width)
        return runner.run(
            [self.stage()[0]],
            x,
            in_features=width,
            out_features=out,
            max_width=max(width, out),
            vtype=self._run_type(x),
            row_seconds=self.row_seconds,
            **kwargs,
        )

    def _run_type(self, x: ArrayLike) -> ValueType:
        """The value type to compute in: FP64 for FP64 data, FP32 otherwise."""
        dtype = x.dtype.np_type if isinstance(x, Matrix) else x.dtype
        return value_type("float64" if dtype == np.float64 else "float32")


class ReLU(Layer):
    """Rectified linear unit as a GraphBLAS ``select``: ``Y = min(max(X, 0), max_value)``.

    Entries that are not positive are removed, not stored as zeros, so the
    activations stay sparse.

    Parameters
    ----------
    max_value : float, optional
        Clip the output at this positive value (the Graph Challenge's YMAX = 32).
    """

    def __init__(self, max_value: float | None = None) -> None:
        if max_value is not None:
            if isinstance(max_value, bool) or not isinstance(max_value, (int, float, np.number)):
                raise ParameterTypeError(
                    f"max_value must be a number, got {type(max_value).__name__}"
                )
            if not math.isfinite(max_value) or max_value <= 0:
                raise ParameterError(f"max_value must be finite and positive, got {max_value}")
        self.max_value = max_value

    def stage(self, following: Layer | None = None) -> tuple[runner.Stage, int]:
        def relu(z: Matrix) -> Matrix:
            # (stages never modify their input: it may be the caller's)
            if elementwise.on_values(z):
                # Y = min(max(Z, 0), cap) in NumPy on a copy of Z's values, zeros where Z
                # has no entry (64 x 1024 FP32 full: 45-54 us, SuiteSparse 132-391 with
                # its generic min for the cap)
                y = kernels.give(kernels.dense_rows(z, z.dtype.np_type), z.dtype)
                return elementwise.relu(y, cap=self.max_value)
            # Y<Z > 0> = Z, a new matrix
            y = elementwise.like(z)
            elementwise.select_right(y, "valuegt", z, 0)
            if self.max_value is not None:
                elementwise.clip_max(y, self.max_value)
            return y

        return relu, 1

    def __repr__(self) -> str:
        return "ReLU()" if self.max_value is None else f"ReLU(max_value={self.max_value})"


class Product:
    """The product ``Z W`` of a weighted layer, by the kernel its ``path`` picks.

    Keeps the weights ``W`` (CSR) and builds, on first use and once, the
    copies the other kernels need: ``W'`` for the dense and dot kernels, ``W'``
    in two halves for the dot kernel's products shared with the helper thread,
    and a dense NumPy array for BLAS. ``W`` is only replaced through :meth:`_set_stored`,
    which drops those copies: changing ``W`` in place would leave them stale.
    """

    def _init_product(self, weight: Matrix, blas_dtype: np.dtype | None, path: str) -> None:
        """``blas_dtype`` None: no BLAS kernel for this layer."""
        no_blas = tuple(k for k in tuning.KERNELS if k != "blas")
        self._kernels = no_blas if blas_dtype is None else tuning.KERNELS
        self.path = path
        self._blas_dtype = blas_dtype
        self._lock = threading.Lock()
        self._set_stored(weight)

    def _set_stored(self, weight: Matrix) -> None:
        """Make ``weight`` the layer's ``W`` and forget the copies made of the old one."""
        with self._lock:
            self._stored = kernels.sparse_format(weight)
            # (rows, columns, entries) of W, read on every batch
            self._dims = (*weight.shape, kernels.nvals(weight))
            self._transposed: Matrix | None = None
            self._halves: tuple[Matrix, Matrix] | None = None
            self._dense: np.ndarray | None = None
            # entries of Z per multiply-add of the last sparse product (see tuning)
            self._spread: float | None = None
            # the kernel each kind of batch was timed fastest on (see product)
            self._tried: dict[tuple[int, int, bool], str] = {}
            # the kernel picked for each batch as priced, and the costs and spread it
            # was picked with (see product)
            self._picks: dict[tuple[int, int, bool], tuple] = {}

    @property
    def path(self) -> str:
        """The kernel choice, ``"auto"`` by default (see :mod:`gbdnn.tuning`)."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        allowed = ("auto", *self._kernels)
        if value not in allowed:
            raise ParameterError(f"path must be one of {', '.join(allowed)}, got {value!r}")
        self._path = value

    @property
    def picked_kernels(self) -> dict[tuple[int, int, bool], str]:
        """The kernel the automatic path keeps for each kind of batch it has run:
        ``(rows, entries as priced, alone) -> kernel``, what the next batch of that
        kind runs while the machine's costs stay (empty for a fixed ``path``)."""
        with self._lock:
            return {batch: pick[0] for batch, pick in self._picks.items()}

    def _weight_t(self) -> Matrix:
        with self._lock:  # built on first use, once
            if self._transposed is None:
                self._transposed = kernels.sparse_format(self._copy_source().T.new())
            return self._transposed

    def _weight_halves(self) -> tuple[Matrix, Matrix]:
        with self._lock:
            if self._halves is None:
                self._halves = kernels.transposed_halves(self._copy_source())
            return self._halves

    def _copy_source(self) -> Matrix:
        """``W`` in the type of its copies for the dense and dot kernels: BLAS's type
        where the layer has one (integer weights whose sums are exact in it as FP32 or
        FP64 numbers: SuiteSparse's vectorised saxpy kernels are for floating point,
        INT32 took 4.9x the FP32 time, 2048 rows through 1024 x 1024 at 90 %), else
        ``W``'s own."""
        dtype = self._stored.dtype if self._blas_dtype is None else lookup_dtype(self._blas_dtype)
        return self._stored if dtype == self._stored.dtype else self._stored.dup(dtype=dtype)

    def _weight_dense(self) -> np.ndarray:
        with self._lock:
            if self._dense is None:
                self._dense = self._stored.to_dense(fill_value=0, dtype=self._blas_dtype)
            return self._dense

    @property
    def nnz(self) -> int:
        """Number of stored weights."""
        return self._dims[2]

    @property
    def weight_bytes(self) -> int:
        """Bytes the weights hold now: ``W`` and the copies the kernels have built
        so far (``W'``, its halves, the dense array for BLAS), kept for later calls.

        A layer run by the dense or dot kernel holds ``W`` two to three times
        over, one run by BLAS a dense array besides ``W`` (see ``bench/README.md``).
        """
        with self._lock:
            held = [self._stored, self._transposed, *(self._halves or ())]
            dense = 0 if self._dense is None else self._dense.nbytes
        return dense + sum(m.ss.nbytes for m in held if m is not None)

    def output_width(self, in_features: int) -> int:
        return self._stored.ncols

    def row_seconds(self) -> float:
        """Zero when a dense batch goes to BLAS, which shares a batch alone with the
        helper thread itself (and would read the whole weight once per batch); else the
        dense kernel's work."""
        n_in, n_out, nnz = self._dims
        rows = 64  # a typical batch per thread
        costs = self._costs()
        kind = tuning.choose(
            self.path, rows, rows * n_in, n_in, n_out, nnz, costs, kernels=self._kernels
        )
        return 0.0 if kind == "blas" else costs.dense_mac * nnz

    def _costs(self) -> tuning.Costs:
        """The machine's costs, BLAS's for this layer's BLAS type."""
        costs = tuning.current_costs()
        if self._blas_dtype is None:
            return costs
        return tuning.blas_typed(costs, np.dtype(self._blas_dtype).itemsize)

    def product(self, z: Matrix) -> Matrix:
        """``Z W`` by the kernel the layer's ``path`` picks for this batch.

        On the automatic path, where the cost model finds several kernels
        within ``tuning.TRIAL_MARGIN`` of each other (:func:`tuning.contenders`),
        the first batch of its kind (rows, tenths of ``Z`` stored, whether it
        runs alone) times them on itself (:func:`tuning.trial`) and the layer
        keeps the fastest for every later batch of that kind; the trial's
        result is the batch's. The kernel picked for a batch as priced (rows,
        entries rounded: :func:`tuning.priced_entries`, whether it runs alone) is
        kept, with the costs and spread it was picked with, so a batch like an
        earlier one goes straight to its kernel: asking the cost model again took
        0.8 us, 7 % of one row through 1024 x 1024 at 99.9 %.

        A Gustavson product of a sparse batch records how many entries of the
        result each multiply-add made, which the next batches' choices use
        (of the kernel, and of whether the sparse kernel makes a sparse batch
        full first).
        """
        nnz_x = kernels.nvals(z)
        nrows, n_in = z.shape
        costs = self._costs()
        alone = kernels.spare_core()  # a batch alone: the helper thread's core to spare
        if self.path != "auto":
            return self._compute(self.path, z, nnz_x, costs, alone)
        # a sparse batch priced at its entries rounded: the next ones find the answer kept
        priced = tuning.priced_entries(nnz_x, nrows, n_in)
        picked = (nrows, priced, alone)
        pick = self._picks.get(picked)  # (a dict read needs no lock)
        if pick is not None and pick[1] is costs and pick[2] == self._spread:
            return self._compute(pick[0], z, nnz_x, costs, alone)
        spread = self._spread
        tried = (nrows, 10 * nnz_x // max(nrows * n_in, 1), alone)
        kind = self._tried.get(tried)
        if kind is None:
            options = {"kernels": self._kernels, "spread": spread, "alone": alone}
            rivals = tuning.contenders(nrows, priced, self._dims, costs, **options)
            kind = rivals[0]  # the cheapest estimate
            if len(rivals) > 1:
                kind, out = tuning.trial(
                    {k: lambda k=k: self._compute(k, z, nnz_x, costs, alone) for k in rivals}
                )
                with self._lock:
                    self._tried[tried] = kind
                    self._picks.clear()  # picked before the trial: the trial's kind now
                return out
        with self._lock:
            if len(self._picks) >= MAX_PICKS:
                self._picks.clear()
            self._picks[picked] = (kind, costs, spread)
        return self._compute(kind, z, nnz_x, costs, alone)

    def _compute(
        self, kind: str, z: Matrix, nnz_x: int, costs: tuning.Costs, alone: bool
    ) -> Matrix:
        """``Z W`` by the kernel ``kind`` (``alone``: the batch has a core to spare)."""
        nrows = z.shape[0]
        n_in, _, nnz_w = self._dims
        sparse_x = nnz_x < nrows * n_in
        if kind == "sparse":
            fill = sparse_x and tuning.fills(nrows, nnz_x, *self._dims, costs, self._spread)
            out = kernels.plus_times(z, self._stored, fill=fill, full=not sparse_x)
            if sparse_x and not fill:
                macs = tuning.multiply_adds(nnz_x, nnz_w, n_in)
                if macs:  # rounded, as the batch's entries are priced (tuning.coarse)
                    self._spread = tuning.coarse(kernels.nvals(out) / macs)
            return out
        if kind == "dense":
            if alone and tuning.dense_splits(nrows, *self._dims, costs):
                return kernels.plus_times_dense(z, self._weight_halves())
            return kernels.plus_times_dense(z, self._weight_t())
        if kind == "dot":
            if alone and tuning.splits(nrows, *self._dims[1:], costs):
                return kernels.plus_times_dot_halves(z, self._weight_halves(), full=not sparse_x)
            return kernels.plus_times_dot(z, self._weight_t(), full=not sparse_x)
        if not alone:  # beside other batch threads
            threads = "one"
        else:
            threads = "two" if tuning.blas_splits(nrows, n_in, self._dims[1], costs) else "own"
        return blas.plus_times_blas(z, self._weight_dense(), threads=threads)


class Linear(Product, Layer):
    """Affine layer ``Y = X W + b`` on a sparse weight matrix.

    Parameters
    ----------
    weight : numpy.ndarray, scipy.sparse matrix or graphblas.Matrix
        Shape ``(in_features, out_features)``, as in the GraphBLAS DNN papers
        (the transpose of ``torch.nn.Linear.weight``). Zeros are not stored.
    bias : array_like, float or graphblas.Vector, optional
        Length ``out_features``, or one number for every output.
    dtype : {"float32", "float64"}, default "float32"
        Value type of the weights and of the computation.
    name : str, optional
        A label, e.g. to exclude the layer from pruning.
    path : {"auto", "sparse", "dense", "dot", "blas"}, default "auto"
        Which kernel computes ``X W`` (see :mod:`gbdnn.tuning`): ``"auto"``
        picks the cheapest for every batch from the activations' density
        (and, for sparse ones, the results of earlier batches); the others
        force one kernel. With ``"sparse"``, ``"dense"`` or ``"dot"``
        results are bit-identical for any batch size and thread count;
        kernels differ from each other by rounding.

    Attributes
    ----------
    weight : graphblas.Matrix
        The weights, zeros dropped; read-only (replace them with
        :meth:`set_weight`, never modify them in place).
    bias : numpy.ndarray or None
        The bias, one entry per output feature.

    Notes
    -----
    The bias reaches every output entry: a sample whose product ``X W`` has no
    entry in column ``j`` still gets ``b(j)``. When every bias is zero, or
    every bias is <= 0 and a :class:`ReLU` follows, adding the bias only to the
    stored entries of ``X W`` gives the same result (a missing entry would
    become ``max(b(j), 0) = 0``), and that faster path is taken automatically.
    """

    def __init__(
        self,
        weight: ArrayLike,
        bias: Any = None,
        *,
        dtype: str = "float32",
        name: str | None = None,
        path: str = "auto",
    ) -> None:
        self.name = check_name(name)
        self.dtype = value_type(dtype)
        w = to_matrix(weight, self.dtype, "weight", drop_zeros=True)
        self.in_features, self.out_features = w.shape
        self.bias = None if bias is None else to_vector(bias, self.out_features, self.dtype, "bias")
        self._init_product(w, self.dtype.numpy, path)

    @property
    def weight(self) -> Matrix:
        """The weights ``W``, ``(in_features, out_features)``, zeros dropped (read-only)."""
        return self._stored

    def set_weight(self, weight: ArrayLike) -> None:
        """Replace the weights by ``weight`` of the same shape (e.g. after pruning).

        Parameters
        ----------
        weight : numpy.ndarray, scipy.sparse matrix or graphblas.Matrix
            Shape ``(in_features, out_features)``; zeros are not stored, the
            caller's object is copied, never kept.

        Raises
        ------
        ShapeError
            If the shape differs from the layer's.
        """
        family_of(weight, "weight")
        shape = (self.in_features, self.out_features)
        if tuple(weight.shape) != shape:
            raise ShapeError(f"weight must have shape {shape}, got {tuple(weight.shape)}")
        # a new matrix even for a GraphBLAS input: dropping zeros copies
        self._set_stored(to_matrix(weight, self.dtype, "weight", drop_zeros=True))

    def _run_type(self, x: ArrayLike) -> ValueType:
        return self.dtype

    def stage(self, following: Layer | None = None) -> tuple[runner.Stage, int]:
        return affine_stage(self.product, self.bias, following)

    def __repr__(self) -> str:
        bias = "None" if self.bias is None else f"({self.out_features},)"
        name = "" if self.name is None else f"name={self.name!r}, "
        return (
            f"Linear({name}in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, bias={bias}, dtype={self.dtype.name})"
        )


def check_name(name: object) -> str | None:
    """Validate an optional layer name."""
    if name is not None and not isinstance(name, str):
        raise ParameterTypeError(f"name must be a string, got {type(name).__name__}")
    return name


def affine_stage(
    product: Callable[[Matrix], Matrix],
    bias: np.ndarray | None,
    following: Layer | None,
) -> tuple[runner.Stage, int]:
    """The stage of an affine layer ``Z = P(X) + b``, fused with a following ReLU.

    Parameters
    ----------
    product : callable
        ``X -> P(X)``, e.g. ``X W``.
    bias : numpy.ndarray or None
    following : Layer or None
        The next layer; a ReLU is fused.

    Notes
    -----
    The bias is added to stored entries only when that is exact: every bias
    zero, or every bias <= 0 and a ReLU follows (a missing entry would become
    ``max(b, 0) = 0``). Otherwise it reaches every entry.
    """
    b = bias if bias is not None and bias.any() else None
    relu = following if isinstance(following, ReLU) else None
    if relu is not None:
        shift = None if b is None else elementwise.per_column(b)
        # b on stored entries only is exact where every b <= 0 (a missing entry would
        # become max(b, 0) = 0) or where P(X) stores every entry
        stored_only = b is None or bool((b <= 0).all())

        def fused(z: Matrix) -> Matrix:
            # Z = min(max(P(X) + b, 0), max_value)
            p = product(z)
            if stored_only or kernels.is_full(p):
                return elementwise.relu(p, shift, relu.max_value)
            out = elementwise.add_bias_full(p, b)  # P(X) + 1 b', then the ReLU
            kernels.release(p)
            return elementwise.relu(out, None, relu.max_value)

        return fused, 2
    if b is None:
        return product, 1

    def affine(z: Matrix) -> Matrix:
        # Z = P(X) + 1 b', the bias reaching every entry
        p = product(z)
        out = elementwise.add_bias_full(p, b)
        kernels.release(p)
        return out

    return affine, 1
