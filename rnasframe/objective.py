"""The search objective of RNAS (paper Eq. 4 and 5): ``CE(m(x), y) + sum_i weight_i * R_i``."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import attrs
import gin
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.interfaces.regularizer import Regularizer

__all__ = ["ObjectiveOutput", "RobustObjective"]


@attrs.define(frozen=True)
class ObjectiveOutput:
    """The loss of one batch and what to log about it.

    Attributes:
        loss: ``CE + sum_i weight_i * R_i``, a scalar in the autograd graph.
        logits: the natural logits ``m(x)`` (in the graph).
        metrics: detached scalar tensors keyed by name: ``loss``, ``ce``, ``natural_acc`` and, per
            active regularizer, ``<name>`` (its unweighted value) and its own metrics
            (``<name>/perturbed_acc`` for :class:`~rnasframe.regularizers.PerturbationConsistency`).
    """

    loss: Tensor
    logits: Tensor
    metrics: Dict[str, Tensor]


def _check_regularizers(
    instance: "RobustObjective",
    attribute: "attrs.Attribute[Tuple[Regularizer, ...]]",
    value: Tuple[Regularizer, ...],
) -> None:
    for index, regularizer in enumerate(value):
        if not isinstance(regularizer, Regularizer):
            raise TypeError(
                f"RobustObjective.regularizers[{index}] must be a Regularizer (for example "
                f"@PerturbationConsistency()), got {regularizer!r}"
            )
    names = [r.name for r in value]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"RobustObjective.regularizers has several regularizers named {duplicates}; give each a "
            f"distinct `name` so their logs do not overwrite each other"
        )


@gin.configurable
@attrs.define(frozen=True)
class RobustObjective:
    """``L(m, x, y) = CE(m(x), y) + sum_i weight_i * R_i(m, x, y, m(x))``, used at both levels.

    The natural logits ``m(x)`` are computed once per batch and shared by the cross-entropy and
    every regularizer. With no regularizer, or only zero-weight ones (which are skipped without
    any computation), this is plain DARTS.

    Per-example state: when a regularizer's perturbation keeps a store
    (:attr:`uses_example_index`), the search passes every batch's example indices, binds the
    objective to its data once (:meth:`bind_examples`) and saves :meth:`state_dict` in its
    checkpoint.

    Args:
        regularizers: the terms to add; the RNAS term is
            :class:`~rnasframe.regularizers.PerturbationConsistency`.
    """

    regularizers: Tuple[Regularizer, ...] = attrs.field(
        default=(), converter=tuple, validator=_check_regularizers
    )

    @property
    def is_plain(self) -> bool:
        """True when no regularizer has a positive weight (the objective is plain cross-entropy)."""
        return all(r.weight == 0 for r in self.regularizers)

    @property
    def uses_example_index(self) -> bool:
        """True when an active regularizer needs the batch's example indices (``index=``)."""
        return any(r.weight != 0 and r.uses_example_index for r in self.regularizers)

    def bind_examples(self, count: int, key: str) -> None:
        """Tell every regularizer the search data's size ``count`` and split fingerprint ``key``.

        See :meth:`~rnasframe.interfaces.Perturbation.bind_examples`.
        """
        for regularizer in self.regularizers:
            regularizer.bind_examples(count, key)

    def state_dict(self) -> Dict[str, Dict[str, Any]]:
        """The regularizers' per-example state, by regularizer name (only those that keep one)."""
        states = {r.name: r.state_dict() for r in self.regularizers}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Restore :meth:`state_dict`'s output; a name that matches no regularizer is a ValueError."""
        by_name = {r.name: r for r in self.regularizers}
        unknown = sorted(set(state) - set(by_name))
        if unknown:
            raise ValueError(
                f"RobustObjective has no regularizer named {unknown} to restore per-example state into "
                f"(its regularizers: {sorted(by_name)})"
            )
        for name, entries in state.items():
            by_name[name].load_state_dict(entries)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, index: Optional[Tensor] = None) -> ObjectiveOutput:
        """Return the loss of ``model`` on the batch ``(x, y)`` and its metrics.

        ``index``, the examples' positions in the search data (int64, shape ``(batch,)``), is
        passed on as ``index=`` to the regularizers that use it (:attr:`uses_example_index`),
        and only to them.
        """
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        loss = ce
        with torch.no_grad():
            metrics: Dict[str, Tensor] = {
                "ce": ce.detach(),
                "natural_acc": (logits.argmax(dim=1) == y).float().mean(),
            }
        for regularizer in self.regularizers:
            if regularizer.weight == 0:
                continue
            if index is not None and regularizer.uses_example_index:
                output = regularizer(model, x, y, logits, index=index)  # type: ignore[call-arg]
            else:
                output = regularizer(model, x, y, logits)
            loss = loss + regularizer.weight * output.value
            metrics[regularizer.name] = output.value.detach()
            for key, value in output.metrics.items():
                metrics[f"{regularizer.name}/{key}"] = torch.as_tensor(value).detach()
        metrics["loss"] = loss.detach()
        return ObjectiveOutput(loss=loss, logits=logits, metrics=metrics)
