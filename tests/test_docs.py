"""The documentation builds without a single warning, and every example in it runs.

Runs the two builds of CI (``sphinx-build -W -n --keep-going``, HTML then doctest) in a subprocess,
offline: intersphinx reads the inventories shipped in ``docs/_inventories``. Skipped when the docs
tools are not installed (``pip install -e '.[test]'`` or ``'.[docs]'`` installs them).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"

_MISSING = [name for name in ("sphinx", "furo", "myst_parser") if importlib.util.find_spec(name) is None]
needs_sphinx = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the docs tools are not installed ({', '.join(_MISSING)}); pip install -e '.[docs]'",
)


def _sphinx(builder: str, out: Path, doctrees: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q",
        "-b", builder, "-d", str(doctrees), str(DOCS), str(out / builder),
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")  # Python warnings are not Sphinx warnings
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _public_modules() -> list[str]:
    gin_reference = _docs_extension()
    names = []
    for package_name in gin_reference.PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        names += [info.name for info in pkgutil.walk_packages(package.__path__, package_name + ".")]
    return [name for name in names if not any(part.startswith("_") for part in name.split("."))]


def _report(result: subprocess.CompletedProcess) -> str:
    return f"exit status {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"


@needs_sphinx
@pytest.mark.slow
def test_docs_build_without_warnings_and_every_example_runs(tmp_path: Path) -> None:
    doctrees = tmp_path / "doctrees"  # shared: the doctest build reuses what the HTML build read

    html = _sphinx("html", tmp_path, doctrees)
    assert html.returncode == 0 and "WARNING" not in html.stderr, _report(html)
    assert (tmp_path / "html" / "configuration.html").is_file()
    undocumented = [  # autosummary walks the packages: every public module has its page
        name for name in _public_modules() if not (tmp_path / "html" / "_generated" / "api" / f"{name}.html").is_file()
    ]
    assert not undocumented, f"modules without an API page: {undocumented}"

    doctest = _sphinx("doctest", tmp_path, doctrees)
    output = (tmp_path / "doctest" / "output.txt").read_text() if (tmp_path / "doctest" / "output.txt").is_file() else ""
    assert doctest.returncode == 0 and "WARNING" not in doctest.stderr, _report(doctest) + output[-4000:]
    assert "0 failures in tests" in output and "0 failures in setup code" in output, output[-4000:]


def _docs_extension():  # docs/_ext/gin_reference.py, imported as the docs build imports it
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import gin_reference
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return gin_reference


@needs_sphinx
def test_configuration_reference_lists_every_configurable() -> None:
    """Every configurable that rnasframe registers gets an entry, with every parameter and its default."""
    gin_reference = _docs_extension()
    assert not gin_reference.import_all()
    text = gin_reference.reference_text()
    records = gin_reference.registered()
    assert records
    missing = [selector for selector in records if f".. _gin-{selector}:" not in text]
    assert not missing, f"configurables missing from the configuration reference: {missing}"
    for selector, record in records.items():
        for name, default, _ in gin_reference.parameters(record.wrapped):
            assert f"``{record.name}.{name}``" in text or f"``{selector}.{name}``" in text, (selector, name)
            assert default


def test_docstring_sections_are_read() -> None:
    """Descriptions come from Google-style ``Args:``/``Attributes:`` sections, continuation lines included."""
    gin_reference = _docs_extension()
    doc = """Summary.

    Args:
        steps (int): how many
            ascent steps.
        epsilon: the radius.

    Returns:
        nothing: not a parameter.
    """
    assert gin_reference.parameter_descriptions(doc) == {"steps": "how many ascent steps.", "epsilon": "the radius."}


def test_markdown_python_blocks_are_tested() -> None:
    """A Python block of a Markdown page is a ``{testcode}`` or ``{doctest}`` block, so the doctest build runs it."""
    untested = [
        f"{page.relative_to(DOCS)}:{number}"
        for page in DOCS.rglob("*.md")
        if "_build" not in page.parts
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if line.strip().lower() in ("```python", "```py", "```python3", "```pycon")
    ]
    assert not untested, f"untested Python blocks (write them as ```{{testcode}} or ```{{doctest}}): {untested}"


def test_shipped_inventories_match_their_script() -> None:
    """``docs/_inventories/*.inv`` are exactly what ``make_inventories.py`` writes (rerun it after editing)."""
    sys.path.insert(0, str(DOCS / "_inventories"))
    try:
        import make_inventories
    finally:
        sys.path.remove(str(DOCS / "_inventories"))
    for key, objects in make_inventories.OBJECTS.items():
        title, version, _ = make_inventories.BASES[key]
        path = DOCS / "_inventories" / f"{key}.inv"
        assert path.is_file(), f"{path} is missing; run python docs/_inventories/make_inventories.py"
        expected = make_inventories.inventory_bytes(title, version, objects)
        assert path.read_bytes() == expected, f"{path} is stale; run python docs/_inventories/make_inventories.py"
