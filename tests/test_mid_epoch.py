"""Checkpoints inside an epoch: resume from the step, bit-identical, after a crash or a SIGKILL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

import attrs
import pytest
import torch
from torch import Tensor, nn

from rnasframe import RobustObjective, SearchEngine
from rnasframe.checkpoint import CheckpointError, SearchCheckpoint, TrainingCheckpoint
from rnasframe.data import Augmentation, DigitsSource
from rnasframe.interfaces import Regularizer, RegularizerOutput
from rnasframe.robustness import RobustnessEvaluation
from rnasframe.spaces.darts import DartsNetworkConfig, DartsSpace
from rnasframe.training import StandardTraining, Trainer, TrainingOutput
from tests.toy import ToySpace

ROOT = Path(__file__).resolve().parents[1]


@attrs.define(eq=False)
class Stopping(Regularizer):
    """Adds zero; raises ``KeyboardInterrupt`` at its ``after``-th call; sleeps ``pause`` seconds per call."""

    after: int = 10**9
    pause: float = 0.0
    weight: float = 1.0
    calls: List[int] = attrs.field(factory=list)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> RegularizerOutput:
        self.calls.append(1)
        if len(self.calls) >= self.after:
            raise KeyboardInterrupt
        time.sleep(self.pause)
        return RegularizerOutput(value=logits.new_zeros(()))


def toy_engine(**overrides: Any) -> SearchEngine:
    """A fast search (the toy supernet on the digits): 3 epochs of 8 steps, 1 warm-up epoch."""
    settings: Dict[str, Any] = dict(
        space=ToySpace(), data=DigitsSource(), objective=RobustObjective([Stopping()]), epochs=3, warmup_epochs=1,
        batch_size=16, augmentation=Augmentation(crop_padding=1, horizontal_flip=True), seed=2, device="cpu",
        max_steps_per_epoch=8, eval_batches=1,
    )
    settings.update(overrides)
    return SearchEngine(**settings)


def _state(path: Path) -> Dict[str, Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _assert_same(a: Dict[str, Tensor], b: Dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_search_stopped_inside_an_epoch_resumes_from_that_step_bit_identically(tmp_path: Path) -> None:
    toy_engine().run(tmp_path / "straight")
    # epoch 1 (warm-up): 8 calls; epoch 2: two calls per step (alpha, then w); the 14th is in step 3.
    stopping = toy_engine(objective=RobustObjective([Stopping(after=14)]), checkpoint_every_steps=2)
    with pytest.raises(KeyboardInterrupt):
        stopping.run(tmp_path / "resumed")
    record = SearchCheckpoint.load(tmp_path / "resumed" / "checkpoint.pt")
    assert (record.epoch, record.step) == (1, 2) and record.position["steps"] == 8
    assert toy_engine(checkpoint_every_steps=2).run(tmp_path / "resumed", resume=True) is not None
    _assert_same(_state(tmp_path / "straight" / "checkpoint.pt"), _state(tmp_path / "resumed" / "checkpoint.pt"))
    assert "resumed from" in (tmp_path / "resumed" / "log.txt").read_text()
    assert ", step 2 of epoch 2" in (tmp_path / "resumed" / "log.txt").read_text()


def _kill_at_a_random_moment(script: str, run_dir: Path, window: float) -> None:
    """Run ``script`` in a fresh process; SIGKILL it within ``window`` seconds of its first checkpoint."""
    # One thread, as in this process (conftest.py): the reduction order, hence the bits, depend on it.
    pinned = "import torch\ntorch.set_num_threads(1)\n" + textwrap.dedent(script)
    process = subprocess.Popen([sys.executable, "-c", pinned], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, window))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_a_search_killed_at_a_random_moment_resumes_bit_identically(tmp_path: Path) -> None:
    toy_engine().run(tmp_path / "straight")
    run_dir = tmp_path / "killed"
    script = f"""
        from rnasframe import RobustObjective
        from tests.test_mid_epoch import Stopping, toy_engine
        toy_engine(objective=RobustObjective([Stopping(pause=0.02)]), checkpoint_every_steps=1).run({str(run_dir)!r})
        """
    _kill_at_a_random_moment(script, run_dir, 0.4)
    record = SearchCheckpoint.load(run_dir / "checkpoint.pt")
    assert record.epoch < 3
    assert toy_engine(checkpoint_every_steps=1).run(run_dir, resume=True) is not None
    _assert_same(_state(tmp_path / "straight" / "checkpoint.pt"), _state(run_dir / "checkpoint.pt"))


def test_mid_epoch_checkpoints_from_another_batch_size_or_past_the_epoch_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        toy_engine(objective=RobustObjective([Stopping(after=14)]), checkpoint_every_steps=2).run(tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="written inside an epoch with batch_size=16; this run has batch_size=8"):
        toy_engine(batch_size=8).run(tmp_path / "run", resume=True)
    with pytest.raises(CheckpointError, match="with steps=8; this run has steps=6"):
        toy_engine(max_steps_per_epoch=6).run(tmp_path / "run", resume=True)
    record = SearchCheckpoint.load(path)
    attrs.evolve(record, step=9).save(path)
    with pytest.raises(CheckpointError, match="holds step 9, which is not inside an epoch of 8 steps"):
        toy_engine().run(tmp_path / "run", resume=True)
    assert SearchCheckpoint.load(path).step == 9  # the rejected resumes wrote nothing
    with pytest.raises(ValueError, match="checkpoint_every_steps must be an integer >= 1, got 0"):
        toy_engine(checkpoint_every_steps=0)


@attrs.define(frozen=True)
class _StoppingTraining(StandardTraining):
    """Standard training that raises ``KeyboardInterrupt`` at its ``after``-th batch; sleeps ``pause`` s per batch."""

    after: int = 10**9
    pause: float = 0.0
    calls: List[int] = attrs.field(factory=list)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        self.calls.append(1)
        if len(self.calls) >= self.after:
            raise KeyboardInterrupt
        time.sleep(self.pause)
        return super().__call__(model, x, y)


def _trainer(**overrides: Any) -> Trainer:
    settings: Dict[str, Any] = dict(
        space=DartsSpace(network_config=DartsNetworkConfig(channels=2, layers=3, drop_path_prob=0.3)),
        genotype="DARTS_V2", data=DigitsSource(), objective=_StoppingTraining(), epochs=2, batch_size=16,
        augmentation=Augmentation(crop_padding=1, horizontal_flip=False, cutout=2), max_steps_per_epoch=4,
        selection=None, selection_max_examples=16, evaluation=RobustnessEvaluation(max_examples=16),
        seed=4, device="cpu",
    )
    settings.update(overrides)
    return Trainer(**settings)


@pytest.mark.slow
def test_a_training_stopped_inside_an_epoch_resumes_from_that_step_bit_identically(tmp_path: Path) -> None:
    _trainer().run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _trainer(objective=_StoppingTraining(after=7), checkpoint_every_steps=1).run(tmp_path / "resumed")
    record = TrainingCheckpoint.load(tmp_path / "resumed" / "checkpoint.pt")
    assert (record.epoch, record.step) == (1, 2)
    assert _trainer(checkpoint_every_steps=1).run(tmp_path / "resumed", resume=True) is not None
    for name in ("checkpoint.pt", "best.pt"):
        _assert_same(_state(tmp_path / "straight" / name), _state(tmp_path / "resumed" / name))


@pytest.mark.slow
def test_a_training_killed_at_a_random_moment_resumes_bit_identically(tmp_path: Path) -> None:
    _trainer().run(tmp_path / "straight")
    run_dir = tmp_path / "killed"
    script = f"""
        from tests.test_mid_epoch import _StoppingTraining, _trainer
        _trainer(objective=_StoppingTraining(pause=0.1), checkpoint_every_steps=1).run({str(run_dir)!r})
        """
    _kill_at_a_random_moment(script, run_dir, 0.6)
    assert TrainingCheckpoint.load(run_dir / "checkpoint.pt").epoch <= 2
    assert _trainer(checkpoint_every_steps=1).run(run_dir, resume=True) is not None
    for name in ("checkpoint.pt", "best.pt"):
        _assert_same(_state(tmp_path / "straight" / name), _state(run_dir / name))
