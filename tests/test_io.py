"""Reading challenge TSV, Matrix Market and challenge layouts, good and bad."""

import gzip

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import gbdnn
from gbdnn.io import read_categories, read_layers, read_matrix, read_mtx, read_tsv


def write(path, text, gz=False):
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_tsv(tmp_path, gz):
    path = write(
        tmp_path / ("m.tsv.gz" if gz else "m.tsv"), "1\t1\t0.5\n3\t2\t-2\n2\t4\t1e-1\n", gz
    )
    m = read_tsv(path, nrows=3, ncols=4, dtype="float64")
    expected = np.zeros((3, 4))
    expected[0, 0], expected[2, 1], expected[1, 3] = 0.5, -2, 0.1
    np.testing.assert_array_equal(m.to_dense(fill_value=0), expected)
    assert read_tsv(path).shape == (3, 4)  # shape from the largest index


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "the file is empty"),
        ("\n \n", "the file is empty"),
        ("1\t2\n", "expected 3 columns per line, found 2"),
        ("1\t1\t1\n2\t2\n", "malformed line"),
        ("1\tx\t1\n", "malformed line"),
        ("0\t1\t1\n", r"line 1: row index 0 is below 1 \(indices are 1-based\)"),
        ("1\t1\t1\n1\t0\t1\n", "line 2: column index 0 is below 1"),
        ("1.5\t1\t1\n", "line 1: row index 1.5 is not an integer"),
        ("1\t1\t1\n5\t1\t1\n", "line 2: row index 5 is out of range .at most 4"),
        ("1\t9\t1\n", "column index 9 is out of range"),
        ("1\t1\tnan\n", "line 1: value nan is not finite"),
        ("1\t1\t1\n2\t2\tinf\n", "line 2: value inf is not finite"),
        ("1\t1\t1\n2\t2\t1\n1\t1\t3\n", r"line 3: duplicate entry \(1, 1\)"),
    ],
)
def test_bad_tsv(tmp_path, text, match):
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises(gbdnn.FileFormatError, match=match) as info:
        read_tsv(path, nrows=4, ncols=4)
    assert "bad.tsv" in str(info.value)


def test_truncated_and_corrupt_gzip(tmp_path):
    data = gzip.compress(b"1\t1\t1\n" * 1000)
    (tmp_path / "cut.tsv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(gbdnn.FileFormatError, match="truncated or corrupt gzip"):
        read_tsv(tmp_path / "cut.tsv.gz")
    (tmp_path / "junk.tsv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(gbdnn.FileFormatError, match="truncated or corrupt gzip"):
        read_tsv(tmp_path / "junk.tsv.gz")
    (tmp_path / "binary.tsv").write_bytes(b"\x00\xff\xfe")
    with pytest.raises(gbdnn.FileFormatError, match="not a text file"):
        read_tsv(tmp_path / "binary.tsv")


def test_missing_file(tmp_path):
    with pytest.raises(gbdnn.MissingFileError, match="no such file"):
        read_tsv(tmp_path / "nope.tsv")


def test_matrix_market(tmp_path):
    a = sp.random(5, 7, density=0.4, random_state=1, format="coo")
    scipy.io.mmwrite(tmp_path / "a.mtx", a)
    m = read_matrix(tmp_path / "a.mtx", dtype="float64")
    np.testing.assert_allclose(m.to_dense(fill_value=0), a.toarray())
    write(tmp_path / "bad.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1\n")
    with pytest.raises(gbdnn.FileFormatError, match=r"bad\.mtx"):
        read_mtx(tmp_path / "bad.mtx")
    write(tmp_path / "nan.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 nan\n")
    with pytest.raises(gbdnn.FileFormatError, match="NaN or Inf"):
        read_mtx(tmp_path / "nan.mtx")
    write(tmp_path / "empty.mtx", "")
    with pytest.raises(gbdnn.FileFormatError, match="empty"):
        read_mtx(tmp_path / "empty.mtx")
    with pytest.raises(gbdnn.FileFormatError, match="unknown file type"):
        read_matrix(tmp_path / "a.csv")


def test_layer_directory(tmp_path):
    for k in (1, 2):
        write(tmp_path / f"n4-l{k}.tsv.gz", f"1\t{k}\t0.5\n4\t4\t1\n", gz=True)
    layers = read_layers(tmp_path, neurons=4, layers=2)
    assert [w.shape for w in layers] == [(4, 4), (4, 4)]
    assert layers[1][0, 1].new().value == 0.5
    with pytest.raises(gbdnn.MissingFileError, match=r"n4-l3.tsv\[.gz\] for layer 3"):
        read_layers(tmp_path, neurons=4, layers=3)


def test_categories(tmp_path):
    np.testing.assert_array_equal(
        read_categories(write(tmp_path / "c.tsv", "5\n2\n9\n")), [1, 4, 8]
    )
    with pytest.raises(gbdnn.FileFormatError, match="below 1"):
        read_categories(write(tmp_path / "z.tsv", "0\n2\n"))
    with pytest.raises(gbdnn.FileFormatError, match="appears twice"):
        read_categories(write(tmp_path / "d.tsv", "3\n3\n"))
