"""Quantization targets on the digits MLP (data/digits-mlp.npz)."""

import digits_mlp
import digits_quant
import pytest

import gbdnn
from gbdnn.prune import CSPPruner


@pytest.fixture(scope="module")
def models(digits_split, digits_model):
    pruned = CSPPruner(0.9).fit_transform(digits_model, digits_split.calibration)
    return {"dense": digits_model, "pruned": pruned}


@pytest.mark.parametrize("base", ["dense", "pruned"])
def test_accuracy_targets(models, digits_split, base):
    model = models[base]
    fp32 = digits_mlp.accuracy(model, digits_split.x_test, digits_split.y_test)
    for name, make in digits_quant.formats().items():
        acc = digits_mlp.accuracy(
            make(model, digits_split), digits_split.x_test, digits_split.y_test
        )
        if name.startswith("int8"):
            assert acc >= fp32 - 0.005, (base, name, acc, fp32)
        elif name.startswith("int4 per-channel"):
            assert acc >= fp32 - 0.015, (base, name, acc, fp32)


def test_sparse_int4_model_is_12x_smaller_on_disk(models, digits_split, tmp_path):
    dense_file = gbdnn.save(models["dense"], tmp_path / "dense.npz")
    make = digits_quant.formats()["int4 per-channel, mse"]
    small = gbdnn.save(make(models["pruned"], digits_split), tmp_path / "int4.npz")
    assert dense_file.stat().st_size >= 12 * small.stat().st_size
