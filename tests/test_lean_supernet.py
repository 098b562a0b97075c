"""The lean supernet (cells in waves of grouped kernels) computes what the plain path computes.

Outputs, every parameter gradient (weights and alphas) and every buffer (BatchNorm running
statistics and batch counters) are compared with ``SupernetOptions.plain()`` in float64, in both
memory formats, in train and eval mode, on even and odd image sizes; partial backward passes
(alpha-step, w-step, input gradients with frozen parameters) and checkpoints across paths too.
"""

from __future__ import annotations

import copy
import pickle
from typing import Dict, Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from rnasframe.interfaces.search_space import InputSpec
from rnasframe.model_state import input_gradients_only, preserved_buffers
from rnasframe.spaces.darts import DartsSpace
from rnasframe.spaces.darts.lean import check_lean_structure
from rnasframe.spaces.darts.supernet import DartsSupernet, SupernetOptions

PLAIN = SupernetOptions.plain()
LEAN = {
    "lean": SupernetOptions(fused_edges=False, channels_last=False, depthwise=False, lean=True),
    "lean+channels_last": SupernetOptions(depthwise=False, lean=True),
    "lean+depthwise": SupernetOptions(channels_last=False, lean=True),
    "default": SupernetOptions(lean=True),
}

Result = Tuple[Tensor, Dict[str, Tensor], Dict[str, Tensor]]


def make_supernet(size: int, layers: int = 3, dtype: torch.dtype = torch.float64) -> DartsSupernet:
    """Normal, reduction, reduction cells, alphas far from uniform."""
    torch.manual_seed(0)
    net = DartsSpace(channels=4, layers=layers, options=PLAIN).supernet(5, InputSpec((3, size, size))).to(dtype)
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_()
    return net


def run(net: DartsSupernet, options: SupernetOptions, x: Tensor, y: Tensor, train: bool) -> Result:
    net.options = options
    net.train(train)
    net.zero_grad(set_to_none=True)
    out = net(x)
    F.cross_entropy(out, y).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads, {n: b.clone() for n, b in net.named_buffers()}


def assert_same(result: Result, expected: Result) -> None:
    torch.testing.assert_close(result[0], expected[0], rtol=1e-9, atol=1e-11)
    assert result[1].keys() == expected[1].keys()
    for name in expected[1]:
        torch.testing.assert_close(result[1][name], expected[1][name], rtol=1e-7, atol=1e-10, msg=name)
    assert result[2].keys() == expected[2].keys()
    for name in expected[2]:
        torch.testing.assert_close(result[2][name], expected[2][name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("size", [16, 15])
@pytest.mark.parametrize("name", list(LEAN))
def test_lean_matches_plain_path(name: str, size: int, train: bool) -> None:
    net = make_supernet(size)
    if not train:  # non-trivial running statistics
        with torch.no_grad():
            for _ in range(2):
                net(torch.rand(4, 3, size, size, dtype=torch.float64))
    state = copy.deepcopy(net.state_dict())
    x, y = torch.rand(3, 3, size, size, dtype=torch.float64), torch.tensor([0, 3, 4])
    expected = run(net, PLAIN, x, y, train)
    net.load_state_dict(state)
    result = run(net, LEAN[name], x, y, train)
    assert_same(result, expected)
    assert {"alphas_normal", "alphas_reduce"} <= result[1].keys()
    # A second step on the lean path keeps updating the same buffers as the plain path.
    state_after = copy.deepcopy(net.state_dict())
    expected = run(net, PLAIN, x, y, train)
    net.load_state_dict(state_after)
    assert_same(run(net, LEAN[name], x, y, train), expected)


def test_lean_matches_plain_path_in_float32() -> None:
    """float32 runs oneDNN's kernels. Gradients are compared by relative norm: summing in another
    order can flip a ReLU whose input is within rounding of zero (seen: one element of 65536 at
    |z| = 4e-6), which moves a few gradient entries by their own size."""
    net = make_supernet(32, dtype=torch.float32)
    state = copy.deepcopy(net.state_dict())
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    expected = run(net, PLAIN, x, y, True)
    for options in (SupernetOptions(lean=True), SupernetOptions(channels_last=False, lean=True)):
        net.load_state_dict(state)
        result = run(net, options, x, y, True)
        torch.testing.assert_close(result[0], expected[0], rtol=1e-4, atol=1e-5)
        errors = {
            name: ((result[1][name] - expected[1][name]).norm() / expected[1][name].norm()).item()
            for name in expected[1]
        }
        assert max(errors.values()) < 2e-2, max(errors.items(), key=lambda item: item[1])
        assert sorted(errors.values())[len(errors) // 2] < 1e-4


@pytest.mark.parametrize("target", ["arch", "weights", "input"])
def test_lean_partial_backward_matches_plain_path(target: str) -> None:
    """alpha-step (arch), w-step (weights) and PGD (input only, parameters frozen) gradients."""
    net = make_supernet(16)
    state = copy.deepcopy(net.state_dict())
    x0, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 2])
    results = []
    for options in (PLAIN, SupernetOptions(lean=True)):
        net.load_state_dict(state)
        net.options = options
        net.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(target == "input")
        if target == "input":
            with input_gradients_only(net):
                (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y), x)
            results.append([grad])
            assert all(p.grad is None for p in net.parameters())
        else:
            inputs = net.arch_parameters() if target == "arch" else list(net.weight_parameters())
            F.cross_entropy(net(x), y).backward(inputs=inputs)
            results.append([p.grad if p.grad is not None else torch.zeros_like(p) for p in net.parameters()])
    for lean_grad, plain_grad in zip(*results):
        torch.testing.assert_close(lean_grad, plain_grad, rtol=1e-7, atol=1e-10)


def test_buffers_stay_the_modules_own_across_conversions_and_checkpoints() -> None:
    """state_dict keys and values are those of the plain path; .to(), load_state_dict, pickling."""
    net = make_supernet(8, dtype=torch.float32)
    keys = list(net.state_dict())
    net.options = SupernetOptions(lean=True)
    x = torch.rand(2, 3, 8, 8)
    net(x)
    assert list(net.state_dict()) == keys
    twin = make_supernet(8, dtype=torch.float32)
    twin.load_state_dict(net.state_dict())  # a lean checkpoint loads into a plain supernet
    for (name, a), b in zip(net.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name
    net.double()  # replaces every buffer: the lean path re-points them
    net.train()
    before = {n: b.clone() for n, b in net.named_buffers()}
    net(x.double())
    changed = [n for n, b in net.named_buffers() if not torch.equal(b, before[n])]
    assert any("edges" in n and "running_mean" in n for n in changed)
    assert all(n.endswith(("running_mean", "running_var", "num_batches_tracked")) for n in changed)
    clone = pickle.loads(pickle.dumps(net))
    deep = copy.deepcopy(net)
    for other in (clone, deep):
        torch.testing.assert_close(other.eval()(x.double()), net.eval()(x.double()), rtol=0, atol=0)


def test_preserved_buffers_leave_lean_statistics_unchanged() -> None:
    net = make_supernet(8)
    net.options = SupernetOptions(lean=True)
    net(torch.rand(2, 3, 8, 8, dtype=torch.float64))
    before = copy.deepcopy(net.state_dict())
    with preserved_buffers(net):
        net(torch.rand(2, 3, 8, 8, dtype=torch.float64))
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_lean_is_the_default_off_the_cpu_and_plain_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SupernetOptions().lean is None and SupernetOptions.plain().lean is False
    with pytest.raises(TypeError, match="SupernetOptions.lean must be True or False"):
        SupernetOptions(lean=1)  # type: ignore[arg-type]
    class LeanUsedError(Exception):
        pass

    def spy(*args: object) -> None:
        raise LeanUsedError

    monkeypatch.setattr("rnasframe.spaces.darts.lean.lean_cell_forward", spy)
    net = make_supernet(8)
    net.options = SupernetOptions()
    net(torch.rand(1, 3, 8, 8, dtype=torch.float64))  # CPU input: the fused path
    net.options = SupernetOptions(lean=True)
    with pytest.raises(LeanUsedError):
        net(torch.rand(1, 3, 8, 8, dtype=torch.float64))


def test_non_standard_cells_are_refused_with_a_clear_error() -> None:
    net = make_supernet(8)
    net.cells[0].edges[0].ops[4] = torch.nn.Identity()
    with pytest.raises(ValueError, match="lean=False"):
        check_lean_structure(net.cells[0])


def test_cuda_graphs_switch_refuses_cpu_inputs_with_its_name() -> None:
    net = make_supernet(8)
    net.options = SupernetOptions(cuda_graphs=True)
    with pytest.raises(RuntimeError, match=r"cuda_graphs=True .* needs a CUDA input.*cuda_graphs=False"):
        net(torch.rand(1, 3, 8, 8, dtype=torch.float64))


@pytest.mark.parametrize("options", [SupernetOptions(lean=True), SupernetOptions(depthwise=False, lean=True)], ids=["cpu", "as-on-gpu"])
def test_frozen_weights_are_reused_until_they_change(options: SupernetOptions) -> None:
    """Inner-maximization passes (parameters frozen) reuse the grouped weights; a change of a
    frozen parameter, or unfreezing, is seen by the next pass (input gradients vs the plain path)."""
    net = make_supernet(16)
    state = copy.deepcopy(net.state_dict())
    x0, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.tensor([1, 2])
    sep5 = net.cells[0].edges[0].ops[4][0][1].weight  # a 5x5 depthwise kernel of the first wave

    def input_gradient(options: SupernetOptions) -> Tensor:
        net.options = options
        x = x0.clone().requires_grad_(True)
        with input_gradients_only(net):
            (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y), x)
        return grad

    results = {}
    for name, current in (("plain", PLAIN), ("lean", options)):
        net.load_state_dict(state)
        first = input_gradient(current)
        again = input_gradient(current)  # reused grouped weights
        with torch.no_grad():
            sep5.mul_(-3.0)
        changed = input_gradient(current)
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x0), y).backward()  # unfrozen: the weights are part of the graph again
        results[name] = (first, again, changed, sep5.grad.clone())
    for lean_value, plain_value in zip(results["lean"], results["plain"]):
        torch.testing.assert_close(lean_value, plain_value, rtol=1e-7, atol=1e-10)
    assert not torch.allclose(results["lean"][0], results["lean"][2])
