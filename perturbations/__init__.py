"""Perturbations ``x'`` of a batch ``x``: threat models (norm balls) and the samplers using them.

* :class:`LinfBall`, :class:`L2Ball` — threat models (:class:`~rnasframe.interfaces.NormBall`).
* :class:`PGDMaximizer` — projected gradient ascent on ``f(m(x'), m(x))`` (RNAS-max).
* :class:`UniformSampler` — uniform noise in the ball (RNAS-uniform).
"""

from rnasframe.perturbations.balls import L2Ball, LinfBall
from rnasframe.perturbations.pgd import PGDMaximizer
from rnasframe.perturbations.uniform import UniformSampler

__all__ = ["L2Ball", "LinfBall", "PGDMaximizer", "UniformSampler"]
