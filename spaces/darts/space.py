"""The DARTS search space as a :class:`~rnasframe.interfaces.SearchSpace`."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import attrs
import gin
import numpy as np

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
from rnasframe.validation import positive_int

__all__ = ["DartsSpace"]


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
    """

    channels: int = attrs.field(default=16, validator=positive_int)
    layers: int = attrs.field(default=8, validator=positive_int)
    steps: int = attrs.field(default=4, validator=positive_int)
    multiplier: int = attrs.field(default=4, validator=_multiplier_at_most_steps)
    stem_multiplier: int = attrs.field(default=3, validator=positive_int)
    options: SupernetOptions = attrs.field(
        factory=SupernetOptions, validator=attrs.validators.instance_of(SupernetOptions)
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
        self,
        genotype: Genotype,
        num_classes: int = 10,
        input_spec: Optional[InputSpec] = None,
        *,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
    ) -> DartsNetwork:
        """Build the stand-alone network of ``genotype``.

        Args:
            genotype: the architecture; it must have :attr:`steps` intermediate nodes per cell.
            num_classes: number of classes.
            input_spec: input shape and normalization (default: 3x32x32, identity normalization).
            channels: ``C`` of the network (36 in DARTS' CIFAR-10 evaluation).
            layers: number of cells (20 in DARTS' CIFAR-10 evaluation).
            auxiliary: whether to add the auxiliary head (see :class:`DartsNetwork` for how its
                logits are returned).
            drop_path_prob: initial drop path probability in ``[0, 1)``.

        Returns:
            The network, in training mode.

        Raises:
            ValueError: for an invalid genotype, a wrong number of nodes or invalid sizes.
        """
        _check_num_classes(num_classes)
        checked = validate_genotype(genotype, steps=self.steps)
        return DartsNetwork(
            checked,
            num_classes=num_classes,
            channels=channels,
            layers=layers,
            auxiliary=auxiliary,
            drop_path_prob=drop_path_prob,
            stem_multiplier=self.stem_multiplier,
            input_spec=input_spec,
        )

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
