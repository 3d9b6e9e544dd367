"""gbdnn model files: NumPy ``.npz`` with a JSON header, loadable without pickle.

Format version 1. The archive holds

* ``header``: UTF-8 JSON as a ``uint8`` array::

      {"format": "gbdnn", "version": 1, "dtype": "float32",
       "layers": [{"type": "linear", "name": null, "in_features": 64,
                   "out_features": 32, "nnz": 1024, "bias": true},
                  {"type": "relu", "max_value": null}, ...],
       "metadata": {...}}

* for the ``k``-th layer with weights, the pattern of the weight ``(in, out)``
  in CSR: ``layer{k}.indptr`` (``in_features + 1`` entries) and
  ``layer{k}.indices`` (``nnz``), each in the smallest unsigned integer type
  that holds its values; ``layer{k}.bias`` (float, ``out_features``) when the
  layer has a bias; and by layer type:

  ``"linear"``
      ``layer{k}.values``: the weights, in the model dtype.
  ``"qlinear"`` (:class:`~gbdnn.quant.QuantizedLinear`)
      ``layer{k}.q``: the stored integers ``q`` (``w = scale (q - zero_point)``),
      int8/uint8, or two per byte (low nibble first) for 4 bits and fewer;
      ``layer{k}.scale`` (float32) and ``layer{k}.zero_point`` (int32), one per
      channel or one per tensor; the header adds ``bits``, ``symmetric``,
      ``per_channel``, ``input_scale``, ``input_range`` and ``input_bits``.
  ``"codebook"`` (:class:`~gbdnn.quant.CodebookLinear`)
      ``layer{k}.codes``: centroid indices, uint8 or packed two per byte for 4
      bits and fewer; ``layer{k}.tables`` (float32, channels x 2^bits); the
      header adds ``bits`` and ``per_channel``.

Files are read with ``allow_pickle=False``; every array is checked against the
header (dtype, shape, CSR structure, index range, finite values) and a corrupt,
truncated or foreign file raises :class:`~gbdnn.FileFormatError`. Saving
writes a temporary file beside the target and renames it, so a crash never
leaves a half-written file in place of a good one, and an existing file is
only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import graphblas as gb
import numpy as np
import scipy.sparse as sp

from ..dtypes import value_type
from ..errors import DTypeError, FileFormatError, GbdnnError, MissingFileError, ParameterTypeError
from ..layers import Layer, Linear, ReLU
from ..model import Sequential
from ..quant.layers import CodebookLinear, QuantizedLinear
from ..quant.packing import pack_int4, unpack_int4
from .files import atomic_write

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
        raise ParameterTypeError(f"model must be a gbdnn.Sequential, not {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    layers, arrays = [], {}
    for k, layer in enumerate(model):
        spec, layer_arrays = encode_layer(layer, k, model.dtype.numpy)
        layers.append(spec)
        arrays.update({f"layer{k}.{key}": value for key, value in layer_arrays.items()})
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
        raise ParameterTypeError(f"metadata must be JSON-serialisable: {exc}") from None
    arrays["header"] = np.frombuffer(text.encode(), dtype=np.uint8)
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays), overwrite=overwrite)


def _fail(path: Path, message: str) -> FileFormatError:
    return FileFormatError(f"{path}: {message}")


def _array(store, key: str, path: Path, dtype: np.dtype, length: int | None) -> np.ndarray:
    if key not in store.files:
        raise _fail(path, f"array {key} is missing")
    try:
        arr = store[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(path, f"array {key} is unreadable ({exc})") from None
    if arr.dtype != dtype or (length is not None and arr.shape != (length,)):
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


def _index_dtype(limit: int) -> np.dtype:
    """The smallest unsigned type holding 0..limit."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if limit <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _pack(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    if bits <= 4:
        return pack_int4(values)
    return values.astype(np.int8 if signed else np.uint8)


def _unpack(store, path: Path, k: int, key: str, n: int, bits: int, signed: bool) -> np.ndarray:
    name = f"layer{k}.{key}"
    if bits <= 4:
        packed = _array(store, name, path, np.uint8, (n + 1) // 2)
        return unpack_int4(packed, n, signed=signed).astype(np.int64)
    return _array(store, name, path, np.int8 if signed else np.uint8, n).astype(np.int64)


def encode_layer(layer: Layer, k: int, dtype: np.dtype) -> tuple[dict, dict[str, np.ndarray]]:
    """Header entry and arrays of one layer."""
    if isinstance(layer, ReLU):
        return {"type": "relu", "max_value": layer.max_value}, {}
    if isinstance(layer, QuantizedLinear):
        csr = gb.io.to_scipy_sparse(layer.weight_int, format="csr")
        zero = layer.weight_zero_point
        q = csr.data + (zero[csr.indices] if zero.size > 1 else zero[0])
        extra = {
            "bits": layer.bits,
            "symmetric": layer.symmetric,
            "per_channel": layer.per_channel,
            "input_scale": float(layer.input_scale),
            "input_range": list(layer.input_range),
            "input_bits": layer.input_bits,
        }
        arrays = {
            "q": _pack(q, layer.bits, layer.symmetric),
            "scale": layer.weight_scale,
            "zero_point": zero.astype(np.int32),
        }
        kind = "qlinear"
    elif isinstance(layer, CodebookLinear):
        csr = gb.io.to_scipy_sparse(layer.weight, format="csr")
        extra = {"bits": layer.bits, "per_channel": layer.per_channel}
        arrays = {"codes": _pack(layer.codes, layer.bits, False), "tables": layer.tables}
        kind = "codebook"
    elif isinstance(layer, Linear):
        csr = gb.io.to_scipy_sparse(layer.weight, format="csr")
        extra, arrays, kind = {}, {"values": csr.data.astype(dtype)}, "linear"
    else:
        raise DTypeError(f"layer {k} ({type(layer).__name__}) cannot be saved")
    arrays["indptr"] = csr.indptr.astype(_index_dtype(csr.nnz))
    arrays["indices"] = csr.indices.astype(_index_dtype(max(layer.out_features - 1, 0)))
    if layer.bias is not None:
        arrays["bias"] = np.asarray(layer.bias)
    spec = {
        "type": kind,
        "name": layer.name,
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "nnz": layer.nnz,
        "bias": layer.bias is not None,
        **extra,
    }
    return spec, arrays


def _index_array(store, key: str, path: Path, length: int, limit: int) -> np.ndarray:
    if key not in store.files:
        raise _fail(path, f"array {key} is missing")
    arr = store[key]
    if arr.dtype.kind not in "ui" or arr.shape != (length,):
        raise _fail(
            path, f"array {key} is {arr.dtype}{list(arr.shape)}, expected integers[{length}]"
        )
    arr = arr.astype(np.int64)
    if length and (arr.min() < 0 or arr.max() > limit):
        raise _fail(path, f"array {key} has values out of range")
    return arr


def _pattern(store, path: Path, k: int, spec: dict) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """Sizes and validated CSR structure of layer ``k``."""
    try:
        n_in, n_out, nnz = int(spec["in_features"]), int(spec["out_features"]), int(spec["nnz"])
    except (KeyError, TypeError, ValueError):
        raise _fail(path, f"layer {k}: in_features, out_features and nnz are required") from None
    if min(n_in, n_out, nnz) < 0:
        raise _fail(path, f"layer {k}: negative size in the header")
    indptr = _index_array(store, f"layer{k}.indptr", path, n_in + 1, nnz)
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise _fail(path, f"layer {k}: corrupt row pointers")
    try:
        indices = _index_array(store, f"layer{k}.indices", path, nnz, max(n_out - 1, 0))
    except FileFormatError as exc:
        raise _fail(path, f"layer {k}: column index out of range ({exc})") from None
    if nnz and n_out == 0:
        raise _fail(path, f"layer {k}: column index out of range")
    csr = sp.csr_array((np.ones(nnz), indices, indptr), shape=(n_in, n_out))
    if not csr.has_canonical_format:
        raise _fail(path, f"layer {k}: unsorted or duplicate column indices")
    return n_in, n_out, nnz, indptr, indices


def _decode(store, path: Path, k: int, spec: dict, vtype) -> Layer:
    """Rebuild layer ``k`` from its header entry and arrays."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "relu":
        return ReLU(max_value=spec.get("max_value"))
    if kind not in ("linear", "qlinear", "codebook"):
        raise _fail(path, f"layer {k}: unknown layer type {kind!r}")
    n_in, n_out, nnz, indptr, indices = _pattern(store, path, k, spec)
    bias = None
    if spec.get("bias"):
        bias = _array(
            store, f"layer{k}.bias", path, np.float32 if kind != "linear" else vtype.numpy, n_out
        )
    shape = (n_in, n_out)
    if kind == "linear":
        values = _array(store, f"layer{k}.values", path, vtype.numpy, nnz)
        weight = sp.csr_array((values, indices, indptr), shape=shape)
        return Linear(weight, bias, dtype=vtype.name, name=spec.get("name"))
    bits = int(spec.get("bits", 0))
    per_channel = bool(spec.get("per_channel"))
    channels = n_out if per_channel else 1
    if kind == "codebook":
        codes = _unpack(store, path, k, "codes", nnz, bits, signed=False)
        tables = _array(store, f"layer{k}.tables", path, np.float32, None)
        if tables.shape != (channels, 2**bits):
            raise _fail(path, f"layer {k}: tables must be {channels} x {2**bits}")
        pattern = sp.csr_array((np.ones(nnz), indices, indptr), shape=shape)
        return CodebookLinear(
            pattern, codes, tables, bias, bits=bits, per_channel=per_channel, name=spec.get("name")
        )
    symmetric = bool(spec.get("symmetric"))
    q = _unpack(store, path, k, "q", nnz, bits, signed=symmetric)
    scale = _array(store, f"layer{k}.scale", path, np.float32, channels)
    zero = _array(store, f"layer{k}.zero_point", path, np.int32, channels)
    centered = q - (zero[indices] if per_channel else zero[0])
    weight = sp.csr_array((centered, indices, indptr), shape=shape)
    return QuantizedLinear(
        weight,
        scale,
        float(spec["input_scale"]),
        tuple(spec["input_range"]),
        bias,
        weight_zero_point=zero,
        bits=bits,
        input_bits=int(spec["input_bits"]),
        symmetric=symmetric,
        per_channel=per_channel,
        name=spec.get("name"),
    )


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
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # not a zip: never pass NumPy's advice to unpickle
            raise _fail(path, "not a readable .npz archive (not a zip file)")
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
            try:
                layers.append(_decode(store, path, k, spec, vtype))
            except FileFormatError:
                raise
            except (GbdnnError, TypeError, ValueError, KeyError) as exc:
                raise _fail(path, f"layer {k}: {exc}") from None
    try:
        model = Sequential(layers)
    except GbdnnError as exc:
        raise _fail(path, str(exc)) from None
    return (model, header["metadata"]) if with_metadata else model
