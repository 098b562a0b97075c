"""Training from scratch: cutout, objectives, the loop, selection, resume, gin files, CLI, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import gin
import pytest
import torch
from torch import Tensor, nn

from rnasframe.bilevel import WeightOptimizerSettings
from rnasframe.checkpoint import load_checkpoint
from rnasframe.cli import evaluate_main, train_main
from rnasframe.config import parse_gin
from rnasframe.data import Augmentation, BatchLoader, CIFAR10Source, DigitsSource, LabeledImages
from rnasframe.interfaces import NetworkOutput
from rnasframe.perturbations import FGSM, PGD, LinfBall, PGDMaximizer
from rnasframe.robustness import AutoAttack, RobustnessEvaluation, attack_name
from rnasframe.similarity import KLSimilarity
from rnasframe.spaces.darts import DartsNetworkConfig, DartsSpace, genotypes
from rnasframe.training import (
    BEST_FORMAT,
    CHECKPOINT_FORMAT,
    AdversarialTraining,
    StandardTraining,
    TradesTraining,
    Trainer,
    resolve_genotype,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRAINING_FILES = ["train.gin", "adv_train.gin", "trades.gin", "train_quickstart.gin"]
_FAST_PGD = PGDMaximizer(ball=LinfBall(0.031), steps=2, step_size=0.02, random_start=True)


_SET_EPOCH_CALLS: List[Any] = []


class _RecordingSpace(DartsSpace):
    """DARTS' space that records the trainer's per-epoch calls."""

    def set_epoch(self, network: nn.Module, epoch: int, epochs: int) -> None:
        _SET_EPOCH_CALLS.append((epoch, epochs, network.drop_path_prob))
        super().set_epoch(network, epoch, epochs)


def _trainer(**overrides: Any) -> Trainer:
    settings: Dict[str, Any] = dict(
        space=_RecordingSpace(network_config=DartsNetworkConfig(channels=2, layers=3)),
        genotype="DARTS_V2",
        data=DigitsSource(),
        epochs=2,
        batch_size=16,
        augmentation=Augmentation(crop_padding=1, horizontal_flip=False, cutout=2),
        max_steps_per_epoch=2,
        selection_max_examples=24,
        evaluation=RobustnessEvaluation(max_examples=24, sweep_fractions=(0.0, 0.5, 1.0)),
        seed=5,
        device="cpu",
    )
    settings.update(overrides)
    return Trainer(**settings)


# --- cutout -----------------------------------------------------------------------------------


def test_cutout_zero_keeps_the_existing_batches_exactly() -> None:
    images = LabeledImages(torch.rand(40, 3, 8, 8), torch.randint(0, 10, (40,)), 10)
    plain = BatchLoader(images, 8, seed=2, augmentation=Augmentation(crop_padding=2), drop_last=True)
    with_zero = BatchLoader(images, 8, seed=2, augmentation=Augmentation(crop_padding=2, cutout=0), drop_last=True)
    for (a, _), (b, _) in zip(plain.epoch(1), with_zero.epoch(1)):
        assert torch.equal(a, b)


def test_cutout_zeroes_one_square_per_image_clipped_at_the_borders() -> None:
    ones = torch.ones(400, 2, 12, 12)
    out = Augmentation(crop_padding=0, horizontal_flip=False, cutout=6)(ones, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 0], out[:, 1])  # the same patch in every channel
    zero = out[:, 0] == 0
    sides = []
    for mask in zero:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert rows.numel() > 0 and cols.numel() > 0  # the center is inside, so something is cut
        assert rows.max() - rows.min() + 1 == rows.numel() and cols.max() - cols.min() + 1 == cols.numel()
        assert int(mask.sum()) == rows.numel() * cols.numel()  # one filled rectangle
        sides.append((rows.numel(), cols.numel()))
    assert max(max(s) for s in sides) == 6  # full squares away from the borders
    assert min(min(s) for s in sides) <= 3  # clipped at a border
    assert torch.equal(out[~torch.stack([zero, zero], 1)], ones[~torch.stack([zero, zero], 1)])


def test_cutout_rejects_negative_lengths() -> None:
    with pytest.raises(ValueError, match=r"Augmentation.cutout must be an integer >= 0, got -1"):
        Augmentation(cutout=-1)


# --- objectives -------------------------------------------------------------------------------


def _network(auxiliary: bool = True, drop_path_prob: float = 0.2) -> nn.Module:
    spec = DigitsSource().load_train().input_spec()
    config = DartsNetworkConfig(channels=4, layers=5, auxiliary=auxiliary, drop_path_prob=drop_path_prob)
    space = DartsSpace(network_config=config)
    network = space.network(genotypes.DARTS_V2, 10, spec)
    space.set_epoch(network, 1, 2)  # drop path half of drop_path_prob
    return network


def test_network_returns_auxiliary_logits_in_its_output_in_training_mode_only() -> None:
    net = _network()
    x = torch.rand(4, 1, 8, 8)
    output = net(x)
    assert isinstance(output, NetworkOutput) and output.aux_logits is not None
    assert output.logits.shape == output.aux_logits.shape == (4, 10)
    assert not hasattr(net, "aux_logits")
    net.eval()
    assert isinstance(net(x), Tensor) and not isinstance(net(x), NetworkOutput)
    plain = _network(auxiliary=False)
    assert isinstance(plain(x), Tensor) and not isinstance(plain(x), NetworkOutput)


def test_darts_space_ramps_drop_path_linearly_over_the_epochs() -> None:
    space = DartsSpace(network_config=DartsNetworkConfig(channels=2, layers=3, drop_path_prob=0.3))
    net = space.network(genotypes.DARTS_V2, 10, DigitsSource().load_train().input_spec())
    assert net.drop_path_prob == 0.0
    for epoch, expected in [(0, 0.0), (1, 0.1), (2, 0.2)]:
        space.set_epoch(net, epoch, 3)
        assert net.drop_path_prob == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match=r"epoch must be in \[0, epochs=3\), got 3"):
        space.set_epoch(net, 3, 3)
    with pytest.raises(TypeError, match="needs a DartsNetwork"):
        space.set_epoch(nn.Linear(2, 2), 0, 3)
    with pytest.raises(ValueError, match="drop_path_prob must be in"):
        DartsNetworkConfig(drop_path_prob=1.0)


def test_drop_path_zeroes_whole_samples_and_rescales_the_others() -> None:
    from rnasframe.spaces.darts.network import drop_path

    x = torch.ones(2000, 3, 2, 2, dtype=torch.float64)
    out = drop_path(x, 0.25)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] != 0
    assert torch.all(per_sample[kept] == 1 / 0.75) and torch.all(per_sample[~kept] == 0)
    assert abs(float(kept.double().mean()) - 0.75) < 0.05
    assert drop_path(x, 0.0) is x


@pytest.mark.parametrize("attack_mode", ["eval", "train"])
@pytest.mark.parametrize("kind", ["adversarial", "trades"])
def test_robust_objectives_attack_plain_logits_and_add_the_auxiliary_term(attack_mode: str, kind: str) -> None:
    net = _network()  # auxiliary head and drop path: a NetworkOutput in training mode
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    if kind == "adversarial":
        objective: Any = AdversarialTraining(perturbation=_FAST_PGD, attack_mode=attack_mode, auxiliary_weight=0.5)
    else:
        objective = TradesTraining(perturbation=_FAST_PGD, attack_mode=attack_mode, auxiliary_weight=0.5)
    output = objective(net, x, y)
    assert "aux_ce" in output.metrics and net.training
    base = float(output.metrics["ce"]) + (6.0 * float(output.metrics["kl"]) if kind == "trades" else 0.0)
    assert float(output.loss.detach()) == pytest.approx(base + 0.5 * float(output.metrics["aux_ce"]), rel=1e-5)
    output.loss.backward()
    assert net.auxiliary_head is not None and all(p.grad is not None for p in net.auxiliary_head.parameters())
    without = type(objective)(perturbation=_FAST_PGD, attack_mode=attack_mode, auxiliary_weight=0.0)(net, x, y)
    assert "aux_ce" not in without.metrics


def test_network_trains_one_step_with_auxiliary_head_and_drop_path() -> None:
    torch.manual_seed(0)
    net = _network()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    output = StandardTraining(auxiliary_weight=0.4)(net, x, y)
    assert set(output.metrics) == {"ce", "aux_ce", "natural_acc", "loss"}
    assert float(output.loss.detach()) == pytest.approx(float(output.metrics["ce"]) + 0.4 * float(output.metrics["aux_ce"]))
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    output.loss.backward()
    assert net.auxiliary_head is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.auxiliary_head.parameters())
    optimizer.step()
    changed = [name for name, p in net.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.startswith("auxiliary_head") for name in changed) and any(name.startswith("cells") for name in changed)


class _ModeRecorder(nn.Module):
    """A classifier that records its mode at every forward pass and has BatchNorm statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
        self.modes: List[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.modes.append(self.training)
        return self.layers(x)


@pytest.mark.parametrize("attack_mode", ["eval", "train"])
@pytest.mark.parametrize("kind", ["adversarial", "trades"])
def test_robust_objectives_generate_in_the_chosen_mode_and_train_in_train_mode(attack_mode: str, kind: str) -> None:
    model = _ModeRecorder().train()
    if kind == "adversarial":
        objective: Any = AdversarialTraining(perturbation=_FAST_PGD, attack_mode=attack_mode)
    else:
        objective = TradesTraining(perturbation=_FAST_PGD, attack_mode=attack_mode)
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    output = objective(model, x, y)
    loss_passes = 2 if kind == "trades" else 1
    generation = model.modes[:-loss_passes]
    assert generation and all(mode == (attack_mode == "train") for mode in generation)
    assert model.modes[-loss_passes:] == [True] * loss_passes and model.training
    assert all(p.grad is None for p in model.parameters())
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert ("kl" in output.metrics) == (kind == "trades") and "adversarial_acc" in output.metrics


def test_trades_loss_is_natural_ce_plus_beta_kl() -> None:
    model = _ModeRecorder().train()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))
    output = TradesTraining(beta=3.0, perturbation=_FAST_PGD)(model, x, y)
    assert float(output.loss.detach()) == pytest.approx(float(output.metrics["ce"]) + 3.0 * float(output.metrics["kl"]), rel=1e-6)
    assert float(output.metrics["kl"]) > 0


# --- the loop ---------------------------------------------------------------------------------


class _GuardedDigits(DigitsSource):
    """Digits whose test part may be read only after the last epoch's checkpoint and best.pt exist."""

    def __init__(self, run_dir: Path, epochs: int) -> None:
        super().__init__()
        object.__setattr__(self, "_run_dir", run_dir)
        object.__setattr__(self, "_epochs", epochs)

    def load_test(self) -> LabeledImages:
        run_dir: Path = object.__getattribute__(self, "_run_dir")
        checkpoint = run_dir / "checkpoint.pt"
        if not checkpoint.is_file() or not (run_dir / "best.pt").is_file():
            raise AssertionError("the test set was read before training finished")
        if load_checkpoint(checkpoint, CHECKPOINT_FORMAT)["epoch"] != object.__getattribute__(self, "_epochs"):
            raise AssertionError("the test set was read before the last epoch")
        return super().load_test()


def test_training_selects_on_held_out_images_reads_the_test_set_once_and_writes_results(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _SET_EPOCH_CALLS.clear()
    result = _trainer(data=_GuardedDigits(run_dir, 3), epochs=3).run(run_dir)
    assert [(epoch, epochs) for epoch, epochs, _ in _SET_EPOCH_CALLS] == [(0, 3), (1, 3), (2, 3)]
    assert result is not None
    names = {p.name for p in run_dir.iterdir()}
    assert {"checkpoint.pt", "best.pt", "genotype.json", "log.txt", "results.json", "results.md"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt", CHECKPOINT_FORMAT)
    best = load_checkpoint(run_dir / "best.pt", BEST_FORMAT)
    assert checkpoint["epoch"] == 3 and best["epoch"] == checkpoint["best"]["epoch"] == result.best_epoch
    log = (run_dir / "log.txt").read_text()
    values = [float(line.split("selection/accuracy=")[1].split(",")[0]) for line in log.splitlines() if "selection/accuracy=" in line]
    assert len(values) == 3 and values[result.best_epoch - 1] == max(values)
    assert values.index(max(values)) == result.best_epoch - 1  # the earliest of ties
    results = json.loads((run_dir / "results.json").read_text())
    assert results["model"] == "DARTS_V2" and results["seed"] == 5
    assert results["training"]["selection"].startswith("clean accuracy on 144 held-out training images")
    assert results["evaluation"]["examples"] == 24
    assert set(results["evaluation"]["accuracy"]) == {"clean", "fgsm", "pgd20"}
    assert results["seconds"]["train"] > 0 and results["seconds"]["evaluate"] > 0
    assert isinstance(results["evaluation"]["sanity"]["passed"], bool)
    assert "| Model | Params (M) | Training | Clean | FGSM | PGD-20 |" in (run_dir / "results.md").read_text()
    assert DartsSpace().genotype_from_dict(json.loads((run_dir / "genotype.json").read_text())) == genotypes.DARTS_V2


@pytest.mark.parametrize(
    "objective, selection",
    [(AdversarialTraining(perturbation=_FAST_PGD), "PGD-10 accuracy"), (TradesTraining(perturbation=_FAST_PGD), "PGD-10 accuracy")],
    ids=["adversarial", "trades"],
)
def test_adversarial_and_trades_training_run_end_to_end(tmp_path: Path, objective: Any, selection: str) -> None:
    result = _trainer(objective=objective, epochs=1).run(tmp_path / "run")
    assert result is not None and result.epochs == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["training"]["selection"].startswith(selection)
    assert results["training"]["objective"]["name"] == type(objective).__name__
    assert "adversarial_acc" in results["training"]["final_metrics"]


def test_a_failed_sanity_check_is_reported_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class _IgnoresEpsilon(FGSM):
        def perturb(self, x: Tensor, objective: Any) -> Tensor:
            return x + 0.5  # far outside the ball (clamped to [0, 1] afterwards)

    evaluation = RobustnessEvaluation(attacks=(_IgnoresEpsilon(), PGD()), max_examples=24, sweep_fractions=(0.0, 0.5, 1.0))
    result = _trainer(epochs=1, evaluation=evaluation).run(tmp_path / "run")
    assert result is not None and not result.report.sane
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "WARNING: sanity check adversarial_examples_in_ball FAILED: left the epsilon-ball or [0, 1]: fgsm" in log
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["evaluation"]["sanity"]["passed"] is False
    assert {c["name"]: c["passed"] for c in results["evaluation"]["sanity"]["checks"]}["adversarial_examples_in_ball"] is False
    markdown = (tmp_path / "run" / "results.md").read_text()
    assert "| adversarial_examples_in_ball | **FAIL** |" in markdown and "WARNING: at least one sanity check failed" in markdown


def test_a_missing_optional_attack_package_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    trainer = _trainer(evaluation=RobustnessEvaluation(attacks=(FGSM(), AutoAttack())))
    with pytest.raises(ImportError, match=r"rnasframe\[autoattack\]"):
        trainer.run(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _trainer().run(tmp_path / "straight")
    assert _trainer().run(tmp_path / "resumed", stop_after_epoch=1) is None
    assert not (tmp_path / "resumed" / "results.json").exists()
    resumed = _trainer().run(tmp_path / "resumed", resume=True)
    assert straight is not None and resumed is not None
    for name, kind in (("checkpoint.pt", CHECKPOINT_FORMAT), ("best.pt", BEST_FORMAT)):
        a = load_checkpoint(tmp_path / "straight" / name, kind)["model"]
        b = load_checkpoint(tmp_path / "resumed" / name, kind)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert straight.report.clean == resumed.report.clean and straight.report.attacks == resumed.report.attacks
    assert "resumed from" in (tmp_path / "resumed" / "log.txt").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        _trainer().run(tmp_path / "straight")


def test_training_on_all_images_keeps_the_last_epoch(tmp_path: Path) -> None:
    result = _trainer(validation_portion=0.0, epochs=2).run(tmp_path / "run")
    assert result is not None and result.best_epoch == 2 and result.selection_value is None


# --- genotypes and bad input ------------------------------------------------------------------


def test_genotypes_resolve_from_files_run_folders_names_and_dicts(tmp_path: Path) -> None:
    space = DartsSpace()
    folder = tmp_path / "search-run"
    folder.mkdir()
    (folder / "genotype.json").write_text(json.dumps(space.genotype_to_dict(genotypes.DARTS_V1)))
    assert resolve_genotype(folder, space) == (genotypes.DARTS_V1, "search-run")
    assert resolve_genotype(str(folder / "genotype.json"), space) == (genotypes.DARTS_V1, "search-run")
    assert resolve_genotype("DARTS_V2", space) == (genotypes.DARTS_V2, "DARTS_V2")
    assert resolve_genotype(space.genotype_to_dict(genotypes.DARTS_V2), space)[0] == genotypes.DARTS_V2


def _bad_genotype_file(tmp_path: Path, edit: Any) -> Path:
    data = DartsSpace().genotype_to_dict(genotypes.DARTS_V2)
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _bad_genotype_file(p, lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0])), "unknown operation 'conv_9x9'"),
        (lambda p: _bad_genotype_file(p, lambda d: d["reduce"].__setitem__(1, ["max_pool_3x3", 7])), "reads input 7"),
        (lambda p: str(p / "missing-run"), "does not exist"),
        (lambda p: "DARTS_V9", "known names: DARTS, DARTS_V1, DARTS_V2"),
        (lambda p: p, "holds no genotype.json"),
    ],
    ids=["unknown-op", "index-out-of-range", "missing-folder", "unknown-name", "folder-without-genotype"],
)
def test_bad_genotypes_fail_clearly_before_training(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        _trainer(genotype=make(tmp_path))
    assert message in str(error.value).splitlines()[0]  # gin may append a line naming the configurable


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(epochs=0), "Trainer.epochs must be an integer >= 1, got 0"),
        (dict(selection="cw"), "Trainer.selection: expected a Perturbation such as FGSM(), PGD() or AutoAttack(), got 'cw'"),
        (dict(validation_portion=0.9), "Trainer.validation_portion must be in [0, 0.5]"),
        (dict(device="tpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_bad_trainer_settings_fail_before_any_work(overrides: Dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as error:
        _trainer(**overrides)
    assert message in str(error.value)


def test_missing_genotype_and_oversized_batch_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no genotype to train: pass --genotype"):
        _trainer(genotype=None).run(tmp_path / "a")
    with pytest.raises(ValueError, match="batch_size=5000 is larger than the training part"):
        _trainer(batch_size=5000).run(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# --- gin files and the command line -----------------------------------------------------------


@pytest.mark.parametrize("name", TRAINING_FILES)
def test_every_shipped_training_gin_parses_and_builds_with_smoke_bindings(name: str) -> None:
    parse_gin([name, "train_smoke.gin"], ["Trainer.genotype = 'DARTS_V2'"], [EXAMPLES])
    trainer = Trainer()
    assert trainer.epochs == 2 and isinstance(trainer.data, DigitsSource)
    assert isinstance(trainer.space, DartsSpace) and trainer.space.network_config.channels == 2


def test_paper_values_are_bound_in_the_training_files() -> None:
    parse_gin(["train.gin"], [], [EXAMPLES])
    trainer = Trainer()
    assert (trainer.epochs, trainer.batch_size) == (600, 96)
    assert isinstance(trainer.space, DartsSpace)
    assert trainer.space.network_config == DartsNetworkConfig(channels=36, layers=20, auxiliary=True, drop_path_prob=0.3)
    assert trainer.objective.auxiliary_weight == 0.4
    assert trainer.optimizer == WeightOptimizerSettings(0.025, 0.0, 0.9, 3e-4, 5.0)
    assert trainer.augmentation == Augmentation(crop_padding=4, horizontal_flip=True, cutout=16)
    assert isinstance(trainer.data, CIFAR10Source) and isinstance(trainer.objective, StandardTraining)
    evaluation = trainer.evaluation
    ball = LinfBall(0.031)
    assert (evaluation.epsilon, evaluation.attacks) == (0.031, (FGSM(ball), PGD(ball, steps=20, step_size=0.003)))
    assert trainer.selection is None
    gin.clear_config()
    parse_gin(["adv_train.gin"], [], [EXAMPLES])
    objective = Trainer().objective
    assert isinstance(objective, AdversarialTraining) and objective.attack_mode == "eval"
    pgd = objective.perturbation
    assert (pgd.steps, pgd.step_size, pgd.ball.epsilon, pgd.random_start) == (7, 0.01, 0.031, True)
    gin.clear_config()
    parse_gin(["trades.gin"], [], [EXAMPLES])
    trades = Trainer().objective
    assert isinstance(trades, TradesTraining) and trades.beta == 6.0 and isinstance(trades.similarity, KLSimilarity)
    gin.clear_config()
    parse_gin(["train.gin", "eval_autoattack.gin"], [], [EXAMPLES])
    assert [attack_name(a) for a in Trainer().evaluation.attacks] == ["fgsm", "pgd20", "autoattack"]


def test_cli_trains_prints_the_table_and_evaluates_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    args = ["--gin_file=train.gin", "--gin_file=train_smoke.gin", "--genotype=DARTS_V1", f"--run_dir={run_dir}",
            "--gin_param=Trainer.epochs = 1"]
    assert train_main(args, examples_dir=EXAMPLES) == 0
    out = capsys.readouterr().out
    assert "| Model | Params (M) | Clean | FGSM | PGD-20 |" in out and "| DARTS_V1 |" in out
    assert "Trainer.epochs = 1" in (run_dir / "operative_config.gin").read_text()
    gin.clear_config()
    assert evaluate_main([f"--run_dir={run_dir}", "--attacks=fgsm", "--checkpoint=last"], examples_dir=EXAMPLES) == 0
    out = capsys.readouterr().out
    assert "| Model | Params (M) | Clean | FGSM |" in out and "PGD-20 |" not in out
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["evaluation"]["accuracy"]) == {"clean", "fgsm"} and results["checkpoint"].startswith("checkpoint.pt")


def test_cli_reports_bad_input_in_one_line_with_exit_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--gin_file=train.gin", "--gin_file=train_smoke.gin", f"--run_dir={tmp_path / 'run'}"]
    assert train_main(base, examples_dir=EXAMPLES) == 2
    assert "no genotype to train" in capsys.readouterr().err
    assert train_main([*base, "--genotype=NOPE"], examples_dir=EXAMPLES) == 2
    assert "known names: DARTS, DARTS_V1, DARTS_V2" in capsys.readouterr().err
    assert train_main([*base, f"--genotype={tmp_path / 'nowhere'}/"], examples_dir=EXAMPLES) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train_main([*base, "--genotype=DARTS", "--gin_param=RobustnessEvaluation.attacks = ('cw',)"], examples_dir=EXAMPLES) == 2
    err = capsys.readouterr().err
    assert "RobustnessEvaluation.attacks: expected a Perturbation such as FGSM()" in err and err.count("\n") == 1
    adversarial = ["--gin_file=adv_train.gin", "--gin_file=train_smoke.gin", f"--run_dir={tmp_path / 'run'}", "--genotype=DARTS"]
    assert train_main([*adversarial, "--gin_param=PGDMaximizer.steps = 0"], examples_dir=EXAMPLES) == 2
    assert "PGDMaximizer.steps must be an integer >= 1, got 0" in capsys.readouterr().err
    assert train_main([*adversarial, "--gin_param=RobustnessEvaluation.epsilon = 2.0"], examples_dir=EXAMPLES) == 2
    err = capsys.readouterr().err  # the declared radius disagrees with the balls' (EPSILON not used)
    assert "fgsm has a LinfBall of radius 0.031, but RobustnessEvaluation.epsilon = 2" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing was started
    assert evaluate_main([f"--run_dir={tmp_path / 'absent'}"], examples_dir=EXAMPLES) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_negative_auxiliary_weight_fails_in_one_line() -> None:
    with pytest.raises(ValueError, match="StandardTraining.auxiliary_weight must be .*, got -0.1"):
        StandardTraining(auxiliary_weight=-0.1)
