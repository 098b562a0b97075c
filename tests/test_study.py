"""The reduced-scale study script runs end to end in --quick mode and writes its report."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "reduced_scale_study.py"


def _load_study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reduced_scale_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_study_searches_trains_evaluates_and_writes_the_report(tmp_path: Path) -> None:
    study = _load_study()
    out = tmp_path / "docs" / "study.md"
    argv = ["--quick", f"--work_dir={tmp_path / 'runs'}", f"--out={out}"]
    assert study.main(argv) == 0
    report = out.read_text()
    assert f"python examples/reduced_scale_study.py --quick --work_dir={tmp_path / 'runs'} --out={out}" in report
    assert "| Search | Training | Clean | FGSM | PGD-20 | Params (M) | Sanity |" in report
    for method in ("darts", "uniform", "max"):
        for training in ("standard", "adversarial"):
            assert f"| {method} | {training} | " in report
            assert (tmp_path / "runs" / f"{method}-seed0" / training / "results.json").is_file()
    assert " ± " in report and "## Time per phase" in report
    checkpoint = tmp_path / "runs" / "max-seed0" / "adversarial" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    # A second run reuses every finished run folder instead of searching and training again.
    assert study.main(argv) == 0
    assert checkpoint.stat().st_mtime_ns == written
    assert "| max | 0 | adversarial |" in out.read_text()


def test_study_rejects_unknown_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = _load_study()
    assert study.main(["--methods=darts,nas", f"--out={tmp_path / 'x.md'}"]) == 2
    assert "--methods must list some of darts, uniform, max" in capsys.readouterr().err
