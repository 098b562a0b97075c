"""Seeded, resumable mini-batches from in-memory images, with batched augmentation."""

from __future__ import annotations

from typing import Iterator, Literal, Optional, Tuple, Union, overload

import attrs
import gin
import torch
import torch.nn.functional as F
from torch import Tensor

from rnasframe import validation
from rnasframe.data.images import LabeledImages

__all__ = ["Augmentation", "BatchLoader", "split_indices"]


def split_indices(n: int, train_portion: float, seed: int) -> Tuple[Tensor, Tensor]:
    """Split ``range(n)`` at random into a part for ``w`` and a part for ``alpha``.

    Args:
        n: number of examples.
        train_portion: share that goes to the first part (DARTS and the paper: 0.5).
        seed: seed of the permutation (recorded with the run).

    Returns:
        ``(train_indices, valid_indices)``, both sorted int64 tensors.
    """
    if not 0.0 < train_portion < 1.0:
        raise ValueError(f"train_portion must be in (0, 1), got {train_portion!r}")
    if n < 2:
        raise ValueError(f"need at least 2 examples to split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = min(max(int(n * train_portion), 1), n - 1)
    return order[:cut].sort().values, order[cut:].sort().values


@gin.configurable
@attrs.define(frozen=True)
class Augmentation:
    """DARTS' training augmentation, done on whole batches: random crop with zero padding, flip, cutout.

    The steps run in DARTS' order: crop, flip, then cutout. Cutout (DeVries & Taylor, 2017, as in
    DARTS' ``utils.Cutout``) zeroes one square of side ``cutout`` per image whose center is drawn
    uniformly over the image's pixels; the square is clipped at the borders, so a center near an
    edge zeroes a smaller rectangle. One difference from DARTS: DARTS cuts out *after*
    normalization, so its patch has the mean colour; here pixels stay in [0, 1] (normalization is
    the model's first layer) and the patch is black (0).

    Args:
        crop_padding: zero padding before the random crop back to the original size (CIFAR: 4;
            0 disables cropping).
        horizontal_flip: flip half of the images left-right (off for digits, where it changes meaning).
        cutout: side of the cutout square in pixels (DARTS' evaluation on CIFAR-10: 16); 0 disables
            it and then draws no random numbers, so batches are exactly those without the option.
    """

    crop_padding: int = attrs.field(default=4, validator=validation.non_negative_int)
    horizontal_flip: bool = True
    cutout: int = attrs.field(default=0, validator=validation.non_negative_int)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return the augmented batch (random numbers from ``generator``, on the CPU)."""
        n, _, h, w = x.shape
        if self.crop_padding > 0:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)
            cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)
            batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
            channels = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
            x = padded[batch, channels, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
        if self.horizontal_flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        if self.cutout > 0:
            x = x * _cutout_keep_mask(n, h, w, self.cutout, generator).to(device=x.device, dtype=x.dtype)
        return x


def _cutout_keep_mask(n: int, h: int, w: int, length: int, generator: torch.Generator) -> Tensor:
    """A ``(n, 1, h, w)`` mask of ones with one zeroed square (side ``length``, clipped) per image."""
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    half = length // 2
    y1, y2 = (cy - half).clamp(0, h), (cy + half).clamp(0, h)
    x1, x2 = (cx - half).clamp(0, w), (cx + half).clamp(0, w)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (
        (rows >= y1.view(n, 1, 1)) & (rows < y2.view(n, 1, 1))
        & (cols >= x1.view(n, 1, 1)) & (cols < x2.view(n, 1, 1))
    )
    return (~inside).unsqueeze(1).float()


class BatchLoader:
    """Mini-batches of ``(pixels in [0, 1], labels)`` from a :class:`LabeledImages`, optionally with indices.

    ``epoch(e, with_indices=True)`` adds each example's ``index``: its position in the set the
    data was taken from (:attr:`LabeledImages.positions`; for the two halves of a search split,
    its position in the full training set), which a perturbation with a per-example store uses.

    The order and the augmentation of epoch ``e`` depend only on ``(seed, e)``, so a search resumed
    at an epoch boundary sees exactly the batches of an uninterrupted one.

    Args:
        data: the images.
        batch_size: examples per batch.
        seed: base seed of shuffling and augmentation.
        shuffle: draw a new permutation every epoch.
        augmentation: applied to every batch when given.
        drop_last: drop the last incomplete batch.
        device: where batches are put.
        rank: this process' rank in data-parallel runs.
        world_size: number of processes; each global batch of ``batch_size`` examples (drawn and
            augmented identically on every rank) is split into ``world_size`` equal shards and
            this loader yields shard ``rank``. ``batch_size`` must be divisible by it.
        resident: copy the whole set (as stored: uint8 stays uint8, 150 MB for CIFAR-10) to
            ``device`` once, and gather, convert and augment every batch there, instead of copying
            each batch from host memory. The batches are the same (the order and the augmentation
            draws come from the same CPU generator). Useful on a GPU; a no-op on the CPU.
    """

    def __init__(
        self,
        data: LabeledImages,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        augmentation: Optional[Augmentation] = None,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        resident: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        if world_size > 1 and (batch_size % world_size or not drop_last):
            raise ValueError(
                f"a data-parallel batch of {batch_size} must split evenly over {world_size} processes "
                f"(and drop_last must be set)"
            )
        self.device = torch.device(device)
        self.resident = bool(resident)
        if self.resident and data.images.device != self.device:
            data = LabeledImages(
                data.images.to(self.device), data.labels.to(self.device), data.num_classes, data.name,
                data.positions.to(self.device),
            )
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @overload
    def epoch(self, epoch: int, with_indices: Literal[False] = False) -> Iterator[Tuple[Tensor, Tensor]]: ...

    @overload
    def epoch(self, epoch: int, with_indices: Literal[True]) -> Iterator[Tuple[Tensor, Tensor, Tensor]]: ...

    @overload
    def epoch(
        self, epoch: int, with_indices: bool
    ) -> Iterator[Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]]: ...

    def epoch(
        self, epoch: int, with_indices: bool = False
    ) -> Iterator[Union[Tuple[Tensor, Tensor], Tuple[Tensor, Tensor, Tensor]]]:
        """Yield the batches of epoch ``epoch`` (0-based): ``(x, y)``, or ``(x, y, index)``.

        Args:
            epoch: the epoch; it alone (with the seed) fixes the order and the augmentation.
            with_indices: also yield ``index``, the examples' :attr:`LabeledImages.positions`
                (int64, on the batch's device, sharded like ``x`` and ``y`` in data-parallel
                runs). The batches themselves are the same either way.
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.data)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for index in order.split(self.batch_size):
            if self.drop_last and index.numel() < self.batch_size:
                break
            index = index.to(self.data.images.device)
            x = self.data.pixels(index)
            if self.augmentation is not None:
                x = self.augmentation(x, generator)
            y = self.data.labels[index]
            positions = self.data.positions[index] if with_indices else None
            if self.world_size > 1:
                per_rank = len(index) // self.world_size
                shard = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
                x, y = x[shard], y[shard]
                positions = positions[shard] if positions is not None else None
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if positions is None:
                yield x, y
            else:
                yield x, y, positions.to(self.device, non_blocking=True)
