"""Where images come from: CIFAR-10 through torchvision, and scikit-learn's bundled digits."""

from __future__ import annotations

import abc
import contextlib
import os
from pathlib import Path
from typing import Optional, Tuple

import attrs
import gin
import numpy as np
import torch

from rnasframe import distributed, validation
from rnasframe.data.images import LabeledImages

__all__ = ["DataSource", "CIFAR10Source", "DigitsSource", "DataNotFoundError"]

# The statistics DARTS and most CIFAR-10 code normalize with (pixels in [0, 1]).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)


class DataNotFoundError(FileNotFoundError):
    """A data set is not on disk and may not be downloaded."""


class DataSource(abc.ABC):
    """A labelled image data set with a training part (split for the search) and a test part."""

    @abc.abstractmethod
    def load_train(self) -> LabeledImages:
        """Return the training images (the search splits them into halves for ``w`` and ``alpha``)."""

    @abc.abstractmethod
    def load_test(self) -> LabeledImages:
        """Return the held-out test images."""

    def normalization(self, train: LabeledImages) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Per-channel mean and std the model's first layer uses (default: computed from ``train``)."""
        mean, std = train.channel_statistics()
        return tuple(mean), tuple(std)


@gin.configurable
@attrs.define(frozen=True)
class CIFAR10Source(DataSource):
    """CIFAR-10 through :class:`torchvision.datasets.CIFAR10` (50,000 training, 10,000 test images).

    Args:
        root: folder that holds (or receives) ``cifar-10-batches-py``.
        download: let torchvision download the archive when it is missing (needs internet). In a
            data-parallel run rank 0 alone downloads; the other ranks wait for it, then read the
            files (``root`` must be a folder every node sees).
        limit: keep only the first ``limit`` images of each part (for smoke runs); ``None`` keeps all.
    """

    root: str = attrs.field(default="data", converter=str)
    download: bool = False
    limit: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(validation.positive_int))

    def _load(self, train: bool) -> LabeledImages:
        from torchvision.datasets import CIFAR10

        folder = Path(os.path.expanduser(self.root))
        if not self.download and not (folder / "cifar-10-batches-py").is_dir():
            raise DataNotFoundError(
                f"CIFAR-10 not found: expected the folder {folder / 'cifar-10-batches-py'} (torchvision's "
                f"format); set CIFAR10Source.root to the folder that holds it, or bind "
                f"CIFAR10Source.download=True on a machine with internet access"
            )
        # Rank 0 downloads; the other ranks of a data-parallel run wait for it, then read its files.
        once = distributed.main_process_first(f"CIFAR-10 download into {folder.resolve()}")
        with once if self.download else contextlib.nullcontext():
            try:
                dataset = CIFAR10(str(folder), train=train, download=self.download and distributed.is_main_process())
            except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
                shared = "" if distributed.is_main_process() or not self.download else (
                    f" (rank 0 downloaded it into {folder}: CIFAR10Source.root must be a folder every node sees)"
                )
                raise DataNotFoundError(f"CIFAR-10 in {folder} is missing or corrupted: {error}{shared}") from error
        images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(dataset.targets, dtype=torch.long)
        if self.limit is not None:
            images, labels = images[: self.limit], labels[: self.limit]
        return LabeledImages(images, labels, 10, name=f"CIFAR-10 {'train' if train else 'test'}")

    def load_train(self) -> LabeledImages:
        """The 50,000 training images (uint8)."""
        return self._load(train=True)

    def load_test(self) -> LabeledImages:
        """The 10,000 test images (uint8)."""
        return self._load(train=False)

    def normalization(self, train: LabeledImages) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """The standard CIFAR-10 statistics (those of the full training set)."""
        return CIFAR10_MEAN, CIFAR10_STD


@gin.configurable
@attrs.define(frozen=True)
class DigitsSource(DataSource):
    """scikit-learn's handwritten digits: 1,797 real 8x8 grey images, 10 classes, no download.

    Bundled inside scikit-learn (install the ``demo`` extra), so the quickstart runs offline. The
    images are split once, with ``seed``, into a training part and a test part of ``test_fraction``.

    Args:
        test_fraction: share of the images held out as the test set.
        seed: seed of the train/test split (independent of the search seed).
    """

    test_fraction: float = attrs.field(default=0.2, validator=validation.in_closed_range(0.05, 0.95))
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)

    def _all(self) -> LabeledImages:
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise ImportError(
                "DigitsSource needs scikit-learn: pip install 'rnasframe[demo]'"
            ) from error
        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        return LabeledImages(images, labels, 10, name="digits")

    def _split(self) -> Tuple[torch.Tensor, torch.Tensor, LabeledImages]:
        data = self._all()
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
        n_test = round(len(data) * self.test_fraction)
        return order[n_test:], order[:n_test], data

    def load_train(self) -> LabeledImages:
        """The training part (about 1,438 images)."""
        train, _, data = self._split()
        return data.subset(train, "digits train")

    def load_test(self) -> LabeledImages:
        """The test part (about 359 images)."""
        _, test, data = self._split()
        return data.subset(test, "digits test")
