"""Command-line entry points: the search, training from scratch and robustness evaluation.

Installed as the console scripts ``rnas-search``, ``rnas-train`` and ``rnas-evaluate``; a clone's
``examples/rnas_cifar10.py``, ``examples/train_cifar10.py`` and ``examples/evaluate_cifar10.py``
call the same functions. Bare ``--gin_file`` names are found among the packaged configs
(``rnasframe/configs``) and in the ``examples_dir`` the example scripts pass.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple, TypeVar

import gin

from rnasframe.checkpoint import CheckpointError
from rnasframe.config import ConfigError, parse_gin
from rnasframe.data.sources import DataNotFoundError

if TYPE_CHECKING:
    from rnasframe.training import TrainResult

T = TypeVar("T")

__all__ = ["ATTACK_SHORTHANDS", "attack_bindings", "build_parser", "search_main", "train_main", "evaluate_main"]

#: The attack names ``--attacks`` accepts (``K`` is any number of steps >= 1).
ATTACK_SHORTHANDS = ("fgsm", "pgd<K> (K >= 1 steps, e.g. pgd20)", "autoattack")


def attack_bindings(shorthand: str) -> List[str]:
    """Translate ``--attacks fgsm,pgd20,autoattack`` into gin bindings of attack objects.

    This is the only place that reads attack names. ``fgsm`` is ``@FGSM()``, ``autoattack``
    ``@AutoAttack()`` and ``pgdK`` a PGD scoped ``pgdK`` with ``K`` steps (its ball, step size and
    random start are the config's ``PGD`` bindings), so that ``pgd10,pgd20`` can coexist.

    Raises:
        ValueError: an unknown name or an empty list; the message lists the valid names.
    """
    references: List[str] = []
    bindings: List[str] = []
    for raw in shorthand.split(","):
        key = raw.strip().lower()
        if key == "fgsm":
            references.append("@FGSM()")
        elif key == "autoattack":
            references.append("@AutoAttack()")
        elif key.startswith("pgd") and key[3:].isdigit() and int(key[3:]) >= 1:
            references.append(f"@{key}/PGD()")
            bindings.append(f"{key}/PGD.steps = {int(key[3:])}")
        elif key:
            raise ValueError(
                f"unknown attack {raw.strip()!r} in --attacks; valid attacks: {', '.join(ATTACK_SHORTHANDS)}"
            )
    if not references:
        raise ValueError(f"--attacks names no attack; valid attacks: {', '.join(ATTACK_SHORTHANDS)}")
    if len(set(references)) != len(references):
        raise ValueError(f"--attacks lists an attack twice: {shorthand!r}")
    return [*bindings, f"RobustnessEvaluation.attacks = [{', '.join(references)}]"]


def build_parser(description: str) -> argparse.ArgumentParser:
    """The flags shared by rnasframe's scripts: ``--gin_file``, ``--gin_param``, ``--run_dir``, ``--resume``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--gin_file", action="append", default=[],
        help="gin file (a path, or a bare name such as max.gin among the packaged configs); repeatable",
    )
    parser.add_argument(
        "--gin_param", action="append", default=[],
        help="a gin binding, e.g. 'SearchEngine.epochs = 1'; repeatable, applied after the files",
    )
    parser.add_argument("--run_dir", default=None, help="the run folder (default: runs/<config>-<time>)")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the search in --run_dir from its last checkpoint (its saved config.gin is "
        "used when no --gin_file is given)",
    )
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


class _Exit(Exception):  # noqa: N818 - not an error: an exit status on its way out
    """Carries an exit status out of the shared helpers below."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _files_and_run_dir(args: argparse.Namespace, what: str, examples: str) -> Tuple[List[str], Path]:
    """The gin files (the run's saved ``config.gin`` on ``--resume`` without files) and the run folder."""
    files: List[str] = list(args.gin_file)
    if args.resume:
        if args.run_dir is None:
            raise _Exit(_fail(f"--resume needs --run_dir, the folder of the {what} to continue"))
        saved = Path(args.run_dir) / "config.gin"
        if not files:
            if not saved.is_file():
                raise _Exit(_fail(f"--resume: {saved} not found; pass the run's --gin_file again"))
            files = [str(saved)]
    if not files:
        raise _Exit(_fail(f"pass at least one --gin_file, e.g. {examples}"))
    if args.run_dir:
        return files, Path(args.run_dir)
    return files, Path("runs") / f"{Path(files[0]).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _configure(
    files: Sequence[str], bindings: Sequence[str], examples_dir: Optional[Path], build: Callable[[], T]
) -> T:
    """Parse gin strictly and build the configured object; configuration errors exit with one line."""
    gin.clear_config()
    try:
        parse_gin(files, bindings, [examples_dir] if examples_dir is not None else [])
        return build()
    except ConfigError as error:
        raise _Exit(_fail(str(error))) from None
    except (ValueError, TypeError) as error:
        raise _Exit(_fail(" ".join(str(error).split()))) from None


def _guarded(run: Callable[[], T], run_dir: Path, resumable: bool = True) -> T:
    """Run ``run``; input errors exit with one line, Ctrl-C with 130 and the resume command."""
    try:
        return run()
    except (DataNotFoundError, CheckpointError, FileExistsError, ImportError) as error:
        raise _Exit(_fail(str(error))) from None
    except KeyboardInterrupt:
        if resumable:
            print(f"\ninterrupted; resume with: --resume --run_dir {run_dir}", file=sys.stderr)
        raise _Exit(130) from None


def _exit_status(main: Callable[..., int]) -> Callable[..., int]:
    """Turn an :class:`_Exit` raised inside ``main`` into its return value."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except _Exit as stop:
            return stop.status

    return wrapper


@_exit_status
def search_main(argv: Optional[Sequence[str]] = None, examples_dir: Optional[Path] = None) -> int:
    """Parse flags and gin, build the :class:`~rnasframe.engine.SearchEngine`, search, print the genotype.

    Returns the process exit status (0 on success, 2 on a configuration or input error, 130 on Ctrl-C).
    """
    parser = build_parser("Robust neural architecture search (RNAS) with gin-configured parts.")
    args = parser.parse_args(argv)
    files, run_dir = _files_and_run_dir(args, "search", "--gin_file=max.gin (RNAS-max), uniform.gin or darts.gin")

    from rnasframe.engine import SearchEngine

    engine = _configure(files, args.gin_param, examples_dir, SearchEngine)  # type: ignore[arg-type]  # gin binds the rest
    result = _guarded(lambda: engine.run(run_dir, resume=args.resume), run_dir)
    assert result is not None
    if os.environ.get("RANK", "0") != "0":  # data-parallel runs: rank 0 reports
        return 0
    print(f"run folder: {run_dir}")
    print(f"search cost: {result.total_seconds:.1f} s on {result.device}")
    print(f"genotype = {result.genotype}")
    return 0


def _print_results(result: "TrainResult") -> None:
    from rnasframe.robustness.report import attack_label

    report = result.report
    columns = {"clean": report.clean, **report.attacks}
    print(f"run folder: {result.run_dir}")
    print(f"train {result.train_seconds:.1f} s, evaluate {result.evaluate_seconds:.1f} s; selected epoch "
          f"{result.best_epoch} of {result.epochs}; {report.examples} test images")
    print("| Model | Params (M) | " + " | ".join(attack_label(name) for name in columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    print(f"| {result.model_name} | {result.params_millions:.3g} | "
          + " | ".join(f"{100 * value:.2f}%" for value in columns.values()) + " |")
    if report.sane:
        print(f"sanity checks: all {len(report.sanity)} passed")
    for line in report.warnings():
        print(line)
    print(f"details: {result.run_dir / 'results.md'}")


@_exit_status
def train_main(argv: Optional[Sequence[str]] = None, examples_dir: Optional[Path] = None) -> int:
    """Parse flags and gin, train a genotype from scratch, evaluate it, print the robustness table.

    Flags: those of :func:`build_parser` plus ``--genotype`` (a ``genotype.json``, a search's run
    folder or a published name such as ``DARTS_V2``). Under ``torchrun`` every process runs this;
    training is data-parallel (``Trainer.batch_size`` is the global batch), rank 0 alone evaluates
    and prints the table. Returns the exit status (0 on success, 2 on a configuration or input
    error, such as a batch that does not split evenly over the processes; 130 on Ctrl-C).
    """
    parser = build_parser("Train a searched genotype from scratch and evaluate its robustness (gin-configured).")
    parser.add_argument(
        "--genotype", default=None,
        help="what to train: a genotype.json, a search's run folder (its genotype.json) or a name such as DARTS_V2",
    )
    args = parser.parse_args(argv)
    files, run_dir = _files_and_run_dir(args, "training run", "--gin_file=train.gin, adv_train.gin or trades.gin")

    from rnasframe.training import Trainer

    def build() -> "Trainer":
        trainer = Trainer()  # type: ignore[call-arg]  # gin binds space and the rest
        return trainer.with_genotype(args.genotype) if args.genotype is not None else trainer

    trainer = _configure(files, args.gin_param, examples_dir, build)
    if trainer.genotype is None and not args.resume:
        return _fail(
            "no genotype to train: pass --genotype (a genotype.json, a search's run folder or a name such as "
            "DARTS_V2) or bind Trainer.genotype"
        )
    try:
        trainer.check_world_size(int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError as error:
        return _fail(str(error))
    result = _guarded(lambda: trainer.run(run_dir, resume=args.resume), run_dir)
    if os.environ.get("RANK", "0") != "0":  # data-parallel runs: rank 0 evaluates and reports
        return 0
    assert result is not None
    _print_results(result)
    return 0


@_exit_status
def evaluate_main(argv: Optional[Sequence[str]] = None, examples_dir: Optional[Path] = None) -> int:
    """Evaluate a training run's checkpoint again (clean, FGSM, PGD-20, ...) and rewrite its results files.

    The run's saved ``config.gin`` is parsed first, then ``--gin_file`` and ``--gin_param`` (e.g.
    an evaluation file changing ``RobustnessEvaluation``), then ``--attacks``. Returns the exit
    status (0 on success, 2 on a configuration or input error).
    """
    parser = argparse.ArgumentParser(
        description="Evaluate the robustness of a trained network (a training run folder)."
    )
    parser.add_argument("--run_dir", required=True, help="the training run folder (holds checkpoint.pt and best.pt)")
    parser.add_argument(
        "--gin_file", action="append", default=[],
        help=(
            "gin file applied after the run's config.gin (a path, or a bare name among the packaged configs); "
            "repeatable"
        ),
    )
    parser.add_argument("--gin_param", action="append", default=[], help="a gin binding applied last; repeatable")
    parser.add_argument(
        "--checkpoint", choices=("best", "last"), default="best",
        help="best.pt (the epoch selected on held-out training images, default) or checkpoint.pt (the last epoch)",
    )
    parser.add_argument(
        "--attacks", default=None,
        help="comma-separated attacks replacing RobustnessEvaluation.attacks, e.g. fgsm,pgd20,autoattack",
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    saved = run_dir / "config.gin"
    if not run_dir.is_dir():
        return _fail(f"--run_dir {run_dir} does not exist (expected a training run folder)")
    if not saved.is_file():
        return _fail(f"{saved} not found: --run_dir must be a training run folder written by rnas-train")
    bindings = list(args.gin_param)
    if args.attacks is not None:
        try:
            bindings += attack_bindings(args.attacks)
        except ValueError as error:
            return _fail(str(error))

    from rnasframe.training import Trainer

    trainer = _configure([str(saved), *args.gin_file], bindings, examples_dir, Trainer)  # type: ignore[arg-type]  # gin binds the rest
    result = _guarded(lambda: trainer.evaluate_run(run_dir, checkpoint=args.checkpoint), run_dir, resumable=False)
    _print_results(result)
    return 0
