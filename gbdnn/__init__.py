"""gbdnn: sparse deep-neural-network inference on GraphBLAS.

Layers run as GraphBLAS semiring operations (python-graphblas over
SuiteSparse:GraphBLAS): ``Y = X W + b`` is a ``plus_times`` matrix product,
ReLU a ``select`` that keeps the activations sparse.

>>> import gbdnn
>>> model = gbdnn.Sequential([gbdnn.Linear(W1, b1), gbdnn.ReLU(), gbdnn.Linear(W2, b2)])
>>> Y = model(X)   # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .dtypes import SUPPORTED as SUPPORTED_DTYPES
from .errors import (
    CacheWarning,
    DTypeError,
    FileFormatError,
    GbdnnError,
    MissingFileError,
    NonFiniteError,
    ParameterError,
    ParameterTypeError,
    ShapeError,
    UnsupportedError,
)
from .io.modelfile import load, save
from .io.onnx_io import from_onnx, to_onnx
from .io.torch_io import from_torch, to_torch
from .layers import Layer, Linear, ReLU
from .model import Sequential

try:
    __version__ = version("gbdnn")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "SUPPORTED_DTYPES",
    "CacheWarning",
    "DTypeError",
    "FileFormatError",
    "GbdnnError",
    "Layer",
    "Linear",
    "MissingFileError",
    "NonFiniteError",
    "ParameterError",
    "ParameterTypeError",
    "ReLU",
    "Sequential",
    "ShapeError",
    "UnsupportedError",
    "__version__",
    "from_onnx",
    "from_torch",
    "load",
    "save",
    "to_onnx",
    "to_torch",
]
