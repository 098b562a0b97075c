"""The abstract interfaces users subclass to plug new parts into rnasframe."""

from rnasframe.interfaces.bilevel import Batch, BilevelOptimizer, call_objective, split_batch
from rnasframe.interfaces.perturbation import (
    NormBall,
    Perturbation,
    PerturbationObjective,
    check_example_index,
    check_pixel_range,
    read_only_stores,
    stores_read_only,
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
    "call_objective",
    "check_example_index",
    "check_pixel_range",
    "read_only_stores",
    "split_batch",
    "split_output",
    "stores_read_only",
]
