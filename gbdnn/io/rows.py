"""Input and output rows for ``gbdnn infer`` and calibration: arrays in files.

Readers take ``.npy``, ``.npz`` (a SciPy sparse matrix saved by
``scipy.sparse.save_npz``, or an archive with one array, or with one named
``X``), Matrix Market (``.mtx``) and the Graph Challenge TSV (``.tsv``), each
optionally gzipped where the format allows; nothing is unpickled. Writers
take the same suffixes and never replace an existing file unless asked.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import graphblas as gb
import numpy as np
import scipy.io
import scipy.sparse as sp
from graphblas import Matrix

from ..errors import FileFormatError, MissingFileError
from .files import atomic_write
from .matrix import read_mtx, read_tsv

SUFFIXES = (".npy", ".npz", ".mtx", ".tsv")


def _suffix(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in (*SUFFIXES, ".txt"):
        if name.endswith(suffix):
            return ".tsv" if suffix == ".txt" else suffix
    raise FileFormatError(f"{path}: unknown file type; expected one of {', '.join(SUFFIXES)}")


def read_rows(
    path: str | Path, *, ncols: int | None = None, dtype: str = "float32"
) -> np.ndarray | sp.csr_array | Matrix:
    """Read a 2-D array of rows from ``path``.

    Parameters
    ----------
    path : str or Path
    ncols : int, optional
        The width, for TSV files (whose last columns may hold no entry).
    dtype : {"float32", "float64"}
        Value type of TSV and Matrix Market data.

    Returns
    -------
    numpy.ndarray, scipy.sparse.csr_array or graphblas.Matrix
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    if suffix == ".tsv":
        return read_tsv(path, ncols=ncols, dtype=dtype)
    if suffix == ".mtx":
        return read_mtx(path, dtype=dtype)
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FileFormatError(f"{path}: not a readable {suffix} file ({exc})") from None
    if suffix == ".npz":
        data = _from_npz(data, path)
    if data.ndim != 2:
        raise FileFormatError(f"{path}: expected a 2-D array, got shape {data.shape}")
    return data


def _from_npz(store: Any, path: Path) -> np.ndarray | sp.csr_array:
    with store:
        names = list(store.files)
        if {"format", "shape", "data"} <= set(names):
            try:
                return sp.csr_array(sp.load_npz(path))
            except (ValueError, KeyError) as exc:
                raise FileFormatError(f"{path}: unreadable sparse matrix ({exc})") from None
        if len(names) != 1 and "X" not in names:
            raise FileFormatError(
                f"{path}: holds arrays {names}; expected one array, or one named 'X'"
            )
        return store["X" if "X" in names else names[0]]


def write_rows(y: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write rows to ``path`` in the format its suffix names.

    ``.npy`` is dense; ``.npz`` is SciPy sparse CSR (``scipy.sparse.load_npz``
    reads it); ``.mtx`` is Matrix Market coordinate; ``.tsv`` is the Graph
    Challenge's ``row<TAB>col<TAB>value`` with 1-based indices.
    """
    path = Path(path)
    suffix = _suffix(path)
    if path.name.endswith(".gz"):
        raise FileFormatError(f"{path}: gbdnn does not write compressed files")
    if isinstance(y, Matrix):
        y = gb.io.to_scipy_sparse(y, format="csr")
    writers: dict[str, Callable[[IO[bytes]], None]] = {
        ".npy": lambda f: np.save(f, y.toarray() if sp.issparse(y) else np.asarray(y)),
        ".npz": lambda f: sp.save_npz(f, sp.csr_array(y)),
        ".mtx": lambda f: scipy.io.mmwrite(f, sp.coo_array(y)),
        ".tsv": lambda f: _write_tsv(f, sp.coo_array(y)),
    }
    return atomic_write(path, writers[suffix], overwrite=overwrite)


def _write_tsv(f: IO[bytes], coo: sp.coo_array) -> None:
    table = np.column_stack([coo.row + 1, coo.col + 1, coo.data])
    order = np.lexsort((coo.col, coo.row))
    np.savetxt(f, table[order], fmt=["%d", "%d", "%.9g"], delimiter="\t")
