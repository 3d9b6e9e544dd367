"""Functions of the C library, looked up once (bottom layer: no gbdnn imports)."""

from __future__ import annotations

import ctypes


def function(name: str, *argtypes):
    """The C library's function ``name`` (returning a C ``int`` unless its ``restype``
    is set), or None where there is none (Windows, or a C library without it)."""
    try:
        found = getattr(ctypes.CDLL(None), name)
    except (OSError, TypeError, AttributeError):
        return None
    found.argtypes = list(argtypes)
    return found
