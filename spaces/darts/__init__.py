"""The DARTS search space (Liu et al., 2019): supernet, stand-alone network and genotypes.

Typical use::

    from rnasframe.spaces.darts import DartsSpace, genotypes

    space = DartsSpace()
    supernet = space.supernet(num_classes=10)           # search
    genotype = supernet.genotype()
    net = space.network(genotypes.DARTS_V2, num_classes=10)  # train from scratch
"""

from rnasframe.spaces.darts import genotypes
from rnasframe.spaces.darts.genotypes import PRIMITIVES, Genotype, derive_genotype
from rnasframe.spaces.darts.network import DartsNetwork
from rnasframe.spaces.darts.space import DartsNetworkConfig, DartsSpace
from rnasframe.spaces.darts.supernet import DartsSupernet

__all__ = [
    "DartsNetwork",
    "DartsNetworkConfig",
    "DartsSpace",
    "DartsSupernet",
    "Genotype",
    "PRIMITIVES",
    "derive_genotype",
    "genotypes",
]
