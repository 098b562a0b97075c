"""FGSM from a random start: a one-step inner maximizer at a fraction of PGD's cost."""

from __future__ import annotations

import attrs
import gin
import torch
from torch import Tensor

from rnasframe.interfaces.perturbation import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations.balls import LinfBall, is_norm_ball
from rnasframe.perturbations.pgd import projected_ascent_step, step_factor

__all__ = ["FGSMRandomStart"]

@gin.configurable
@attrs.define(frozen=True)
class FGSMRandomStart(Perturbation):
    """One steepest-ascent step of length ``alpha * epsilon`` from a uniform point of the ball.

    The cheap inner maximizer of "fast" adversarial training (Wong et al., "Fast is better than
    free", 2020): draw ``x0 = ball.sample(x)``, take one gradient ``g`` of the objective at ``x0``
    and return::

        ball.project(ball.ascent_step(x0, g, alpha * ball.epsilon), x)

    In the L∞ ball this is ``clip(x0 + alpha·ε·sign(g), [x - ε, x + ε] ∩ [0, 1])``. One forward
    and one backward pass per call instead of PGD's ``steps``; the random start keeps the step
    away from ``x`` itself, where a discrepancy objective such as ``KL(m(x) || m(x'))`` has a zero
    gradient. Works with any :class:`~rnasframe.interfaces.NormBall`.

    Attributes:
        ball: the threat model (default: ``LinfBall()``, epsilon = 0.031).
        alpha: the step length in units of the ball's radius, in (0, 2] (default 1.25, the value
            Wong et al. recommend; larger steps led their training to catastrophic overfitting).

    Example:
        >>> fgsm = FGSMRandomStart(ball=LinfBall(epsilon=8 / 255))
        >>> x = torch.rand(4, 3, 8, 8)
        >>> weights = torch.randn(3, 8, 8)
        >>> x_adv = fgsm(x, lambda z: (z * weights).sum())
        >>> bool(((x_adv - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)
    alpha: float = attrs.field(default=1.25, validator=step_factor)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Take one projected ascent step of length ``alpha * ball.epsilon`` from a random start.

        Args:
            x: the natural batch (detached), pixels in [0, 1]; not modified.
            objective: maps a candidate batch to a scalar tensor to maximize; it must depend
                differentiably on its argument.

        Returns:
            The detached result, inside ``ball`` ∩ [0, 1].

        Raises:
            ValueError: when the objective does not return a scalar.
        """
        with torch.no_grad():
            start = self.ball.sample(x)
        step = self.alpha * float(self.ball.epsilon)
        return projected_ascent_step(self.ball, start, x, objective, step, "FGSMRandomStart").detach()
