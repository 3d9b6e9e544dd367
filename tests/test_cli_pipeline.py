"""The model pipeline on the command line: info, prune, quantize, infer, convert."""

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import gbdnn
from gbdnn.cli import main
from gbdnn.io.rows import read_rows
from gbdnn.quant import CodebookLinear, QuantizedLinear, UniformQuantizer

RNG = np.random.default_rng(11)
W1 = RNG.normal(size=(20, 30)).astype(np.float32)
W2 = RNG.normal(size=(30, 6)).astype(np.float32)


@pytest.fixture
def files(tmp_path):
    model = gbdnn.Sequential([gbdnn.Linear(W1, 0.1), gbdnn.ReLU(), gbdnn.Linear(W2, -0.2)])
    gbdnn.save(model, tmp_path / "model.npz")
    x = RNG.normal(size=(50, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "calib.npy", RNG.normal(size=(300, 20)))
    return tmp_path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _reference(x, model):
    """The float model in NumPy float64."""
    a = np.asarray(x, dtype=np.float64)
    for layer in model:
        if isinstance(layer, gbdnn.ReLU):
            a = np.maximum(a, 0)
        else:
            w = layer.weight.to_dense(fill_value=0, dtype=np.float64)
            a = a @ w + layer.bias
    return a


def test_info_reports_layers(files, capsys):
    code, out, _ = _run(capsys, "info", files / "model.npz", "--json")
    assert code == 0
    layers = json.loads(out)["layers"]
    assert [r["type"] for r in layers] == ["linear", "relu", "linear"]
    assert layers[0]["shape"] == [20, 30] and layers[0]["nnz"] == 600
    assert layers[0]["sparsity"] == 0 and layers[0]["dtype"] == "float32"
    # values (4 B) + indices (uint8) + indptr (uint16) + bias (4 B)
    assert layers[0]["bytes"] == 600 * 4 + 600 + 21 * 2 + 30 * 4
    code, out, _ = _run(capsys, "info", files / "model.npz")
    assert "20x30" in out and "total: 780 weights" in out


def test_prune_then_quantize_then_infer(files, capsys):
    flags = "--method magnitude --sparsity 0.8 -o".split()
    code, out, _ = _run(capsys, "prune", files / "model.npz", *flags, files / "p.npz")
    assert code == 0
    pruned, meta = gbdnn.load(files / "p.npz", with_metadata=True)
    assert [layer.nnz for layer in pruned if layer.nnz] == [120, 36]
    assert meta["steps"][0]["method"] == "magnitude"
    # the kept weights are the largest ones, unchanged
    kept = pruned[0].weight.to_dense(fill_value=0, dtype=np.float32)
    assert np.abs(W1[kept == 0]).max() <= np.abs(W1[kept != 0]).min()
    assert np.array_equal(kept[kept != 0], W1[kept != 0])

    code, out, _ = _run(
        capsys, "quantize", files / "p.npz", "--bits", "4", "--per-channel", "-o", files / "q.npz"
    )
    assert code == 0
    q, meta = gbdnn.load(files / "q.npz", with_metadata=True)
    assert [s["command"] for s in meta["steps"]] == ["prune", "quantize"]
    assert isinstance(q[0], CodebookLinear) and q[0].bits == 4
    # weight-only int4: exactly UniformQuantizer's dequantized weights
    p0 = pruned[0].weight.to_dense(fill_value=0, dtype=np.float32)
    uq = UniformQuantizer(4, per_channel=True).fit(p0)
    want = np.where(p0 != 0, uq.dequantize(uq.quantize(p0)), 0)
    np.testing.assert_array_equal(q[0].weight.to_dense(fill_value=0, dtype=np.float32), want)

    code, out, _ = _run(capsys, "infer", files / "q.npz", files / "x.npy", "-o", files / "y.npy")
    assert code == 0 and "50 rows" in out
    y = np.load(files / "y.npy")
    ref = _reference(np.load(files / "x.npy"), q)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_csp_needs_calibration_and_uses_it(files, capsys):
    argv = ["prune", files / "model.npz", "--method", "csp", "--sparsity", "0.5"]
    code, _, err = _run(capsys, *argv, "-o", files / "c.npz")
    assert code == 2 and "--calib" in err and not (files / "c.npz").exists()
    code, out, err = _run(
        capsys, *argv, "--calib", files / "calib.npy", "--progress", "-o", files / "c.npz"
    )
    assert code == 0 and "CSP pruning" in err  # the progress bar over the layers
    step = json.loads(out.splitlines()[0])
    assert step["calibration_rows"] == 300 and len(step["relative_output_error"]) == 2
    assert gbdnn.load(files / "c.npz")[0].nnz == 300


def test_integer_quantization_with_calibration(files, capsys):
    flags = ["--bits", 8, "--calib", files / "calib.npy", "--calib-rows", 100]
    code, _, _ = _run(capsys, "quantize", files / "model.npz", *flags, "-o", files / "q8.npz")
    assert code == 0
    q8, meta = gbdnn.load(files / "q8.npz", with_metadata=True)
    assert isinstance(q8[0], QuantizedLinear) and meta["steps"][0]["calibration_rows"] == 100
    # the same rows from Matrix Market: the same model
    scipy.io.mmwrite(files / "calib.mtx", sp.coo_array(np.load(files / "calib.npy")))
    flags[3] = files / "calib.mtx"
    code, _, _ = _run(capsys, "quantize", files / "model.npz", *flags, "-o", files / "q8m.npz")
    assert code == 0
    q8m = gbdnn.load(files / "q8m.npz")
    assert q8m[0].input_scale == q8[0].input_scale and q8m[0].weight_int.isequal(q8[0].weight_int)
    code, _, err = _run(
        capsys,
        "prune",
        files / "q8.npz",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "-o",
        files / "x.npz",
    )
    assert code == 2 and "already quantized" in err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mtx", ".tsv"])
def test_infer_formats_round_trip(files, capsys, suffix):
    out_path = files / f"y{suffix}"
    code, _, _ = _run(capsys, "infer", files / "model.npz", files / "x.npy", "-o", out_path)
    assert code == 0
    y = read_rows(out_path, ncols=6)
    y = y.to_dense(fill_value=0, dtype=np.float32) if hasattr(y, "to_dense") else y
    y = y.toarray() if sp.issparse(y) else y
    want = gbdnn.load(files / "model.npz")(np.load(files / "x.npy"))
    # .tsv and .mtx print 9 and 17 significant digits: float32 survives exactly
    np.testing.assert_array_equal(np.asarray(y, dtype=np.float32), want)


def test_outputs_are_never_overwritten_unasked(files, capsys):
    target = files / "y.npy"
    target.write_bytes(b"precious")
    code, _, err = _run(capsys, "infer", files / "model.npz", files / "x.npy", "-o", target)
    assert code == 2 and "exists" in err and target.read_bytes() == b"precious"
    code, _, err = _run(capsys, "convert", files / "model.npz", "-o", files / "model.npz")
    assert code == 2 and "exists" in err
    code, _, _ = _run(
        capsys, "infer", files / "model.npz", files / "x.npy", "-o", target, "--force"
    )
    assert code == 0 and np.load(target).shape == (50, 6)


def test_bad_inputs_get_clear_errors(files, capsys):
    np.save(files / "wide.npy", np.ones((3, 21)))
    np.save(files / "vec.npy", np.ones(20))
    (files / "x.csv").write_text("1,2\n")
    cases = [
        (["info", files / "missing.npz"], "no such file"),
        (["infer", files / "model.npz", files / "wide.npy", "-o", files / "o.npy"], "21"),
        (["infer", files / "model.npz", files / "vec.npy", "-o", files / "o.npy"], "2-D"),
        (["infer", files / "model.npz", files / "x.csv", "-o", files / "o.npy"], "unknown file"),
        (["infer", files / "model.npz", files / "x.npy", "-o", files / "o.gz"], "unknown file"),
        (["info", files / "x.npy"], "not a readable .npz"),
        (["info", files / "calib.npy"], "not a readable .npz"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
        assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(
            [
                "prune",
                str(files / "model.npz"),
                "--method",
                "magnitude",
                "--sparsity",
                "1.5",
                "-o",
                "x",
            ]
        )


def test_convert_to_onnx_and_back(files, capsys):
    pytest.importorskip("onnx")
    code, _, _ = _run(capsys, "convert", files / "model.npz", "-o", files / "m.onnx")
    assert code == 0
    code, _, _ = _run(
        capsys,
        "prune",
        files / "m.onnx",
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "-o",
        files / "p.npz",
    )
    assert code == 0
    original, back = gbdnn.load(files / "model.npz"), gbdnn.load(files / "p.npz")
    assert back[0].nnz == 300 and back[0].in_features == original[0].in_features
    assert np.array_equal(back[2].bias, original[2].bias)


def test_help_has_examples(capsys):
    for command in ("prune", "quantize", "infer", "info", "convert"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "examples:" in capsys.readouterr().out
