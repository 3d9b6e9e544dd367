"""gbdnn model files: round trip, and refusal of anything corrupt."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

import gbdnn


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    w1 = sp.random(12, 8, density=0.4, random_state=1, format="csr")
    w2 = rng.normal(size=(8, 3))
    return gbdnn.Sequential(
        [
            gbdnn.Linear(w1, rng.normal(size=8), dtype="float64", name="hidden"),
            gbdnn.ReLU(max_value=2.5),
            gbdnn.Linear(w2, dtype="float64"),
        ]
    )


def test_round_trip(tmp_path, model):
    path = gbdnn.save(model, tmp_path / "m", metadata={"accuracy": 0.97})
    assert path.name == "m.npz"
    loaded, meta = gbdnn.load(path, with_metadata=True)
    assert meta == {"accuracy": 0.97}
    assert loaded.dtype == model.dtype and len(loaded) == 3
    assert loaded[0].name == "hidden" and loaded[1].max_value == 2.5
    assert loaded[2].bias is None and loaded.nnz == model.nnz
    x = np.random.default_rng(1).normal(size=(20, 12))
    np.testing.assert_array_equal(loaded(x), model(x))
    # readable by plain NumPy with pickle disabled
    with np.load(path, allow_pickle=False) as store:
        assert json.loads(store["header"].tobytes())["version"] == 1


def test_never_overwrites_without_asking(tmp_path, model):
    path = tmp_path / "m.npz"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gbdnn.save(model, path)
    assert path.read_bytes() == b"precious"
    gbdnn.save(model, path, overwrite=True)
    assert gbdnn.load(path).nnz == model.nnz
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


def test_failed_save_keeps_the_old_file(tmp_path, model):
    path = gbdnn.save(model, tmp_path / "m.npz")
    before = path.read_bytes()
    with pytest.raises(TypeError, match="JSON-serialisable"):
        gbdnn.save(model, path, metadata={"bad": object()}, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def rewrite(path, **changes):
    """Copy an archive with some arrays replaced (None removes one)."""
    with np.load(path, allow_pickle=False) as store:
        arrays = {k: store[k] for k in store.files}
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def header_bytes(header):
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"header": None}, "no header"),
        ({"header": np.frombuffer(b"{not json", dtype=np.uint8)}, "unreadable header"),
        ({"layer0__values": None}, "array layer0.values is missing"),
        ({"layer0__values": np.zeros(3)}, r"layer0.values is float64\[3\], expected float64"),
        ({"layer0__indptr": np.zeros(13, dtype=np.int64)}, "corrupt row pointers"),
        ({"layer2__bias": np.zeros(3)}, None),  # an unused extra array is harmless
    ],
)
def test_corrupt_arrays(tmp_path, model, change, match):
    path = gbdnn.save(model, tmp_path / "m.npz")
    rewrite(path, **change)
    if match is None:
        assert gbdnn.load(path).nnz == model.nnz
    else:
        with pytest.raises(gbdnn.FileFormatError, match=match):
            gbdnn.load(path)


def test_out_of_range_index_and_nan(tmp_path, model):
    path = gbdnn.save(model, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as store:
        indices, values = store["layer0.indices"].copy(), store["layer0.values"].copy()
    indices[0] = 99
    rewrite(path, layer0__indices=indices)
    with pytest.raises(gbdnn.FileFormatError, match="column index out of range"):
        gbdnn.load(path)
    path = gbdnn.save(model, tmp_path / "n.npz")
    values[1] = np.nan
    rewrite(path, layer0__values=values)
    with pytest.raises(gbdnn.FileFormatError, match="NaN or Inf"):
        gbdnn.load(path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(version=2), "format version 2 is not supported"),
        (lambda h: h.update(format="other"), "not a gbdnn model file"),
        (lambda h: h.update(dtype="int8"), "dtype 'int8' is not supported"),
        (lambda h: h["layers"][1].update(type="softmax"), "unknown layer type 'softmax'"),
        (lambda h: h["layers"][1].update(max_value=-1), "max_value must be finite and positive"),
        (lambda h: h["layers"][0].update(out_features=9), r"expected int64\[9\]|expected float64"),
        (lambda h: h.update(layers=[]), "lists no layers"),
    ],
)
def test_bad_headers(tmp_path, model, edit, match):
    path = gbdnn.save(model, tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as store:
        header = json.loads(store["header"].tobytes())
    edit(header)
    rewrite(path, header=header_bytes(header))
    with pytest.raises(gbdnn.FileFormatError, match=match):
        gbdnn.load(path)


def test_truncated_empty_and_missing_files(tmp_path, model):
    path = gbdnn.save(model, tmp_path / "m.npz")
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(gbdnn.FileFormatError):
        gbdnn.load(tmp_path / "cut.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(gbdnn.FileFormatError, match=r"not a readable \.npz"):
        gbdnn.load(tmp_path / "empty.npz")
    with pytest.raises(gbdnn.MissingFileError):
        gbdnn.load(tmp_path / "nope.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(gbdnn.FileFormatError, match="not a zip file") as info:
        gbdnn.load(tmp_path / "obj.npy")
    assert "pickle" not in str(info.value)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(gbdnn.FileFormatError, match="not a zip file"):
        gbdnn.load(tmp_path / "text.npz")
