"""One seed for Python, NumPy and torch (CPU and CUDA)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "epoch_seed", "resolve_device"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU and CUDA generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of one process' epoch in a data-parallel run: distinct per (seed, rank, epoch).

    Every rank draws its own random numbers (augmentation of its shard aside: drop path, PGD's
    random start, uniform noise), reproducibly, so that a run resumed at an epoch boundary repeats
    the uninterrupted one bit for bit. The multipliers are primes, so that nearby ranks and epochs
    of nearby seeds do not collide.
    """
    return seed + 1_000_003 * rank + 7_919 * epoch


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; other names are passed to :class:`torch.device`.

    Raises:
        ValueError: the name is not a device, asks for CUDA where there is none, or names a GPU
            index this process does not see.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} was asked for, but CUDA is not available on this machine; use 'auto' or 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r} was asked for, but this process sees {torch.cuda.device_count()} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use 'cuda' or "
            f"'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}'"
        )
    return device
