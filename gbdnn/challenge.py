"""The MIT/IEEE/Amazon Sparse DNN Graph Challenge on gbdnn.

Inference as the challenge defines it, for layers ``l = 1 .. L``::

    Y_{l+1} = min(max(Y_l W_l + b, 0), YMAX),   YMAX = 32
    categories = rows of Y_L with any nonzero entry

with ``b`` = -0.3, -0.35, -0.4, -0.45 for 1024, 4096, 16384, 65536 neurons.
The headline metric is ``edges/s = n_inputs * sum_l nnz(W_l) / time``.

This module builds the challenge model (:func:`challenge_model`), generates
networks and inputs of the challenge's shape so the workload runs with no
download (:func:`radixnet`, :func:`sparse_inputs`), computes an independent
SciPy reference (:func:`reference_categories`) and runs and checks the whole
thing (:func:`run`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import graphblas as gb
import numpy as np
import scipy.sparse as sp
from graphblas import Matrix, monoid

from .dtypes import value_type
from .errors import ParameterError
from .layers import Linear, ReLU
from .model import Sequential
from .runner import available_cores

#: Bias of each official network size.
CHALLENGE_BIAS = {1024: -0.3, 4096: -0.35, 16384: -0.4, 65536: -0.45}
#: Clip of the activations.
YMAX = 32.0
#: Entries per row and per column of every challenge layer.
FAN = 32
#: Value of every weight.
WEIGHT = 1.0 / 16


def challenge_bias(neurons: int) -> float:
    """The challenge's bias for a network of ``neurons`` neurons."""
    try:
        return CHALLENGE_BIAS[neurons]
    except KeyError:
        sizes = ", ".join(map(str, CHALLENGE_BIAS))
        raise ParameterError(
            f"neurons must be one of {sizes} for the challenge bias, got {neurons}"
        ) from None


def radixnet(
    neurons: int = 1024, layers: int = 120, *, seed: int = 0, dtype: str = "float32"
) -> list[Matrix]:
    """Generate weight layers of the challenge's shape, RadiX-Net style.

    Layer ``l`` connects neuron ``i`` to neurons ``i + t * s_l (mod N)`` for
    ``t = 0 .. 31``, with the stride ``s_l`` cycling through the place values
    ``1, 32, 32**2, ...`` of a radix-32 numeral system (the last one capped at
    ``N / 32`` so that the 32 offsets stay distinct); rows and columns are
    then relabelled by random permutations chained from layer to layer
    (``W_l = P_l C_l P_{l+1}'``), as the official networks are permuted.

    What it reproduces of the official networks (Kepner & Robinett,
    "RadiX-Net: Structured Sparse Matrices for Deep Neural Networks", 2019):
    ``N x N`` layers with exactly 32 entries in every row and column, every
    weight 1/16, any number of layers, and the RadiX-Net property that every
    input reaches every output through any ``ceil(log_32 N)`` consecutive
    layers. What it does not: the official files' exact edge positions (their
    mixed radices and permutations differ), so its categories are not the
    official truth and must be checked against a reference computed on the
    same network (:func:`reference_categories`).

    Parameters
    ----------
    neurons : int, default 1024
        Width N; a multiple of 32, at least 32.
    layers : int, default 120
    seed : int, default 0
        Seed of the permutations.
    dtype : {"float32", "float64"}, default "float32"

    Returns
    -------
    list of graphblas.Matrix
    """
    if neurons < FAN or neurons % FAN:
        raise ParameterError(
            f"neurons must be a multiple of {FAN} and at least {FAN}, got {neurons}"
        )
    if layers < 1:
        raise ParameterError(f"layers must be at least 1, got {layers}")
    vtype = value_type(dtype)
    rng = np.random.default_rng(seed)
    digits = max(1, math.ceil(math.log(neurons, FAN) - 1e-9))
    strides = [min(FAN**d, neurons // FAN) for d in range(digits)]
    source = np.repeat(np.arange(neurons), FAN)
    offsets = np.tile(np.arange(FAN), neurons)
    perm = rng.permutation(neurons)
    weights = []
    for layer in range(layers):
        target = (source + offsets * strides[layer % digits]) % neurons
        next_perm = rng.permutation(neurons)
        weights.append(
            Matrix.from_coo(
                perm[source],
                next_perm[target],
                vtype.numpy.type(WEIGHT),
                nrows=neurons,
                ncols=neurons,
                dtype=vtype.graphblas,
            )
        )
        perm = next_perm
    return weights


def sparse_inputs(
    nrows: int,
    neurons: int = 1024,
    *,
    density: float = 0.1,
    strong_density: float = 0.5,
    strong_fraction: float = 0.03,
    seed: int = 0,
    dtype: str = "float32",
) -> Matrix:
    """Random binary input rows for :func:`radixnet` networks.

    Each row sets ``density`` of its pixels (default 10 %, the density of the
    challenge's MNIST images); a ``strong_fraction`` of the rows sets
    ``strong_density`` instead. In a challenge network a row survives all
    layers only if enough of each neuron's 32 inputs are active (about 30 %
    of the pixels for 1024 neurons), so the faint rows die out, the strong
    ones become categories (about 3 %, like the official data), and no row
    sits near the threshold where the last bit of rounding would decide.
    """
    for name, value in (("density", density), ("strong_density", strong_density)):
        if not 0 < value <= 1:
            raise ParameterError(f"{name} must be in (0, 1], got {value}")
    if not 0 <= strong_fraction <= 1:
        raise ParameterError(f"strong_fraction must be in [0, 1], got {strong_fraction}")
    vtype = value_type(dtype)
    rng = np.random.default_rng(seed)
    row_density = np.where(rng.random((nrows, 1)) < strong_fraction, strong_density, density)
    rows, cols = np.nonzero(rng.random((nrows, neurons)) < row_density)
    return Matrix.from_coo(
        rows, cols, vtype.numpy.type(1), nrows=nrows, ncols=neurons, dtype=vtype.graphblas
    )


def tile_rows(x: Matrix, times: int) -> Matrix:
    """Stack ``times`` copies of ``x`` vertically."""
    if times < 1:
        raise ParameterError(f"tile must be at least 1, got {times}")
    return x if times == 1 else gb.ss.concat([[x]] * times)


def challenge_model(weights: list[Matrix], bias: float, ymax: float = YMAX) -> Sequential:
    """The challenge network: ``Linear(W_l, b)`` and ``ReLU(max_value=ymax)`` per layer."""
    layers = []
    for w in weights:
        layers += [Linear(w, bias, dtype=w.dtype.np_type.name), ReLU(max_value=ymax)]
    return Sequential(layers)


def categories(y: Matrix) -> np.ndarray:
    """Rows of ``y`` with any nonzero entry (0-based, sorted)."""
    # r(i) = OR_j (Y(i,j) != 0)
    nonzero = gb.select.valuene(y, 0).new()
    return nonzero.reduce_rowwise(monoid.lor).new().to_coo()[0].astype(np.int64)


def reference_categories(
    weights: list[Matrix], bias: float, x: Matrix, ymax: float = YMAX
) -> np.ndarray:
    """Categories computed independently of gbdnn's engine, with SciPy in FP64.

    Each layer is ``Y = min(max(Y W + b, 0), ymax)`` in full generality
    (``b`` reaching every entry), on SciPy CSR matrices.
    """
    y = gb.io.to_scipy_sparse(x, format="csr").astype(np.float64)
    for w in weights:
        z = (y @ gb.io.to_scipy_sparse(w, format="csr").astype(np.float64)).tocsr()
        if bias > 0:  # a missing entry becomes max(b, 0) = b
            z = sp.csr_array(z.toarray() + bias)
        else:  # a missing entry becomes max(b, 0) = 0: add b to stored entries
            z.data += bias
        np.clip(z.data, 0, ymax, out=z.data)
        z.eliminate_zeros()
        y = z
    return np.flatnonzero(np.diff(y.indptr)).astype(np.int64)


@dataclass
class ChallengeResult:
    """Outcome of one challenge run."""

    neurons: int
    layers: int
    inputs: int
    nnz: int
    threads: int
    seconds: float
    edges_per_second: float
    categories: np.ndarray = field(repr=False)
    expected: np.ndarray | None = field(repr=False, default=None)
    checked_against: str = "nothing"

    @property
    def correct(self) -> bool | None:
        """Whether the categories equal the expected ones (None if unchecked)."""
        if self.expected is None:
            return None
        return bool(np.array_equal(self.categories, self.expected))

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        out = asdict(self)
        out["categories"] = int(self.categories.size)
        out["expected"] = None if self.expected is None else int(self.expected.size)
        out["correct"] = self.correct
        return out


def run(
    model: Sequential,
    x: Matrix,
    *,
    expected: np.ndarray | None = None,
    checked_against: str = "nothing",
    threads: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> ChallengeResult:
    """Time inference of ``x`` through ``model`` and compare its categories.

    The time covers inference only (input already in memory), as the
    challenge's metric requires.
    """
    threads = available_cores() if threads is None else threads
    start = time.perf_counter()
    y = model.predict(
        x, threads=threads, batch_size=batch_size, output="graphblas", progress=progress
    )
    seconds = time.perf_counter() - start
    nnz = model.nnz
    return ChallengeResult(
        neurons=model.in_features,
        layers=sum(isinstance(layer, Linear) for layer in model),
        inputs=x.nrows,
        nnz=nnz,
        threads=threads,
        seconds=seconds,
        edges_per_second=x.nrows * nnz / seconds,
        categories=categories(y),
        expected=expected,
        checked_against=checked_against,
    )
