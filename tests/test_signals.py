"""Health signals of a search: alpha entropy, the Hessian's dominant eigenvalue, skip counts in the logs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine
from rnasframe.data import DigitsSource
from rnasframe.perturbations import LinfBall, PGDMaximizer
from rnasframe.signals import CollapseSignals, alpha_entropy, dominant_hessian_eigenvalue
from rnasframe.spaces.darts import DartsSpace, Genotype
from tests.toy import ToySupernet


def test_power_iteration_finds_the_largest_magnitude_eigenvalue_of_a_quadratic() -> None:
    a = torch.diag(torch.tensor([0.5, -3.0, 2.0], dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    matrix = q @ a @ q.T
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * x @ matrix @ x + x.sum()  # the linear term does not change the Hessian
    value, used = dominant_hessian_eigenvalue(loss, [x], iterations=500, tolerance=1e-12)
    assert value == pytest.approx(-3.0, rel=1e-8)
    assert 1 < used <= 500


def test_power_iteration_matches_the_explicit_hessian_of_a_supernet_in_float64() -> None:
    torch.manual_seed(0)
    net = ToySupernet(in_features=6, num_classes=3, hidden=4)
    x, y = torch.rand(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))

    def loss_of(alpha: torch.Tensor) -> torch.Tensor:
        mix = torch.softmax(alpha, dim=-1)[0]
        hidden = sum(mix[k] * torch.tanh(op(x)) for k, op in enumerate(net.ops))
        return F.cross_entropy(net.head(hidden), y)

    hessian = torch.autograd.functional.hessian(loss_of, net.alpha.detach()).reshape(2, 2)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    expected = float(eigenvalues[eigenvalues.abs().argmax()])
    value, _ = dominant_hessian_eigenvalue(F.cross_entropy(net(x), y), [net.alpha], iterations=300, tolerance=1e-13)
    assert value == pytest.approx(expected, rel=1e-7, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=5), st.integers(1, 6), st.integers(0, 2**16))
def test_power_iteration_estimate_never_exceeds_the_spectral_radius(
    diagonal: list, iterations: int, seed: int
) -> None:
    matrix = torch.diag(torch.tensor(diagonal, dtype=torch.float64))
    x = torch.zeros(len(diagonal), dtype=torch.float64, requires_grad=True)
    generator = torch.Generator().manual_seed(seed)
    value, used = dominant_hessian_eigenvalue(0.5 * x @ matrix @ x, [x], iterations, 1e-6, generator)
    assert abs(value) <= max(abs(d) for d in diagonal) * (1 + 1e-9) + 1e-12
    assert 1 <= used <= iterations


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(tolerance=0.0)])
def test_bad_power_iteration_settings_fail_in_one_line(bad: Dict[str, Any]) -> None:
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="iterations must be >= 1|tolerance must be > 0"):
        dominant_hessian_eigenvalue((x * x).sum(), [x], **bad)


def test_alpha_entropy_is_log_k_for_uniform_weights_and_zero_in_the_limit() -> None:
    net = ToySupernet(in_features=4, num_classes=2)
    with torch.no_grad():
        net.alpha.zero_()
    assert alpha_entropy(net)["alpha_entropy"] == pytest.approx(math.log(2))
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([[0.0, 50.0]]))
    assert alpha_entropy(net)["alpha_entropy"] == pytest.approx(0.0, abs=1e-18)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=2))
def test_alpha_entropy_lies_between_zero_and_log_k(values: list) -> None:
    net = ToySupernet(in_features=4, num_classes=2)
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([values], dtype=torch.float64))
    entropy = alpha_entropy(net)
    p = torch.softmax(torch.tensor(values, dtype=torch.float64), dim=0)
    assert entropy["alpha_entropy"] == pytest.approx(float(-(p * p.log()).sum()), abs=1e-12)
    assert -1e-12 <= entropy["alpha_entropy"] <= math.log(2) + 1e-12
    assert entropy[f"alpha_entropy/{net.arch_parameter_names[0]}"] == entropy["alpha_entropy"]


def test_hessian_schedule_skips_warm_up_and_always_measures_the_last_epoch() -> None:
    signals = CollapseSignals(hessian_every=3)
    due = [e for e in range(10) if signals.hessian_due(e, epochs=10, warmup_epochs=2)]
    assert due == [4, 7, 9]
    assert not any(CollapseSignals(hessian_every=None).hessian_due(e, 10, 0) for e in range(10))


@pytest.mark.parametrize("field, value", [("hessian_every", 0), ("hessian_batches", 0), ("hessian_iterations", -1)])
def test_bad_signal_settings_fail_in_one_line(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        CollapseSignals(**{field: value})


def test_measuring_leaves_the_supernet_and_random_state_untouched() -> None:
    torch.manual_seed(0)
    net = DartsSpace(channels=2, layers=3).supernet(10)
    net.train()
    objective = RobustObjective([PerturbationConsistency(PGDMaximizer(LinfBall(0.1), steps=2, step_size=0.05))])
    batches = [(torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    signals = CollapseSignals(hessian_iterations=3).measure(net, objective, batches, hessian=True, seed=1)
    assert math.isfinite(signals["hessian_eigenvalue"]) and signals["hessian_products"] >= 1
    assert 0 <= signals["alpha_entropy"] <= math.log(len(net.op_names))
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in net.parameters())
    again = CollapseSignals(hessian_iterations=3).measure(net, objective, batches, hessian=True, seed=1)
    assert again == signals  # the same seed gives the same measurement


def test_skip_connect_counts_of_a_darts_genotype() -> None:
    genotype = Genotype(
        normal=[("skip_connect", 0), ("sep_conv_3x3", 1)] * 4, normal_concat=[2, 3, 4, 5],
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, reduce_concat=[2, 3, 4, 5],
    )
    assert DartsSpace().genotype_metrics(genotype) == {"normal_skip_connect": 4.0, "reduce_skip_connect": 0.0}


def _engine(signals: CollapseSignals) -> SearchEngine:
    return SearchEngine(
        space=DartsSpace(channels=2, layers=3), data=DigitsSource(),
        objective=RobustObjective([PerturbationConsistency(PGDMaximizer(LinfBall(0.05), steps=1, step_size=0.05))]),
        optimizer=FirstOrderDarts(), epochs=3, warmup_epochs=1, batch_size=16, augmentation=None, seed=2,
        device="cpu", max_steps_per_epoch=2, eval_batches=1, signals=signals,
    )


def test_a_search_logs_the_signals_and_they_do_not_change_it(tmp_path: Path) -> None:
    measured = _engine(CollapseSignals(hessian_every=1, hessian_iterations=3)).run(tmp_path / "on")
    silent = _engine(CollapseSignals(entropy=False, hessian_every=None)).run(tmp_path / "off")
    assert measured is not None and silent is not None
    assert measured.genotype == silent.genotype
    for a, b in zip(
        torch.load(tmp_path / "on" / "checkpoint.pt", weights_only=False)["model"].values(),
        torch.load(tmp_path / "off" / "checkpoint.pt", weights_only=False)["model"].values(),
    ):
        assert torch.equal(a, b)
    final = json.loads((tmp_path / "on" / "results.json").read_text())["final_metrics"]
    assert {"signals/alpha_entropy", "signals/hessian_eigenvalue", "signals_seconds"} <= set(final)
    assert not any(k.startswith("signals") for k in json.loads((tmp_path / "off" / "results.json").read_text())[
        "final_metrics"
    ])
    log = (tmp_path / "on" / "log.txt").read_text()
    assert log.count("signals/hessian_eigenvalue=") == 2  # the two epochs after warm-up
    assert "normal_skip_connect=" in log


def test_measuring_reads_but_never_writes_a_warm_start_store() -> None:
    from rnasframe.perturbations import WarmStartPGD

    torch.manual_seed(0)
    net = DartsSpace(channels=2, layers=3).supernet(10)
    net.train()
    objective = RobustObjective([PerturbationConsistency(WarmStartPGD(LinfBall(0.1)))])
    objective.bind_examples(20, "toy")
    x, y, index = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)), torch.arange(8)
    objective(net, x, y, index=index)  # a visit fills the store for these examples
    before = {k: v.clone() for k, v in objective.state_dict()["PerturbationConsistency"].items()
              if isinstance(v, torch.Tensor)}
    signals = CollapseSignals(hessian_iterations=2).measure(net, objective, [(x, y, index)], hessian=True)
    assert math.isfinite(signals["hessian_eigenvalue"])
    after = objective.state_dict()["PerturbationConsistency"]
    for key, value in before.items():
        assert torch.equal(after[key], value), key
