"""Compressed-sensing pruning (CSP).

Zhen et al., "Sparsification via Compressed Sensing for Automatic Speech
Recognition" (ICASSP 2021), recast pruning as sparse recovery. For a layer
with weight ``W`` (in x out) and calibration activations ``A`` (n x in) that
reach it, find ``V`` under a sparsity budget minimising the output error::

    min_V || T - A V ||_F^2,    T = A W  (or the dense model's output)

``A`` is the sensing matrix and each output column of ``W`` a signal to
recover. The solvers work on the normal equations, ``G = A'A`` and
``B = A'T``, so their cost does not grow with the number of calibration rows
after ``G`` is formed (``O(n in^2)``):

``"iht"`` -- iterative hard thresholding (Blumensath & Davies 2009)
    ``V <- H(V - (G V - B) / L)``, ``L`` the largest eigenvalue of ``G``,
    ``H`` the projection onto the budget, warm-started from the magnitude
    mask. Each iteration costs ``O(in^2 out)``. With step ``1/L`` the error
    never increases, so the result is never worse than magnitude pruning on
    the calibration data. The default, for any layer size.
``"omp"`` -- orthogonal matching pursuit
    Greedily adds the weight most correlated with the residual and refits its
    column: ``O(K k^3)`` for ``K`` kept weights, ``k`` per column. Strong on
    small layers (``in * out`` up to about 10^5), slow beyond.
``"l1"`` -- L1 relaxation + refit ("debiasing")
    FISTA on ``1/2 ||T - A V||^2 + lambda ||V||_1``, ``lambda`` found by
    bisection so that the support fits the budget, then the budget's
    projection and a least-squares refit on the support: ``O(b i in^2 out)``
    for ``b`` bisection steps of ``i`` iterations. Smooth supports; medium
    layers.

Every solver ends with a least-squares refit of the kept weights on their
support, which can only lower the error, and its result is compared on the
calibration data with the refitted magnitude support: the better one is kept,
so CSP never does worse than magnitude pruning on the data it sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..convert import dense_float64
from ..errors import ParameterError, ParameterTypeError, ShapeError
from ..layers import Linear, ReLU
from ..model import Sequential
from .masks import check_amount, check_n_m, keep_largest, keep_n_of_m, keep_per_column
from .targets import Target

SOLVERS = ("iht", "omp", "l1")
BUDGETS = ("layer", "column")
_RIDGE = 1e-10  # relative ridge keeping the refit well posed when G is singular


def _objective(g: np.ndarray, b: np.ndarray, v: np.ndarray) -> float:
    """``1/2 tr(V'GV) - tr(V'B)``: the output error up to a constant, halved."""
    return 0.5 * float(np.sum(v * (g @ v))) - float(np.sum(v * b))


def refit(g: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Least squares on the support: ``G[S,S] v_S = B[S, j]`` for every column."""
    v = np.zeros(b.shape)
    ridge = _RIDGE * max(np.trace(g) / max(g.shape[0], 1), 1e-300)
    for j in range(b.shape[1]):
        s = np.flatnonzero(mask[:, j])
        if s.size:
            gs = g[np.ix_(s, s)] + ridge * np.eye(s.size)
            v[s, j] = np.linalg.solve(gs, b[s, j])
    return v


def _project_fn(amount: float | None, budget: str, n_m: tuple[int, int] | None):
    """The projection onto the sparsity budget: scores -> keep-mask."""
    if n_m is not None:
        return lambda scores: keep_n_of_m(scores, *n_m)
    if budget == "column":
        return lambda scores: keep_per_column(scores, amount)
    return lambda scores: keep_largest([scores], amount)[0]


def iht(g, b, w, project, *, max_iter=200, tol=1e-7):
    """Iterative hard thresholding from the magnitude mask of ``w``; returns the mask."""
    step = 1.0 / max(np.linalg.eigvalsh(g)[-1], 1e-300)
    mask = project(np.abs(w))
    v = refit(g, b, mask)
    best = _objective(g, b, v)
    for _ in range(max_iter):
        u = v - step * (g @ v - b)
        new_mask = project(np.abs(u))
        new_v = u * new_mask
        new_obj = _objective(g, b, new_v)
        if new_obj > best:  # cannot happen with step 1/L but for rounding; stop there
            break
        done = np.linalg.norm(new_v - v) <= tol * max(np.linalg.norm(v), 1e-300)
        v, mask, best = new_v, new_mask, new_obj
        if done:
            break
    return mask


def omp(g, b, *, capacity):
    """Orthogonal matching pursuit under ``capacity(mask, i, j)``; returns the mask.

    Inputs that never fire on the calibration data (``G[i, i] = 0``) are never chosen.
    """
    n_out = b.shape[1]
    live = np.diag(g) > 0
    diag = np.sqrt(np.where(live, np.diag(g), 1.0))
    mask = np.zeros(b.shape, dtype=bool)
    v = np.zeros(b.shape)
    while True:
        corr = np.abs(b - g @ v) / diag[:, None]
        corr[mask] = -1.0
        corr[~live, :] = -1.0
        order = np.argsort(-corr, axis=None, kind="stable")
        for flat in order:
            i, j = divmod(int(flat), n_out)
            if corr[i, j] < 0:
                return mask
            if capacity(mask, i, j):
                break
        else:
            return mask
        mask[i, j] = True
        s = np.flatnonzero(mask[:, j])
        v[:, j] = 0
        v[s, j] = np.linalg.lstsq(g[np.ix_(s, s)], b[s, j], rcond=None)[0]


def l1(g, b, w, project, *, max_iter=300, bisections=20):
    """FISTA on the L1 relaxation with lambda bisected to fit the budget; returns the mask."""
    lip = max(np.linalg.eigvalsh(g)[-1], 1e-300)
    target = int(project(np.abs(w)).sum())

    def fista(lam):
        v = y = np.zeros(b.shape)
        t = 1.0
        for _ in range(max_iter):
            u = y - (g @ y - b) / lip
            new_v = np.sign(u) * np.maximum(np.abs(u) - lam / lip, 0)
            new_t = (1 + np.sqrt(1 + 4 * t * t)) / 2
            y = new_v + (t - 1) / new_t * (new_v - v)
            v, t = new_v, new_t
        return v

    lo, hi = 0.0, float(np.abs(b).max())
    best = fista(hi / 2)
    for _ in range(bisections):  # the largest support that fits the budget
        lam = (lo + hi) / 2
        v = fista(lam)
        if np.count_nonzero(v) > target:
            lo = lam
        else:
            hi, best = lam, v
    # weights the relaxation dropped are topped up by magnitude of the dense solution
    scores = np.abs(best) + (best == 0) * np.abs(w) * 1e-12
    return project(scores)


class CSPPruner:
    """Compressed-sensing pruning of one layer or a whole model.

    Parameters
    ----------
    amount : float, optional
        Fraction of zeros after pruning, in ``[0, 1)``. Required unless ``n_m``.
    budget : {"layer", "column"}, default "layer"
        ``"layer"``: at most ``(1 - amount) * in * out`` weights anywhere in the
        layer; ``"column"``: the same number in every output column.
    n_m : (int, int), optional
        An N:M budget along the input dimension instead.
    solver : {"iht", "omp", "l1"}, default "iht"
        See the module documentation for costs and when to use each.
    max_iter : int, default 200
        Iterations of IHT (and of each FISTA run).
    exclude : iterable of int or str
        Layers to leave dense.
    progress : bool, default False
        Show a progress bar over the layers of a model.

    Attributes
    ----------
    weights_ : list of numpy.ndarray
        The pruned, refitted weights ``(in, out)``.
    masks_ : list of numpy.ndarray of bool
        Their supports.
    errors_ : list of float
        Relative output error ``||T - A V|| / ||T||`` of each layer on the
        calibration data.
    """

    def __init__(
        self,
        amount: float | None = None,
        *,
        budget: str = "layer",
        n_m: tuple[int, int] | None = None,
        solver: str = "iht",
        max_iter: int = 200,
        exclude: Iterable[int | str] = (),
        progress: bool = False,
    ) -> None:
        if solver not in SOLVERS:
            raise ParameterError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        if budget not in BUDGETS:
            raise ParameterError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
        if n_m is not None:
            if amount is not None:
                raise ParameterError("n_m fixes the sparsity at 1 - N/M; do not give amount")
            self.n_m = check_n_m(n_m)
        elif amount is None:
            raise ParameterError("amount is required unless n_m is given")
        else:
            self.n_m = None
        self.amount = None if amount is None else check_amount(amount)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ParameterError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.budget, self.solver, self.max_iter = budget, solver, max_iter
        self.exclude = tuple(exclude)
        self.progress = bool(progress)

    # -- one layer ---------------------------------------------------------
    def solve(self, w: np.ndarray, a: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
        """Prune one dense weight ``w`` (in x out) given sensing rows ``a`` (n x in).

        ``t`` is the output to match (default ``a @ w``). Returns the pruned
        and refitted weight.
        """
        g = a.T @ a
        b = g @ w if t is None else a.T @ t
        project = _project_fn(self.amount, self.budget, self.n_m)
        if self.solver == "iht":
            mask = iht(g, b, w, project, max_iter=self.max_iter)
        elif self.solver == "l1":
            mask = l1(g, b, w, project, max_iter=self.max_iter)
        else:
            mask = omp(g, b, capacity=self._capacity(w.shape))
        # keep whichever support fits the calibration data better after the refit:
        # the solver's or the magnitude one (so CSP is never worse than magnitude there)
        candidates = [refit(g, b, mask), refit(g, b, project(np.abs(w)))]
        return min(candidates, key=lambda v: _objective(g, b, v))

    def _capacity(self, shape: tuple[int, int]) -> Callable[[np.ndarray, int, int], bool]:
        """For OMP: may weight (i, j) join the support?"""
        n_in, n_out = shape
        if self.n_m is not None:
            n, m = self.n_m
            return lambda mask, i, j: mask[i - i % m : i - i % m + m, j].sum() < n
        if self.budget == "column":
            k = n_in - round(self.amount * n_in)
            return lambda mask, i, j: mask[:, j].sum() < k
        k_total = n_in * n_out - round(self.amount * n_in * n_out)
        return lambda mask, i, j: mask.sum() < k_total

    # -- life cycle ---------------------------------------------------------
    def fit(self, target: Any, x: Any) -> CSPPruner:
        """Solve for the pruned weights of ``target``.

        Parameters
        ----------
        target : numpy.ndarray, scipy sparse, graphblas.Matrix, or gbdnn.Sequential
            One weight ``(in, out)``, or a model: then the layers are pruned in
            order, each one's calibration input computed through the layers
            already pruned and its target output through the dense ones, so
            errors do not compound.
        x : array_like
            Calibration rows ``(n, in)`` reaching the first (or only) layer.
        """
        t = Target(target, self.exclude)
        x = dense_float64(x, "calibration data")
        if t.kind == "model":
            self.weights_, self.errors_ = self._fit_model(target, t, x)
        elif t.kind == "single":
            w = t.dense[0]
            if x.shape[1] != w.shape[0]:
                raise ShapeError(
                    f"calibration data has {x.shape[1]} columns, the weight {w.shape[0]} rows"
                )
            v = self.solve(w, x)
            self.weights_, self.errors_ = [v], [_relative_error(x @ w, x @ v)]
        else:
            raise ParameterTypeError("CSP prunes one weight matrix or a gbdnn.Sequential")
        self.masks_ = [v != 0 for v in self.weights_]
        return self

    def _fit_model(self, model: Sequential, t: Target, x: np.ndarray):
        if x.shape[1] != model.in_features:
            raise ShapeError(
                f"calibration data has {x.shape[1]} columns but the model "
                f"expects {model.in_features}"
            )
        pruned = {slot.key: slot for slot in t.slots}
        dense_in, pruned_in = x, x
        weights, errors = [], []
        from tqdm.auto import tqdm

        layers = tqdm(model, desc="CSP pruning", unit="layer", disable=not self.progress)
        for k, layer in enumerate(layers):
            if isinstance(layer, ReLU):
                dense_in, pruned_in = _relu(dense_in, layer), _relu(pruned_in, layer)
                continue
            assert isinstance(layer, Linear)
            w = layer.weight.to_dense(fill_value=0).astype(np.float64)
            bias = 0 if layer.bias is None else layer.bias.astype(np.float64)
            target_out = dense_in @ w
            v = self.solve(w, pruned_in, target_out) if k in pruned else w
            if k in pruned:
                weights.append(v)
                errors.append(_relative_error(target_out, pruned_in @ v))
            dense_in, pruned_in = target_out + bias, pruned_in @ v + bias
        return weights, errors

    def transform(self, target: Any, *, inplace: bool = False) -> Any:
        """Write the solved weights into ``target`` (a copy unless ``inplace``)."""
        if not hasattr(self, "weights_"):
            raise RuntimeError("call fit before transform")
        return Target(target, self.exclude).apply(self.weights_, inplace=inplace)

    def fit_transform(self, target: Any, x: Any, *, inplace: bool = False) -> Any:
        """:meth:`fit`, then :meth:`transform`."""
        return self.fit(target, x).transform(target, inplace=inplace)


def _relu(a: np.ndarray, layer: ReLU) -> np.ndarray:
    out = np.maximum(a, 0)
    return out if layer.max_value is None else np.minimum(out, layer.max_value)


def _relative_error(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(t - y) / max(np.linalg.norm(t), 1e-300))


def csp_prune(target: Any, x: Any, amount: float | None = None, **kwargs: Any) -> Any:
    """Compressed-sensing pruning in one call; see :class:`CSPPruner`."""
    inplace = kwargs.pop("inplace", False)
    return CSPPruner(amount, **kwargs).fit_transform(target, x, inplace=inplace)
