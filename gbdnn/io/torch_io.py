"""PyTorch in and out: :func:`from_torch` and :func:`to_torch`.

PyTorch's ``nn.Linear`` computes ``y = x A' + b`` with ``A`` of shape
``(out, in)``; gbdnn stores ``W = A'`` of shape ``(in, out)``, as in the
GraphBLAS DNN papers. torch is an optional dependency, imported on use.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError, ParameterTypeError, UnsupportedError
from ..model import Sequential
from .interop import FloatOp, build_model, float_ops

LAYOUTS = ("dense", "sparse_csr")


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("this needs PyTorch: pip install 'gbdnn[torch]'") from None
    return torch


def _modules(module: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """The leaf modules of nested ``nn.Sequential`` containers, with their names."""
    nn = _torch().nn
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _modules(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or type(module).__name__, module


def _weight(tensor: Any) -> sp.csr_array:
    """``A'`` of a torch weight ``A`` (out, in), dense or sparse, as float CSR (in, out)."""
    torch = _torch()
    t = tensor.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if t.layout == torch.sparse_csr:
        a = sp.csr_array(
            (t.values().numpy(), t.col_indices().numpy(), t.crow_indices().numpy()),
            shape=tuple(t.shape),
        )
    elif t.layout == torch.sparse_coo:
        t = t.coalesce()
        a = sp.csr_array((t.values().numpy(), tuple(t.indices().numpy())), shape=tuple(t.shape))
    else:
        a = sp.csr_array(t.numpy())
    return sp.csr_array(a.T)


def _clip_of(module: Any, name: str) -> float | None:
    """The clip of a ReLU-like module: ReLU, ReLU6, Hardtanh(0, m)."""
    nn = _torch().nn
    if isinstance(module, nn.ReLU):
        return None
    if isinstance(module, nn.ReLU6):
        return 6.0
    if module.min_val != 0 or module.max_val <= 0:
        raise UnsupportedError(
            f"module {name} (Hardtanh({module.min_val}, {module.max_val})): only "
            "Hardtanh(0, max_val) with max_val > 0 is a clipped ReLU"
        )
    return float(module.max_val)


def from_torch(module: Any, *, dtype: str | None = None) -> Sequential:
    """A gbdnn model from a PyTorch ``nn.Sequential`` (or one ``nn.Linear``).

    Parameters
    ----------
    module : torch.nn.Module
        ``nn.Linear``, ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh(0, m)``,
        ``nn.Identity``, ``nn.Flatten()`` (identity on gbdnn's 2-D inputs) and
        ``nn.Dropout`` in eval mode, in nested ``nn.Sequential`` containers.
        Weights may be dense or sparse (COO, CSR) and pruned with
        ``torch.nn.utils.prune``; zeros are not stored.
    dtype : {"float32", "float64"}, optional
        Default: float64 when every weight is float64, float32 otherwise.

    Returns
    -------
    Sequential

    Raises
    ------
    UnsupportedError
        For any other module (named in the message), or a Dropout in
        training mode.
    """
    torch = _torch()
    nn = torch.nn
    if not isinstance(module, nn.Module):
        raise ParameterTypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    ops = []
    for name, m in _modules(module, ""):
        if isinstance(m, nn.Linear):
            bias = None if m.bias is None else m.bias.detach().cpu().double().numpy()
            ops.append(FloatOp(_weight(m.weight), bias, name=name))
        elif isinstance(m, (nn.ReLU, nn.ReLU6, nn.Hardtanh)):
            ops.append(FloatOp(max_value=_clip_of(m, name)))
        elif isinstance(m, nn.Dropout):
            if m.training and m.p > 0:
                raise UnsupportedError(
                    f"module {name} (Dropout) is in training mode; call module.eval() first"
                )
        elif isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise UnsupportedError(
                    f"module {name} (Flatten({m.start_dim}, {m.end_dim})): only Flatten(1, -1)"
                    " is supported"
                )
        elif not isinstance(m, nn.Identity):
            raise UnsupportedError(
                f"module {name} ({type(m).__name__}) is not supported; gbdnn imports Linear, "
                "ReLU, ReLU6, Hardtanh(0, m), Identity, Flatten and Dropout (eval)"
            )
    return build_model(ops, dtype, f"module {type(module).__name__}")


def to_torch(model: Sequential, *, layout: str = "dense") -> Any:
    """The model as a PyTorch ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU``.

    Parameters
    ----------
    model : Sequential
    layout : {"dense", "sparse_csr"}, default "dense"
        How the weights are stored; ``"sparse_csr"`` gives torch sparse CSR
        weights (``nn.Linear`` multiplies with them; they cannot be trained).

    Returns
    -------
    torch.nn.Sequential
        In eval mode, weights ``(out, in)`` in the model's dtype; a ReLU with
        a clip becomes ``nn.Hardtanh(0, max_value)``. ``.state_dict()`` gives
        the ``"0.weight"``, ``"0.bias"``, ... tensors. Quantized layers give
        their dequantized weights (inputs are not quantized).
    """
    torch = _torch()
    nn = torch.nn
    if layout not in LAYOUTS:
        raise ParameterError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    dtype = getattr(torch, model.dtype.name)
    modules = []
    for op in float_ops(model):
        if not op.is_linear:
            clip = op.max_value
            modules.append(nn.ReLU() if clip is None else nn.Hardtanh(0.0, clip))
            continue
        n_in, n_out = op.weight.shape
        linear = nn.Linear(n_in, n_out, bias=op.bias is not None, dtype=dtype)
        a = sp.csr_array(op.weight.T).astype(model.dtype.numpy)
        a.sort_indices()
        if layout == "dense":
            weight = torch.from_numpy(a.toarray())
        else:
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
                weight = torch.sparse_csr_tensor(
                    torch.from_numpy(a.indptr.astype(np.int64)),
                    torch.from_numpy(a.indices.astype(np.int64)),
                    torch.from_numpy(a.data),
                    size=a.shape,
                    check_invariants=True,
                )
        linear.weight = nn.Parameter(weight, requires_grad=layout == "dense")
        if op.bias is not None:
            linear.bias = nn.Parameter(torch.from_numpy(op.bias.astype(model.dtype.numpy)))
        modules.append(linear)
    return nn.Sequential(*modules).eval()
