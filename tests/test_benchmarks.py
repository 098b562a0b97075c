"""The benchmark scripts run end to end at a tiny size and write a complete report (no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_suite_writes_every_section_of_its_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    tiny = [
        "--channels", "4", "--layers", "3", "--size", "8", "--pgd-steps", "2", "--batches", "2",
        "--orders", "first", "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu",
        "--train-channels", "4", "--train-layers", "3", "--train-batch", "2", "--eval-batch", "2",
        "--sections", "fwd-bwd,search,memory,throughput", "--json", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "suite.py"), *tiny], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text())
    (fwd,) = report["forward_backward"]
    assert fwd["useful_flops"] > 0 and fwd["plain"]["median_s"] > 0 and fwd["fast"]["median_s"] > 0
    search = report["search"]["first"]["2"]
    assert set(search["runs"]) == {f"{m}/{o}" for m in ("darts", "uniform", "max") for o in ("plain", "fast")}
    # Work counted, not timed: uniform runs two forward-backwards per update, max K + 2 of them.
    assert search["flops"]["darts"] < search["flops"]["uniform"] < search["flops"]["max"]
    assert {"uniform/darts (fast)", "max/darts (fast)", "max plain/fast"} <= set(search["ratios"])
    memory = report["memory"]["first"]["2"]
    assert set(memory) == set(search["runs"]) and all(r["peak_mib"] >= 0 for r in memory.values())
    throughput = report["throughput"]
    for step in ("standard", "adversarial_pgd7", "pgd20_evaluation"):
        assert throughput[step]["images_per_s"] > 0 and throughput[step]["flops"] > 0
    assert throughput["standard"]["flops"] < throughput["adversarial_pgd7"]["flops"]
    assert "search iteration, first-order, batch 2" in completed.stdout
    assert "training from scratch and evaluation: DARTS_V2" in completed.stdout


def test_operator_counts_script_and_suite_section(tmp_path: Path) -> None:
    out = tmp_path / "ops.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "count_ops.py"), "--methods", "darts", "--options", "lean,fast",
         "--channels", "4", "--layers", "2", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = json.loads(out.read_text())["counts"]
    assert counts["darts/lean"]["total"] < counts["darts/fast"]["total"]
    assert counts["darts/lean"]["forward"] + counts["darts/lean"]["backward"] == counts["darts/lean"]["total"]


@pytest.mark.slow
def test_gpu_check_dry_mode_runs_every_part(tmp_path: Path) -> None:
    """``benchmarks/gpu_check.sh --dry``: the GPU validation script, on the CPU at a tiny size."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    completed = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--dry", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == []
    assert set(report["correctness"]) == {f"{m}/{p}" for m in ("darts", "uniform", "max") for p in ("fast", "lean", "lean+graphs")}
    assert report["correctness"]["darts/lean+graphs"]["refused_on_cpu"]
    assert set(report["hours"]) == {"darts", "uniform", "max"} and all(h > 0 for h in report["hours"].values())
    assert report["distributed"]["gloo"]["ok"]
    exactness = report["exactness"]
    assert set(exactness) == {"pixels_and_batches", "deterministic_kernels", "identical_alpha_and_resume"}
    assert exactness["pixels_and_batches"]["resident_equals_copied"]
    assert exactness["identical_alpha_and_resume"]["identical_alpha_in_two_runs"]
    assert exactness["identical_alpha_and_resume"]["resumed_with_one_visible_gpu_equals_uninterrupted"]
