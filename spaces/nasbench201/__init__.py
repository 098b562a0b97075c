"""The NAS-Bench-201 search space (Dong & Yang, 2020) and its tabulated robustness (Jung et al., 2023).

Typical use::

    from rnasframe.spaces.nasbench201 import NasBench201Space

    space = NasBench201Space()
    supernet = space.supernet(num_classes=10)      # search: one 6 x 5 alpha
    genotype = supernet.genotype()                 # str(genotype) is the architecture string
    net = space.network(str(genotype), num_classes=10)  # train from scratch
"""

from rnasframe.spaces.nasbench201.genotypes import (
    EDGES,
    OPERATIONS,
    NasBench201Genotype,
    derive_genotype,
    genotype_from_dict,
    genotype_to_dict,
    parse_architecture,
)
from rnasframe.spaces.nasbench201.network import NasBench201Network
from rnasframe.spaces.nasbench201.robustness_data import RobustnessDataset
from rnasframe.spaces.nasbench201.space import NasBench201Space
from rnasframe.spaces.nasbench201.supernet import NasBench201Supernet

__all__ = [
    "EDGES",
    "OPERATIONS",
    "NasBench201Genotype",
    "NasBench201Network",
    "NasBench201Space",
    "NasBench201Supernet",
    "RobustnessDataset",
    "derive_genotype",
    "genotype_from_dict",
    "genotype_to_dict",
    "parse_architecture",
]
