"""NumPy's dense BLAS as a gbdnn kernel, on one BLAS thread per call (bottom layer).

OpenBLAS's worker threads (and MKL's) spin for about 0.1 s after each call that
used them, and take the core that gbdnn's helper thread runs on: in a model, a
layer whose product shares the helper thread took 2.2x its time alone right after a
layer on BLAS (``bench/README.md``). So gbdnn runs each of its BLAS calls on one
thread of the BLAS library (limited through ``threadpoolctl`` while any gbdnn BLAS
call runs, then set back) and spreads the work over the cores itself, as the other
kernels do: a batch alone computes half of ``W``'s columns on the helper thread,
batches run by several batch threads each make their own call.

Where ``threadpoolctl`` finds no BLAS library it can limit, the calls keep the
library's own threads and take turns (a lock), as every core is theirs.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from graphblas import Matrix
from graphblas.dtypes import lookup_dtype

from . import helper
from .kernels import dense_stored, give

#: OpenBLAS's exported names carry one of these prefixes and suffixes (NumPy's wheels:
#: ``scipy_openblas_set_num_threads64_``).
_AFFIXES = [(prefix, suffix) for prefix in ("", "scipy_") for suffix in ("", "64_", "_64")]


@lru_cache(maxsize=1)
def _libraries() -> tuple[tuple[Callable[[], int], Callable[[int], None]], ...]:
    """``(get, set)`` of the number of threads of each BLAS library loaded (NumPy's
    among them, found by ``threadpoolctl``); none unless every one is an OpenBLAS on
    its own threads (its setting is the process's), which the calls below set through
    the library itself: ``threadpoolctl`` lets only one Python thread set it."""
    from threadpoolctl import ThreadpoolController

    found = ThreadpoolController().select(user_api="blas").info()
    controls = []
    for info in found:
        if (info["internal_api"], info.get("threading_layer")) != ("openblas", "pthreads"):
            return ()
        library = ctypes.CDLL(info["filepath"])
        names = [
            (f"{p}openblas_get_num_threads{s}", f"{p}openblas_set_num_threads{s}")
            for p, s in _AFFIXES
        ]
        pair = next(
            (
                (getattr(library, g), getattr(library, s))
                for g, s in names
                if hasattr(library, g) and hasattr(library, s)
            ),
            None,
        )
        if pair is None:
            return ()
        pair[1].argtypes = [ctypes.c_int]
        controls.append(pair)
    return tuple(controls)


class _OneThread:
    """While any thread is inside, every BLAS library runs each call on one thread.

    The first to enter saves the libraries' thread counts and sets them to one; the
    last to leave sets them back, so NumPy's own calls between gbdnn's keep all their
    threads. A call NumPy makes on another thread while a gbdnn call runs gets one
    thread too. Without libraries to limit, calls take turns instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns = threading.Lock()
        self._inside = 0
        self._saved: list[tuple[Callable[[int], None], int]] = []

    def __enter__(self) -> None:
        if not _libraries():
            self._turns.acquire()
            return
        with self._lock:
            if self._inside == 0:
                self._saved = [(set_threads, get()) for get, set_threads in _libraries()]
                for set_threads, _ in self._saved:
                    set_threads(1)
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        if not _libraries():
            self._turns.release()
            return
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                for set_threads, threads in self._saved:
                    set_threads(threads)


_ONE_THREAD = _OneThread()


def splittable() -> bool:
    """Whether a BLAS product can be shared with the helper thread: BLAS's own threads
    can be limited to one per call (else each call uses every core itself)."""
    return bool(_libraries()) and helper.SUPPORTED


def plus_times_blas(x: Matrix, w_dense: np.ndarray, *, split: bool = False) -> Matrix:
    """Return ``Z = X W`` by dense BLAS (NumPy), for weights too dense for sparse kernels.

    Each BLAS call runs on one thread (see the module documentation). With
    ``split``, for a batch that runs alone with a core to spare, the helper
    thread computes ``Z`` for the second half of ``W``'s columns while the caller
    computes the first (each element the same dot product as in one call). A sum
    that overflows is infinite without a warning, as in the GraphBLAS kernels.
    """
    dense = dense_stored(x, w_dense.dtype)
    z = np.empty((dense.shape[0], w_dense.shape[1]), dtype=np.result_type(dense, w_dense))
    cut = w_dense.shape[1] // 2 if split and splittable() else 0

    # Z(:, a:b) = X W(:, a:b), a BLAS call on one thread
    def columns(start: int, stop: int | None) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # per thread
            np.matmul(dense, w_dense[:, start:stop], out=z[:, start:stop])

    with _ONE_THREAD:
        if cut:
            helper.run_beside(lambda: columns(0, cut), lambda: columns(cut, None))
        else:
            columns(0, None)
    return give(z, lookup_dtype(z.dtype))
