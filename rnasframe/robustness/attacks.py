"""Evasion attacks for evaluation: FGSM, PGD-K and (optionally) AutoAttack, all in the L∞ ball.

FGSM and PGD are built from rnasframe's own perturbations: a
:class:`~rnasframe.perturbations.PGDMaximizer` in a :class:`~rnasframe.perturbations.LinfBall`
maximizing the cross-entropy of the true label. The cross-entropy is **summed** over the batch, so
the gradient of each example does not depend on the batch size (with the sign step of the L∞ ball
the step is the same either way; the sum keeps it so for any ball). FGSM is exactly one PGD step of
length ε from ``x`` without random start: ``clip(x + ε·sign(∇CE), [x - ε, x + ε] ∩ [0, 1])``.

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

_PGD_NAME = re.compile(r"pgd(\d+)")
_EPSILON_HINT = "an L-inf radius in pixel units of [0, 1] images"


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
    """An evasion attack in the L∞ ball of radius :attr:`epsilon` (pixel units of [0, 1] images).

    Subclasses are frozen attrs classes with an ``epsilon`` field and implement :meth:`perturb`;
    :meth:`__call__` checks the input range and returns a detached batch clamped to [0, 1].
    """

    epsilon: float

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
        return {"name": self.name, "norm": "Linf", **attrs.asdict(self)}  # type: ignore[arg-type]


def _pgd(epsilon: float, steps: int, step_size: float, random_start: bool) -> Any:
    from rnasframe.perturbations import LinfBall, PGDMaximizer

    return PGDMaximizer(ball=LinfBall(epsilon=epsilon), steps=steps, step_size=step_size, random_start=random_start)


@attrs.define(frozen=True)
class FGSMAttack(Attack):
    """The fast gradient sign method (Goodfellow et al., 2015): ``x + ε·sign(∇_x CE)``, clipped to [0, 1].

    Attributes:
        epsilon: the L∞ radius (paper: 0.031).
    """

    epsilon: float = attrs.field(default=0.031, validator=validation.in_closed_range(0.0, 1.0, _EPSILON_HINT))

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
        pgd = _pgd(self.epsilon, 1, self.epsilon if self.epsilon > 0 else 1.0, False)
        return pgd(x, cross_entropy_objective(model, y), model=model)


@attrs.define(frozen=True)
class PGDAttack(Attack):
    """Projected gradient ascent on the cross-entropy (Madry et al., 2018), in the L∞ ball.

    Attributes:
        epsilon: the L∞ radius (paper: 0.031).
        steps: ascent steps (PGD-20: 20).
        step_size: the step length per iteration in pixel units (0.003, the paper's PGD setting
            of section 4.1; 2/255 ≈ 0.0078 is the other common choice).
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``x``.
    """

    epsilon: float = attrs.field(default=0.031, validator=validation.in_closed_range(0.0, 1.0, _EPSILON_HINT))
    steps: int = attrs.field(default=20, validator=validation.positive_int)
    step_size: float = attrs.field(default=0.003, validator=validation.greater_than(0.0, "pixel units"))
    random_start: bool = attrs.field(default=True, validator=boolean)

    @property
    def name(self) -> str:
        """``"pgd<steps>"``, e.g. ``"pgd20"``."""
        return f"pgd{self.steps}"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Run the PGD maximizer on the summed cross-entropy and return its last iterate."""
        pgd = _pgd(self.epsilon, self.steps, self.step_size, self.random_start)
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
    """AutoAttack, standard version (Croce & Hein, 2020): APGD-CE, APGD-T, FAB-T and Square, L∞.

    An optional extra (``pip install 'rnasframe[autoattack]'``): the reference implementation
    packaged as ``pyautoattack`` (or the authors' ``autoattack`` installed from their repository).
    Without it, calling the attack raises an :class:`ImportError` naming the extra.

    Attributes:
        epsilon: the L∞ radius.
        seed: AutoAttack's own seed.
        batch_size: examples per internal batch.
    """

    epsilon: float = attrs.field(default=0.031, validator=validation.in_closed_range(0.0, 1.0, _EPSILON_HINT))
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)
    batch_size: int = attrs.field(default=250, validator=validation.positive_int)

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
        adversary = auto_attack_class(model, norm="Linf", eps=self.epsilon, version="standard", device=x.device, seed=self.seed)
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
) -> Attack:
    """Build an attack from its name.

    Args:
        name: ``"fgsm"``, ``"pgd<K>"`` (``K >= 1`` steps, e.g. ``"pgd20"``) or ``"autoattack"``.
        epsilon: the L∞ radius in pixel units.
        step_size: PGD's step length; ``None`` uses ``2.5 * epsilon / K`` (Madry et al.'s rule).
        random_start: PGD's random start.
        seed: AutoAttack's seed.

    Returns:
        The attack.

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a bad value.
    """
    if not isinstance(name, str):
        raise ValueError(f"an attack name must be a string, one of {', '.join(ATTACK_NAMES)}; got {name!r}")
    key = name.strip().lower()
    if key == "fgsm":
        return FGSMAttack(epsilon=epsilon)
    if key == "autoattack":
        return AutoAttackStandard(epsilon=epsilon, seed=seed)
    match = _PGD_NAME.fullmatch(key)
    if match and int(match.group(1)) >= 1:
        steps = int(match.group(1))
        size = step_size if step_size is not None else 2.5 * max(epsilon, 1e-12) / steps
        return PGDAttack(epsilon=epsilon, steps=steps, step_size=size, random_start=random_start)
    raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACK_NAMES)} (clean accuracy is always measured)")
