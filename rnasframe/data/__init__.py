"""Data: in-memory image sets, sources (CIFAR-10, bundled digits), seeded splits and batches."""

from rnasframe.data.images import LabeledImages
from rnasframe.data.loader import Augmentation, BatchLoader, split_indices
from rnasframe.data.sources import CIFAR10Source, DataNotFoundError, DataSource, DigitsSource

__all__ = [
    "Augmentation",
    "BatchLoader",
    "CIFAR10Source",
    "DataNotFoundError",
    "DataSource",
    "DigitsSource",
    "LabeledImages",
    "split_indices",
]
