"""The shared run lifecycle, typed checkpoint records, the atomic writer, and a space-neutral core."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from rnasframe import RobustObjective, SearchEngine
from rnasframe.checkpoint import (
    BestWeights,
    CheckpointError,
    SearchCheckpoint,
    TrainingCheckpoint,
    load_checkpoint,
    save_atomic,
)
from rnasframe.data import DigitsSource
from rnasframe.interfaces import Picture
from rnasframe.run import Run
from rnasframe.run_folder import write_atomic
from rnasframe.seeding import epoch_seed
from tests.toy import ToySpace

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


# --- Run ------------------------------------------------------------------------------------------


def test_a_folder_holding_a_run_is_only_reused_with_resume(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"already holds a search \(checkpoint.pt\); pass --resume"):
        Run(tmp_path, "search", resume=False, device=CPU)
    with pytest.raises(FileExistsError, match="already holds a training run"):
        Run(tmp_path, "training", resume=False, device=CPU)
    Run(tmp_path, "search", resume=True, device=CPU)


def test_the_folder_is_created_only_when_opened_and_ctrl_c_is_logged(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with Run(folder, "search", resume=False, device=CPU) as run:
        assert not folder.exists()
        run.open_folder()
        assert folder.is_dir()

    def interrupted_in_epoch_3() -> None:
        with Run(tmp_path / "other", "search", resume=False, device=CPU) as run:
            run.open_folder()
            run.epochs_done = 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_in_epoch_3()
    log = (tmp_path / "other" / "log.txt").read_text()
    assert "interrupted during epoch 3; the checkpoint of epoch 2 is intact; resume with --resume" in log


def test_stop_divergence_and_clock(tmp_path: Path) -> None:
    with Run(tmp_path / "run", "training", resume=False, device=CPU) as run:
        run.open_folder()
        assert not run.stop_requested(1, None) and not run.stop_requested(1, 2)
        assert run.stop_requested(2, 2)
        run.check_finite({"loss": 1.0}, 0)
        with pytest.raises(FloatingPointError, match="metric loss became nan in epoch 4; the training diverged"):
            run.check_finite({"loss": float("nan")}, 3)
        with pytest.raises(FloatingPointError, match="metric ce became inf"):
            run.check_finite({"ce": float("inf")}, 0)
        assert run.seconds_since(time.perf_counter()) >= 0.0
    assert "stopped after epoch 2; resume with --resume" in (tmp_path / "run" / "log.txt").read_text()


def test_epoch_seeds_are_the_published_formula_and_distinct_per_rank_and_epoch() -> None:
    assert epoch_seed(3, 2, 5) == 3 + 2 * 1_000_003 + 5 * 7_919
    seeds = {epoch_seed(0, rank, epoch) for rank in range(16) for epoch in range(700)}
    assert len(seeds) == 16 * 700


# --- checkpoint records ---------------------------------------------------------------------------


def _search_record(**overrides: Any) -> SearchCheckpoint:
    settings: Dict[str, Any] = dict(
        epoch=2, model={"w": torch.arange(3.0)}, optimizer={"lr": 0.1}, rng={"torch": torch.get_rng_state()},
        split={"train": torch.arange(4), "valid": torch.arange(4, 8), "seed": 0}, seconds_per_epoch=[1.0, 2.0],
        metrics={"loss": 0.5}, genotype={"ops": [1]}, world_size=1, alpha_history={"0": [torch.ones(1, 2)]},
    )
    settings.update(overrides)
    return SearchCheckpoint(**settings)


def test_records_round_trip_through_a_file(tmp_path: Path) -> None:
    record = _search_record()
    data = record.to_dict()
    assert data["format"] == "rnasframe.search/2" and data["step"] == 0 and data["position"] == {}
    record.save(tmp_path / "checkpoint.pt")
    loaded = SearchCheckpoint.load(tmp_path / "checkpoint.pt")
    assert loaded.epoch == 2 and torch.equal(loaded.model["w"], torch.arange(3.0))
    assert loaded.seconds_per_epoch == [1.0, 2.0] and torch.equal(loaded.split["valid"], torch.arange(4, 8))
    assert load_checkpoint(tmp_path / "checkpoint.pt", SearchCheckpoint.FORMAT)["epoch"] == 2


def test_records_read_the_first_format_and_reject_incomplete_or_foreign_ones(tmp_path: Path) -> None:
    first = {k: v for k, v in _search_record().to_dict().items() if k not in ("step", "position")}
    first["format"] = "rnasframe.search/1"
    assert SearchCheckpoint.from_dict(first).step == 0
    training_v1 = {
        "format": "rnasframe.train/1", "epoch": 1, "model": {}, "optimizer": {}, "scheduler": {}, "rng": {},
        "split": {}, "seconds_per_epoch": [1.0], "metrics": {}, "best": {"epoch": 1, "value": None},
        "genotype": {}, "network": {"channels": 36, "layers": 20, "auxiliary": True}, "model_name": "m",
        "selection": "clean", "objective": {"name": "StandardTraining"}, "world_size": 1,
    }
    assert TrainingCheckpoint.from_dict(training_v1).network["channels"] == 36
    best_v1 = {"format": "rnasframe.train-best/1", "epoch": 1, "model": {}, "selection": {}, "genotype": {},
               "network": {}, "model_name": "m"}
    assert BestWeights.from_dict(best_v1).model_name == "m"
    del first["optimizer"], first["rng"]
    with pytest.raises(CheckpointError, match=r"x.pt \(rnasframe.search/1\) lacks the entries optimizer, rng"):
        SearchCheckpoint.from_dict(first, "x.pt")
    with pytest.raises(CheckpointError, match="is not a 'rnasframe.search/2' checkpoint .format: 'rnasframe.train/2'"):
        SearchCheckpoint.from_dict({"format": "rnasframe.train/2"})
    with pytest.raises(CheckpointError, match="SearchCheckpoint.step must be an integer >= 0, got -1"):
        _search_record(step=-1)
    save_atomic({"format": "rnasframe.search/9"}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="future.pt is not a 'rnasframe.search/2' checkpoint"):
        SearchCheckpoint.load(tmp_path / "future.pt")


# --- the atomic writer ----------------------------------------------------------------------------


def test_a_failing_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "file.txt"
    write_atomic(path, "first")
    assert path.read_text() == "first"

    def broken(stream: Any) -> None:
        stream.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_text() == "first" and sorted(p.name for p in path.parent.iterdir()) == ["file.txt"]
    write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"


def test_a_process_killed_while_writing_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    script = textwrap.dedent(
        f"""
        import sys, torch
        from rnasframe.checkpoint import save_atomic
        step = 0
        while True:
            save_atomic({{"format": "kill-test", "step": step, "w": torch.full((200_000,), float(step))}}, {str(path)!r})
            step += 1
            if step == 2:
                print("ready", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = load_checkpoint(path, "kill-test")
    assert torch.equal(state["w"], torch.full((200_000,), float(state["step"])))


# --- the engine logs what the space hands it ------------------------------------------------------


class _TalkativeSpace(ToySpace):
    """A toy space with genotype metrics and one tagged picture."""

    def genotype_metrics(self, genotype: Any) -> Mapping[str, float]:
        return {"table_accuracy": 0.25 + 0.5 * genotype[0]}

    def save_pictures(self, genotype: Any, alpha_history: Mapping[str, Sequence[Any]], folder: Any) -> List[Picture]:
        path = Path(folder) / "toy.png"
        Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(path)
        return [Picture("toy/choice", path)]


def test_engine_logs_tagged_pictures_and_genotype_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboardX import SummaryWriter

    logged: List[Tuple[str, str]] = []
    monkeypatch.setattr(SummaryWriter, "add_image", lambda self, tag, *a, **k: logged.append(("image", tag)))
    original = SummaryWriter.add_scalar
    monkeypatch.setattr(
        SummaryWriter, "add_scalar", lambda self, tag, *a, **k: (logged.append(("scalar", tag)), original(self, tag, *a, **k))
    )
    engine = SearchEngine(
        space=_TalkativeSpace(), data=DigitsSource(), objective=RobustObjective(), epochs=2, warmup_epochs=1,
        batch_size=16, augmentation=None, device="cpu", max_steps_per_epoch=2, eval_batches=1,
    )
    result = engine.run(tmp_path / "run")
    assert result is not None
    expected = 0.25 + 0.5 * result.genotype[0]
    assert result.genotype_metrics == {"table_accuracy": expected}
    assert json.loads((tmp_path / "run" / "results.json").read_text())["genotype_metrics"] == {"table_accuracy": expected}
    assert logged.count(("image", "toy/choice")) == 2
    assert logged.count(("scalar", "genotype/table_accuracy")) == 2
    assert "epoch 2 genotype metrics: table_accuracy=" in (tmp_path / "run" / "log.txt").read_text()


# --- the core's shape -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["rnasframe/engine.py", "rnasframe/training/trainer.py", "rnasframe/run.py"])
def test_the_core_names_no_search_space_and_has_short_methods(module: str) -> None:
    source = (ROOT / module).read_text()
    for word in ("dartsspace", "spaces.darts", "darts_v", "drop_path", "aux_logits", "channels"):
        assert word not in source.lower(), word
    tree = ast.parse(source)
    lengths = {
        node.name: node.end_lineno - node.lineno + 1  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    assert max(lengths.values()) <= 60, sorted(lengths.items(), key=lambda item: -item[1])[:3]
