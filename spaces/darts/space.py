"""The DARTS search space as a :class:`~rnasframe.interfaces.SearchSpace`."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import attrs
import gin
import numpy as np
from torch import nn

from rnasframe.interfaces.search_space import InputSpec, Picture, SearchSpace
from rnasframe.spaces.darts.genotypes import (
    PRIMITIVES,
    Genotype,
    genotype_from_dict,
    genotype_to_dict,
    num_edges,
    parse_genotype,
    validate_genotype,
)
from rnasframe.spaces.darts.network import DartsNetwork
from rnasframe.spaces.darts.supernet import DartsSupernet, SupernetOptions
from rnasframe.validation import boolean, in_closed_range, positive_int

__all__ = ["DartsSpace", "DartsNetworkConfig"]


@gin.configurable
@attrs.define(frozen=True)
class DartsNetworkConfig:
    """How :meth:`DartsSpace.network` builds the stand-alone network of a genotype.

    Defaults are DARTS' CIFAR-10 evaluation (the paper's section 4.2): 20 cells of 36 initial
    channels, the auxiliary head, drop path 0.3 ramped linearly over the epochs by
    :meth:`DartsSpace.set_epoch`. In gin: ``DartsNetworkConfig.channels = 36``.

    Args:
        channels: ``C``, channels of the first cells.
        layers: number of cells (reductions at 1/3 and 2/3 of the depth).
        auxiliary: whether to build the auxiliary head (its loss weight is the training
            objective's ``auxiliary_weight``).
        drop_path_prob: drop path probability of the last epoch; epoch ``e`` of ``E`` (from 0)
            uses ``drop_path_prob * e / E``.
    """

    channels: int = attrs.field(default=36, validator=positive_int)
    layers: int = attrs.field(default=20, validator=positive_int)
    auxiliary: bool = attrs.field(default=True, validator=boolean)
    drop_path_prob: float = attrs.field(default=0.3, validator=in_closed_range(0.0, 0.99, "a probability below 1"))


def _multiplier_at_most_steps(
    instance: "DartsSpace", attribute: "attrs.Attribute[int]", value: int
) -> None:
    positive_int(instance, attribute, value)
    if value > instance.steps:
        raise ValueError(
            f"DartsSpace.multiplier must be <= steps ({instance.steps}): a cell concatenates at "
            f"most its intermediate nodes, got {value!r}"
        )


def _check_num_classes(num_classes: Any) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")


@gin.configurable
@attrs.define(frozen=True)
class DartsSpace(SearchSpace):
    """The cell-based DARTS space (Liu et al., 2019) with :data:`PRIMITIVES` on every edge.

    The supernet is :class:`~rnasframe.spaces.darts.supernet.DartsSupernet` (8 cells of
    ``C = 16`` channels by default) and a genotype is a
    :class:`~rnasframe.spaces.darts.genotypes.Genotype`, trained stand-alone as
    :class:`~rnasframe.spaces.darts.network.DartsNetwork` (20 cells of 36 channels by default).

    Args:
        channels: ``C`` of the supernet.
        layers: number of supernet cells.
        steps: intermediate nodes per cell (genotypes must have as many).
        multiplier: number of last nodes concatenated into a supernet cell's output
            (``<= steps``); derived genotypes concatenate the same nodes.
        stem_multiplier: the stems of the supernet and of the stand-alone network output
            ``stem_multiplier * C`` channels.
        options: how the supernet computes its forward pass (default: the fast path, exactly
            equivalent to the plain one; ``SupernetOptions.plain()`` is DARTS' straightforward
            implementation). Parameters and ``state_dict`` keys do not depend on it. In gin:
            ``SupernetOptions.channels_last = False``, or ``DartsSpace.options = @SupernetOptions()``.
        network_config: how stand-alone networks are built (width, depth, auxiliary head,
            drop path; default: DARTS' CIFAR-10 evaluation, :class:`DartsNetworkConfig`).
    """

    channels: int = attrs.field(default=16, validator=positive_int)
    layers: int = attrs.field(default=8, validator=positive_int)
    steps: int = attrs.field(default=4, validator=positive_int)
    multiplier: int = attrs.field(default=4, validator=_multiplier_at_most_steps)
    stem_multiplier: int = attrs.field(default=3, validator=positive_int)
    options: SupernetOptions = attrs.field(
        factory=SupernetOptions, validator=attrs.validators.instance_of(SupernetOptions)
    )
    network_config: DartsNetworkConfig = attrs.field(
        factory=DartsNetworkConfig, validator=attrs.validators.instance_of(DartsNetworkConfig)
    )

    def supernet(
        self, num_classes: int = 10, input_spec: Optional[InputSpec] = None
    ) -> DartsSupernet:
        """Build a freshly initialized supernet.

        Args:
            num_classes: number of classes.
            input_spec: input shape and normalization (default: 3x32x32, identity normalization).

        Returns:
            The supernet, in training mode.
        """
        _check_num_classes(num_classes)
        return DartsSupernet(
            num_classes=num_classes,
            channels=self.channels,
            layers=self.layers,
            steps=self.steps,
            multiplier=self.multiplier,
            stem_multiplier=self.stem_multiplier,
            input_spec=input_spec,
            options=self.options,
        )

    def network(
        self, genotype: Genotype, num_classes: int = 10, input_spec: Optional[InputSpec] = None
    ) -> DartsNetwork:
        """Build the stand-alone network of ``genotype`` as :attr:`network_config` says.

        Drop path starts at 0; :meth:`set_epoch` sets it for each training epoch.

        Args:
            genotype: the architecture; it must have :attr:`steps` intermediate nodes per cell.
            num_classes: number of classes.
            input_spec: input shape and normalization (default: 3x32x32, identity normalization).

        Returns:
            The network, in training mode.

        Raises:
            ValueError: for an invalid genotype, a wrong number of nodes or invalid sizes.
        """
        _check_num_classes(num_classes)
        checked = validate_genotype(genotype, steps=self.steps)
        config = self.network_config
        return DartsNetwork(
            checked,
            num_classes=num_classes,
            channels=config.channels,
            layers=config.layers,
            auxiliary=config.auxiliary,
            drop_path_prob=0.0,
            stem_multiplier=self.stem_multiplier,
            input_spec=input_spec,
        )

    def set_epoch(self, network: nn.Module, epoch: int, epochs: int) -> None:
        """DARTS' drop path schedule: epoch ``epoch`` (from 0) of ``epochs`` uses ``p * epoch / epochs``.

        ``p`` is :attr:`network_config`'s ``drop_path_prob``.

        Raises:
            TypeError: ``network`` is not a :class:`DartsNetwork`.
            ValueError: ``epoch`` is not in ``[0, epochs)``.
        """
        if not isinstance(network, DartsNetwork):
            raise TypeError(
                f"DartsSpace.set_epoch needs a DartsNetwork (built by network()), got {type(network).__name__}"
            )
        if not 0 <= epoch < epochs:
            raise ValueError(f"epoch must be in [0, epochs={epochs}), got {epoch}")
        network.drop_path_prob = self.network_config.drop_path_prob * epoch / epochs

    def genotype_to_dict(self, genotype: Genotype) -> Dict[str, Any]:
        """Return the JSON-serializable form of ``genotype``.

        See :func:`~rnasframe.spaces.darts.genotypes.genotype_to_dict`.

        Raises:
            ValueError: for an invalid genotype or a number of intermediate nodes other than
                :attr:`steps`.
        """
        validate_genotype(genotype, steps=self.steps)
        return genotype_to_dict(genotype)

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Genotype:
        """Rebuild and validate a genotype from :meth:`genotype_to_dict`'s output.

        Raises:
            ValueError: for missing keys, unknown operations, bad indices or a number of
                intermediate nodes other than :attr:`steps`.
        """
        return genotype_from_dict(data, steps=self.steps)

    def resolve_genotype(self, text: str) -> Genotype:
        """Read a genotype written as text: a published name, the JSON form or DARTS' printed form.

        See :func:`~rnasframe.spaces.darts.genotypes.parse_genotype`: ``"DARTS_V2"`` (the names of
        :data:`~rnasframe.spaces.darts.genotypes.PUBLISHED`), the JSON text of
        :meth:`genotype_to_dict`, or ``str(genotype)`` (``Genotype(normal=[...], ...)``, also with
        ``range(2, 6)`` as DARTS' logs print it).

        Raises:
            ValueError: for an unknown name (the known ones are listed), unreadable text, or a
                genotype with other than :attr:`steps` intermediate nodes.
        """
        return parse_genotype(text, steps=self.steps)

    def genotype_metrics(self, genotype: Genotype) -> Mapping[str, float]:
        """The number of ``skip_connect`` edges kept in each derived cell.

        Keys ``"normal_skip_connect"`` and ``"reduce_skip_connect"``. DARTS' best-known failure is a
        normal cell that fills up with skip connections as the search goes on (Zela et al., 2020;
        Chu et al., 2021), so the count is logged after every epoch.
        """
        return {
            "normal_skip_connect": float(sum(op == "skip_connect" for op, _ in genotype.normal)),
            "reduce_skip_connect": float(sum(op == "skip_connect" for op, _ in genotype.reduce)),
        }

    def save_pictures(
        self,
        genotype: Genotype,
        alpha_history: Mapping[str, Sequence[Any]],
        folder: Union[str, "os.PathLike[str]"],
    ) -> List[Picture]:
        """Draw both cells of ``genotype`` and the evolution of softmax(alpha) into ``folder``.

        Writes ``cell_normal.png`` and ``cell_reduce.png`` (tags ``"cell/normal"``,
        ``"cell/reduce"``; see :func:`~rnasframe.spaces.darts.plot.draw_cell`) and one
        ``alpha_<name>.png`` (tag ``"alpha/<name>"``; see
        :func:`~rnasframe.spaces.darts.plot.plot_alpha_evolution`) per entry of ``alpha_history``
        with at least one epoch, replacing older ones.

        Args:
            genotype: the derived architecture; it must have :attr:`steps` intermediate nodes.
            alpha_history: ``"normal"`` and ``"reduce"`` (the supernet's
                ``arch_parameter_names``) to the softmax of that alpha after each epoch, arrays
                of shape ``(num_edges(steps), len(PRIMITIVES))``; may be empty.
            folder: the folder to write into (created if missing).

        Returns:
            The pictures written: the two cells, then the alpha plots.

        Raises:
            ValueError: for an invalid genotype or a history of the wrong shape.
        """
        from rnasframe.spaces.darts import plot  # matplotlib is only imported when pictures are drawn

        checked = validate_genotype(genotype, steps=self.steps)
        expected = (num_edges(self.steps), len(PRIMITIVES))
        for name, history in alpha_history.items():
            for epoch, weights in enumerate(history):
                if tuple(np.shape(weights)) != expected:
                    raise ValueError(
                        f"alpha_history[{name!r}][{epoch}] must have shape {expected} (edges of a "
                        f"{self.steps}-node cell x primitives), got {tuple(np.shape(weights))}"
                    )
        paths = plot.save_cells(checked, folder) + plot.save_alpha_evolution(alpha_history, PRIMITIVES, folder)
        return [Picture(tag=path.stem.replace("_", "/", 1), path=path) for path in paths]
