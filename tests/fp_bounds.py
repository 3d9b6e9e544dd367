"""Rounding-error bounds that justify the tolerances of cross-library comparisons.

Two implementations of the same float model differ only by the order of their
sums. For one layer ``a' = relu(a W + b)`` computed in precision ``u`` with
sums of at most ``n`` terms, the standard bound is
``|fl(a W + b) - (a W + b)| <= gamma_n (|a| |W| + |b|)``, ``gamma_n = n u / (1 - n u)``,
and ReLU / clipping are 1-Lipschitz. Propagating an input error ``e`` through
``|W|`` and adding each layer's own error gives, for ``L`` layers,
``|error| <= L gamma_n B_L`` with ``B_0 = |X|``, ``B_k = B_{k-1} |W_k| + |b_k|``.
Two implementations may each be off by that much, hence the factor 2.
"""

from __future__ import annotations

import numpy as np


def bound(x: np.ndarray, weights: list[np.ndarray], biases: list, unit: float) -> np.ndarray:
    """The per-entry bound on the difference of two evaluations of an MLP."""
    b_k = np.abs(np.asarray(x, dtype=np.float64))
    n = b_k.shape[1]
    for w, b in zip(weights, biases, strict=True):
        n = max(n, w.shape[0] + 1)
        b_k = b_k @ np.abs(w) + (0 if b is None else np.abs(b))
    gamma = n * unit / (1 - n * unit)
    return 2 * len(weights) * gamma * b_k


FP32 = 2.0**-24
FP64 = 2.0**-53
