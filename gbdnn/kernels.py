"""GraphBLAS kernels of sparse DNN inference: the bottom of gbdnn.

Every function takes and returns ``graphblas.Matrix`` objects whose rows are
samples. Inside :func:`batch_threads` (where :mod:`gbdnn.runner` runs every
batch) each GraphBLAS call runs on one thread: gbdnn runs in parallel over row
batches instead, which on the Graph Challenge workload is faster than
SuiteSparse's own threading and keeps each kernel's floating-point sums in the
same order whatever the batch size and thread count (different kernels may
round differently).

All products use built-in types and the ``plus_times`` semiring, so SuiteSparse
runs its precompiled factory kernels; the element-wise steps after a product
(bias, ReLU, clip) are in :mod:`gbdnn.elementwise`. The calls made once per
batch whatever its size (the products, :func:`nvals`, :func:`all_finite`,
handing arrays to and from NumPy) go to SuiteSparse's C API directly: a
python-graphblas expression costs 20-30 us more per call, as much as SciPy's
whole one-row product (``bench/README.md``).
"""

from __future__ import annotations

import ctypes
import math
import sys
import threading
import weakref
from collections import OrderedDict
from typing import Any, NamedTuple

import numpy as np
from graphblas import Matrix, agg, binary, monoid, semiring, unary
from graphblas.core.ss.context import Context, threadlocal
from graphblas.dtypes import DataType, lookup_dtype
from graphblas.exceptions import check_status
from suitesparse_graphblas import ffi, lib
from suitesparse_graphblas.utils import claim_buffer, claim_buffer_2d, unclaim_buffer

from . import helper, libc
from .errors import ShapeError

#: Bytes of ``X'`` or ``Z'`` per tile of :func:`plus_times_dense`: both stay in
#: the 2 MB L2 cache (4096-wide FP32 layers: 64 rows; FP64: 32 rows).
DENSE_TILE_BYTES = 1 << 20
#: At most this many rows per tile (fewer tiles, less fixed cost, on narrow layers).
DENSE_TILE_MAX = 256
#: Tiles of :func:`plus_times_dense` are padded to a multiple of this many rows.
DENSE_LANES = 16
#: Side of the square blocks :func:`transpose_into` copies from arrays of fewer than
#: ``TRANSPOSE_STRIP_COLUMNS`` columns: NumPy's plain ``out[...] = a.T`` was 1.3-6.6x
#: slower on arrays of 256 KB and more with more rows than this, 4-30 % faster on
#: arrays of at most this many rows.
TRANSPOSE_BLOCK = 128
#: :func:`transpose_into` copies arrays of at least this many columns in strips of
#: rows, each strip one cache line of ``out`` per row (16 FP32 or 8 FP64 rows):
#: 1.7-5.1x faster than the blocks on 64-4096 rows of 1024-4096 columns, 1.9x on
#: 2048 x 256, slower than the blocks on 128 columns (``bench/README.md``).
TRANSPOSE_STRIP_COLUMNS = 256
#: :func:`all_finite` sums bitmaps of at least this many bytes of values in NumPy
#: (16 x 1024 FP32 or 8 x 1024 FP64, 20-50 % stored: 8-9 us, SuiteSparse's reduction
#: 16-20 us); smaller ones by SuiteSparse (8 x 1024 FP32: 4.1-4.7 against 7.5 us).
BITMAP_SUM_MIN_BYTES = 1 << 16
#: Byte alignment of the dense kernel's tiles (one AVX-512 vector, one cache line).
ALIGNMENT = 64
#: Bytes of work arrays each thread keeps for reuse (:func:`recycle`): a dense FP32
#: batch of the default size (``AUTO_BATCH_ENTRIES``), which BLAS's kernel makes on
#: every call. Not kept, it was fresh memory on some calls (glibc returns large blocks
#: to the system): 1024 rows through 4096x4096 took 200-350 ms with 35-56 ms of system
#: time in this machine's slow spells, 155-175 ms kept (``bench/README.md``).
RECYCLE_BYTES = 16 << 20
#: :func:`aligned_empty` asks Linux for huge pages (``madvise``) for arrays of at
#: least this many bytes, as NumPy does for its own: a fresh 32 MB array was
#: filled in 13.9 ms on 4 KB pages (8192 page faults), 2.7 ms by NumPy's. Like
#: NumPy's, the array does not start on a huge page: aligned to one by
#: ``posix_memalign``, a 16 MB array made on every call was fresh memory every time
#: (8 huge pages zeroed: 0.9-1.5 ms, and in this machine's slow spells 35-56 ms of
#: system time); 64-byte aligned, glibc mostly reuses what the last call freed
#: (``bench/README.md``).
HUGE_PAGE_MIN_BYTES = 4 << 20
HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14
#: :func:`_zeros` copies a full zero matrix of at most this many bytes from one the
#: thread keeps (``GrB_Matrix_dup``): 1.1-1.5 us less than handing over a new NumPy
#: array, from one row through a 1024-wide FP32 layer to 64 rows (4-256 KB);
#: at 1 MB (64 x 4096) the copy was 2-3 % slower (``bench/README.md``).
ZERO_COPY_BYTES = 1 << 18
#: Shapes of zero matrices each thread keeps for :func:`_zeros` (the last used).
ZERO_SHAPES = 8
#: C handles of python-graphblas operators by (module, name, type) (:func:`handle`).
_HANDLES: dict[tuple[str, str, str], Any] = {}
#: The handles the kernels call for each value type, together (:func:`_ops`).
_OPS: dict[str, _Ops] = {}


class _ThreadState(threading.local):
    """What gbdnn keeps per thread; the class attribute is each thread's default, so
    reading it outside :func:`batch_threads` raises nothing (``getattr`` with a
    default on a missing thread-local attribute: 0.3 us)."""

    inside = False  # whether this thread is running a batch (:func:`batch_threads`)
    spare = False  # whether that batch runs alone, a core to spare (:func:`spare_core`)

    def __init__(self) -> None:
        self.context: Context | None = None  # its one-thread context, made on first use
        self.recycled: OrderedDict[tuple, list[np.ndarray]] = OrderedDict()
        self.zeros: OrderedDict[tuple, Matrix] = OrderedDict()


_LOCAL = _ThreadState()


_MEMALIGN = libc.function(
    "posix_memalign", ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t
)
# (MADV_HUGEPAGE is Linux's)
_MADVISE = (
    libc.function("madvise", ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if sys.platform == "linux"
    else None
)


def aligned_empty(nrows: int, ncols: int, dtype: np.dtype) -> np.ndarray:
    """A C-ordered uninitialised array that owns memory aligned to ``ALIGNMENT`` bytes.

    SuiteSparse's saxpy kernel of :func:`plus_times_dense` took 1.9x as long
    when ``X'`` started off a 64-byte boundary (NumPy aligns to 16 bytes
    only; ``bench/README.md``). The memory comes from ``posix_memalign`` and
    is owned by the array (freed by ``free``, as SuiteSparse frees what it
    is given), so :func:`give` hands it to SuiteSparse without a copy.
    Without ``posix_memalign`` (not POSIX): ``numpy.empty``. Arrays of at
    least ``HUGE_PAGE_MIN_BYTES`` ask Linux for huge pages where whole ones fit
    inside them. An array of the same shape and dtype that this thread gave back by
    :func:`recycle` is reused first.
    """
    dtype = np.dtype(dtype)
    kept = _recycled()
    key = (nrows, ncols, dtype)
    if key in kept:  # (every list kept holds an array)
        same = kept[key]
        array = same.pop()
        if same:
            kept.move_to_end(key)  # the shape used last is evicted last
        else:
            del kept[key]
        return array
    if _MEMALIGN is None:
        return np.empty((nrows, ncols), dtype)
    size = nrows * ncols
    nbytes = max(size * dtype.itemsize, 1)
    pointer = ctypes.c_void_p()
    if _MEMALIGN(ctypes.byref(pointer), ALIGNMENT, nbytes):
        raise MemoryError(f"cannot allocate a {nrows} x {ncols} {dtype} tile")
    if nbytes >= HUGE_PAGE_MIN_BYTES and _MADVISE is not None:
        # as NumPy does for its large arrays, on the whole huge pages inside this one (a
        # kernel without them ignores it)
        start = -(-pointer.value // HUGE_PAGE) * HUGE_PAGE
        stop = (pointer.value + nbytes) // HUGE_PAGE * HUGE_PAGE
        if stop > start:
            _MADVISE(start, stop - start, MADV_HUGEPAGE)
    return claim_buffer_2d(ffi, ffi.cast("void*", pointer.value), size, nrows, ncols, dtype, True)


def _recycled() -> OrderedDict[tuple, list[np.ndarray]]:
    """This thread's arrays kept by :func:`recycle`, by ``(nrows, ncols, dtype)``, the
    shape used longest ago first."""
    return _LOCAL.recycled


def recycle(array: np.ndarray) -> None:
    """Keep ``array``, a work array no longer used, for this thread's next :func:`aligned_empty`.

    Fresh memory costs more than the work on it at the dense kernel's sizes:
    glibc gave freed work arrays of ~1 MB back to the system, so each call
    paged them in again, and a new array is not in cache (64 rows through
    4096 x 4096: making ``X'`` took 1.1 ms fresh, 0.35 ms reused;
    ``bench/README.md``). Each thread keeps at most ``RECYCLE_BYTES``: to make
    room, the arrays of the shapes used longest ago go first (a process that
    moves on to other layer shapes keeps reusing). Arrays that do not own
    aligned C-ordered memory, or exceed the budget alone, are not kept.
    ``array`` must not be used afterwards.
    """
    if (
        not (array.flags.c_contiguous and array.flags.owndata)
        or array.ctypes.data % ALIGNMENT
        or array.nbytes > RECYCLE_BYTES
    ):
        return
    kept = _recycled()
    key = (*array.shape, array.dtype)
    kept.setdefault(key, []).append(array)
    kept.move_to_end(key)
    held = sum(a.nbytes for arrays in kept.values() for a in arrays)
    while held > RECYCLE_BYTES:
        oldest = next(iter(kept))
        arrays = kept[oldest]
        held -= arrays.pop(0).nbytes
        if not arrays:
            del kept[oldest]


def aligned_zeros(nrows: int, ncols: int, dtype: np.dtype) -> np.ndarray:
    """:func:`aligned_empty` filled with zeros."""
    array = aligned_empty(nrows, ncols, dtype)
    array.fill(0)
    return array


def transpose_into(out: np.ndarray, a: np.ndarray) -> None:
    """``out[...] = a.T``, in strips or blocks that stay in cache unless ``a`` is small.

    NumPy's transposing copy runs its inner loop along a strided axis, 1.35-4.3
    ns an entry; a strip of a few rows of a wide ``a`` is read as that many
    sequential streams, each row of the strip's ``out`` one cache line.
    """
    if a.shape[1] >= TRANSPOSE_STRIP_COLUMNS:
        strip = max(1, ALIGNMENT // a.itemsize)
        for i in range(0, a.shape[0], strip):
            out[:, i : i + strip] = a[i : i + strip].T
        return
    step = TRANSPOSE_BLOCK
    if a.shape[0] <= step:
        out[...] = a.T
        return
    for i in range(0, a.shape[0], step):
        for j in range(0, a.shape[1], step):
            out[j : j + step, i : i + step] = a[i : i + step, j : j + step].T


def _one_thread() -> Context:
    """This thread's SuiteSparse context with one thread, made once."""
    if _LOCAL.context is None:
        _LOCAL.context = Context(engage=False, stack=False, nthreads=1)
    return _LOCAL.context


def _engage(context: Context) -> None:
    """Run this thread's GraphBLAS calls in ``context``, by one C call.

    python-graphblas's ``Context.engage`` and ``disengage`` cost 3 us each
    (its own bookkeeping of the contexts engaged), the C call 0.3 us. gbdnn
    engages its context only around its own calls and then engages again
    what python-graphblas has engaged for the thread, so python-graphblas's
    bookkeeping stays true.
    """
    check_status(lib.GxB_Context_engage(context._carg), context)


class batch_threads:  # lower case: used like a function, ``with batch_threads():``
    """Run this thread's GraphBLAS calls inside the block on one thread each.

    gbdnn runs batches in parallel instead (:mod:`gbdnn.runner`). SuiteSparse's
    own threads help a product of a few rows only while they spin between
    calls: one row through 4096x4096 at 99 % took 56 us on two threads, 89
    on one, back to back; but after 15 ms or more of idleness, as a service
    answering single requests runs, 6-8 ms on two (its two threads landed on
    one core, the caller spinning at the join while the other waited its turn
    for a scheduler tick) against 0.3 ms on one (``bench/README.md``). The
    context is made once per thread and engaged for the block (re-entrant:
    an inner block keeps the outer one's setting); passing ``nthreads=1`` to
    every call instead builds a new descriptor each time, 75 us per call, most
    of a one-row product. A class, not a generator: 3 us less per batch.

    Parameters
    ----------
    spare : bool, default False
        The batch runs alone with a core to spare, which the dot kernel may
        hand half of a large product to (:func:`spare_core`); an inner block
        keeps the outer one's.
    """

    __slots__ = ("_outer", "_spare")

    def __init__(self, spare: bool = False) -> None:
        self._spare = spare

    def __enter__(self) -> None:
        self._outer = _LOCAL.inside
        if not self._outer:
            _LOCAL.inside = True
            _LOCAL.spare = self._spare and helper.SUPPORTED
            _engage(_one_thread())

    def __exit__(self, *exc: object) -> None:
        if not self._outer:
            _LOCAL.inside = _LOCAL.spare = False
            _engage(threadlocal.context)  # python-graphblas's, as outside the block


def spare_core() -> bool:
    """Whether this thread's batch runs alone with a core to spare (see
    :class:`batch_threads`), so a large dot product may be shared with the helper
    thread (:func:`plus_times_dot_halves`)."""
    return _LOCAL.spare


def nvals(m: Matrix) -> int:
    """Number of stored entries of ``m`` by one C call (``Matrix.nvals``: ~5 us)."""
    n = ffi.new("GrB_Index*")
    check_status(lib.GrB_Matrix_nvals(n, m._carg), m)
    return n[0]


def all_finite(m: Matrix) -> bool:
    """Whether no stored entry of a floating-point ``m`` is NaN or infinite.

    A sum with a NaN or infinite term is not finite, so a finite sum of the
    entries proves it in one pass; only a sum that is not (a bad entry, or an
    overflow) is followed by a check of each entry. Bitmaps of at least
    ``BITMAP_SUM_MIN_BYTES``: see :func:`_bitmap_all_finite`.
    """
    nrows, ncols = m.shape
    if nrows * ncols * m.dtype.np_type.itemsize >= BITMAP_SUM_MIN_BYTES and is_bitmap(m):
        return _bitmap_all_finite(m)
    ops = _ops(m.dtype)
    total = ffi.new(ops.scalar)
    # s = sum_ij M(i,j)
    check_status(ops.reduce(total, ffi.NULL, ops.plus_monoid, m._carg, ffi.NULL), m)
    if math.isfinite(total[0]):
        return True
    # ok = AND_ij isfinite(M(i,j))
    return m.apply(unary.isfinite).new().reduce_scalar(monoid.land).new().value


def _bitmap_all_finite(x: Matrix) -> bool:
    """:func:`all_finite` of a bitmap ``X``, in NumPy on a copy of its values.

    The values of every position are summed, the undefined ones where ``X``
    has no entry included: they can make the sum non-finite, never finite, so
    a finite sum still proves every entry finite, and it takes one pass, no
    mask. SuiteSparse's reduction tests each position's flag: 64 x 1024 FP64,
    20-50 % stored, 130-220 us against 28; 1024 x 1024 FP32, 1.8-4.4 ms
    against 0.3 (zeros for the undefined values, as :func:`_bitmap_values`
    makes them, took 75 us and 0.8 ms). A sum that is not finite is followed
    by a check of every value with the undefined ones zeroed (picking the
    entries' values out by their flags took 4-6x as long, 64 x 1024).
    """
    present, values, iso = _unpack_bitmap(_dup(x), stored_by_row(x))  # (a copy: X stays packed)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite sum is an answer
        if math.isfinite(values.sum()):
            return True
    if iso:  # one value for every entry
        return not present.any()
    # (into a reused array: zeroing the copy in place took 5x as long, 64 x 1024 FP64)
    zeroed = aligned_empty(*x.shape, values.dtype)
    _zero_undefined(values, present, zeroed.reshape(-1))
    ok = bool(np.isfinite(zeroed).all())
    recycle(zeroed)
    return ok


def is_full(m: Matrix) -> bool:
    """Whether ``m`` stores every entry."""
    return nvals(m) == m.shape[0] * m.shape[1]


def stores_positions(m: Matrix) -> bool:
    """Whether ``m`` holds a value at every position: full, or a bitmap (whose values
    :func:`take_positions` takes without a copy)."""
    return is_bitmap(m) or is_full(m)


def is_bitmap(m: Matrix) -> bool:
    """Whether SuiteSparse holds ``m`` as a bitmap (values of every position, and a flag each)."""
    status = ffi.new("int32_t*")
    check_status(lib.GxB_Matrix_Option_get_INT32(m._carg, lib.GxB_SPARSITY_STATUS, status), m)
    return status[0] == lib.GxB_BITMAP


def stored_by_row(m: Matrix) -> bool:
    """Whether ``m`` is stored by row (SuiteSparse's default) rather than by column."""
    orientation = ffi.new("int32_t*")
    check_status(lib.GxB_Matrix_Option_get_INT32(m._carg, lib.GxB_FORMAT, orientation), m)
    return orientation[0] == lib.GxB_BY_ROW


class _Ops(NamedTuple):
    """C handles of the operators the kernels call for one value type."""

    plus_times: object
    plus: object
    identity: object
    plus_monoid: object
    reduce: object  # GrB_Matrix_reduce to a C scalar of the type
    scalar: str  # the C type of that scalar, as ffi.new takes it


def handle(ops: Any, name: str, dtype: DataType) -> Any:
    """The C handle of the python-graphblas operator ``ops.<name>`` on ``dtype``
    (``ops`` the module ``binary``, ``monoid``, ``select``, ``unary`` or ``semiring``),
    looked up once: python-graphblas's lookup costs ~3 us."""
    key = (ops.__name__, name, dtype.name)
    found = _HANDLES.get(key)
    if found is None:
        found = _HANDLES[key] = getattr(ops, name)[dtype]._carg
    return found


def _ops(dtype: DataType) -> _Ops:
    """The operators of ``dtype``, looked up once (by name: a DataType hashes in Python)."""
    ops = _OPS.get(dtype.name)
    if ops is None:
        ops = _OPS[dtype.name] = _Ops(
            handle(semiring, "plus_times", dtype),
            handle(binary, "plus", dtype),
            handle(unary, "identity", dtype),
            handle(monoid, "plus", dtype),
            getattr(lib, f"GrB_Matrix_reduce_{dtype.name}"),
            f"{dtype.c_type}*",
        )
    return ops


def empty_matrix(dtype: DataType, nrows: int, ncols: int) -> Matrix:
    """A new empty ``Matrix`` by one C call (``Matrix(dtype, nrows, ncols)``: ~19 us)."""
    obj = ffi.new("GrB_Matrix*")
    check_status(lib.GrB_Matrix_new(obj, dtype._carg, nrows, ncols), "GrB_Matrix_new")
    return Matrix._from_obj(obj, dtype, nrows, ncols)


def _zeros(dtype: DataType, nrows: int, ncols: int) -> Matrix:
    """A new full ``Matrix`` of zeros (not iso: every entry's value stored).

    Up to ``ZERO_COPY_BYTES``, a copy of one this thread keeps for each of the
    last ``ZERO_SHAPES`` shapes; larger, a NumPy array's zeros, handed over.
    """
    if nrows * ncols * dtype.np_type.itemsize > ZERO_COPY_BYTES:
        return give(np.zeros((nrows, ncols), dtype.np_type), dtype)
    kept = _LOCAL.zeros
    key = (dtype.name, nrows, ncols)
    template = kept.get(key)
    if template is None:
        template = kept[key] = give(np.zeros((nrows, ncols), dtype.np_type), dtype)
        if len(kept) > ZERO_SHAPES:
            kept.popitem(last=False)
    else:
        kept.move_to_end(key)  # the shape used last is dropped last
    return _dup(template)


def _dup(m: Matrix) -> Matrix:
    """A copy of ``m`` by one C call (``GrB_Matrix_dup``)."""
    obj = ffi.new("GrB_Matrix*")
    check_status(lib.GrB_Matrix_dup(obj, m._carg), m)
    return Matrix._from_obj(obj, m.dtype, *m.shape)


def release(m: Matrix) -> None:
    """Free the entries of ``m`` now: a matrix gbdnn made and uses no more.

    Every python-graphblas 2025.2.0 ``Matrix`` is in a reference cycle with its
    ``ss`` accessor (python-graphblas issue 559), so a dropped one keeps its
    memory until Python's cyclic garbage collector runs, and the matrices made
    meanwhile take fresh memory: four 1024-wide layers on 1024 rows made
    ~1000 page faults a call (``bench/README.md``). ``m`` stays a valid,
    empty matrix.
    """
    check_status(lib.GrB_Matrix_clear(m._carg), m)


def freed_when_dropped(m: Matrix) -> Matrix:
    """``m``, out of its reference cycle (see :func:`release`): a result handed to
    the caller, freed as soon as the caller drops it.

    The cycle runs through ``m.ss`` and its ``config``, which hold ``m``; they hold
    a weak proxy of it instead, and work as before while ``m`` lives. Dropped in a
    loop, 1024 rows through a dense 1024x1024 FP64 layer (BLAS) took 38-39 ms a
    call waiting for the collector (its memory page-faulted afresh each call),
    21-22.5 ms freed at once, NumPy's own product 20-21 ms (``bench/per_call.py``,
    ``bench/README.md``, twenty-first session). A python-graphblas whose accessor
    holds its matrix otherwise is left as it is.
    """
    accessor = getattr(m, "ss", None)
    config = getattr(accessor, "config", None)
    if getattr(accessor, "_parent", None) is m and getattr(config, "_parent", None) is m:
        proxy = weakref.proxy(m)
        accessor._parent = config._parent = proxy
    return m


def give(
    values: np.ndarray, dtype: DataType, *, by_row: bool = True, flags: np.ndarray | None = None
) -> Matrix:
    """A full matrix that takes over the memory of ``values``, without a copy; with
    ``flags`` (bools of the same shape, taken over too) a bitmap of the flagged entries.

    ``values`` must be C-ordered and own its memory (or view from its start an
    array that does); it must not be used afterwards (it no longer owns the
    memory, which the matrix frees). With ``by_row`` False, ``values`` holds the
    transpose ``Z'`` of the matrix ``Z`` returned, which is stored by column (the
    same memory). SuiteSparse allocates with NumPy's allocator
    (``suitesparse_graphblas`` initialises it so), so either side may free what the
    other allocated. ``Matrix.ss.import_fullr(values, take_ownership=True)`` does
    the same in ~40 us, this in ~5 us.
    """
    owners = [_owner(a) for a in (values, flags) if a is not None]
    for name, array, owner in zip(("values", "flags"), (values, flags), owners, strict=False):
        # (an owner is its own start: ndarray.ctypes costs 0.8 us a read)
        starts = owner is array or array.ctypes.data == owner.ctypes.data
        if not (array.flags.c_contiguous and starts):
            raise ValueError(f"{name} must be a C-ordered array that owns its memory")
    if flags is not None and (flags.shape != values.shape or flags.dtype != np.bool_):
        raise ValueError(f"flags must be bools of the shape of values {values.shape}")
    m = empty_matrix(dtype, *(values.shape if by_row else values.shape[::-1]))
    pointer = ffi.new("void**", ffi.from_buffer("void*", owners[0]))
    if flags is None:
        pack = lib.GxB_Matrix_pack_FullR if by_row else lib.GxB_Matrix_pack_FullC
        check_status(pack(m._carg, pointer, owners[0].nbytes, False, ffi.NULL), m)
    else:
        pack = lib.GxB_Matrix_pack_BitmapR if by_row else lib.GxB_Matrix_pack_BitmapC
        present = ffi.new("int8_t**", ffi.from_buffer("int8_t*", owners[1]))
        count = int(np.count_nonzero(flags))
        sizes = (owners[1].nbytes, owners[0].nbytes)
        check_status(pack(m._carg, present, pointer, *sizes, False, count, ffi.NULL), m)
    for owner in owners:
        unclaim_buffer(owner)
    return m


def take_positions(m: Matrix) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The values of a full or bitmap ``m`` (``m`` left empty), without a copy.

    Returns the values as a C-ordered array in storage order (``M`` if ``m`` is
    stored by row, ``M'`` if by column), the flags of a bitmap (bools of the same
    shape, None for a full ``m``; the values where a flag is off are undefined),
    and whether ``m`` is stored by row. Both arrays can go back to :func:`give`.
    """
    by_row = stored_by_row(m)
    shape = m.shape if by_row else m.shape[::-1]
    if not is_bitmap(m):
        return _take(m), None, by_row
    present, values, iso = _unpack_bitmap(m, by_row)
    size = shape[0] * shape[1]
    if iso:  # one value for every entry
        values = np.full(size, values[0])
    return values[:size].reshape(shape), present.view(np.bool_).reshape(shape), by_row


def _take(m: Matrix) -> np.ndarray:
    """The values of full ``m`` as a C-ordered array that takes over their memory.

    ``m`` is left empty; the inverse of :func:`give`, without a copy. The
    array holds ``M`` if ``m`` is stored by row, ``M'`` if by column.
    """
    pointer, size, iso = ffi.new("void**"), ffi.new("GrB_Index*"), ffi.new("bool*")
    by_row = stored_by_row(m)
    unpack = lib.GxB_Matrix_unpack_FullR if by_row else lib.GxB_Matrix_unpack_FullC
    check_status(unpack(m._carg, pointer, size, iso, ffi.NULL), m)
    nrows, ncols = m.shape if by_row else m.shape[::-1]
    dtype = m.dtype.np_type
    if iso[0]:  # one value stored for every entry
        return np.full((nrows, ncols), claim_buffer(ffi, pointer[0], 1, dtype)[0])
    return claim_buffer_2d(ffi, pointer[0], size[0] // dtype.itemsize, nrows, ncols, dtype, True)


def plus_times_into(
    c: Matrix, a: Matrix, b: Matrix, *, accumulate: bool = False, desc: object = ffi.NULL
) -> None:
    """``C = A B`` (``C += A B`` if ``accumulate``) over ``plus_times`` of ``C``'s value type."""
    ops = _ops(c.dtype)
    accum = ops.plus if accumulate else ffi.NULL
    check_status(lib.GrB_mxm(c._carg, ffi.NULL, accum, ops.plus_times, a._carg, b._carg, desc), c)


def plus_assign(d: Matrix, x: Matrix) -> None:
    """``D += X`` on the entries of ``X`` (``D`` full: in place)."""
    ops = _ops(d.dtype)
    check_status(
        lib.GrB_Matrix_apply(d._carg, ffi.NULL, ops.plus, ops.identity, x._carg, ffi.NULL), d
    )


def sparse_format(w: Matrix) -> Matrix:
    """Keep ``w`` in a sparse (CSR / hypersparse) format, never bitmap or full; returns ``w``.

    SuiteSparse stores a matrix denser than a few percent as a bitmap, and its
    products with a bitmap or full weight matrix are 7-30x slower than with
    the same weights in CSR (1024-1536 wide layers, 25-100 % dense; measured in
    ``bench/README.md``): weights are always kept sparse.
    """
    w.ss.config["sparsity_control"] = ["sparse", "hypersparse"]
    return w


def plus_times(x: Matrix, w: Matrix, *, fill: bool = False, full: bool | None = None) -> Matrix:
    """Return ``Z = X W`` over the ``plus_times`` semiring of ``W``'s value type.

    A sparse ``X`` goes to SuiteSparse's Gustavson method, a new sparse ``Z``,
    unless ``fill`` asks to make it full first (:func:`dense_rows`).
    A full ``X`` is accumulated into a full zero ``Z`` in place (its saxpy4
    method): 1.2-2.3x faster than Gustavson with a full ``X``, whose result
    is a bitmap (``bench/README.md``). Both sum ``X(i,k) W(k,j)`` in the order
    of ``k`` from zero, so a row's result does not depend on the format its
    batch has (zero terms add nothing). One ``GrB_mxm`` call:
    ``x.mxm(w).new()`` took 45 us for one row through a 1024 x 1024 layer at
    99.9 % sparsity, this 18 us. ``full`` says whether ``X`` stores every entry
    when the caller has counted them (None: counted here).
    """
    (nrows, n_in), (n_w, n_out) = x.shape, w.shape
    if n_in != n_w:
        raise ShapeError(f"X has {n_in} columns but W has {n_w} rows")
    if full is None:
        full = is_full(x)
    filled = None
    if fill and not full:
        x = filled = give(dense_rows(x, x.dtype.np_type), x.dtype)
        full = True
    if full:
        z = _zeros(w.dtype, nrows, n_out)
        # Z = 0 (full), then Z += X W in place
        plus_times_into(z, x, w, accumulate=True)
        if filled is not None:
            recycle(_take(filled))
        return z
    z = empty_matrix(w.dtype, nrows, n_out)
    # Z(i,j) = sum_k X(i,k) * W(k,j)
    plus_times_into(z, x, w)
    return z


def dense_rows(x: Matrix, dtype: np.dtype, *, transpose: bool = False) -> np.ndarray:
    """``X`` (``X'`` if ``transpose``) as a new dense NumPy array of ``dtype``.

    Zeros where ``X`` has no entry; C-ordered, its memory aligned to
    ``ALIGNMENT`` bytes and owned by the array (it can go to :func:`give`).
    """
    dtype = np.dtype(dtype)
    gtype = lookup_dtype(dtype)
    shape = x.shape[::-1] if transpose else x.shape
    by_row = stored_by_row(x)
    if is_full(x):
        out = aligned_empty(*(x.shape if by_row else x.shape[::-1]), dtype)
        _extract_full(x, out)
    elif x.dtype == gtype and is_bitmap(x):
        out = _bitmap_values(x, by_row)
    else:
        # D = 0 (full, stored as asked), then D += X in place (CSR X: 2-7x faster than
        # to_dense(fill_value=0))
        d = give(aligned_zeros(*shape, dtype), gtype, by_row=not transpose)
        plus_assign(d, x)
        return _take(d)
    if by_row != transpose:
        return out
    flipped = aligned_empty(*shape, dtype)
    transpose_into(flipped, out)
    recycle(out)
    return flipped


def _extract_full(x: Matrix, out: np.ndarray) -> None:
    """Copy the values of a full ``X`` in storage order (``X`` by row, ``X'`` by column)
    into the C-ordered ``out``, cast to its type."""
    gtype = lookup_dtype(out.dtype)
    extract = getattr(lib, f"GrB_Matrix_extractTuples_{gtype.name}")
    count = ffi.new("GrB_Index*", out.size)
    values = ffi.from_buffer(f"{gtype.c_type}*", out, require_writable=True)
    check_status(extract(ffi.NULL, ffi.NULL, values, count, x._carg), x)


def dense_into(x: Matrix, out: np.ndarray) -> None:
    """Write ``X`` into ``out``, an array of its shape: zeros where ``X`` has no entry.

    A full ``X`` stored by row goes straight into a C-ordered ``out``, one
    C call (one row of 4096: 2.9 us; through :func:`dense_stored`, 6.0 us).
    """
    if out.shape != x.shape:
        raise ShapeError(f"out has shape {out.shape} but X has shape {x.shape}")
    if out.flags.c_contiguous and stored_by_row(x) and is_full(x):
        _extract_full(x, out)
        return
    values = dense_stored(x, out.dtype)
    if values.flags.c_contiguous:
        out[...] = values
    else:  # stored by column: values is a view of the transpose
        transpose_into(out, values.T)


def _bitmap_values(x: Matrix, by_row: bool) -> np.ndarray:
    """The values of a bitmap ``X`` in storage order, zeros where it has no entry.

    SuiteSparse's ``D += X`` into a full zero ``D`` took 5-8 ns per position
    of a bitmap ``X`` (1024 x 1024, half of it stored; 0.9 ns from CSR): a
    copy of ``X`` is unpacked instead and its values masked by its bitmap
    (:func:`_zero_undefined`).
    """
    present, stored, iso = _unpack_bitmap(_dup(x), by_row)  # (a copy: X stays packed)
    nrows, ncols = x.shape if by_row else x.shape[::-1]
    out = aligned_empty(nrows, ncols, stored.dtype)
    if iso:  # one value for every entry
        np.multiply(present.reshape(nrows, ncols), stored[0], out=out)
        return out
    _zero_undefined(stored, present, out.reshape(-1))
    return out


def _zero_undefined(values: np.ndarray, present: np.ndarray, out: np.ndarray) -> None:
    """``out = values`` where ``present`` (int8 flags), 0 elsewhere; flat arrays, ``out``
    may be ``values``. Branch-free: a bitwise AND, as the values where a bitmap has no
    entry are undefined, possibly NaN, so they are not multiplied by zero."""
    bits = np.dtype(f"i{values.itemsize}")
    mask = present.astype(bits)
    np.negative(mask, out=mask)  # 1 -> all bits set, 0 -> none
    np.bitwise_and(values.view(bits), mask, out=out.view(bits))


def _unpack_bitmap(x: Matrix, by_row: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """Take the flags (int8) and values of bitmap ``x``, which is left empty, as flat
    arrays in storage order (``by_row`` must say which it is), and whether ``x`` is
    iso (its values are then one value, that of every entry)."""
    flags, values = ffi.new("int8_t**"), ffi.new("void**")
    flags_size, values_size = ffi.new("GrB_Index*"), ffi.new("GrB_Index*")
    iso, count = ffi.new("bool*"), ffi.new("GrB_Index*")
    unpack = lib.GxB_Matrix_unpack_BitmapR if by_row else lib.GxB_Matrix_unpack_BitmapC
    check_status(unpack(x._carg, flags, values, flags_size, values_size, iso, count, ffi.NULL), x)
    size = x.shape[0] * x.shape[1]
    dtype = x.dtype.np_type
    present = claim_buffer(ffi, flags[0], flags_size[0], np.dtype(np.int8))[:size]
    stored = claim_buffer(ffi, values[0], values_size[0] // dtype.itemsize, dtype)
    return present, stored[: 1 if iso[0] else size], iso[0]


def dense_stored(x: Matrix, dtype: np.dtype) -> np.ndarray:
    """``X`` as a new dense NumPy array in the order ``X`` is stored in.

    C-ordered if ``X`` is stored by row; if by column, a transposed view of
    ``X'`` (F-ordered), so no transpose is made (BLAS and NumPy read either).
    """
    by_row = stored_by_row(x)
    values = dense_rows(x, dtype, transpose=not by_row)
    return values if by_row else values.T


def plus_times_dot(x: Matrix, wt: Matrix, *, full: bool | None = None) -> Matrix:
    """Return ``Z = X W`` for a few rows, as dot products ``Z = X (W')'`` in the value
    type of ``W'`` (``X`` cast to it).

    ``wt`` is ``W'`` (stored by row); ``X`` is made full. Each ``Z(i,j)`` is
    the dot product of row ``i`` of ``X`` with row ``j`` of ``W'``, summed in
    the order of that row, so a row's result does not depend on the batch.
    The products are accumulated into a full zero ``Z`` in place,
    SuiteSparse's dot4 method (up to four rows of ``X`` at a time where
    ``nnz(W)`` is at least that many times the input width, else one dot
    product at a time, :data:`gbdnn.tuning.DOT_MAX_ROWS`): one row through
    4096x4096 at 99.9 % took 9 us, against 33 us into a new ``Z`` (dot2, each
    entry a loop of its own) and 13 us by :func:`plus_times`
    (``bench/README.md``). Like every kernel it runs on the threads of the
    context engaged (one in a batch, :func:`batch_threads`). ``full`` as in
    :func:`plus_times`.
    """
    x, filled = _full_input(x, full, wt.dtype)
    z = _dot(x, wt)
    _recycle_input(filled)
    return z


def plus_times_dot_halves(
    x: Matrix, halves: tuple[Matrix, Matrix], *, full: bool | None = None
) -> Matrix:
    """:func:`plus_times_dot` on ``W'`` cut in two by rows (:func:`transposed_halves`),
    the second half computed by the helper thread on another core (:mod:`gbdnn.helper`).

    The same dot products as :func:`plus_times_dot`, bit for bit, in two parts
    run at once; the two parts of ``Z`` are then joined (``GxB_Matrix_concat``).
    For products large enough to pay for the hand-over
    (:func:`gbdnn.tuning.splits`): one row through 4096x4096 at 90 % took
    0.59x the time on one thread (553 against 932 us), at 98 % 1.2-1.5x
    (``bench/README.md``, twentieth session).
    Where the helper is busy with another thread's product, the caller
    computes both halves.
    """
    x, filled = _full_input(x, full, halves[0].dtype)
    # X is read by both threads: no pending work that either would finish
    check_status(lib.GrB_Matrix_wait(x._carg, lib.GrB_MATERIALIZE), x)

    def second() -> Matrix:
        with batch_threads():  # one thread, as every kernel
            return _dot(x, halves[1])

    parts = helper.run_beside(lambda: _dot(x, halves[0]), second)
    _recycle_input(filled)
    z = empty_matrix(parts[0].dtype, x.shape[0], parts[0].shape[1] + parts[1].shape[1])
    # Z = [Z1 Z2]
    tiles = ffi.new("GrB_Matrix[]", [part._carg for part in parts])
    check_status(lib.GxB_Matrix_concat(z._carg, tiles, 1, 2, ffi.NULL), z)
    for part in parts:
        release(part)
    return z


def _full_input(x: Matrix, full: bool | None, dtype: DataType) -> tuple[Matrix, Matrix | None]:
    """``X`` full and of ``dtype`` (made so if it is not, ``full`` as in :func:`plus_times`),
    and the matrix made for it, if any (for :func:`_recycle_input`)."""
    if full is None:
        full = is_full(x)
    if full and x.dtype == dtype:
        return x, None
    filled = give(dense_rows(x, dtype.np_type), dtype)
    return filled, filled


def _recycle_input(filled: Matrix | None) -> None:
    """Keep the memory of a full ``X`` that :func:`_full_input` made for reuse."""
    if filled is not None:
        recycle(_take(filled))


def _dot(x: Matrix, wt: Matrix) -> Matrix:
    """``Z = X (W')'`` for a full ``X`` into a new full ``Z``, by dot products."""
    z = _zeros(wt.dtype, x.shape[0], wt.shape[0])
    # Z = 0 (full), then Z(i,j) += sum_k X(i,k) W'(j,k) in place
    plus_times_into(z, x, wt, accumulate=True, desc=lib.GrB_DESC_T1)
    return z


def transposed_halves(w: Matrix) -> tuple[Matrix, Matrix]:
    """``(W1', W2')`` for ``W = [W1 W2]`` cut by columns into two parts of (about)
    as many entries each, both kept sparse (:func:`sparse_format`)."""
    ncols = w.shape[1]
    if ncols < 2:
        raise ShapeError(f"W needs two columns or more to be cut in two, has {ncols}")
    counts = w.reduce_columnwise(agg.count).new().to_dense(fill_value=0)
    # the first column at which half of the entries are behind
    cut = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2)) + 1
    cut = min(max(cut, 1), ncols - 1)
    return tuple(sparse_format(part.T.new()) for part in (w[:, :cut].new(), w[:, cut:].new()))


def tile_rows(n_in: int, n_out: int, itemsize: int) -> int:
    """Rows of ``X`` per tile of :func:`plus_times_dense`, a multiple of ``DENSE_LANES``."""
    rows = DENSE_TILE_BYTES // (max(n_in, n_out, 1) * itemsize) // DENSE_LANES * DENSE_LANES
    return min(max(rows, DENSE_LANES), DENSE_TILE_MAX)


def padded_width(rows: int) -> int:
    """Rows of a dense-kernel tile holding ``rows`` rows: a multiple of ``DENSE_LANES``."""
    return -(-rows // DENSE_LANES) * DENSE_LANES


def plus_times_dense(x: Matrix, wt: Matrix | tuple[Matrix, Matrix]) -> Matrix:
    """Return ``Z = X W`` for dense activations, computed as ``Z' = W' X'`` in the
    value type of ``W'`` (``X`` cast to it).

    ``wt`` is ``W'`` (stored by row), or ``W'`` cut in two by rows
    (:func:`transposed_halves`), whose second half's products the helper thread
    computes on another core (:mod:`gbdnn.helper`), bit for bit the same ``Z``.
    ``X'`` is made full, in tiles of
    :func:`tile_rows` rows of ``X``, and each tile's product is accumulated into
    a full zero matrix: SuiteSparse's saxpy kernel for a sparse times a full
    matrix into a full result, much faster than ``X W`` when ``X`` is dense.
    Tiles are padded with zero rows to a multiple of ``DENSE_LANES``:
    SuiteSparse's vectorised loop over the columns of ``X'`` rounds
    differently from its scalar remainder loop (columns beyond the last
    multiple of 16 for FP32, of 8 for FP64, on the project's machines), so
    without padding a row's result would depend on its place in the batch.

    A batch that is one unpadded tile (a multiple of ``DENSE_LANES`` rows, at
    most :func:`tile_rows`) gets ``Z`` stored by column: its memory is the
    ``Z'`` computed, so nothing is transposed on the way out, and a following
    layer's dense kernel reads it as its ``X'`` without a transpose on the way
    in (NumPy's transposes cost as much as the product on small layers).
    Larger batches get ``Z`` by row, each tile transposed back while in cache:
    strips written into one ``Z'`` were slower (512 rows through 4096 x 4096:
    7.5 vs 5 ms).
    """
    parts = (wt,) if isinstance(wt, Matrix) else wt
    dtype = parts[0].dtype  # X is cast to it: an integer layer's W' may hold FP32
    n_in = parts[0].shape[1]
    heights = [part.shape[0] for part in parts]
    n_out = sum(heights)
    nrows = x.shape[0]
    # X as stored (by row: X, by column: X'), tiles of X' cut from it (keep FP32 FP32)
    by_row = stored_by_row(x)
    source = dense_rows(x, dtype.np_type, transpose=not by_row)
    tile = tile_rows(n_in, n_out, source.itemsize)

    def cut(start: int, stop: int) -> np.ndarray:
        """``X'`` of rows ``start:stop``, aligned, padded with zero columns."""
        xt = aligned_empty(n_in, padded_width(stop - start), source.dtype)
        if by_row:
            transpose_into(xt[:, : stop - start], source[start:stop])
        else:
            xt[:, : stop - start] = source[:, start:stop]
        xt[:, stop - start :] = 0
        return xt

    if nrows <= tile and padded_width(nrows) == nrows:  # one tile, unpadded: its Z' is all
        if by_row:
            xt = cut(0, nrows)
            recycle(source)
        else:
            xt = source
        zts = _tile_products(parts, xt, dtype)
        if len(zts) > 1:  # Z' = [Z1'; Z2']
            zt = aligned_empty(n_out, nrows, source.dtype)
            zt[: heights[0]], zt[heights[0] :] = zts
            for part in zts:
                recycle(part)
            zts = [zt]
        return give(zts[0], dtype, by_row=False)
    z = np.empty((nrows, n_out), source.dtype)
    offsets = np.cumsum([0, *heights[:-1]])
    for start in range(0, nrows, tile):  # tiles of rows keep X' and Z' in cache
        stop = min(start + tile, nrows)
        zts = _tile_products(parts, cut(start, stop), dtype)
        for first, zt in zip(offsets, zts, strict=True):
            transpose_into(z[start:stop, first : first + zt.shape[0]], zt[:, : stop - start])
            recycle(zt)
    recycle(source)
    return give(z, dtype)


def _tile_products(parts: tuple[Matrix, ...], xt: np.ndarray, dtype: DataType) -> list[np.ndarray]:
    """``W' X'`` for one tile ``X'`` (recycled afterwards) as NumPy arrays, one per
    part of ``W'``: the second, if any, on the helper thread."""
    # the results made here, where the memory is recycled
    zts = [give(aligned_zeros(part.shape[0], xt.shape[1], xt.dtype), dtype) for part in parts]
    xt_m = give(xt, dtype)

    def product(i: int) -> np.ndarray:
        # Z_i' = 0, then Z_i' += W_i' X'
        plus_times_into(zts[i], parts[i], xt_m, accumulate=True)
        return _take(zts[i])

    if len(parts) == 1:
        out = [product(0)]
    else:

        def second() -> np.ndarray:
            with batch_threads():  # one thread, as every kernel
                return product(1)

        out = list(helper.run_beside(lambda: product(0), second))
    recycle(_take(xt_m))
    return out


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns the memory ``array`` views (``array`` itself if it does)."""
    while not array.flags.owndata:
        array = array.base
    return array
