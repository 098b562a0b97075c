"""The RNAS objective (paper Eq. 4-5) against an independent float64 computation."""

from __future__ import annotations

from typing import List

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from toy import ToySupernet

from rnasframe import PerturbationConsistency, RobustObjective
from rnasframe.interfaces import Perturbation, PerturbationObjective
from rnasframe.perturbations import LinfBall, PGDMaximizer, UniformSampler
from rnasframe.similarity import KLSimilarity, MSESimilarity


@attrs.define(eq=False)
class Recording(Perturbation):
    """Wraps a perturbation and keeps every ``x'`` it returns."""

    inner: Perturbation
    seen: List[Tensor] = attrs.field(factory=list)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        result = self.inner(x, objective)
        self.seen.append(result.clone())
        return result


def _batch(n: int = 6, features: int = 4, classes: int = 3):
    x = torch.rand(n, 1, 2, features // 2, dtype=torch.float64)
    y = torch.randint(0, classes, (n,))
    return x, y


def _numpy_loss(params: dict, x: np.ndarray, x_pert: np.ndarray, y: np.ndarray, lam: float) -> float:
    """CE(m(x), y) + lam * KL(p(x) || p(x')) written from scratch with NumPy (float64)."""

    def logits(inputs: np.ndarray) -> np.ndarray:
        flat = inputs.reshape(inputs.shape[0], -1)
        a = params["alpha"][0]
        mix = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        hidden = sum(mix[k] * np.tanh(flat @ params[f"ops.{k}.weight"].T + params[f"ops.{k}.bias"]) for k in range(2))
        return hidden @ params["head.weight"].T + params["head.bias"]

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    natural = log_softmax(logits(x))
    perturbed = log_softmax(logits(x_pert))
    ce = -natural[np.arange(len(y)), y].mean()
    kl = (np.exp(natural) * (natural - perturbed)).sum(axis=1).mean()
    return float(ce + lam * kl)


@pytest.mark.parametrize("inner", [UniformSampler(LinfBall(0.1)), PGDMaximizer(LinfBall(0.1), steps=3, step_size=0.04)])
def test_objective_gradient_matches_finite_differences_of_independent_loss(inner: Perturbation) -> None:
    torch.manual_seed(3)
    model = ToySupernet(4, 3)
    x, y = _batch()
    recorder = Recording(inner)
    lam = 0.7
    objective = RobustObjective([PerturbationConsistency(recorder, KLSimilarity(), weight=lam)])
    output = objective(model, x, y)
    output.loss.backward()
    (x_pert,) = recorder.seen
    params = {name: p.detach().numpy().copy() for name, p in model.named_parameters()}
    assert output.loss.item() == pytest.approx(_numpy_loss(params, x.numpy(), x_pert.numpy(), y.numpy(), lam), rel=1e-10)
    step = 1e-6
    for name, parameter in model.named_parameters():
        expected = np.zeros_like(params[name])
        for index in np.ndindex(*params[name].shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += step
            minus[name][index] -= step
            expected[index] = (
                _numpy_loss(plus, x.numpy(), x_pert.numpy(), y.numpy(), lam)
                - _numpy_loss(minus, x.numpy(), x_pert.numpy(), y.numpy(), lam)
            ) / (2 * step)
        np.testing.assert_allclose(parameter.grad.numpy(), expected, rtol=1e-5, atol=1e-8, err_msg=name)


def test_natural_branch_is_not_detached_in_the_outer_loss() -> None:
    torch.manual_seed(0)
    model = ToySupernet(4, 3)
    x, y = _batch()
    torch.manual_seed(1)
    objective = RobustObjective([PerturbationConsistency(UniformSampler(LinfBall(0.2)), MSESimilarity(), weight=1.0)])
    loss = objective(model, x, y).loss
    full = torch.autograd.grad(loss, model.alpha)[0]
    # The same loss with m(x) detached inside f differs: both branches carry gradient.
    torch.manual_seed(1)
    x_pert = UniformSampler(LinfBall(0.2))(x, lambda z: z.sum())
    logits = model(x)
    detached = F.cross_entropy(logits, y) + MSESimilarity()(model(x_pert), logits.detach())
    partial = torch.autograd.grad(detached, model.alpha)[0]
    assert not torch.allclose(full, partial)


def test_zero_weight_and_no_regularizer_are_plain_cross_entropy() -> None:
    model = ToySupernet(4, 3)
    x, y = _batch()
    calls = []

    class Counting(UniformSampler):
        def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:  # type: ignore[override]
            calls.append(1)
            return super().perturb(x, objective)

    for objective in (RobustObjective(), RobustObjective([PerturbationConsistency(Counting(), KLSimilarity(), weight=0.0)])):
        output = objective(model, x, y)
        assert objective.is_plain
        torch.testing.assert_close(output.loss, F.cross_entropy(model(x), y))
        assert set(output.metrics) == {"ce", "natural_acc", "loss"}
    assert calls == []


def test_metrics_report_regularizer_and_perturbed_accuracy() -> None:
    model = ToySupernet(4, 3)
    x, y = _batch()
    objective = RobustObjective([PerturbationConsistency(PGDMaximizer(LinfBall(0.05), steps=2, step_size=0.03), weight=2.0)])
    output = objective(model, x, y)
    m = output.metrics
    assert {"ce", "natural_acc", "loss", "PerturbationConsistency", "PerturbationConsistency/perturbed_acc"} <= set(m)
    torch.testing.assert_close(m["loss"], m["ce"] + 2.0 * m["PerturbationConsistency"])
    assert 0.0 <= float(m["PerturbationConsistency/perturbed_acc"]) <= 1.0


def test_inner_maximization_leaves_no_gradient_in_weights_or_alpha() -> None:
    model = ToySupernet(4, 3)
    x, y = _batch()
    regularizer = PerturbationConsistency(PGDMaximizer(LinfBall(0.05), steps=3, step_size=0.02), weight=1.0)
    logits = model(x)
    regularizer(model, x, y, logits)  # runs PGD, then the perturbed forward; no backward
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: PerturbationConsistency(weight=-1.0), "PerturbationConsistency.weight must be >= 0"),
        (lambda: PerturbationConsistency(perturbation="pgd"), "perturbation"),
        (lambda: RobustObjective(["not a regularizer"]), "RobustObjective.regularizers[0] must be a Regularizer"),
        (
            lambda: RobustObjective([PerturbationConsistency(), PerturbationConsistency()]),
            "several regularizers named",
        ),
    ],
)
def test_bad_objective_configuration_is_rejected_with_the_value(factory, message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as error:
        factory()
    assert message in str(error.value)
