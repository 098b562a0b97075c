"""The model guards cost no tensor operator on rnasframe's models and still restore everything.

``input_gradients_only`` and ``preserved_buffers`` run around every perturbation call. Norm layers
stop tracking running statistics inside them (nothing is written, nothing is saved) and buffers of
module types declared with ``read_only_buffers`` are left alone, so on the DARTS supernet and the
DARTS_V2 network the guard dispatches no aten operator at all (it used to clone and compare every
buffer: 8,367 operators per call on the supernet, 2,175 on DARTS_V2). Counts are exact and
deterministic, so they are asserted.
"""

from __future__ import annotations

import os
import sys
from typing import List

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from rnasframe.interfaces.perturbation import check_pixel_range
from rnasframe.model_state import (
    _submodules,
    input_gradients_only,
    preserved_buffers,
    read_only_buffers,
    strict_buffer_checks,
)
from rnasframe.modules import Normalize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
import count_ops


@pytest.mark.parametrize("model", count_ops.GUARD_MODELS)
def test_a_guarded_call_dispatches_only_the_pixel_check_and_the_result(model: str) -> None:
    counters = count_ops.count_guarded_call(model)
    assert counters["guard"].total == 0, dict(counters["guard"].forward)
    assert counters["check"].total <= 3, dict(counters["check"].forward)  # aminmax and two host reads
    # The whole call: the check, x.detach(), the perturbation's own clone, the result's detach and clamp.
    assert counters["call"].total <= 7, dict(counters["call"].forward)


class _Counting(nn.Module):
    """A module whose forward writes its buffer (as a user's module might)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize((0.5,), (0.25,))
        self.counting = _Counting()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.conv(self.counting(self.normalize(x))))
        return self.head(h.mean(dim=(2, 3)))


def _state(model: nn.Module) -> dict:
    return {
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "tracking": {n: m.track_running_stats for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)},
    }


def _same(before: dict, after: dict) -> None:
    assert before["flags"] == after["flags"] and before["modes"] == after["modes"]
    assert before["tracking"] == after["tracking"]
    for name, value in before["buffers"].items():
        assert torch.equal(value, after["buffers"][name]), name


def test_buffers_flags_and_modes_come_back_even_on_an_exception() -> None:
    net = _Net().train()
    net.head.bias.requires_grad_(False)
    net(torch.rand(4, 1, 5, 5))  # non-trivial running statistics
    before = _state(net)
    frozen_inside: List[bool] = []

    def fails_inside() -> None:
        with input_gradients_only(net):
            frozen_inside.append(not any(p.requires_grad for p in net.parameters()))
            net(torch.rand(4, 1, 5, 5)).sum()
            net.norm.eval()
            raise KeyError("inside")

    with pytest.raises(KeyError):
        fails_inside()
    assert frozen_inside == [True]
    _same(before, _state(net))


def test_a_writing_module_is_restored_and_a_false_declaration_is_caught() -> None:
    net = _Net().train()
    with preserved_buffers(net):
        net(torch.rand(2, 1, 4, 4))
    assert float(net.counting.calls) == 0.0  # restored: _Counting is not declared read-only
    assert int(net.norm.num_batches_tracked) == 0

    class _Liar(_Counting):
        pass

    read_only_buffers(_Liar)
    net.counting = _Liar()
    with preserved_buffers(net):  # believed: not restored, no cost
        net(torch.rand(2, 1, 4, 4))
    assert float(net.counting.calls) == 1.0
    def guarded_pass() -> None:
        with preserved_buffers(net):
            net(torch.rand(2, 1, 4, 4))

    with strict_buffer_checks(), pytest.raises(RuntimeError, match=r"buffer 'calls' of a _Liar changed inside a guarded"):
        guarded_pass()


def test_a_declaration_covers_the_class_only_and_needs_a_module() -> None:
    class _Shifted(Normalize):
        pass

    net = nn.Sequential(_Shifted((0.5,), (0.25,)))
    counter = count_ops.OpCounter()
    with counter, preserved_buffers(net):
        pass
    assert counter.total > 0  # a subclass of a read-only type is saved and restored
    with pytest.raises(TypeError, match="read_only_buffers decorates torch.nn.Module subclasses"):
        read_only_buffers(int)  # type: ignore[arg-type]


def test_modules_added_after_a_call_are_guarded_too() -> None:
    net = nn.Sequential(nn.Linear(2, 2))
    with input_gradients_only(net):
        pass
    net.insert(0, nn.BatchNorm1d(2))  # ModuleList/Sequential.insert fires no registration hook
    with input_gradients_only(net):
        net(torch.rand(4, 2))
    assert int(net[0].num_batches_tracked) == 0 and torch.equal(net[0].running_mean, torch.zeros(2))


def test_the_walk_finds_every_module_once() -> None:
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.Sequential(shared, nn.ReLU()), nn.ModuleDict({"a": nn.BatchNorm1d(2)}))
    walked = _submodules(net)
    assert len(walked) == len({id(m) for m in walked})
    assert {id(m) for m in walked} == {id(m) for m in net.modules()}


@settings(max_examples=25, deadline=None)
@given(
    frozen=st.lists(st.booleans(), min_size=4, max_size=4),
    modes=st.lists(st.booleans(), min_size=5, max_size=5),
    switch=st.sampled_from(["none", "train", "eval"]),
)
def test_any_mix_of_frozen_parameters_and_modes_comes_back(frozen: List[bool], modes: List[bool], switch: str) -> None:
    torch.manual_seed(0)
    net = _Net()
    for parameter, flag in zip(net.parameters(), frozen):
        parameter.requires_grad_(not flag)
    for module, training in zip(net.children(), modes):
        module.train(training)
    before = _state(net)
    with input_gradients_only(net):
        x = torch.rand(3, 1, 4, 4, requires_grad=True)
        (gradient,) = torch.autograd.grad(net(x).sum(), x)
        assert gradient.shape == x.shape
        if switch != "none":
            net.train(switch == "train")
    _same(before, _state(net))


def test_pixel_range_check_names_the_values_and_rejects_nan() -> None:
    check_pixel_range(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"x must hold pixels in \[0, 1\].*got values in \[-0\.5, 1\]"):
        check_pixel_range(torch.tensor([-0.5, 1.0]))
    with pytest.raises(ValueError, match=r"batch must hold pixels"):
        check_pixel_range(torch.tensor([0.5, float("nan")]), "batch")
    check_pixel_range(torch.empty(0))


def test_pixel_range_check_reads_nothing_back_off_the_cpu() -> None:
    """Off the CPU the verdict is enqueued (``_assert_async``), never read: "meta" stands in for a GPU."""
    x, counter = torch.rand(2, 3, device="meta"), count_ops.OpCounter()
    with counter:
        check_pixel_range(x)
    assert dict(counter.forward) == {"aminmax": 1, "ge": 1, "le": 1, "bitwise_and": 1, "_assert_async": 1}
