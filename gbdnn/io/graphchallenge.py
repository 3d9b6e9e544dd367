"""The files of the Sparse DNN Graph Challenge: layers, input images, truth.

The official layout, as in https://graphchallenge.mit.edu/data-sets::

    DIR/neuron1024/n1024-l1.tsv[.gz] ... n1024-l120.tsv[.gz]   weight layers
    DIR/sparse-images-1024[...].tsv[.gz]                        input images
    DIR/neuron1024-l120-categories.tsv                          truth
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from graphblas import Matrix

from ..errors import FileFormatError, MissingFileError
from .matrix import PathLike, _one_based, _parse_table, read_text, read_tsv


def layer_path(directory: PathLike, neurons: int, layer: int) -> Path:
    """The file of layer ``layer`` (1-based), plain or gzip-compressed."""
    directory = Path(directory)
    for name in (f"n{neurons}-l{layer}.tsv", f"n{neurons}-l{layer}.tsv.gz"):
        for candidate in (directory / name, directory / f"neuron{neurons}" / name):
            if candidate.is_file():
                return candidate
    raise MissingFileError(
        f"{directory}: no file n{neurons}-l{layer}.tsv[.gz] for layer {layer} "
        f"(looked in {directory} and {directory / f'neuron{neurons}'})"
    )


def read_layers(
    directory: PathLike,
    neurons: int = 1024,
    layers: int = 120,
    *,
    dtype: str = "float32",
    progress: bool = False,
) -> list[Matrix]:
    """Read the first ``layers`` weight matrices of a challenge network.

    Parameters
    ----------
    directory : str or Path
        The folder holding ``n{neurons}-l{k}.tsv[.gz]``, or its parent.
    neurons : int, default 1024
    layers : int, default 120
    dtype : {"float32", "float64"}, default "float32"
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    list of graphblas.Matrix
        ``neurons x neurons`` each.
    """
    from tqdm.auto import tqdm

    paths = [layer_path(directory, neurons, k) for k in range(1, layers + 1)]
    return [
        read_tsv(p, nrows=neurons, ncols=neurons, dtype=dtype)
        for p in tqdm(paths, desc="reading layers", unit="layer", disable=not progress, leave=False)
    ]


def read_images(
    path: PathLike, neurons: int = 1024, *, nrows: int | None = None, dtype: str = "float32"
) -> Matrix:
    """Read input images (``row<TAB>pixel<TAB>value``, 1-based), one row per image."""
    return read_tsv(path, nrows=nrows, ncols=neurons, dtype=dtype)


def read_categories(path: PathLike) -> np.ndarray:
    """Read a truth file of 1-based row numbers; return them 0-based and sorted."""
    path = Path(path)
    table = _parse_table(read_text(path), path, 1)
    rows = _one_based(table[:, 0], path, "row", None)
    if np.unique(rows).size != rows.size:
        raise FileFormatError(f"{path}: a row number appears twice")
    return np.sort(rows)


def find_images(directory: PathLike, neurons: int) -> Path:
    """The input-image file of ``directory`` for a ``neurons``-wide network."""
    found = sorted(Path(directory).glob(f"sparse-images-{neurons}*.tsv*"))
    if not found:
        raise MissingFileError(f"{directory}: no sparse-images-{neurons}*.tsv[.gz] file")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise FileFormatError(f"{directory}: several image files ({names}); name one")
    return found[0]


def truth_path(directory: PathLike, neurons: int, layers: int) -> Path | None:
    """The truth file for ``neurons`` and ``layers``, or None where there is none."""
    path = Path(directory) / f"neuron{neurons}-l{layers}-categories.tsv"
    return path if path.is_file() else None
