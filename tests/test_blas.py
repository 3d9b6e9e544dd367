"""gbdnn's BLAS kernel: BLAS's own threads, one BLAS thread, or two halves with the helper."""

from concurrent.futures import ThreadPoolExecutor

import graphblas as gb
import numpy as np
import pytest

import gbdnn
from gbdnn import blas, tuning

needs_openblas = pytest.mark.skipif(
    not blas._libraries(), reason="needs NumPy on an OpenBLAS with its own threads"
)
needs_helper = pytest.mark.skipif(
    not gbdnn.helper.available(), reason="needs two cores and sched_getcpu"
)
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-4}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}


def blas_threads():
    return [get() for get, _ in blas._libraries()]


def operands(rng, nrows, dtype, zeros=0.0):
    w = rng.normal(size=(300, 257)).astype(dtype)  # an odd width: halves of 128 and 129
    x = rng.normal(size=(nrows, 300)).astype(dtype)
    x[rng.random(x.shape) < zeros] = 0
    return x, w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nrows", [1, 5, 64])
@pytest.mark.parametrize("threads", blas.THREADS)
@pytest.mark.parametrize("zeros", [0.0, 0.7])  # a full X, and a sparse one made full
def test_the_blas_product_matches_numpy(dtype, nrows, threads, zeros):
    x, w = operands(np.random.default_rng(nrows), nrows, dtype, zeros)
    z = blas.plus_times_blas(gb.Matrix.from_dense(x, missing_value=0), w, threads=threads)
    assert z.dtype.np_type == dtype and z.shape == (nrows, 257)
    np.testing.assert_allclose(z.to_dense(fill_value=0), x.astype(np.float64) @ w, **TOL[dtype])


@pytest.mark.parametrize("threads", blas.THREADS)
def test_the_dense_input_is_kept_for_the_next_call(threads):
    from gbdnn import kernels

    rng = np.random.default_rng(7)
    x1, w = operands(rng, 64, np.float32)
    x2 = rng.normal(size=x1.shape).astype(np.float32)
    z1 = blas.plus_times_blas(gb.Matrix.from_dense(x1), w, threads=threads)
    (kept,) = kernels._recycled()[(64, 300, np.dtype(np.float32))]
    np.testing.assert_array_equal(kept, x1)  # X made dense, no longer used
    z2 = blas.plus_times_blas(gb.Matrix.from_dense(x2), w, threads=threads)
    # the second call wrote its X over the first's, which the first result does not share
    np.testing.assert_allclose(z1.to_dense(), x1.astype(np.float64) @ w, **TOL[np.float32])
    np.testing.assert_allclose(z2.to_dense(), x2.astype(np.float64) @ w, **TOL[np.float32])
    np.testing.assert_array_equal(kernels._recycled()[(64, 300, np.dtype(np.float32))][0], x2)


def test_an_unknown_threads_option_is_named():
    x, w = operands(np.random.default_rng(0), 2, np.float64)
    with pytest.raises(gbdnn.ParameterError, match="threads must be one of own, one, two"):
        blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads="all")


@needs_openblas
def test_one_and_two_run_each_call_on_one_thread_and_the_setting_comes_back(monkeypatch):
    x, w = operands(np.random.default_rng(1), 8, np.float64)
    seen, matmul = [], np.matmul

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return matmul(*args, **kwargs)

    monkeypatch.setattr(np, "matmul", spy)
    before = blas_threads()
    assert max(before) > 1 or gbdnn.runner.available_cores() == 1
    for threads in ("one", "two"):
        blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads=threads)
    assert len(seen) >= 2 and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before
    seen.clear()
    blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads="own")  # BLAS's own threads
    assert seen == [before]
    # the user's own setting is kept, whatever it is
    try:
        for _, set_threads in blas._libraries():
            set_threads(1)
        blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads="one")
        assert blas_threads() == [1] * len(before)
    finally:
        for (_, set_threads), threads in zip(blas._libraries(), before, strict=True):
            set_threads(threads)


@needs_openblas
def test_concurrent_blas_calls_are_right_and_restore_the_setting():
    rng = np.random.default_rng(2)
    before = blas_threads()
    inputs = [operands(rng, 16, np.float64) for _ in range(24)]

    def call(i):
        x, w = inputs[i]
        z = blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads=blas.THREADS[i % 3])
        return np.abs(z.to_dense() - x @ w).max()

    with ThreadPoolExecutor(3) as pool:
        errors = list(pool.map(call, range(len(inputs))))
    assert max(errors) < 1e-12
    assert blas_threads() == before


@needs_helper
@needs_openblas
def test_two_runs_half_of_the_product_on_the_helper(monkeypatch):
    x, w = operands(np.random.default_rng(3), 4, np.float32)
    handed = []
    run_beside = blas.helper.run_beside

    def spy(first, second):
        handed.append(1)
        return run_beside(first, second)

    monkeypatch.setattr(blas.helper, "run_beside", spy)
    for threads in ("own", "one"):
        blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads=threads)
    assert handed == []
    two = blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads="two")
    assert handed == [1]
    np.testing.assert_allclose(two.to_dense(), x.astype(np.float64) @ w, **TOL[np.float32])


def test_without_a_blas_to_limit_every_call_keeps_its_own_threads(monkeypatch):
    # MKL, BLIS, an OpenMP OpenBLAS or none found: BLAS keeps its own threads
    monkeypatch.setattr(blas, "_libraries", lambda: ())
    handed = []
    monkeypatch.setattr(blas.helper, "run_beside", lambda *calls: handed.append(1))
    x, w = operands(np.random.default_rng(4), 6, np.float64)

    def call(threads):
        return blas.plus_times_blas(gb.Matrix.from_dense(x), w, threads=threads)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(call, ["two", "one", "two", "own"]))
    assert handed == []
    for z in results:
        np.testing.assert_allclose(z.to_dense(), x @ w, **TOL[np.float64])


def test_blas_splits_where_the_hand_over_pays():
    cheap, dear = tuning.Costs(split_call=1e-9), tuning.Costs(split_call=10.0)
    assert tuning.blas_splits(64, 1024, 1024, cheap)
    assert not tuning.blas_splits(64, 1024, 1024, dear)
    assert not tuning.blas_splits(64, 1024, 1, cheap)  # one column: nothing to halve
    # a share of one (no gain from the second core) never splits
    assert not tuning.blas_splits(64, 1024, 1024, tuning.Costs(split_call=1e-9, blas_alone_share=1))


def test_blas_splits_only_where_the_hand_over_is_a_small_share():
    work = tuning._blas_seconds(64, 1024, 1024, tuning.Costs())

    def splits(handover):  # the hand-over as a share of the shared product's time
        call = handover / (1 - handover) * 0.5 * work
        costs = tuning.Costs(split_call=call, blas_alone_share=0.5)
        return tuning.blas_splits(64, 1024, 1024, costs)

    # both within SPLIT_MAX_RATIO: the shared time is 0.5 / (1 - handover) of one thread's
    assert splits(0.9 * tuning.BLAS_HANDOVER_SHARE)
    assert not splits(2 * tuning.BLAS_HANDOVER_SHARE)


@needs_helper
def test_a_lone_batch_shares_a_large_blas_product(monkeypatch):
    rng = np.random.default_rng(5)
    w = rng.normal(size=(400, 300)).astype(np.float32)
    x = rng.normal(size=(3, 400)).astype(np.float32)
    layer = gbdnn.Linear(w, rng.normal(size=300), path="blas")
    seen, plus_times_blas = [], blas.plus_times_blas

    def spy(x, w, *, threads):
        seen.append(threads)
        return plus_times_blas(x, w, threads=threads)

    monkeypatch.setattr(blas, "plus_times_blas", spy)

    def calls(costs, **kwargs):
        seen.clear()
        monkeypatch.setattr(tuning, "current_costs", lambda: costs)
        return layer(x, **kwargs), list(seen)

    cheap, dear = tuning.Costs(split_call=1e-9), tuning.Costs(split_call=10.0)
    alone, threads = calls(cheap)
    assert threads == ["two"]
    assert calls(dear)[1] == ["own"]  # too small to pay for the hand-over
    one_thread, threads = calls(cheap, threads=1)  # one thread asked for: one BLAS thread
    assert threads == ["one"]
    expected = x.astype(np.float64) @ w + layer.bias
    for z in (alone, one_thread):
        np.testing.assert_allclose(z, expected, **TOL[np.float32])
    # batches in parallel: one BLAS thread each
    monkeypatch.setattr(gbdnn.runner, "PARALLEL_MIN_SECONDS", 0.0)
    parallel, threads = calls(cheap, batch_size=1, threads=2)
    assert threads == ["one"] * 3
    np.testing.assert_allclose(parallel, expected, **TOL[np.float32])


def test_blas_is_priced_by_the_bytes_of_its_values(monkeypatch):
    costs = tuning.Costs(blas_mac=2e-11, blas_weight=7e-11)
    assert tuning.blas_typed(costs, 4) == costs
    fp64 = tuning.blas_typed(costs, 8)
    assert (fp64.blas_mac, fp64.blas_weight) == (4e-11, 14e-11)
    assert fp64.dense_mac == costs.dense_mac and fp64.blas_call == costs.blas_call
    # each layer prices BLAS in the type it runs BLAS in
    monkeypatch.setattr(tuning, "current_costs", lambda: costs)
    seen, contenders = [], tuning.contenders

    def spy(nrows, nnz_x, dims, costs, **kwargs):  # asked by each batch's product
        seen.append(costs.blas_mac)
        return contenders(nrows, nnz_x, dims, costs, **kwargs)

    monkeypatch.setattr(tuning, "contenders", spy)
    rng = np.random.default_rng(6)
    w, x = rng.normal(size=(40, 30)), rng.normal(size=(2, 40))
    for dtype, mac in (("float32", 2e-11), ("float64", 4e-11)):
        seen.clear()
        gbdnn.Linear(w, dtype=dtype)(x)
        assert seen and set(seen) == {mac}
