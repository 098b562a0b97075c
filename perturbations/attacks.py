"""Evaluation attacks as perturbations: PGD-K and FGSM, both instances of :class:`PGDMaximizer`.

An attack is a :class:`~rnasframe.interfaces.Perturbation` like the search's samplers: it holds a
threat model (``ball``) and maximizes whatever objective it is called with; the robustness
evaluation calls it with the summed cross-entropy of the true labels
(:func:`~rnasframe.robustness.cross_entropy_objective`). The classes differ from
:class:`PGDMaximizer` only in their defaults and in their gin names, so that an evaluation's PGD-20
and a training objective's PGD-7 are bound separately::

    EPSILON = 0.031
    LinfBall.epsilon = %EPSILON
    RobustnessEvaluation.epsilon = %EPSILON
    RobustnessEvaluation.attacks = [@FGSM(), @PGD()]
    PGD.steps = 20
"""

from __future__ import annotations

import attrs
import gin

from rnasframe.interfaces.perturbation import NormBall
from rnasframe.perturbations.balls import LinfBall, is_norm_ball
from rnasframe.perturbations.pgd import PGDMaximizer
from rnasframe.validation import boolean, greater_than, positive_int

__all__ = ["FGSM", "PGD"]

_STEP_HINT = "a step length in pixel units of [0, 1] images"


@gin.configurable
@attrs.define(frozen=True)
class PGD(PGDMaximizer):
    """PGD-K (Madry et al., 2018): ``steps`` projected ascent steps of ``step_size`` in ``ball``.

    The same maximizer as :class:`PGDMaximizer` with the evaluation's defaults: 20 steps of 0.003
    (the paper's PGD-20, section 4.1), random start. Its result key is :attr:`name`, e.g. ``pgd20``.

    Attributes:
        ball: the threat model (default: ``LinfBall()``).
        steps: ascent steps (PGD-20: 20).
        step_size: the step length per iteration, pixel units (L2: usually ``2.5 * epsilon / steps``).
        random_start: start from a uniform point of the ball instead of ``x``.
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)
    steps: int = attrs.field(default=20, validator=positive_int)
    step_size: float = attrs.field(default=0.003, validator=greater_than(0.0, _STEP_HINT))
    random_start: bool = attrs.field(default=True, validator=boolean)

    @property
    def name(self) -> str:
        """``"pgd<steps>"``, e.g. ``"pgd20"``: the attack's key in results."""
        return f"pgd{self.steps}"


@gin.configurable
@attrs.define(frozen=True)
class FGSM(PGDMaximizer):
    """The fast gradient method (Goodfellow et al., 2015): one PGD step of length ε from ``x``.

    In the L∞ ball this is ``clip(x + ε·sign(∇), [x - ε, x + ε] ∩ [0, 1])``; in the L2 ball the
    per-example step ``x + ε·∇/‖∇‖₂`` clipped to [0, 1]. Only :attr:`ball` is chosen; ``steps`` (1),
    ``step_size`` (the ball's radius) and ``random_start`` (no) follow from it. With ε = 0 the ball
    is the point ``x`` and the step length is 1 only because a step must be positive.

    Attributes:
        ball: the threat model (default: ``LinfBall()``).
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=is_norm_ball)
    steps: int = attrs.field(init=False, default=1)
    step_size: float = attrs.field(init=False)
    random_start: bool = attrs.field(init=False, default=False)

    @step_size.default
    def _radius(self) -> float:
        epsilon = getattr(self.ball, "epsilon", 1.0)  # a ball that is no NormBall fails in its validator
        return float(epsilon) if epsilon > 0 else 1.0

    @property
    def name(self) -> str:
        """``"fgsm"``: the attack's key in results."""
        return "fgsm"
