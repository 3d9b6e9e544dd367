"""Quantization targets on the digits MLP (data/digits-mlp.npz)."""

import sys
from pathlib import Path

import pytest

import gbdnn
from gbdnn.prune import CSPPruner

pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import digits_mlp
import digits_quant


@pytest.fixture(scope="module")
def split():
    return digits_mlp.load_split()


@pytest.fixture(scope="module")
def models(split):
    dense = gbdnn.load(digits_mlp.MODEL_PATH)
    return {"dense": dense, "pruned": CSPPruner(0.9).fit_transform(dense, split.calibration)}


@pytest.mark.parametrize("base", ["dense", "pruned"])
def test_accuracy_targets(models, split, base):
    model = models[base]
    fp32 = digits_mlp.accuracy(model, split.x_test, split.y_test)
    for name, make in digits_quant.formats().items():
        acc = digits_mlp.accuracy(make(model, split), split.x_test, split.y_test)
        if name.startswith("int8"):
            assert acc >= fp32 - 0.005, (base, name, acc, fp32)
        elif name.startswith("int4 per-channel"):
            assert acc >= fp32 - 0.015, (base, name, acc, fp32)


def test_sparse_int4_model_is_12x_smaller_on_disk(models, split, tmp_path):
    dense_file = gbdnn.save(models["dense"], tmp_path / "dense.npz")
    make = digits_quant.formats()["int4 per-channel, mse"]
    small = gbdnn.save(make(models["pruned"], split), tmp_path / "int4.npz")
    assert dense_file.stat().st_size >= 12 * small.stat().st_size
