"""Evasion attacks for evaluation: FGSM, PGD-K and (optionally) AutoAttack, in the L∞ or the L2 ball.

FGSM and PGD are built from rnasframe's own perturbations: a
:class:`~rnasframe.perturbations.PGDMaximizer` in a :class:`~rnasframe.perturbations.LinfBall`
(``norm="Linf"``, the default and the paper's) or an :class:`~rnasframe.perturbations.L2Ball`
(``norm="L2"``) maximizing the cross-entropy of the true label. The cross-entropy is **summed**
over the batch, so the gradient of each example does not depend on the batch size (with the sign
step of the L∞ ball and the normalized step of the L2 ball the step is the same either way; the
sum keeps it so for any ball). FGSM is exactly one PGD step of length ε from ``x`` without random
start: ``clip(x + ε·sign(∇CE), [x - ε, x + ε] ∩ [0, 1])`` in L∞, and in L2 the fast gradient
method ``clip(x + ε·∇CE/‖∇CE‖₂, [0, 1])`` (Goodfellow et al.'s L2 variant, per example).

Attacks do not switch the model's mode; :class:`~rnasframe.robustness.RobustnessEvaluation` runs
them in eval mode. They take gradients with respect to the input only and leave no trace in the
model (see :class:`~rnasframe.interfaces.Perturbation`).
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import re
from typing import Any, Dict, Iterator, Optional

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.validation import boolean

from rnasframe import validation
from rnasframe.interfaces.perturbation import PerturbationObjective, check_pixel_range
from rnasframe.model_state import input_gradients_only

__all__ = [
    "ATTACK_NAMES",
    "NORMS",
    "Attack",
    "AutoAttackStandard",
    "FGSMAttack",
    "PGDAttack",
    "attack_from_name",
    "cross_entropy_objective",
    "model_mode",
]

#: The attack names :func:`attack_from_name` accepts (``K`` is any number of steps >= 1).
ATTACK_NAMES = ("fgsm", "pgd<K> (K >= 1 steps, e.g. pgd20)", "autoattack")

#: The threat models of the built-in attacks, as AutoAttack spells them.
NORMS = ("Linf", "L2")

_PGD_NAME = re.compile(r"pgd(\d+)")


def check_radius(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """attrs validator of an attack radius, read with the instance's ``norm``.

    L∞ radii lie in [0, 1] (pixel units of [0, 1] images: 1 already reaches every image); L2 radii
    are any finite number >= 0 (radii above 1 are common, e.g. 3.0 on ImageNet).
    attrs runs validators after every field is set, so ``instance.norm`` is available here; a bad
    norm is reported by its own validator.
    """
    norm = getattr(instance, "norm", "Linf")
    if norm not in NORMS:
        return  # the norm's own validator names the problem
    if norm == "L2":
        validation.at_least(0.0, "an L2 radius in pixel units of [0, 1] images")(instance, attribute, value)
    else:
        validation.in_closed_range(0.0, 1.0, "an L-inf radius in pixel units of [0, 1] images")(instance, attribute, value)


def norm_ball(norm: str, epsilon: float) -> Any:
    """The :class:`~rnasframe.interfaces.NormBall` of ``norm`` (``"Linf"`` or ``"L2"``) and radius ``epsilon``."""
    from rnasframe.perturbations import L2Ball, LinfBall

    _check_norm(norm)
    return LinfBall(epsilon=epsilon) if norm == "Linf" else L2Ball(epsilon=epsilon)


def _check_norm(norm: str) -> None:
    """Raise :class:`ValueError` naming ``norm`` and the valid norms unless it is one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid norms: {', '.join(repr(n) for n in NORMS)}")


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``training=True``) or eval mode for a block; restore every submodule's mode.

    Args:
        model: the network.
        training: the mode inside the block.

    Yields:
        ``model``.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def cross_entropy_objective(model: nn.Module, y: Tensor) -> PerturbationObjective:
    """The function ``x' -> sum_i CE(model(x')_i, y_i)`` that attacks maximize.

    The per-example sum (not the mean) makes each example's gradient independent of the batch size.
    """

    def objective(candidate: Tensor) -> Tensor:
        return F.cross_entropy(model(candidate), y, reduction="sum")

    return objective


class Attack(abc.ABC):
    """An evasion attack in the ball of radius :attr:`epsilon` (pixel units of [0, 1] images) of :attr:`norm`.

    Subclasses are frozen attrs classes with an ``epsilon`` field (and a ``norm`` field when they
    support more than L∞) and implement :meth:`perturb`; :meth:`__call__` checks the input range
    and returns a detached batch clamped to [0, 1]. The evaluation checks every output against
    :meth:`ball`.
    """

    epsilon: float
    # The threat model, "Linf" or "L2"; a class default for subclasses without the field.
    norm: str = "Linf"

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short name used as the key of results (``fgsm``, ``pgd20``, ``autoattack``)."""

    @abc.abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return adversarial examples for the batch ``(x, y)`` (pixels in [0, 1])."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return ``perturb(model, x, y)``, detached and clamped to [0, 1]; ``x`` is not modified."""
        check_pixel_range(x)
        return self.perturb(model, x.detach(), y).detach().clamp_(0.0, 1.0)

    def check_available(self) -> None:
        """Raise :class:`ImportError` when an optional package the attack needs is missing (default: never)."""

    def at_epsilon(self, epsilon: float) -> "Attack":
        """The same attack with another radius (used for the sanity sweep over ε)."""
        return attrs.evolve(self, epsilon=epsilon)  # type: ignore[misc]

    def settings(self) -> Dict[str, Any]:
        """The attack's name and hyperparameters, as recorded in ``results.json``."""
        return {"name": self.name, "norm": self.norm, **attrs.asdict(self)}  # type: ignore[arg-type]

    def ball(self) -> Any:
        """The threat model as a :class:`~rnasframe.interfaces.NormBall` (e.g. to check that outputs lie in it)."""
        return norm_ball(self.norm, self.epsilon)


def _pgd(ball: Any, steps: int, step_size: float, random_start: bool) -> Any:
    from rnasframe.perturbations import PGDMaximizer

    return PGDMaximizer(ball=ball, steps=steps, step_size=step_size, random_start=random_start)


@attrs.define(frozen=True)
class FGSMAttack(Attack):
    """The fast gradient sign method (Goodfellow et al., 2015): ``x + ε·sign(∇_x CE)``, clipped to [0, 1].

    With ``norm="L2"`` it is the L2 fast gradient method ``x + ε·∇_x CE / ‖∇_x CE‖₂`` (per
    example), clipped to [0, 1]; the name stays ``fgsm`` so that result tables line up.

    Attributes:
        epsilon: the radius (paper, L∞: 0.031).
        norm: ``"Linf"`` (default) or ``"L2"``.
    """

    epsilon: float = attrs.field(default=0.031, validator=check_radius)
    norm: str = attrs.field(default="Linf", validator=validation.one_of(*NORMS))

    @property
    def name(self) -> str:
        """``"fgsm"``."""
        return "fgsm"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """One PGD step of length ε from ``x`` (no random start) on the summed cross-entropy.

        With ε = 0 the ball is the point ``x`` and any step length projects back to it; the step
        length is then 1 only because :class:`~rnasframe.perturbations.PGDMaximizer` needs a
        positive one.
        """
        pgd = _pgd(self.ball(), 1, self.epsilon if self.epsilon > 0 else 1.0, False)
        return pgd(x, cross_entropy_objective(model, y), model=model)


@attrs.define(frozen=True)
class PGDAttack(Attack):
    """Projected gradient ascent on the cross-entropy (Madry et al., 2018), in the L∞ or L2 ball.

    In L∞ each step moves every pixel by ``step_size·sign(∇)``; in L2 each example moves by
    ``step_size`` along ``∇/‖∇‖₂``; then the iterate is projected onto the ball ∩ [0, 1]. The
    random start is uniform in the ball's volume (see the balls' ``sample``).

    Attributes:
        epsilon: the radius (paper, L∞: 0.031; the usual CIFAR-10 L2 radius is 0.5).
        steps: ascent steps (PGD-20: 20).
        step_size: the step length per iteration in pixel units (L∞: 0.003, the paper's PGD
            setting of section 4.1, or 2/255 ≈ 0.0078; L2: usually 2.5·ε/steps, 0.0625 for
            ε = 0.5 and 20 steps).
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``x``.
        norm: ``"Linf"`` (default) or ``"L2"``.
    """

    epsilon: float = attrs.field(default=0.031, validator=check_radius)
    steps: int = attrs.field(default=20, validator=validation.positive_int)
    step_size: float = attrs.field(default=0.003, validator=validation.greater_than(0.0, "pixel units"))
    random_start: bool = attrs.field(default=True, validator=boolean)
    norm: str = attrs.field(default="Linf", validator=validation.one_of(*NORMS))

    @property
    def name(self) -> str:
        """``"pgd<steps>"``, e.g. ``"pgd20"``."""
        return f"pgd{self.steps}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Run the PGD maximizer on the summed cross-entropy and return its last iterate."""
        pgd = _pgd(self.ball(), self.steps, self.step_size, self.random_start)
        return pgd(x, cross_entropy_objective(model, y), model=model)


def _import_autoattack() -> Any:
    """The ``AutoAttack`` class of the reference implementation (Croce & Hein, 2020)."""
    for module_name in ("pyautoattack", "autoattack"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        if hasattr(module, "AutoAttack"):
            return module.AutoAttack
    raise ImportError(
        "the 'autoattack' attack needs the optional extra: pip install 'rnasframe[autoattack]' "
        "(the package pyautoattack, Croce & Hein's reference AutoAttack)"
    )


@attrs.define(frozen=True)
class AutoAttackStandard(Attack):
    """AutoAttack, standard version (Croce & Hein, 2020): APGD-CE, APGD-T, FAB-T and Square, L∞ or L2.

    An optional extra (``pip install 'rnasframe[autoattack]'``): the reference implementation
    packaged as ``pyautoattack`` (or the authors' ``autoattack`` installed from their repository).
    Without it, calling the attack raises an :class:`ImportError` naming the extra.

    Attributes:
        epsilon: the radius.
        seed: AutoAttack's own seed.
        batch_size: examples per internal batch.
        norm: ``"Linf"`` (default) or ``"L2"``, passed to AutoAttack as its ``norm``.
    """

    epsilon: float = attrs.field(default=0.031, validator=check_radius)
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)
    batch_size: int = attrs.field(default=250, validator=validation.positive_int)
    norm: str = attrs.field(default="Linf", validator=validation.one_of(*NORMS))

    @property
    def name(self) -> str:
        """``"autoattack"``."""
        return "autoattack"

    def check_available(self) -> None:
        """Raise :class:`ImportError`, naming the extra, when no AutoAttack package is installed."""
        _import_autoattack()

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Run the standard AutoAttack ensemble and return its adversarial examples."""
        auto_attack_class = _import_autoattack()
        if self.epsilon == 0:
            return x.clone()
        adversary = auto_attack_class(model, norm=self.norm, eps=self.epsilon, version="standard", device=x.device, seed=self.seed)
        adversary.verbose = False
        run = adversary.run_standard_evaluation
        size_keyword = "batch_size" if "batch_size" in inspect.signature(run).parameters else "bs"
        with input_gradients_only(model):
            result = run(x, y, **{size_keyword: self.batch_size})
        return result[0] if isinstance(result, tuple) else result  # pyautoattack also returns the labels


def attack_from_name(
    name: str,
    epsilon: float,
    step_size: Optional[float] = None,
    random_start: bool = True,
    seed: int = 0,
    norm: str = "Linf",
) -> Attack:
    """Build an attack from its name.

    Args:
        name: ``"fgsm"``, ``"pgd<K>"`` (``K >= 1`` steps, e.g. ``"pgd20"``) or ``"autoattack"``.
        epsilon: the radius in pixel units.
        step_size: PGD's step length; ``None`` uses ``2.5 * epsilon / K`` (Madry et al.'s rule).
        random_start: PGD's random start.
        seed: AutoAttack's seed.
        norm: the threat model, ``"Linf"`` or ``"L2"``.

    Returns:
        The attack.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a bad value.
    """
    if not isinstance(name, str):
        raise ValueError(f"an attack name must be a string, one of {', '.join(ATTACK_NAMES)}; got {name!r}")
    _check_norm(norm)
    key = name.strip().lower()
    if key == "fgsm":
        return FGSMAttack(epsilon=epsilon, norm=norm)
    if key == "autoattack":
        return AutoAttackStandard(epsilon=epsilon, seed=seed, norm=norm)
    match = _PGD_NAME.fullmatch(key)
    if match and int(match.group(1)) >= 1:
        steps = int(match.group(1))
        size = step_size if step_size is not None else 2.5 * max(epsilon, 1e-12) / steps
        return PGDAttack(epsilon=epsilon, steps=steps, step_size=size, random_start=random_start, norm=norm)
    raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACK_NAMES)} (clean accuracy is always measured)")
