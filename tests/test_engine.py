"""End-to-end search: run folder contents, exact resume, crash safety, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import attrs
import pytest
import torch
from torch import Tensor, nn

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine
from rnasframe.checkpoint import CheckpointError, load_checkpoint
from rnasframe.data import Augmentation, DigitsSource
from rnasframe.engine import CHECKPOINT_FORMAT
from rnasframe.interfaces import Regularizer, RegularizerOutput
from rnasframe.perturbations import LinfBall, PGDMaximizer
from rnasframe.spaces.darts import DartsSpace


def _engine(**overrides: Any) -> SearchEngine:
    settings: Dict[str, Any] = dict(
        space=DartsSpace(channels=2, layers=3),
        data=DigitsSource(),
        objective=RobustObjective(
            [PerturbationConsistency(PGDMaximizer(LinfBall(0.031), steps=2, step_size=0.02), weight=1.0)]
        ),
        optimizer=FirstOrderDarts(),
        epochs=2,
        warmup_epochs=1,
        batch_size=16,
        augmentation=Augmentation(crop_padding=1, horizontal_flip=False),
        seed=3,
        device="cpu",
        max_steps_per_epoch=2,
        eval_batches=2,
    )
    settings.update(overrides)
    return SearchEngine(**settings)


def test_tiny_search_leaves_a_complete_run_folder(tmp_path: Path) -> None:
    result = _engine().run(tmp_path / "run")
    assert result is not None
    folder = tmp_path / "run"
    names = {p.name for p in folder.iterdir()}
    assert {"checkpoint.pt", "genotype.json", "log.txt", "results.json"} <= names
    assert {"cell_normal.png", "cell_reduce.png", "alpha_normal.png", "alpha_reduce.png"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    genotype = DartsSpace().genotype_from_dict(json.loads((folder / "genotype.json").read_text()))
    assert genotype == result.genotype
    results = json.loads((folder / "results.json").read_text())
    assert results["epochs"] == 2 and len(results["search_cost"]["seconds_per_epoch"]) == 2
    assert results["search_cost"]["total_seconds"] > 0 and results["search_cost"]["device"].startswith("cpu")
    assert "PerturbationConsistency/perturbed_acc" in " ".join(results["final_metrics"])
    assert "valid/loss" in results["final_metrics"]  # alpha steps ran after the warm-up epoch
    log = (folder / "log.txt").read_text()
    assert "epoch 2/2" in log and "genotype" in log and "search done" in log
    checkpoint = load_checkpoint(folder / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert checkpoint["epoch"] == 2
    assert set(checkpoint) >= {"model", "optimizer", "rng", "split", "seconds_per_epoch"}
    train, valid = checkpoint["split"]["train"], checkpoint["split"]["valid"]
    assert len(set(train.tolist()) & set(valid.tolist())) == 0 and len(train) + len(valid) == len(DigitsSource().load_train())


def test_warmup_epochs_leave_alpha_untouched(tmp_path: Path) -> None:
    torch.manual_seed(3)
    initial = DartsSpace(channels=2, layers=3).supernet(10, DigitsSource().load_train().input_spec())
    _engine(epochs=1, warmup_epochs=1).run(tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt", CHECKPOINT_FORMAT)["model"]
    torch.testing.assert_close(state["alphas_normal"], initial.alphas_normal.detach(), rtol=0, atol=0)


def test_resume_after_epoch_one_is_bit_identical_to_uninterrupted_run(tmp_path: Path) -> None:
    _engine().run(tmp_path / "straight")
    assert _engine().run(tmp_path / "resumed", stop_after_epoch=1) is None
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt", CHECKPOINT_FORMAT)["epoch"] == 1
    _engine().run(tmp_path / "resumed", resume=True)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt", CHECKPOINT_FORMAT)
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert straight["model"].keys() == resumed["model"].keys()
    for key in straight["model"]:
        assert torch.equal(straight["model"][key], resumed["model"][key]), key
    assert straight["genotype"] == resumed["genotype"]
    for name in ("normal", "reduce"):  # the softmax(alpha) history survives the resume
        assert len(resumed["alpha_history"][name]) == 2
        for a, b in zip(straight["alpha_history"][name], resumed["alpha_history"][name]):
            assert torch.equal(a, b)
    assert "resumed from" in (tmp_path / "resumed" / "log.txt").read_text()


@attrs.define(frozen=True)
class _Interrupting(Regularizer):
    """Raises ``error`` on the ``after``-th call (simulates Ctrl-C or a crash mid-epoch)."""

    after: int
    error: type
    weight: float = 1.0
    calls: list = attrs.field(factory=list)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> RegularizerOutput:
        self.calls.append(1)
        if len(self.calls) >= self.after:
            raise self.error("simulated")
        return RegularizerOutput(value=logits.new_zeros(()))


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_crash_mid_epoch_keeps_the_last_checkpoint_and_resume_finishes(tmp_path: Path, error: type) -> None:
    # Epoch 1 (warm-up) makes 2 w-steps = 2 calls; the 4th call is inside epoch 2.
    engine = _engine(objective=RobustObjective([_Interrupting(after=4, error=error)]))
    with pytest.raises(error):
        engine.run(tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    assert load_checkpoint(checkpoint, CHECKPOINT_FORMAT)["epoch"] == 1
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    if error is KeyboardInterrupt:
        assert "interrupted during epoch 2" in (tmp_path / "run" / "log.txt").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        _engine().run(tmp_path / "run")  # never overwrites an existing search
    assert checkpoint.read_bytes() == before
    assert _engine().run(tmp_path / "run", resume=True) is not None


def test_resume_rejects_truncated_foreign_and_missing_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _engine().run(tmp_path / "empty", resume=True)
    _engine(epochs=1, warmup_epochs=1).run(tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        _engine().run(tmp_path / "run", resume=True)
    torch.save({"state_dict": {}}, checkpoint)
    with pytest.raises(CheckpointError, match="not a 'rnasframe.search/2' checkpoint"):
        _engine().run(tmp_path / "run", resume=True)
    torch.save({"format": "rnasframe.search/1", "epoch": 1}, checkpoint)
    with pytest.raises(CheckpointError, match=r"\(rnasframe.search/1\) lacks the entries model, optimizer"):
        _engine().run(tmp_path / "run", resume=True)


def test_resume_with_another_split_is_rejected(tmp_path: Path) -> None:
    _engine(epochs=2, warmup_epochs=1).run(tmp_path / "run", stop_after_epoch=1)
    with pytest.raises(CheckpointError, match="another data split"):
        _engine(seed=4).run(tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(epochs=0), "SearchEngine.epochs must be an integer >= 1, got 0"),
        (dict(epochs=2, warmup_epochs=3), "SearchEngine.warmup_epochs must be <= epochs (2), got 3"),
        (dict(batch_size=0), "SearchEngine.batch_size must be an integer >= 1"),
        (dict(device="tpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        (dict(space="darts"), "space"),
    ],
)
def test_bad_engine_settings_fail_before_any_work(overrides: Dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as error:
        _engine(**overrides)
    assert message in str(error.value)


def test_batch_larger_than_the_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size=5000 is larger than each half"):
        _engine(batch_size=5000).run(tmp_path / "run")
