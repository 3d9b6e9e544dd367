"""Clipping thresholds for uniform quantization.

Every function takes a 2-D array of values (rows: samples, columns: channels;
only the nonzeros count, so pruned zeros do not pull thresholds down) and
returns one threshold per column, or one for the whole array when
``per_channel`` is False.

``"max"``
    The largest magnitude: nothing is clipped.
``"percentile"``
    The ``percentile``-th percentile of the magnitudes.
``"mse"``
    The threshold minimising the mean squared quantization error, searched on
    a grid of fractions of the maximum.
``"sawb"``
    Statistics-aware weight binning (Choi et al., 2018): ``c1 sqrt(E[w^2]) -
    c2 E[|w|]``, with ``(c1, c2)`` fitted for each bit width by least squares
    to the MSE-optimal thresholds of Gaussian, Laplace, logistic, uniform and
    Student-t (4 degrees of freedom) distributions, as in the paper, and of
    the same distributions after magnitude pruning (only the largest 50, 20,
    10 and 5 % kept), since the nonzeros of a pruned layer have no mass near
    zero and the dense fit clips them far too hard.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..errors import ParameterError

METHODS = ("max", "percentile", "mse", "sawb")
#: SAWB is fitted on each distribution whole and with all but these fractions pruned.
PRUNED_FRACTIONS = (1.0, 0.5, 0.2, 0.1, 0.05)
_GRID = np.linspace(0.05, 1.0, 96)


def check_bits(bits: object) -> int:
    """Validate a bit width in 2..8."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ParameterError(f"bits must be an integer from 2 to 8, got {bits!r}")
    return int(bits)


def _columns(values: np.ndarray, per_channel: bool) -> list[np.ndarray]:
    """Nonzero magnitudes of each channel (or of everything)."""
    mags = np.abs(values)
    cols = [mags[:, j] for j in range(mags.shape[1])] if per_channel else [mags.ravel()]
    return [c[c > 0] for c in cols]


def _symmetric_mse(mags: np.ndarray, alpha: np.ndarray, qmax: int) -> np.ndarray:
    """Quantization MSE of magnitudes ``mags`` for each threshold in ``alpha``."""
    scale = alpha[:, None] / qmax
    q = np.minimum(np.round(mags[None, :] / scale), qmax) * scale
    return np.mean((q - mags[None, :]) ** 2, axis=1)


def mse_threshold(mags: np.ndarray, bits: int) -> float:
    """The grid threshold with the least quantization error of ``mags`` (> 0)."""
    qmax = 2 ** (bits - 1) - 1
    alpha = _GRID * mags.max()
    return float(alpha[np.argmin(_symmetric_mse(mags, alpha, qmax))])


@cache
def sawb_coefficients(bits: int) -> tuple[float, float]:
    """``(c1, c2)`` of SAWB for ``bits``, fitted on reference distributions."""
    from scipy import stats

    probs = (np.arange(4000) + 0.5) / 4000  # deterministic quantile 'samples'
    rows, targets = [], []
    for dist in (stats.norm, stats.laplace, stats.logistic, stats.uniform(-1, 2), stats.t(4)):
        mags = np.sort(np.abs(dist.ppf(probs)))
        for kept in PRUNED_FRACTIONS:  # the distribution after magnitude pruning
            part = mags[round((1 - kept) * mags.size) :]
            rows.append([np.sqrt(np.mean(part**2)), -np.mean(part)])
            targets.append(mse_threshold(part, bits))
    c1, c2 = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
    return float(c1), float(c2)


def thresholds(
    values: np.ndarray, method: str, bits: int, *, per_channel: bool, percentile: float = 99.9
) -> np.ndarray:
    """Clipping thresholds (>= 0) per channel, or a 1-element array per tensor.

    A channel with no nonzero value gets threshold 0 (the caller gives it a
    harmless scale).
    """
    if method not in METHODS:
        raise ParameterError(f"clip must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0 < percentile <= 100:
        raise ParameterError(f"percentile must be in (0, 100], got {percentile}")
    out = []
    for mags in _columns(values, per_channel):
        if mags.size == 0:
            out.append(0.0)
        elif method == "max":
            out.append(float(mags.max()))
        elif method == "percentile":
            out.append(float(np.percentile(mags, percentile)))
        elif method == "mse":
            out.append(mse_threshold(mags, bits))
        else:
            c1, c2 = sawb_coefficients(bits)
            alpha = c1 * np.sqrt(np.mean(mags**2)) - c2 * np.mean(mags)
            out.append(float(np.clip(alpha, 1e-12 * mags.max(), mags.max())))
    return np.asarray(out)
