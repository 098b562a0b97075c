"""Small building blocks shared by search spaces."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["Normalize"]


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a model's first layer.

    Keeping normalization inside the model lets data stay in [0, 1], so perturbation radii are in
    pixel units, as in the paper (epsilon = 0.031 ~ 8/255).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        if (std_t <= 0).any():
            raise ValueError(f"Normalize.std must be > 0 for every channel, got {list(std)}")
        # Non-persistent: derived from the data, not learned; kept out of state_dict.
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("inv_std", 1.0 / std_t, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return the normalized batch."""
        return (x - self.mean) * self.inv_std
