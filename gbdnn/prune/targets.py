"""What can be pruned: a uniform view of weights in NumPy, SciPy, GraphBLAS,
gbdnn models, lists of these, and ``torch.nn.Module`` objects.

A :class:`Target` exposes the prunable weights as dense float64 arrays in
gbdnn's ``(in, out)`` orientation and writes masks back, either into a copy
(the default) or into the caller's objects (``inplace=True``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import graphblas as gb
import numpy as np
import scipy.sparse as sp

from ..convert import check_finite_matrix, dense_float64
from ..dtypes import check_real_dtype
from ..errors import GbdnnError, ParameterError, ParameterTypeError, ShapeError
from ..layers import Linear
from ..model import Sequential


def _is_torch_module(obj: object) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "named_modules")


@dataclass
class Slot:
    """One prunable weight: where it lives and its dense ``(in, out)`` values."""

    key: int | str  # position (lists, models) or qualified name (torch)
    name: str | None
    dense: np.ndarray


def _dense(w: Any, where: str) -> np.ndarray:
    if isinstance(w, gb.Matrix):
        check_finite_matrix(w, where)
        return w.to_dense(fill_value=0).astype(np.float64)
    if not (sp.issparse(w) or isinstance(w, np.ndarray)):
        raise ParameterTypeError(
            f"{where} must be a numpy array, scipy sparse matrix, graphblas.Matrix, "
            f"gbdnn.Sequential or torch.nn.Module, not {type(w).__name__}"
        )
    check_real_dtype(w.dtype, where)
    return dense_float64(w, where)


class Target:
    """The prunable weights of a pruning target.

    Parameters
    ----------
    obj : array, sparse matrix, graphblas.Matrix, list of these, Sequential or torch Module
    exclude : iterable of int or str
        Layers left alone: positions among the prunable weights, or names
        (``Linear.name``; a torch module's qualified name).
    """

    def __init__(self, obj: Any, exclude: Iterable[int | str] = ()) -> None:
        self.obj = obj
        self.exclude = set(exclude)
        if isinstance(obj, Sequential):
            self.kind = "model"
            items = [
                (i, layer.name, layer.weight)
                for i, layer in enumerate(obj)
                if isinstance(layer, Linear)
            ]
        elif _is_torch_module(obj):
            import torch

            self.kind = "torch"
            items = [
                (name, name, m.weight.detach().cpu().numpy().T)
                for name, m in obj.named_modules()
                if isinstance(m, torch.nn.Linear)
            ]
        elif isinstance(obj, (list, tuple)):
            self.kind = "list"
            items = [(i, None, w) for i, w in enumerate(obj)]
        else:
            self.kind = "single"
            items = [(0, None, obj)]
        positions = {key: pos for pos, (key, _, _) in enumerate(items)}
        names = {name for _, name, _ in items if name is not None}
        unknown = {
            e
            for e in self.exclude
            if e not in names and not (isinstance(e, int) and 0 <= e < len(items))
        }
        if unknown:
            raise ParameterError(f"exclude names no layer: {sorted(map(str, unknown))}")
        self.slots = [
            Slot(key, name, _dense(w, f"weight {key}"))
            for pos, (key, name, w) in enumerate(items)
            if pos not in self.exclude and name not in self.exclude
        ]
        if not self.slots:
            raise GbdnnError("nothing to prune: no weights, or all excluded")
        self._positions = positions

    @property
    def dense(self) -> list[np.ndarray]:
        """The prunable weights, dense float64 ``(in, out)``."""
        return [s.dense for s in self.slots]

    def apply(self, new_weights: list[np.ndarray], *, inplace: bool = False) -> Any:
        """Write pruned weights back, as true sparse matrices unless ``inplace``.

        ``new_weights`` are dense ``(in, out)`` arrays, zero where pruned (a
        compressed-sensing solver may also have changed the kept values).
        """
        if len(new_weights) != len(self.slots):
            raise ParameterError(f"expected {len(self.slots)} weights, got {len(new_weights)}")
        for slot, w in zip(self.slots, new_weights, strict=True):
            if w.shape != slot.dense.shape:
                raise ShapeError(f"weight {slot.key}: shape {w.shape}, fitted {slot.dense.shape}")
        if self.kind == "torch":
            return self._apply_torch(new_weights, inplace)
        if self.kind == "model":
            return self._apply_model(new_weights, inplace)
        out = list(self.obj) if self.kind == "list" else [self.obj]
        for slot, w in zip(self.slots, new_weights, strict=True):
            out[slot.key] = _write(out[slot.key], w, inplace)
        if self.kind == "single":
            return out[0]
        if inplace and isinstance(self.obj, list):
            return self.obj
        return type(self.obj)(out)

    def _apply_model(self, new_weights: list[np.ndarray], inplace: bool) -> Sequential:
        layers = list(self.obj)
        for slot, w in zip(self.slots, new_weights, strict=True):
            old = layers[slot.key]
            if inplace:
                old.set_weight(sp.csr_array(w))
            else:
                layers[slot.key] = Linear(
                    sp.csr_array(w), old.bias, dtype=old.dtype.name, name=old.name
                )
        return self.obj if inplace else Sequential(layers)

    def _apply_torch(self, new_weights: list[np.ndarray], inplace: bool) -> Any:
        import torch
        from torch.nn.utils import prune as torch_prune

        module = self.obj if inplace else copy.deepcopy(self.obj)
        modules = dict(module.named_modules())
        for slot, w in zip(self.slots, new_weights, strict=True):
            linear = modules[slot.key]
            weight = torch.as_tensor(w.T, dtype=linear.weight.dtype)
            mask = torch.as_tensor(w.T != 0)
            if torch_prune.is_pruned(linear) and hasattr(linear, "weight_orig"):
                torch_prune.remove(linear, "weight")
            with torch.no_grad():
                linear.weight.copy_(weight)
            torch_prune.custom_from_mask(linear, "weight", mask)
        return module


def _write(w: Any, new: np.ndarray, inplace: bool) -> Any:
    """``new`` in the family of ``w``: CSR for arrays, GraphBLAS for GraphBLAS."""
    if not inplace:
        if isinstance(w, gb.Matrix):
            return gb.Matrix.from_dense(new.astype(w.dtype.np_type), missing_value=0)
        out = sp.csr_array(
            new.astype(w.dtype if np.issubdtype(w.dtype, np.floating) else np.float64)
        )
        return sp.csr_matrix(out) if isinstance(w, sp.spmatrix) else out
    if isinstance(w, gb.Matrix):
        w << gb.Matrix.from_dense(new.astype(w.dtype.np_type), missing_value=0)
        return w
    if isinstance(w, np.ndarray):
        w[...] = new
        return w
    if sp.issparse(w) and w.format in ("csr", "csc", "coo"):
        coo = w.tocoo()
        w.data[...] = new[coo.row, coo.col]
        w.eliminate_zeros()
        return w
    raise ParameterTypeError(
        f"inplace=True is not supported for scipy {w.format} matrices; use CSR"
    )


def apply_masks(
    target: Any,
    masks: list[np.ndarray],
    exclude: Iterable[int | str] = (),
    *,
    inplace: bool = False,
) -> Any:
    """Zero the weights of ``target`` where ``masks`` (True = keep) are False."""
    t = Target(target, exclude)
    if [w.shape for w in t.dense] != [m.shape for m in masks]:
        raise ShapeError("target's weight shapes differ from those the masks were fitted on")
    return t.apply([w * m for w, m in zip(t.dense, masks, strict=True)], inplace=inplace)
