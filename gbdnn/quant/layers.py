"""Quantized layers and how a model becomes one.

:class:`QuantizedLinear` runs with exact integer arithmetic on GraphBLAS::

    X_q = clip(round(X / s_x), q_min, q_max)              (round half away from 0)
    ACC = X_q (+.*) W_c                                   (INT32, exact: see below)
    Z   = float32(ACC) * m + b,   m(j) = float32(s_x * s_w(j))
    Y   = max(Z, 0) when a ReLU follows (clipped at its max_value)

``W_c = q - zero_point`` are the weight integers. SuiteSparse's prebuilt
kernels exist only for same-type built-in semirings: mixed int8 x int8 -> int32
products fall to a generic kernel about 3x slower (``bench/test_quant.py``), so
the integers are held as INT32 and multiplied by ``plus_times`` on INT32, which
is exact as long as no sum can leave the int32 range. The layer proves this
when it is built: ``max_j sum_k |W_c(k,j)| * max|X_q| < 2^31``; where the bound
fails it uses INT64 instead. On dense activations the same integers may be
multiplied by BLAS as FP32 (or FP64) numbers: exact too, because every partial
sum is bounded by the same proof and stays below 2^24 (2^53), so all kernels
give the same ACC. The float32 steps are plain IEEE operations in a
fixed order, so a NumPy int64 reference of the same formulas gives
bit-identical results (tested).

:class:`CodebookLinear` stores b-bit indices into a table of centroids and
runs as an FP32 layer whose weights are the table values.
"""

from __future__ import annotations

import copy
from typing import Any

import graphblas as gb
import numpy as np
import scipy.sparse as sp
from graphblas import Matrix
from graphblas.dtypes import lookup_dtype

from .. import elementwise, kernels
from ..convert import dense_float64
from ..dtypes import value_type
from ..errors import ParameterError, ParameterTypeError, ShapeError
from ..layers import Layer, Linear, Product, ReLU, affine_stage, check_name
from ..model import Sequential
from ..runner import Stage
from .codebook import CodebookQuantizer
from .uniform import ActivationQuantizer, UniformQuantizer

_FP32 = value_type("float32")
_INT32_LIMIT = 2**31 - 1


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (C ``round``), exactly."""
    whole = np.trunc(x)
    return whole + (np.abs(x - whole) >= 0.5) * np.sign(x)


class QuantizedLinear(Product, Layer):
    """An affine layer with integer weights and integer input activations.

    Parameters
    ----------
    weight_int : array_like of int, ``(in, out)``
        The centered weight integers ``q - zero_point`` (zeros are not stored).
    weight_scale : array_like, ``(out,)`` or ``(1,)``
        Scale per output channel or per tensor.
    input_scale : float
        Scale of the input activations.
    input_range : (int, int)
        ``(q_min, q_max)`` of the input integers.
    bias : array_like, optional
    weight_zero_point, bits, input_bits, symmetric, per_channel
        Kept for storage and description.
    name : str, optional
    path : {"auto", "sparse", "dense", "dot", "blas"}, default "auto"
        Which kernel computes ``ACC`` (see :mod:`gbdnn.tuning`). Every kernel
        gives the same, exact integers: ``"sparse"``, ``"dense"`` and
        ``"dot"`` sum in the integer accumulator; ``"blas"`` multiplies the integers as FP32
        (or FP64) numbers, exact because the overflow bound keeps every
        partial sum below 2^24 (2^53); without such a bound there is no
        ``"blas"``.

    Attributes
    ----------
    acc_type : {"INT32", "INT64"}
        The accumulator, chosen from the overflow bound.
    """

    def __init__(
        self,
        weight_int: Any,
        weight_scale: Any,
        input_scale: float,
        input_range: tuple[int, int],
        bias: Any = None,
        *,
        weight_zero_point: Any = 0,
        bits: int = 8,
        input_bits: int = 8,
        symmetric: bool = True,
        per_channel: bool = False,
        name: str | None = None,
        path: str = "auto",
    ) -> None:
        self.name = check_name(name)
        self.dtype = _FP32
        wi = sp.csr_array(weight_int)
        if not np.issubdtype(wi.dtype, np.integer):
            raise ParameterTypeError(f"weight_int must hold integers, got {wi.dtype}")
        wi.eliminate_zeros()
        self.in_features, self.out_features = wi.shape
        scale = np.asarray(weight_scale, dtype=np.float32).ravel()
        if scale.size not in (1, self.out_features):
            raise ShapeError(f"weight_scale must have 1 or {self.out_features} entries")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ParameterError("weight_scale must be finite and positive")
        if not (np.isfinite(input_scale) and input_scale > 0):
            raise ParameterError(f"input_scale must be finite and positive, got {input_scale}")
        self.weight_scale = scale
        self.weight_zero_point = np.broadcast_to(
            np.asarray(weight_zero_point, dtype=np.int32), scale.shape
        ).copy()
        self.input_scale = np.float32(input_scale)
        self.input_range = (int(input_range[0]), int(input_range[1]))
        self.bits, self.input_bits = bits, input_bits
        self.symmetric, self.per_channel = symmetric, per_channel
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32).copy()
        if self.bias is not None and self.bias.shape != (self.out_features,):
            raise ShapeError(f"bias must have shape ({self.out_features},)")
        # the overflow bound: |ACC(i,j)| <= max|X_q| * sum_k |W_c(k,j)|
        x_max = max(abs(self.input_range[0]), abs(self.input_range[1]))
        col_l1 = np.asarray(abs(wi).sum(axis=0)).ravel().astype(np.int64)
        self.acc_bound = int(x_max * (col_l1.max() if col_l1.size else 0))
        self.acc_type = "INT32" if self.acc_bound <= _INT32_LIMIT else "INT64"
        # integer products summed in floating point are exact while every partial sum
        # stays below 2^24 (FP32) or 2^53 (FP64), and |partial sums| <= acc_bound
        blas = np.float32 if self.acc_bound < 2**24 else np.float64
        weight_int = Matrix.from_csr(
            wi.indptr,
            wi.indices,
            wi.data.astype(np.int64),
            ncols=self.out_features,
            dtype=self.acc_type,
        )
        self._init_product(weight_int, blas if self.acc_bound < 2**53 else None, path)
        # m(j) = float32(s_x * s_w(j)); diag(m) made once where it differs by column
        self.multiplier = (self.input_scale * self.weight_scale).astype(np.float32)
        self._scales = elementwise.per_column(self.multiplier)

    @property
    def weight_int(self) -> Matrix:
        """The integer weights ``W_c``, ``(in, out)``, zeros dropped (read-only)."""
        return self._stored

    def _run_type(self, x: Any) -> Any:
        return _FP32

    def quantize_input(self, z: Matrix) -> Matrix:
        """``X_q = clip(round(X / s_x), q_min, q_max)`` as integers, zeros dropped."""
        lo, hi = self.input_range
        acc_type = lookup_dtype(self.acc_type)
        if elementwise.on_values(z):
            # in NumPy on a copy of X's rows, the same IEEE steps: SuiteSparse's round,
            # min and max have no prebuilt kernels, and its kernels on a bitmap mispredict
            # a branch per position (64 ReLU rows of 1024: 1.9 ms, this 0.15)
            v = kernels.dense_rows(z, np.float32)
            np.divide(v, self.input_scale, out=v)
            q = np.clip(round_half_away(v), lo, hi).astype(acc_type.np_type)
            kernels.recycle(v)
            return kernels.give(q, acc_type, flags=q != 0)
        # Q = X / s_x, then Q = min(max(round(Q), lo), hi), in FP32 on the stored entries
        q = elementwise.like(z)
        elementwise.apply_right(q, "truediv", z, self.input_scale)
        elementwise.apply_unary(q, "round", q)
        elementwise.apply_right(q, "min", q, hi)
        elementwise.apply_right(q, "max", q, lo)
        # X_q<Q != 0> = Q as integers: rounding to zero leaves nothing to multiply
        xq = elementwise.like(q, acc_type)
        elementwise.select_right(xq, "valuene", q, 0)
        kernels.release(q)
        return xq

    def _rescale(self, acc: Matrix) -> Matrix:
        """``Z = float32(ACC) * m``."""
        if elementwise.on_values(acc):
            # in NumPy on ACC's values (ACC used up): SuiteSparse's cast of integers
            # has no prebuilt kernel (64 x 1024 INT32: 0.47 ms), and m(j) needs no diag(m)
            values, present, by_row = kernels.take_positions(acc)
            z = np.multiply(values, self._scales.along(by_row), dtype=np.float32)
            return kernels.give(z, _FP32.graphblas, by_row=by_row, flags=present)
        # Z = float32(ACC)
        z = elementwise.like(acc, _FP32.graphblas)
        elementwise.apply_unary(z, "identity", acc)
        if self._scales.diag is None:
            # Z(i,j) *= m
            elementwise.apply_right(z, "times", z, self.multiplier[0])
        else:
            elementwise.times_diagonal(z, self._scales.diag)
        return z

    def _product(self, z: Matrix) -> Matrix:
        # ACC = X_q (+.*) W_c, then Z = float32(ACC) * m
        return self._rescale(self.product(self.quantize_input(z)))

    def stage(self, following: Layer | None = None) -> tuple[Stage, int]:
        return affine_stage(self._product, self.bias, following)

    def dequantized(self) -> sp.csr_array:
        """The float weights ``W = s_w (q - zero_point)``, ``(in, out)`` float32 CSR."""
        w = gb.io.to_scipy_sparse(self.weight_int, format="csr").astype(np.float32)
        # W(k, j) = W_c(k, j) * s_w(j): scale the columns
        return sp.csr_array(w @ sp.diags_array(np.broadcast_to(self.weight_scale, w.shape[1])))

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The same layer in NumPy, integer sums in int64 (no ReLU): for checking."""
        lo, hi = self.input_range
        xq = np.clip(round_half_away(np.asarray(x, np.float32) / self.input_scale), lo, hi)
        wc = gb.io.to_scipy_sparse(self.weight_int).toarray().astype(np.int64)
        acc = xq.astype(np.int64) @ wc
        z = acc.astype(np.float32) * self.multiplier[None, :]
        return z if self.bias is None else z + self.bias

    def __repr__(self) -> str:
        kind = "sym" if self.symmetric else "asym"
        scope = "per-channel" if self.per_channel else "per-tensor"
        return (
            f"QuantizedLinear(in_features={self.in_features}, "
            f"out_features={self.out_features}, nnz={self.nnz}, int{self.bits} {kind} "
            f"{scope}, input uint{self.input_bits}, acc={self.acc_type})"
        )


class CodebookLinear(Linear):
    """A Linear layer whose weights are ``2^bits`` centroids, stored as indices.

    Attributes
    ----------
    codes : numpy.ndarray of uint8
        The index of every stored weight, in CSR order.
    tables : numpy.ndarray
        ``(channels, 2^bits)`` float32 centroids.
    """

    def __init__(
        self,
        pattern: sp.csr_array,
        codes: np.ndarray,
        tables: np.ndarray,
        bias: Any = None,
        *,
        bits: int,
        per_channel: bool,
        name: str | None = None,
    ) -> None:
        pattern = sp.csr_array(pattern)
        codes = np.asarray(codes, dtype=np.uint8)
        tables = np.asarray(tables, dtype=np.float32)
        if codes.size != pattern.nnz or (codes.size and codes.max() >= 2**bits):
            raise ParameterError("codes must hold one index below 2^bits per stored weight")
        cols = pattern.indices if per_channel else np.zeros(pattern.nnz, dtype=np.int64)
        values = tables[cols, codes]
        weight = sp.csr_array((values, pattern.indices, pattern.indptr), shape=pattern.shape)
        super().__init__(weight, bias, dtype="float32", name=name)
        if self.nnz != pattern.nnz:
            raise ParameterError("a codebook centroid is 0: zero weights must not be stored")
        self.codes, self.tables, self.bits, self.per_channel = codes, tables, bits, per_channel


def _dense_weight(layer: Linear) -> np.ndarray:
    return layer.weight.to_dense(fill_value=0).astype(np.float64)


def _calibrated_inputs(model: Sequential, x: np.ndarray) -> list[np.ndarray]:
    """The float input of each Linear layer of ``model`` on ``x``."""
    inputs, a = [], np.asarray(x, dtype=np.float64)
    for layer in model:
        if isinstance(layer, Linear):
            inputs.append(a)
            a = a @ _dense_weight(layer) + (0 if layer.bias is None else layer.bias)
        elif isinstance(layer, ReLU):
            a = np.maximum(a, 0) if layer.max_value is None else np.clip(a, 0, layer.max_value)
    return inputs


def quantize_model(
    model: Sequential,
    x: Any,
    weights: UniformQuantizer | None = None,
    *,
    activations: ActivationQuantizer | None = None,
) -> Sequential:
    """Post-training quantization of every Linear layer of ``model``.

    Parameters
    ----------
    model : Sequential
    x : array_like
        Calibration rows ``(n, in_features)``: ranges of every layer's input
        are calibrated on them (through the float model).
    weights : UniformQuantizer, optional
        Template refitted per layer (default: 8-bit symmetric per-tensor, max).
    activations : ActivationQuantizer, optional
        Template refitted per layer (default: 8-bit min/max).

    Returns
    -------
    Sequential
        QuantizedLinear and ReLU layers; runs with exact integer products.
    """
    weights = weights or UniformQuantizer(8)
    activations = activations or ActivationQuantizer(8)
    x = dense_float64(x, "calibration data")
    if x.shape[1] != model.in_features:
        raise ShapeError(
            f"calibration data must have shape (n, {model.in_features}), got {x.shape}"
        )
    inputs = iter(_calibrated_inputs(model, x))

    def make(layer: Linear, w: np.ndarray) -> QuantizedLinear:
        wq = copy.deepcopy(weights).fit(w)
        aq = copy.deepcopy(activations).fit(next(inputs))
        return QuantizedLinear(
            wq.centered(w),
            wq.scale_,
            aq.scale_,
            (aq.qmin_, aq.qmax_),
            layer.bias,
            weight_zero_point=wq.zero_point_,
            bits=wq.bits,
            input_bits=aq.bits,
            symmetric=wq.symmetric,
            per_channel=wq.per_channel,
            name=layer.name,
        )

    return _replace_linears(model, make)


def codebook_model(
    model: Sequential, quantizer: CodebookQuantizer | UniformQuantizer | None = None
) -> Sequential:
    """Replace every Linear layer's weights by a table of values and indices into it.

    Parameters
    ----------
    model : Sequential
    quantizer : CodebookQuantizer or UniformQuantizer, optional
        Template refitted per layer. A CodebookQuantizer (the default, 4-bit,
        per layer) gives Lloyd-Max centroids; a UniformQuantizer gives
        weight-only uniform quantization: the table holds its ``2^bits``
        levels ``scale (q - zero_point)``, and the layer computes in FP32
        with exactly the dequantized weights. Weights that quantize to 0 are
        dropped.

    Returns
    -------
    Sequential
        CodebookLinear and ReLU layers.
    """
    quantizer = quantizer or CodebookQuantizer(4)

    def make(layer: Linear, w: np.ndarray) -> CodebookLinear:
        fitted = copy.deepcopy(quantizer).fit(w)
        if isinstance(fitted, UniformQuantizer):
            codes, tables = _uniform_table(fitted, w)
        else:
            codes, tables = fitted.encode(w), fitted.tables_
        channel = np.arange(w.shape[1]) if fitted.per_channel else np.zeros(w.shape[1], int)
        # keep the weights that are nonzero and whose table value is nonzero
        pattern = sp.csr_array((w != 0) & (tables[channel[None, :], codes] != 0))
        return CodebookLinear(
            pattern,
            codes[pattern.nonzero()],
            tables,
            layer.bias,
            bits=fitted.bits,
            per_channel=fitted.per_channel,
            name=layer.name,
        )

    return _replace_linears(model, make)


def _uniform_table(quantizer: UniformQuantizer, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``q - q_min`` and the table ``scale (level - zero_point)`` of a fitted quantizer."""
    levels = np.arange(quantizer.qmin_, quantizer.qmin_ + 2**quantizer.bits)
    zero = quantizer.zero_point_.astype(np.int64)[:, None]
    scale = quantizer.scale_.astype(np.float64)[:, None]
    # the same float64 product and float32 rounding as UniformQuantizer.dequantize
    tables = ((levels[None, :] - zero) * scale).astype(np.float32)
    codes = (quantizer.quantize(w) - quantizer.qmin_).astype(np.uint8)
    return codes, tables


def _replace_linears(model: Sequential, make) -> Sequential:
    """A new model with ``make(layer, dense weight)`` in place of every Linear layer."""
    return Sequential(
        [
            make(layer, _dense_weight(layer)) if isinstance(layer, Linear) else layer
            for layer in model
        ]
    )
