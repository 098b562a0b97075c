"""Uniform noise in the threat model: the sampler of RNAS-uniform."""

from __future__ import annotations

import attrs
import gin
import torch
from torch import Tensor

from rnasframe.interfaces.perturbation import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations.balls import LinfBall, is_norm_ball

__all__ = ["UniformSampler"]


@gin.configurable
@attrs.define(frozen=True)
class UniformSampler(Perturbation):
    """Draw ``x'`` uniformly from the threat model around ``x`` (then clipped to [0, 1]).

    The objective is never called, so this costs no forward or backward pass. See
    :meth:`LinfBall.sample <rnasframe.perturbations.LinfBall.sample>` and
    :meth:`L2Ball.sample <rnasframe.perturbations.L2Ball.sample>` for the exact distributions.

    Attributes:
        ball: the threat model (default: ``LinfBall()``, epsilon = 0.031).
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Return ``ball.sample(x)``; ``objective`` is ignored."""
        with torch.no_grad():
            return self.ball.sample(x)
