"""Gradual pruning: sparsity schedules and a scheduler a training loop calls.

Zhu & Gupta, "To prune, or not to prune" (2017), raise the sparsity from
``s_i`` to ``s_f`` over ``n`` pruning steps, one every ``dt`` training steps
from step ``t0``::

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3
"""

from __future__ import annotations

from typing import Any

from ..errors import ParameterError
from .masks import check_amount
from .targets import apply_masks


class Schedule:
    """A sparsity that depends on the training step.

    Parameters
    ----------
    final : float
        Sparsity at the end, in ``[0, 1)``.
    initial : float, default 0.0
        Sparsity at ``begin_step``.
    begin_step : int, default 0
        ``t0``, the first pruning step.
    n_steps : int, default 1
        ``n``, the number of pruning steps.
    frequency : int, default 1
        ``dt``, training steps between pruning steps.
    """

    def __init__(
        self,
        final: float,
        *,
        initial: float = 0.0,
        begin_step: int = 0,
        n_steps: int = 1,
        frequency: int = 1,
    ) -> None:
        self.final = check_amount(final, "final")
        self.initial = check_amount(initial, "initial")
        for name, value, low in (
            ("begin_step", begin_step, 0),
            ("n_steps", n_steps, 1),
            ("frequency", frequency, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
        self.begin_step, self.n_steps, self.frequency = begin_step, n_steps, frequency

    @property
    def end_step(self) -> int:
        """The last pruning step, ``t0 + n dt``."""
        return self.begin_step + self.n_steps * self.frequency

    def progress(self, step: int) -> float:
        """``(t - t0) / (n dt)`` clipped to ``[0, 1]``."""
        span = self.n_steps * self.frequency
        return min(max((step - self.begin_step) / span, 0.0), 1.0)

    def is_update_step(self, step: int) -> bool:
        """Whether the sparsity changes (and pruning runs) at ``step``."""
        return (
            self.begin_step <= step <= self.end_step
            and (step - self.begin_step) % self.frequency == 0
        )

    def __call__(self, step: int) -> float:
        """The sparsity at training step ``step``."""
        raise NotImplementedError


class CubicSchedule(Schedule):
    """Zhu & Gupta's cubic ramp: fast early, gentle near the final sparsity."""

    def __call__(self, step: int) -> float:
        return self.final + (self.initial - self.final) * (1 - self.progress(step)) ** 3


class LinearSchedule(Schedule):
    """A straight ramp from ``initial`` to ``final``."""

    def __call__(self, step: int) -> float:
        return self.initial + (self.final - self.initial) * self.progress(step)


class ConstantSchedule(Schedule):
    """The same sparsity at every pruning step (``initial`` is ignored)."""

    def __call__(self, step: int) -> float:
        return self.final


class PruningScheduler:
    """Drive a pruner from a training loop, as ``torch.ao.pruning`` schedulers do.

    Call :meth:`step` once per training step, after the optimizer's update.
    On the schedule's update steps the pruner is refitted at the scheduled
    sparsity and applied in place (with a
    :class:`~gbdnn.prune.CSPPruner` this is the "hard compressor": weights
    are projected onto the compressed-sensing solution); on other steps the
    current masks are re-applied, so pruned weights stay zero.

    Parameters
    ----------
    pruner : MagnitudePruner or CSPPruner
        Its ``amount`` is overwritten by the schedule.
    schedule : Schedule

    Attributes
    ----------
    step_ : int
        Training steps seen.
    sparsity_ : float
        The sparsity currently applied.
    """

    def __init__(self, pruner: Any, schedule: Schedule) -> None:
        if getattr(pruner, "amount", None) is None:
            raise ParameterError("the pruner must prune by amount (N:M patterns have no schedule)")
        self.pruner, self.schedule = pruner, schedule
        self.step_ = -1
        self.sparsity_ = 0.0

    def step(self, target: Any, *fit_args: Any) -> bool:
        """Advance one training step and prune ``target`` in place.

        Parameters
        ----------
        target
            The weights being trained (NumPy arrays, a gbdnn model, a torch module...).
        *fit_args
            Passed to the pruner's ``fit`` (a CSP pruner's calibration data).

        Returns
        -------
        bool
            True when the pruner was refitted at this step.
        """
        self.step_ += 1
        if self.schedule.is_update_step(self.step_):
            self.pruner.amount = self.sparsity_ = self.schedule(self.step_)
            self.pruner.fit(target, *fit_args).transform(target, inplace=True)
            return True
        if hasattr(self.pruner, "masks_"):
            apply_masks(target, self.pruner.masks_, self.pruner.exclude, inplace=True)
        return False
