"""Uniform (integer) quantization of weights and activations.

A weight ``w`` is stored as an integer ``q`` with ``w ~ scale * (q - zero_point)``.
Symmetric quantizers use ``zero_point = 0`` and the restricted range
``[-(2^(b-1) - 1), 2^(b-1) - 1]``; asymmetric ones use ``[0, 2^b - 1]`` with an
integer zero point, chosen so that 0.0 is represented exactly. Scales are per
tensor or per output channel (a column of gbdnn's ``(in, out)`` weight). Zero
weights stay exactly zero, and nonzero weights that round to zero become zero,
so pruning then quantizing keeps (or thins) the sparsity pattern.
"""

from __future__ import annotations

import numpy as np

from ..convert import dense_float64
from ..errors import ParameterError, ShapeError
from .clipping import check_bits, thresholds


class UniformQuantizer:
    """Post-training uniform weight quantizer.

    Parameters
    ----------
    bits : int, default 8
        2 to 8.
    symmetric : bool, default True
        Symmetric (zero point 0) or asymmetric (integer zero point).
    per_channel : bool, default False
        One scale per output channel instead of one per tensor.
    clip : {"max", "percentile", "mse", "sawb"}, default "max"
        How the clipping threshold is chosen (see :mod:`gbdnn.quant.clipping`).
    percentile : float, default 99.9
        For ``clip="percentile"``.

    Attributes
    ----------
    scale_ : numpy.ndarray
        ``(out,)`` per channel or ``(1,)`` per tensor, float32, always > 0
        (an all-zero channel gets scale 1).
    zero_point_ : numpy.ndarray
        Same shape, int32; zeros when symmetric.
    qmin_, qmax_ : int
        The integer range.
    """

    def __init__(
        self,
        bits: int = 8,
        *,
        symmetric: bool = True,
        per_channel: bool = False,
        clip: str = "max",
        percentile: float = 99.9,
    ) -> None:
        self.bits = check_bits(bits)
        self.symmetric, self.per_channel = bool(symmetric), bool(per_channel)
        thresholds(np.ones((1, 1)), clip, self.bits, per_channel=False, percentile=percentile)
        self.clip, self.percentile = clip, percentile

    def fit(self, w: np.ndarray) -> UniformQuantizer:
        """Choose scales (and zero points) for the weight ``w`` ``(in, out)``."""
        w = dense_float64(w, "weight")
        kw = {"per_channel": self.per_channel, "percentile": self.percentile}
        if self.symmetric:
            self.qmin_, self.qmax_ = -(2 ** (self.bits - 1) - 1), 2 ** (self.bits - 1) - 1
            alpha = thresholds(w, self.clip, self.bits, **kw)
            scale = alpha / self.qmax_
            zero = np.zeros(scale.shape, dtype=np.int32)
        else:
            self.qmin_, self.qmax_ = 0, 2**self.bits - 1
            # clip each side by the chosen method, keeping 0 inside the range
            hi = thresholds(np.maximum(w, 0), self.clip, self.bits + 1, **kw)
            lo = -thresholds(np.minimum(w, 0), self.clip, self.bits + 1, **kw)
            scale = (hi - lo) / self.qmax_
            safe = np.where(scale > 0, scale, 1.0)
            zero = np.clip(np.round(-lo / safe), 0, self.qmax_).astype(np.int32)
        self.scale_ = np.where(scale > 0, scale, 1.0).astype(np.float32)
        self.zero_point_ = zero
        return self

    def quantize(self, w: np.ndarray) -> np.ndarray:
        """Integers ``q`` (int32) of ``w``; zeros map to the zero point."""
        w = dense_float64(w, "weight")
        if not hasattr(self, "scale_"):
            raise RuntimeError("call fit before quantize")
        if self.per_channel and w.shape[1] != self.scale_.size:
            raise ShapeError(f"weight has {w.shape[1]} channels, fitted {self.scale_.size}")
        q = np.round(w / self.scale_.astype(np.float64)) + self.zero_point_
        q = np.clip(q, self.qmin_, self.qmax_).astype(np.int32)
        return np.where(w == 0, self.zero_point_, q).astype(np.int32)

    def centered(self, w: np.ndarray) -> np.ndarray:
        """``q - zero_point``: the integers that multiply the scale (0 where ``w`` is 0)."""
        return (self.quantize(w) - self.zero_point_).astype(np.int32)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """``scale * (q - zero_point)`` as float32."""
        return ((q - self.zero_point_) * self.scale_.astype(np.float64)).astype(np.float32)

    def __repr__(self) -> str:
        kind = "symmetric" if self.symmetric else "asymmetric"
        scope = "per-channel" if self.per_channel else "per-tensor"
        return f"UniformQuantizer(bits={self.bits}, {kind}, {scope}, clip={self.clip!r})"


class ActivationQuantizer:
    """Calibrated quantization of activations (the input of a layer).

    Unsigned ``[0, 2^b - 1]`` when the calibration data have no negative value
    (after a ReLU), otherwise symmetric signed ``[-(2^(b-1) - 1), 2^(b-1) - 1]``.

    Parameters
    ----------
    bits : int, default 8
    method : {"minmax", "percentile"}, default "minmax"
    percentile : float, default 99.99

    Attributes
    ----------
    scale_ : numpy.float32
    signed_ : bool
    qmin_, qmax_ : int
    """

    METHODS = ("minmax", "percentile")

    def __init__(self, bits: int = 8, *, method: str = "minmax", percentile: float = 99.99):
        self.bits = check_bits(bits)
        if method not in self.METHODS:
            raise ParameterError(f"method must be one of {', '.join(self.METHODS)}, got {method!r}")
        if not 0 < percentile <= 100:
            raise ParameterError(f"percentile must be in (0, 100], got {percentile}")
        self.method, self.percentile = method, percentile

    def fit(self, x: np.ndarray) -> ActivationQuantizer:
        """Calibrate the range on sample activations ``x``."""
        x = dense_float64(x, "calibration data")
        if x.size == 0:
            raise ShapeError("calibration data is empty")
        self.signed_ = bool((x < 0).any())
        mags = np.abs(x[x != 0])
        top = (
            0.0
            if mags.size == 0
            else (mags.max() if self.method == "minmax" else np.percentile(mags, self.percentile))
        )
        if self.signed_:
            self.qmin_, self.qmax_ = -(2 ** (self.bits - 1) - 1), 2 ** (self.bits - 1) - 1
        else:
            self.qmin_, self.qmax_ = 0, 2**self.bits - 1
        self.scale_ = np.float32(top / self.qmax_ if top > 0 else 1.0)
        return self
