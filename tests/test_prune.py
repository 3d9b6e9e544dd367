"""gbdnn.prune: magnitude patterns, schedules, targets, CSP on synthetic layers."""

import graphblas as gb
import numpy as np
import pytest
import scipy.sparse as sp

import gbdnn
from gbdnn.prune import (
    ConstantSchedule,
    CSPPruner,
    CubicSchedule,
    LinearSchedule,
    MagnitudePruner,
    PruningScheduler,
    csp_prune,
    magnitude_prune,
)


@pytest.fixture
def w():
    return np.random.default_rng(0).normal(size=(16, 12))


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_unstructured_exact_count_of_smallest(w, amount):
    pruned = magnitude_prune(w, amount)
    assert sp.issparse(pruned) and pruned.format == "csr"
    assert pruned.nnz == w.size - round(amount * w.size)  # zeros are not stored
    kept = np.abs(w[pruned.toarray() != 0])
    dropped = np.abs(w[pruned.toarray() == 0])
    assert kept.size == 0 or dropped.size == 0 or dropped.max() <= kept.min()
    np.testing.assert_array_equal(pruned.toarray()[pruned.toarray() != 0], w[pruned.toarray() != 0])


def test_ties_are_broken_deterministically():
    w = np.ones((4, 4))
    pruned = magnitude_prune(w, 0.5).toarray()
    # the first 8 entries in row-major order go first
    np.testing.assert_array_equal(pruned.ravel(), [0] * 8 + [1] * 8)


def test_existing_zeros_count_first():
    w = np.array([[0.0, 0.0, 3.0, 4.0]])
    np.testing.assert_array_equal(magnitude_prune(w, 0.25).toarray(), w)
    np.testing.assert_array_equal(magnitude_prune(w, 0.75).toarray(), [[0, 0, 0, 4]])


def test_global_scope_ranks_layers_together():
    small, large = np.full((4, 4), 0.1), np.full((4, 4), 5.0)
    out = magnitude_prune([small, large], 0.5, scope="global")
    assert out[0].nnz == 0 and out[1].nnz == 16
    layerwise = magnitude_prune([small, large], 0.5)
    assert layerwise[0].nnz == 8 and layerwise[1].nnz == 8


def test_n_m_along_the_input_dimension(w):
    pruned = magnitude_prune(w, n_m=(2, 4)).toarray()
    groups = (pruned != 0).reshape(4, 4, 12)
    assert (groups.sum(axis=1) == 2).all()
    a = np.abs(w).reshape(4, 4, 12)
    kept = np.where(groups, a, np.inf).min(axis=1)
    dropped = np.where(~groups, a, -np.inf).max(axis=1)
    assert (dropped <= kept).all()


@pytest.mark.parametrize("block", [(1, 4), (4, 4), (2, 3)])
def test_block_sparsity(w, block):
    pruned = magnitude_prune(w, 0.5, block=block).toarray()
    bh, bw = block
    tiles = (pruned != 0).reshape(16 // bh, bh, 12 // bw, bw)
    per_block = tiles.sum(axis=(1, 3))
    assert set(np.unique(per_block)) <= {0, bh * bw}
    n_blocks = per_block.size
    assert (per_block == 0).sum() == round(0.5 * n_blocks)
    norms = np.sqrt((w**2).reshape(16 // bh, bh, 12 // bw, bw).sum(axis=(1, 3)))
    assert norms[per_block == 0].max() <= norms[per_block > 0].min()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"amount": 1.0}, ValueError, r"amount must be in \[0, 1\)"),
        ({"amount": -0.1}, ValueError, r"amount must be in \[0, 1\)"),
        ({"amount": "half"}, TypeError, "amount must be a number"),
        ({"n_m": (5, 4)}, ValueError, "N <= M"),
        ({"n_m": (0, 4)}, ValueError, "N >= 1"),
        ({"n_m": (2, 4), "amount": 0.5}, ValueError, "give neither amount nor block"),
        ({"amount": 0.5, "block": (0, 4)}, ValueError, "positive sides"),
        ({"amount": 0.5, "scope": "model"}, ValueError, "scope must be one of"),
        ({}, ValueError, "amount is required"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        MagnitudePruner(**kwargs)


def test_bad_shapes_and_values(w):
    with pytest.raises(ValueError, match="block 5x4 does not divide the 16x12 weight"):
        magnitude_prune(w, 0.5, block=(5, 4))
    with pytest.raises(ValueError, match=r"input dimension \(16\) to be a multiple of M = 3"):
        magnitude_prune(w, n_m=(1, 3))
    bad = w.copy()
    bad[1, 1] = np.nan
    with pytest.raises(gbdnn.NonFiniteError, match="NaN or Inf"):
        magnitude_prune(bad, 0.5)
    with pytest.raises(gbdnn.ShapeError, match="two-dimensional"):
        magnitude_prune(np.ones(5), 0.5)
    with pytest.raises(TypeError, match="not str"):
        magnitude_prune("weights", 0.5)
    with pytest.raises(gbdnn.GbdnnError, match="nothing to prune"):
        magnitude_prune([], 0.5)


def test_families_and_inplace(w):
    original = w.copy()
    as_csr = sp.csr_matrix(w)
    out = magnitude_prune(as_csr, 0.5)
    assert isinstance(out, sp.csr_matrix) and out.nnz == w.size // 2
    assert as_csr.nnz == w.size  # the caller's matrix is untouched
    g = gb.Matrix.from_dense(w)
    out_g = magnitude_prune(g, 0.5)
    assert isinstance(out_g, gb.Matrix) and out_g.nvals == w.size // 2 and g.nvals == w.size
    np.testing.assert_array_equal(w, original)
    # inplace=True modifies and returns the caller's objects
    assert magnitude_prune(w, 0.5, inplace=True) is w
    assert np.count_nonzero(w) == w.size // 2
    assert magnitude_prune(as_csr, 0.5, inplace=True) is as_csr and as_csr.nnz == w.size // 2
    assert magnitude_prune(g, 0.5, inplace=True) is g and g.nvals == w.size // 2


def small_model(rng, dtype="float64"):
    return gbdnn.Sequential(
        [
            gbdnn.Linear(
                rng.normal(size=(12, 16)), rng.normal(size=16) * 0.1, name="a", dtype=dtype
            ),
            gbdnn.ReLU(),
            gbdnn.Linear(rng.normal(size=(16, 8)), name="b", dtype=dtype),
            gbdnn.ReLU(),
            gbdnn.Linear(rng.normal(size=(8, 4)), name="c", dtype=dtype),
        ]
    )


def test_models_layer_by_layer_with_exclusions():
    rng = np.random.default_rng(1)
    model = small_model(rng)
    pruned = MagnitudePruner(0.75, exclude=["c"]).fit_transform(model)
    assert isinstance(pruned, gbdnn.Sequential) and pruned is not model
    assert [layer.nnz for layer in pruned if isinstance(layer, gbdnn.Linear)] == [48, 32, 32]
    assert model.nnz == 12 * 16 + 16 * 8 + 8 * 4  # untouched
    assert pruned[0].name == "a"
    np.testing.assert_array_equal(pruned[0].bias, model[0].bias)
    by_index = MagnitudePruner(0.75, exclude=[0]).fit(model)
    assert len(by_index.masks_) == 2 and by_index.sparsity_ == [0.75, 0.75]
    with pytest.raises(ValueError, match="exclude names no layer"):
        MagnitudePruner(0.5, exclude=["zzz"]).fit(model)
    # the pruned model runs on the engine and matches NumPy on the same sparse weights
    x = rng.normal(size=(30, 12))
    ref = x
    for layer in pruned:
        if isinstance(layer, gbdnn.ReLU):
            ref = np.maximum(ref, 0)
        else:
            ref = ref @ layer.weight.to_dense(fill_value=0) + (
                0 if layer.bias is None else layer.bias
            )
    np.testing.assert_allclose(pruned(x), ref, rtol=1e-12, atol=1e-12)
    # inplace on a model keeps the object and its compiled stages consistent
    assert MagnitudePruner(0.5).fit_transform(model, inplace=True) is model
    np.testing.assert_allclose(model(x), gbdnn.Sequential(list(model))(x), rtol=0, atol=0)


@pytest.mark.parametrize("path", ["sparse", "dense", "dot", "blas"])
def test_inplace_pruning_after_inference_uses_the_new_weights(path):
    # every kernel's copy of W (W', dense W) is built on first use: pruning in
    # place afterwards must not leave the layer computing with the old weights
    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 48))
    x = rng.normal(size=(2 if path == "dot" else 40, 64))
    model = gbdnn.Sequential([gbdnn.Linear(w, dtype="float64", path=path)])
    np.testing.assert_allclose(model(x), x @ w, rtol=1e-12, atol=1e-12)
    magnitude_prune(model, 0.9, inplace=True)
    pruned = model[0].weight.to_dense(fill_value=0)
    assert model[0].nnz == np.count_nonzero(pruned) == round(0.1 * w.size)
    np.testing.assert_allclose(model(x), x @ pruned, rtol=1e-12, atol=1e-12)


def test_set_weight_checks_shape_copies_and_weight_is_read_only():
    rng = np.random.default_rng(4)
    layer = gbdnn.Linear(rng.normal(size=(8, 6)), dtype="float64", path="dense")
    x = rng.normal(size=(5, 8))
    layer(x)  # builds W' for the dense kernel
    new = gb.Matrix.from_dense(np.triu(rng.normal(size=(8, 6))), missing_value=0)
    layer.set_weight(new)
    assert layer.weight is not new and layer.nnz == new.nvals
    np.testing.assert_allclose(layer(x), x @ new.to_dense(fill_value=0), rtol=1e-12)
    new[0, 0] = 100.0  # the caller's matrix is not the layer's
    assert layer.weight[0, 0].new().value != 100.0
    with pytest.raises(gbdnn.ShapeError, match=r"weight must have shape \(8, 6\)"):
        layer.set_weight(np.ones((6, 8)))
    with pytest.raises(AttributeError):
        layer.weight = new


def test_cubic_schedule_formula():
    s = CubicSchedule(0.9, initial=0.1, begin_step=10, n_steps=4, frequency=5)
    assert s(0) == pytest.approx(0.1) and s(10) == pytest.approx(0.1)
    for t in (15, 20, 25):
        assert s(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - (t - 10) / 20) ** 3)
    assert s(30) == pytest.approx(0.9) and s(100) == pytest.approx(0.9)
    assert [t for t in range(40) if s.is_update_step(t)] == [10, 15, 20, 25, 30]
    assert LinearSchedule(0.8, n_steps=4)(2) == pytest.approx(0.4)
    assert ConstantSchedule(0.6, initial=0.2)(0) == 0.6
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        CubicSchedule(0.9, n_steps=0)
    with pytest.raises(ValueError, match=r"final must be in \[0, 1\)"):
        CubicSchedule(1.5)


def test_scheduler_ramps_and_keeps_pruned_weights_zero():
    rng = np.random.default_rng(2)
    weights = [rng.normal(size=(10, 10)), rng.normal(size=(10, 5))]
    scheduler = PruningScheduler(MagnitudePruner(0.0), LinearSchedule(0.8, n_steps=4, frequency=2))
    seen = []
    for _ in range(12):
        for w in weights:  # a training update that would regrow pruned weights
            w += 0.01
        updated = scheduler.step(weights)
        seen.append(
            (
                updated,
                round(scheduler.sparsity_, 3),
                [1 - np.count_nonzero(w) / w.size for w in weights],
            )
        )
    assert [s[1] for s in seen if s[0]] == [0.0, 0.2, 0.4, 0.6, 0.8]
    for _, level, actual in seen:
        assert all(a == pytest.approx(level, abs=0.01) for a in actual)
    with pytest.raises(ValueError, match="N:M patterns have no schedule"):
        PruningScheduler(MagnitudePruner(n_m=(2, 4)), ConstantSchedule(0.5))


def correlated(rng, n, mixing):
    return rng.normal(size=(n, mixing.shape[0])) @ mixing * 0.3 + rng.normal(
        size=(n, mixing.shape[0])
    )


@pytest.mark.parametrize("solver", ["iht", "omp", "l1"])
@pytest.mark.parametrize("budget", ["layer", "column"])
def test_csp_beats_magnitude_on_held_out_rows(solver, budget):
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(24, 24))
    calib, held_out = correlated(rng, 600, mixing), correlated(rng, 600, mixing)
    w = rng.normal(size=(24, 10))
    for amount in (0.5, 0.7, 0.9):
        v = csp_prune(w, calib, amount, solver=solver, budget=budget).toarray()
        if budget == "column":
            m = w * (np.abs(w) >= np.sort(np.abs(w), axis=0)[round(amount * 24)])
            assert ((v != 0).sum(axis=0) == 24 - round(amount * 24)).all()
        else:
            m = magnitude_prune(w, amount).toarray()
            assert np.count_nonzero(v) <= w.size - round(amount * w.size)

        def err(p):
            return np.linalg.norm(held_out @ (w - p)) / np.linalg.norm(held_out @ w)

        assert err(v) < err(m), (solver, budget, amount)


def test_csp_n_m_budget():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 16))
    w = rng.normal(size=(16, 6))
    for solver in ("iht", "omp", "l1"):
        v = csp_prune(w, x, n_m=(1, 4), solver=solver).toarray()
        assert ((v != 0).reshape(4, 4, 6).sum(axis=1) <= 1).all()


def test_csp_recovers_a_truly_sparse_layer():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 30))
    truth = magnitude_prune(rng.normal(size=(30, 8)), 0.8).toarray()
    # the dense weight to prune: the sparse truth plus weights the data cannot see
    v = csp_prune(truth, x, 0.8, solver="omp").toarray()
    np.testing.assert_allclose(v, truth, atol=1e-8)


def test_csp_bad_input(w):
    x = np.random.default_rng(0).normal(size=(50, 16))
    with pytest.raises(gbdnn.ShapeError, match="calibration data has 15 columns, the weight 16"):
        csp_prune(w, x[:, :15], 0.5)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(gbdnn.NonFiniteError, match="calibration data contains NaN or Inf"):
        csp_prune(w, bad, 0.5)
    with pytest.raises(ValueError, match="solver must be one of"):
        CSPPruner(0.5, solver="lasso")
    with pytest.raises(ValueError, match=r"amount must be in \[0, 1\)"):
        CSPPruner(1.2)
    with pytest.raises(ValueError, match="N <= M"):
        CSPPruner(n_m=(3, 2))
    with pytest.raises(RuntimeError, match="call fit before transform"):
        CSPPruner(0.5).transform(w)
    model = small_model(np.random.default_rng(0))
    with pytest.raises(gbdnn.ShapeError, match="model expects 12"):
        CSPPruner(0.5).fit(model, x)


def test_csp_whole_model_does_not_compound_errors():
    rng = np.random.default_rng(6)
    model = small_model(rng)
    mixing = rng.normal(size=(12, 12))
    calib, held_out = correlated(rng, 800, mixing), correlated(rng, 800, mixing)
    csp = CSPPruner(0.7).fit_transform(model, calib)
    mag = MagnitudePruner(0.7).fit_transform(model)
    dense = model(held_out)

    def err(m):
        return np.linalg.norm(m(held_out) - dense) / np.linalg.norm(dense)

    assert err(csp) < err(mag)
    nnz = [layer.nnz for layer in csp if isinstance(layer, gbdnn.Linear)]
    assert all(n <= limit for n, limit in zip(nnz, [58, 38, 10], strict=True))
