"""FGSMRandomStart: one projected ascent step of alpha * epsilon from a uniform start, in any ball;
its config max_fgsm.gin builds the paper's RNAS-max with it and runs a smoke search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnasframe import PerturbationConsistency, SearchEngine
from rnasframe.config import parse_gin
from rnasframe.interfaces import Perturbation
from rnasframe.perturbations import FGSMRandomStart, L2Ball, LinfBall
from rnasframe.robustness import cross_entropy_objective
from rnasframe.similarity import KLSimilarity
from rnasframe.testing import PerturbationConformance
from rnasframe.testing.strategies import epsilons, images

BALLS = {"Linf": LinfBall, "L2": L2Ball}


class TestFGSMRandomStartLinf(PerturbationConformance):
    bad_hyperparameters = {"alpha": [0, -1.0, 2.5, math.nan, "1.25"], "ball": ["linf"]}

    def make_perturbation(self) -> Perturbation:
        return FGSMRandomStart(ball=LinfBall(epsilon=0.031))


class TestFGSMRandomStartL2(PerturbationConformance):
    bad_hyperparameters = {"alpha": [2.0001, True]}

    def make_perturbation(self) -> Perturbation:
        return FGSMRandomStart(ball=L2Ball(epsilon=0.5), alpha=2.0)


def _model(features: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 3)).to(dtype)


@settings(max_examples=30, deadline=None)
@given(
    x=images(),
    epsilon=epsilons(),
    norm=st.sampled_from(sorted(BALLS)),
    alpha=st.floats(1e-3, 2.0),
)
def test_the_result_stays_in_the_ball_and_the_pixel_range(x: Tensor, epsilon: float, norm: str, alpha: float) -> None:
    model = _model(x[0].numel(), x.dtype)
    y = torch.arange(x.shape[0]) % 3
    x_adv = FGSMRandomStart(BALLS[norm](epsilon=epsilon), alpha)(x, cross_entropy_objective(model, y), model=model)
    delta = (x_adv - x).flatten(1).double()
    distance = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    assert (distance <= epsilon * (1 + 1e-5) + 1e-6).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and x_adv.dtype == x.dtype and x_adv.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.5, 1.25, 2.0])
def test_linf_step_equals_the_hand_computation_from_the_seeded_start(dtype: torch.dtype, alpha: float) -> None:
    epsilon = 0.1
    ball = LinfBall(epsilon=epsilon)
    x = torch.rand(5, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    x[0] = 0.0  # the pixel range binds at both edges
    x[1] = 1.0
    model = _model(x[0].numel(), dtype)
    y = torch.arange(5) % 3
    torch.manual_seed(7)
    x_adv = FGSMRandomStart(ball, alpha)(x, cross_entropy_objective(model, y), model=model)
    torch.manual_seed(7)
    start = ball.sample(x)  # the same draw
    # Independent computation in float64: x0 + alpha*eps*sign(grad), clipped to the box and [0, 1].
    probe = start.double().requires_grad_(True)
    reference = _model(x[0].numel(), torch.float64)
    (gradient,) = torch.autograd.grad(F.cross_entropy(reference(probe), y, reduction="sum"), probe)
    stepped = start.double() + alpha * epsilon * gradient.sign()
    x64 = x.double()
    expected = torch.minimum(torch.maximum(stepped, x64 - epsilon), x64 + epsilon).clamp(0.0, 1.0)
    assert (gradient != 0).float().mean() > 0.5  # the sign is informative, not mostly zero
    torch.testing.assert_close(x_adv.double(), expected, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_the_step_raises_the_objective_over_the_start() -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 1, 4, 4)
    weights = torch.randn(1, 4, 4)

    def objective(z: Tensor) -> Tensor:
        return (z * weights).sum()

    ball = LinfBall(epsilon=0.05)
    torch.manual_seed(3)
    start = ball.sample(x)
    torch.manual_seed(3)
    x_adv = FGSMRandomStart(ball)(x, objective)
    assert objective(x_adv) > objective(start)


@pytest.mark.parametrize(
    ("alpha", "message"),
    [
        (0, "FGSMRandomStart.alpha must be in (0, 2] (the step length in units of the ball's radius), got 0"),
        (-0.5, "FGSMRandomStart.alpha must be in (0, 2]"),
        (2.01, "got 2.01"),
        (math.inf, "FGSMRandomStart.alpha must be finite, got inf"),
    ],
)
def test_alpha_outside_zero_two_is_a_one_line_error(alpha: float, message: str) -> None:
    with pytest.raises(ValueError) as error:
        FGSMRandomStart(alpha=alpha)
    ours = str(error.value).split("\n  In call to configurable")[0]  # gin's suffix is not ours
    assert message in ours and "\n" not in ours


def test_alpha_must_be_a_number() -> None:
    with pytest.raises(TypeError, match=r"FGSMRandomStart.alpha must be a number, got '1'"):
        FGSMRandomStart(alpha="1")  # type: ignore[arg-type]


def test_a_non_scalar_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="FGSMRandomStart: the objective must return a scalar tensor, got \\(2,\\)"):
        FGSMRandomStart()(torch.rand(2, 1, 2, 2), lambda z: z.flatten(1).sum(1))


def test_max_fgsm_gin_is_the_paper_max_config_with_fgsm_random_start() -> None:
    parse_gin(["max_fgsm.gin"])
    engine = SearchEngine()
    assert (engine.epochs, engine.warmup_epochs, engine.batch_size, engine.train_portion) == (50, 15, 64, 0.5)
    (regularizer,) = engine.objective.regularizers
    assert isinstance(regularizer, PerturbationConsistency) and regularizer.weight == 1.0
    assert isinstance(regularizer.similarity, KLSimilarity)
    assert regularizer.perturbation == FGSMRandomStart(ball=LinfBall(epsilon=0.031), alpha=1.25)


def test_a_smoke_search_with_max_fgsm_gin_runs(tmp_path: Path) -> None:
    parse_gin(["max_fgsm.gin", "smoke.gin"], ["SearchEngine.epochs = 1", "SearchEngine.warmup_epochs = 0"])
    engine = SearchEngine()
    assert isinstance(engine.objective.regularizers[0].perturbation, FGSMRandomStart)
    result = engine.run(tmp_path / "run")
    assert result is not None
    assert (tmp_path / "run" / "genotype.json").is_file()
