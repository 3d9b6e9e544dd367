"""Quantized value types (``gbdnn.quant``): int2..int8 and codebook weights.

* :class:`UniformQuantizer`: symmetric/asymmetric, per-tensor/per-channel,
  clipping by max, percentile, MSE or SAWB;
* :class:`CodebookQuantizer`: 2^b Lloyd-Max centroids per layer or channel;
* :class:`ActivationQuantizer`: calibrated activation ranges;
* :func:`quantize_model` -> :class:`QuantizedLinear` layers that run with
  exact integer GraphBLAS products; :func:`codebook_model` ->
  :class:`CodebookLinear` layers.
"""

from .codebook import CodebookQuantizer, lloyd_max
from .layers import (
    CodebookLinear,
    QuantizedLinear,
    codebook_model,
    quantize_model,
    round_half_away,
)
from .packing import pack_int4, unpack_int4
from .uniform import ActivationQuantizer, UniformQuantizer

__all__ = [
    "ActivationQuantizer",
    "CodebookLinear",
    "CodebookQuantizer",
    "QuantizedLinear",
    "UniformQuantizer",
    "codebook_model",
    "lloyd_max",
    "pack_int4",
    "quantize_model",
    "round_half_away",
    "unpack_int4",
]
