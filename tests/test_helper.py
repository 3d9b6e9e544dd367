"""The helper thread that runs a task beside its caller, on another core."""

import os
import signal
import threading

import pytest

from gbdnn import helper

pytestmark = pytest.mark.skipif(
    not helper.available(), reason="needs two cores and sched_getcpu (Linux)"
)


def _where():
    """(thread, core, cores allowed) of the calling thread."""
    return threading.get_ident(), helper._GETCPU(), os.sched_getaffinity(0)


def test_second_runs_on_the_helper_pinned_away_from_the_callers_core():
    for _ in range(20):
        (caller, core, _), (other, _, allowed) = helper.run_beside(_where, _where)
        assert caller == threading.get_ident() != other
        # pinned to one core, not the caller's (read as the caller ran its own task)
        assert len(allowed) == 1 and core not in allowed
    assert os.sched_getaffinity(0) == set(helper._allowed_cores())  # the caller: untouched


def test_results_and_errors_come_back_to_the_caller():
    assert helper.run_beside(lambda: 1, lambda: 2) == (1, 2)

    def fail(message):
        def task():
            raise ValueError(message)

        return task

    with pytest.raises(ValueError, match="second"):
        helper.run_beside(lambda: 1, fail("second"))
    with pytest.raises(ValueError, match="first"):
        helper.run_beside(fail("first"), lambda: 2)
    # the helper is free again, on its own thread
    caller, other = helper.run_beside(threading.get_ident, threading.get_ident)
    assert caller != other


def test_a_busy_helper_leaves_both_tasks_to_the_caller():
    started, release, results = threading.Event(), threading.Event(), []

    def blocking():
        started.set()
        release.wait(10)
        return threading.get_ident()

    first = threading.Thread(target=lambda: results.append(helper.run_beside(int, blocking)))
    first.start()
    try:
        assert started.wait(10)
        # meanwhile another thread's pair: both on that thread, second after first
        order = []
        both = helper.run_beside(
            lambda: order.append(1) or threading.get_ident(),
            lambda: order.append(2) or threading.get_ident(),
        )
        assert both == (threading.get_ident(),) * 2 and order == [1, 2]
    finally:
        release.set()
        first.join(10)
    assert results and results[0][1] not in (first.ident, threading.get_ident())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_helper():
    helper.run_beside(int, int)  # the parent's helper runs
    pid = os.fork()
    if pid == 0:  # the child: the parent's helper thread is not there
        signal.alarm(10)  # a wait for it would hang
        try:
            caller, other = helper.run_beside(threading.get_ident, threading.get_ident)
            os._exit(0 if caller != other else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
