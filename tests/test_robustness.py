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
from rnasframe.robustness import (
    Attack,
    AutoAttackStandard,
    FGSMAttack,
    PGDAttack,
    RobustnessEvaluation,
    attack_accuracy,
    attack_from_name,
    check_robustness,
    results_markdown,
    write_results,
)


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
    torch.testing.assert_close(FGSMAttack(epsilon)(model, x, y), expected, rtol=0, atol=1e-7)
    one_step = PGDAttack(epsilon=epsilon, steps=1, step_size=epsilon, random_start=False)
    torch.testing.assert_close(one_step(model, x, y), expected, rtol=0, atol=0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "attack",
    [FGSMAttack(0.1), PGDAttack(0.1, steps=5, step_size=0.05), PGDAttack(0.1, steps=3, step_size=0.5, random_start=False)],
    ids=["fgsm", "pgd-random-start", "pgd-large-steps"],
)
def test_every_attack_stays_in_the_ball_and_in_the_pixel_range(attack: Attack) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(16, 1, 8, 8)
    x[:4] = torch.bernoulli(x[:4])  # many pixels exactly 0 or 1
    y = torch.randint(0, 10, (16,))
    before = x.clone()
    x_adv = attack(model, x, y)
    assert torch.equal(x, before)
    assert (x_adv - x).abs().max() <= attack.epsilon + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


def test_trained_model_pgd_below_fgsm_below_clean_and_epsilon_zero_is_clean(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    model.train()  # the evaluation switches to eval mode and restores this
    stats = model[2].running_mean.clone()
    report = RobustnessEvaluation(epsilon=0.1, attacks=("fgsm", "pgd20"), pgd_step_size=0.01).evaluate(model, test)
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
class _HelpfulAttack(Attack):
    """A broken 'attack' that descends the loss: it makes the model *more* accurate."""

    epsilon: float = 0.1

    @property
    def name(self) -> str:
        return "fgsm"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        probe = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(F.cross_entropy(model(probe), y, reduction="sum"), probe)
        return (x - self.epsilon * gradient.sign()).clamp(0.0, 1.0)


def test_the_sanity_checks_flag_an_attack_that_improves_accuracy(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = RobustnessEvaluation(epsilon=0.1, pgd_step_size=0.01, sweep_fractions=(0.0, 0.5, 1.0))
    report = evaluation.evaluate(model, test, attacks=[_HelpfulAttack(0.1)], sweep_attack=_HelpfulAttack(0.1))
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
    pgd = [a for a in loaded["evaluation"]["attacks"] if a["name"] == "pgd20"][0]
    assert (pgd["steps"], pgd["step_size"], pgd["epsilon"], pgd["random_start"]) == (20, 0.003, 0.031, True)
    markdown = (tmp_path / "results.md").read_text()
    assert markdown == results_markdown(loaded)
    assert "| Model | Params (M) | Training | Clean | FGSM | PGD-20 |" in markdown
    assert "## Sanity checks" in markdown and "| train | 1.5 |" in markdown and "- seed: 0" in markdown


def test_unknown_attacks_and_bad_values_fail_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown attack 'cw'; valid attacks: fgsm, pgd<K>.*autoattack"):
        attack_from_name("cw", 0.031)
    with pytest.raises(ValueError, match=r"unknown attack 'pgd0'"):
        RobustnessEvaluation(attacks=("pgd0",))
    with pytest.raises(ValueError, match=r"RobustnessEvaluation.epsilon must be in \[0, 1\].*got -0.1"):
        RobustnessEvaluation(epsilon=-0.1)
    with pytest.raises(ValueError, match=r"PGDAttack.steps must be an integer >= 1, got 0"):
        PGDAttack(steps=0)
    with pytest.raises(ValueError, match="sweep_fractions must be numbers in"):
        RobustnessEvaluation(sweep_fractions=(0.0, 2.0))
    with pytest.raises(ValueError, match="lists an attack twice"):
        RobustnessEvaluation(attacks=("fgsm", "fgsm"))
    assert attack_from_name("PGD7", 0.031, step_size=None).settings()["step_size"] == pytest.approx(2.5 * 0.031 / 7)


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
    torch.testing.assert_close(FGSMAttack(epsilon, norm="L2")(model, x, y), expected, rtol=0, atol=1e-12)
    one_step = PGDAttack(epsilon=epsilon, steps=1, step_size=epsilon, random_start=False, norm="L2")
    torch.testing.assert_close(one_step(model, x, y), expected, rtol=0, atol=1e-12)
    assert FGSMAttack(epsilon, norm="L2").settings() == {"name": "fgsm", "norm": "L2", "epsilon": epsilon}


@pytest.mark.parametrize(
    "attack",
    [
        FGSMAttack(0.5, norm="L2"),
        PGDAttack(0.5, steps=5, step_size=0.25, norm="L2"),
        PGDAttack(2.0, steps=3, step_size=3.0, random_start=False, norm="L2"),
    ],
    ids=["fgsm", "pgd-random-start", "pgd-large-steps-large-radius"],
)
def test_every_l2_attack_stays_in_the_l2_ball_and_in_the_pixel_range(attack: Attack) -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x = torch.rand(16, 1, 8, 8)
    x[:4] = torch.bernoulli(x[:4])
    y = torch.randint(0, 10, (16,))
    before = x.clone()
    x_adv = attack(model, x, y)
    assert torch.equal(x, before)
    assert (_per_example_l2(x_adv - x) <= attack.epsilon * (1 + 1e-5)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # An L2 step spends its budget on few pixels: the L-inf distance exceeds an L-inf attack's.
    assert (x_adv - x).abs().amax() > attack.epsilon / 8


def test_l2_evaluation_of_a_trained_model_is_sane_and_records_the_norm(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = RobustnessEvaluation(epsilon=1.0, norm="L2", pgd_step_size=0.125, max_examples=200)
    report = evaluation.evaluate(model, test)
    assert report.attacks["pgd20"] <= report.attacks["fgsm"] <= report.clean
    assert report.attacks["pgd20"] < report.clean - 0.1
    assert report.sane, report.warnings()
    assert {a["norm"] for a in report.attack_settings} == {"L2"}
    assert report.sweep_settings["attack"]["norm"] == "L2"
    assert report.as_dict()["evaluation"]["norm"] == "L2"
    # The same radius in L-inf is a much larger set (it holds the L2 ball): accuracy is lower.
    linf = RobustnessEvaluation(epsilon=1.0, norm="Linf", pgd_step_size=0.125, max_examples=200, sweep_fractions=())
    assert linf.evaluate(model, test).attacks["pgd20"] <= report.attacks["pgd20"]


@attrs.define(frozen=True)
class _CornerAttack(Attack):
    """Claims to be an L2 attack but returns L-inf corners: outside the L2 ball of the same radius."""

    epsilon: float = 0.1
    norm: str = "L2"

    @property
    def name(self) -> str:
        return "pgd1"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return (x + self.epsilon * torch.randn_like(x).sign()).clamp(0.0, 1.0)


def test_the_ball_check_measures_the_attack_norm(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = RobustnessEvaluation(epsilon=0.1, norm="L2", pgd_step_size=0.1, max_examples=50, sweep_fractions=())
    report = evaluation.evaluate(model, test, attacks=[_CornerAttack(0.1)])
    (check,) = [c for c in report.sanity if c.name == "adversarial_examples_in_ball"]
    assert not check.passed and "pgd1" in check.detail
    as_linf = evaluation.evaluate(model, test, attacks=[_CornerAttack(0.1, norm="Linf")])
    (check,) = [c for c in as_linf.sanity if c.name == "adversarial_examples_in_ball"]
    assert check.passed


def test_bad_norms_radii_and_step_sizes_fail_early_with_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"RobustnessEvaluation.norm must be one of 'Linf', 'L2'; got 'L3'"):
        RobustnessEvaluation(norm="L3")
    with pytest.raises(ValueError, match=r"FGSMAttack.norm must be one of 'Linf', 'L2'; got 'l2'"):
        FGSMAttack(0.5, norm="l2")
    with pytest.raises(ValueError, match=r"unknown norm 'L1'; valid norms: 'Linf', 'L2'"):
        attack_from_name("fgsm", 0.5, norm="L1")
    with pytest.raises(ValueError, match=r"PGDAttack.epsilon must be >= 0 \(an L2 radius.*got -1"):
        PGDAttack(epsilon=-1.0, norm="L2")
    with pytest.raises(ValueError, match=r"RobustnessEvaluation.epsilon must be in \[0, 1\].*L-inf.*got 2.0"):
        RobustnessEvaluation(epsilon=2.0, pgd_step_size=0.25)
    assert RobustnessEvaluation(epsilon=2.0, norm="L2", pgd_step_size=0.25).build("pgd20").ball().epsilon == 2.0
    # The paper's L-inf step (0.003) left in place under an L2 radius: PGD-20 moves 0.06 < 0.5.
    with pytest.raises(ValueError, match=r"pgd20 moves at most .* = 0.06 < epsilon = 0.5 \(L2\).*0.0625"):
        RobustnessEvaluation(epsilon=0.5, norm="L2")


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
        AutoAttackStandard(0.031)(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))
    evaluation = RobustnessEvaluation(attacks=("fgsm", "autoattack"))  # configuring it needs no package
    with pytest.raises(ImportError, match="optional extra"):
        evaluation.check_available()


@pytest.mark.skipif(not _autoattack_available(), reason="the optional extra rnasframe[autoattack] is not installed")
def test_autoattack_runs_and_is_no_weaker_than_clean(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    evaluation = RobustnessEvaluation(epsilon=0.1, attacks=("pgd20", "autoattack"), pgd_step_size=0.01, max_examples=24, sweep_fractions=())
    report = evaluation.evaluate(model, test)
    assert report.attacks["autoattack"] <= report.clean
    assert report.sane, report.warnings()
