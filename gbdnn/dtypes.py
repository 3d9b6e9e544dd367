"""The one registry of value types gbdnn computes in.

Each entry ties a user-facing name to the NumPy dtype and the GraphBLAS type.
Only types with SuiteSparse:GraphBLAS factory kernels for ``plus_times`` are
listed, so the hot path never falls back to generic kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import graphblas as gb
import numpy as np

from .errors import DTypeError


@dataclass(frozen=True)
class ValueType:
    """A value type: its name, NumPy dtype and GraphBLAS type."""

    name: str
    numpy: np.dtype
    graphblas: gb.core.dtypes.DataType


_REGISTRY: dict[str, ValueType] = {
    "float32": ValueType("float32", np.dtype(np.float32), gb.dtypes.FP32),
    "float64": ValueType("float64", np.dtype(np.float64), gb.dtypes.FP64),
}
_ALIASES = {"fp32": "float32", "single": "float32", "fp64": "float64", "double": "float64"}

#: Names accepted by :func:`value_type`.
SUPPORTED = tuple(_REGISTRY)


def value_type(dtype: object) -> ValueType:
    """Look up a compute type by name, NumPy dtype or GraphBLAS type.

    Parameters
    ----------
    dtype : str, numpy.dtype, type or graphblas DataType
        ``"float32"`` (alias ``"fp32"``) or ``"float64"`` (alias ``"fp64"``),
        or anything NumPy or GraphBLAS names the same way.

    Returns
    -------
    ValueType

    Raises
    ------
    DTypeError
        If the type is not one gbdnn computes in.
    """
    if isinstance(dtype, ValueType):
        return dtype
    if isinstance(dtype, gb.core.dtypes.DataType):
        dtype = dtype.np_type
    if isinstance(dtype, str):
        key = _ALIASES.get(dtype.lower(), dtype.lower())
    else:
        try:
            key = np.dtype(dtype).name
        except TypeError:
            key = repr(dtype)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise DTypeError(
            f"dtype {dtype!r} is not supported; use one of {', '.join(SUPPORTED)}"
        ) from None


def check_real_dtype(dtype: np.dtype, name: str) -> None:
    """Raise :class:`DTypeError` unless ``dtype`` is a real number or bool type."""
    if np.dtype(dtype).kind not in "biuf":  # bool, signed, unsigned, floating
        raise DTypeError(f"{name} has dtype {dtype}, which is not a real number type")
