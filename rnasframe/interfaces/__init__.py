"""The abstract interfaces users subclass to plug new parts into rnasframe."""

from rnasframe.interfaces.bilevel import Batch, BilevelOptimizer
from rnasframe.interfaces.perturbation import (
    NormBall,
    Perturbation,
    PerturbationObjective,
    check_pixel_range,
)
from rnasframe.interfaces.regularizer import Regularizer, RegularizerOutput
from rnasframe.interfaces.search_space import (
    InputSpec,
    NetworkOutput,
    Picture,
    SearchSpace,
    Supernet,
    split_output,
)
from rnasframe.interfaces.similarity import Similarity

__all__ = [
    "Batch",
    "BilevelOptimizer",
    "InputSpec",
    "NetworkOutput",
    "NormBall",
    "Perturbation",
    "PerturbationObjective",
    "Picture",
    "Regularizer",
    "RegularizerOutput",
    "SearchSpace",
    "Similarity",
    "Supernet",
    "check_pixel_range",
    "split_output",
]
