"""Training objectives for networks trained from scratch: standard, adversarial (Madry) and TRADES.

Each objective maps ``(model, x, y)`` to the loss of one batch. The model is in train mode when
called (drop path and batch statistics active); when it exposes ``aux_logits`` after a forward
pass (DARTS' auxiliary tower), ``auxiliary_weight * CE(aux_logits, y)`` is added for the forward
pass whose cross-entropy the objective uses.

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
from rnasframe.interfaces.perturbation import Perturbation
from rnasframe.interfaces.similarity import Similarity
from rnasframe.robustness.attacks import cross_entropy_objective, model_mode

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


def _auxiliary(model: nn.Module, y: Tensor, weight: float) -> Optional[Tensor]:
    aux_logits = getattr(model, "aux_logits", None)
    if weight > 0 and aux_logits is not None:
        return F.cross_entropy(aux_logits, y)
    return None


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
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, auxiliary_weight: float = 0.0) -> TrainingOutput:
        """Return the loss of ``model`` (in train mode) on the batch ``(x, y)``."""

    def describe(self) -> Dict[str, Any]:
        """The objective's name and settings, as recorded in ``results.json``."""
        return _describe(self)


@gin.configurable
@attrs.define(frozen=True)
class StandardTraining(TrainingObjective):
    """``CE(m(x), y) + w_aux · CE(aux(x), y)``: DARTS' training from scratch (paper section 4.2)."""

    robust = False

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, auxiliary_weight: float = 0.0) -> TrainingOutput:
        """Return the cross-entropy of the natural batch (plus the auxiliary term)."""
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        loss = ce
        aux = _auxiliary(model, y, auxiliary_weight)
        metrics: Dict[str, Tensor] = {"ce": ce.detach(), "natural_acc": _accuracy(logits, y)}
        if aux is not None:
            loss = loss + auxiliary_weight * aux
            metrics["aux_ce"] = aux.detach()
        metrics["loss"] = loss.detach()
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
    """

    perturbation: Perturbation = attrs.field(factory=_default_pgd, validator=attrs.validators.instance_of(Perturbation))
    attack_mode: str = attrs.field(default="eval", validator=_check_mode)

    robust = True

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, auxiliary_weight: float = 0.0) -> TrainingOutput:
        """Return the cross-entropy of the adversarial batch (plus the auxiliary term)."""
        with model_mode(model, training=self.attack_mode == "train"):
            x_adv = self.perturbation(x, cross_entropy_objective(model, y), model=model)
        logits = model(x_adv)
        ce = F.cross_entropy(logits, y)
        loss = ce
        aux = _auxiliary(model, y, auxiliary_weight)
        metrics: Dict[str, Tensor] = {"ce": ce.detach(), "adversarial_acc": _accuracy(logits, y)}
        if aux is not None:
            loss = loss + auxiliary_weight * aux
            metrics["aux_ce"] = aux.detach()
        metrics["loss"] = loss.detach()
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
    """

    beta: float = attrs.field(default=6.0, validator=validation.at_least(0.0, "the TRADES weight"))
    perturbation: Perturbation = attrs.field(factory=_default_pgd, validator=attrs.validators.instance_of(Perturbation))
    similarity: Similarity = attrs.field(factory=_default_similarity, validator=attrs.validators.instance_of(Similarity))
    attack_mode: str = attrs.field(default="eval", validator=_check_mode)

    robust = True

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, auxiliary_weight: float = 0.0) -> TrainingOutput:
        """Return the natural cross-entropy plus β times the KL to the perturbed prediction."""
        similarity = self.similarity
        with model_mode(model, training=self.attack_mode == "train"):
            with torch.no_grad():
                target = model(x)
            x_adv = self.perturbation(x, lambda candidate: similarity(model(candidate), target), model=model)
        perturbed_logits = model(x_adv)
        logits = model(x)  # last, so that the auxiliary logits are those of the natural batch
        ce = F.cross_entropy(logits, y)
        kl = similarity(perturbed_logits, logits)
        loss = ce + self.beta * kl
        aux = _auxiliary(model, y, auxiliary_weight)
        metrics: Dict[str, Tensor] = {
            "ce": ce.detach(),
            "kl": kl.detach(),
            "natural_acc": _accuracy(logits, y),
            "adversarial_acc": _accuracy(perturbed_logits, y),
        }
        if aux is not None:
            loss = loss + auxiliary_weight * aux
            metrics["aux_ce"] = aux.detach()
        metrics["loss"] = loss.detach()
        return TrainingOutput(loss=loss, metrics=metrics)
