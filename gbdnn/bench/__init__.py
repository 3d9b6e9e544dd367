"""Benchmark harness: at what sparsity does gbdnn beat dense BLAS?

:func:`run_grid` times gbdnn and its peers over a grid of layer shapes, batch
sizes, weight sparsities, activation sparsities and value types;
:func:`crossovers` finds where gbdnn overtakes each peer; :func:`plot` draws
it. ``gbdnn bench crossover`` runs all three from the command line.
"""

from .crossover import (
    DEFAULT_GRID,
    QUICK_GRID,
    Grid,
    crossovers,
    implementations,
    kernel_choice,
    load_rows,
    run_grid,
)
from .plot import plot

__all__ = [
    "DEFAULT_GRID",
    "QUICK_GRID",
    "Grid",
    "crossovers",
    "implementations",
    "kernel_choice",
    "load_rows",
    "plot",
    "run_grid",
]
