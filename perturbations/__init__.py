"""Perturbations ``x'`` of a batch ``x``: threat models (norm balls) and the samplers and attacks using them.

* :class:`LinfBall`, :class:`L2Ball` — threat models (:class:`~rnasframe.interfaces.NormBall`).
* :class:`PGDMaximizer` — projected gradient ascent on ``f(m(x'), m(x))`` (RNAS-max).
* :class:`FGSMRandomStart` — one ascent step of length ``alpha * epsilon`` from a random start (a
  cheap inner maximizer).
* :class:`WarmStartPGD` — a few ascent steps per visit from each training example's stored
  perturbation (a cheap inner maximizer with a per-example store).
* :class:`UniformSampler` — uniform noise in the ball (RNAS-uniform).
* :class:`PGD`, :class:`FGSM` — the evaluation attacks: PGD-K and its one-step instance.
"""

from rnasframe.perturbations.attacks import FGSM, PGD
from rnasframe.perturbations.balls import L2Ball, LinfBall
from rnasframe.perturbations.fgsm_random_start import FGSMRandomStart
from rnasframe.perturbations.pgd import PGDMaximizer
from rnasframe.perturbations.uniform import UniformSampler
from rnasframe.perturbations.warm_start import WarmStartPGD

__all__ = [
    "FGSM",
    "FGSMRandomStart",
    "L2Ball",
    "LinfBall",
    "PGD",
    "PGDMaximizer",
    "UniformSampler",
    "WarmStartPGD",
]
