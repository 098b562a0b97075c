"""Robust accuracy of a trained network: clean, under each attack, an ε sweep and the sanity checks."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import attrs
import gin
import torch
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.data.images import LabeledImages
from rnasframe.robustness.attacks import NORMS, Attack, PGDAttack, attack_from_name, check_radius, model_mode
from rnasframe.validation import boolean
from rnasframe.robustness.sanity import SanityCheck, check_robustness

__all__ = ["RobustnessEvaluation", "RobustnessReport", "attack_accuracy", "seeded_randomness"]

_BALL_TOLERANCE = 1e-5


@contextlib.contextmanager
def seeded_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's generators seeded with ``seed``, restoring their states afterwards.

    Random starts of attacks are then reproducible, and an evaluation in the middle of a training
    run does not change the random numbers the training draws next.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _batches(images: LabeledImages, batch_size: int, device: torch.device, limit: Optional[int]) -> Iterator[Tuple[Tensor, Tensor]]:
    count = len(images) if limit is None else min(limit, len(images))
    for index in torch.arange(count).split(batch_size):
        yield images.pixels(index).to(device), images.labels[index].to(device)


def _inside(x_adv: Tensor, x: Tensor, attack: Attack) -> bool:
    """Whether every example of ``x_adv`` lies in ``attack``'s ball around ``x`` and in [0, 1]."""
    if not x.numel():
        return True
    delta = (x_adv - x).flatten(1)
    distance = delta.abs().amax(dim=1) if attack.norm == "Linf" else torch.linalg.vector_norm(delta, dim=1)
    slack = _BALL_TOLERANCE * max(1.0, attack.epsilon)
    return bool((distance <= attack.epsilon + slack).all() and x_adv.min() >= 0.0 and x_adv.max() <= 1.0)


def attack_accuracy(
    model: nn.Module,
    images: LabeledImages,
    attack: Optional[Attack],
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
            inputs = x if attack is None else attack(model, x, y)
            with torch.no_grad():
                correct += int((model(inputs).argmax(dim=1) == y).sum())
            count += int(y.shape[0])
    return correct / count if count else float("nan")


def _check_names(instance: "RobustnessEvaluation", attribute: "attrs.Attribute[Any]", value: Tuple[str, ...]) -> None:
    if not value:
        raise ValueError("RobustnessEvaluation.attacks must name at least one attack, e.g. ('fgsm', 'pgd20')")
    for name in value:
        attack_from_name(name, instance.epsilon, norm=_norm(instance))  # raises on an unknown name, listing the valid ones
    if len(set(value)) != len(value):
        raise ValueError(f"RobustnessEvaluation.attacks lists an attack twice: {value!r}")


def _check_fractions(instance: "RobustnessEvaluation", attribute: "attrs.Attribute[Any]", value: Tuple[float, ...]) -> None:
    for fraction in value:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(
                f"RobustnessEvaluation.sweep_fractions must be numbers in [0, 1] (fractions of epsilon), got {value!r}"
            )
    if list(value) != sorted(set(value)):
        raise ValueError(f"RobustnessEvaluation.sweep_fractions must be increasing without repeats, got {value!r}")


def _check_sweep_attack(instance: "RobustnessEvaluation", attribute: "attrs.Attribute[Any]", value: str) -> None:
    attack_from_name(value, instance.epsilon, norm=_norm(instance))


def _norm(instance: "RobustnessEvaluation") -> str:
    """The instance's norm if valid (its own validator reports a bad one), else ``"Linf"``."""
    return instance.norm if instance.norm in NORMS else "Linf"


@gin.configurable
@attrs.define(frozen=True)
class RobustnessEvaluation:
    """How a trained network is evaluated: attacks, their settings, the ε sweep and the checks.

    Clean accuracy is always measured. Every attack runs with the model in eval mode (BatchNorm
    running statistics, no drop path), on the same examples, with torch's generators seeded with
    :attr:`seed` (and restored afterwards).

    Args:
        epsilon: the radius of every attack, pixel units of [0, 1] images (paper, L∞: 0.031;
            the usual CIFAR-10 L2 radius: 0.5; see ``examples/eval_l2.gin``).
        norm: the threat model of every attack: ``"Linf"`` (the paper's) or ``"L2"`` (FGSM is
            then the L2 fast gradient method, PGD takes normalized-gradient steps in the L2 ball,
            AutoAttack runs its L2 version).
        attacks: attack names: ``fgsm``, ``pgd<K>`` (e.g. ``pgd20``), ``autoattack`` (optional
            extra). Paper, Table 2: FGSM and PGD-20.
        pgd_step_size: step length of PGD attacks (0.003: the paper's L∞ PGD step of section
            4.1; recorded in the results). ``steps * pgd_step_size`` must reach ``epsilon``, or
            PGD could not reach the ball's boundary from ``x`` (checked when built: an L∞ step
            left unchanged under an L2 radius is a common slip).
        random_start: PGD starts from a uniform point of the ball.
        sweep_attack: the attack run at ``epsilon * f`` for each ``f`` in ``sweep_fractions``;
            its full-ε point reuses the main result when the attack is also in ``attacks``.
        sweep_fractions: increasing fractions of ε for the monotonicity check; 0 also checks that
            ε = 0 reproduces the clean accuracy. ``()`` skips the sweep.
        tolerance: slack of the sanity checks, as a fraction of examples (0: exact).
        batch_size: examples per evaluation batch.
        max_examples: evaluate only the first ``max_examples`` images (``None``: all).
        seed: seed of the attacks' random starts.
    """

    epsilon: float = attrs.field(default=0.031, validator=check_radius)
    norm: str = attrs.field(default="Linf", validator=validation.one_of(*NORMS))
    attacks: Tuple[str, ...] = attrs.field(default=("fgsm", "pgd20"), converter=tuple, validator=_check_names)
    pgd_step_size: float = attrs.field(default=0.003, validator=validation.greater_than(0.0, "pixel units"))
    random_start: bool = attrs.field(default=True, validator=boolean)
    sweep_attack: str = attrs.field(default="pgd20", validator=_check_sweep_attack)
    sweep_fractions: Tuple[float, ...] = attrs.field(default=(0.0, 0.25, 0.5, 1.0), converter=tuple, validator=_check_fractions)
    tolerance: float = attrs.field(default=0.0, validator=validation.in_closed_range(0.0, 1.0, "a fraction of examples"))
    batch_size: int = attrs.field(default=250, validator=validation.positive_int)
    max_examples: Optional[int] = attrs.field(default=None, validator=attrs.validators.optional(validation.positive_int))
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)

    def __attrs_post_init__(self) -> None:
        for name in dict.fromkeys((*self.attacks, self.sweep_attack)):
            attack = self.build(name)
            if isinstance(attack, PGDAttack) and attack.steps * attack.step_size < self.epsilon:
                raise ValueError(
                    f"RobustnessEvaluation: {name} moves at most steps * pgd_step_size = {attack.steps} * "
                    f"{attack.step_size:g} = {attack.steps * attack.step_size:.4g} < epsilon = {self.epsilon:g} "
                    f"({self.norm}), so it cannot reach the ball's boundary; use pgd_step_size >= epsilon / "
                    f"{attack.steps} (2.5 * epsilon / steps = {2.5 * self.epsilon / attack.steps:.4g} is the usual choice)"
                )

    def build(self, name: str, epsilon: Optional[float] = None) -> Attack:
        """The attack called ``name`` with this evaluation's settings (and ``epsilon`` if given)."""
        return attack_from_name(
            name, self.epsilon if epsilon is None else epsilon, self.pgd_step_size, self.random_start, self.seed,
            self.norm,
        )

    def check_available(self) -> None:
        """Raise :class:`ImportError` now if an attack needs an optional package that is missing.

        Training calls this before its first epoch, so that a missing extra never ends a long
        run at its final evaluation.
        """
        for name in (*self.attacks, self.sweep_attack):
            self.build(name).check_available()

    def evaluate(
        self,
        model: nn.Module,
        images: LabeledImages,
        device: torch.device | str = "cpu",
        attacks: Optional[Sequence[Attack]] = None,
        sweep_attack: Optional[Attack] = None,
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
        chosen = list(attacks) if attacks is not None else [self.build(name) for name in self.attacks]
        sweeper = sweep_attack if sweep_attack is not None else self.build(self.sweep_attack)
        by_name = {attack.name: attack for attack in chosen}
        sweep_points: List[Tuple[float, Attack, Optional[str]]] = []
        for fraction in self.sweep_fractions:
            epsilon = self.epsilon * fraction
            reused = by_name.get(sweeper.name)
            if fraction == 1.0 and reused is not None and reused.settings() == sweeper.at_epsilon(epsilon).settings():
                sweep_points.append((epsilon, sweeper, sweeper.name))
            else:
                sweep_points.append((epsilon, sweeper.at_epsilon(epsilon), None))

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
                runs = [(attack.name, attack) for attack in chosen]
                runs += [(key, attack) for key, (_, attack, reused) in zip(sweep_keys, sweep_points) if reused is None]
                for key, attack in runs:
                    started = time.perf_counter()
                    x_adv = attack(model, x, y)
                    with torch.no_grad():
                        correct[key] = correct.get(key, 0) + int((model(x_adv).argmax(dim=1) == y).sum())
                    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - started
                    in_ball[key] = in_ball.get(key, True) and _inside(x_adv, x, attack)
        if count == 0:
            raise ValueError(f"cannot evaluate on {images.name}: it holds no images")
        accuracy = {key: value / count for key, value in correct.items()}
        attack_accuracies = {attack.name: accuracy[attack.name] for attack in chosen}
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
            attack_settings=[attack.settings() for attack in chosen],
            sweep_settings={"attack": sweeper.settings(), "epsilons": [e for e, _ in sweep]},
            seconds=seconds,
            settings=attrs.asdict(self),
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
