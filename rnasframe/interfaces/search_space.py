"""Search spaces: a supernet to search in and the stand-alone network of a genotype."""

from __future__ import annotations

import abc
import json
import os
from pathlib import Path
from typing import Any, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import attrs
from torch import Tensor, nn

__all__ = ["SearchSpace", "Supernet", "InputSpec", "NetworkOutput", "Picture", "split_output"]

#: ``(channels, height, width)`` of one input image.
InputShape = Tuple[int, int, int]


class InputSpec:
    """What a search space needs to know about the data: image shape and normalization.

    Args:
        shape: ``(channels, height, width)`` of one image.
        mean: per-channel mean used by the model's first layer (pixels in [0, 1]).
        std: per-channel standard deviation used by the model's first layer.
    """

    def __init__(
        self,
        shape: InputShape = (3, 32, 32),
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
    ) -> None:
        if len(shape) != 3 or any(int(s) < 1 for s in shape):
            raise ValueError(f"InputSpec.shape must be (channels, height, width) of positive ints, got {shape!r}")
        channels = int(shape[0])
        mean = tuple(float(m) for m in (mean if mean is not None else (0.0,) * channels))
        std = tuple(float(s) for s in (std if std is not None else (1.0,) * channels))
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"InputSpec: mean and std need one value per channel ({channels}), got {mean!r} and {std!r}"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"InputSpec.std must be > 0 for every channel, got {std!r}")
        self.shape: InputShape = (channels, int(shape[1]), int(shape[2]))
        self.mean: Tuple[float, ...] = mean
        self.std: Tuple[float, ...] = std

    def __repr__(self) -> str:
        return f"InputSpec(shape={self.shape}, mean={self.mean}, std={self.std})"


class NetworkOutput(NamedTuple):
    """What a network with an auxiliary head returns in training mode.

    Like torchvision's ``GoogLeNetOutputs``: networks return plain logits in evaluation mode and
    whenever they have no auxiliary head, so attacks and metrics see a tensor; training losses
    call :func:`split_output` to get both. ``logits`` are the main classifier's,
    ``(batch, classes)``; ``aux_logits`` the auxiliary classifier's, or ``None``.
    """

    logits: Tensor
    aux_logits: Optional[Tensor]


def split_output(output: Union[Tensor, NetworkOutput]) -> Tuple[Tensor, Optional[Tensor]]:
    """Return ``(logits, aux_logits)`` of a model's output, ``aux_logits`` ``None`` for a plain tensor."""
    if isinstance(output, NetworkOutput):
        return output.logits, output.aux_logits
    if isinstance(output, Tensor):
        return output, None
    raise TypeError(f"a model must return a Tensor or a NetworkOutput, got {type(output).__name__}")


@attrs.frozen
class Picture:
    """A picture a search space drew into the run folder, with the tag to log it under.

    Attributes:
        tag: the tensorboardX tag, e.g. ``"cell/normal"`` or ``"alpha/normal"``.
        path: the PNG file.
    """

    tag: str
    path: Path = attrs.field(converter=Path)


class Supernet(nn.Module, abc.ABC):
    """A network that contains every architecture of a space, weighted by architecture parameters.

    Inputs are pixels in [0, 1]; normalization is the supernet's first layer.
    """

    @abc.abstractmethod
    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Yield the ordinary weights ``w`` (everything but the architecture parameters)."""

    @abc.abstractmethod
    def arch_parameters(self) -> Sequence[nn.Parameter]:
        """Return the architecture parameters ``alpha`` (each a tensor whose last axis is softmaxed)."""

    @abc.abstractmethod
    def genotype(self) -> Any:
        """Return the discrete architecture derived from the current ``alpha``."""

    @property
    def arch_parameter_names(self) -> Sequence[str]:
        """One name per tensor of :meth:`arch_parameters`, used in logs (default: ``"0"``, ``"1"``, ...)."""
        return [str(i) for i in range(len(self.arch_parameters()))]

    @property
    def op_names(self) -> Optional[Sequence[str]]:
        """Names of the candidates along the last axis of every ``alpha`` (``None``: use indices)."""
        return None


class SearchSpace(abc.ABC):
    """A family of architectures: builds the supernet and the stand-alone network of a genotype."""

    @abc.abstractmethod
    def supernet(self, num_classes: int, input_spec: Optional[InputSpec] = None) -> Supernet:
        """Build a freshly initialized supernet for ``num_classes`` classes and ``input_spec`` inputs."""

    @abc.abstractmethod
    def network(self, genotype: Any, num_classes: int, input_spec: Optional[InputSpec] = None) -> nn.Module:
        """Build the stand-alone network of ``genotype`` (trained from scratch after the search).

        Width, depth, auxiliary head and similar options are the space's own network
        configuration (fields of the space, bound in gin), never arguments from the core. In
        training mode a network with an auxiliary head returns a :class:`NetworkOutput`.
        """

    @abc.abstractmethod
    def genotype_to_dict(self, genotype: Any) -> Mapping[str, Any]:
        """Return a JSON-serializable description of ``genotype``."""

    @abc.abstractmethod
    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Inverse of :meth:`genotype_to_dict`; raises :class:`ValueError` on invalid content."""

    def resolve_genotype(self, text: str) -> Any:
        """Return the genotype written as ``text`` in this space's own notation.

        The default accepts the JSON text of :meth:`genotype_to_dict`; spaces add their published
        names (``DARTS_V2``) or architecture strings. Raises :class:`ValueError` naming what is
        allowed.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(
                f"{type(self).__name__} cannot read the genotype {text!r}: expected the JSON form of "
                f"genotype_to_dict"
            ) from None
        if not isinstance(data, Mapping):
            raise ValueError(f"{type(self).__name__}: a genotype's JSON form is an object, got {text!r}")
        return self.genotype_from_dict(data)

    def set_epoch(self, network: nn.Module, epoch: int, epochs: int) -> None:  # noqa: B027 - optional hook, no-op default
        """Prepare ``network`` (built by :meth:`network`) for training epoch ``epoch`` of ``epochs``.

        The trainer calls it before every epoch so that a space can run its own schedules (DARTS'
        drop path probability, for example) without the trainer knowing them. The default does
        nothing.
        """

    def genotype_metrics(self, genotype: Any) -> Mapping[str, float]:
        """Return numbers known about ``genotype`` without training it (default: none).

        The search logs them after every epoch and stores the last ones in ``results.json``; a
        space with a tabulated benchmark returns the derived architecture's tabulated accuracies.
        """
        return {}

    def save_pictures(
        self,
        genotype: Any,
        alpha_history: Mapping[str, Sequence[Any]],
        folder: Union[str, "os.PathLike[str]"],
    ) -> List[Picture]:
        """Draw pictures of a search's state into ``folder`` (optional; the default draws none).

        The search engine calls this after each epoch with the run folder, so that a space can
        leave pictures there (of the derived cells, of how the architecture weights evolved) and
        the engine can log each under its tag, without knowing anything about the space.
        Overriding it is optional; pictures that already exist in ``folder`` should be replaced.

        Args:
            genotype: the architecture derived so far (the space's genotype type).
            alpha_history: one entry per tensor of the supernet's
                :meth:`~Supernet.arch_parameters`, keyed by its
                :attr:`~Supernet.arch_parameter_names`: the softmax of that tensor after each
                epoch so far, oldest first (arrays or tensors, the tensor's shape each).
            folder: the folder to write into (it may not exist yet).

        Returns:
            The pictures written (PNG files with their tags), ``[]`` when the space draws none.
        """
        return []
