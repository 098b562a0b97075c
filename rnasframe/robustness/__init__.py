"""Robustness evaluation: attacks (FGSM, PGD-K, optional AutoAttack), sanity checks and results files.

Typical use::

    from rnasframe.robustness import RobustnessEvaluation

    report = RobustnessEvaluation(epsilon=0.031, attacks=("fgsm", "pgd20")).evaluate(model, test_images)
    print(report.clean, report.attacks, report.sane)

Every attack works in the L∞ ball (the paper's threat model) or the L2 ball
(``RobustnessEvaluation(norm="L2", epsilon=0.5, pgd_step_size=0.0625)``, ``examples/eval_l2.gin``).
"""

from rnasframe.robustness.attacks import (
    ATTACK_NAMES,
    NORMS,
    Attack,
    AutoAttackStandard,
    FGSMAttack,
    PGDAttack,
    attack_from_name,
    cross_entropy_objective,
    model_mode,
)
from rnasframe.robustness.evaluator import RobustnessEvaluation, RobustnessReport, attack_accuracy, seeded_randomness
from rnasframe.robustness.report import attack_label, count_parameters_millions, results_markdown, write_results
from rnasframe.robustness.sanity import SanityCheck, check_robustness

__all__ = [
    "ATTACK_NAMES",
    "NORMS",
    "Attack",
    "AutoAttackStandard",
    "FGSMAttack",
    "PGDAttack",
    "RobustnessEvaluation",
    "RobustnessReport",
    "SanityCheck",
    "attack_accuracy",
    "attack_from_name",
    "attack_label",
    "check_robustness",
    "count_parameters_millions",
    "cross_entropy_objective",
    "model_mode",
    "results_markdown",
    "seeded_randomness",
    "write_results",
]
