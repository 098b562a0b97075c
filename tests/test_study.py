"""The reduced-scale study script: calibration, paired statistics, and an end-to-end --quick run."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "reduced_scale_study.py"


def _load_study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reduced_scale_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


study = _load_study()


def test_paired_interval_matches_a_hand_computed_student_t_interval() -> None:
    differences = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, sample std sqrt(2.5), t(0.975, 4) = 2.776
    mean, low, high = study.paired_interval(differences)
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (mean, low, high) == pytest.approx((3.0, 3.0 - half, 3.0 + half))
    assert math.isnan(study.paired_interval([1.0])[1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=2, max_size=12), st.floats(-20, 20))
def test_paired_interval_contains_the_mean_and_shifts_with_the_data(differences: list, shift: float) -> None:
    mean, low, high = study.paired_interval(differences)
    assert low <= mean + 1e-9 and mean <= high + 1e-9
    moved = study.paired_interval([d + shift for d in differences])
    assert moved == pytest.approx((mean + shift, low + shift, high + shift), abs=1e-6)


def test_threat_bindings_scale_every_step_to_the_radius() -> None:
    bindings = study.threat_bindings(0.2, 4)
    assert "EPSILON = 0.2" in bindings and "RobustnessEvaluation.epsilon = 0.2" in bindings
    assert f"PGDMaximizer.step_size = {2.5 * 0.2 / 4!r}" in bindings and "PGDMaximizer.steps = 4" in bindings
    assert f"PGD.step_size = {2.5 * 0.2 / 20!r}" in bindings


def test_calibration_that_cannot_reach_the_range_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study, "CALIBRATION_GRID", (0.05, 0.15))
    monkeypatch.setattr(study, "TARGET_RANGE", (0.999, 1.0))  # no network keeps 99.9 % under attack
    monkeypatch.setattr(study, "TRAIN_BINDINGS", [*study.TRAIN_BINDINGS, *study.QUICK_TRAIN])
    monkeypatch.setattr(study, "SPACE_TRAIN_BINDINGS", {"darts": study.QUICK_SPACE["darts"]})
    with pytest.raises(ValueError, match="calibration cannot reach the target range: PGD-20 accuracy .* at ε=0.05"):
        study.calibrate(study.Settings(0.05, False, tmp_path))


@pytest.mark.slow
def test_quick_study_calibrates_searches_trains_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "study.md"
    argv = ["--quick", "--methods=darts,max_fgsm", f"--work_dir={tmp_path / 'runs'}", f"--out={out}"]
    assert study.main(argv) == 0
    report = out.read_text()
    assert f"python examples/reduced_scale_study.py --quick --methods=darts,max_fgsm --work_dir={tmp_path / 'runs'}" in report
    assert json.loads((tmp_path / "runs" / "calibration.json").read_text())["epsilon"] in study.QUICK_GRID
    for space in ("darts", "nasbench201"):
        assert f"| {space} | standard | max_fgsm | 1 | " in report and f"| {space} | adversarial | darts | 1 | " in report
        assert f"| {space} | standard | max_fgsm | 1 | " in report.split("## Paired differences")[1]
        assert (tmp_path / "runs" / space / "max_fgsm-seed0" / "adversarial" / "results.json").is_file()
    signals = report.split("## Search cost")[1].split("## Every run")[0]
    assert "| darts | max_fgsm |" in signals and "| nasbench201 | darts |" in signals and " n/a |" not in signals
    checkpoint = tmp_path / "runs" / "darts" / "max_fgsm-seed0" / "adversarial" / "checkpoint.pt"
    written = checkpoint.stat().st_mtime_ns
    assert study.main(argv) == 0  # a second run reuses every finished run folder
    assert checkpoint.stat().st_mtime_ns == written
    partial = tmp_path / "partial.md"
    assert study.main(["--quick", "--report_only", f"--work_dir={tmp_path / 'runs'}", f"--out={partial}"]) == 0
    text = partial.read_text()
    assert "Summed wall clock of every run's phases" in text and "| darts | max_fgsm | 1 | " in text
    assert "uniform" not in text.split("## Every run")[1]  # never run, so not reported


def test_study_rejects_unknown_methods_and_spaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert study.main(["--methods=darts,nas", f"--out={tmp_path / 'x.md'}"]) == 2
    assert "--methods must list some of darts, uniform, max, max_fgsm, max_warm; got 'darts,nas'" in capsys.readouterr().err
    assert study.main(["--spaces=nb101", f"--out={tmp_path / 'x.md'}"]) == 2
    assert "--spaces must list some of darts, nasbench201" in capsys.readouterr().err
