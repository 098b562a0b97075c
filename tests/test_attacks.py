"""Evaluation attacks as perturbations: FGSM is one PGD step, PGD stays in its ball, one radius per
evaluation, and the command line's attack names become attack objects in one place."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnasframe.cli import attack_bindings, evaluate_main
from rnasframe.config import parse_gin
from rnasframe.interfaces import Perturbation
from rnasframe.perturbations import FGSM, PGD, L2Ball, LinfBall, PGDMaximizer
from rnasframe.robustness import AutoAttack, RobustnessEvaluation, attack_name, cross_entropy_objective, with_radius
from rnasframe.testing import check_perturbation
from rnasframe.testing.strategies import epsilons, images
from rnasframe.training import AdversarialTraining, Trainer

BALLS = {"Linf": LinfBall, "L2": L2Ball}


def _model(features: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 3)).to(dtype)


def _attack(attack: Perturbation, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return attack(x, cross_entropy_objective(model, y), model=model)


@settings(max_examples=30, deadline=None)
@given(x=images(), epsilon=epsilons(), norm=st.sampled_from(sorted(BALLS)))
def test_fgsm_is_one_pgd_step_of_length_epsilon_without_random_start(x: Tensor, epsilon: float, norm: str) -> None:
    model = _model(x[0].numel(), x.dtype)
    y = torch.arange(x.shape[0]) % 3
    ball = BALLS[norm](epsilon=epsilon)
    fgsm = _attack(FGSM(ball), model, x, y)
    one_step = PGD(ball, steps=1, step_size=epsilon if epsilon > 0 else 1.0, random_start=False)
    assert torch.equal(fgsm, _attack(one_step, model, x, y))
    if norm == "Linf":  # against the textbook formula, computed here in float64
        probe = x.double().requires_grad_(True)
        (gradient,) = torch.autograd.grad(F.cross_entropy(model.double()(probe), y, reduction="sum"), probe)
        expected = (x.double() + epsilon * gradient.sign()).clamp(0.0, 1.0)
        torch.testing.assert_close(fgsm.double(), expected, rtol=0, atol=2e-7 if x.dtype == torch.float32 else 1e-12)


@settings(max_examples=40, deadline=None)
@given(
    x=images(),
    epsilon=epsilons(),
    norm=st.sampled_from(sorted(BALLS)),
    steps=st.integers(1, 4),
    step_size=st.floats(1e-3, 3.0),
    random_start=st.booleans(),
)
def test_pgd_stays_in_its_ball_and_the_pixel_range(
    x: Tensor, epsilon: float, norm: str, steps: int, step_size: float, random_start: bool
) -> None:
    model = _model(x[0].numel(), x.dtype)
    y = torch.arange(x.shape[0]) % 3
    x_adv = _attack(PGD(BALLS[norm](epsilon=epsilon), steps, step_size, random_start), model, x, y)
    delta = (x_adv - x).flatten(1).double()
    distance = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    assert (distance <= epsilon * (1 + 1e-5) + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and x_adv.dtype == x.dtype


def test_fgsm_and_pgd_are_pgd_maximizers_that_keep_the_perturbation_contract() -> None:
    for attack in (FGSM(LinfBall(0.1)), PGD(L2Ball(0.5), steps=2, step_size=0.3)):
        assert isinstance(attack, PGDMaximizer)
        check_perturbation(attack)
    assert (FGSM(L2Ball(0.5)).steps, FGSM(L2Ball(0.5)).step_size, FGSM(L2Ball(0.5)).random_start) == (1, 0.5, False)
    assert FGSM(LinfBall(0.0)).step_size == 1.0  # a step must be positive; the ball is the point x
    assert with_radius(FGSM(LinfBall(0.1)), 0.05) == FGSM(LinfBall(0.05))  # the step follows the radius
    assert with_radius(PGD(LinfBall(0.1), step_size=0.01), 0.05) == PGD(LinfBall(0.05), step_size=0.01)
    assert [attack_name(a) for a in (FGSM(), PGD(), PGD(steps=7), AutoAttack())] == ["fgsm", "pgd20", "pgd7", "autoattack"]


def test_an_attack_whose_radius_disagrees_with_the_evaluation_fails_in_one_line_naming_both() -> None:
    with pytest.raises(ValueError) as error:
        RobustnessEvaluation(epsilon=0.031, attacks=(FGSM(LinfBall(0.031)), PGD(LinfBall(0.05))))
    message = str(error.value).splitlines()[0]  # gin may append a line naming the configurable
    assert "pgd20 has a LinfBall of radius 0.05, but RobustnessEvaluation.epsilon = 0.031" in message
    with pytest.raises(ValueError, match=r"sweep_attack: pgd20 has a L2Ball of radius 0.5, but .*epsilon = 0.031"):
        RobustnessEvaluation(epsilon=0.031, sweep_attack=PGD(L2Ball(0.5)))
    with pytest.raises(ValueError, match=r"Trainer.selection: pgd10 has a LinfBall of radius 0.1, but .*epsilon = 0.031"):
        Trainer(objective=AdversarialTraining(), selection=PGD(LinfBall(0.1), steps=10, step_size=0.1))


def test_the_radius_macro_binds_every_ball_and_a_stray_radius_fails_when_built() -> None:
    parse_gin(["adv_train.gin"], ["EPSILON = 0.05", "Trainer.genotype = 'DARTS_V2'"])
    trainer = Trainer()
    balls = {a.ball for a in (*trainer.evaluation.attacks, trainer.evaluation.sweep_attack, trainer.selection)}
    assert balls == {LinfBall(0.05)} and trainer.objective.perturbation.ball == LinfBall(0.05)
    assert trainer.evaluation.epsilon == 0.05
    gin.clear_config()
    parse_gin(["train.gin"], ["RobustnessEvaluation.epsilon = 0.1", "Trainer.genotype = 'DARTS_V2'"])
    with pytest.raises(ValueError, match=r"fgsm has a LinfBall of radius 0.031, but RobustnessEvaluation.epsilon = 0.1"):
        Trainer()


def test_the_command_line_shorthand_becomes_attack_objects() -> None:
    bindings = attack_bindings("fgsm, PGD20,pgd10,autoattack")
    assert bindings == [
        "pgd20/PGD.steps = 20",
        "pgd10/PGD.steps = 10",
        "RobustnessEvaluation.attacks = [@FGSM(), @pgd20/PGD(), @pgd10/PGD(), @AutoAttack()]",
    ]
    parse_gin(["train.gin"], [*bindings, "PGD.step_size = 0.01", "Trainer.genotype = 'DARTS_V2'"])
    ball = LinfBall(0.031)
    assert Trainer().evaluation.attacks == (
        FGSM(ball), PGD(ball, steps=20, step_size=0.01), PGD(ball, steps=10, step_size=0.01), AutoAttack(ball),
    )


@pytest.mark.parametrize(
    "shorthand, message",
    [
        ("cw", "unknown attack 'cw' in --attacks; valid attacks: fgsm, pgd<K> (K >= 1 steps, e.g. pgd20), autoattack"),
        ("pgd0", "unknown attack 'pgd0'"),
        (" , ", "--attacks names no attack"),
        ("fgsm,fgsm", "--attacks lists an attack twice"),
    ],
)
def test_bad_shorthands_fail_with_the_valid_names(shorthand: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        attack_bindings(shorthand)
    assert message in str(error.value)


def test_autoattack_takes_only_its_norms_and_a_classifier_objective() -> None:
    class _L1Ball(LinfBall):
        pass

    with pytest.raises(ValueError, match=r"AutoAttack.ball must be a LinfBall or an L2Ball"):
        AutoAttack(_L1Ball(0.1))
    with pytest.raises(TypeError, match=r"AutoAttack.ball must be a NormBall"):
        AutoAttack(0.1)  # type: ignore[arg-type]
    pytest.importorskip("pyautoattack")
    with pytest.raises(TypeError, match=r"AutoAttack attacks a classifier: call it with cross_entropy_objective"):
        AutoAttack()(torch.rand(2, 1, 2, 2), lambda z: z.sum())


def test_a_bad_shorthand_on_the_command_line_exits_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.gin").write_text("")
    assert evaluate_main([f"--run_dir={tmp_path}", "--attacks=fgsm,cw"]) == 2
    err = capsys.readouterr().err
    assert "unknown attack 'cw' in --attacks; valid attacks: fgsm, pgd<K>" in err and err.count("\n") == 1
