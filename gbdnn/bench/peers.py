"""The implementations timed by the harness: gbdnn and the libraries users would pick.

Each implementation is a function ``prepare(w, x, dtype) -> Prepared``: untimed
setup that returns the timed callable, a function turning its output into a
dense NumPy array (for the correctness check after timing), the bytes its
weight format holds at rest (or a function asked after timing, for gbdnn, whose
layers keep the copies of ``W`` their kernels built) and, for gbdnn, the kernel
its layer ran (asked after timing). ``w`` is the dense float64 weight
``(in, out)``, ``x`` the dense float64 input ``(batch, in)``; the layer
computed is ``Y = X W`` (``dtype`` "int8" means 8-bit weights with 8-bit
activations and int32 accumulation).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from importlib.util import find_spec
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ..convert import to_matrix
from ..dtypes import value_type
from ..layers import Linear, Product
from ..model import Sequential
from ..quant import ActivationQuantizer, UniformQuantizer, quantize_model

#: The kernels timed alone (FP32) against which the automatic choice is judged.
KERNEL_CHECKS = ("sparse", "dense", "blas")
#: gbdnn's own implementations: judged against the peers, not peers themselves.
OURS = ("gbdnn", "gbdnn int8")
#: Peers whose work does not depend on the weight sparsity (every zero is multiplied):
#: their crossovers are taken against their median time over all sparsities.
DENSE_PEERS = ("NumPy dense", "NumPy dense FP32", "PyTorch dense", "PyTorch dynamic int8 (dense)")
#: Implementations on a dense BLAS (a thread pool that spins after its calls).
ON_BLAS = ("gbdnn blas kernel", *DENSE_PEERS)


class Prepared(NamedTuple):
    """An implementation made ready to time at one grid point."""

    run: Callable[[], object]
    to_dense: Callable[[object], np.ndarray]
    nbytes: int | Callable[[], int]
    kernel: Callable[[], str] | None = None  # gbdnn's: the kernel(s) its layer ran


def _kernel(model: Sequential) -> Callable[[], str]:
    """The kernel(s) the product layer of ``model`` ran, "+"-joined, asked after timing:
    its ``path``, or on the automatic path the kernels it keeps for the batches it ran."""
    (layer,) = [layer for layer in model if isinstance(layer, Product)]
    return lambda: (
        layer.path if layer.path != "auto" else "+".join(sorted(set(layer.picked_kernels.values())))
    )


def _float(dtype: str) -> np.dtype:
    return np.dtype(np.float64 if dtype == "float64" else np.float32)


def gbdnn_float(w, x, dtype, path: str = "auto") -> Prepared:
    """gbdnn on a GraphBLAS input, result left in GraphBLAS (compute only).

    ``path`` forces one kernel; the default lets the layer choose.
    """
    vtype = value_type(dtype)
    model = Sequential([Linear(w, dtype=dtype, path=path)])
    xm = to_matrix(x.astype(vtype.numpy), vtype, "X")
    return Prepared(
        lambda: model.predict(xm, output="graphblas"),
        lambda y: y.to_dense(fill_value=0, dtype=vtype.numpy),
        lambda: model.weight_bytes,
        _kernel(model),
    )


def gbdnn_int8(w, x, dtype) -> Prepared:
    """gbdnn QuantizedLinear: int8 weights and activations, exact INT32 products."""
    model = quantize_model(
        Sequential([Linear(w)]),
        x[: min(len(x), 256)],
        UniformQuantizer(8, per_channel=True),
        activations=ActivationQuantizer(8),
    )
    xm = to_matrix(x.astype(np.float32), value_type("float32"), "X")
    return Prepared(
        lambda: model.predict(xm, output="graphblas"),
        lambda y: y.to_dense(fill_value=0, dtype=np.float32),
        lambda: model.weight_bytes,
        _kernel(model),
    )


def numpy_dense(w, x, dtype) -> Prepared:
    ft = _float(dtype)
    wd, xd = w.astype(ft), x.astype(ft)
    return Prepared(lambda: xd @ wd, np.asarray, wd.nbytes)


def scipy_csr(w, x, dtype) -> Prepared:
    ft = _float(dtype)
    ws = sp.csr_array(w.astype(ft))
    xs = x.astype(ft)
    if np.count_nonzero(xs) <= 0.5 * xs.size:  # ReLU-like inputs go in sparse
        xs = sp.csr_array(xs)
    nbytes = ws.data.nbytes + ws.indices.nbytes + ws.indptr.nbytes
    return Prepared(
        lambda: xs @ ws, lambda y: y.toarray() if sp.issparse(y) else np.asarray(y), nbytes
    )


def torch_dense(w, x, dtype) -> Prepared:
    import torch

    ft = torch.float64 if dtype == "float64" else torch.float32
    wt, xt = torch.from_numpy(w).to(ft), torch.from_numpy(x).to(ft)

    def run():
        with torch.no_grad():
            return xt @ wt

    return Prepared(run, lambda y: y.numpy(), wt.numel() * wt.element_size())


def torch_sparse_csr(w, x, dtype) -> Prepared:
    import torch

    ft = torch.float64 if dtype == "float64" else torch.float32
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        wt = torch.from_numpy(np.ascontiguousarray(w.T)).to(ft).to_sparse_csr()  # W' (out, in)
    xt = torch.from_numpy(np.ascontiguousarray(x.T)).to(ft)  # X' (in, batch)

    def run():
        with torch.no_grad():
            return torch.sparse.mm(wt, xt)  # Y' = W' X'

    nbytes = sum(
        t.numel() * t.element_size() for t in (wt.values(), wt.col_indices(), wt.crow_indices())
    )
    return Prepared(run, lambda y: y.numpy().T, nbytes)


def torch_int8_dynamic(w, x, dtype) -> Prepared:
    """PyTorch's dynamic int8 quantized Linear: the dense int8 peer."""
    import torch

    linear = torch.nn.Linear(w.shape[0], w.shape[1], bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T.astype(np.float32)))
    with warnings.catch_warnings():  # quantized tensor creation is deprecated, still served
        warnings.simplefilter("ignore", UserWarning)
        q = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
        )
    xt = torch.from_numpy(x.astype(np.float32))

    def run():
        with torch.no_grad():
            return q(xt)

    return Prepared(run, lambda y: y.numpy(), w.size)  # one byte per weight


def implementations(dtype: str) -> dict[str, Callable]:
    """The implementations available for ``dtype`` on this machine."""
    has_torch = find_spec("torch") is not None
    if dtype == "int8":
        impls = {"gbdnn int8": gbdnn_int8, "NumPy dense FP32": numpy_dense}
        if has_torch:
            impls["PyTorch dynamic int8 (dense)"] = torch_int8_dynamic
        return _blas_last(impls)
    impls = {"gbdnn": gbdnn_float, "SciPy CSR": scipy_csr, "NumPy dense": numpy_dense}
    if dtype == "float32":  # each kernel alone, to check gbdnn's automatic choice
        for kernel in KERNEL_CHECKS:
            impls[f"gbdnn {kernel} kernel"] = partial(gbdnn_float, path=kernel)
    if has_torch:
        impls["PyTorch dense"] = torch_dense
        impls["PyTorch sparse CSR"] = torch_sparse_csr
    return _blas_last(impls)


def _blas_last(impls: dict[str, Callable]) -> dict[str, Callable]:
    """``impls``, those on BLAS last (in turn they are timed in this order): their
    threads spin after their calls, and each slice waits for that
    (:func:`gbdnn.tuning.settle`, ~130 ms after OpenBLAS), so the sparse
    products compared most closely are timed closest together."""
    return dict(sorted(impls.items(), key=lambda item: item[0] in ON_BLAS))


def blas_name() -> str:
    """The BLAS behind NumPy."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except (KeyError, TypeError, AttributeError, ValueError):
        return "unknown"


def conversion_seconds(x: np.ndarray, dtype: str) -> float:
    """Seconds gbdnn spends converting ``x`` from NumPy and a result back."""
    import time

    vtype = value_type("float32" if dtype == "int8" else dtype)
    start = time.perf_counter()
    m = to_matrix(x.astype(vtype.numpy), vtype, "X")
    m.to_dense(fill_value=0, dtype=vtype.numpy)
    return time.perf_counter() - start
