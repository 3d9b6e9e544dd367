"""Which weights to keep: projections of score matrices onto sparsity patterns.

Every function takes non-negative scores (``|W|`` for magnitude pruning, or the
current iterate of a compressed-sensing solver) in gbdnn's ``(in, out)``
orientation and returns a boolean mask, True where a weight is kept. Ties are
broken deterministically: among equal scores, the entry with the smaller flat
(row-major) index is pruned first, and scopes spanning several layers order
them by layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ParameterError, ParameterTypeError


def check_amount(amount: object, name: str = "amount") -> float:
    """Validate a sparsity fraction in ``[0, 1)``."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.floating)):
        raise ParameterTypeError(f"{name} must be a number in [0, 1), got {amount!r}")
    if not 0 <= amount < 1:
        raise ParameterError(f"{name} must be in [0, 1), got {amount}")
    return float(amount)


def _int_pair(value: object, name: str, what: str) -> tuple[int, int]:
    try:
        first, second = (int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a pair {what} of integers, got {value!r}") from None
    return first, second


def check_n_m(n_m: object) -> tuple[int, int]:
    """Validate an ``(N, M)`` pattern: keep N of every M, ``1 <= N <= M``."""
    n, m = _int_pair(n_m, "n_m", "(N, M)")
    if m < 1 or n < 1:
        raise ParameterError(f"n_m must have N >= 1 and M >= 1, got {n}:{m}")
    if n > m:
        raise ParameterError(f"n_m must have N <= M (keep N of every M), got {n}:{m}")
    return n, m


def check_block(block: object) -> tuple[int, int]:
    """Validate a block shape ``(rows, cols)`` of positive integers."""
    rows, cols = _int_pair(block, "block", "(rows, cols)")
    if rows < 1 or cols < 1:
        raise ParameterError(f"block must have positive sides, got {rows}x{cols}")
    return rows, cols


def n_zero(amount: float, size: int) -> int:
    """The exact number of zeros ``amount`` asks of ``size`` entries."""
    return round(amount * size)


def keep_largest(scores: Sequence[np.ndarray], amount: float) -> list[np.ndarray]:
    """Masks keeping all but the ``round(amount * size)`` smallest scores.

    The scores of all arrays compete together (one scope); pass one array for
    a per-layer scope.
    """
    flat = np.concatenate([np.ravel(s) for s in scores])
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[: n_zero(amount, flat.size)]] = False
    masks, start = [], 0
    for s in scores:
        masks.append(keep[start : start + s.size].reshape(s.shape))
        start += s.size
    return masks


def keep_per_column(scores: np.ndarray, amount: float) -> np.ndarray:
    """Mask keeping the same number of largest scores in every column."""
    drop = n_zero(amount, scores.shape[0])
    order = np.argsort(scores, axis=0, kind="stable")[:drop]
    mask = np.ones(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, False, axis=0)
    return mask


def keep_n_of_m(scores: np.ndarray, n: int, m: int) -> np.ndarray:
    """Mask keeping the N largest of every M consecutive inputs (rows) per column."""
    rows, cols = scores.shape
    if rows % m:
        raise ParameterError(f"N:M needs the input dimension ({rows}) to be a multiple of M = {m}")
    groups = scores.reshape(rows // m, m, cols)
    order = np.argsort(groups, axis=1, kind="stable")[:, : m - n, :]
    mask = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(mask, order, False, axis=1)
    return mask.reshape(rows, cols)


def block_norms(scores: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Frobenius norm of each ``block`` of ``scores``."""
    (rows, cols), (bh, bw) = scores.shape, block
    if rows % bh or cols % bw:
        raise ParameterError(f"block {bh}x{bw} does not divide the {rows}x{cols} weight")
    tiles = scores.reshape(rows // bh, bh, cols // bw, bw)
    return np.sqrt(np.square(tiles, dtype=np.float64).sum(axis=(1, 3)))


def expand_blocks(mask: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Element mask from a block mask."""
    return np.repeat(np.repeat(mask, block[0], axis=0), block[1], axis=1)
