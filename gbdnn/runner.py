"""Batched, multi-threaded execution of a layer pipeline on user inputs.

The rows of the input are cut into batches; each batch is converted to
GraphBLAS, pushed through every stage and written into the result, so memory
is bounded by ``threads`` batches in flight plus the result itself. Batches run
in a thread pool (GraphBLAS releases the GIL), each GraphBLAS call on one
thread (:func:`gbdnn.kernels.batch_threads`); an input that runs as one batch
on one thread lets the dot kernel share a large product with the helper
thread (:mod:`gbdnn.helper`) when ``threads`` allows two. A row's result does not
depend on the other rows of its batch: with a fixed kernel (see
:mod:`gbdnn.tuning`) results are bit-identical for any ``batch_size`` and
``threads``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from graphblas import Matrix
from tqdm.auto import tqdm

from .convert import ArrayLike, family_of, from_matrices, row_slice, to_matrix
from .dtypes import ValueType
from .errors import ParameterError, ShapeError
from .kernels import batch_threads, dense_into, freed_when_dropped, release

Stage = Callable[[Matrix], Matrix]
Output = Literal["auto", "numpy", "scipy", "graphblas"]

#: The automatic batch holds about this many activations (rows x widest layer).
AUTO_BATCH_ENTRIES = 1 << 22
#: Inputs with less estimated work than this run as one batch: below ~30 ms
#: two batch threads were slower than one on the project's 2-core machines
#: (up to 1.8x; ``bench/README.md``), above ~40 ms up to 1.6x faster.
PARALLEL_MIN_SECONDS = 0.03
_OUTPUTS = ("auto", "numpy", "scipy", "graphblas")


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A thread pool of ``threads`` workers, made once and reused."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gbdnn")
        return _POOLS[threads]


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer (Python or NumPy, not a bool) of at least 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _positive_int(value: object, name: str) -> int:
    if not is_positive_int(value):
        raise ParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def plan_batches(nrows: int, batch_size: int, threads: int) -> list[tuple[int, int]]:
    """Row ranges ``(start, stop)`` of at most ``batch_size`` rows, evenly sized.

    The number of batches is rounded up to a multiple of ``threads``, so no
    thread sits idle while another finishes the last batch.
    """
    if nrows == 0:
        return []
    if nrows <= batch_size and threads == 1:
        return [(0, nrows)]
    count = -(-nrows // batch_size)
    count = -(-count // threads) * threads
    size = -(-nrows // count)
    return [(start, min(start + size, nrows)) for start in range(0, nrows, size)]


def run(
    stages: Sequence[Stage],
    x: ArrayLike,
    *,
    in_features: int,
    out_features: int,
    max_width: int,
    vtype: ValueType,
    batch_size: int | None = None,
    threads: int | None = None,
    output: Output = "auto",
    check_finite: bool = True,
    progress: bool = False,
    row_seconds: Callable[[], float] = float,
) -> ArrayLike:
    """Run ``stages`` on the rows of ``x``; see :meth:`gbdnn.Sequential.predict`.

    ``row_seconds()`` estimates the work of one row (asked only for inputs of
    more than one row): an input with less than
    ``PARALLEL_MIN_SECONDS`` of work in all runs on one thread, batch after
    batch (one batch unless ``batch_size`` asks for more), where batch threads
    would cost more than they save.
    """
    family = family_of(x, "X")
    if output not in _OUTPUTS:
        raise ParameterError(f"output must be one of {', '.join(_OUTPUTS)}, got {output!r}")
    out_family = family if output == "auto" else output
    threads = available_cores() if threads is None else _positive_int(threads, "threads")
    if batch_size is None:
        batch_size = max(1, AUTO_BATCH_ENTRIES // max_width)
    else:
        batch_size = _positive_int(batch_size, "batch_size")
    if getattr(x, "ndim", 2) != 2:
        raise ShapeError(f"X must be two-dimensional (rows are samples), got shape {x.shape}")
    nrows, ncols = x.shape
    if ncols != in_features:
        raise ShapeError(f"X has {ncols} columns but the model expects {in_features}")
    if family == "scipy":
        x = x.tocsr()  # row slicing needs CSR; no copy if it already is

    workers = 1 if nrows <= 1 or nrows * row_seconds() < PARALLEL_MIN_SECONDS else threads
    batches = plan_batches(nrows, batch_size, workers)
    # a batch alone may share a large product with the helper thread on another core
    spare = workers == 1 and threads >= 2
    dense = np.zeros((nrows, out_features), vtype.numpy) if out_family == "numpy" else None
    bar = tqdm(total=nrows, unit="row", leave=False) if progress else None

    def one_batch(bounds: tuple[int, int]) -> Matrix | None:
        start, stop = bounds
        with batch_threads(spare=spare):
            z = to_matrix(row_slice(x, start, stop), vtype, "X", check_finite=check_finite)
            for stage in stages:
                out = stage(z)
                if out is not z and z is not x:  # never the caller's own matrix
                    release(z)
                z = out
            if dense is not None:
                dense_into(z, dense[start:stop])
                if z is not x:
                    release(z)
        if bar is not None:
            bar.update(stop - start)
        return z if dense is None else None

    try:
        if workers == 1 or len(batches) <= 1:
            parts = [one_batch(b) for b in batches]
        else:
            parts = list(_pool(workers).map(one_batch, batches))
    finally:
        if bar is not None:
            bar.close()
    if dense is not None:
        return dense
    if not parts:
        parts = [Matrix(vtype.graphblas, 0, out_features)]
    out = from_matrices(parts, out_family, like=x)
    return freed_when_dropped(out) if out_family == "graphblas" and out is not x else out
