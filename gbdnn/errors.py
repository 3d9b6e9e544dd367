"""Exceptions raised by gbdnn.

Every error gbdnn raises on bad input derives from :class:`GbdnnError`, and
also from the built-in exception a Python user would expect (``ValueError``,
``TypeError``, ``FileNotFoundError``), so both ``except gbdnn.GbdnnError`` and
``except ValueError`` work.
"""

from __future__ import annotations


class GbdnnError(Exception):
    """Base class of all gbdnn errors."""


class ShapeError(GbdnnError, ValueError):
    """Array shapes do not fit together (layer chain, input width, bias length)."""


class DTypeError(GbdnnError, TypeError):
    """A value type gbdnn does not support (complex, object, strings, ...)."""


class NonFiniteError(GbdnnError, ValueError):
    """NaN or infinity where finite numbers are required."""


class FileFormatError(GbdnnError, ValueError):
    """A data or model file is empty, truncated or malformed."""


class MissingFileError(GbdnnError, FileNotFoundError):
    """A file gbdnn was asked to read does not exist."""


class UnsupportedError(GbdnnError, ValueError):
    """A model holds an operation or module gbdnn cannot represent."""


class ParameterError(GbdnnError, ValueError):
    """A parameter out of its allowed values: an unknown option, a number out of
    range, or options that contradict each other."""


class ParameterTypeError(GbdnnError, TypeError):
    """A parameter of the wrong type (a string where a number is expected, ...)."""


class CacheWarning(UserWarning):
    """A file gbdnn caches (the calibrated kernel costs) is unreadable or incomplete, so
    gbdnn uses its defaults for what it cannot read."""
