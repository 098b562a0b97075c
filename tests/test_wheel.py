"""The built wheel, installed into a fresh virtual environment outside the repository, runs the paper's
configs by bare name through its console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Not part of a source tree: environments, caches, and at the top, build outputs, data and runs.
_ANYWHERE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "_build", ".hypothesis", ".pytest_cache")
_AT_THE_TOP = {"build", "dist", "runs", "data"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    ignored = set(_ANYWHERE(folder, names))
    return ignored | (_AT_THE_TOP & set(names)) if Path(folder) == ROOT else ignored


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    environment.pop("PYTHONPATH", None)
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.mark.slow
def test_the_installed_wheel_runs_a_search_from_any_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a clean copy: no stale build/ of the working tree enters the wheel
    shutil.copytree(ROOT, source, ignore=_not_source)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."], source)
    (wheel,) = tmp_path.glob("rnasframe-*.whl")
    # The environment sees the interpreter's own packages (torch, gin, ...), never this repository.
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")], tmp_path)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    assert "--gin_file" in _run([str(bin_dir / "rnas-search"), "--help"], elsewhere).stdout
    assert (bin_dir / "rnas-train").is_file() and (bin_dir / "rnas-evaluate").is_file()
    installed = list({p.resolve() for p in (tmp_path / "venv").glob("*/**/site-packages/rnasframe/configs/max.gin")})
    assert len(installed) == 1 and (installed[0].parent / "smoke.gin").is_file()

    # Bare names from a folder with no configs: they resolve among the installed package's.
    tiny = [
        "SearchEngine.epochs = 1", "SearchEngine.warmup_epochs = 0", "SearchEngine.eval_batches = 1",
        "SearchEngine.max_steps_per_epoch = 1", "PGDMaximizer.steps = 1",
    ]
    command = [str(bin_dir / "rnas-search"), "--gin_file=max.gin", "--gin_file=smoke.gin", "--run_dir=run"]
    searched = _run([*command, *(f"--gin_param={b}" for b in tiny)], elsewhere)
    assert "genotype = Genotype(normal=" in searched.stdout
    assert (elsewhere / "run" / "genotype.json").is_file()
