"""The steps of the command-line pipeline: read, prune, quantize, describe, write.

Each step takes and returns plain objects, so ``gbdnn.cli`` only parses
arguments and prints. Model files are gbdnn ``.npz`` (see
:mod:`gbdnn.io.modelfile`) or ONNX (``.onnx``, needs the ``onnx`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import graphblas as gb
import numpy as np
from graphblas import Matrix

from .convert import dense_float64
from .errors import GbdnnError, ParameterError, ShapeError, UnsupportedError
from .io.modelfile import encode_layer, load, save
from .io.rows import read_rows
from .layers import Linear, ReLU
from .model import Sequential
from .prune import CSPPruner, MagnitudePruner
from .quant import (
    CodebookLinear,
    CodebookQuantizer,
    QuantizedLinear,
    UniformQuantizer,
    codebook_model,
    quantize_model,
)


def read_model(path: str | Path) -> tuple[Sequential, dict]:
    """A model and its metadata from a gbdnn ``.npz`` or an ``.onnx`` file."""
    path = Path(path)
    if path.suffix == ".onnx":
        from .io.onnx_io import from_onnx

        return from_onnx(path), {"source": str(path)}
    return load(path, with_metadata=True)


def write_model(
    model: Sequential, path: str | Path, *, metadata: dict, overwrite: bool = False
) -> Path:
    """Write a gbdnn ``.npz`` (with ``metadata``), or ONNX when ``path`` ends in ``.onnx``."""
    path = Path(path)
    if path.suffix == ".onnx":
        from .io.onnx_io import to_onnx

        to_onnx(model, path, overwrite=overwrite)
        return path
    return save(model, path, metadata=metadata, overwrite=overwrite)


def read_calibration(path: str | Path, model: Sequential, rows: int | None) -> np.ndarray:
    """The first ``rows`` rows of a data file as a dense float64 array of the model's width."""
    x = read_rows(path, ncols=model.in_features, dtype="float64")
    if isinstance(x, Matrix):  # TSV and Matrix Market: rows are sliced in SciPy
        x = gb.io.to_scipy_sparse(x, format="csr")
    if x.shape[1] != model.in_features:
        raise ShapeError(
            f"{path}: calibration data has {x.shape[1]} columns, the model expects "
            f"{model.in_features}"
        )
    return dense_float64(x[:rows] if rows else x, f"{path}: calibration data")


def _check_float(model: Sequential, step: str) -> None:
    for i, layer in enumerate(model):
        if isinstance(layer, (QuantizedLinear, CodebookLinear)):
            raise UnsupportedError(
                f"layer {i} is already quantized ({type(layer).__name__}); {step} a float model"
            )


def prune(
    model: Sequential,
    method: str,
    sparsity: float,
    *,
    calib: np.ndarray | None = None,
    scope: str = "layer",
    solver: str = "iht",
    exclude: tuple[int | str, ...] = (),
    progress: bool = False,
) -> tuple[Sequential, dict]:
    """Prune every Linear layer to ``sparsity``; returns the model and what was done.

    ``method`` is ``"magnitude"`` (``scope`` layer or global) or ``"csp"``
    (compressed sensing, needs ``calib`` rows).
    """
    _check_float(model, "prune")
    if method == "magnitude":
        pruner = MagnitudePruner(sparsity, scope=scope, exclude=exclude)
        out = pruner.fit_transform(model)
        info: dict[str, Any] = {"scope": scope}
    elif method == "csp":
        if calib is None:
            raise GbdnnError("CSP pruning needs calibration rows (--calib DATA)")
        pruner = CSPPruner(sparsity, solver=solver, exclude=exclude, progress=progress)
        out = pruner.fit_transform(model, calib)
        info = {
            "solver": solver,
            "calibration_rows": len(calib),
            "relative_output_error": [round(e, 6) for e in pruner.errors_],
        }
    else:
        raise ParameterError(f"method must be magnitude or csp, got {method!r}")
    layer_sparsity = [round(float(1 - m.mean()), 6) for m in pruner.masks_]
    info.update(method=method, sparsity=sparsity, layer_sparsity=layer_sparsity)
    return out, info


def quantize(
    model: Sequential,
    bits: int,
    *,
    per_channel: bool = False,
    symmetric: bool = True,
    clip: str = "max",
    codebook: bool = False,
    calib: np.ndarray | None = None,
) -> tuple[Sequential, dict]:
    """Quantize every Linear layer to ``bits``; returns the model and what was done.

    With ``calib`` rows: integer weights and activations (exact integer
    products, :class:`~gbdnn.quant.QuantizedLinear`). Without: weight-only,
    uniform levels (or Lloyd-Max centroids with ``codebook``) stored as
    ``bits``-bit indices, computed in FP32.
    """
    _check_float(model, "quantize")
    info: dict[str, Any] = {"bits": bits, "per_channel": per_channel}
    if codebook:
        out = codebook_model(model, CodebookQuantizer(bits, per_channel=per_channel))
        info["kind"] = "codebook (Lloyd-Max), weight-only"
        return out, info
    weights = UniformQuantizer(bits, symmetric=symmetric, per_channel=per_channel, clip=clip)
    info.update(symmetric=symmetric, clip=clip)
    if calib is None:
        info["kind"] = "uniform, weight-only"
        return codebook_model(model, weights), info
    info.update(kind="uniform, integer weights and activations", calibration_rows=len(calib))
    return quantize_model(model, calib, weights), info


def describe(model: Sequential) -> list[dict[str, Any]]:
    """One row per layer: type, name, shape, nnz, sparsity, value type, bytes at rest.

    ``bytes`` is the size of the arrays the model file stores for the layer
    (indices, values or integer codes, scales, bias) before compression.
    """
    rows = []
    for k, layer in enumerate(model):
        spec, arrays = encode_layer(layer, k, model.dtype.numpy)
        row: dict[str, Any] = {"layer": k, "type": spec["type"], "name": spec.get("name")}
        if isinstance(layer, ReLU):
            row["max_value"] = layer.max_value
        else:
            size = layer.in_features * layer.out_features
            row.update(
                shape=[layer.in_features, layer.out_features],
                nnz=layer.nnz,
                sparsity=round(1 - layer.nnz / size, 6) if size else 0.0,
                dtype=_value_type(layer),
                bias=layer.bias is not None,
                bytes=int(sum(a.nbytes for a in arrays.values())),
            )
        rows.append(row)
    return rows


def _value_type(layer: Linear | QuantizedLinear) -> str:
    if isinstance(layer, QuantizedLinear):
        return f"int{layer.bits} x uint{layer.input_bits} -> {layer.acc_type.lower()}"
    if isinstance(layer, CodebookLinear):
        return f"codebook {layer.bits}-bit ({'per channel' if layer.per_channel else 'per layer'})"
    return layer.dtype.name
