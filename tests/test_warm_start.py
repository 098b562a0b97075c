"""WarmStartPGD and the example indices it needs: K' ascent steps per visit from each training example's
stored perturbation, a store written only at the batch's indices, kept bit-exactly across a resume;
indices from the loader through the objective; max_warm.gin runs a smoke search."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine, SecondOrderDarts
from rnasframe.checkpoint import SearchCheckpoint
from rnasframe.config import parse_gin
from rnasframe.data import BatchLoader, LabeledImages
from rnasframe.interfaces import (
    NormBall,
    Perturbation,
    PerturbationObjective,
    Regularizer,
    RegularizerOutput,
    read_only_stores,
)
from rnasframe.perturbations import L2Ball, LinfBall, PGDMaximizer, WarmStartPGD
from rnasframe.similarity import KLSimilarity
from rnasframe.testing import PerturbationConformance, check_perturbation
from rnasframe.testing.strategies import epsilons
from tests.test_mid_epoch import Stopping, toy_engine
from tests.toy import ToySupernet

BALLS = {"Linf": LinfBall, "L2": L2Ball}


# ----------------------------------------------------------------------------- conformance


class TestWarmStartPGDLinf(PerturbationConformance):
    """Unbound and called without an index (as the kit calls it): K'-step PGD from a random start."""

    bad_hyperparameters = {"steps": [0, -1, 1.5], "alpha": [0, -1.0, 2.5, math.nan], "ball": ["linf"]}

    def make_perturbation(self) -> Perturbation:
        return WarmStartPGD(ball=LinfBall(epsilon=0.031))


class TestWarmStartPGDL2(PerturbationConformance):
    bad_hyperparameters = {"steps": [True], "alpha": [2.0001]}

    def make_perturbation(self) -> Perturbation:
        return WarmStartPGD(ball=L2Ball(epsilon=0.5), steps=2, alpha=0.5)


class _FromAKnownStore(Perturbation):
    """Calls a bound WarmStartPGD with ``index = 0..n-1`` from a store set afresh on every call.

    Every even example was visited before (its stored delta is fixed noise of about epsilon, so the
    start is projected), every odd one was not (uniform start): the kit sees both branches of the
    indexed path, and repeated calls from one seed agree.
    """

    def __init__(self, warm: WarmStartPGD) -> None:
        self.warm = warm
        self.ball = warm.ball

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        n = x.shape[0]
        noise = torch.rand((n + 2, *x.shape[1:]), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        delta = ((2 * noise - 1) * 1.5 * self.ball.epsilon).to(x.dtype)
        visited = torch.arange(n + 2) % 2 == 0
        self.warm.bind_examples(n + 2, "kit")
        self.warm.load_state_dict({"count": n + 2, "key": "kit", "delta": delta, "visited": visited})
        return self.warm.perturb(x, objective, index=torch.arange(n))


@pytest.mark.parametrize("ball", [LinfBall(epsilon=0.05), L2Ball(epsilon=0.4)], ids=["Linf", "L2"])
def test_the_indexed_path_passes_the_conformance_kit(ball: NormBall) -> None:
    check_perturbation(lambda: _FromAKnownStore(WarmStartPGD(ball=ball, steps=2)))


# ----------------------------------------------------------------------------- the store


def _linear(weights: Tensor) -> PerturbationObjective:
    return lambda z: (z * weights).sum()


def test_the_store_changes_only_at_the_batch_indices() -> None:
    torch.manual_seed(0)
    warm = WarmStartPGD(ball=LinfBall(epsilon=0.1))
    warm.bind_examples(20, "split")
    weights = torch.randn(1, 3, 3)
    x = torch.rand(3, 1, 3, 3)
    first = warm(x, _linear(weights), index=torch.tensor([3, 7, 11]))
    state = warm.state_dict()
    assert state["visited"].nonzero().flatten().tolist() == [3, 7, 11]
    assert torch.equal(state["delta"][[3, 7, 11]], first - x)
    others = [i for i in range(20) if i not in (3, 7, 11)]
    assert not state["delta"][others].any()
    kept = state["delta"][[3, 7, 11]].clone()
    x2 = torch.rand(2, 1, 3, 3)
    second = warm(x2, _linear(weights), index=torch.tensor([0, 19]))
    state = warm.state_dict()
    assert state["visited"].nonzero().flatten().tolist() == [0, 3, 7, 11, 19]
    assert torch.equal(state["delta"][[3, 7, 11]], kept)
    assert torch.equal(state["delta"][[0, 19]], second - x2)


def test_inside_read_only_stores_the_store_is_read_but_not_written() -> None:
    warm = WarmStartPGD(ball=LinfBall(epsilon=0.1))
    warm.bind_examples(4, "split")
    x = torch.rand(2, 1, 2, 2)
    weights = torch.randn(1, 2, 2)
    warm(x, _linear(weights), index=torch.tensor([0, 1]))
    before = {k: v.clone() for k, v in warm.state_dict().items() if isinstance(v, Tensor)}
    with read_only_stores():
        warm(x, _linear(weights), index=torch.tensor([0, 2]))
    after = warm.state_dict()
    assert torch.equal(after["delta"], before["delta"]) and torch.equal(after["visited"], before["visited"])


@pytest.mark.parametrize("alpha", [0.25, 1.0, 2.0])
def test_one_linf_step_from_a_stored_delta_equals_the_hand_computation(alpha: float) -> None:
    epsilon = 0.1
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(5, 2, 3, 3, generator=generator, dtype=torch.float64)
    x[0] = 0.0  # the pixel range binds at both edges
    x[1] = 1.0
    stored = (2 * torch.rand(x.shape, generator=generator, dtype=torch.float64) - 1) * epsilon
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(18, 3)).double()
    y = torch.arange(5) % 3
    warm = WarmStartPGD(ball=LinfBall(epsilon=epsilon), steps=1, alpha=alpha)
    warm.bind_examples(8, "split")
    index = torch.tensor([6, 0, 2, 5, 1])
    delta = torch.zeros(8, 2, 3, 3, dtype=torch.float64)
    delta[index] = stored
    warm.load_state_dict({"count": 8, "key": "split", "delta": delta, "visited": torch.ones(8, dtype=torch.bool)})
    x_adv = warm(x, lambda z: F.cross_entropy(model(z), y), model=model, index=index)
    # Independent computation: start = clip(x + stored), one signed step of alpha * eps, clip again.
    start = torch.minimum(torch.maximum(x + stored, x - epsilon), x + epsilon).clamp(0.0, 1.0)
    probe = start.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(probe), y, reduction="sum"), probe)
    assert (gradient != 0).float().mean() > 0.5
    stepped = start + alpha * epsilon * gradient.sign()
    expected = torch.minimum(torch.maximum(stepped, x - epsilon), x + epsilon).clamp(0.0, 1.0)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(warm.state_dict()["delta"][index], expected - x, rtol=0, atol=1e-12)


def test_one_l2_step_from_a_stored_delta_equals_the_hand_computation() -> None:
    epsilon, alpha = 0.3, 0.8
    generator = torch.Generator().manual_seed(2)
    x = 0.3 + 0.4 * torch.rand(3, 1, 4, 4, generator=generator, dtype=torch.float64)  # the box never binds
    stored = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    stored = stored * (0.2 / stored.flatten(1).norm(dim=1)).view(3, 1, 1, 1)  # inside: ||stored|| = 0.2
    weights = torch.randn(1, 4, 4, generator=generator, dtype=torch.float64)
    warm = WarmStartPGD(ball=L2Ball(epsilon=epsilon), alpha=alpha)
    warm.bind_examples(3, "split")
    warm.load_state_dict({"count": 3, "key": "split", "delta": stored, "visited": torch.ones(3, dtype=torch.bool)})
    x_adv = warm(x, _linear(weights), index=torch.arange(3))
    # The gradient of <z, w> is w: step alpha * eps along w / ||w||, then shrink to norm eps.
    moved = stored + alpha * epsilon * weights / weights.norm()
    norms = moved.flatten(1).norm(dim=1).view(3, 1, 1, 1)
    expected = x + moved * torch.clamp(epsilon / norms, max=1.0)
    torch.testing.assert_close(x_adv, expected, rtol=0, atol=1e-12)


def test_a_first_visit_starts_uniformly_in_the_ball_not_at_x() -> None:
    epsilon = 0.1
    x = torch.full((2, 1, 3, 3), 0.5, dtype=torch.float64)
    warm = WarmStartPGD(ball=LinfBall(epsilon=epsilon), alpha=0.5)
    warm.bind_examples(2, "split")
    weights = torch.ones(1, 3, 3, dtype=torch.float64)
    torch.manual_seed(3)
    x_adv = warm(x, _linear(weights), index=torch.arange(2))
    torch.manual_seed(3)
    start = LinfBall(epsilon=epsilon).sample(x)
    torch.testing.assert_close(x_adv, (start + 0.05).clamp(max=0.6), rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    epsilon=epsilons(max_value=0.5),
    norm=st.sampled_from(sorted(BALLS)),
    steps=st.integers(1, 3),
    alpha=st.floats(1e-3, 2.0),
    visits=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_every_stored_delta_stays_inside_the_ball_and_the_pixel_range(
    epsilon: float, norm: str, steps: int, alpha: float, visits: List[List[int]], seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(6, 2, 3, 3, generator=generator)  # one image per example; each visit sees it afresh
    weights = torch.randn(2, 3, 3, generator=generator)
    warm = WarmStartPGD(ball=BALLS[norm](epsilon=epsilon), steps=steps, alpha=alpha)
    warm.bind_examples(6, "split")
    for visit in visits:
        index = torch.tensor(visit)
        weights = -weights  # the objective changes between visits, as the network does
        warm(images[index], _linear(weights), index=index)
    state = warm.state_dict()
    seen = sorted({i for visit in visits for i in visit})
    assert state["visited"].nonzero().flatten().tolist() == seen
    delta = state["delta"].flatten(1).double()
    distance = delta.abs().amax(dim=1) if norm == "Linf" else delta.norm(dim=1)
    assert (distance <= epsilon * (1 + 1e-5) + 1e-6).all()
    perturbed = images + state["delta"]
    assert perturbed.min() >= -1e-6 and perturbed.max() <= 1 + 1e-6


# ----------------------------------------------------------------------------- bad input


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value).split("\n  In call to configurable")[0]
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "WarmStartPGD.steps must be an integer >= 1, got 0"),
        ("alpha", 0.0, "WarmStartPGD.alpha must be in (0, 2] (the step length in units of the ball's radius), got 0.0"),
        ("alpha", -0.5, "got -0.5"),
        ("alpha", 2.5, "got 2.5"),
    ],
)
def test_bad_hyperparameters_are_one_line_errors(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as error:
        WarmStartPGD(**{field: value})
    assert message in _one_line(error)


def test_a_saved_store_of_another_size_is_a_one_line_error_naming_both_sizes() -> None:
    warm = WarmStartPGD()
    warm.bind_examples(20, "split")
    state = {"count": 10, "key": "split", "delta": torch.zeros(10, 1, 2, 2), "visited": torch.zeros(10, dtype=torch.bool)}
    with pytest.raises(ValueError) as error:
        warm.load_state_dict(state)
    assert _one_line(error) == "WarmStartPGD: the saved store holds 10 examples, but the search data has 20"
    with pytest.raises(ValueError, match="belongs to split other, the search uses split split"):
        warm.load_state_dict({**state, "count": 20, "key": "other"})
    with pytest.raises(ValueError, match="holds 10 perturbations but says 20 examples"):
        warm.load_state_dict({**state, "count": 20})


def test_missing_wrong_or_out_of_range_indices_are_one_line_errors() -> None:
    x = torch.rand(3, 1, 2, 2)
    objective = _linear(torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match=r"bound to no data: call bind_examples\(count, key\) first"):
        WarmStartPGD()(x, objective, index=torch.arange(3))
    warm = WarmStartPGD()
    warm.bind_examples(5, "split")
    with pytest.raises(ValueError) as error:
        warm(x, objective)
    assert "WarmStartPGD is bound to 5 examples but was called without index=" in _one_line(error)
    with pytest.raises(ValueError) as error:
        warm(x, objective, index=torch.tensor([0, 4, 5]))
    assert _one_line(error) == (
        "WarmStartPGD: every index must lie in [0, 5), the number of examples it is bound to; got indices in [0, 5]"
    )
    with pytest.raises(ValueError, match=r"got indices in \[-1, 2\]"):
        warm(x, objective, index=torch.tensor([-1, 1, 2]))
    with pytest.raises(ValueError, match=r"WarmStartPGD: index must have shape \(3,\), one position per example"):
        warm(x, objective, index=torch.arange(2))
    with pytest.raises(TypeError, match="WarmStartPGD: index must be an int64 tensor of example positions, got a "):
        warm(x, objective, index=torch.zeros(3))
    with pytest.raises(ValueError, match="count must be an integer >= 1, got 0"):
        warm.bind_examples(0, "split")
    warm(x, objective, index=torch.arange(3))
    with pytest.raises(ValueError, match=r"the store holds examples of shape \(1, 2, 2\), the batch \(1, 3, 3\)"):
        warm(torch.rand(3, 1, 3, 3), objective, index=torch.arange(3))


def test_binding_empties_the_store_and_logs_when_the_split_changes(caplog: pytest.LogCaptureFixture) -> None:
    warm = WarmStartPGD()
    warm.bind_examples(4, "a")
    warm(torch.rand(2, 1, 2, 2), _linear(torch.ones(1, 2, 2)), index=torch.tensor([0, 1]))
    with caplog.at_level(logging.WARNING):
        warm.bind_examples(4, "b")
    assert "the data split changed (4 examples of split a -> 4 examples of split b)" in caplog.text
    assert warm.state_dict() == {"count": 4, "key": "b"}
    assert warm.count == 4


# ----------------------------------------------------------------------------- indices in the data path


def _images(n: int = 10) -> LabeledImages:
    return LabeledImages(torch.arange(n * 4, dtype=torch.uint8).view(n, 1, 2, 2), torch.arange(n) % 3, 3, "tiny")


def test_a_subset_remembers_its_examples_positions_and_the_loader_yields_them() -> None:
    full = _images()
    half = full.subset(torch.tensor([8, 1, 5, 6]), "half")
    assert half.positions.tolist() == [8, 1, 5, 6]
    assert full.positions.tolist() == list(range(10))
    loader = BatchLoader(half, 2, seed=3)
    plain = list(loader.epoch(1))
    indexed = list(loader.epoch(1, with_indices=True))
    assert len(plain) == len(indexed) == 2
    for (x, y), (xi, yi, index) in zip(plain, indexed):
        assert torch.equal(x, xi) and torch.equal(y, yi) and index.dtype == torch.int64
        assert torch.equal(full.pixels(index), x)  # the index names the example in the full set


def test_indices_are_sharded_like_the_batch_and_survive_resident_data() -> None:
    half = _images(12).subset(torch.arange(2, 12), "half")
    whole = list(BatchLoader(half, 4, seed=1, drop_last=True).epoch(0, with_indices=True))
    for rank in range(2):
        shards = list(BatchLoader(half, 4, seed=1, drop_last=True, rank=rank, world_size=2).epoch(0, with_indices=True))
        for (x, _, index), (xs, _, shard) in zip(whole, shards):
            assert torch.equal(shard, index[rank * 2 : rank * 2 + 2]) and torch.equal(xs, x[rank * 2 : rank * 2 + 2])
    resident = list(BatchLoader(half, 4, seed=1, drop_last=True, resident=True).epoch(0, with_indices=True))
    assert all(torch.equal(a[2], b[2]) for a, b in zip(whole, resident))


@attrs.define(frozen=True)
class _OldStyle(Regularizer):
    """A regularizer written before indices existed: no ``index`` argument."""

    weight: float = 1.0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, logits: Tensor) -> RegularizerOutput:
        return RegularizerOutput(value=logits.new_zeros(()))


class _OldPerturbation(Perturbation):
    """A perturbation written before indices existed."""

    ball = LinfBall(0.0)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        return x.clone()


def test_the_objective_passes_indices_only_to_what_uses_them() -> None:
    warm = WarmStartPGD()
    objective = RobustObjective([
        _OldStyle(),
        PerturbationConsistency(_OldPerturbation(), label="old"),
        PerturbationConsistency(warm, label="warm"),
        PerturbationConsistency(WarmStartPGD(), weight=0.0, label="off"),
    ])
    assert objective.uses_example_index
    assert not RobustObjective([_OldStyle(), PerturbationConsistency(PGDMaximizer())]).uses_example_index
    assert not RobustObjective([PerturbationConsistency(WarmStartPGD(), weight=0.0)]).uses_example_index
    objective.bind_examples(6, "split")
    model = ToySupernet(4, 3)
    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
    objective(model, x, y, index=torch.tensor([4, 5]))
    assert sorted(objective.state_dict()) == ["off", "warm"]
    assert warm.state_dict()["visited"].tolist() == [False] * 4 + [True] * 2
    with pytest.raises(ValueError, match=r"has no regularizer named \['nope'\]"):
        objective.load_state_dict({"nope": {}})


def test_a_checkpoint_without_stores_still_loads() -> None:
    record = SearchCheckpoint(epoch=1, model={}, optimizer={}, rng={}, split={}, seconds_per_epoch=[1.0])
    old = {k: v for k, v in record.to_dict().items() if k != "example_stores"}
    assert SearchCheckpoint.from_dict(old).example_stores == {}


# ----------------------------------------------------------------------------- searches


def _warm_objective(*extra: Regularizer) -> RobustObjective:
    warm = WarmStartPGD(ball=LinfBall(epsilon=0.05))
    return RobustObjective([PerturbationConsistency(warm, similarity=KLSimilarity()), *extra])


def _stores(path: Path) -> Dict[str, Tensor]:
    return SearchCheckpoint.load(path).example_stores["PerturbationConsistency"]


def test_a_search_stopped_inside_an_epoch_resumes_with_the_same_store_and_alpha(tmp_path: Path) -> None:
    toy_engine(objective=_warm_objective(Stopping())).run(tmp_path / "straight")
    # Stopping counts objective evaluations: 8 in the warm-up epoch, then 2 per step; the 14th is in step 3.
    with pytest.raises(KeyboardInterrupt):
        toy_engine(objective=_warm_objective(Stopping(after=14)), checkpoint_every_steps=2).run(tmp_path / "resumed")
    assert SearchCheckpoint.load(tmp_path / "resumed" / "checkpoint.pt").step == 2
    engine = toy_engine(objective=_warm_objective(Stopping()), checkpoint_every_steps=2)
    assert engine.run(tmp_path / "resumed", resume=True) is not None
    straight, resumed = (SearchCheckpoint.load(tmp_path / name / "checkpoint.pt") for name in ("straight", "resumed"))
    a, b = straight.example_stores["PerturbationConsistency"], resumed.example_stores["PerturbationConsistency"]
    assert a["count"] == b["count"] == 1438 and a["key"] == b["key"]
    assert torch.equal(a["visited"], b["visited"]) and int(a["visited"].sum()) > 100
    assert torch.equal(a["delta"], b["delta"])
    assert torch.equal(straight.model["alpha"], resumed.model["alpha"])


def test_a_fresh_search_starts_from_an_empty_store(tmp_path: Path) -> None:
    engine = toy_engine(objective=_warm_objective(), epochs=1, warmup_epochs=0, max_steps_per_epoch=2)
    engine.run(tmp_path / "first")
    engine.run(tmp_path / "second")  # the same objective object: the second run must not inherit the first's store
    first, second = _stores(tmp_path / "first" / "checkpoint.pt"), _stores(tmp_path / "second" / "checkpoint.pt")
    assert torch.equal(first["delta"], second["delta"]) and int(first["visited"].sum()) == 64


@pytest.mark.parametrize("optimizer", [FirstOrderDarts, SecondOrderDarts])
def test_one_search_step_writes_each_batch_once(optimizer: Any) -> None:
    objective = _warm_objective()
    objective.bind_examples(40, "split")
    model = ToySupernet(4, 3, dtype=torch.float32)
    bilevel = optimizer()
    bilevel.setup(model, epochs=2)
    generator = torch.Generator().manual_seed(0)
    train = (torch.rand(4, 1, 2, 2, generator=generator), torch.tensor([0, 1, 2, 0]), torch.tensor([1, 3, 5, 7]))
    valid = (torch.rand(4, 1, 2, 2, generator=generator), torch.tensor([2, 1, 0, 0]), torch.tensor([20, 22, 24, 26]))
    bilevel.step(model, objective, train, valid, update_arch=True)
    state = objective.state_dict()["PerturbationConsistency"]
    assert state["visited"].nonzero().flatten().tolist() == [1, 3, 5, 7, 20, 22, 24, 26]


def test_second_order_steps_read_one_stored_state_at_w_plus_and_w_minus() -> None:
    """Inside the arch step the training batch's store is read-only, so w+ and w- start alike."""
    stored: List[Tensor] = []

    @attrs.define(frozen=True)
    class Spy(WarmStartPGD):
        def perturb(self, x: Tensor, objective: PerturbationObjective, index: Optional[Tensor] = None) -> Tensor:
            result = super().perturb(x, objective, index=index)
            stored.append(self.state_dict()["delta"][index].clone())
            return result

    spy = Spy(ball=LinfBall(epsilon=0.05))
    objective = RobustObjective([PerturbationConsistency(spy)])
    objective.bind_examples(8, "split")
    model = ToySupernet(4, 3, dtype=torch.float32)
    bilevel = SecondOrderDarts()
    bilevel.setup(model, epochs=2)
    x = torch.rand(2, 1, 2, 2)
    train, valid = (x, torch.tensor([0, 1]), torch.tensor([0, 1])), (x, torch.tensor([1, 0]), torch.tensor([4, 5]))
    bilevel.step(model, objective, train, valid, update_arch=False)  # first visit of the training batch
    stored.clear()
    bilevel.step(model, objective, train, valid, update_arch=True)
    # Evaluations: train at w, valid at w', train at w+ and w- (read-only), then the weight step.
    assert len(stored) == 5  # the store after each evaluation
    assert torch.equal(stored[0], stored[2]) and torch.equal(stored[2], stored[3])
    assert not torch.equal(stored[4], stored[0])  # the weight step wrote the training batch's entries


def test_max_warm_gin_is_the_paper_max_config_with_warm_start_pgd() -> None:
    parse_gin(["max_warm.gin"])
    engine = SearchEngine()
    assert (engine.epochs, engine.warmup_epochs, engine.batch_size, engine.train_portion) == (50, 15, 64, 0.5)
    (regularizer,) = engine.objective.regularizers
    assert isinstance(regularizer, PerturbationConsistency) and regularizer.weight == 1.0
    assert isinstance(regularizer.similarity, KLSimilarity)
    assert regularizer.perturbation == WarmStartPGD(ball=LinfBall(epsilon=0.031), steps=1, alpha=1.0)


def test_a_smoke_search_with_max_warm_gin_runs(tmp_path: Path) -> None:
    """(tests/test_fgsm_random_start.py runs the same smoke search with max_fgsm.gin.)"""
    parse_gin(["max_warm.gin", "smoke.gin"], ["SearchEngine.epochs = 1", "SearchEngine.warmup_epochs = 0"])
    engine = SearchEngine()
    result = engine.run(tmp_path / "run")
    assert result is not None and (tmp_path / "run" / "genotype.json").is_file()
    stores = SearchCheckpoint.load(tmp_path / "run" / "checkpoint.pt").example_stores
    assert int(stores["PerturbationConsistency"]["visited"].sum()) == 2 * 2 * 16  # 2 steps, 2 batches of 16


# ----------------------------------------------------------------------------- data-parallel


def _data_parallel_worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    objective = _warm_objective()
    engine = toy_engine(objective=objective, epochs=1, warmup_epochs=0, max_steps_per_epoch=2, augmentation=None)
    engine.run(run_dir)
    torch.save(objective.state_dict(), Path(run_dir) / f"store{rank}.pt")


@pytest.mark.slow
def test_every_rank_of_a_data_parallel_search_holds_the_whole_store(tmp_path: Path) -> None:
    from tests.test_distributed import _free_port

    torch.set_num_threads(1)
    single = _warm_objective()
    toy_engine(objective=single, epochs=1, warmup_epochs=0, max_steps_per_epoch=2, augmentation=None).run(
        tmp_path / "single"
    )
    mp.spawn(_data_parallel_worker, args=(2, _free_port(), str(tmp_path / "double")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / "double" / f"store{r}.pt")["PerturbationConsistency"] for r in range(2)]
    assert torch.equal(ranks[0]["delta"], ranks[1]["delta"]) and torch.equal(ranks[0]["visited"], ranks[1]["visited"])
    assert torch.equal(ranks[0]["visited"], single.state_dict()["PerturbationConsistency"]["visited"])
