"""Data-parallel training from scratch on CPU with gloo and 2 processes (torch.multiprocessing and torchrun).

The 2-process runs are compared with 1-process runs over the same global batches. BatchNorm
normalizes with each rank's own shard, so the 1-process reference computes the loss of each half
of the global batch separately (its own BatchNorm statistics) and averages the two: exactly the
averaged gradient of 2 ranks. Drop path is off and the objective draws no random numbers, so the
parameters must agree up to the order of floating-point sums. Two configurations, without and with
active gradient clipping, catch gradients summed instead of averaged and clipping before the
average respectively; ranks that drift apart fail the run itself (the per-epoch check).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from rnasframe.bilevel import WeightOptimizerSettings
from rnasframe.checkpoint import load_checkpoint
from rnasframe.cli import train_main
from rnasframe.data import Augmentation, LabeledImages
from rnasframe.data.sources import DataSource
from rnasframe.perturbations import FGSM, LinfBall, PGDMaximizer
from rnasframe.robustness import RobustnessEvaluation
from rnasframe.spaces.darts import DartsNetworkConfig, DartsSpace
from rnasframe.training import (
    CHECKPOINT_FORMAT,
    AdversarialTraining,
    StandardTraining,
    Trainer,
    TrainingObjective,
    TrainingOutput,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CLIP = 0.02  # far below the gradient norms of this network: clipping is active at every step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Quadrants(DataSource):
    """Tiny synthetic images made here: 4 classes, each a bright quadrant of an 8x8 grey image plus noise."""

    def _make(self, n: int, seed: int, name: str) -> LabeledImages:
        generator = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 4, (n,), generator=generator)
        images = 0.5 * torch.rand(n, 1, 8, 8, generator=generator)
        for index, label in enumerate(labels.tolist()):
            row, col = divmod(label, 2)
            images[index, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 0.5
        return LabeledImages(images, labels, 4, name)

    def load_train(self) -> LabeledImages:
        return self._make(144, 0, "quadrants-train")

    def load_test(self) -> LabeledImages:
        return self._make(32, 1, "quadrants-test")


class _HalvesObjective(TrainingObjective):
    """An objective over ``parts`` equal slices of the batch, averaged; records the model it trains.

    With ``parts=1`` it is ``inner``; with ``parts=2`` in one process it computes what 2 ranks
    compute together (each slice normalized with its own BatchNorm statistics).
    """

    def __init__(self, parts: int, inner: Optional[TrainingObjective] = None) -> None:
        self.parts = parts
        self.inner = inner if inner is not None else StandardTraining()
        self.robust = self.inner.robust
        self.model: Optional[nn.Module] = None
        self.initial: Dict[str, Tensor] = {}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> TrainingOutput:
        if self.model is None:  # the first call sees the weights every rank starts from
            self.model = model
            self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        outputs = [self.inner(model, xs, ys) for xs, ys in zip(x.chunk(self.parts), y.chunk(self.parts))]
        loss = sum(output.loss for output in outputs) / self.parts
        metrics = {key: sum(output.metrics[key] for output in outputs) / self.parts for key in outputs[0].metrics}
        return TrainingOutput(loss=loss, metrics=metrics)

    def describe(self) -> Dict[str, Any]:
        return {**self.inner.describe(), "parts": self.parts}


def _trainer(
    objective: TrainingObjective, grad_clip: Optional[float], drop_path_prob: float = 0.0, **overrides: Any
) -> Trainer:
    network = DartsNetworkConfig(channels=4, layers=3, auxiliary=True, drop_path_prob=drop_path_prob)
    settings: Dict[str, Any] = dict(
        space=DartsSpace(network_config=network), genotype="DARTS_V2", data=_Quadrants(), objective=objective,
        epochs=2, batch_size=16,
        optimizer=WeightOptimizerSettings(
            learning_rate=0.1, min_learning_rate=0.0, momentum=0.9, weight_decay=3e-4, grad_clip=grad_clip
        ),
        augmentation=Augmentation(crop_padding=1, horizontal_flip=True, cutout=2), validation_portion=0.2,
        selection_max_examples=16,
        evaluation=RobustnessEvaluation(attacks=(FGSM(),), sweep_attack=FGSM(), sweep_fractions=(), max_examples=16),
        seed=3, device="cpu", max_steps_per_epoch=3,
    )
    settings.update(overrides)
    return Trainer(**settings)


_CONFIGS = {"plain": None, "clipped": CLIP}


def _adversarial() -> _HalvesObjective:
    pgd = PGDMaximizer(ball=LinfBall(0.031), steps=2, step_size=0.02, random_start=True)
    return _HalvesObjective(1, AdversarialTraining(perturbation=pgd))


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    base = Path(root)
    cwd = base / f"cwd-rank{rank}"  # anything written to a relative path would land here
    cwd.mkdir()
    os.chdir(cwd)
    dist.init_process_group("gloo")  # one group for all runs below (Trainer.run uses it as it is)
    try:
        for config, clip in _CONFIGS.items():
            objective = _HalvesObjective(1)
            # Each rank gets its own run folder, so that a file written by rank 1 would show.
            result = _trainer(objective, clip).run(base / f"{config}-rank{rank}")
            assert (result is None) == (rank != 0), (rank, result)
            assert objective.model is not None
            torch.save(
                {"initial": objective.initial, "final": objective.model.state_dict()},
                base / "states" / f"{config}-{rank}.pt",
            )
        stopped = _trainer(_HalvesObjective(1), None).run(base / f"stopped-rank{rank}", stop_after_epoch=1)
        assert stopped is None
        # Adversarial training with drop path (random numbers per rank): uninterrupted, then
        # stopped after epoch 1 and resumed, both on 2 processes sharing one run folder.
        uninterrupted, first_half, resumed = _adversarial(), _adversarial(), _adversarial()
        _trainer(uninterrupted, None, drop_path_prob=0.3).run(base / f"adversarial-rank{rank}")
        _trainer(first_half, None, drop_path_prob=0.3).run(base / "adversarial-shared", stop_after_epoch=1)
        _trainer(resumed, None, drop_path_prob=0.3).run(base / "adversarial-shared", resume=True)
        assert uninterrupted.model is not None and resumed.model is not None
        torch.save(
            {"uninterrupted": uninterrupted.model.state_dict(), "resumed": resumed.model.state_dict()},
            base / "states" / f"adversarial-{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the 2-process trainings once (gloo, spawned) and return their folder."""
    root = tmp_path_factory.mktemp("data_parallel")
    (root / "states").mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    return root


def _parameter_names(trainer_objective: _HalvesObjective) -> List[str]:
    assert trainer_objective.model is not None
    return [name for name, _ in trainer_objective.model.named_parameters()]


@pytest.mark.parametrize("config", list(_CONFIGS))
def test_two_processes_match_one_process_over_the_same_global_batch(
    two_process_runs: Path, tmp_path: Path, config: str
) -> None:
    ranks = [torch.load(two_process_runs / "states" / f"{config}-{r}.pt", weights_only=True) for r in range(2)]
    # Every rank started from and ended with the same weights and BatchNorm statistics, bit for bit.
    for key, value in ranks[0]["initial"].items():
        assert torch.equal(ranks[1]["initial"][key], value), key
    for key, value in ranks[0]["final"].items():
        assert torch.equal(ranks[1]["final"][key], value), key

    reference = _HalvesObjective(2)  # one process, the two shards' losses separately, averaged
    _trainer(reference, _CONFIGS[config]).run(tmp_path / "single")
    assert reference.model is not None
    single = reference.model.state_dict()
    names = _parameter_names(reference)
    for name in names:
        torch.testing.assert_close(ranks[0]["initial"][name], reference.initial[name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(ranks[0]["final"][name], single[name], rtol=1e-4, atol=1e-5, msg=name)

    # Not vacuous: the weights moved far beyond the tolerance, and clipping bounded the steps when on
    # (so clipping before the average, or summing instead of averaging, would each fail one config).
    moved = torch.cat([(single[n] - reference.initial[n]).flatten() for n in names])
    assert float(moved.abs().max()) > 1e-3
    if config == "clipped":  # 3 steps at lr 0.1, 3 at 0.05, momentum 0.9: 0.024 in norm, plus weight decay
        assert float(moved.norm()) < 0.045
    else:
        assert float(moved.norm()) > 0.1  # so the bound above is clipping at work
        # And per-rank BatchNorm matters: one process normalizing the whole batch ends elsewhere.
        whole = _HalvesObjective(1)
        _trainer(whole, None).run(tmp_path / "whole-batch")
        assert whole.model is not None
        assert max(float((whole.model.state_dict()[n] - single[n]).abs().max()) for n in names) > 1e-2

    # The logged metrics are the global batch's (averaged over ranks).
    double_metrics = load_checkpoint(two_process_runs / f"{config}-rank0" / "checkpoint.pt", CHECKPOINT_FORMAT)["metrics"]
    single_metrics = load_checkpoint(tmp_path / "single" / "checkpoint.pt", CHECKPOINT_FORMAT)["metrics"]
    for key in ("loss", "ce", "aux_ce", "natural_acc", "lr"):
        assert double_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-6), key


def test_adversarial_training_stays_in_sync_and_resumes_bit_exactly_on_two_processes(two_process_runs: Path) -> None:
    ranks = [torch.load(two_process_runs / "states" / f"adversarial-{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["uninterrupted"].items():
        for state in ranks:  # rank 1 too: it holds the checkpoint's (rank 0's) statistics after resuming
            assert torch.equal(state["uninterrupted"][key], value), key
            assert torch.equal(state["resumed"][key], value), key
    log = (two_process_runs / "adversarial-shared" / "log.txt").read_text()
    assert "resumed from" in log and "written by" not in log  # the same number of processes


def test_only_rank_0_writes_the_run_folder(two_process_runs: Path) -> None:
    for config in (*_CONFIGS, "stopped", "adversarial"):
        assert not (two_process_runs / f"{config}-rank1").exists(), config
    assert not any((two_process_runs / "cwd-rank1").iterdir())
    assert not any((two_process_runs / "cwd-rank0").iterdir())
    folder = two_process_runs / "plain-rank0"
    names = {path.name for path in folder.iterdir()}
    assert {"log.txt", "genotype.json", "checkpoint.pt", "best.pt", "results.json", "results.md"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    log = (folder / "log.txt").read_text()
    assert "2 processes (8 examples each per batch)" in log and "epoch 2/2" in log
    assert load_checkpoint(folder / "checkpoint.pt", CHECKPOINT_FORMAT)["world_size"] == 2
    results = json.loads((folder / "results.json").read_text())
    assert results["training"]["processes"] == 2 and results["device"].endswith("(trained on 2 processes)")


def test_a_two_process_checkpoint_resumes_on_one_process(two_process_runs: Path) -> None:
    folder = two_process_runs / "stopped-rank0"
    assert load_checkpoint(folder / "checkpoint.pt", CHECKPOINT_FORMAT)["epoch"] == 1
    resumed = _HalvesObjective(2)
    result = _trainer(resumed, None).run(folder, resume=True)
    assert result is not None and result.epochs == 2
    assert "written by 2" in (folder / "log.txt").read_text()
    assert load_checkpoint(folder / "checkpoint.pt", CHECKPOINT_FORMAT)["world_size"] == 1
    uninterrupted = torch.load(two_process_runs / "states" / "plain-0.pt", weights_only=True)["final"]
    assert resumed.model is not None
    for name, value in resumed.model.named_parameters():
        torch.testing.assert_close(value.detach(), uninterrupted[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(("world", "batch", "message"), [
    (2, 15, r"Trainer.batch_size=15 is the global batch, split evenly across the 2 processes: it must be a "
            r"multiple of 2 \(at least 2\), e.g. Trainer.batch_size = 16"),
    (4, 2, r"Trainer.batch_size=2 .* must be a multiple of 4 \(at least 4\), e.g. Trainer.batch_size = 4"),
])
def test_a_batch_that_does_not_split_over_the_processes_fails_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world: int, batch: int, message: str
) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    with pytest.raises(ValueError, match=message):
        _trainer(StandardTraining(), None, batch_size=batch).run(tmp_path / "run")
    assert not (tmp_path / "run").exists() and not dist.is_initialized()


def test_the_command_line_reports_a_bad_batch_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    status = train_main(
        ["--gin_file=train.gin", "--gin_file=train_smoke.gin", "--gin_param=Trainer.batch_size = 15",
         "--genotype=DARTS_V2", f"--run_dir={tmp_path / 'run'}"],
        examples_dir=EXAMPLES,
    )
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1
    assert error.startswith("error: Trainer.batch_size=15 is the global batch") and "multiple of 2" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_torchrun_trains_the_smoke_configuration_on_two_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(EXAMPLES / "train_cifar10.py"), "--gin_file=adv_train.gin", "--gin_file=train_smoke.gin",
        "--genotype=DARTS_V2", f"--run_dir={run_dir}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("| Model |") == 1  # rank 0 alone evaluates and reports
    log = (run_dir / "log.txt").read_text()
    assert "2 processes" in log and "epoch 2/2" in log and "DARTS_V2:" in log
    # Each epoch checked that weights and BatchNorm statistics are bit-identical on both ranks.
    assert load_checkpoint(run_dir / "checkpoint.pt", CHECKPOINT_FORMAT)["world_size"] == 2
    results = json.loads((run_dir / "results.json").read_text())
    assert results["training"]["objective"]["name"] == "AdversarialTraining" and results["training"]["processes"] == 2
