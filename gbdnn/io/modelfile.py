"""gbdnn model files: NumPy ``.npz`` with a JSON header, loadable without pickle.

Format version 1. The archive holds

* ``header``: UTF-8 JSON as a ``uint8`` array::

      {"format": "gbdnn", "version": 1, "dtype": "float32",
       "layers": [{"type": "linear", "name": null, "in_features": 64,
                   "out_features": 32, "nnz": 1024, "bias": true},
                  {"type": "relu", "max_value": null}, ...],
       "metadata": {...}}

* for the ``k``-th layer, if it is Linear: ``layer{k}.indptr`` (int64,
  ``in_features + 1``), ``layer{k}.indices`` (int64, ``nnz``) and
  ``layer{k}.values`` (the model dtype, ``nnz``): the weight ``(in, out)`` in
  CSR; and ``layer{k}.bias`` (``out_features``) when it has a bias.

Files are read with ``allow_pickle=False``; every array is checked against the
header (dtype, shape, CSR structure, index range, finite values) and a corrupt,
truncated or foreign file raises :class:`~gbdnn.FileFormatError`. Saving
writes a temporary file beside the target and renames it, so a crash never
leaves a half-written file in place of a good one, and an existing file is
only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import graphblas as gb
import numpy as np
import scipy.sparse as sp

from ..dtypes import value_type
from ..errors import DTypeError, FileFormatError, GbdnnError, MissingFileError
from ..layers import Linear, ReLU
from ..model import Sequential

FORMAT = "gbdnn"
VERSION = 1


def save(
    model: Sequential,
    path: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``path`` (``.npz`` is appended if missing).

    Parameters
    ----------
    model : Sequential
    path : str or Path
    metadata : dict, optional
        JSON-serialisable information stored in the header (training data,
        accuracy, how it was pruned, ...).
    overwrite : bool, default False
        Replace an existing file; otherwise that is an error.

    Returns
    -------
    Path
        The file written.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a gbdnn.Sequential, not {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    layers, arrays = [], {}
    for k, layer in enumerate(model):
        if isinstance(layer, Linear):
            csr = gb.io.to_scipy_sparse(layer.weight, format="csr")
            arrays[f"layer{k}.indptr"] = csr.indptr.astype(np.int64)
            arrays[f"layer{k}.indices"] = csr.indices.astype(np.int64)
            arrays[f"layer{k}.values"] = csr.data.astype(model.dtype.numpy)
            if layer.bias is not None:
                arrays[f"layer{k}.bias"] = layer.bias
            layers.append(
                {
                    "type": "linear",
                    "name": layer.name,
                    "in_features": layer.in_features,
                    "out_features": layer.out_features,
                    "nnz": layer.nnz,
                    "bias": layer.bias is not None,
                }
            )
        elif isinstance(layer, ReLU):
            layers.append({"type": "relu", "max_value": layer.max_value})
        else:
            raise DTypeError(f"layer {k} ({type(layer).__name__}) cannot be saved")
    header = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": model.dtype.name,
        "layers": layers,
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(header)
    except TypeError as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    arrays["header"] = np.frombuffer(text.encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _fail(path: Path, message: str) -> FileFormatError:
    return FileFormatError(f"{path}: {message}")


def _array(store, key: str, path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    if key not in store.files:
        raise _fail(path, f"array {key} is missing")
    try:
        arr = store[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(path, f"array {key} is unreadable ({exc})") from None
    if arr.dtype != dtype or arr.shape != (length,):
        raise _fail(
            path,
            f"array {key} is {arr.dtype}{list(arr.shape)}, expected {np.dtype(dtype)}[{length}]",
        )
    return arr


def _read_header(store, path: Path) -> dict:
    if "header" not in store.files:
        raise _fail(path, "no header: not a gbdnn model file")
    try:
        header = json.loads(store["header"].tobytes().decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"unreadable header ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _fail(path, "not a gbdnn model file")
    if header.get("version") != VERSION:
        raise _fail(
            path,
            f"format version {header.get('version')!r} is not supported "
            f"(this gbdnn reads version {VERSION})",
        )
    if not isinstance(header.get("layers"), list) or not header["layers"]:
        raise _fail(path, "the header lists no layers")
    return header


def _linear(store, path: Path, k: int, spec: dict, vtype) -> Linear:
    try:
        n_in, n_out, nnz = int(spec["in_features"]), int(spec["out_features"]), int(spec["nnz"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, f"layer {k}: in_features, out_features and nnz are required") from None
    if min(n_in, n_out, nnz) < 0:
        raise _fail(path, f"layer {k}: negative size in the header")
    indptr = _array(store, f"layer{k}.indptr", path, np.int64, n_in + 1)
    indices = _array(store, f"layer{k}.indices", path, np.int64, nnz)
    values = _array(store, f"layer{k}.values", path, vtype.numpy, nnz)
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise _fail(path, f"layer {k}: corrupt row pointers")
    if nnz and (indices.min() < 0 or indices.max() >= n_out):
        raise _fail(path, f"layer {k}: column index out of range")
    bias = None
    if spec.get("bias"):
        bias = _array(store, f"layer{k}.bias", path, vtype.numpy, n_out)
    weight = sp.csr_array((values, indices, indptr), shape=(n_in, n_out))
    if not weight.has_canonical_format:
        raise _fail(path, f"layer {k}: unsorted or duplicate column indices")
    try:
        return Linear(weight, bias, dtype=vtype.name, name=spec.get("name"))
    except GbdnnError as exc:
        raise _fail(path, f"layer {k}: {exc}") from None


def load(path: str | Path, *, with_metadata: bool = False) -> Sequential | tuple[Sequential, dict]:
    """Read a model written by :func:`save`, without pickle.

    Parameters
    ----------
    path : str or Path
    with_metadata : bool, default False
        Also return the header's metadata dict.

    Raises
    ------
    MissingFileError
        If there is no such file.
    FileFormatError
        If the file is not a gbdnn model, is of another format version, or is
        corrupt or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        store = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(path, f"not a readable .npz archive ({exc})") from None
    with store:
        header = _read_header(store, path)
        try:
            vtype = value_type(header.get("dtype"))
        except GbdnnError as exc:
            raise _fail(path, str(exc)) from None
        layers = []
        for k, spec in enumerate(header["layers"]):
            kind = spec.get("type") if isinstance(spec, dict) else None
            if kind == "linear":
                layers.append(_linear(store, path, k, spec, vtype))
            elif kind == "relu":
                try:
                    layers.append(ReLU(max_value=spec.get("max_value")))
                except (TypeError, ValueError) as exc:
                    raise _fail(path, f"layer {k}: {exc}") from None
            else:
                raise _fail(path, f"layer {k}: unknown layer type {kind!r}")
    try:
        model = Sequential(layers)
    except GbdnnError as exc:
        raise _fail(path, str(exc)) from None
    return (model, header["metadata"]) if with_metadata else model
