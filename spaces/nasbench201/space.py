"""The NAS-Bench-201 search space as a :class:`~rnasframe.interfaces.SearchSpace`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import attrs
import gin
import numpy as np

from rnasframe import validation
from rnasframe.interfaces.search_space import InputSpec, Picture, SearchSpace
from rnasframe.spaces.nasbench201.genotypes import (
    EDGES,
    OPERATIONS,
    NasBench201Genotype,
    genotype_from_dict,
    genotype_from_text,
    genotype_to_dict,
    parse_architecture,
)
from rnasframe.spaces.nasbench201.network import NasBench201Network
from rnasframe.spaces.nasbench201.robustness_data import RobustnessDataset
from rnasframe.spaces.nasbench201.supernet import NasBench201Supernet
from rnasframe.validation import positive_int

__all__ = ["NasBench201Space"]


def _check_num_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")


def _as_genotype(genotype: Union[NasBench201Genotype, str]) -> NasBench201Genotype:
    if isinstance(genotype, NasBench201Genotype):
        return genotype
    if isinstance(genotype, str):
        return parse_architecture(genotype)
    raise TypeError(
        f"a NAS-Bench-201 genotype must be a NasBench201Genotype or an architecture string, got "
        f"{type(genotype).__name__}: {genotype!r}"
    )


@gin.configurable
@attrs.define(frozen=True)
class NasBench201Space(SearchSpace):
    """NAS-Bench-201 (Dong & Yang, ICLR 2020): a 4-node cell with
    :data:`~rnasframe.spaces.nasbench201.genotypes.OPERATIONS` on its 6 edges.

    The supernet (:class:`~rnasframe.spaces.nasbench201.supernet.NasBench201Supernet`) and the
    stand-alone network (:class:`~rnasframe.spaces.nasbench201.network.NasBench201Network`) share
    the macro network: stem, three stages of ``cells_per_stage`` cells at ``C``, ``2C``, ``4C``
    channels with stride-2 residual blocks between them, classifier. NAS-Bench-201 searches and
    trains at the same size (``C = 16``, ``N = 5``). A genotype is a
    :class:`~rnasframe.spaces.nasbench201.genotypes.NasBench201Genotype`; its string form is NAS-Bench-201's
    architecture string.

    Args:
        channels: ``C`` of the supernet.
        cells_per_stage: ``N`` of the supernet.
        network_channels: ``C`` of the stand-alone network.
        network_cells_per_stage: ``N`` of the stand-alone network.
        channels_last: run the supernet on channels-last tensors (faster on CPU; same numbers).
        robustness_dataset: Jung et al.'s tabulated robustness; when bound,
            :meth:`~rnasframe.spaces.nasbench201.space.NasBench201Space.genotype_metrics` returns the derived cell's
            clean, FGSM and PGD accuracy.
    """

    channels: int = attrs.field(default=16, validator=positive_int)
    cells_per_stage: int = attrs.field(default=5, validator=positive_int)
    network_channels: int = attrs.field(default=16, validator=positive_int)
    network_cells_per_stage: int = attrs.field(default=5, validator=positive_int)
    channels_last: bool = attrs.field(default=True, validator=validation.boolean)
    robustness_dataset: Optional[RobustnessDataset] = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(RobustnessDataset))
    )

    def supernet(self, num_classes: int = 10, input_spec: Optional[InputSpec] = None) -> NasBench201Supernet:
        """Build a freshly initialized supernet (in training mode); alpha is ``1e-3 * N(0, 1)``."""
        _check_num_classes(num_classes)
        return NasBench201Supernet(
            num_classes=num_classes, channels=self.channels, cells_per_stage=self.cells_per_stage,
            input_spec=input_spec, channels_last=self.channels_last,
        )

    def network(
        self, genotype: Union[NasBench201Genotype, str], num_classes: int = 10, input_spec: Optional[InputSpec] = None
    ) -> NasBench201Network:
        """Build the stand-alone network of ``genotype`` (a NasBench201Genotype or an architecture string).

        Its parameter count equals NAS-Bench-201's ``TinyNetwork`` for every architecture.

        Raises:
            ValueError: for an invalid architecture string or number of classes.
            TypeError: for a genotype that is neither a NasBench201Genotype nor a string.
        """
        _check_num_classes(num_classes)
        return NasBench201Network(
            _as_genotype(genotype), num_classes=num_classes, channels=self.network_channels,
            cells_per_stage=self.network_cells_per_stage, input_spec=input_spec,
        )

    def genotype_to_dict(self, genotype: Union[NasBench201Genotype, str]) -> Dict[str, Any]:
        """``{"arch_str": <architecture string>}``, the form stored in ``genotype.json``."""
        return genotype_to_dict(_as_genotype(genotype))

    def genotype_from_dict(self, data: Mapping[str, Any]) -> NasBench201Genotype:
        """Inverse of :meth:`genotype_to_dict` (raises :class:`ValueError` on invalid content)."""
        return genotype_from_dict(data)

    def resolve_genotype(self, text: str) -> NasBench201Genotype:
        """Read NAS-Bench-201's architecture string, or the JSON text of :meth:`genotype_to_dict`.

        Raises:
            ValueError: neither form; the message shows the expected string format.
        """
        return genotype_from_text(text)

    def genotype_metrics(self, genotype: NasBench201Genotype) -> Mapping[str, float]:
        """The cell's ``skip_connect`` count and its tabulated accuracies from :attr:`robustness_dataset`.

        Key ``"cell_skip_connect"`` always (a cell of skip connections is DARTS' collapse on this
        space too); with data bound also ``"<data set>/clean"``, ``"<data set>/fgsm@Linf"``,
        ``"<data set>/pgd@Linf"`` (see
        :meth:`~rnasframe.spaces.nasbench201.robustness_data.RobustnessDataset.summary`).
        """
        genotype = _as_genotype(genotype)
        metrics = {"cell_skip_connect": float(sum(op == "skip_connect" for op in genotype.operations))}
        if self.robustness_dataset is not None:
            metrics.update(self.robustness_dataset.summary(genotype))
        return metrics

    def save_pictures(
        self,
        genotype: NasBench201Genotype,
        alpha_history: Mapping[str, Sequence[Any]],
        folder: Union[str, "os.PathLike[str]"],
    ) -> List[Picture]:
        """Draw the cell (``cell.png``, tag ``"cell"``) and softmax(alpha) over the epochs
        (``alpha_cell.png``, tag ``"alpha/cell"``, when the history has an epoch) into ``folder``.

        Raises:
            ValueError: a history entry other than ``"cell"`` or of a shape other than ``(6, 5)``.
        """
        from rnasframe.spaces.nasbench201 import plot  # matplotlib only when pictures are drawn

        expected = (len(EDGES), len(OPERATIONS))
        for name, history in alpha_history.items():
            if name != "cell":
                raise ValueError(f"alpha_history has {name!r}; NAS-Bench-201 has one alpha, named 'cell'")
            for epoch, weights in enumerate(history):
                if tuple(np.shape(weights)) != expected:
                    raise ValueError(
                        f"alpha_history['cell'][{epoch}] must have shape {expected} (edges x operations), "
                        f"got {tuple(np.shape(weights))}"
                    )
        folder = Path(folder)
        pictures = [Picture("cell", plot.draw_cell(_as_genotype(genotype), folder / "cell.png"))]
        history = alpha_history.get("cell", [])
        if len(history) > 0:
            pictures.append(Picture("alpha/cell", plot.plot_alpha_evolution(history, folder / "alpha_cell.png")))
        return pictures
