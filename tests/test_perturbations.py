"""Tests of the threat models (LinfBall, L2Ball) and the perturbations (PGDMaximizer, UniformSampler)."""

from __future__ import annotations

import math
from typing import Callable

import attrs
import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import Tensor, nn

from rnasframe.interfaces import NormBall, Perturbation
from rnasframe.perturbations import L2Ball, LinfBall, PGDMaximizer, UniformSampler
from rnasframe.similarity import KLSimilarity

TOL = 1e-6
FAST = settings(max_examples=60, deadline=None)

# ----------------------------------------------------------------------------- strategies

shapes = st.tuples(
    st.integers(1, 4),  # batch
    st.integers(1, 3),  # channels
    st.integers(1, 4),  # height
    st.integers(1, 4),  # width
)
epsilons = st.one_of(st.just(0.0), st.floats(0.0, 1.5, allow_nan=False, allow_infinity=False))
ball_kinds = st.sampled_from([LinfBall, L2Ball])


def pixel_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=st.floats(0.0, 1.0, width=32))


def free_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=st.floats(-2.0, 3.0, width=32))


@st.composite
def ball_and_points(draw: st.DrawFn) -> tuple[NormBall, Tensor, Tensor]:
    """A ball, a natural batch x in [0, 1] and an arbitrary candidate batch of the same shape."""
    shape = draw(shapes)
    ball = draw(ball_kinds)(epsilon=draw(epsilons))
    x = torch.from_numpy(draw(pixel_arrays(shape)))
    candidate = torch.from_numpy(draw(free_arrays(shape)))
    return ball, x, candidate


def distances(ball: NormBall, a: Tensor, b: Tensor) -> Tensor:
    """Per-example distance between a and b in the ball's norm."""
    diff = (a - b).reshape(a.shape[0], -1).double()
    if isinstance(ball, LinfBall):
        return diff.abs().amax(dim=1)
    return diff.norm(dim=1)


def assert_in_ball_and_box(ball: NormBall, x_perturbed: Tensor, x: Tensor) -> None:
    assert x_perturbed.shape == x.shape
    assert x_perturbed.dtype == x.dtype
    assert float(x_perturbed.min()) >= 0.0 and float(x_perturbed.max()) <= 1.0
    assert bool((distances(ball, x_perturbed, x) <= ball.epsilon + TOL).all())


# ----------------------------------------------------------------------------- balls


@FAST
@given(ball_and_points())
def test_projection_lands_in_ball_and_box(case: tuple[NormBall, Tensor, Tensor]) -> None:
    ball, x, candidate = case
    assert_in_ball_and_box(ball, ball.project(candidate, x), x)


@FAST
@given(ball_and_points())
def test_projection_is_idempotent(case: tuple[NormBall, Tensor, Tensor]) -> None:
    ball, x, candidate = case
    once = ball.project(candidate, x)
    twice = ball.project(once, x)
    torch.testing.assert_close(twice, once, atol=TOL, rtol=0.0)


@FAST
@given(ball_and_points(), st.floats(0.0, 1.0))
def test_projection_leaves_points_inside_unchanged(
    case: tuple[NormBall, Tensor, Tensor], shrink: float
) -> None:
    ball, x, candidate = case
    # A point strictly inside ball ∩ [0, 1]: shrink a projected point towards x.
    inside = x + shrink * 0.999 * (ball.project(candidate, x) - x)
    assert torch.equal(ball.project(inside, x), inside)


@FAST
@given(ball_and_points())
def test_projection_does_not_modify_its_arguments(case: tuple[NormBall, Tensor, Tensor]) -> None:
    ball, x, candidate = case
    x_copy, candidate_copy = x.clone(), candidate.clone()
    ball.project(candidate, x)
    assert torch.equal(x, x_copy) and torch.equal(candidate, candidate_copy)


def test_linf_projection_is_the_exact_box_projection() -> None:
    ball = LinfBall(epsilon=0.1)
    x = torch.tensor([[0.0, 0.5, 0.95, 0.5]])
    candidate = torch.tensor([[-0.3, 0.9, 1.4, 0.52]])
    expected = torch.tensor([[0.0, 0.6, 1.0, 0.52]])
    torch.testing.assert_close(ball.project(candidate, x), expected)


def test_l2_projection_rescales_long_deltas_to_the_sphere() -> None:
    ball = L2Ball(epsilon=0.1)
    x = torch.full((2, 4), 0.5)
    candidate = x + torch.tensor([[0.3, 0.4, 0.0, 0.0], [0.01, 0.0, 0.0, 0.0]])
    projected = ball.project(candidate, x)
    torch.testing.assert_close(projected[0], x[0] + torch.tensor([0.06, 0.08, 0.0, 0.0]))
    assert torch.equal(projected[1], candidate[1])


@FAST
@given(shapes, ball_kinds, epsilons, st.data())
def test_sample_lands_in_ball_and_box(
    shape: tuple[int, ...], kind: type, epsilon: float, data: st.DataObject
) -> None:
    ball = kind(epsilon=epsilon)
    x = torch.from_numpy(data.draw(pixel_arrays(shape)))
    x_copy = x.clone()
    sample = ball.sample(x)
    assert_in_ball_and_box(ball, sample, x)
    assert torch.equal(x, x_copy)
    if epsilon == 0.0:
        assert torch.equal(sample, x)


@pytest.mark.parametrize("kind", [LinfBall, L2Ball])
def test_sample_keeps_dtype_and_follows_the_global_seed(kind: type) -> None:
    ball = kind(epsilon=0.1)
    x = torch.full((3, 2, 4, 4), 0.5, dtype=torch.float64)
    torch.manual_seed(123)
    first = ball.sample(x)
    torch.manual_seed(123)
    second = ball.sample(x)
    assert first.dtype == torch.float64
    assert torch.equal(first, second)
    assert not torch.equal(first, ball.sample(x))


def test_linf_sample_is_uniform_per_element() -> None:
    epsilon = 0.2
    x = torch.full((4000, 5), 0.5)
    delta = LinfBall(epsilon=epsilon).sample(x) - x
    assert abs(float(delta.mean())) < 0.005
    # Var of U(-e, e) is e^2 / 3.
    assert float(delta.var()) == pytest.approx(epsilon**2 / 3, rel=0.03)
    assert float(delta.abs().max()) > 0.99 * epsilon


@pytest.mark.parametrize("dims", [1, 2, 3, 5])
def test_l2_sample_is_uniform_in_the_volume_not_on_the_surface(dims: int) -> None:
    epsilon = 0.4
    count = 20000
    x = torch.full((count, dims), 0.5, dtype=torch.float64)  # the ball never reaches the box faces
    delta = L2Ball(epsilon=epsilon).sample(x) - x
    radius = delta.norm(dim=1)
    # Radius of a uniform point in a d-ball: epsilon * U^(1/d), mean epsilon * d / (d + 1).
    assert float(radius.mean()) == pytest.approx(epsilon * dims / (dims + 1), rel=0.02)
    assert float((radius <= epsilon / 2).double().mean()) == pytest.approx(0.5**dims, abs=0.015)
    assert float(radius.max()) <= epsilon + 1e-12
    # Directions are isotropic.
    assert float(delta.mean(dim=0).abs().max()) < 0.01


def test_ascent_steps() -> None:
    x = torch.tensor([[0.5, 0.5, 0.5]])
    gradient = torch.tensor([[3.0, -0.1, 0.0]])
    torch.testing.assert_close(
        LinfBall().ascent_step(x, gradient, 0.1), torch.tensor([[0.6, 0.4, 0.5]])
    )
    l2 = L2Ball().ascent_step(x, torch.tensor([[3.0, -4.0, 0.0]]), 0.5)
    torch.testing.assert_close(l2, torch.tensor([[0.8, 0.1, 0.5]]))
    # A zero gradient does not move the point (and produces no NaN).
    batch = torch.full((2, 3), 0.5)
    zero_and_not = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    moved = L2Ball().ascent_step(batch, zero_and_not, 0.1)
    torch.testing.assert_close(moved, torch.tensor([[0.5, 0.5, 0.5], [0.6, 0.5, 0.5]]))


# ----------------------------------------------------------------------------- samplers


def linear_objective(shape: tuple[int, ...], seed: int = 0) -> Callable[[Tensor], Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(shape[1:], generator=generator)
    return lambda z: (z * weights).sum()


def all_samplers(ball: NormBall) -> list[Perturbation]:
    step = max(ball.epsilon / 4, 1e-3)
    return [
        UniformSampler(ball=ball),
        PGDMaximizer(ball=ball, steps=3, step_size=step),
        PGDMaximizer(ball=ball, steps=2, step_size=step, random_start=False),
    ]


@settings(max_examples=40, deadline=None)
@given(shapes, ball_kinds, epsilons, st.data())
def test_every_sampler_stays_in_ball_and_box(
    shape: tuple[int, ...], kind: type, epsilon: float, data: st.DataObject
) -> None:
    ball = kind(epsilon=epsilon)
    x = torch.from_numpy(data.draw(pixel_arrays(shape))).requires_grad_(True)
    x_copy = x.detach().clone()
    objective = linear_objective(shape)
    for sampler in all_samplers(ball):
        x_perturbed = sampler(x, objective)
        assert_in_ball_and_box(ball, x_perturbed, x.detach())
        assert not x_perturbed.requires_grad and x_perturbed.grad_fn is None
        assert torch.equal(x.detach(), x_copy)
        assert x.grad is None
        if epsilon == 0.0:
            assert torch.equal(x_perturbed, x_copy)


def test_uniform_sampler_never_calls_the_objective() -> None:
    def objective(z: Tensor) -> Tensor:
        raise AssertionError("UniformSampler must not call the objective")

    x = torch.rand(2, 3, 4, 4)
    UniformSampler(ball=L2Ball(epsilon=0.3))(x, objective)


def test_sampler_rejects_pixels_outside_the_unit_range() -> None:
    objective = linear_objective((1, 3, 2, 2))
    for sampler in all_samplers(LinfBall()):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            sampler(torch.full((1, 3, 2, 2), 1.5), objective)
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            sampler(torch.full((1, 3, 2, 2), -0.2), objective)


def test_pgd_rejects_a_non_scalar_objective() -> None:
    with pytest.raises(ValueError, match="scalar"):
        PGDMaximizer(steps=1)(torch.rand(2, 3), lambda z: z.sum(dim=1))


class SmallNet(nn.Module):
    """A fixed conv net with BatchNorm (3x8x8 inputs, 5 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(h.flatten(1))


def make_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()


def kl_objective(model: nn.Module, x: Tensor) -> Callable[[Tensor], Tensor]:
    kl = KLSimilarity()
    with torch.no_grad():
        natural = model(x)
    return lambda z: kl(model(z), natural)


@pytest.mark.parametrize(
    "ball, step_size", [(LinfBall(epsilon=8 / 255), 2 / 255), (L2Ball(epsilon=0.5), 0.125)]
)
def test_pgd_increases_the_objective_beyond_random_noise(ball: NormBall, step_size: float) -> None:
    model = make_net().eval()
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    objective = kl_objective(model, x)
    torch.manual_seed(2)
    x_uniform = UniformSampler(ball=ball)(x, objective, model)
    torch.manual_seed(2)
    x_pgd = PGDMaximizer(ball=ball, steps=10, step_size=step_size)(x, objective, model)
    with torch.no_grad():
        f_uniform, f_pgd = float(objective(x_uniform)), float(objective(x_pgd))
    assert f_pgd > 0.0
    assert f_pgd > 10.0 * f_uniform
    # More steps do not hurt on this smooth problem.
    torch.manual_seed(2)
    x_one = PGDMaximizer(ball=ball, steps=1, step_size=step_size)(x, objective, model)
    with torch.no_grad():
        assert f_pgd > float(objective(x_one))


def test_pgd_with_one_step_equals_fgsm() -> None:
    model = make_net().eval()
    x = torch.rand(6, 3, 8, 8)
    labels = torch.arange(6) % 5
    epsilon = 0.03

    def objective(z: Tensor) -> Tensor:
        return F.cross_entropy(model(z), labels)

    # Independent FGSM computation.
    leaf = x.clone().requires_grad_(True)
    F.cross_entropy(model(leaf), labels).backward()
    expected = (x + epsilon * leaf.grad.sign()).clamp(0.0, 1.0)
    model.zero_grad(set_to_none=True)

    pgd = PGDMaximizer(ball=LinfBall(epsilon=epsilon), steps=1, step_size=epsilon, random_start=False)
    torch.testing.assert_close(pgd(x, objective, model), expected, atol=1e-7, rtol=0.0)


@pytest.mark.parametrize("kind", [LinfBall, L2Ball])
def test_zero_epsilon_pgd_returns_x(kind: type) -> None:
    model = make_net().eval()
    x = torch.rand(2, 3, 8, 8)
    x_pgd = PGDMaximizer(ball=kind(epsilon=0.0), steps=3, step_size=0.1)(
        x, kl_objective(model, x), model
    )
    assert torch.equal(x_pgd, x)


def test_pgd_differentiates_a_fresh_leaf_each_step() -> None:
    # The objective sees a fresh leaf each step; nothing leaks into x or its graph.
    x = torch.rand(3, 4, requires_grad=True)
    seen: list[Tensor] = []

    def objective(z: Tensor) -> Tensor:
        seen.append(z)
        assert z.is_leaf and z.requires_grad
        return (z**2).sum()

    PGDMaximizer(steps=3, step_size=0.01)(x, objective)
    assert len(seen) == 3
    assert len({id(z) for z in seen}) == 3
    assert x.grad is None


# ----------------------------------------------------------------------------- model guard


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "flags": [p.requires_grad for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "buffers": [b.clone() for b in model.buffers()],
        "params": [p.detach().clone() for p in model.parameters()],
    }


def assert_restored(model: nn.Module, before: dict[str, object]) -> None:
    after = snapshot(model)
    assert all(p.grad is None for p in model.parameters())
    assert after["flags"] == before["flags"]
    assert after["modes"] == before["modes"]
    for a, b in zip(after["buffers"], before["buffers"]):  # type: ignore[arg-type]
        assert torch.equal(a, b)
    for a, b in zip(after["params"], before["params"]):  # type: ignore[arg-type]
        assert torch.equal(a, b)


def guarded_net() -> SmallNet:
    model = make_net().train()
    model.head.bias.requires_grad_(False)  # frozen beforehand: must stay frozen
    model.head.eval()  # a mixed-mode model: every submodule's mode must come back
    return model


@pytest.mark.parametrize("ball", [LinfBall(), L2Ball()])
def test_pgd_leaves_the_model_untouched(ball: NormBall) -> None:
    model = guarded_net()
    x = torch.rand(4, 3, 8, 8)
    seen_flags: list[bool] = []
    kl = KLSimilarity()
    natural = model(x).detach()  # train mode: updates BN statistics, like the outer loss would
    before = snapshot(model)

    def objective(z: Tensor) -> Tensor:
        seen_flags.extend(p.requires_grad for p in model.parameters())
        return kl(model(z), natural)

    x_pgd = PGDMaximizer(ball=ball, steps=3, step_size=0.01)(x, objective, model)
    assert_restored(model, before)
    assert not any(seen_flags), "parameters must not require gradients during the ascent"
    assert bool(model.training) and not model.head.training
    assert not torch.equal(x_pgd, x)


def test_model_is_restored_when_the_objective_raises() -> None:
    model = guarded_net()
    x = torch.rand(4, 3, 8, 8)
    before = snapshot(model)
    calls = []

    def objective(z: Tensor) -> Tensor:
        calls.append(1)
        model(z)  # train-mode pass: changes the BN running statistics
        model.eval()  # and a mode switch inside the objective
        if len(calls) == 2:
            raise RuntimeError("boom")
        return model(z).sum()

    with pytest.raises(RuntimeError, match="boom"):
        PGDMaximizer(steps=5)(x, objective, model)
    assert len(calls) == 2
    assert_restored(model, before)


# ----------------------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    "make, error, fragments",
    [
        (lambda: LinfBall(epsilon=-1), ValueError, ["LinfBall.epsilon", "-1"]),
        (lambda: LinfBall(epsilon=-0.1), ValueError, ["LinfBall.epsilon must be >= 0", "-0.1"]),
        (lambda: L2Ball(epsilon=-0.5), ValueError, ["L2Ball.epsilon", "-0.5"]),
        (lambda: LinfBall(epsilon=float("nan")), ValueError, ["LinfBall.epsilon", "nan"]),
        (lambda: LinfBall(epsilon="0.1"), TypeError, ["LinfBall.epsilon", "'0.1'"]),
        (lambda: PGDMaximizer(steps=0), ValueError, ["PGDMaximizer.steps", "0"]),
        (lambda: PGDMaximizer(steps=1.5), TypeError, ["PGDMaximizer.steps", "1.5"]),
        (lambda: PGDMaximizer(step_size=0), ValueError, ["PGDMaximizer.step_size", "0"]),
        (lambda: PGDMaximizer(step_size=-0.1), ValueError, ["PGDMaximizer.step_size", "-0.1"]),
        (lambda: PGDMaximizer(random_start=1), TypeError, ["PGDMaximizer.random_start", "1"]),
        (lambda: PGDMaximizer(ball=0.1), TypeError, ["PGDMaximizer.ball", "0.1"]),
        (lambda: UniformSampler(ball="linf"), TypeError, ["UniformSampler.ball", "'linf'"]),
    ],
)
def test_bad_hyperparameters_raise_with_field_and_value(
    make: Callable[[], object], error: type, fragments: list[str]
) -> None:
    with pytest.raises(error) as info:
        make()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_defaults_and_immutability() -> None:
    pgd = PGDMaximizer()
    assert pgd.ball == LinfBall(epsilon=0.031)
    assert (pgd.steps, pgd.step_size, pgd.random_start) == (10, 0.003, True)
    assert L2Ball().epsilon == 0.5
    assert UniformSampler().ball == LinfBall()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pgd.steps = 3  # type: ignore[misc]
    assert hash(pgd) == hash(PGDMaximizer())


def test_gin_configuration() -> None:
    gin.parse_config(
        """
        L2Ball.epsilon = 0.25
        PGDMaximizer.ball = @L2Ball()
        PGDMaximizer.steps = 7
        UniformSampler.ball = @LinfBall()
        LinfBall.epsilon = 0.1
        """
    )
    pgd = PGDMaximizer()
    assert pgd.ball == L2Ball(epsilon=0.25) and pgd.steps == 7
    assert UniformSampler().ball == LinfBall(epsilon=0.1)


def test_works_in_float64_and_keeps_dtype() -> None:
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    weights = torch.randn(3, 4, 4, dtype=torch.float64)
    for sampler in all_samplers(L2Ball(epsilon=0.2)) + all_samplers(LinfBall(epsilon=0.05)):
        out = sampler(x, lambda z: (z * weights).sum())
        assert out.dtype == torch.float64
        assert_in_ball_and_box(sampler.ball, out, x)  # type: ignore[attr-defined]
    assert math.isfinite(float(out.sum()))
