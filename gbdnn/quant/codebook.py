"""Codebook (non-uniform) weights: 2^b centroids from 1-D Lloyd-Max / k-means.

Each weight is stored as a b-bit index into a table of centroids, per layer or
per output channel: the "hard compressor" of sub-8-bit quantization-aware
training. Only nonzero weights are clustered and zeros are never stored, so
zero stays exactly zero and a pruned pattern is kept.
"""

from __future__ import annotations

import numpy as np

from ..convert import dense_float64
from .clipping import check_bits


def lloyd_max(values: np.ndarray, k: int, *, max_iter: int = 100) -> np.ndarray:
    """``k`` sorted centroids minimising the squared error of ``values`` (1-D k-means).

    Initialised at the quantiles (deterministic); converges when no value
    changes cluster. Fewer distinct values than ``k`` give those values.
    """
    distinct = np.unique(values)
    if distinct.size <= k:
        return np.concatenate([distinct, np.full(k - distinct.size, distinct[-1])])
    centroids = np.quantile(values, (np.arange(k) + 0.5) / k)
    order = np.sort(values)
    labels = None
    for _ in range(max_iter):
        edges = (centroids[1:] + centroids[:-1]) / 2
        new_labels = np.searchsorted(edges, order)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        sums = np.bincount(labels, weights=order, minlength=k)
        counts = np.bincount(labels, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        centroids = np.sort(centroids)
    return centroids


class CodebookQuantizer:
    """Non-uniform weight quantizer with a table of ``2^bits`` centroids.

    Parameters
    ----------
    bits : int, default 4
        2 to 8.
    per_channel : bool, default False
        One table per output channel instead of one per layer.

    Attributes
    ----------
    tables_ : numpy.ndarray
        ``(channels, 2^bits)`` float32 centroids (one row per tensor).
    """

    def __init__(self, bits: int = 4, *, per_channel: bool = False) -> None:
        self.bits = check_bits(bits)
        self.per_channel = bool(per_channel)

    def fit(self, w: np.ndarray) -> CodebookQuantizer:
        """Cluster the nonzero weights of ``w`` ``(in, out)``."""
        w = dense_float64(w, "weight")
        k = 2**self.bits
        columns = [w[:, j] for j in range(w.shape[1])] if self.per_channel else [w.ravel()]
        tables = []
        for col in columns:
            nz = col[col != 0]
            tables.append(lloyd_max(nz, k) if nz.size else np.zeros(k))
        self.tables_ = np.asarray(tables, dtype=np.float32)
        return self

    def encode(self, w: np.ndarray) -> np.ndarray:
        """Index (uint8) of the nearest centroid of every weight."""
        w = dense_float64(w, "weight")
        if not hasattr(self, "tables_"):
            raise RuntimeError("call fit before encode")
        tables = self.tables_.astype(np.float64)
        if self.per_channel:
            dist = np.abs(w.T[:, :, None] - tables[:, None, :])  # (out, in, k)
            return np.argmin(dist, axis=2).T.astype(np.uint8)
        return np.argmin(np.abs(w[:, :, None] - tables[0]), axis=2).astype(np.uint8)

    def decode(self, idx: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Weights from indices, zero where ``mask`` (the stored pattern) is False."""
        values = (
            self.tables_[np.arange(idx.shape[1]), idx]
            if self.per_channel
            else (self.tables_[0][idx])
        )
        return np.where(mask, values, 0).astype(np.float32)

    def quantize(self, w: np.ndarray) -> np.ndarray:
        """``decode(encode(w))``: the weight as the table represents it."""
        w = dense_float64(w, "weight")
        return self.decode(self.encode(w), w != 0)
