"""Attacks for evaluation: perturbations of the summed cross-entropy, and AutoAttack.

An attack is any :class:`~rnasframe.interfaces.Perturbation`; the built-in ones are
:class:`~rnasframe.perturbations.FGSM` and :class:`~rnasframe.perturbations.PGD` (both
:class:`~rnasframe.perturbations.PGDMaximizer` instances) and :class:`AutoAttack`. The evaluation
calls an attack as ``attack(x, cross_entropy_objective(model, y), model=model)``: the objective is
the cross-entropy of the true labels **summed** over the batch, so each example's gradient does not
depend on the batch size. Attacks do not switch the model's mode;
:class:`~rnasframe.robustness.RobustnessEvaluation` runs them in eval mode.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Dict, Iterator

import attrs
import gin
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.interfaces.perturbation import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations.balls import L2Ball, LinfBall, is_norm_ball

__all__ = [
    "AutoAttack",
    "CrossEntropyObjective",
    "attack_name",
    "attack_settings",
    "ball_norm",
    "cross_entropy_objective",
    "model_mode",
    "with_radius",
]

#: AutoAttack's names of the threat models it supports, by ball class.
_AUTOATTACK_NORMS = {LinfBall: "Linf", L2Ball: "L2"}


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


@attrs.define(frozen=True)
class CrossEntropyObjective:
    """The function ``x' -> sum_i CE(model(x')_i, y_i)`` that evaluation attacks maximize.

    A value object rather than a closure, so that an attack that needs the classifier itself
    (:class:`AutoAttack`) can read :attr:`model` and :attr:`labels`.

    Attributes:
        model: the classifier.
        labels: the true labels of the batch.
    """

    model: nn.Module
    labels: Tensor

    def __call__(self, candidate: Tensor) -> Tensor:
        """The summed cross-entropy of ``model(candidate)`` against :attr:`labels`."""
        return F.cross_entropy(self.model(candidate), self.labels, reduction="sum")


def cross_entropy_objective(model: nn.Module, y: Tensor) -> CrossEntropyObjective:
    """The summed cross-entropy objective of ``model`` on the labels ``y`` (see :class:`CrossEntropyObjective`)."""
    return CrossEntropyObjective(model, y)


def attack_name(attack: Perturbation) -> str:
    """The key of ``attack`` in results: its ``name`` (``fgsm``, ``pgd20``, ...) or its class name in lower case."""
    name = getattr(attack, "name", None)
    return name if isinstance(name, str) else type(attack).__name__.lower()


def ball_norm(ball: NormBall) -> str:
    """The name of ``ball``'s norm: ``"Linf"``, ``"L2"`` or, for another ball, its class name."""
    return _AUTOATTACK_NORMS.get(type(ball), type(ball).__name__)


def attack_settings(attack: Perturbation) -> Dict[str, Any]:
    """The attack's name, class and hyperparameters, as recorded in ``results.json``.

    The ball is flattened into ``norm`` and ``epsilon``; an attack that is not an attrs class is
    recorded by its ``repr``.
    """
    settings: Dict[str, Any] = {"name": attack_name(attack), "attack": type(attack).__name__}
    if not attrs.has(type(attack)):
        return {**settings, "repr": repr(attack)}
    for key, value in attrs.asdict(attack, recurse=False).items():  # type: ignore[arg-type]
        if isinstance(value, NormBall):
            settings.update(norm=ball_norm(value), epsilon=value.epsilon)
        else:
            settings[key] = value
    return settings


def with_radius(attack: Perturbation, epsilon: float) -> Perturbation:
    """The same attack in a ball of radius ``epsilon`` (the evaluation's sweep over ε).

    Raises:
        TypeError: the attack holds no ``ball`` of an attrs class to resize.
    """
    ball = getattr(attack, "ball", None)
    if not isinstance(ball, NormBall) or not attrs.has(type(attack)) or not attrs.has(type(ball)):
        raise TypeError(
            f"cannot change the radius of {attack!r}: a sweep attack must be an attrs class with a `ball` "
            f"NormBall field (e.g. PGD(), FGSM())"
        )
    return attrs.evolve(attack, ball=attrs.evolve(ball, epsilon=epsilon))  # type: ignore[misc]


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


def _autoattack_ball(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    is_norm_ball(instance, attribute, value)
    if type(value) not in _AUTOATTACK_NORMS:
        raise ValueError(f"AutoAttack.ball must be a LinfBall or an L2Ball (AutoAttack's norms), got {value!r}")


@gin.configurable
@attrs.define(frozen=True)
class AutoAttack(Perturbation):
    """AutoAttack, standard version (Croce & Hein, 2020): APGD-CE, APGD-T, FAB-T and Square.

    An optional extra (``pip install 'rnasframe[autoattack]'``): the reference implementation
    packaged as ``pyautoattack`` (or the authors' ``autoattack``). Without it, calling the attack
    raises an :class:`ImportError` naming the extra. It attacks a classifier, not an arbitrary
    objective: call it with :func:`cross_entropy_objective`.

    Attributes:
        ball: the threat model, a :class:`~rnasframe.perturbations.LinfBall` (default) or an
            :class:`~rnasframe.perturbations.L2Ball`.
        seed: AutoAttack's own seed.
        batch_size: examples per internal batch.
    """

    ball: NormBall = attrs.field(factory=LinfBall, validator=_autoattack_ball)
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)
    batch_size: int = attrs.field(default=250, validator=validation.positive_int)

    @property
    def name(self) -> str:
        """``"autoattack"``: the attack's key in results."""
        return "autoattack"

    def check_available(self) -> None:
        """Raise :class:`ImportError`, naming the extra, when no AutoAttack package is installed."""
        _import_autoattack()

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Run the standard AutoAttack ensemble on the classifier of ``objective``; return its examples."""
        auto_attack_class = _import_autoattack()
        if not isinstance(objective, CrossEntropyObjective):
            raise TypeError(
                "AutoAttack attacks a classifier: call it with cross_entropy_objective(model, y), "
                f"got an objective of type {type(objective).__name__}"
            )
        if self.ball.epsilon == 0:
            return x.clone()
        adversary = auto_attack_class(
            objective.model, norm=_AUTOATTACK_NORMS[type(self.ball)], eps=self.ball.epsilon, version="standard",
            device=x.device, seed=self.seed,
        )
        adversary.verbose = False
        run = adversary.run_standard_evaluation
        size_keyword = "batch_size" if "batch_size" in inspect.signature(run).parameters else "bs"
        result = run(x, objective.labels, **{size_keyword: self.batch_size})
        return result[0] if isinstance(result, tuple) else result  # pyautoattack also returns the labels
