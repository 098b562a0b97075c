"""The documentation builds without a single warning, and every example in it runs.

Runs the two builds of CI (``sphinx-build -W -n --keep-going``, HTML then doctest) in a subprocess,
offline: intersphinx reads the inventories shipped in ``docs/_inventories``. Skipped when the docs
tools are not installed (``pip install -e '.[test]'`` or ``'.[docs]'`` installs them).
"""

from __future__ import annotations

import importlib.util
import os
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


def _report(result: subprocess.CompletedProcess) -> str:
    return f"exit status {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"


@needs_sphinx
@pytest.mark.slow
def test_docs_build_without_warnings_and_every_example_runs(tmp_path: Path) -> None:
    doctrees = tmp_path / "doctrees"  # shared: the doctest build reuses what the HTML build read

    html = _sphinx("html", tmp_path, doctrees)
    assert html.returncode == 0 and "WARNING" not in html.stderr, _report(html)
    assert (tmp_path / "html" / "configuration.html").is_file()

    doctest = _sphinx("doctest", tmp_path, doctrees)
    output = (tmp_path / "doctest" / "output.txt").read_text() if (tmp_path / "doctest" / "output.txt").is_file() else ""
    assert doctest.returncode == 0 and "WARNING" not in doctest.stderr, _report(doctest) + output[-4000:]
    assert "0 failures in tests" in output and "0 failures in setup code" in output, output[-4000:]


@needs_sphinx
def test_configuration_reference_lists_every_configurable() -> None:
    """Every configurable that rnasframe registers gets an entry in the generated reference."""
    import runpy

    import gin.config

    from rnasframe.config import CONFIGURABLE_MODULES, register_configurables

    conf = runpy.run_path(str(DOCS / "conf.py"))
    import rnasframe_docs  # docs/_ext, put on the path by conf.py

    register_configurables()
    first = rnasframe_docs._registered_configurables()
    model = rnasframe_docs.build_api_model(conf["rnasframe_api_modules"], conf["rnasframe_api_optional"])
    text = rnasframe_docs._configurables_text(model, CONFIGURABLE_MODULES, first)
    selectors = [s for s, record in gin.config._REGISTRY.items() if record.module.startswith("rnasframe")]
    assert selectors
    missing = [s for s in selectors if f".. _gin-{s}:" not in text]
    assert not missing, f"configurables missing from the configuration reference: {missing}"
    for selector in selectors:  # every parameter of every configurable is listed with its default
        record = gin.config._REGISTRY[selector]
        for parameter in rnasframe_docs.configurable_parameters(record.wrapped):
            assert f"``{record.name}.{parameter.name}``" in text or f"``{selector}.{parameter.name}``" in text


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
