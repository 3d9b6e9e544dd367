"""Magnitude pruning: unstructured (per layer or global), N:M, and blocks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ParameterError
from .masks import (
    block_norms,
    check_amount,
    check_block,
    check_n_m,
    expand_blocks,
    keep_largest,
    keep_n_of_m,
)
from .targets import Target, apply_masks

SCOPES = ("layer", "global")


class MagnitudePruner:
    """Prune the weights of smallest magnitude.

    The life cycle follows scikit-learn: parameters are checked at
    construction, :meth:`fit` decides which weights to keep (``masks_``),
    :meth:`transform` applies those masks, and :meth:`fit_transform` does both.

    Parameters
    ----------
    amount : float, optional
        Fraction of the weights that are zero afterwards, in ``[0, 1)``; an
        exact count, ``round(amount * size)``, with weights that are already
        zero counted first. Required unless ``n_m`` is given.
    scope : {"layer", "global"}, default "layer"
        ``"layer"`` prunes ``amount`` of every layer; ``"global"`` ranks all
        layers' weights together (one threshold), as
        ``torch.nn.utils.prune.global_unstructured``.
    n_m : (int, int), optional
        Semi-structured N:M sparsity: keep the ``N`` largest of every ``M``
        consecutive weights along the input dimension (e.g. ``(2, 4)``).
    block : (int, int), optional
        Block sparsity: prune whole ``rows x cols`` blocks of smallest
        Frobenius norm (``(1, 4)``, ``(4, 4)``...); ``amount`` is then the
        fraction of blocks.
    exclude : iterable of int or str
        Layers to leave dense: positions among the prunable weights or names.

    Attributes
    ----------
    masks_ : list of numpy.ndarray of bool
        Per pruned weight, ``(in, out)``, True where a weight is kept.
    sparsity_ : list of float
        The fraction of zeros of each pruned weight after pruning.

    Notes
    -----
    Ties are broken deterministically: among equal magnitudes the weight with
    the smaller row-major index (and, globally, the earlier layer) is pruned
    first.
    """

    def __init__(
        self,
        amount: float | None = None,
        *,
        scope: str = "layer",
        n_m: tuple[int, int] | None = None,
        block: tuple[int, int] | None = None,
        exclude: Iterable[int | str] = (),
    ) -> None:
        if scope not in SCOPES:
            raise ParameterError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if n_m is not None:
            if amount is not None or block is not None:
                raise ParameterError(
                    "n_m fixes the sparsity at 1 - N/M; give neither amount nor block"
                )
            if scope == "global":
                raise ParameterError(
                    "N:M sparsity is per group of M; scope='global' does not apply"
                )
            self.n_m = check_n_m(n_m)
        else:
            if amount is None:
                raise ParameterError("amount is required unless n_m is given")
            self.n_m = None
        self.amount = None if amount is None else check_amount(amount)
        self.scope = scope
        self.block = None if block is None else check_block(block)
        self.exclude = tuple(exclude)

    def masks_for(self, weights: list[np.ndarray]) -> list[np.ndarray]:
        """The keep-masks of dense ``(in, out)`` weights under this pruner's pattern."""
        scores = [np.abs(w) for w in weights]
        if self.n_m is not None:
            return [keep_n_of_m(s, *self.n_m) for s in scores]
        if self.block is not None:
            norms = [block_norms(s, self.block) for s in scores]
            chosen = self._rank(norms)
            return [expand_blocks(m, self.block) for m in chosen]
        return self._rank(scores)

    def _rank(self, scores: list[np.ndarray]) -> list[np.ndarray]:
        if self.scope == "global":
            return keep_largest(scores, self.amount)
        return [keep_largest([s], self.amount)[0] for s in scores]

    def fit(self, target: Any) -> MagnitudePruner:
        """Decide which weights of ``target`` to keep.

        Parameters
        ----------
        target : numpy.ndarray, scipy sparse, graphblas.Matrix, list of these,
            gbdnn.Sequential or torch.nn.Module
        """
        weights = Target(target, self.exclude).dense
        self.masks_ = self.masks_for(weights)
        self.sparsity_ = [1 - m.mean() if m.size else 0.0 for m in self.masks_]
        return self

    def transform(self, target: Any, *, inplace: bool = False) -> Any:
        """Apply the fitted masks to ``target``.

        Returns
        -------
        Pruned weights as true sparse matrices (SciPy CSR for NumPy and SciPy
        input, ``graphblas.Matrix`` for GraphBLAS input, a new Sequential for
        a model, a pruned copy of a torch module carrying
        ``torch.nn.utils.prune`` masks). With ``inplace=True`` the caller's
        objects are modified and returned instead.
        """
        if not hasattr(self, "masks_"):
            raise RuntimeError("call fit before transform")
        return apply_masks(target, self.masks_, self.exclude, inplace=inplace)

    def fit_transform(self, target: Any, *, inplace: bool = False) -> Any:
        """:meth:`fit`, then :meth:`transform`."""
        return self.fit(target).transform(target, inplace=inplace)

    def __repr__(self) -> str:
        parts = [f"amount={self.amount}"] if self.amount is not None else []
        parts.append(f"scope={self.scope!r}")
        if self.n_m:
            parts.append(f"n_m={self.n_m}")
        if self.block:
            parts.append(f"block={self.block}")
        return f"MagnitudePruner({', '.join(parts)})"


def magnitude_prune(target: Any, amount: float | None = None, **kwargs: Any) -> Any:
    """Prune ``target`` by magnitude in one call; see :class:`MagnitudePruner`."""
    inplace = kwargs.pop("inplace", False)
    return MagnitudePruner(amount, **kwargs).fit_transform(target, inplace=inplace)
