"""rnasframe: robust neural architecture search (RNAS) with every part pluggable.

The method (Zhu et al., "Robust Neural Architecture Search") is DARTS whose bi-level objective adds
``lambda * f(m(x'), m(x))`` with ``x'`` the PGD maximizer of ``f`` in an epsilon-ball (RNAS-max) or
uniform noise in that ball (RNAS-uniform). Plugins live in :mod:`rnasframe.spaces`,
:mod:`rnasframe.perturbations` and :mod:`rnasframe.similarity`; the interfaces they implement in
:mod:`rnasframe.interfaces`.
"""

from rnasframe.bilevel import ArchOptimizerSettings, FirstOrderDarts, SecondOrderDarts, WeightOptimizerSettings
from rnasframe.engine import SearchEngine, SearchResult
from rnasframe.objective import ObjectiveOutput, RobustObjective
from rnasframe.regularizers import PerturbationConsistency

__version__ = "0.1.0"

__all__ = [
    "ArchOptimizerSettings",
    "FirstOrderDarts",
    "ObjectiveOutput",
    "PerturbationConsistency",
    "RobustObjective",
    "SearchEngine",
    "SearchResult",
    "SecondOrderDarts",
    "WeightOptimizerSettings",
    "__version__",
]
