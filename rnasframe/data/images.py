"""An in-memory labelled image set and the per-channel statistics the model normalizes with."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from rnasframe.interfaces.search_space import InputSpec

__all__ = ["LabeledImages", "byte_to_unit"]


_BYTE_TABLES: Dict[torch.device, Tensor] = {}


def byte_to_unit(device: torch.device | str = "cpu") -> Tensor:
    """The 256 float32 values ``b / 255`` for the bytes ``b``, divided on the CPU, on ``device``.

    Indexing this table converts ``uint8`` pixels to [0, 1] with the same bits on every device
    (a copy of a tensor never changes its values); it is built once per device.
    """
    device = torch.device(device)
    table = _BYTE_TABLES.get(device)
    if table is None:
        table = (torch.arange(256, dtype=torch.float32) / 255.0).to(device)
        _BYTE_TABLES[device] = table
    return table


class LabeledImages:
    """Images ``(N, C, H, W)`` and integer labels ``(N,)`` held in memory.

    Images are either ``uint8`` (0-255) or floating point in [0, 1]; :meth:`pixels` always returns
    float32 pixels in [0, 1], so perturbation radii stay in pixel units.

    Args:
        images: the image tensor.
        labels: the label tensor (int64 values in ``[0, num_classes)``).
        num_classes: the number of classes.
        name: a short name for messages and logs.
        positions: each example's position in the set this one was taken from (int64, shape
            ``(N,)``; default ``0, 1, ..., N - 1``). :meth:`subset` records them, so the two
            halves of a search split name their examples by their place in the training set
            they were split from (the ``index`` of :meth:`~rnasframe.data.BatchLoader.epoch`).
    """

    def __init__(
        self, images: Tensor, labels: Tensor, num_classes: int, name: str = "dataset", positions: Optional[Tensor] = None
    ) -> None:
        if images.dim() != 4:
            raise ValueError(f"{name}: images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{name}: labels must have shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}"
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise TypeError(f"{name}: images must be uint8 or floating point, got {images.dtype}")
        if images.is_floating_point() and images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"{name}: floating-point images must lie in [0, 1]")
        if num_classes < 1 or (labels.numel() and (labels.min() < 0 or labels.max() >= num_classes)):
            raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got num_classes={num_classes}")
        if positions is not None and positions.shape != labels.shape:
            raise ValueError(f"{name}: positions must have shape {tuple(labels.shape)}, got {tuple(positions.shape)}")
        self.images = images
        self.labels = labels.long()
        self.positions = torch.arange(len(labels)) if positions is None else positions.long()
        self.num_classes = int(num_classes)
        self.name = name

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def pixels(self, index: Tensor) -> Tensor:
        """Return the images at ``index`` as float32 pixels in [0, 1].

        ``uint8`` values are looked up in :func:`byte_to_unit`'s table, so that the pixels are the
        same bits on every device (CUDA divides by a scalar as a product with its reciprocal,
        which rounds 126 of the 256 byte values differently from the CPU's division).
        """
        batch = self.images[index]
        if batch.dtype == torch.uint8:
            return byte_to_unit(batch.device)[batch.long()]
        return batch.float()

    def subset(self, index: Tensor, name: str = "") -> "LabeledImages":
        """Return the examples at ``index`` as a new set; its :attr:`positions` are their places in this one."""
        positions = torch.arange(len(self))[index.cpu()]
        return LabeledImages(self.images[index], self.labels[index], self.num_classes, name or self.name, positions)

    def channel_statistics(self) -> Tuple[Sequence[float], Sequence[float]]:
        """Per-channel mean and standard deviation of the pixels, in [0, 1] units."""
        chunks = torch.arange(len(self)).split(4096)
        total = torch.zeros(self.shape[0], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for chunk in chunks:
            pixels = self.pixels(chunk).double()
            total += pixels.sum(dim=(0, 2, 3))
            total_sq += (pixels * pixels).sum(dim=(0, 2, 3))
            count += pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
        mean = total / max(count, 1)
        std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()

    def input_spec(self) -> InputSpec:
        """The :class:`~rnasframe.interfaces.InputSpec` (shape and normalization) of these images."""
        mean, std = self.channel_statistics()
        return InputSpec(self.shape, mean, std)
