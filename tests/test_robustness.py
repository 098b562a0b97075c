"""Attacks, the robustness evaluation, its sanity checks and the results files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Tuple

import attrs
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.data import DigitsSource, LabeledImages
from rnasframe.interfaces import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations import FGSM, PGD, L2Ball, LinfBall
from rnasframe.robustness import (
    AutoAttack,
    RobustnessEvaluation,
    attack_accuracy,
    attack_settings,
    check_robustness,
    cross_entropy_objective,
    results_markdown,
    write_results,
)


def _attack(attack: Perturbation, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``attack``'s examples as the evaluation makes them: it maximizes the summed cross-entropy."""
    return attack(x, cross_entropy_objective(model, y), model=model)


def _evaluation(epsilon: float, step_size: float, ball: type = LinfBall, **settings: object) -> RobustnessEvaluation:
    """FGSM and PGD-20 (also the sweep attack) in ``ball(epsilon)``, PGD's step ``step_size``."""
    pgd = PGD(ball(epsilon), steps=20, step_size=step_size)
    return RobustnessEvaluation(epsilon=epsilon, attacks=(FGSM(ball(epsilon)), pgd), sweep_attack=pgd, **settings)


def _digits() -> Tuple[LabeledImages, LabeledImages]:
    source = DigitsSource()
    return source.load_train(), source.load_test()


@pytest.fixture(scope="module")
def trained() -> Tuple[nn.Module, LabeledImages]:
    """A small MLP with BatchNorm, trained on the digits in about a second, and the test images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the per-test fixture of conftest.py
    torch.manual_seed(0)
    train, test = _digits()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = train.pixels(torch.arange(len(train))), train.labels
    for _ in range(150):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return model.eval(), test


def test_fgsm_is_x_plus_epsilon_times_the_gradient_sign_clipped() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x = torch.rand(6, 3, 4, 4)
    x[0] = 0.0  # pixels at the borders of [0, 1] are clipped
    x[1] = 1.0
    y = torch.randint(0, 5, (6,))
    epsilon = 0.05
    probe = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(probe), y, reduction="sum"), probe)
    expected = (x + epsilon * gradient.sign()).clamp(0.0, 1.0)
    torch.testing.assert_close(_attack(FGSM(LinfBall(epsilon)), model, x, y), expected, rtol=0, atol=1e-7)
    one_step = PGD(LinfBall(epsilon), steps=1, step_size=epsilon, random_start=False)
    torch.testing.assert_close(_attack(one_step, model, x, y), expected, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(LinfBall(0.1)),
        PGD(LinfBall(0.1), steps=5, step_size=0.05),
        PGD(LinfBall(0.1), steps=3, step_size=0.5, random_start=False),
    ],
    ids=["fgsm", "pgd-random-start", "pgd-large-steps"],
)
def test_every_attack_stays_in_the_ball_and_in_the_pixel_range(attack: PGD) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(16, 1, 8, 8)
    x[:4] = torch.bernoulli(x[:4])  # many pixels exactly 0 or 1
    y = torch.randint(0, 10, (16,))
    before = x.clone()
    x_adv = _attack(attack, model, x, y)
    assert torch.equal(x, before)
    assert (x_adv - x).abs().max() <= attack.ball.epsilon + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


def test_trained_model_pgd_below_fgsm_below_clean_and_epsilon_zero_is_clean(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    model.train()  # the evaluation switches to eval mode and restores this
    stats = model[2].running_mean.clone()
    report = _evaluation(0.1, 0.01).evaluate(model, test)
    assert model.training and torch.equal(model[2].running_mean, stats)
    assert report.examples == len(test)
    assert report.clean > 0.8
    assert report.attacks["pgd20"] <= report.attacks["fgsm"] <= report.clean
    assert report.attacks["pgd20"] < report.clean - 0.1  # the attack does something at this radius
    (epsilon_zero,) = [a for e, a in report.sweep if e == 0]
    assert epsilon_zero == report.clean
    assert [e for e, _ in report.sweep] == pytest.approx([0.0, 0.025, 0.05, 0.1])
    assert report.sane, report.warnings()
    assert {c.name for c in report.sanity} >= {
        "epsilon_zero_is_clean", "fgsm_le_clean", "pgd20_le_fgsm", "accuracy_non_increasing_in_epsilon",
        "adversarial_examples_in_ball",
    }
    assert attack_accuracy(model.eval(), test, None) == report.clean


@attrs.define(frozen=True)
class _HelpfulAttack(Perturbation):
    """A broken 'attack' that descends the loss: it makes the model *more* accurate."""

    ball: NormBall = attrs.field(default=LinfBall(0.1))

    @property
    def name(self) -> str:
        return "fgsm"

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        probe = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(objective(probe), probe)
        return (x - self.ball.epsilon * gradient.sign()).clamp(0.0, 1.0)


def test_the_sanity_checks_flag_an_attack_that_improves_accuracy(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = _evaluation(0.1, 0.01, sweep_fractions=(0.0, 0.5, 1.0))
    report = evaluation.evaluate(model, test, attacks=[_HelpfulAttack()], sweep_attack=_HelpfulAttack())
    assert report.attacks["fgsm"] > report.clean
    failed = {c.name for c in report.sanity if not c.passed}
    assert failed == {"fgsm_le_clean", "accuracy_non_increasing_in_epsilon"}
    assert not report.sane
    assert all(line.startswith("WARNING: sanity check") and "FAILED" in line for line in report.warnings())


def test_check_robustness_on_numbers() -> None:
    good = check_robustness(0.9, {"fgsm": 0.6, "pgd20": 0.5}, [(0.0, 0.9), (0.01, 0.7), (0.02, 0.5)], {"fgsm": True})
    assert all(c.passed for c in good)
    bad = check_robustness(0.9, {"fgsm": 0.5, "pgd20": 0.6}, [(0.0, 0.8), (0.01, 0.5), (0.02, 0.55)], {"pgd20": False})
    assert {c.name for c in bad if not c.passed} == {
        "epsilon_zero_is_clean", "pgd20_le_fgsm", "accuracy_non_increasing_in_epsilon", "adversarial_examples_in_ball",
    }
    assert all(c.passed for c in check_robustness(0.9, {"fgsm": 0.905}, [], {}, tolerance=0.01))


def test_results_files_are_written_and_parse(tmp_path: Path, trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    report = RobustnessEvaluation(max_examples=40, sweep_fractions=(0.0, 1.0)).evaluate(model, test)
    payload = {
        "model": "mlp", "params_millions": 0.0024, "data": test.name, "checkpoint": "best.pt (epoch 1 of 1 trained)",
        "seed": 0, "device": "cpu", "evaluation": report.as_dict(), "seconds": {"train": 1.5, "evaluate": 0.5},
        "training": {"objective": {"name": "StandardTraining"}, "selection": "clean accuracy"},
    }
    write_results(tmp_path, payload)
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["evaluation"]["accuracy"]["clean"] == report.clean
    assert loaded["evaluation"]["sanity"]["passed"] is True
    assert {a["name"] for a in loaded["evaluation"]["attacks"]} == {"fgsm", "pgd20"}
    pgd = next(a for a in loaded["evaluation"]["attacks"] if a["name"] == "pgd20")
    assert (pgd["steps"], pgd["step_size"], pgd["epsilon"], pgd["random_start"]) == (20, 0.003, 0.031, True)
    markdown = (tmp_path / "results.md").read_text()
    assert markdown == results_markdown(loaded)
    assert "| Model | Params (M) | Training | Clean | FGSM | PGD-20 |" in markdown
    assert "## Sanity checks" in markdown and "| train | 1.5 |" in markdown and "- seed: 0" in markdown


def test_bad_attacks_and_values_fail_with_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"RobustnessEvaluation.attacks: expected a Perturbation such as FGSM\(\).*got 'pgd20'"):
        RobustnessEvaluation(attacks=("pgd20",))
    with pytest.raises(ValueError, match=r"RobustnessEvaluation.epsilon must be >= 0.*got -0.1"):
        RobustnessEvaluation(epsilon=-0.1)
    with pytest.raises(ValueError, match=r"PGD.steps must be an integer >= 1, got 0"):
        PGD(steps=0)
    with pytest.raises(ValueError, match="sweep_fractions must be numbers in"):
        RobustnessEvaluation(sweep_fractions=(0.0, 2.0))
    with pytest.raises(ValueError, match=r"lists an attack name twice: \['fgsm', 'fgsm'\]"):
        RobustnessEvaluation(attacks=(FGSM(), FGSM()))
    with pytest.raises(ValueError, match=r"mix threat models \(L2Ball, LinfBall\)"):
        RobustnessEvaluation(epsilon=0.031, attacks=(FGSM(), PGD(L2Ball(0.031))))
    with pytest.raises(ValueError, match="must hold at least one attack"):
        RobustnessEvaluation(attacks=())


def _per_example_l2(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


def test_l2_fgsm_is_the_normalized_gradient_step_clipped() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    x = torch.rand(6, 3, 4, 4, dtype=torch.float64)
    model = model.double()
    x[0] = 0.0
    x[1] = 1.0
    y = torch.randint(0, 5, (6,))
    epsilon = 0.4
    probe = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(probe), y, reduction="sum"), probe)
    unit = gradient / _per_example_l2(gradient).reshape(-1, 1, 1, 1)  # independent of the L2Ball code
    expected = (x + epsilon * unit).clamp(0.0, 1.0)
    torch.testing.assert_close(_attack(FGSM(L2Ball(epsilon)), model, x, y), expected, rtol=0, atol=1e-12)
    one_step = PGD(L2Ball(epsilon), steps=1, step_size=epsilon, random_start=False)
    torch.testing.assert_close(_attack(one_step, model, x, y), expected, rtol=0, atol=1e-12)
    assert attack_settings(FGSM(L2Ball(epsilon))) == {
        "name": "fgsm", "attack": "FGSM", "norm": "L2", "epsilon": epsilon, "steps": 1, "step_size": epsilon,
        "random_start": False,
    }


@pytest.mark.parametrize(
    "attack",
    [
        FGSM(L2Ball(0.5)),
        PGD(L2Ball(0.5), steps=5, step_size=0.25),
        PGD(L2Ball(2.0), steps=3, step_size=3.0, random_start=False),
    ],
    ids=["fgsm", "pgd-random-start", "pgd-large-steps-large-radius"],
)
def test_every_l2_attack_stays_in_the_l2_ball_and_in_the_pixel_range(attack: PGD) -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(16, 1, 8, 8)
    x[:4] = torch.bernoulli(x[:4])
    y = torch.randint(0, 10, (16,))
    before = x.clone()
    x_adv = _attack(attack, model, x, y)
    assert torch.equal(x, before)
    assert (_per_example_l2(x_adv - x) <= attack.ball.epsilon * (1 + 1e-5)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # An L2 step spends its budget on few pixels: the L-inf distance exceeds an L-inf attack's.
    assert (x_adv - x).abs().amax() > attack.ball.epsilon / 8


def test_l2_evaluation_of_a_trained_model_is_sane_and_records_the_norm(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = _evaluation(1.0, 0.125, L2Ball, max_examples=200)
    report = evaluation.evaluate(model, test)
    assert report.attacks["pgd20"] <= report.attacks["fgsm"] <= report.clean
    assert report.attacks["pgd20"] < report.clean - 0.1
    assert report.sane, report.warnings()
    assert {a["norm"] for a in report.attack_settings} == {"L2"}
    assert report.sweep_settings["attack"]["norm"] == "L2"
    assert report.as_dict()["evaluation"]["sweep_attack"]["norm"] == "L2"
    # The same radius in L-inf is a much larger set (it holds the L2 ball): accuracy is lower.
    linf = _evaluation(1.0, 0.125, LinfBall, max_examples=200, sweep_fractions=())
    assert linf.evaluate(model, test).attacks["pgd20"] <= report.attacks["pgd20"]


@attrs.define(frozen=True)
class _CornerAttack(Perturbation):
    """Claims to be an L2 attack but returns L-inf corners: outside the L2 ball of the same radius."""

    ball: NormBall = attrs.field(default=L2Ball(0.1))

    @property
    def name(self) -> str:
        return "pgd1"

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        return (x + self.ball.epsilon * torch.randn_like(x).sign()).clamp(0.0, 1.0)


def test_the_ball_check_measures_the_attack_norm(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = _evaluation(0.1, 0.1, L2Ball, max_examples=50, sweep_fractions=())
    report = evaluation.evaluate(model, test, attacks=[_CornerAttack()])
    (check,) = [c for c in report.sanity if c.name == "adversarial_examples_in_ball"]
    assert not check.passed and "pgd1" in check.detail
    as_linf = evaluation.evaluate(model, test, attacks=[_CornerAttack(LinfBall(0.1))])
    (check,) = [c for c in as_linf.sanity if c.name == "adversarial_examples_in_ball"]
    assert check.passed


def test_a_pgd_step_that_cannot_reach_the_boundary_fails_early_with_the_usual_step() -> None:
    # The paper's L-inf step (0.003) left in place under an L2 radius: PGD-20 moves 0.06 < 0.5.
    with pytest.raises(ValueError, match=r"pgd20 moves at most .* = 0.06 < epsilon = 0.5 \(L2\).*0.0625"):
        _evaluation(0.5, 0.003, L2Ball)
    assert _evaluation(2.0, 0.25, L2Ball).sweep_attack.ball == L2Ball(2.0)


def _autoattack_available() -> bool:
    for name in ("pyautoattack", "autoattack"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        if hasattr(module, "AutoAttack"):
            return True
    return False


def test_autoattack_without_the_extra_raises_an_import_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ImportError, match=r"pip install 'rnasframe\[autoattack\]'"):
        _attack(AutoAttack(), model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    evaluation = RobustnessEvaluation(attacks=(FGSM(), AutoAttack()))  # configuring it needs no package
    with pytest.raises(ImportError, match="optional extra"):
        evaluation.check_available()


@pytest.mark.skipif(not _autoattack_available(), reason="the optional extra rnasframe[autoattack] is not installed")
def test_autoattack_runs_and_is_no_weaker_than_clean(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    pgd = PGD(LinfBall(0.1), steps=20, step_size=0.01)
    evaluation = RobustnessEvaluation(
        epsilon=0.1, attacks=(pgd, AutoAttack(LinfBall(0.1))), sweep_attack=pgd, max_examples=24, sweep_fractions=()
    )
    report = evaluation.evaluate(model, test)
    assert report.attacks["autoattack"] <= report.clean
    assert report.sane, report.warnings()
