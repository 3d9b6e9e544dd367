"""Sparse matrices from files: the Graph Challenge TSV format and Matrix Market.

Every reader checks what it reads and raises :class:`~gbdnn.FileFormatError`
naming the file (and the line, where there is one) for empty, truncated or
malformed files, indices that are not 1-based integers or fall outside the
expected shape, duplicate entries, and NaN or Inf values.
"""

from __future__ import annotations

import gzip
import io
import warnings
import zlib
from pathlib import Path

import numpy as np
import scipy.io
from graphblas import Matrix

from ..convert import to_matrix
from ..dtypes import value_type
from ..errors import FileFormatError, GbdnnError, MissingFileError

PathLike = str | Path


def read_text(path: PathLike) -> str:
    """Return the text of ``path``, gunzipping ``*.gz`` files."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("ascii")
    except (EOFError, OSError, zlib.error) as exc:
        raise FileFormatError(f"{path}: truncated or corrupt gzip file ({exc})") from None
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        raise FileFormatError(f"{path}: not a text file ({reason})") from None


def _parse_table(text: str, path: Path, columns: int) -> np.ndarray:
    """Parse whitespace-separated numbers, ``columns`` per line."""
    if not text.strip():
        raise FileFormatError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError as exc:
        reason = str(exc).split("; use `usecols`")[0]
        raise FileFormatError(f"{path}: malformed line ({reason}; rows count from 0)") from None
    if table.shape[1] != columns:
        raise FileFormatError(
            f"{path}: expected {columns} columns per line, found {table.shape[1]}"
        )
    return table


def _one_based(values: np.ndarray, path: Path, what: str, limit: int | None) -> np.ndarray:
    """Check 1-based integer indices (at most ``limit``) and return them 0-based."""
    bad = np.flatnonzero((values != np.floor(values)) | ~np.isfinite(values))
    if bad.size:
        raise FileFormatError(
            f"{path}: line {bad[0] + 1}: {what} index {values[bad[0]]:g} is not an integer"
        )
    bad = np.flatnonzero(values < 1)
    if bad.size:
        raise FileFormatError(
            f"{path}: line {bad[0] + 1}: {what} index {values[bad[0]]:g} is below 1 "
            "(indices are 1-based)"
        )
    if limit is not None:
        bad = np.flatnonzero(values > limit)
        if bad.size:
            raise FileFormatError(
                f"{path}: line {bad[0] + 1}: {what} index {values[bad[0]]:g} "
                f"is out of range (at most {limit})"
            )
    return values.astype(np.int64) - 1


def read_tsv(
    path: PathLike,
    *,
    nrows: int | None = None,
    ncols: int | None = None,
    dtype: str = "float32",
) -> Matrix:
    """Read a sparse matrix in the Graph Challenge TSV format.

    Each line is ``i<TAB>j<TAB>v`` (any whitespace works) with 1-based
    indices; ``*.gz`` files are decompressed.

    Parameters
    ----------
    path : str or Path
        The file.
    nrows, ncols : int, optional
        The shape. Indices beyond it are an error; when omitted, the largest
        index read.
    dtype : {"float32", "float64"}, default "float32"

    Returns
    -------
    graphblas.Matrix

    Raises
    ------
    MissingFileError
        If the file does not exist.
    FileFormatError
        If it is empty, truncated or malformed, has indices that are not
        1-based integers within the shape, duplicate entries, or NaN/Inf.
    """
    path = Path(path)
    vtype = value_type(dtype)
    table = _parse_table(read_text(path), path, 3)
    rows = _one_based(table[:, 0], path, "row", nrows)
    cols = _one_based(table[:, 1], path, "column", ncols)
    values = table[:, 2]
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise FileFormatError(f"{path}: line {bad[0] + 1}: value {values[bad[0]]} is not finite")
    nrows = int(rows.max()) + 1 if nrows is None else nrows
    ncols = int(cols.max()) + 1 if ncols is None else ncols
    keys = rows * ncols + cols
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(np.diff(keys[order]) == 0)
    if dup.size:
        line = order[dup[0] + 1]
        raise FileFormatError(
            f"{path}: line {line + 1}: duplicate entry ({rows[line] + 1}, {cols[line] + 1})"
        )
    return Matrix.from_coo(
        rows, cols, values.astype(vtype.numpy), nrows=nrows, ncols=ncols, dtype=vtype.graphblas
    )


def read_mtx(path: PathLike, *, dtype: str = "float32") -> Matrix:
    """Read a real Matrix Market file (``*.mtx`` or ``*.mtx.gz``).

    Raises
    ------
    MissingFileError, FileFormatError
        As :func:`read_tsv`; also for complex or pattern-less malformed headers.
    """
    path = Path(path)
    vtype = value_type(dtype)
    text = read_text(path)
    if not text.strip():
        raise FileFormatError(f"{path}: the file is empty")
    try:
        data = scipy.io.mmread(io.StringIO(text))
    except (ValueError, IndexError, OverflowError) as exc:
        raise FileFormatError(f"{path}: not a valid Matrix Market file ({exc})") from None
    if getattr(data, "ndim", 0) != 2:
        raise FileFormatError(f"{path}: expected a matrix")
    try:
        return to_matrix(data, vtype, str(path), drop_zeros=False)
    except GbdnnError as exc:
        raise FileFormatError(str(exc)) from None


def read_matrix(path: PathLike, **kwargs: object) -> Matrix:
    """Read a matrix, choosing the reader by the file name (TSV or Matrix Market)."""
    name = Path(path).name.removesuffix(".gz")
    if name.endswith(".mtx"):
        return read_mtx(path, **kwargs)
    if name.endswith((".tsv", ".txt")):
        return read_tsv(path, **kwargs)
    raise FileFormatError(f"{path}: unknown file type; expected .tsv, .mtx (optionally .gz)")
