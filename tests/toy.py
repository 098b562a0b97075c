"""A tiny, fully differentiable supernet for tests of the objective and the optimizers."""

from __future__ import annotations

from typing import Any, Iterator, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from rnasframe.interfaces import InputSpec, SearchSpace, Supernet


class ToySupernet(Supernet):
    """``logits = sum_k softmax(alpha)_k * tanh(x W_k) V`` on flattened inputs: two candidate ops."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 5, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.ops = nn.ModuleList(
            nn.Linear(in_features, hidden, dtype=dtype) for _ in range(2)
        )
        self.head = nn.Linear(hidden, num_classes, dtype=dtype)
        self.alpha = nn.Parameter(0.1 * torch.randn(1, 2, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1).to(self.alpha.dtype)
        mix = torch.softmax(self.alpha, dim=-1)[0]
        hidden = sum(mix[k] * torch.tanh(op(x)) for k, op in enumerate(self.ops))
        return self.head(hidden)

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        for name, parameter in self.named_parameters():
            if name != "alpha":
                yield parameter

    def arch_parameters(self) -> Sequence[nn.Parameter]:
        return [self.alpha]

    def genotype(self) -> List[int]:
        return [int(self.alpha.argmax())]


class ToySpace(SearchSpace):
    """A search space whose supernet is :class:`ToySupernet`."""

    def supernet(self, num_classes: int, input_spec: Optional[InputSpec] = None) -> Supernet:
        spec = input_spec or InputSpec()
        features = spec.shape[0] * spec.shape[1] * spec.shape[2]
        return ToySupernet(features, num_classes, dtype=torch.float32)

    def network(self, genotype: Any, num_classes: int, input_spec: Optional[InputSpec] = None) -> nn.Module:
        raise NotImplementedError

    def genotype_to_dict(self, genotype: Any) -> Mapping[str, Any]:
        return {"ops": list(genotype)}

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
        return list(data["ops"])
