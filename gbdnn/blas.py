"""NumPy's dense BLAS as a gbdnn kernel, and which threads each call runs on (bottom layer).

OpenBLAS's worker threads (and MKL's) spin for about 0.1 s after each call that
used them, on the core that gbdnn's helper thread (or a second batch thread) needs:
in a model, a layer whose product shares the helper thread took 2.2x its time alone
right after a layer on BLAS (``bench/README.md``). So gbdnn runs its larger BLAS
products on one thread of the BLAS library each (its thread count set to one while
any such call runs, then set back) and spreads the work over the cores itself, as
for its other kernels: a batch alone computes half of ``W``'s columns on the helper
thread, batches run by several batch threads each make their own call. Products
for which waking the helper is more than a small share of the time keep BLAS's own
threads, which are quicker to start (their spin is what makes them so).

Where no BLAS library can be limited so (only an OpenBLAS on its own threads is,
through the library itself: ``threadpoolctl`` lets only one Python thread set it),
every call keeps BLAS's own threads.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
from graphblas import Matrix
from graphblas.dtypes import lookup_dtype

from . import helper
from .errors import ParameterError
from .kernels import dense_stored, give, recycle

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


#: How a BLAS product uses the cores: ``"own"`` BLAS's own threads (calls take
#: turns: each uses every core); ``"one"`` one BLAS thread (one batch thread's
#: product while others run theirs); ``"two"`` one BLAS thread on each half of
#: ``W``'s columns, the second half on the helper thread (a batch alone).
Threads = Literal["own", "one", "two"]
THREADS: tuple[Threads, ...] = get_args(Threads)


class _OneThread:
    """While any thread is inside, every BLAS library runs each call on one thread.

    The first to enter saves the libraries' thread counts and sets them to one; the
    last to leave sets them back, so NumPy's own calls between gbdnn's keep all their
    threads. A call NumPy makes on another thread while a gbdnn call runs gets one
    thread too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved: list[tuple[Callable[[int], None], int]] = []

    def __enter__(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._saved = [(set_threads, get()) for get, set_threads in _libraries()]
                for set_threads, _ in self._saved:
                    set_threads(1)
            self._inside += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                for set_threads, threads in self._saved:
                    set_threads(threads)


_ONE_THREAD = _OneThread()
_TURNS = threading.Lock()


def plus_times_blas(x: Matrix, w_dense: np.ndarray, *, threads: Threads = "own") -> Matrix:
    """Return ``Z = X W`` by dense BLAS (NumPy), for weights too dense for sparse kernels.

    ``threads`` as in :data:`Threads` (see the module documentation); ``"one"``
    and ``"two"`` fall back to ``"own"`` where BLAS's threads cannot be limited,
    ``"two"`` to ``"one"`` where there is no helper thread. With ``"two"`` each
    element of ``Z`` is the same dot product as in one call. A sum that overflows
    is infinite without a warning, as in the GraphBLAS kernels.
    """
    if threads not in THREADS:
        raise ParameterError(f"threads must be one of {', '.join(THREADS)}, got {threads!r}")
    dense = dense_stored(x, w_dense.dtype)
    z = np.empty((dense.shape[0], w_dense.shape[1]), dtype=np.result_type(dense, w_dense))

    # Z(:, a:b) = X W(:, a:b), one BLAS call
    def columns(start: int, stop: int | None) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # per thread
            np.matmul(dense, w_dense[:, start:stop], out=z[:, start:stop])

    if threads == "own" or not _libraries():
        with _TURNS:
            columns(0, None)
    elif threads == "two" and helper.SUPPORTED and (cut := w_dense.shape[1] // 2):
        with _ONE_THREAD:
            helper.run_beside(lambda: columns(0, cut), lambda: columns(cut, None))
    else:
        with _ONE_THREAD:
            columns(0, None)
    recycle(dense)
    return give(z, lookup_dtype(z.dtype))
