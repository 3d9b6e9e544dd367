"""Files and formats: Graph Challenge TSV, Matrix Market, gbdnn model files, PyTorch, ONNX."""

from .graphchallenge import read_categories, read_images, read_layers
from .matrix import read_matrix, read_mtx, read_tsv
from .modelfile import load, save
from .onnx_io import from_onnx, to_onnx
from .rows import read_rows, write_rows
from .torch_io import from_torch, to_torch

__all__ = [
    "from_onnx",
    "from_torch",
    "load",
    "read_categories",
    "read_images",
    "read_layers",
    "read_matrix",
    "read_mtx",
    "read_rows",
    "read_tsv",
    "save",
    "to_onnx",
    "to_torch",
    "write_rows",
]
