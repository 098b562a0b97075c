"""Robust accuracy of a trained network: clean, under each attack, an ε sweep and the sanity checks."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs
import gin
import torch
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.data.images import LabeledImages
from rnasframe.interfaces.perturbation import NormBall, Perturbation
from rnasframe.perturbations import FGSM, PGD, L2Ball, LinfBall, PGDMaximizer
from rnasframe.robustness.attacks import (
    attack_name,
    attack_settings,
    ball_norm,
    cross_entropy_objective,
    model_mode,
    with_radius,
)
from rnasframe.robustness.sanity import SanityCheck, check_robustness

__all__ = ["RobustnessEvaluation", "RobustnessReport", "attack_accuracy", "check_attack_radius", "seeded_randomness"]

_BALL_TOLERANCE = 1e-5


@contextlib.contextmanager
def seeded_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's generators seeded with ``seed``, restoring their states afterwards.

    Random starts of attacks are then reproducible, and an evaluation in the middle of a training
    run does not change the random numbers the training draws next. On CUDA the generator of the
    GPU the evaluation uses is saved and restored (``torch.device("cuda")`` is the current GPU,
    not GPU 0).
    """
    devices: List[int] = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _batches(
    images: LabeledImages, batch_size: int, device: torch.device, limit: Optional[int]
) -> Iterator[Tuple[Tensor, Tensor]]:
    count = len(images) if limit is None else min(limit, len(images))
    for index in torch.arange(count).split(batch_size):
        yield images.pixels(index).to(device), images.labels[index].to(device)


def _inside(x_adv: Tensor, x: Tensor, attack: Perturbation) -> bool:
    """Whether every example of ``x_adv`` lies in [0, 1] and in ``attack``'s ball around ``x`` (if it has one).

    L∞ and L2 distances are measured directly; for another ball, a point of the ball must be its
    own projection.
    """
    if not x.numel():
        return True
    in_range = bool(x_adv.min() >= 0.0 and x_adv.max() <= 1.0)
    ball = getattr(attack, "ball", None)
    if not isinstance(ball, NormBall):
        return in_range
    slack = _BALL_TOLERANCE * max(1.0, ball.epsilon)
    delta = (x_adv - x).flatten(1)
    if isinstance(ball, LinfBall):
        outside = delta.abs().amax(dim=1) - ball.epsilon
    elif isinstance(ball, L2Ball):
        outside = torch.linalg.vector_norm(delta, dim=1) - ball.epsilon
    else:
        outside = (ball.project(x_adv, x) - x_adv).flatten(1).abs().amax(dim=1)
    return in_range and bool((outside <= slack).all())


def _run(attack: Perturbation, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``attack``'s examples for the batch ``(x, y)``: it maximizes the summed cross-entropy of ``y``."""
    return attack(x, cross_entropy_objective(model, y), model=model)


def attack_accuracy(
    model: nn.Module,
    images: LabeledImages,
    attack: Optional[Perturbation],
    batch_size: int = 250,
    device: torch.device | str = "cpu",
    seed: int = 0,
    max_examples: Optional[int] = None,
) -> float:
    """Accuracy of ``model`` (in eval mode) on ``images`` under ``attack`` (``None``: clean).

    Used for checkpoint selection on the validation split. The model's mode and torch's random
    state are restored afterwards.
    """
    device = torch.device(device)
    correct, count = 0, 0
    with model_mode(model, training=False), seeded_randomness(seed, device):
        for x, y in _batches(images, batch_size, device, max_examples):
            inputs = x if attack is None else _run(attack, model, x, y)
            with torch.no_grad():
                correct += int((model(inputs).argmax(dim=1) == y).sum())
            count += int(y.shape[0])
    return correct / count if count else float("nan")


def check_attack_radius(attack: Any, epsilon: float, where: str) -> None:
    """Raise unless ``attack`` is a :class:`~rnasframe.interfaces.Perturbation` whose ball (if any) has
    radius ``epsilon``.

    Args:
        attack: the attack to check.
        epsilon: the declared radius (``RobustnessEvaluation.epsilon``).
        where: the field that holds ``attack``, for the message.

    Raises:
        TypeError: ``attack`` is not a :class:`~rnasframe.interfaces.Perturbation`.
        ValueError: its ball's radius differs from ``epsilon``; the message names both values.
    """
    if not isinstance(attack, Perturbation):
        raise TypeError(f"{where}: expected a Perturbation such as FGSM(), PGD() or AutoAttack(), got {attack!r}")
    ball = getattr(attack, "ball", None)
    if isinstance(ball, NormBall) and not math.isclose(ball.epsilon, epsilon, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"{where}: {attack_name(attack)} has a {type(ball).__name__} of radius {ball.epsilon:g}, but "
            f"RobustnessEvaluation.epsilon = {epsilon:g}; bind both to one value (the gin macro EPSILON)"
        )


def _check_fractions(
    instance: "RobustnessEvaluation", attribute: "attrs.Attribute[Any]", value: Tuple[float, ...]
) -> None:
    for fraction in value:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"RobustnessEvaluation.sweep_fractions must be numbers in [0, 1] (fractions of epsilon), got {value!r}"
            )
    if list(value) != sorted(set(value)):
        raise ValueError(f"RobustnessEvaluation.sweep_fractions must be increasing without repeats, got {value!r}")


def _default_epsilon() -> float:
    """The radius of the default ball, ``LinfBall()`` (0.031, or what gin binds to ``LinfBall.epsilon``)."""
    return float(LinfBall().epsilon)


def _default_attacks() -> Tuple[Perturbation, ...]:
    return (FGSM(), PGD())


@gin.configurable
@attrs.define(frozen=True)
class RobustnessEvaluation:
    """How a trained network is evaluated: the threat model's radius, the attacks, the ε sweep and the checks.

    Clean accuracy is always measured. Every attack runs with the model in eval mode (BatchNorm
    running statistics, no drop path), on the same examples, with torch's generators seeded with
    :attr:`seed` (and restored afterwards). Every attack's ball must have the radius
    :attr:`epsilon` and all balls the same norm (one threat model), checked when built. In gin,
    one macro holds the radius::

        EPSILON = 0.031
        LinfBall.epsilon = %EPSILON
        RobustnessEvaluation.epsilon = %EPSILON
        RobustnessEvaluation.attacks = [@FGSM(), @PGD()]

    Args:
        epsilon: the declared radius of the threat model, pixel units of [0, 1] images (paper,
            L∞: 0.031; the usual CIFAR-10 L2 radius: 0.5, see ``eval_l2.gin``). Default: the
            radius of ``LinfBall()``, the default attacks' ball.
        attacks: the attacks (:class:`~rnasframe.interfaces.Perturbation` objects), keyed in the
            results by their ``name``: paper, Table 2: FGSM and PGD-20.
            :class:`~rnasframe.robustness.AutoAttack` is an optional extra.
        sweep_attack: the attack run at ``epsilon * f`` for each ``f`` in ``sweep_fractions``
            (it must hold a ``ball``); its full-ε point reuses the main result when an equal
            attack is in ``attacks``.
        sweep_fractions: increasing fractions of ε for the monotonicity check; 0 also checks that
            ε = 0 reproduces the clean accuracy. ``()`` skips the sweep.
        tolerance: slack of the sanity checks, as a fraction of examples (0: exact).
        batch_size: examples per evaluation batch.
        max_examples: evaluate only the first ``max_examples`` images (``None``: all).
        seed: seed of the attacks' random starts.
    """

    epsilon: float = attrs.field(
        factory=_default_epsilon, validator=validation.at_least(0.0, "a radius in pixel units of [0, 1] images")
    )
    attacks: Tuple[Perturbation, ...] = attrs.field(factory=_default_attacks, converter=tuple)
    sweep_attack: Perturbation = attrs.field(factory=PGD)
    sweep_fractions: Tuple[float, ...] = attrs.field(
        default=(0.0, 0.25, 0.5, 1.0), converter=tuple, validator=_check_fractions
    )
    tolerance: float = attrs.field(
        default=0.0, validator=validation.in_closed_range(0.0, 1.0, "a fraction of examples")
    )
    batch_size: int = attrs.field(default=250, validator=validation.positive_int)
    max_examples: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)

    def __attrs_post_init__(self) -> None:
        if not self.attacks:
            raise ValueError("RobustnessEvaluation.attacks must hold at least one attack, e.g. [FGSM(), PGD()]")
        for attack in self.attacks:
            check_attack_radius(attack, self.epsilon, "RobustnessEvaluation.attacks")
        check_attack_radius(self.sweep_attack, self.epsilon, "RobustnessEvaluation.sweep_attack")
        with_radius(self.sweep_attack, self.epsilon)  # raises now when it cannot be resized
        names = [attack_name(attack) for attack in self.attacks]
        if len(set(names)) != len(names):
            raise ValueError(f"RobustnessEvaluation.attacks lists an attack name twice: {names}")
        balls = {type(ball).__name__ for ball in (getattr(a, "ball", None) for a in (*self.attacks, self.sweep_attack))
                 if isinstance(ball, NormBall)}
        if len(balls) > 1:
            raise ValueError(
                f"RobustnessEvaluation: the attacks mix threat models ({', '.join(sorted(balls))}); "
                "use one ball for all"
            )
        for attack in dict.fromkeys((*self.attacks, self.sweep_attack)):
            if isinstance(attack, PGDMaximizer) and attack.steps * attack.step_size < self.epsilon:
                raise ValueError(
                    f"RobustnessEvaluation: {attack_name(attack)} moves at most steps * step_size = {attack.steps} * "
                    f"{attack.step_size:g} = {attack.steps * attack.step_size:.4g} < epsilon = {self.epsilon:g} "
                    f"({ball_norm(attack.ball)}), so it cannot reach the ball's boundary; use step_size >= epsilon / "
                    f"{attack.steps} (2.5 * epsilon / steps = {2.5 * self.epsilon / attack.steps:.4g} "
                    "is the usual choice)"
                )

    def check_available(self) -> None:
        """Raise :class:`ImportError` now if an attack needs an optional package that is missing.

        Training calls this before its first epoch, so that a missing extra never ends a long
        run at its final evaluation.
        """
        for attack in (*self.attacks, self.sweep_attack):
            check = getattr(attack, "check_available", None)
            if callable(check):
                check()

    def settings(self) -> Dict[str, Any]:
        """The evaluation's own settings, as recorded in ``results.json`` (attacks by :func:`attack_settings`)."""
        return {
            "epsilon": self.epsilon,
            "attacks": [attack_settings(attack) for attack in self.attacks],
            "sweep_attack": attack_settings(self.sweep_attack),
            "sweep_fractions": list(self.sweep_fractions),
            "tolerance": self.tolerance,
            "batch_size": self.batch_size,
            "max_examples": self.max_examples,
            "seed": self.seed,
        }

    def evaluate(
        self,
        model: nn.Module,
        images: LabeledImages,
        device: torch.device | str = "cpu",
        attacks: Optional[Sequence[Perturbation]] = None,
        sweep_attack: Optional[Perturbation] = None,
    ) -> "RobustnessReport":
        """Evaluate ``model`` on ``images`` and run the sanity checks.

        Args:
            model: the network (its mode is restored afterwards).
            images: the test images.
            device: where to compute.
            attacks: use these attacks instead of :attr:`attacks` (e.g. a custom one).
            sweep_attack: use this attack for the sweep instead of :attr:`sweep_attack`.

        Returns:
            The report.
        """
        device = torch.device(device)
        chosen = list(attacks) if attacks is not None else list(self.attacks)
        sweeper = sweep_attack if sweep_attack is not None else self.sweep_attack
        by_name = {attack_name(attack): attack for attack in chosen}
        sweep_points: List[Tuple[float, Perturbation, Optional[str]]] = []
        for fraction in self.sweep_fractions:
            epsilon = self.epsilon * fraction
            resized = with_radius(sweeper, epsilon)
            if fraction == 1.0 and by_name.get(attack_name(sweeper)) == resized:
                sweep_points.append((epsilon, sweeper, attack_name(sweeper)))
            else:
                sweep_points.append((epsilon, resized, None))

        correct: Dict[str, int] = {"clean": 0}
        seconds: Dict[str, float] = {"clean": 0.0}
        in_ball: Dict[str, bool] = {}
        sweep_keys = [f"sweep@{epsilon:.6g}" for epsilon, _, _ in sweep_points]
        count = 0
        with model_mode(model, training=False), seeded_randomness(self.seed, device):
            for x, y in _batches(images, self.batch_size, device, self.max_examples):
                count += int(y.shape[0])
                started = time.perf_counter()
                with torch.no_grad():
                    correct["clean"] += int((model(x).argmax(dim=1) == y).sum())
                seconds["clean"] += time.perf_counter() - started
                runs = [(attack_name(attack), attack) for attack in chosen]
                runs += [(key, attack) for key, (_, attack, reused) in zip(sweep_keys, sweep_points) if reused is None]
                for key, attack in runs:
                    started = time.perf_counter()
                    x_adv = _run(attack, model, x, y)
                    with torch.no_grad():
                        correct[key] = correct.get(key, 0) + int((model(x_adv).argmax(dim=1) == y).sum())
                    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - started
                    in_ball[key] = in_ball.get(key, True) and _inside(x_adv, x, attack)
        if count == 0:
            raise ValueError(f"cannot evaluate on {images.name}: it holds no images")
        accuracy = {key: value / count for key, value in correct.items()}
        attack_accuracies = {name: accuracy[name] for name in by_name}
        sweep = [
            (epsilon, accuracy[reused if reused is not None else key])
            for key, (epsilon, _, reused) in zip(sweep_keys, sweep_points)
        ]
        checks = check_robustness(accuracy["clean"], attack_accuracies, sweep, in_ball, self.tolerance)
        return RobustnessReport(
            examples=count,
            clean=accuracy["clean"],
            attacks=attack_accuracies,
            sweep=sweep,
            sanity=checks,
            attack_settings=[attack_settings(attack) for attack in chosen],
            sweep_settings={"attack": attack_settings(sweeper), "epsilons": [e for e, _ in sweep]},
            seconds=seconds,
            settings=self.settings(),
        )


@attrs.define(frozen=True)
class RobustnessReport:
    """The outcome of :meth:`RobustnessEvaluation.evaluate`; accuracies are fractions in [0, 1].

    Attributes:
        examples: images evaluated.
        clean: clean accuracy.
        attacks: accuracy under each attack, by name.
        sweep: ``(epsilon, accuracy)`` of the sweep attack.
        sanity: the sanity checks.
        attack_settings: each attack's hyperparameters.
        sweep_settings: the sweep attack and its radii.
        seconds: wall-clock seconds per attack (and ``clean``, and each sweep point).
        settings: the evaluation's own settings.
    """

    examples: int
    clean: float
    attacks: Dict[str, float]
    sweep: List[Tuple[float, float]]
    sanity: List[SanityCheck]
    attack_settings: List[Dict[str, Any]]
    sweep_settings: Dict[str, Any]
    seconds: Dict[str, float]
    settings: Dict[str, Any]

    @property
    def sane(self) -> bool:
        """Whether every sanity check passed."""
        return all(check.passed for check in self.sanity)

    def warnings(self) -> List[str]:
        """One ``WARNING`` line per failed sanity check."""
        return [check.warning() for check in self.sanity if not check.passed]

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form written to ``results.json``."""
        return {
            "examples": self.examples,
            "accuracy": {"clean": self.clean, **self.attacks},
            "attacks": self.attack_settings,
            "sweep": {**self.sweep_settings, "accuracy": [a for _, a in self.sweep]},
            "sanity": {
                "passed": self.sane,
                "checks": [check.as_dict() for check in self.sanity],
            },
            "seconds": self.seconds,
            "evaluation": self.settings,
        }
