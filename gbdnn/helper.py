"""A helper thread that runs one task beside its caller, on another core.

One row through a large layer is a single product: batch threads cannot share
it, and SuiteSparse's own OpenMP threads are a latency trap on the project's
2-core KVM guests (after 15 ms or more of idleness the worker woke on the
caller's core while the caller spun at the join: one row through 4096x4096 at
99 % took 6-8 ms instead of 0.3; ``bench/README.md``, nineteenth session).
The helper is a Python thread that blocks between tasks (it never spins) and
is pinned, before a task, to a core other than its caller's current one, so
the scheduler cannot queue it behind its caller. gbdnn's dot kernel hands it
half of the product (:func:`gbdnn.kernels.plus_times_dot_halves`).

There is one helper per process, started on first use. A caller that finds
it busy (another thread's task) runs both tasks itself, as does one on a
single allowed core or on a system without ``sched_getcpu`` (not Linux).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import libc

T = TypeVar("T")
U = TypeVar("U")


# the core this thread runs on
_GETCPU = libc.function("sched_getcpu") if hasattr(os, "sched_setaffinity") else None
#: Whether this system can pin the helper to a core other than its caller's.
SUPPORTED = _GETCPU is not None


def _allowed_cores() -> list[int]:
    """The cores this thread may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def available() -> bool:
    """Whether a task can run beside its caller: the caller may run on two cores or
    more, and the system tells a thread which core it is on."""
    return SUPPORTED and len(_allowed_cores()) >= 2


class _Job:
    """One task handed to the helper, and what became of it."""

    __slots__ = ("done", "error", "result", "task")

    def __init__(self, task: Callable[[], Any]) -> None:
        self.task = task
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the helper when the task has run


class _Helper:
    """The helper thread: waits for a job, runs it, frees itself for the next."""

    def __init__(self) -> None:
        # held from a caller's hand-over until the helper has run the job (released by
        # the helper, so a caller interrupted while waiting leaves it busy, not reused)
        self.busy = threading.Lock()
        self._go = threading.Lock()
        self._go.acquire()
        self._job: _Job | None = None
        self._core: int | None = None
        thread = threading.Thread(target=self._loop, name="gbdnn-helper", daemon=True)
        thread.start()  # returns once the thread runs: its native id is known
        self._tid = thread.native_id

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            job = self._job
            try:
                job.result = job.task()
            except BaseException as exc:  # handed to the caller, raised there
                job.error = exc
            job.done.release()
            self.busy.release()

    def _pin(self) -> bool:
        """Pin the helper to a core other than the caller's; False if there is none."""
        core = _GETCPU()
        if core != self._core and self._core is not None:
            return True  # already elsewhere (one system call saved)
        others = [c for c in _allowed_cores() if c != core]
        if not others:
            return False
        # the next core after the caller's, round the list
        other = min(others, key=lambda c: (c < core, c))
        try:
            os.sched_setaffinity(self._tid, {other})
        except OSError:  # the core was taken away meanwhile (cgroup, hotplug)
            return False
        self._core = other
        return True

    def submit(self, task: Callable[[], Any]) -> _Job | None:
        """Hand ``task`` over; None if the helper is busy or has no other core."""
        if not self.busy.acquire(blocking=False):
            return None
        if not self._pin():
            self.busy.release()
            return None
        job = self._job = _Job(task)
        self._go.release()
        return job


_HELPER: _Helper | None = None
_HELPER_LOCK = threading.Lock()


def _helper() -> _Helper:
    global _HELPER
    with _HELPER_LOCK:
        if _HELPER is None:
            _HELPER = _Helper()
        return _HELPER


def _forget_helper() -> None:
    """After a fork: the child has no helper thread; it starts its own on first use."""
    global _HELPER, _HELPER_LOCK
    _HELPER, _HELPER_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helper)


def run_beside(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """Return ``(first(), second())``, running ``second`` on the helper thread, on
    another core, while the caller runs ``first``.

    Where the helper cannot take it (busy with another thread's task, one core
    allowed, no ``sched_getcpu``) the caller runs both, ``first`` first. An
    exception of either is raised in the caller, after both have finished.
    ``second`` must release the GIL for most of its time (a C call such as a
    GraphBLAS product) to run in parallel with ``first``.
    """
    job = _helper().submit(second) if SUPPORTED else None
    if job is None:
        return first(), second()
    try:
        result = first()
    finally:
        job.done.acquire()  # the helper is done with everything the two tasks share
    if job.error is not None:
        raise job.error
    return result, job.result
