"""Reduced-scale study on the bundled digits: calibrate the threat model, then search -> train -> attack.

1. **Calibration.** A standard-trained network of the study's size (the DARTS_V2 cell) is
   attacked with PGD-20 at a grid of L∞ radii; the study's ε is the grid radius whose PGD-20
   accuracy is closest to 40 % among those inside 20-60 %. Search and evaluation then use that ε,
   with every PGD step size scaled to it (Madry et al.'s 2.5·ε of total travel). The run is
   recorded in ``<work_dir>/calibration.json`` and in the report.
2. For each search space (DARTS, NAS-Bench-201), method (darts, uniform, max, max_fgsm,
   max_warm) and seed: a search with a small supernet (the method's gin file plus the bindings
   below), then training of the derived architecture from scratch with standard training for
   every method and PGD-5 adversarial training for darts, max and max_fgsm, then clean, FGSM
   and PGD-20 accuracy on the digits' test part, with the sanity checks.
3. A Markdown report (default ``docs/reduced_scale_study.md``): mean ± std per method; for each
   method the per-seed paired difference to DARTS (same seed, same space, same training) with a
   95 % Student-t confidence interval; the search cost per phase and its ratio to DARTS; the
   health signals of the last search epoch (skip connections in the derived cell, mean entropy
   of softmax(alpha), the Hessian's dominant eigenvalue).

Every run keeps its own run folder under ``--work_dir``; running the same command again reuses
finished runs and resumes unfinished ones, so a study can be split over processes (``--jobs``)
or sessions.

Examples::

    python examples/reduced_scale_study.py --jobs 2            # 5 seeds, both spaces (hours on 2 cores)
    python examples/reduced_scale_study.py --spaces darts --methods darts,max --seeds 3
    python examples/reduced_scale_study.py --spaces nasbench201 --adversarial ''   # standard training only
    python examples/reduced_scale_study.py --report_only       # the report of what has finished so far
    python examples/reduced_scale_study.py --quick             # 1 seed, tiny epochs (a smoke test)

Numbers are for 8x8 digits with small networks: they compare the methods at this scale, not
the paper's CIFAR-10 figures.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs
import gin
import torch

from rnasframe.config import parse_gin
from rnasframe.engine import SearchEngine
from rnasframe.robustness.report import attack_label
from rnasframe.training import Trainer

EXAMPLES = Path(__file__).resolve().parent
SPACES = ("darts", "nasbench201")
METHODS = ("darts", "uniform", "max", "max_fgsm", "max_warm")
ADVERSARIAL_METHODS = ("darts", "max", "max_fgsm")
#: PGD steps of adversarial training (PGD-5, step 2.5·ε/5: a third cheaper than the paper's PGD-7).
ADVERSARIAL_STEPS = 5
COLUMNS = ("clean", "fgsm", "pgd20")
#: The calibration's target: PGD-20 accuracy of a standard-trained network, as fractions.
TARGET_RANGE = (0.20, 0.60)
TARGET = 0.40
#: Radii tried by the calibration (pixel units of [0, 1] images).
CALIBRATION_GRID = (0.031, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3)
#: --quick: two radii, and the closest to the target is taken even outside the range.
QUICK_GRID = (0.05, 0.15)
#: Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)

#: Each method's gin file per space, and bindings that turn the space's max file into the method.
SEARCH_FILES = {
    "darts": {"darts": "darts.gin", "uniform": "uniform.gin", "max": "max.gin", "max_fgsm": "max_fgsm.gin",
              "max_warm": "max_warm.gin"},
    "nasbench201": {"darts": "nb201_darts.gin", "uniform": "nb201_uniform.gin", "max": "nb201_max.gin",
                    "max_fgsm": "nb201_max.gin", "max_warm": "nb201_max.gin"},
}
NB201_METHOD_BINDINGS = {
    "max_fgsm": ["PerturbationConsistency.perturbation = @FGSMRandomStart()", "FGSMRandomStart.ball = @LinfBall()"],
    "max_warm": ["PerturbationConsistency.perturbation = @WarmStartPGD()", "WarmStartPGD.ball = @LinfBall()"],
}
TRAIN_FILES = {
    "darts": {"standard": "train.gin", "adversarial": "adv_train.gin"},
    "nasbench201": {"standard": "train_nb201.gin", "adversarial": "train_nb201.gin"},
}

#: The reduced-scale search (compare with base.gin, paper section 4.1).
SEARCH_BINDINGS = [
    "SearchEngine.data = @DigitsSource()",
    "SearchEngine.device = 'cpu'",
    "SearchEngine.epochs = 6",
    "SearchEngine.warmup_epochs = 2",
    "SearchEngine.batch_size = 64",
    "SearchEngine.eval_batches = 4",
    "Augmentation.crop_padding = 1",
    "Augmentation.horizontal_flip = False",
    "CollapseSignals.hessian_every = 2",
    "CollapseSignals.hessian_iterations = 10",
]
SPACE_SEARCH_BINDINGS = {
    "darts": ["DartsSpace.channels = 4", "DartsSpace.layers = 5"],
    "nasbench201": ["NasBench201Space.channels = 4", "NasBench201Space.cells_per_stage = 1"],
}
#: The reduced-scale training (compare with train.gin, paper section 4.2).
TRAIN_BINDINGS = [
    "Trainer.data = @DigitsSource()",
    "Trainer.device = 'cpu'",
    "Trainer.epochs = 8",
    "Trainer.batch_size = 64",
    "Augmentation.crop_padding = 1",
    "Augmentation.horizontal_flip = False",
    "Augmentation.cutout = 0",
    "RobustnessEvaluation.sweep_fractions = ()",  # the sweep is the calibration's job here
]
SPACE_TRAIN_BINDINGS = {
    "darts": ["DartsNetworkConfig.channels = 8", "DartsNetworkConfig.layers = 5"],
    "nasbench201": [
        "NasBench201Space.network_channels = 8", "NasBench201Space.network_cells_per_stage = 1",
        "Trainer.validation_portion = 0.1",
    ],
}
#: NAS-Bench-201's training file is standard training; these make it PGD adversarial training.
NB201_ADVERSARIAL = [
    "Trainer.objective = @AdversarialTraining()", "AdversarialTraining.perturbation = @PGDMaximizer()",
    "AdversarialTraining.attack_mode = 'eval'", "PGDMaximizer.ball = @LinfBall()",
    "PGDMaximizer.random_start = True",
]
#: --quick: one tiny epoch everywhere and a small evaluation, to check the pipeline in seconds.
QUICK_SEARCH = [
    "SearchEngine.epochs = 2", "SearchEngine.warmup_epochs = 1", "SearchEngine.batch_size = 16",
    "SearchEngine.max_steps_per_epoch = 2", "SearchEngine.eval_batches = 1", "CollapseSignals.hessian_iterations = 2",
]
QUICK_SPACE = {
    "darts": ["DartsSpace.channels = 2", "DartsSpace.layers = 3", "DartsNetworkConfig.channels = 2",
              "DartsNetworkConfig.layers = 3"],
    "nasbench201": ["NasBench201Space.channels = 2", "NasBench201Space.network_channels = 2"],
}
QUICK_TRAIN = [
    "Trainer.epochs = 1", "Trainer.batch_size = 16", "Trainer.max_steps_per_epoch = 2",
    "Trainer.selection_max_examples = 16", "RobustnessEvaluation.max_examples = 16",
]


def threat_bindings(epsilon: float, search_steps: int) -> List[str]:
    """Bindings that put every ball at ``epsilon`` and scale each PGD's step to 2.5·ε of total travel."""
    return [
        f"EPSILON = {epsilon!r}", f"LinfBall.epsilon = {epsilon!r}", f"RobustnessEvaluation.epsilon = {epsilon!r}",
        f"PGD.step_size = {2.5 * epsilon / 20!r}",  # PGD-20 in evaluation and the sweep
        f"selection/PGD.step_size = {2.5 * epsilon / 10!r}",
        f"PGDMaximizer.steps = {search_steps}",
        f"PGDMaximizer.step_size = {2.5 * epsilon / search_steps!r}",
    ]


@attrs.define(frozen=True)
class Settings:
    """What every phase of one study shares."""

    epsilon: float
    quick: bool
    work: Path
    adversarial: Tuple[str, ...] = ADVERSARIAL_METHODS
    report_only: bool = False


def _parse(files: Sequence[str], bindings: Sequence[str]) -> None:
    gin.clear_config()
    parse_gin(list(files), list(bindings), [EXAMPLES])


def _search(space: str, method: str, seed: int, settings: Settings) -> Dict[str, Any]:
    """Search (or reuse a finished search); return its results.json payload."""
    folder = settings.work / space / f"{method}-seed{seed}" / "search"
    results = folder / "results.json"
    if not results.is_file():
        bindings = [*SEARCH_BINDINGS, *SPACE_SEARCH_BINDINGS[space], f"SearchEngine.seed = {seed}"]
        if space == "nasbench201":
            bindings += NB201_METHOD_BINDINGS.get(method, [])
        bindings += threat_bindings(settings.epsilon, 1 if settings.quick else 3)
        if method != "max":
            bindings = [b for b in bindings if not b.startswith(("PGDMaximizer.", "PGD.", "selection/"))]
        bindings += QUICK_SEARCH + QUICK_SPACE[space] if settings.quick else []
        _parse([SEARCH_FILES[space][method]], bindings)
        SearchEngine().run(folder, resume=(folder / "checkpoint.pt").is_file())
    payload: Dict[str, Any] = json.loads(results.read_text())
    payload["run_dir"] = str(folder)
    return payload


def _train_bindings(space: str, training: str, seed: int, name: str, settings: Settings) -> List[str]:
    bindings = [*TRAIN_BINDINGS, *SPACE_TRAIN_BINDINGS[space], f"Trainer.seed = {seed}", f"Trainer.model_name = '{name}'"]
    if space == "nasbench201" and training == "adversarial":
        bindings += NB201_ADVERSARIAL
    bindings += threat_bindings(settings.epsilon, ADVERSARIAL_STEPS)
    if training == "standard":
        bindings = [b for b in bindings if not b.startswith("PGDMaximizer.")]
    if settings.quick:
        bindings += QUICK_TRAIN + QUICK_SPACE[space] + ["PGDMaximizer.steps = 2"] * (training == "adversarial")
    return bindings


def _train(space: str, training: str, seed: int, genotype: Any, folder: Path, settings: Settings) -> Dict[str, Any]:
    """Train and evaluate (or reuse a finished run in ``folder``); return its results.json payload."""
    results = folder / "results.json"
    if not results.is_file():
        _parse([TRAIN_FILES[space][training]], _train_bindings(space, training, seed, folder.parent.name, settings))
        Trainer().with_genotype(genotype).run(folder, resume=(folder / "checkpoint.pt").is_file())
    payload: Dict[str, Any] = json.loads(results.read_text())
    return payload


def calibrate(settings: Settings) -> Dict[str, Any]:
    """Train the calibration network once and attack it at every grid radius; choose the study's ε.

    Raises:
        ValueError: no grid radius gives a PGD-20 accuracy inside :data:`TARGET_RANGE`.
    """
    path = settings.work / "calibration.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    folder = settings.work / "calibration" / "DARTS_V2-standard"
    base = attrs.evolve(settings, epsilon=CALIBRATION_GRID[0])
    _train("darts", "standard", 0, "DARTS_V2", folder, base)
    accuracy: Dict[str, float] = {}
    for epsilon in QUICK_GRID if settings.quick else CALIBRATION_GRID:
        bindings = _train_bindings("darts", "standard", 0, "calibration", attrs.evolve(settings, epsilon=epsilon))
        _parse([TRAIN_FILES["darts"]["standard"]], [*bindings, "RobustnessEvaluation.sweep_fractions = ()"])
        report = Trainer().evaluate_run(folder).report
        accuracy[repr(epsilon)] = float(report.as_dict()["accuracy"]["pgd20"])
        clean = float(report.as_dict()["accuracy"]["clean"])
    inside = {e: a for e, a in accuracy.items() if TARGET_RANGE[0] <= a <= TARGET_RANGE[1] or settings.quick}
    if not inside:
        raise ValueError(
            "calibration cannot reach the target range: PGD-20 accuracy "
            + ", ".join(f"{100 * a:.1f}% at ε={e}" for e, a in accuracy.items())
            + f"; none inside {100 * TARGET_RANGE[0]:.0f}-{100 * TARGET_RANGE[1]:.0f}% (widen CALIBRATION_GRID)"
        )
    chosen = min(inside, key=lambda e: abs(inside[e] - TARGET))
    record = {"epsilon": float(chosen), "pgd20_by_epsilon": accuracy, "clean": clean, "run_dir": str(folder),
              "genotype": "DARTS_V2", "target_range": list(TARGET_RANGE)}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_one(space: str, method: str, seed: int, settings: Settings) -> List[Dict[str, Any]]:
    """Search, then train and evaluate each training of one (space, method, seed); return the rows.

    With :attr:`Settings.report_only`, nothing runs: the rows of the finished runs are returned.
    """
    torch.set_num_threads(1)
    folder = settings.work / space / f"{method}-seed{seed}"
    if settings.report_only and not (folder / "search" / "results.json").is_file():
        return []
    search = _search(space, method, seed, settings)
    trainings = ["standard", "adversarial"] if method in settings.adversarial else ["standard"]
    if settings.report_only:
        trainings = [t for t in ("standard", "adversarial") if (folder / t / "results.json").is_file()]
    rows = []
    for training in trainings:
        payload = _train(space, training, seed, Path(search["run_dir"]), folder / training, settings)
        evaluation = payload["evaluation"]
        final = search.get("final_metrics", {})
        known = search.get("genotype_metrics", {})
        rows.append({
            "space": space, "method": method, "seed": seed, "training": training, "run_dir": str(folder / training),
            "accuracy": evaluation["accuracy"], "sane": evaluation["sanity"]["passed"],
            "params_millions": payload["params_millions"],
            "search_seconds": float(search["search_cost"]["total_seconds"]),
            "train_seconds": payload["seconds"]["train"], "evaluate_seconds": payload["seconds"]["evaluate"],
            "skip_connect": known.get("normal_skip_connect", known.get("cell_skip_connect", math.nan)),
            "alpha_entropy": final.get("signals/alpha_entropy", math.nan),
            "hessian": final.get("signals/hessian_eigenvalue", math.nan),
        })
    gin.clear_config()
    return rows


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_interval(differences: Sequence[float]) -> Tuple[float, float, float]:
    """Mean of paired differences and its two-sided 95 % Student-t interval ``(mean, low, high)``."""
    mean, std = mean_std(differences)
    if len(differences) < 2:
        return mean, math.nan, math.nan
    half = T_975[min(len(differences) - 1, len(T_975)) - 1] * std / math.sqrt(len(differences))
    return mean, mean - half, mean + half


def _pct(values: Sequence[float]) -> str:
    mean, std = mean_std([100.0 * v for v in values])
    return f"{mean:.1f} ± {std:.1f}"


def _num(values: Sequence[float], digits: int = 2) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "n/a"
    mean, std = mean_std(finite)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _groups(rows: List[Dict[str, Any]]) -> Dict[Tuple[str, str, str], List[Dict[str, Any]]]:
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (SPACES.index(r["space"]), r["training"] != "standard",
                                           METHODS.index(r["method"]), r["seed"])):
        groups.setdefault((row["space"], row["training"], row["method"]), []).append(row)
    return groups


def _interval_cell(differences: Sequence[float], digits: int) -> str:
    """``mean [low, high]`` of paired differences, bold when the 95 % interval excludes 0."""
    mean, low, high = paired_interval(differences)
    if math.isnan(low):
        return f"{mean:+.{digits}f} (one seed)"
    resolved = "**" if low > 0 or high < 0 else ""
    return f"{resolved}{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{resolved}"


def _pairs(
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]], key: Tuple[str, str, str]
) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """The rows of ``key`` paired with DARTS' row of the same space, training and seed."""
    space, training, _ = key
    base = {r["seed"]: r for r in groups.get((space, training, "darts"), [])}
    return [(r, base[r["seed"]]) for r in groups[key] if r["seed"] in base]


def _difference_lines(groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]]) -> List[str]:
    lines = [
        "| Space | Training | Method - darts | Seeds | " + " | ".join(f"Δ {attack_label(c)}" for c in COLUMNS) + " |",
        "|---|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for (space, training, method) in groups:
        paired = _pairs(groups, (space, training, method))
        if method == "darts" or not paired:
            continue
        cells = [
            _interval_cell([100 * (r["accuracy"][c] - b["accuracy"][c]) for r, b in paired], 1) for c in COLUMNS
        ]
        lines.append(f"| {space} | {training} | {method} | {len(paired)} | " + " | ".join(cells) + " |")
    return lines


def _signal_difference_lines(groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]]) -> List[str]:
    lines = ["| Space | Method - darts | Seeds | Δ Skip | Δ λ_max |", "|---|---|---|---|---|"]
    for (space, training, method) in groups:
        paired = [(r, b) for r, b in _pairs(groups, (space, training, method))
                  if not math.isnan(r["hessian"]) and not math.isnan(b["hessian"])]
        if training != "standard" or method == "darts" or not paired:
            continue
        skip = _interval_cell([r["skip_connect"] - b["skip_connect"] for r, b in paired], 1)
        hessian = _interval_cell([r["hessian"] - b["hessian"] for r, b in paired], 3)
        lines.append(f"| {space} | {method} | {len(paired)} | {skip} | {hessian} |")
    return lines


def _summed_seconds(groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]]) -> float:
    """Every search once, plus every training and evaluation."""
    searches = {(r["space"], r["method"], r["seed"]): r["search_seconds"] for rows in groups.values() for r in rows}
    runs = sum(r["train_seconds"] + r["evaluate_seconds"] for rows in groups.values() for r in rows)
    return float(sum(searches.values()) + runs)


def render(
    rows: List[Dict[str, Any]], calibration: Dict[str, Any], command: str, quick: bool, wall: Optional[float]
) -> str:
    """The Markdown report of the study (``rows``: one per space, method, seed and training).

    ``wall``: the seconds this invocation took, or ``None`` (``--report_only``: the runs' own times are summed).
    """
    epsilon = calibration["epsilon"]
    seeds = sorted({r["seed"] for r in rows})
    groups = _groups(rows)
    lines = [
        "# Reduced-scale study: calibrated robustness of searched cells on the bundled digits",
        "",
        "Generated by `examples/reduced_scale_study.py`" + (" in **--quick** mode (a pipeline check, not a result)"
                                                            if quick else "") + ". The exact command:",
        "", "```bash", command, "```", "",
        f"{len(seeds)} seed(s) per method; mean ± sample standard deviation across seeds. Data: scikit-learn's "
        "handwritten digits (1,797 8x8 grey images; 20 % test part, 10 % of the rest held out for checkpoint "
        f"selection). Threat model: L∞, **ε = {epsilon}** (calibrated, below), FGSM and PGD-20 (step 2.5·ε/20, "
        "random start), model in eval mode.",
        "",
        "## Calibration of ε",
        "",
        f"A standard-trained DARTS_V2 network of the study's training size (clean accuracy "
        f"{100 * calibration['clean']:.1f} %) attacked with PGD-20 at each radius; the study uses the radius whose "
        f"accuracy is closest to {100 * TARGET:.0f} % inside {100 * TARGET_RANGE[0]:.0f}-{100 * TARGET_RANGE[1]:.0f} %. "
        f"Run folder: `{calibration['run_dir']}`.",
        "",
        "| ε | " + " | ".join(calibration["pgd20_by_epsilon"]) + " |",
        "|---|" + "---|" * len(calibration["pgd20_by_epsilon"]),
        "| PGD-20 (%) | " + " | ".join(f"{100 * a:.1f}" for a in calibration["pgd20_by_epsilon"].values()) + " |",
        "",
        "## Accuracy (%)",
        "",
        "| Space | Training | Method | Seeds | " + " | ".join(attack_label(c) for c in COLUMNS) + " | Params (M) | Sanity |",
        "|---|---|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for (space, training, method), members in groups.items():
        cells = [_pct([m["accuracy"][c] for m in members]) for c in COLUMNS]
        failed = sum(1 for m in members if not m["sane"])
        sanity = "pass" if failed == 0 else f"**{failed} FAILED**"
        params = mean_std([m["params_millions"] for m in members])[0]
        lines.append(f"| {space} | {training} | {method} | {len(members)} | " + " | ".join(cells)
                     + f" | {params:.3g} | {sanity} |")
    lines += [
        "",
        "## Paired differences to DARTS (percentage points)",
        "",
        "Per seed, the method's accuracy minus DARTS' (same seed, space and training); mean and two-sided 95 % "
        "Student-t confidence interval over the seeds. **Bold**: the interval excludes 0 (a resolved difference).",
        "",
        *_difference_lines(groups),
        "",
        "## Search cost and health signals of the last search epoch",
        "",
        "Search seconds are wall clock of the search epochs (the signals' own time excluded); the ratio is to "
        "DARTS' mean in the same space. Skip: `skip_connect` edges in the derived (normal) cell; entropy: mean "
        "entropy of softmax(alpha) in nats; λ_max: dominant Hessian eigenvalue of the validation objective w.r.t. alpha.",
        "",
        "| Space | Method | Search (s) | x DARTS | Train std. (s) | Train adv. (s) | Evaluate (s) | Skip | Entropy | λ_max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (space, training, method), members in groups.items():
        if training != "standard":
            continue
        darts = [m["search_seconds"] for m in groups.get((space, "standard", "darts"), [])]
        search = [m["search_seconds"] for m in members]
        ratio = mean_std(search)[0] / mean_std(darts)[0] if darts else math.nan
        adversarial = [m["train_seconds"] for m in groups.get((space, "adversarial", method), [])]
        lines.append(
            f"| {space} | {method} | {_num(search, 0)} | {ratio:.2f} | {_num([m['train_seconds'] for m in members], 0)} | "
            f"{_num(adversarial, 0)} | {_num([m['evaluate_seconds'] for m in members], 0)} | "
            f"{_num([m['skip_connect'] for m in members], 1)} | {_num([m['alpha_entropy'] for m in members], 4)} | "
            f"{_num([m['hessian'] for m in members], 3)} |"
        )
    lines += [
        "",
        "Paired differences of the search's signals to DARTS (same space and seed; 95 % t interval):",
        "",
        *_signal_difference_lines(groups),
    ]
    lines += [
        "",
        (f"Whole study: {wall:.0f} s of wall clock" if wall is not None else
         f"Summed wall clock of every run's phases: {_summed_seconds(groups):.0f} s")
        + f" on {platform.machine()} with torch {torch.__version__}, one thread per process.",
        "",
        "## Every run",
        "",
        "| Space | Method | Seed | Training | " + " | ".join(attack_label(c) for c in COLUMNS) + " | Run folder |",
        "|---|---|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for members in groups.values():
        for row in members:
            cells = " | ".join(f"{100 * row['accuracy'][c]:.2f}" for c in COLUMNS)
            lines.append(f"| {row['space']} | {row['method']} | {row['seed']} | {row['training']} | {cells} | "
                         f"`{row['run_dir']}` |")
    lines += ["", "## Settings", "", "Search (after the method's gin file; PGD settings for max only):", "", "```"]
    lines += [*SEARCH_BINDINGS, *threat_bindings(epsilon, 3), "```", "", "Per space:", "", "```"]
    lines += [f"{space}: {b}" for space, bindings in SPACE_SEARCH_BINDINGS.items() for b in bindings]
    lines += [f"nasbench201 {m}: {b}" for m, bindings in NB201_METHOD_BINDINGS.items() for b in bindings]
    lines += ["```", "", "Training (after `train.gin`, `adv_train.gin` or `train_nb201.gin`):", "", "```"]
    lines += [*TRAIN_BINDINGS, *threat_bindings(epsilon, ADVERSARIAL_STEPS)[:5],
              f"PGDMaximizer.steps = {ADVERSARIAL_STEPS}  # adversarial",
              f"PGDMaximizer.step_size = {2.5 * epsilon / ADVERSARIAL_STEPS!r}  # adversarial"]
    lines += [f"{space}: {b}" for space, bindings in SPACE_TRAIN_BINDINGS.items() for b in bindings]
    lines += [f"nasbench201 adversarial: {b}" for b in NB201_ADVERSARIAL]
    lines += ["```", ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (default 5)")
    parser.add_argument("--spaces", default=",".join(SPACES), help="comma-separated: " + ", ".join(SPACES))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: " + ", ".join(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="processes running (space, method, seed) pipelines")
    parser.add_argument("--work_dir", default="runs/reduced_scale_study", help="run folders of every phase")
    parser.add_argument("--out", default="docs/reduced_scale_study.md", help="the Markdown report")
    parser.add_argument(
        "--adversarial", default=",".join(ADVERSARIAL_METHODS),
        help="methods whose cells are also adversarially trained (comma-separated; '' for none)",
    )
    parser.add_argument("--report_only", action="store_true", help="write the report from the finished runs only")
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny epochs: checks the pipeline in seconds")
    return parser


def _choices(text: str, allowed: Sequence[str], flag: str) -> List[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(part not in allowed for part in chosen):
        raise ValueError(f"{flag} must list some of {', '.join(allowed)}; got {text!r}")
    return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the study and write the report; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        spaces = _choices(args.spaces, SPACES, "--spaces")
        methods = _choices(args.methods, METHODS, "--methods")
        adversarial = _choices(args.adversarial, METHODS, "--adversarial") if args.adversarial.strip() else []
        if args.seeds < 1 or args.jobs < 1:
            raise ValueError(f"--seeds and --jobs must be >= 1, got {args.seeds} and {args.jobs}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seeds = 1 if args.quick else args.seeds
    work = Path(args.work_dir)
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(shlex.quote(part) for part in ["python", "examples/reduced_scale_study.py", *given])
    started = time.perf_counter()
    try:
        calibration = calibrate(Settings(CALIBRATION_GRID[0], args.quick, work))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = Settings(calibration["epsilon"], args.quick, work, tuple(adversarial), args.report_only)
    tasks = [(space, method, seed) for seed in range(seeds) for space in spaces for method in methods]
    rows: List[Dict[str, Any]] = []
    if args.jobs == 1 or args.report_only:
        for task in tasks:
            rows += run_one(*task, settings)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(run_one, *zip(*tasks), [settings] * len(tasks)):
                rows += result
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wall = None if args.report_only else time.perf_counter() - started
    out.write_text(render(rows, calibration, command, args.quick, wall))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
