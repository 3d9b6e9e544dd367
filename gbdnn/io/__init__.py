"""Reading matrices from files: Graph Challenge TSV, Matrix Market, challenge layouts."""

from .graphchallenge import read_categories, read_images, read_layers
from .matrix import read_matrix, read_mtx, read_tsv

__all__ = ["read_categories", "read_images", "read_layers", "read_matrix", "read_mtx", "read_tsv"]
