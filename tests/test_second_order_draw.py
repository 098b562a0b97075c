"""Second-order DARTS with a random perturbation: one draw per architecture step.

Every evaluation of the objective inside one unrolled architecture gradient starts from the same
state of torch's random generators (:class:`rnasframe.bilevel.SharedDraw`), so the finite
difference at ``w+`` and ``w-`` differentiates the objective at one fixed ``x'`` instead of
subtracting two independent draws. Checked against exact autograd through the unrolled step at
that fixed ``x'`` (float64 toy supernet).
"""

from __future__ import annotations

import copy
from typing import Callable, Dict, Tuple

import pytest
import torch
from torch import Tensor, nn
from toy import ToySupernet

from rnasframe import (
    ArchOptimizerSettings,
    PerturbationConsistency,
    RobustObjective,
    SecondOrderDarts,
    WeightOptimizerSettings,
)
from rnasframe.bilevel import SharedDraw
from rnasframe.perturbations import LinfBall, PGDMaximizer, UniformSampler

XI, DECAY = 0.05, 3e-4

Batch = Tuple[Tensor, Tensor]


def _batches() -> Tuple[Batch, Batch]:
    generator = torch.Generator().manual_seed(0)

    def make() -> Batch:
        x = torch.rand(8, 1, 2, 2, dtype=torch.float64, generator=generator)
        return x, torch.randint(0, 3, (8,), generator=generator)

    return make(), make()


OBJECTIVES: Dict[str, Callable[[], RobustObjective]] = {
    "uniform": lambda: RobustObjective(
        regularizers=(PerturbationConsistency(perturbation=UniformSampler(LinfBall(0.3))),)
    ),
    "pgd": lambda: RobustObjective(
        regularizers=(
            PerturbationConsistency(
                perturbation=PGDMaximizer(LinfBall(0.3), steps=3, step_size=0.1, random_start=True)
            ),
        )
    ),
}


class _Unrolled(nn.Module):
    """``base`` evaluated at the parameter tensors ``values`` (which may carry a graph)."""

    def __init__(self, base: nn.Module, values: Dict[str, Tensor]) -> None:
        super().__init__()
        self.base = base
        self.values = values

    def forward(self, x: Tensor) -> Tensor:
        return torch.func.functional_call(self.base, self.values, (x,))


def _optimizer(model: ToySupernet) -> SecondOrderDarts:
    settings = WeightOptimizerSettings(learning_rate=XI, min_learning_rate=XI, momentum=0.9, weight_decay=DECAY)
    optimizer = SecondOrderDarts(
        weights=settings, arch=ArchOptimizerSettings(learning_rate=1.0, betas=(0.0, 0.0), weight_decay=0.0)
    )
    optimizer.setup(model, epochs=1)
    return optimizer


def _second_order_gradient(model: ToySupernet, objective: RobustObjective, seed: int) -> Tensor:
    """The architecture gradient that :class:`SecondOrderDarts` hands to Adam, after ``manual_seed(seed)``."""
    optimizer = _optimizer(model)
    captured: Dict[str, Tensor] = {}
    adam = optimizer._arch_optimizer
    assert adam is not None
    original_step = adam.step

    def capture_step(*args: object, **kwargs: object) -> object:
        assert model.alpha.grad is not None
        captured["grad"] = model.alpha.grad.detach().clone()
        return original_step(*args, **kwargs)

    adam.step = capture_step  # type: ignore[method-assign]
    train, valid = _batches()
    torch.manual_seed(seed)
    optimizer._arch_step(model, objective, train, valid)
    return captured["grad"]


def _exact_gradient(model: ToySupernet, objective: RobustObjective, seed: int) -> Tensor:
    """``d/d alpha L_val(w - xi (grad_w L_train(w, alpha) + decay w), alpha)`` at the draw of ``seed``.

    Both losses are evaluated from the generators' state after ``manual_seed(seed)`` (the one
    draw), through autograd; ``x'`` is a constant of the graph (the regularizer detaches it).
    """
    torch.manual_seed(seed)
    draw = SharedDraw.capture()
    train, valid = _batches()
    names = [name for name, _ in model.named_parameters() if name != "alpha"]
    weights = [dict(model.named_parameters())[name] for name in names]
    with draw.replay():
        train_loss = objective(model, *train).loss
    grads = torch.autograd.grad(train_loss, weights, create_graph=True)
    unrolled: Dict[str, Tensor] = {n: w - XI * (g + DECAY * w) for n, w, g in zip(names, weights, grads)}
    unrolled["alpha"] = model.alpha
    with draw.replay():
        valid_loss = objective(_Unrolled(model, unrolled), *valid).loss
    return torch.autograd.grad(valid_loss, model.alpha)[0]


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_random_perturbation_matches_exact_unrolled_gradient(name: str) -> None:
    """Finite difference at one draw == exact autograd at that fixed ``x'``.

    The central difference has error ``O(r^2)`` in the third derivatives of the training loss,
    with ``r = 0.01 / ||v||``: about ``1e-6`` relative here, hence ``rtol=1e-4`` (the same bound
    as the deterministic test). With two independent draws at ``w+`` and ``w-`` the difference
    of the noise terms, divided by ``2 r``, is of the order of the gradient itself.
    """
    torch.manual_seed(1)
    model = ToySupernet(4, 3)
    exact = _exact_gradient(copy.deepcopy(model), OBJECTIVES[name](), seed=7)
    second_order = _second_order_gradient(model, OBJECTIVES[name](), seed=7)
    torch.testing.assert_close(second_order, exact, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_same_seed_same_gradient_bit_for_bit(name: str) -> None:
    torch.manual_seed(1)
    model = ToySupernet(4, 3)
    first = _second_order_gradient(copy.deepcopy(model), OBJECTIVES[name](), seed=3)
    second = _second_order_gradient(copy.deepcopy(model), OBJECTIVES[name](), seed=3)
    assert torch.equal(first, second)
    other = _second_order_gradient(copy.deepcopy(model), OBJECTIVES[name](), seed=4)
    assert not torch.equal(first, other)


def test_generators_advance_as_after_one_evaluation() -> None:
    """After the step the generators stand where one evaluation of the objective leaves them."""
    torch.manual_seed(1)
    model = ToySupernet(4, 3)
    objective = OBJECTIVES["uniform"]()
    train, _ = _batches()
    torch.manual_seed(5)
    objective(copy.deepcopy(model), *train)
    expected = torch.rand(3)
    _second_order_gradient(model, objective, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_replay_restores_the_state_outside() -> None:
    """Each block starts from the captured state; outside, the generators go on undisturbed."""
    torch.manual_seed(0)
    draw = SharedDraw.capture()
    first = torch.rand(4)
    with draw.replay():
        again = torch.rand(4)
        torch.rand(100)
    after = torch.rand(2)
    torch.manual_seed(0)
    expected = torch.rand(6)
    assert torch.equal(first, again)
    assert torch.equal(torch.cat([first, after]), expected)
