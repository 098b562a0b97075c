"""Training objectives for networks trained from scratch: standard, adversarial (Madry) and TRADES.

Each objective maps ``(model, x, y)`` to the loss of one batch. The model is in train mode when
called (drop path and batch statistics active). A model may return a
:class:`~rnasframe.interfaces.NetworkOutput` in train mode (DARTS' auxiliary tower); every
objective reads outputs through :func:`~rnasframe.interfaces.split_output`, and adds
``auxiliary_weight * CE(aux_logits, y)`` for the forward pass whose cross-entropy it uses. The
weight is the objective's setting (0.4 by default, DARTS' value); whether there is an auxiliary
head at all is the search space's network configuration.

**Model mode during attack generation.** The adversarial objectives generate ``x'`` with the
model in **eval** mode by default (``attack_mode="eval"``), as TRADES' reference code does, and
then compute the loss in train mode. Reasons: in eval mode the attacked function is
deterministic, so PGD's steps are not blurred by drop path (which zeroes random paths per
sample and per forward pass) and do not pay for the auxiliary tower; it is the function that is
evaluated and selected on; and its BatchNorm layers do not depend on the composition of the
batch being attacked. The cost: early in training the running statistics lag behind the
weights, so the attack is slightly off the train-mode function the loss uses. ``attack_mode="train"``
is the other choice (Madry et al.'s and some TRADES ports). In both modes the perturbation's
guard leaves no gradient in the weights and restores BatchNorm statistics and modes.
"""

from __future__ import annotations

import abc
from typing import Any, Dict, Optional

import attrs
import gin
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.interfaces.perturbation import Perturbation, PerturbationObjective
from rnasframe.interfaces.search_space import split_output
from rnasframe.interfaces.similarity import Similarity
from rnasframe.robustness.attacks import model_mode

__all__ = ["TrainingObjective", "TrainingOutput", "StandardTraining", "AdversarialTraining", "TradesTraining"]


@attrs.define(frozen=True)
class TrainingOutput:
    """The loss of one batch and what to log about it.

    Attributes:
        loss: the scalar to minimize, in the autograd graph.
        metrics: detached scalar tensors keyed by name (``loss``, ``ce``, accuracies, ...).
    """

    loss: Tensor
    metrics: Dict[str, Tensor]


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    """The main logits of ``model`` on ``x`` (the auxiliary ones, if any, are dropped)."""
    return split_output(model(x))[0]


def _cross_entropy_objective(model: nn.Module, y: Tensor) -> PerturbationObjective:
    """``x' -> sum_i CE(model(x')_i, y_i)``: what the adversary maximizes (per-example sum)."""

    def objective(candidate: Tensor) -> Tensor:
        return F.cross_entropy(_logits(model, candidate), y, reduction="sum")

    return objective


def _with_auxiliary(
    loss: Tensor, metrics: Dict[str, Tensor], aux_logits: Optional[Tensor], y: Tensor, weight: float
) -> Tensor:
    """Add ``weight * CE(aux_logits, y)`` (when there are auxiliary logits and a weight) and log it."""
    if weight > 0 and aux_logits is not None:
        aux = F.cross_entropy(aux_logits, y)
        loss = loss + weight * aux
        metrics["aux_ce"] = aux.detach()
    metrics["loss"] = loss.detach()
    return loss


def _auxiliary_weight(instance: Any, attribute: "attrs.Attribute[float]", value: float) -> None:
    validation.at_least(0.0, "the auxiliary loss weight")(instance, attribute, value)


def _accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.detach().argmax(dim=1) == y).float().mean()


def _default_pgd() -> Perturbation:
    from rnasframe.perturbations import LinfBall, PGDMaximizer

    return PGDMaximizer(ball=LinfBall(epsilon=0.031), steps=7, step_size=0.01, random_start=True)


def _default_similarity() -> Similarity:
    from rnasframe.similarity import KLSimilarity

    return KLSimilarity()


def _describe(instance: Any) -> Dict[str, Any]:
    described: Dict[str, Any] = {"name": type(instance).__name__}
    for field in attrs.fields(type(instance)):
        value = getattr(instance, field.name)
        described[field.name] = value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
    return described


class TrainingObjective(abc.ABC):
    """The loss of one training batch (see the module docstring for conventions)."""

    #: Whether the objective trains for robustness (checkpoints are then selected on PGD accuracy).
    robust: bool = False

    @abc.abstractmethod
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        """Return the loss of ``model`` (in train mode) on the batch ``(x, y)``."""

    def describe(self) -> Dict[str, Any]:
        """The objective's name and settings, as recorded in ``results.json``."""
        return _describe(self)


@gin.configurable
@attrs.define(frozen=True)
class StandardTraining(TrainingObjective):
    """``CE(m(x), y) + w_aux · CE(aux(x), y)``: DARTS' training from scratch (paper section 4.2).

    Args:
        auxiliary_weight: ``w_aux``, weight of the auxiliary logits' cross-entropy when the model
            returns them (0.4, DARTS' value; 0 ignores them).
    """

    auxiliary_weight: float = attrs.field(default=0.4, validator=_auxiliary_weight)

    robust = False

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        """Return the cross-entropy of the natural batch (plus the auxiliary term)."""
        logits, aux_logits = split_output(model(x))
        ce = F.cross_entropy(logits, y)
        metrics: Dict[str, Tensor] = {"ce": ce.detach(), "natural_acc": _accuracy(logits, y)}
        loss = _with_auxiliary(ce, metrics, aux_logits, y, self.auxiliary_weight)
        return TrainingOutput(loss=loss, metrics=metrics)


def _check_mode(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    validation.one_of("eval", "train")(instance, attribute, value)


@gin.configurable
@attrs.define(frozen=True)
class AdversarialTraining(TrainingObjective):
    """Madry et al.'s adversarial training: ``CE(m(x'), y)`` with ``x'`` the PGD maximizer of the CE.

    Paper section 4.3: PGD-7, step 0.01, ε = 0.031 (the default perturbation). ``x'`` maximizes
    the per-example summed cross-entropy of the true label and is a constant for the loss; the
    auxiliary term is computed on ``x'`` too.

    Args:
        perturbation: how ``x'`` is made (default: ``PGDMaximizer(LinfBall(0.031), steps=7,
            step_size=0.01, random_start=True)``).
        attack_mode: the model's mode while ``x'`` is generated: ``"eval"`` (default, see the
            module docstring) or ``"train"``.
        auxiliary_weight: weight of the auxiliary logits' cross-entropy (0.4), on ``x'``.
    """

    perturbation: Perturbation = attrs.field(factory=_default_pgd, validator=attrs.validators.instance_of(Perturbation))
    attack_mode: str = attrs.field(default="eval", validator=_check_mode)
    auxiliary_weight: float = attrs.field(default=0.4, validator=_auxiliary_weight)

    robust = True

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        """Return the cross-entropy of the adversarial batch (plus the auxiliary term)."""
        with model_mode(model, training=self.attack_mode == "train"):
            x_adv = self.perturbation(x, _cross_entropy_objective(model, y), model=model)
        logits, aux_logits = split_output(model(x_adv))
        ce = F.cross_entropy(logits, y)
        metrics: Dict[str, Tensor] = {"ce": ce.detach(), "adversarial_acc": _accuracy(logits, y)}
        loss = _with_auxiliary(ce, metrics, aux_logits, y, self.auxiliary_weight)
        return TrainingOutput(loss=loss, metrics=metrics)


@gin.configurable
@attrs.define(frozen=True)
class TradesTraining(TrainingObjective):
    """TRADES (Zhang et al., 2019): ``CE(m(x), y) + β · KL(p(x) ‖ p(x'))``.

    ``x'`` maximizes ``KL(p(x) ‖ p(x'))`` (with ``p(x)`` a constant computed in the generation
    mode) inside the perturbation's ball; the loss then differentiates both branches, as TRADES
    does. The auxiliary term is computed on the natural batch.

    Args:
        beta: β, weight of the KL term (TRADES' CIFAR-10 setting: 6).
        perturbation: how ``x'`` is made (default: PGD-7, step 0.01, ε = 0.031, random start;
            the paper's adversarial-training attack, so that both robust objectives compare).
        similarity: the discrepancy (default: :class:`~rnasframe.similarity.KLSimilarity`,
            TRADES' KL, batch mean).
        attack_mode: the model's mode while ``x'`` is generated: ``"eval"`` (default) or ``"train"``.
        auxiliary_weight: weight of the auxiliary logits' cross-entropy (0.4), on the natural batch.
    """

    beta: float = attrs.field(default=6.0, validator=validation.at_least(0.0, "the TRADES weight"))
    perturbation: Perturbation = attrs.field(factory=_default_pgd, validator=attrs.validators.instance_of(Perturbation))
    similarity: Similarity = attrs.field(
        factory=_default_similarity, validator=attrs.validators.instance_of(Similarity)
    )
    attack_mode: str = attrs.field(default="eval", validator=_check_mode)
    auxiliary_weight: float = attrs.field(default=0.4, validator=_auxiliary_weight)

    robust = True

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        """Return the natural cross-entropy plus β times the KL to the perturbed prediction."""
        similarity = self.similarity
        with model_mode(model, training=self.attack_mode == "train"):
            with torch.no_grad():
                target = _logits(model, x)
            x_adv = self.perturbation(x, lambda candidate: similarity(_logits(model, candidate), target), model=model)
        perturbed_logits = _logits(model, x_adv)
        logits, aux_logits = split_output(model(x))  # the auxiliary logits of the natural batch
        ce = F.cross_entropy(logits, y)
        kl = similarity(perturbed_logits, logits)
        metrics: Dict[str, Tensor] = {
            "ce": ce.detach(),
            "kl": kl.detach(),
            "natural_acc": _accuracy(logits, y),
            "adversarial_acc": _accuracy(perturbed_logits, y),
        }
        loss = _with_auxiliary(ce + self.beta * kl, metrics, aux_logits, y, self.auxiliary_weight)
        return TrainingOutput(loss=loss, metrics=metrics)
