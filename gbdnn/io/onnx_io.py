"""ONNX in and out: :func:`from_onnx` and :func:`to_onnx`.

gbdnn reads ONNX graphs that are a chain of MatMul / Gemm / Add / Relu / Clip
(and Identity, Dropout, Flatten, which do nothing to 2-D rows) from one input
to one output, weights held in initializers or Constant nodes. onnx is an
optional dependency, imported on use; files are protobuf, never pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import FileFormatError, MissingFileError, ParameterTypeError, UnsupportedError
from ..model import Sequential
from .files import atomic_write
from .interop import FloatOp, build_model, float_ops

SUPPORTED_OPS = ("MatMul", "Gemm", "Add", "Relu", "Clip", "Identity", "Dropout", "Flatten")
PASS_THROUGH = ("Identity", "Dropout", "Flatten")


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("this needs onnx: pip install 'gbdnn[onnx]'") from None
    return onnx


def _load(model: Any) -> Any:
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
    except Exception as exc:  # protobuf and checker errors have no common base
        raise FileFormatError(f"{path}: not a valid ONNX model ({exc})") from None
    return proto


class _Graph:
    """Walks a chain graph, keeping its constants and the running activation."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.to_array = numpy_helper.to_array
        self.consts: dict[str, Any] = {t.name: self.to_array(t) for t in graph.initializer}
        for s in graph.sparse_initializer:
            self.consts[s.values.name] = _sparse_array(s, self.to_array)
        inputs = [i.name for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise UnsupportedError(f"the graph must have one data input, it has {inputs}")
        self.current = inputs[0]
        self.ops: list[FloatOp] = []
        self.after_linear = False

    def const(self, name: str, label: str, what: str) -> Any:
        if name not in self.consts:
            raise UnsupportedError(f"{label}: the {what} {name!r} must be a constant")
        return self.consts[name]


def _sparse_array(s: Any, to_array) -> Any:
    values, indices, dims = to_array(s.values), to_array(s.indices), tuple(s.dims)
    if len(dims) != 2:
        return sp.coo_array((values, (indices.ravel(),)), shape=(int(np.prod(dims)),)).toarray()
    rows, cols = (indices // dims[1], indices % dims[1]) if indices.ndim == 1 else indices.T
    return sp.csr_array((values, (rows, cols)), shape=dims)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _matrix(value: Any, label: str) -> sp.csr_array:
    if value.ndim != 2:
        raise UnsupportedError(f"{label}: the weight must be 2-D, got shape {value.shape}")
    m = sp.csr_array(value)
    return m if m.dtype in (np.float32, np.float64) else m.astype(np.float32)


def _bias(value: Any, n_out: int, label: str) -> np.ndarray:
    b = np.asarray(value, dtype=np.float64)
    if b.ndim == 2 and b.shape[0] == 1:
        b = b[0]
    if b.shape not in ((), (1,), (n_out,)):
        raise UnsupportedError(f"{label}: the bias must broadcast to ({n_out},), got {b.shape}")
    return np.broadcast_to(b, (n_out,)).copy()


def _step(g: _Graph, node: Any, label: str) -> None:
    """Append what ``node`` computes from ``g.current`` to ``g.ops``."""
    op, ins = node.op_type, list(node.input)
    attrs = _attrs(node)
    if op == "MatMul":
        if ins[0] != g.current:
            raise UnsupportedError(f"{label}: only X @ W with a constant W is supported")
        g.ops.append(FloatOp(_matrix(g.const(ins[1], label, "weight"), label), name=node.name))
    elif op == "Gemm":
        # Y = alpha A' B' + beta C, A the activations
        if ins[0] != g.current or attrs.get("transA", 0):
            raise UnsupportedError(f"{label}: only Gemm(X, W, C) with transA=0 is supported")
        w = _matrix(g.const(ins[1], label, "weight"), label)
        w = sp.csr_array(w.T) if attrs.get("transB", 0) else w
        w = w * attrs.get("alpha", 1.0) if attrs.get("alpha", 1.0) != 1.0 else w
        bias = None
        if len(ins) > 2 and ins[2]:
            c = g.const(ins[2], label, "bias")
            bias = attrs.get("beta", 1.0) * _bias(c, w.shape[1], label)
        g.ops.append(FloatOp(w, bias, name=node.name))
    elif op == "Add":
        if not g.after_linear:
            raise UnsupportedError(f"{label}: Add must directly follow a MatMul or Gemm")
        other = ins[1] if ins[0] == g.current else ins[0]
        last = g.ops[-1]
        b = _bias(g.const(other, label, "bias"), last.weight.shape[1], label)
        last.bias = b if last.bias is None else last.bias + b
    elif op == "Relu":
        g.ops.append(FloatOp())
    elif op == "Clip":
        lo, hi = attrs.get("min"), attrs.get("max")  # opset < 11
        if len(ins) > 1 and ins[1]:
            lo = float(g.const(ins[1], label, "min"))
        if len(ins) > 2 and ins[2]:
            hi = float(g.const(ins[2], label, "max"))
        if lo != 0 or (hi is not None and hi <= 0):
            raise UnsupportedError(
                f"{label}: only Clip(min=0, max > 0 or none), a clipped ReLU, is supported; "
                f"got min={lo}, max={hi}"
            )
        g.ops.append(FloatOp(max_value=hi))
    elif op == "Flatten" and attrs.get("axis", 1) != 1:
        raise UnsupportedError(f"{label}: only Flatten(axis=1) is supported")
    g.after_linear = op in ("MatMul", "Gemm") or (g.after_linear and op == "Add")


def from_onnx(model: str | Path | Any, *, dtype: str | None = None) -> Sequential:
    """A gbdnn model from an ONNX file (or ``onnx.ModelProto``).

    Parameters
    ----------
    model : str, Path or onnx.ModelProto
        A chain ``X -> ... -> Y`` of MatMul (``X @ W``), Gemm (``transA=0``;
        ``transB``, ``alpha`` and ``beta`` honoured), Add of a bias after
        either, Relu, Clip with ``min=0`` (a clipped ReLU), and Identity,
        Dropout and Flatten(axis=1); weights in (dense or sparse)
        initializers or Constant nodes. Inputs are 2-D rows.
    dtype : {"float32", "float64"}, optional
        Default: float64 when every weight is float64, float32 otherwise.

    Raises
    ------
    MissingFileError, FileFormatError
        For a missing or invalid file.
    UnsupportedError
        For any other op, or a graph that is not a chain; the message names
        the node and its op.
    """
    proto = _load(model)
    g = _Graph(proto.graph)
    for i, node in enumerate(proto.graph.node):
        label = f"node {node.name or f'#{i}'!r} ({node.op_type})"
        if node.op_type == "Constant":
            g.consts[node.output[0]] = g.to_array(_attrs(node)["value"])
            continue
        if node.op_type not in SUPPORTED_OPS:
            raise UnsupportedError(
                f"{label} is not supported; gbdnn imports {', '.join(SUPPORTED_OPS)}"
            )
        data = [name for name in node.input if name and name not in g.consts]
        if data != [g.current]:
            raise UnsupportedError(
                f"{label} does not read only the previous output {g.current!r}: gbdnn imports "
                "chains of layers"
            )
        _step(g, node, label)
        g.current = node.output[0]
    outputs = [o.name for o in proto.graph.output]
    if outputs != [g.current]:
        raise UnsupportedError(f"the graph outputs {outputs}, expected only {g.current!r}")
    return build_model(g.ops, dtype, "the ONNX graph")


def to_onnx(
    model: Sequential,
    path: str | Path | None = None,
    *,
    sparse_weights: bool = False,
    opset: int = 17,
    overwrite: bool = False,
) -> Any:
    """The model as an ONNX graph ``X -> Gemm -> Relu / Clip -> ... -> Y``.

    Parameters
    ----------
    model : Sequential
    path : str or Path, optional
        Also write the model there (atomically; an existing file only with
        ``overwrite=True``).
    sparse_weights : bool, default False
        Store weights as ONNX sparse initializers (COO, only the stored
        entries); runtimes densify them when loading.
    opset : int, default 17

    Returns
    -------
    onnx.ModelProto
        Input ``X`` ``(N, in_features)``, output ``Y`` ``(N, out_features)``
        in the model's dtype. Quantized layers give their dequantized weights.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(model, Sequential):
        raise ParameterTypeError(f"model must be a gbdnn.Sequential, not {type(model).__name__}")
    npt = model.dtype.numpy
    elem = TensorProto.DOUBLE if npt == np.float64 else TensorProto.FLOAT
    nodes, dense, sparse, current = [], [], [], "X"
    for k, op in enumerate(float_ops(model)):
        out = f"h{k}"
        if op.is_linear:
            w = op.weight.astype(npt)
            if sparse_weights:
                coo = sp.coo_array(w)
                flat = coo.row.astype(np.int64) * w.shape[1] + coo.col
                values = numpy_helper.from_array(coo.data, f"W{k}")
                index = numpy_helper.from_array(flat, f"W{k}.indices")
                sparse.append(helper.make_sparse_tensor(values, index, w.shape))
            else:
                dense.append(numpy_helper.from_array(w.toarray(), f"W{k}"))
            inputs = [current, f"W{k}"]
            if op.bias is not None:
                dense.append(numpy_helper.from_array(op.bias.astype(npt), f"b{k}"))
                inputs.append(f"b{k}")
            nodes.append(helper.make_node("Gemm", inputs, [out], name=op.name or f"linear{k}"))
        elif op.max_value is None:
            nodes.append(helper.make_node("Relu", [current], [out], name=f"relu{k}"))
        else:
            dense.append(numpy_helper.from_array(np.array(0, npt), f"min{k}"))
            dense.append(numpy_helper.from_array(np.array(op.max_value, npt), f"max{k}"))
            clip = [current, f"min{k}", f"max{k}"]
            nodes.append(helper.make_node("Clip", clip, [out], name=f"relu{k}"))
        current = out
    nodes[-1].output[0] = "Y"
    graph = helper.make_graph(
        nodes,
        "gbdnn",
        [helper.make_tensor_value_info("X", elem, ["N", model.in_features])],
        [helper.make_tensor_value_info("Y", elem, ["N", model.out_features])],
        initializer=dense,
        sparse_initializer=sparse,
    )
    opsets = [helper.make_opsetid("", opset)]
    # the oldest IR version that carries the opset, so that older runtimes read the file
    ir_version = helper.find_min_ir_version_for(opsets)
    proto = helper.make_model(
        graph, opset_imports=opsets, producer_name="gbdnn", ir_version=ir_version
    )
    onnx.checker.check_model(proto)
    if path is not None:
        atomic_write(Path(path), lambda f: f.write(proto.SerializeToString()), overwrite=overwrite)
    return proto
