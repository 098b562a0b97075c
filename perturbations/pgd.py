"""Projected gradient ascent: the inner maximizer of RNAS-max."""

from __future__ import annotations

from typing import Any

import attrs
import gin
import torch
from torch import Tensor

from rnasframe.interfaces.perturbation import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations.balls import LinfBall, is_norm_ball
from rnasframe.validation import boolean, finite, greater_than, positive_int

__all__ = ["PGDMaximizer", "projected_ascent_step", "step_factor"]


@gin.configurable
@attrs.define(frozen=True)
class PGDMaximizer(Perturbation):
    """Approximately maximize an objective over a norm ball with projected gradient ascent (PGD).

    Starting from a random point of the ball (or from ``x``), each of the ``steps`` iterations
    takes the gradient ``g`` of the objective with respect to the candidate only and updates::

        x' <- ball.project(ball.ascent_step(x', g, step_size), x)

    The *last* iterate is returned (as in Madry et al. and TRADES), not the best one seen: this
    keeps the loop free of extra forward passes and host-device synchronizations.

    With a discrepancy objective such as ``KL(m(x) || m(x'))`` the gradient at ``x' = x`` is
    zero in exact arithmetic (``x`` is a minimum), so without a random start the first step
    follows only the sign of rounding noise; ``random_start=True`` (the default) avoids that.

    Attributes:
        ball: the threat model (default: ``LinfBall()``, epsilon = 0.031).
        steps: the number of ascent steps (an integer >= 1).
        step_size: the step length per iteration, in pixel units (> 0); for the L∞ ball each
            pixel moves by exactly this much before projection.
        random_start: start from ``ball.sample(x)`` instead of ``x``.

    Example:
        >>> pgd = PGDMaximizer(ball=LinfBall(epsilon=8 / 255), steps=10, step_size=2 / 255)
        >>> x = torch.rand(4, 3, 8, 8)
        >>> weights = torch.randn(3, 8, 8)
        >>> x_adv = pgd(x, lambda z: (z * weights).sum())
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)
    steps: int = attrs.field(default=10, validator=positive_int)
    step_size: float = attrs.field(
        default=0.003, validator=greater_than(0.0, "a step length in pixel units of [0, 1] images")
    )
    random_start: bool = attrs.field(default=True, validator=boolean)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Run ``steps`` projected ascent steps on ``objective`` and return the last iterate.

        Args:
            x: the natural batch (detached), pixels in [0, 1]; not modified.
            objective: maps a candidate batch to a scalar tensor to maximize; it must depend
                differentiably on its argument.

        Returns:
            The detached last iterate, inside ``ball`` ∩ [0, 1].

        Raises:
            ValueError: when the objective does not return a scalar.
        """
        with torch.no_grad():
            current = self.ball.sample(x) if self.random_start else x
        for _ in range(self.steps):
            current = projected_ascent_step(self.ball, current, x, objective, self.step_size, "PGDMaximizer")
        return current.detach()


_ALPHA_LOW, _ALPHA_HIGH = 0.0, 2.0


def step_factor(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """attrs validator: accept a finite number in (0, 2], a step length in units of the ball's radius.

    Shared by the one-step maximizers (:class:`~rnasframe.perturbations.FGSMRandomStart`,
    :class:`~rnasframe.perturbations.WarmStartPGD`), whose step is ``alpha * epsilon``.
    """
    finite()(instance, attribute, value)
    if not _ALPHA_LOW < value <= _ALPHA_HIGH:
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be in ({_ALPHA_LOW:g}, {_ALPHA_HIGH:g}] "
            f"(the step length in units of the ball's radius), got {value!r}"
        )


def projected_ascent_step(
    ball: NormBall, current: Tensor, x: Tensor, objective: PerturbationObjective, step_size: float, owner: str
) -> Tensor:
    """One step of ``objective``'s steepest ascent from ``current``, projected onto ``ball`` around ``x``.

    The step every gradient-based perturbation takes (:class:`PGDMaximizer` ``steps`` times,
    :class:`~rnasframe.perturbations.FGSMRandomStart` once). Raises :class:`ValueError`, naming
    ``owner``, when the objective does not return a scalar tensor.
    """
    candidate = current.detach().requires_grad_(True)
    value = objective(candidate)
    if not isinstance(value, Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{owner}: the objective must return a scalar tensor, got {shape}")
    (gradient,) = torch.autograd.grad(value, candidate)
    with torch.no_grad():
        return ball.project(ball.ascent_step(candidate, gradient, step_size), x)
