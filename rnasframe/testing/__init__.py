"""The conformance kit: check that a threat model you wrote keeps rnasframe's contracts.

Plain functions, usable in any test framework (they need torch only):

* :func:`check_perturbation` — a :class:`~rnasframe.interfaces.Perturbation` stays in its threat
  set and in [0, 1], leaves ``x`` and the model untouched, and repeats itself from a seed;
* :func:`check_norm_ball` — a :class:`~rnasframe.interfaces.NormBall` projects, samples and steps
  correctly;
* :func:`check_search_space` — a :class:`~rnasframe.interfaces.SearchSpace` builds a supernet
  and networks that train and evaluate, round-trips its genotypes and draws its pictures
  (:data:`SPACE_CHECKS` lists the checks);
* :func:`assert_rejects` — a bad hyperparameter fails with a clear one-line error;
* :func:`norm_ball_membership`, :func:`norm_distance` — threat sets of norm balls.

Failures raise :class:`ConformanceError` (an ``AssertionError``) saying what went wrong.

pytest mix-ins (loaded on first use; they need pytest and hypothesis): ``PerturbationConformance``
and ``NormBallConformance`` (see :mod:`rnasframe.testing.mixins`). hypothesis strategies for image
batches and budgets: :mod:`rnasframe.testing.strategies`.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnasframe.testing.conformance import (
    DEFAULT_DTYPES,
    DEFAULT_SHAPES,
    ConformanceError,
    Distance,
    Membership,
    assert_rejects,
    check_norm_ball,
    check_perturbation,
    norm_ball_membership,
    norm_distance,
)
from rnasframe.testing.search_space import SPACE_CHECKS, check_search_space

__all__ = [
    "ConformanceError",
    "DEFAULT_DTYPES",
    "DEFAULT_SHAPES",
    "Distance",
    "Membership",
    "SPACE_CHECKS",
    "assert_rejects",
    "check_norm_ball",
    "check_perturbation",
    "check_search_space",
    "norm_ball_membership",
    "norm_distance",
]

_MIXINS = ("PerturbationConformance", "NormBallConformance")


def __getattr__(name: str) -> Any:
    """Load the pytest mix-ins on first use, so that importing the kit does not import pytest."""
    if name in _MIXINS:
        return getattr(importlib.import_module("rnasframe.testing.mixins"), name)
    raise AttributeError(f"module 'rnasframe.testing' has no attribute {name!r}")
