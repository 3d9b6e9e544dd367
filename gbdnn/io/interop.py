"""What the PyTorch and ONNX converters share: a model as float operations.

Both exporters walk a model as a list of :class:`FloatOp` (an affine layer
with float weights, or a ReLU with an optional clip), and both importers build
a model from such a list with :func:`build_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

import graphblas as gb
import numpy as np
import scipy.sparse as sp

from ..dtypes import value_type
from ..errors import UnsupportedError
from ..layers import Layer, Linear, ReLU
from ..model import Sequential
from ..quant.layers import QuantizedLinear


@dataclass
class FloatOp:
    """``Y = X W + b`` (``weight`` set) or ``Y = min(max(X, 0), max_value)``.

    Attributes
    ----------
    weight : scipy.sparse.csr_array or None
        ``(in, out)``, float.
    bias : numpy.ndarray or None
    max_value : float or None
        The clip of a ReLU.
    name : str or None
    """

    weight: sp.csr_array | None = None
    bias: np.ndarray | None = None
    max_value: float | None = None
    name: str | None = None

    @property
    def is_linear(self) -> bool:
        return self.weight is not None


def float_ops(model: Sequential) -> list[FloatOp]:
    """The layers of ``model`` as float operations.

    Quantized layers give their dequantized weights ``s_w (q - zero_point)``;
    the quantization of their inputs is not represented, so an exported
    quantized model computes in float with the quantized weights.
    """
    ops = []
    for i, layer in enumerate(model):
        if isinstance(layer, ReLU):
            ops.append(FloatOp(max_value=layer.max_value))
        elif isinstance(layer, QuantizedLinear):
            ops.append(FloatOp(layer.dequantized(), layer.bias, name=layer.name))
        elif isinstance(layer, Linear):
            w = gb.io.to_scipy_sparse(layer.weight, format="csr")
            ops.append(FloatOp(sp.csr_array(w), layer.bias, name=layer.name))
        else:
            raise UnsupportedError(f"layer {i} ({type(layer).__name__}) cannot be exported")
    return ops


def build_model(ops: list[FloatOp], dtype: str | None, source: str) -> Sequential:
    """A :class:`Sequential` from float operations.

    Parameters
    ----------
    ops : list of FloatOp
    dtype : {"float32", "float64"} or None
        None: float64 when every weight is float64, float32 otherwise.
    source : str
        How error messages name the model being imported.
    """
    weights = [op.weight for op in ops if op.is_linear]
    if not weights:
        raise UnsupportedError(f"{source} has no Linear / MatMul / Gemm layer")
    if dtype is None:
        dtype = "float64" if all(w.dtype == np.float64 for w in weights) else "float32"
    vtype = value_type(dtype)
    layers: list[Layer] = []
    for op in ops:
        if op.is_linear:
            layers.append(Linear(op.weight, op.bias, dtype=vtype.name, name=op.name))
        elif layers and isinstance(layers[-1], ReLU) and layers[-1].max_value is None:
            # max(max(x, 0), 0) clipped is the clipped ReLU alone
            layers[-1] = ReLU(op.max_value)
        else:
            layers.append(ReLU(op.max_value))
    return Sequential(layers)
