"""The code passes ruff (lint and import order) and mypy (types), as configured in ``pyproject.toml``.

ruff checks the whole repository; mypy checks the library (``rnasframe`` with its plugin packages).
The plugin folders install inside the ``rnasframe`` namespace (``spaces/`` is ``rnasframe.spaces``),
which mypy cannot follow through an editable install, so the packages are laid out as installed,
with symbolic links, under ``build/lint/`` (ignored by git; mypy's cache lives beside them).

A failure lists every finding and the count per file. Run only these with ``pytest -m lint``.
Skipped when ruff or mypy is not installed (``pip install -e '.[test]'`` installs both).
"""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = REPO / "build" / "lint"

#: The installed name of each plugin folder (``[tool.setuptools.package-dir]`` in pyproject.toml).
PLUGIN_FOLDERS = {"spaces": "spaces", "perturbations": "perturbations", "similarity": "similarity"}

pytestmark = pytest.mark.lint


def _needs(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        importlib.util.find_spec(tool) is None, reason=f"{tool} is not installed; pip install -e '.[test]'"
    )


def _run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _summary(findings: List[str]) -> str:
    """The findings, then how many each file has."""
    per_file = collections.Counter(line.split(":", 1)[0] for line in findings)
    counts = "\n".join(f"{count:4d}  {path}" for path, count in per_file.most_common())
    return "\n".join(findings) + f"\n\n{len(findings)} findings; per file:\n{counts}"


def _installed_layout() -> Path:
    """``build/lint/src/rnasframe``: the package as installed, made of links to the repository's files."""
    package = LINT / "src" / "rnasframe"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (REPO / "rnasframe").iterdir() if entry.name != "__pycache__"}
    wanted.update({name: REPO / folder for name, folder in PLUGIN_FOLDERS.items()})
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.resolve() != wanted[link.name].resolve():
            link.unlink()
    for name, target in wanted.items():
        if not (package / name).is_symlink():
            (package / name).symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return package.parent


@_needs("ruff")
def test_ruff_finds_nothing() -> None:
    result = _run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."], REPO)
    findings = [line for line in result.stdout.splitlines() if re.match(r"^[^\s:]+\.pyi?:\d+:\d+: ", line)]
    assert result.returncode == 0, _summary(findings) if findings else result.stdout + result.stderr


@_needs("mypy")
@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    source = _installed_layout()
    command = [
        sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
        "--cache-dir", str(LINT / "mypy_cache"), "--no-error-summary", "--hide-error-context", "-p", "rnasframe",
    ]
    result = _run(command, source)
    findings = []
    for line in result.stdout.splitlines():
        match = re.match(r"^([^:]+\.py):(\d+): error: (.*)$", line)
        if match:  # report the repository's path of the file, not the link's
            path = os.path.relpath((source / match.group(1)).resolve(), REPO)
            findings.append(f"{path}:{match.group(2)}: {match.group(3)}")
    assert result.returncode == 0, _summary(findings) if findings else result.stdout + result.stderr
