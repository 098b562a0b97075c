"""Robustness evaluation: attacks (FGSM, PGD-K, optional AutoAttack), sanity checks and results files.

Typical use::

    from rnasframe.perturbations import FGSM, PGD, LinfBall
    from rnasframe.robustness import RobustnessEvaluation

    ball = LinfBall(epsilon=0.031)
    evaluation = RobustnessEvaluation(epsilon=0.031, attacks=(FGSM(ball), PGD(ball, steps=20)), sweep_attack=PGD(ball))
    report = evaluation.evaluate(model, test_images)
    print(report.clean, report.attacks, report.sane)

Attacks are :class:`~rnasframe.interfaces.Perturbation` objects holding their threat model (a
ball); an L2 evaluation binds :class:`~rnasframe.perturbations.L2Ball` instead (``eval_l2.gin``).
"""

from rnasframe.robustness.attacks import (
    AutoAttack,
    CrossEntropyObjective,
    attack_name,
    attack_settings,
    ball_norm,
    cross_entropy_objective,
    model_mode,
    with_radius,
)
from rnasframe.robustness.evaluator import (
    RobustnessEvaluation,
    RobustnessReport,
    attack_accuracy,
    check_attack_radius,
    seeded_randomness,
)
from rnasframe.robustness.report import attack_label, count_parameters_millions, results_markdown, write_results
from rnasframe.robustness.sanity import SanityCheck, check_robustness

__all__ = [
    "AutoAttack",
    "CrossEntropyObjective",
    "RobustnessEvaluation",
    "RobustnessReport",
    "SanityCheck",
    "attack_accuracy",
    "attack_label",
    "attack_name",
    "attack_settings",
    "ball_norm",
    "check_attack_radius",
    "check_robustness",
    "count_parameters_millions",
    "cross_entropy_objective",
    "model_mode",
    "results_markdown",
    "seeded_randomness",
    "with_radius",
    "write_results",
]
