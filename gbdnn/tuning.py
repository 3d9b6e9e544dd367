"""Which kernel computes ``X W``: a cost model, calibrated once per machine.

Three kernels compute the product of a batch ``X`` (b x in) and a weight ``W``
(in x out, ``nnz(W)`` stored):

``"sparse"``  :func:`gbdnn.kernels.plus_times`, Gustavson on sparse rows of X:
              about ``nnz(X) * nnz(W) / in`` multiply-adds.
``"dense"``   :func:`gbdnn.kernels.plus_times_dense`, ``W' X'`` into a full
              result: ``b * nnz(W)`` multiply-adds, fast on dense activations.
``"blas"``    :func:`gbdnn.kernels.plus_times_blas`, NumPy's dense BLAS:
              ``b * in * out`` multiply-adds, fastest per operation.

Each layer picks the cheapest for every batch, from the seconds per
multiply-add of each kernel. The kernels sum in different orders (SuiteSparse
picks its internal method by the operands' formats), so results of different
kernels agree to rounding, not bit for bit. A layer with a fixed ``path``
(``"sparse"`` or ``"dense"``) gives bit-identical results for any batch size
and thread count; BLAS may round differently for different batch shapes.

The default costs were measured on the project's 2-core machines; run
:func:`calibrate` (or ``gbdnn bench calibrate``) to measure this machine's and
cache them in ``$XDG_CACHE_HOME/gbdnn/costs.json`` (``~/.cache`` by default),
where gbdnn reads them from then on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .kernels import padded_width

KERNELS = ("sparse", "dense", "blas")
PATHS = ("auto", *KERNELS)


@dataclass(frozen=True)
class Costs:
    """Wall seconds per multiply-add of each kernel, with every worker busy (as in predict)."""

    sparse: float = 1.33e-9
    dense: float = 1.4e-10
    blas: float = 1.8e-11


def cache_path() -> Path:
    """Where calibrated costs are kept."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "gbdnn" / "costs.json"


@cache
def current_costs() -> Costs:
    """The calibrated costs of this machine if cached, else the defaults."""
    try:
        data = json.loads(cache_path().read_text())
        return Costs(**{k: float(data[k]) for k in ("sparse", "dense", "blas")})
    except (OSError, ValueError, KeyError, TypeError):
        return Costs()


def choose(
    path: str,
    nrows: int,
    nnz_x: int,
    n_in: int,
    n_out: int,
    nnz_w: int,
    costs: Costs | None = None,
    *,
    kernels: tuple[str, ...] = KERNELS,
) -> str:
    """The kernel (``"sparse"``, ``"dense"`` or ``"blas"``) for one product.

    ``kernels`` limits the choice (integer layers have no BLAS kernel).
    """
    if path in kernels:
        return path
    if path != "auto":
        raise ValueError(f"path {path!r} is not one of this layer's kernels {kernels}")
    c = costs or current_costs()
    estimate = {
        "sparse": c.sparse * nnz_x * nnz_w / max(n_in, 1),
        "dense": c.dense * padded_width(nrows) * nnz_w,
        "blas": c.blas * nrows * n_in * n_out,
    }
    return min(kernels, key=estimate.__getitem__)


def _throughput(kernel, inputs, macs: float, threads: int) -> float:
    """Wall seconds per multiply-add with ``threads`` workers busy, as in predict."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(kernel, inputs))  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            list(pool.map(kernel, inputs))
            times.append(time.perf_counter() - start)
    return float(np.median(times)) / (macs * len(inputs))


def calibrate(
    *, save: bool = True, size: int = 4096, rows: int = 128, threads: int | None = None
) -> Costs:
    """Measure each kernel's seconds per multiply-add on this machine.

    The kernels run as :meth:`gbdnn.Sequential.predict` runs them: one batch
    per worker, all workers busy, so BLAS's own threads compete with the
    others as they would.

    Parameters
    ----------
    save : bool, default True
        Cache the result (see :func:`cache_path`) for every later run.
    size, rows : int
        Layer width and rows per worker (``rows x size`` times ``size x size``
        at 10 % density; inputs 10 % dense for the sparse kernel).
    threads : int, optional
        Workers (default: all cores).
    """
    import graphblas as gb

    from . import kernels
    from .runner import available_cores

    threads = threads or available_cores()
    rng = np.random.default_rng(0)
    w = ((rng.random((size, size)) < 0.1) * rng.random((size, size))).astype(np.float32)
    wm = gb.Matrix.from_dense(w, missing_value=0)
    wt = wm.T.new()
    nnz_w = int(np.count_nonzero(w))
    dense, sparse = [], []
    for _ in range(threads):
        x = rng.random((rows, size), dtype=np.float32)
        dense.append(gb.Matrix.ss.import_fullr(x, take_ownership=False))
        sparse.append(
            gb.Matrix.from_dense(np.where(rng.random(x.shape) < 0.1, x, 0), missing_value=0)
        )
    costs = Costs(
        sparse=_throughput(
            lambda x: kernels.plus_times(x, wm), sparse, sparse[0].nvals * nnz_w / size, threads
        ),
        dense=_throughput(lambda x: kernels.plus_times_dense(x, wt), dense, rows * nnz_w, threads),
        blas=_throughput(
            lambda x: kernels.plus_times_blas(x, w), dense, rows * size * size, threads
        ),
    )
    if save:
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(costs)))
        os.replace(tmp, path)
        current_costs.cache_clear()
    return costs
