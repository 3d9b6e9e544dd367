"""Pruning that produces real sparse models (``gbdnn.prune``).

* :class:`MagnitudePruner` / :func:`magnitude_prune`: unstructured (per layer
  or global), N:M and block magnitude pruning;
* :class:`CSPPruner` / :func:`csp_prune`: compressed-sensing pruning, one layer
  or a whole model, with IHT, OMP or L1 + refit solvers;
* :class:`CubicSchedule`, :class:`LinearSchedule`, :class:`ConstantSchedule`
  and :class:`PruningScheduler` for gradual pruning inside a training loop.

Targets may be NumPy arrays, SciPy sparse matrices, ``graphblas.Matrix``
objects, lists of these, gbdnn models, or ``torch.nn.Module`` objects (their
``nn.Linear`` layers, pruned with ``torch.nn.utils.prune`` masks). Weights are
in gbdnn's ``(in, out)`` orientation (torch weights are transposed on the way
in and out). Pruned weights come out as true sparse matrices; the caller's
objects are only modified with ``inplace=True``.
"""

from .csp import CSPPruner, csp_prune
from .magnitude import MagnitudePruner, magnitude_prune
from .schedule import (
    ConstantSchedule,
    CubicSchedule,
    LinearSchedule,
    PruningScheduler,
    Schedule,
)

__all__ = [
    "CSPPruner",
    "ConstantSchedule",
    "CubicSchedule",
    "LinearSchedule",
    "MagnitudePruner",
    "PruningScheduler",
    "Schedule",
    "csp_prune",
    "magnitude_prune",
]
