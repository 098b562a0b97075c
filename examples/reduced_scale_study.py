"""Reduced-scale study on the bundled digits: search -> train from scratch -> robustness, per method and seed.

For each search method (darts, uniform, max) and each seed, this script

1. searches with a small supernet on scikit-learn's handwritten digits (the method's gin file,
   e.g. ``max.gin``, plus the reduced-scale bindings below);
2. trains the derived genotype from scratch twice, with standard training (``train.gin``) and
   with PGD-7 adversarial training (``adv_train.gin``), with a small network;
3. evaluates clean, FGSM and PGD-20 accuracy (epsilon 0.031) on the digits' test part, with
   the sanity checks;

and writes a Markdown report (default ``docs/reduced_scale_study.md``) with mean ± std across
seeds, the time per phase and the exact command. Every run keeps its own run folder under
``--work_dir``; running the same command again reuses finished runs and resumes unfinished ones.

Examples::

    python examples/reduced_scale_study.py                    # 3 seeds (long: about 1 hour on 2 cores; run methods in parallel processes to halve it)
    python examples/reduced_scale_study.py --seeds 5 --work_dir runs/study5
    python examples/reduced_scale_study.py --quick            # 1 seed, tiny epochs (a smoke test)

Numbers are for 8x8 digits with small networks: they test the pipeline and compare the methods
at this scale, not the paper's CIFAR-10 figures.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
import torch

from rnasframe.config import parse_gin
from rnasframe.engine import SearchEngine
from rnasframe.robustness.report import attack_label
from rnasframe.training import Trainer

EXAMPLES = Path(__file__).resolve().parent
METHODS = ("darts", "uniform", "max")
TRAININGS = {"standard": "train.gin", "adversarial": "adv_train.gin"}
COLUMNS = ("clean", "fgsm", "pgd20")

#: The reduced-scale search (compare with base.gin, paper section 4.1), appended to <method>.gin.
SEARCH_BINDINGS = [
    "SearchEngine.data = @DigitsSource()",
    "SearchEngine.device = 'cpu'",
    "SearchEngine.epochs = 6",
    "SearchEngine.warmup_epochs = 2",
    "SearchEngine.batch_size = 64",
    "Augmentation.crop_padding = 1",
    "Augmentation.horizontal_flip = False",
    "DartsSpace.channels = 4",
    "DartsSpace.layers = 5",
]
#: RNAS-max's PGD at this scale, as in quickstart.gin: 3 steps of 0.015.
MAX_BINDINGS = ["PGDMaximizer.steps = 3", "PGDMaximizer.step_size = 0.015"]
#: The reduced-scale training (compare with train.gin, paper section 4.2), appended to train.gin or adv_train.gin.
TRAIN_BINDINGS = [
    "Trainer.data = @DigitsSource()",
    "Trainer.device = 'cpu'",
    "Trainer.epochs = 8",
    "Trainer.batch_size = 64",
    "DartsNetworkConfig.channels = 8",
    "DartsNetworkConfig.layers = 5",
    "Augmentation.crop_padding = 1",
    "Augmentation.horizontal_flip = False",
    "Augmentation.cutout = 0",
]
#: --quick: one tiny epoch everywhere and a small evaluation, to check the pipeline in seconds.
QUICK_SEARCH = [
    "SearchEngine.epochs = 1", "SearchEngine.warmup_epochs = 0", "SearchEngine.batch_size = 16",
    "SearchEngine.max_steps_per_epoch = 2", "SearchEngine.eval_batches = 1",
    "DartsSpace.channels = 2", "DartsSpace.layers = 3", "PGDMaximizer.steps = 1",
]
QUICK_TRAIN = [
    "Trainer.epochs = 1", "Trainer.batch_size = 16", "Trainer.max_steps_per_epoch = 2",
    "DartsNetworkConfig.channels = 2", "DartsNetworkConfig.layers = 3", "Trainer.selection_max_examples = 16",
    "RobustnessEvaluation.max_examples = 16", "RobustnessEvaluation.sweep_fractions = (0.0, 1.0)",
    "PGDMaximizer.steps = 2",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: darts, uniform, max")
    parser.add_argument("--work_dir", default="runs/reduced_scale_study", help="run folders of every phase")
    parser.add_argument("--out", default="docs/reduced_scale_study.md", help="the Markdown report")
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny epochs: checks the pipeline in seconds")
    return parser


def _search(method: str, seed: int, folder: Path, quick: bool) -> Tuple[Dict[str, Any], float]:
    """Search (or reuse a finished search in ``folder``); return the genotype dict and the seconds."""
    results = folder / "results.json"
    if not results.is_file():
        bindings = [*SEARCH_BINDINGS, *(MAX_BINDINGS if method == "max" else []), f"SearchEngine.seed = {seed}"]
        bindings += QUICK_SEARCH if quick else []
        if method != "max":
            bindings = [b for b in bindings if not b.startswith("PGDMaximizer.")]
        gin.clear_config()
        parse_gin([f"{method}.gin"], bindings, [EXAMPLES])
        SearchEngine().run(folder, resume=(folder / "checkpoint.pt").is_file())
    payload = json.loads(results.read_text())
    return payload["genotype"], float(payload["search_cost"]["total_seconds"])


def _train(training: str, seed: int, genotype_dir: Path, folder: Path, quick: bool) -> Dict[str, Any]:
    """Train and evaluate (or reuse a finished run in ``folder``); return its results.json payload."""
    results = folder / "results.json"
    if not results.is_file():
        bindings = [*TRAIN_BINDINGS, f"Trainer.seed = {seed}", f"Trainer.model_name = '{folder.parent.name}'"]
        bindings += QUICK_TRAIN if quick else []
        if training == "standard":
            bindings = [b for b in bindings if not b.startswith("PGDMaximizer.")]
        gin.clear_config()
        parse_gin([TRAININGS[training]], bindings, [EXAMPLES])
        Trainer().with_genotype(genotype_dir).run(folder, resume=(folder / "checkpoint.pt").is_file())
    return json.loads(results.read_text())


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _pct(values: Sequence[float]) -> str:
    mean, std = _mean_std([100.0 * v for v in values])
    return f"{mean:.2f} ± {std:.2f}"


def _secs(values: Sequence[float]) -> str:
    mean, std = _mean_std(values)
    return f"{mean:.1f} ± {std:.1f}"


def render(rows: List[Dict[str, Any]], command: str, seeds: int, quick: bool, wall_seconds: float) -> str:
    """The Markdown report of the study (``rows``: one per method, seed and training)."""
    lines = [
        "# Reduced-scale study: search, training from scratch and robustness on the bundled digits",
        "",
        "Generated by `examples/reduced_scale_study.py`" + (" in **--quick** mode (a pipeline check, "
        "not a result)" if quick else "") + ". The exact command, from the repository root:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"{seeds} seed(s) per method; mean ± sample standard deviation across seeds. Data: scikit-learn's "
        "handwritten digits (1,797 8x8 grey images; 20% test part, 10% of the rest held out for checkpoint "
        "selection). Attacks: L∞, ε = 0.031 (pixel units of [0, 1] images), FGSM and PGD-20 (step 0.003, "
        "random start), model in eval mode. These numbers check the pipeline and compare the search methods "
        "at this scale; they are not the paper's CIFAR-10 results (Table 2).",
        "",
        "## Robust accuracy (%)",
        "",
        "| Search | Training | " + " | ".join(attack_label(c) for c in COLUMNS) + " | Params (M) | Sanity |",
        "|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["training"]), []).append(row)
    for (method, training), members in groups.items():
        cells = [_pct([m["accuracy"][c] for m in members]) for c in COLUMNS]
        params = _mean_std([m["params_millions"] for m in members])[0]
        failed = sum(1 for m in members if not m["sane"])
        sanity = "pass" if failed == 0 else f"**{failed} run(s) FAILED**"
        lines.append(f"| {method} | {training} | " + " | ".join(cells) + f" | {params:.3g} | {sanity} |")
    lines += [
        "",
        "## Time per phase (seconds, wall clock)",
        "",
        "| Search | Training | Search | Train | Evaluate |",
        "|---|---|---|---|---|",
    ]
    for (method, training), members in groups.items():
        lines.append(
            f"| {method} | {training} | {_secs([m['search_seconds'] for m in members])} | "
            f"{_secs([m['train_seconds'] for m in members])} | {_secs([m['evaluate_seconds'] for m in members])} |"
        )
    lines += [
        "",
        f"The search time of a method and seed is shared by its two trainings. Whole study: {wall_seconds:.0f} s "
        f"on {platform.machine()} with torch {torch.__version__} ({torch.get_num_threads()} threads).",
        "",
        "## Every run",
        "",
        "| Search | Seed | Training | " + " | ".join(attack_label(c) for c in COLUMNS) + " | Run folder |",
        "|---|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for row in rows:
        cells = " | ".join(f"{100 * row['accuracy'][c]:.2f}" for c in COLUMNS)
        lines.append(f"| {row['method']} | {row['seed']} | {row['training']} | {cells} | `{row['run_dir']}` |")
    lines += ["", "## Settings", "", "Search (appended to `<method>.gin`):", "", "```"]
    lines += [*SEARCH_BINDINGS, *(f"{b}  # max only" for b in MAX_BINDINGS), *(QUICK_SEARCH if quick else []), "```"]
    lines += ["", "Training (appended to `train.gin` or `adv_train.gin`):", "", "```"]
    lines += [*TRAIN_BINDINGS, *(QUICK_TRAIN if quick else []), "```", ""]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the study and write the report; returns the exit status."""
    args = _parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        print(f"error: --methods must list some of {', '.join(METHODS)}; got {args.methods!r}", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"error: --seeds must be >= 1, got {args.seeds}", file=sys.stderr)
        return 2
    seeds = 1 if args.quick else args.seeds
    work = Path(args.work_dir)
    given = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(shlex.quote(part) for part in ["python", "examples/reduced_scale_study.py", *given])
    started = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    for method in methods:
        for seed in range(seeds):
            search_dir = work / f"{method}-seed{seed}" / "search"
            _, search_seconds = _search(method, seed, search_dir, args.quick)
            for training in TRAININGS:
                train_dir = work / f"{method}-seed{seed}" / training
                payload = _train(training, seed, search_dir, train_dir, args.quick)
                evaluation = payload["evaluation"]
                rows.append({
                    "method": method, "seed": seed, "training": training, "run_dir": str(train_dir),
                    "accuracy": evaluation["accuracy"], "sane": evaluation["sanity"]["passed"],
                    "params_millions": payload["params_millions"], "search_seconds": search_seconds,
                    "train_seconds": payload["seconds"]["train"], "evaluate_seconds": payload["seconds"]["evaluate"],
                })
    gin.clear_config()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, command, seeds, args.quick, time.perf_counter() - started))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
