"""Evaluation helpers shared by the search and training loops."""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["evaluate_natural"]


@torch.no_grad()
def evaluate_natural(
    model: nn.Module, batches: Iterable[Tuple[Tensor, Tensor]], max_batches: Optional[int] = None
) -> Dict[str, float]:
    """Cross-entropy and accuracy of ``model`` in eval mode on ``batches``; the mode is restored.

    Returns:
        ``{"loss": ..., "natural_acc": ..., "examples": ...}``.
    """
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.float64)
    count = 0
    try:
        for index, (x, y) in enumerate(batches):
            if max_batches is not None and index >= max_batches:
                break
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            correct += (logits.argmax(dim=1) == y).sum().double().cpu()
            count += int(y.shape[0])
    finally:
        model.train(was_training)
    if count == 0:
        return {"loss": float("nan"), "natural_acc": float("nan"), "examples": 0}
    return {"loss": float(total_loss) / count, "natural_acc": float(correct) / count, "examples": count}
