"""The Graph Challenge: generator, real data against the official truth, CLI."""

import gzip
import json

import graphblas as gb
import numpy as np
import pytest

from gbdnn import challenge
from gbdnn.cli import main
from gbdnn.io import read_categories, read_images, read_layers


@pytest.mark.parametrize("neurons", [1024, 4096])
def test_radixnet_has_the_challenge_shape(neurons):
    weights = challenge.radixnet(neurons, 4, seed=3)
    for w in weights:
        assert w.shape == (neurons, neurons) and w.nvals == 32 * neurons
        per_row = w.reduce_rowwise(gb.agg.count).new().to_dense()
        per_col = w.reduce_columnwise(gb.agg.count).new().to_dense()
        assert (per_row == 32).all() and (per_col == 32).all()
        assert set(np.unique(w.to_coo()[2])) == {np.float32(1 / 16)}


@pytest.mark.parametrize(("neurons", "depth"), [(1024, 2), (4096, 3)])
def test_radixnet_connects_every_input_to_every_output(neurons, depth):
    weights = challenge.radixnet(neurons, depth, seed=1)
    paths = weights[0].apply(gb.unary.one).new()
    for w in weights[1:]:
        paths = paths.mxm(w.apply(gb.unary.one).new(), gb.semiring.any_pair).new()
    assert paths.nvals == neurons * neurons
    # one layer fewer does not
    shorter = weights[0].apply(gb.unary.one).new()
    for w in weights[1 : depth - 1]:
        shorter = shorter.mxm(w, gb.semiring.any_pair).new()
    assert shorter.nvals < neurons * neurons


def test_generated_workload_matches_reference():
    weights = challenge.radixnet(1024, 40, seed=2)
    x = challenge.sparse_inputs(1500, seed=2)
    model = challenge.challenge_model(weights, challenge.challenge_bias(1024))
    expected = challenge.reference_categories(weights, -0.3, x)
    result = challenge.run(model, x, expected=expected, threads=2)
    assert 0 < expected.size < x.nrows  # some rows survive, most do not
    assert result.correct
    assert result.edges_per_second == pytest.approx(1500 * 40 * 32768 / result.seconds)


def test_real_data_120_layers_give_the_truth(challenge_dir):
    weights = read_layers(challenge_dir, 1024, 120)
    assert sum(w.nvals for w in weights) == 120 * 32768
    x = read_images(challenge_dir / "sparse-images-1024-first1200.tsv.gz", 1024)
    truth = read_categories(challenge_dir / "neuron1024-l120-categories.tsv")
    truth = truth[truth < x.nrows]
    assert truth.size == 19
    model = challenge.challenge_model(weights, -0.3)
    for threads, batch_size in [(1, None), (2, 100)]:
        result = challenge.run(model, x, expected=truth, threads=threads, batch_size=batch_size)
        np.testing.assert_array_equal(result.categories, truth)


def test_cli_default_runs_generated_network(capsys):
    assert main(["challenge", "--layers", "30", "--inputs", "600", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["correct"] is True and out["checked_against"] == "SciPy reference"
    assert out["layers"] == 30 and out["inputs"] == 600 and out["nnz"] == 30 * 32768
    assert out["edges_per_second"] > 0 and out["environment"]["cores"] >= 1


def test_cli_real_data_with_tiling(challenge_dir, capsys):
    assert main(["challenge", "--data", str(challenge_dir), "--tile", "3", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "3600 rows (1200 x tile 3)" in out
    assert "57 rows; equal to the truth file neuron1024-l120-categories.tsv (57 rows): yes" in out


def test_cli_without_truth_file_checks_against_reference(challenge_dir, capsys):
    assert main(["challenge", "--data", str(challenge_dir), "--layers", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checked_against"] == "SciPy reference" and out["categories"] == 19


def write_tsv(path, m):
    rows, cols, vals = m.to_coo()
    lines = "".join(f"{r + 1}\t{c + 1}\t{v}\n" for r, c, v in zip(rows, cols, vals, strict=True))
    path.write_bytes(gzip.compress(lines.encode()))


@pytest.fixture
def small_challenge(tmp_path):
    """A 2-layer, 1024-neuron challenge folder written from the generator."""
    weights = challenge.radixnet(1024, 2, seed=5)
    (tmp_path / "neuron1024").mkdir()
    for k, w in enumerate(weights, 1):
        write_tsv(tmp_path / "neuron1024" / f"n1024-l{k}.tsv.gz", w)
    x = challenge.sparse_inputs(200, seed=5, strong_fraction=0.2)
    write_tsv(tmp_path / "sparse-images-1024.tsv.gz", x)
    truth = challenge.reference_categories(weights, -0.3, x)
    return tmp_path, truth


def test_cli_exit_status_follows_the_truth(small_challenge, capsys):
    folder, truth = small_challenge
    truth_file = folder / "neuron1024-l2-categories.tsv"
    truth_file.write_text("".join(f"{r + 1}\n" for r in truth))
    assert main(["challenge", "--data", str(folder), "--layers", "2"]) == 0
    truth_file.write_text("".join(f"{r + 1}\n" for r in truth[1:]))  # one category missing
    assert main(["challenge", "--data", str(folder), "--layers", "2"]) == 1
    assert ": NO" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--layers", "3"], "no file n1024-l3.tsv[.gz] for layer 3"),
        (["--neurons", "4096"], "no file n4096-l1.tsv"),
        (["--inputs", "10"], "--inputs and --seed apply to generated data"),
    ],
)
def test_cli_reports_missing_files(small_challenge, capsys, argv, message):
    folder, _ = small_challenge
    assert main(["challenge", "--data", str(folder), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["challenge", "--tile", "0"])
    assert "must be at least 1" in capsys.readouterr().err
    assert main(["challenge", "--neurons", "1000"]) == 2
    assert "neurons must be one of 1024, 4096, 16384, 65536" in capsys.readouterr().err


@pytest.mark.slow
def test_real_data_full_size_workload(challenge_dir):
    """The 1200 real images tiled to 60000 rows: 950 categories, 19 in every tile."""
    weights = read_layers(challenge_dir, 1024, 120)
    images = read_images(challenge_dir / "sparse-images-1024-first1200.tsv.gz", 1024)
    truth = read_categories(challenge_dir / "neuron1024-l120-categories.tsv")
    truth = truth[truth < images.nrows]
    x = challenge.tile_rows(images, 50)
    expected = np.concatenate([truth + k * images.nrows for k in range(50)])
    result = challenge.run(challenge.challenge_model(weights, -0.3), x, expected=expected)
    assert result.inputs == 60000 and result.categories.size == 950
    assert result.correct


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_generated_4096_network_matches_reference(dtype):
    weights = challenge.radixnet(4096, 120, seed=11, dtype=dtype)
    x = challenge.sparse_inputs(2000, 4096, seed=11, dtype=dtype)
    bias = challenge.challenge_bias(4096)
    expected = challenge.reference_categories(weights, bias, x)
    result = challenge.run(challenge.challenge_model(weights, bias), x, expected=expected)
    assert 0 < expected.size < x.nrows
    assert result.correct
