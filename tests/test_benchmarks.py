"""The benchmark scripts run end to end at a tiny size and write a complete report (no timing checks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
