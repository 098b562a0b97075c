"""The results files of a trained network: ``results.json`` and ``results.md`` (paper, Table 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from torch import nn

from rnasframe.interfaces.perturbation import Perturbation
from rnasframe.robustness.attacks import attack_name
from rnasframe.run_folder import write_atomic, write_json_atomic

__all__ = ["attack_label", "count_parameters_millions", "results_markdown", "write_results"]

_LABELS = {"clean": "Clean", "fgsm": "FGSM", "autoattack": "AutoAttack"}


def attack_label(attack: Union[str, Perturbation]) -> str:
    """The column title of an attack or of its name: ``fgsm`` -> ``FGSM``, ``pgd20`` -> ``PGD-20``."""
    name = attack if isinstance(attack, str) else attack_name(attack)
    if name in _LABELS:
        return _LABELS[name]
    if name.startswith("pgd") and name[3:].isdigit():
        return f"PGD-{name[3:]}"
    return name


def count_parameters_millions(model: nn.Module) -> float:
    """Parameters in millions, without the auxiliary head (DARTS' ``count_parameters_in_MB`` rule)."""
    return sum(p.numel() for name, p in model.named_parameters() if "auxiliary" not in name) / 1e6


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100.0 * float(value):.2f}%"


def _call(described: Mapping[str, Any]) -> str:
    arguments = ", ".join(f"{k}={v}" for k, v in described.items() if k != "name")
    return f"`{described['name']}({arguments})`"


def results_markdown(payload: Mapping[str, Any]) -> str:
    """Render a results payload (the content of ``results.json``) as Markdown.

    The first table has the columns of the paper's Table 2 (Model, Params, Clean, FGSM, PGD-20,
    plus any other attack evaluated); then the training objective, attack settings, seed,
    wall-clock time per phase and the sanity checks.
    """
    evaluation = payload["evaluation"]
    accuracy: Dict[str, float] = evaluation["accuracy"]
    columns = list(accuracy)
    lines = [
        f"# Robustness of {payload['model']}",
        "",
        "| Model | Params (M) | Training | " + " | ".join(attack_label(c) for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
        f"| {payload['model']} | {payload['params_millions']:.3g} | {payload['training']['objective']['name']} | "
        + " | ".join(_pct(accuracy[c]) for c in columns)
        + " |",
        "",
        f"Test set: {evaluation['examples']} images ({payload['data']}), checkpoint: {payload['checkpoint']}. "
        "Params exclude the auxiliary head.",
        "",
        "## Settings",
        "",
        f"- training objective: {_call(payload['training']['objective'])}",
        f"- checkpoint selection: {payload['training']['selection']}",
        f"- seed: {payload['seed']}",
    ]
    for attack in evaluation["attacks"]:
        shown = ", ".join(f"{k}={attack[k]}" for k in sorted(attack) if k != "name")
        lines.append(f"- {attack_label(attack['name'])}: {shown}")
    sweep = evaluation["sweep"]
    pairs = ", ".join(f"ε={e:.4g}: {_pct(a)}" for e, a in zip(sweep["epsilons"], sweep["accuracy"]))
    lines.append(f"- ε sweep with {attack_label(sweep['attack']['name'])}: {pairs or 'skipped'}")
    seconds = payload["seconds"]
    lines += [
        "",
        "## Wall-clock time",
        "",
        "| Phase | Seconds |",
        "|---|---|",
        f"| train | {seconds['train']:.1f} |",
        f"| evaluate | {seconds['evaluate']:.1f} |",
        "",
        f"Device: {payload['device']}.",
        "",
        "## Sanity checks",
        "",
        "| Check | Result | Detail |",
        "|---|---|---|",
    ]
    for check in evaluation["sanity"]["checks"]:
        lines.append(f"| {check['name']} | {'pass' if check['passed'] else '**FAIL**'} | {check['detail']} |")
    if not evaluation["sanity"]["passed"]:
        lines += ["", "**WARNING: at least one sanity check failed; the robust accuracies above are suspect "
                  "(gradient masking or a broken attack).**"]
    return "\n".join(lines) + "\n"


def write_results(folder: os.PathLike[str] | str, payload: Mapping[str, Any]) -> Path:
    """Write ``results.json`` (atomically) and ``results.md`` into ``folder``; return the JSON path."""
    folder = Path(folder)
    json_path = folder / "results.json"
    write_json_atomic(json_path, dict(payload))
    write_atomic(folder / "results.md", results_markdown(payload))
    return json_path
