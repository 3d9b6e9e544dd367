"""Pruning evidence on a real task: the digits MLP in data/digits-mlp.npz."""

import digits_mlp
import numpy as np
import pytest

import gbdnn
from gbdnn.prune import CSPPruner, MagnitudePruner


@pytest.fixture
def split(digits_split):
    return digits_split


@pytest.fixture
def model(digits_model):
    return digits_model


def test_saved_model_reproduces_its_accuracy(model, split):
    _, meta = gbdnn.load(digits_mlp.MODEL_PATH, with_metadata=True)
    acc = digits_mlp.accuracy(model, split.x_test, split.y_test)
    assert acc == pytest.approx(meta["test_accuracy"], abs=1e-12)
    assert acc > 0.97


def layer_inputs(model, x):
    """The dense model's input to each Linear layer."""
    params = digits_mlp.from_model(model)
    return digits_mlp.forward(params, x)[:-1], [w for w, _ in params]


@pytest.mark.parametrize("sparsity", digits_mlp.SPARSITIES)
def test_csp_layer_error_below_magnitude_on_held_out_rows(model, split, sparsity):
    calib_inputs, weights = layer_inputs(model, split.calibration)
    held_inputs, _ = layer_inputs(model, split.held_out)
    for k, (w, a, h) in enumerate(zip(weights, calib_inputs, held_inputs, strict=True)):
        v = CSPPruner(sparsity).fit_transform(w, a).toarray()
        m = MagnitudePruner(sparsity).fit_transform(w).toarray()
        assert np.count_nonzero(v) <= w.size - round(sparsity * w.size)

        def err(p, h=h, w=w):
            return np.linalg.norm(h @ (w - p)) / np.linalg.norm(h @ w)

        assert err(v) < err(m), f"layer {k} at {sparsity}: CSP {err(v):.4f}, magnitude {err(m):.4f}"


def test_csp_at_90_percent_keeps_accuracy(model, split):
    dense = digits_mlp.accuracy(model, split.x_test, split.y_test)
    csp = CSPPruner(0.9).fit_transform(model, split.calibration)
    mag = MagnitudePruner(0.9).fit_transform(model)
    assert (
        csp.nnz
        == mag.nnz
        == model.nnz
        - sum(
            round(0.9 * layer.weight.nrows * layer.weight.ncols)
            for layer in model
            if isinstance(layer, gbdnn.Linear)
        )
    )
    csp_acc = digits_mlp.accuracy(csp, split.x_test, split.y_test)
    assert csp_acc >= dense - 0.01
    assert csp_acc >= digits_mlp.accuracy(mag, split.x_test, split.y_test)


def test_pruned_model_on_the_engine_matches_numpy(model, split):
    pruned = CSPPruner(0.8).fit_transform(model, split.calibration)
    for layer in pruned:
        if isinstance(layer, gbdnn.Linear):
            assert layer.nnz == np.count_nonzero(layer.weight.to_dense(fill_value=0))
    params = digits_mlp.from_model(pruned)
    expected = digits_mlp.forward(params, split.x_test.astype(np.float32))[-1]
    np.testing.assert_allclose(pruned(split.x_test), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_full_pruning_table(model, split):
    """Every method at every sparsity: CSP is never below magnitude."""
    result = digits_mlp.evaluate(model, split)
    for row in result["rows"]:
        for name in ("CSP (IHT)", "CSP (L1 + refit)"):
            assert row[name] >= row["magnitude"], (row["sparsity"], name)
    row90 = next(r for r in result["rows"] if r["sparsity"] == 0.9)
    assert row90["CSP (IHT)"] >= result["dense"] - 0.01
