"""Packing small integers for storage: two 4-bit values per byte."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack integers in [-8, 7] (or [0, 15]) two per byte, low nibble first.

    The result has ``ceil(n / 2)`` bytes; unpack with the original length.
    """
    v = np.asarray(values).ravel()
    if v.size and (v.min() < -8 or v.max() > 15):
        raise ParameterError("pack_int4 takes values in [-8, 15]")
    nibbles = (v.astype(np.int16) & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, n: int, *, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_int4`: ``n`` values, signed (two's complement) or not."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.size != (n + 1) // 2:
        raise ParameterError(f"{packed.size} packed bytes cannot hold {n} 4-bit values")
    out = np.empty(packed.size * 2, dtype=np.int16)
    out[0::2], out[1::2] = packed & 0xF, packed >> 4
    out = out[:n]
    if signed:
        out = np.where(out > 7, out - 16, out)
    return out.astype(np.int8 if signed else np.uint8)
