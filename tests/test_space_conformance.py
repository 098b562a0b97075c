"""The conformance kit for search spaces: DARTS and the tiny space pass it, broken spaces fail it by name."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Union

import pytest
import torch
from torch import Tensor, nn

from rnasframe.interfaces import InputSpec, NetworkOutput, Picture
from rnasframe.spaces.darts import DartsSpace
from rnasframe.testing import SPACE_CHECKS, ConformanceError, check_search_space

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:  # the same folder parse_gin adds for the gin `import` statement
    sys.path.append(str(EXAMPLES))

from tiny_space import ChainGenotype, TinyNetwork, TinySpace, TinySupernet  # noqa: E402


@pytest.mark.slow
def test_darts_space_passes_the_kit() -> None:
    # 3 cells: one normal and two reduction cells, so that both alphas are used
    check_search_space(DartsSpace(channels=4, layers=3), input_spec=InputSpec((3, 32, 32)), num_classes=10)


def test_tiny_space_passes_the_kit_and_leaves_the_random_generators_alone() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_search_space(TinySpace(channels=4, edges=2), input_spec=InputSpec((1, 6, 6)), num_classes=4)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- broken spaces


class SharedAlpha(TinySpace):
    """Lists alpha among the weights too."""

    def supernet(self, num_classes: int, input_spec: Any = None) -> TinySupernet:
        supernet = super().supernet(num_classes, input_spec)
        supernet.weight_parameters = lambda: iter([*supernet.body.parameters(), supernet.alpha])  # type: ignore
        return supernet


class DetachedAlpha(TinySpace):
    def supernet(self, num_classes: int, input_spec: Any = None) -> TinySupernet:
        supernet = super().supernet(num_classes, input_spec)
        supernet.alpha.requires_grad_(False)
        return supernet


class WrongOpNames(TinySpace):
    def supernet(self, num_classes: int, input_spec: Any = None) -> TinySupernet:
        class Named(TinySupernet):
            @property
            def op_names(self) -> Sequence[str]:
                return ["conv_3x3", "skip"]

        return Named(self.edges, self.channels, num_classes, input_spec or InputSpec())


class LossyDict(TinySpace):
    def genotype_from_dict(self, data: Mapping[str, Any]) -> ChainGenotype:
        return ChainGenotype(["skip"] * self.edges)


class NotJson(TinySpace):
    def genotype_to_dict(self, genotype: ChainGenotype) -> Mapping[str, Any]:
        return {"ops": genotype.ops, "when": object()}


class AuxInEval(TinySpace):
    """Returns a NetworkOutput in eval mode too."""

    def network(self, genotype: ChainGenotype, num_classes: int, input_spec: Any = None) -> nn.Module:  # type: ignore[override]
        inner = super().network(genotype, num_classes, input_spec)

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: Tensor) -> Union[Tensor, NetworkOutput]:
                logits = self.inner(x)
                return NetworkOutput(logits, logits)

        return Wrapped()


class WrongClasses(TinySpace):
    def network(self, genotype: ChainGenotype, num_classes: int, input_spec: Any = None) -> TinyNetwork:
        return super().network(genotype, num_classes + 1, input_spec)


class PathsNotPictures(TinySpace):
    def save_pictures(self, genotype: Any, alpha_history: Any, folder: Any) -> List[Picture]:
        return [picture.path for picture in super().save_pictures(genotype, alpha_history, folder)]  # type: ignore


class MissingPicture(TinySpace):
    def save_pictures(self, genotype: Any, alpha_history: Any, folder: Any) -> List[Picture]:
        return [Picture("cell/chain", Path(folder) / "never_written.png")]


class TextMetrics(TinySpace):
    def genotype_metrics(self, genotype: Any) -> Mapping[str, float]:
        return {"accuracy": "93%"}  # type: ignore[dict-item]


class CrashingEpoch(TinySpace):
    def set_epoch(self, network: nn.Module, epoch: int, epochs: int) -> None:
        raise RuntimeError("no schedule\nsecond line")


class FreshEveryTime(TinySpace):
    """Builds networks whose outputs do not depend on their state_dict (a buffer that is not registered)."""

    def network(self, genotype: ChainGenotype, num_classes: int, input_spec: Any = None) -> TinyNetwork:
        network = super().network(genotype, num_classes, input_spec)
        noise = torch.randn(num_classes)
        original = network.forward
        network.forward = lambda x: original(x) + noise  # type: ignore[method-assign]
        return network


@pytest.mark.parametrize(
    "space, check, detail",
    [
        (SharedAlpha(), "parameters", "both arch and weight parameters"),
        (DetachedAlpha(), "supernet forward/backward", "arch parameter 'chain' got no finite gradient"),
        (WrongOpNames(), "alpha shapes", "shape (3, 3), but op_names lists 2 operations"),
        (LossyDict(), "genotype round trip", "genotype_from_dict(genotype_to_dict(g)) changed the genotype"),
        (NotJson(), "genotype round trip", "not JSON-serializable"),
        (AuxInEval(), "network forward/backward", "in eval mode returned NetworkOutput"),
        (WrongClasses(), "network forward/backward", "logits of shape (2, 4), expected (2, 3)"),
        (CrashingEpoch(), "set_epoch", "RuntimeError: no schedule"),
        (FreshEveryTime(), "state_dict round trip", "a fresh network loaded with state_dict() computes other logits"),
        (PathsNotPictures(), "save_pictures", "not a Picture"),
        (MissingPicture(), "save_pictures", "never_written.png is not a non-empty file"),
        (TextMetrics(), "genotype_metrics", "'accuracy': '93%', not a finite float"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, TinySpace) else "",
)
def test_a_broken_space_fails_one_named_check_in_one_line(space: TinySpace, check: str, detail: str) -> None:
    assert check in SPACE_CHECKS
    with pytest.raises(ConformanceError) as failure:
        check_search_space(space, input_spec=InputSpec((1, 5, 5)))
    message = str(failure.value)
    assert message.startswith(f"{type(space).__name__} fails {check}: ") and detail in message, message
    assert "\n" not in message


def test_bad_arguments_of_the_kit_are_value_errors() -> None:
    with pytest.raises(ValueError, match="needs a SearchSpace, got str"):
        check_search_space("DARTS")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        check_search_space(TinySpace(), num_classes=1)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        check_search_space(TinySpace(), batch_size=1)
