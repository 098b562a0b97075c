"""Command-line entry point of the search (``examples/rnas_cifar10.py``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import gin

from rnasframe.checkpoint import CheckpointError
from rnasframe.config import ConfigError, parse_gin
from rnasframe.data.sources import DataNotFoundError

__all__ = ["build_parser", "search_main"]


def build_parser(description: str) -> argparse.ArgumentParser:
    """The flags shared by rnasframe's scripts: ``--gin_file``, ``--gin_param``, ``--run_dir``, ``--resume``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--gin_file", action="append", default=[],
        help="gin file (a path, or a bare name such as max.gin found in examples/); repeatable",
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


def search_main(argv: Optional[Sequence[str]] = None, examples_dir: Optional[Path] = None) -> int:
    """Parse flags and gin, build the :class:`~rnasframe.engine.SearchEngine`, search, print the genotype.

    Returns the process exit status (0 on success, 2 on a configuration or input error).
    """
    parser = build_parser("Robust neural architecture search (RNAS) with gin-configured parts.")
    args = parser.parse_args(argv)
    search_dirs: List[Path] = [examples_dir] if examples_dir is not None else []
    files: List[str] = list(args.gin_file)
    if args.resume:
        if args.run_dir is None:
            return _fail("--resume needs --run_dir, the folder of the search to continue")
        saved = Path(args.run_dir) / "config.gin"
        if not files:
            if not saved.is_file():
                return _fail(f"--resume: {saved} not found; pass the run's --gin_file again")
            files = [str(saved)]
    if not files:
        return _fail("pass at least one --gin_file, e.g. --gin_file=max.gin (RNAS-max), uniform.gin or darts.gin")
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{Path(files[0]).stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    from rnasframe.engine import SearchEngine

    gin.clear_config()
    try:
        parse_gin(files, args.gin_param, search_dirs)
        engine = SearchEngine()
    except ConfigError as error:
        return _fail(str(error))
    except (ValueError, TypeError) as error:
        return _fail(" ".join(str(error).split()))
    try:
        result = engine.run(run_dir, resume=args.resume)
    except (DataNotFoundError, CheckpointError, FileExistsError, ImportError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: --resume --run_dir {run_dir}", file=sys.stderr)
        return 130
    assert result is not None
    if os.environ.get("RANK", "0") != "0":  # data-parallel runs: rank 0 reports
        return 0
    print(f"run folder: {run_dir}")
    print(f"search cost: {result.total_seconds:.1f} s on {result.device}")
    print(f"genotype = {result.genotype}")
    return 0
