"""Sanity checks of a robustness evaluation: the symptoms of gradient masking or of a broken attack.

A correct evaluation satisfies, up to a tolerance:

* ε = 0 reproduces the clean accuracy (the attack pipeline itself changes nothing);
* every attack's accuracy is at most the clean accuracy, and PGD's at most FGSM's;
* the accuracy under attack does not rise with ε (a sweep of the same attack);
* every adversarial example lies in the ε-ball around its input and in [0, 1].

A failed check is reported, never hidden: it appears in ``results.json`` and ``results.md`` under
``sanity`` and as a ``WARNING`` line in the log.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import attrs

__all__ = ["SanityCheck", "check_robustness"]


@attrs.define(frozen=True)
class SanityCheck:
    """The outcome of one check.

    Attributes:
        name: a stable identifier, e.g. ``"pgd20_le_fgsm"``.
        passed: whether the check holds.
        detail: the numbers compared, in words.
    """

    name: str
    passed: bool
    detail: str

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form: ``{"name", "passed", "detail"}``."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}

    def warning(self) -> str:
        """The ``WARNING`` line written to the log when the check fails."""
        return f"WARNING: sanity check {self.name} FAILED: {self.detail} (gradient masking or a broken attack?)"


def _pct(value: float) -> str:
    return f"{100.0 * value:.2f}%"


def check_robustness(
    clean: float,
    attacks: Mapping[str, float],
    sweep: Sequence[Tuple[float, float]],
    in_ball: Mapping[str, bool],
    tolerance: float = 0.0,
) -> List[SanityCheck]:
    """Run every check that the given numbers allow.

    Args:
        clean: clean accuracy (a fraction in [0, 1]).
        attacks: accuracy under each attack, keyed by name (``fgsm``, ``pgd20``, ...).
        sweep: ``(epsilon, accuracy)`` pairs of one attack at increasing radii (may include 0).
        in_ball: per attack name (sweep points included), whether all its examples stayed in the
            ball and in [0, 1].
        tolerance: slack allowed in each comparison (a fraction of examples).

    Returns:
        The checks, in a fixed order.
    """
    checks: List[SanityCheck] = []
    for epsilon, accuracy in sweep:
        if epsilon == 0:
            checks.append(SanityCheck(
                "epsilon_zero_is_clean", abs(accuracy - clean) <= tolerance,
                f"accuracy at epsilon=0 is {_pct(accuracy)}, clean accuracy is {_pct(clean)}",
            ))
    for name, accuracy in attacks.items():
        checks.append(SanityCheck(
            f"{name}_le_clean", accuracy <= clean + tolerance,
            f"{name} accuracy {_pct(accuracy)} vs clean {_pct(clean)}",
        ))
    if "fgsm" in attacks:
        for name, accuracy in attacks.items():
            if name.startswith("pgd"):
                checks.append(SanityCheck(
                    f"{name}_le_fgsm", accuracy <= attacks["fgsm"] + tolerance,
                    f"{name} accuracy {_pct(accuracy)} vs fgsm {_pct(attacks['fgsm'])}",
                ))
    if len(sweep) >= 2:
        ordered = sorted(sweep)
        rises = [
            f"{_pct(a)} at epsilon={e:.4g} after {_pct(pa)} at epsilon={pe:.4g}"
            for (pe, pa), (e, a) in zip(ordered, ordered[1:])
            if a > pa + tolerance
        ]
        shown = ", ".join(f"{e:.4g}: {_pct(a)}" for e, a in ordered)
        checks.append(SanityCheck(
            "accuracy_non_increasing_in_epsilon", not rises,
            f"accuracy rises: {'; '.join(rises)}" if rises else f"sweep {shown}",
        ))
    outside = sorted(name for name, ok in in_ball.items() if not ok)
    checks.append(SanityCheck(
        "adversarial_examples_in_ball", not outside,
        f"left the epsilon-ball or [0, 1]: {', '.join(outside)}" if outside else "all inside the ball and [0, 1]",
    ))
    return checks
