"""Files: Graph Challenge TSV, Matrix Market, challenge layouts, gbdnn model files."""

from .graphchallenge import read_categories, read_images, read_layers
from .matrix import read_matrix, read_mtx, read_tsv
from .modelfile import load, save

__all__ = [
    "load",
    "read_categories",
    "read_images",
    "read_layers",
    "read_matrix",
    "read_mtx",
    "read_tsv",
    "save",
]
