"""The supernet's fast paths compute exactly what the plain path computes (float64 tolerance).

Every switch of :class:`SupernetOptions` (and the combinations that matter) is compared with
``SupernetOptions.plain()`` on the same parameters: outputs, architecture and weight gradients,
BatchNorm buffers, in train and eval mode, on even and odd image sizes (stride-2 edges, factorized
reduction, polyphase dilated convolutions and their fallbacks are all exercised).
"""

from __future__ import annotations

import copy
import pickle
from typing import Dict, List, Tuple

import gin
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective
from rnasframe.interfaces.search_space import InputSpec
from rnasframe.model_state import input_gradients_only
from rnasframe.perturbations import LinfBall, UniformSampler
from rnasframe.spaces.darts import DartsSpace, fastops
from rnasframe.spaces.darts.supernet import (
    DartsSupernet,
    EdgeInput,
    MixedOp,
    NodeSum,
    SupernetOptions,
    weighted_batch_norm,
)

PLAIN = SupernetOptions.plain()
SWITCHES = {
    "fused": SupernetOptions(fused_edges=True, channels_last=False, depthwise=False),
    "channels_last": SupernetOptions(fused_edges=False, channels_last=True, depthwise=False),
    "fused+channels_last": SupernetOptions(depthwise=False),
    "fused+depthwise": SupernetOptions(channels_last=False),
    "default": SupernetOptions(),
}


def make_supernet(
    size: int, options: SupernetOptions = PLAIN, layers: int = 3, dtype: torch.dtype = torch.float64
) -> DartsSupernet:
    """A supernet (3 cells: normal, reduction, reduction) with alphas far from uniform."""
    torch.manual_seed(0)
    space = DartsSpace(channels=4, layers=layers, options=options)
    net = space.supernet(num_classes=5, input_spec=InputSpec((3, size, size))).to(dtype)
    with torch.no_grad():
        for alpha in net.arch_parameters():
            alpha.normal_()
    return net


Result = Tuple[Tensor, Dict[str, Tensor], Dict[str, Tensor]]


def run(net: DartsSupernet, options: SupernetOptions, x: Tensor, y: Tensor, train: bool) -> Result:
    """Output, every parameter gradient and every buffer after one forward-backward."""
    net.options = options
    net.train(train)
    net.zero_grad(set_to_none=True)
    out = net(x)
    F.cross_entropy(out, y).backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    buffers = {name: b.clone() for name, b in net.named_buffers()}
    return out.detach(), grads, buffers


def assert_same(result: Result, expected: Result) -> None:
    torch.testing.assert_close(result[0], expected[0], rtol=1e-9, atol=1e-11)
    assert result[1].keys() == expected[1].keys()
    for name in expected[1]:
        torch.testing.assert_close(result[1][name], expected[1][name], rtol=1e-7, atol=1e-10, msg=name)
    for name in expected[2]:
        torch.testing.assert_close(result[2][name], expected[2][name], rtol=1e-9, atol=1e-12, msg=name)


def _prepared(size: int, train: bool, dtype: torch.dtype = torch.float64) -> Tuple[DartsSupernet, dict, Tensor, Tensor]:
    net = make_supernet(size, dtype=dtype)
    if not train:  # non-trivial running statistics for eval mode
        with torch.no_grad():
            net.train()
            for _ in range(2):
                net(torch.rand(4, 3, size, size, dtype=dtype))
    state = copy.deepcopy(net.state_dict())
    x = torch.rand(3, 3, size, size, dtype=dtype)
    return net, state, x, torch.tensor([0, 3, 4])


_REFERENCES: Dict[Tuple[int, bool], Result] = {}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("size", [16, 15])
@pytest.mark.parametrize("switch", list(SWITCHES))
def test_switch_matches_plain_path(switch: str, size: int, train: bool) -> None:
    net, state, x, y = _prepared(size, train)
    if (size, train) not in _REFERENCES:
        _REFERENCES[(size, train)] = run(net, PLAIN, x, y, train)
    expected = _REFERENCES[(size, train)]
    net.load_state_dict(state)
    assert_same(run(net, SWITCHES[switch], x, y, train), expected)
    assert all(alpha in expected[1] for alpha in ("alphas_normal", "alphas_reduce"))


def test_default_options_match_plain_path_in_float32() -> None:
    """float32 runs oneDNN's channels-last kernels (float64 runs torch's reference kernels)."""
    net, state, x, y = _prepared(32, True, torch.float32)
    expected = run(net, PLAIN, x, y, True)
    net.load_state_dict(state)
    result = run(net, SupernetOptions(), x, y, True)
    torch.testing.assert_close(result[0], expected[0], rtol=1e-4, atol=1e-5)
    for name in expected[1]:
        scale = expected[1][name].abs().max().item()
        torch.testing.assert_close(result[1][name], expected[1][name], rtol=1e-3, atol=1e-4 * scale, msg=name)


@pytest.mark.parametrize("target", ["arch", "weights", "input"])
def test_partial_backward_matches_plain_path(target: str) -> None:
    """alpha-step (arch), w-step (weights) and PGD (input only, parameters frozen) gradients."""
    net = make_supernet(16)
    state = copy.deepcopy(net.state_dict())
    x0 = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([1, 2])
    results = []
    for options in (PLAIN, SupernetOptions()):
        net.load_state_dict(state)
        net.options = options
        net.zero_grad(set_to_none=True)
        x = x0.clone().requires_grad_(target == "input")
        if target == "input":
            with input_gradients_only(net):
                (grad,) = torch.autograd.grad(F.cross_entropy(net(x), y), x)
            assert all(p.grad is None for p in net.parameters())
            results.append([grad])
            continue
        params = net.arch_parameters() if target == "arch" else list(net.weight_parameters())
        F.cross_entropy(net(x), y).backward(inputs=params)
        others = list(net.weight_parameters()) if target == "arch" else net.arch_parameters()
        assert all(p.grad is None for p in others)
        results.append([p.grad for p in params])
    for fast, plain in zip(results[1], results[0]):
        torch.testing.assert_close(fast, plain, rtol=1e-7, atol=1e-10)


def test_arch_step_skips_tiled_weight_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: List[int] = []
    original = fastops.depthwise_weight_grad

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fastops, "depthwise_weight_grad", counting)
    net = make_supernet(16, SupernetOptions())
    x, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1])
    F.cross_entropy(net(x), y).backward(inputs=net.arch_parameters())
    assert calls == []
    F.cross_entropy(net(x), y).backward(inputs=list(net.weight_parameters()))
    assert calls


def test_search_step_matches_plain_path() -> None:
    """One first-order RNAS-uniform step (alpha-step + clipped w-step) from the same state."""
    objective = RobustObjective([PerturbationConsistency(UniformSampler(LinfBall(0.03)), weight=1.0)])
    batches = [(torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 4])) for _ in range(2)]
    after = []
    for options in (PLAIN, SupernetOptions()):
        net = make_supernet(8, options)
        optimizer = FirstOrderDarts()
        optimizer.setup(net, epochs=2)
        torch.manual_seed(7)
        optimizer.step(net, objective, batches[0], batches[1], update_arch=True)
        after.append(copy.deepcopy(net.state_dict()))
    for name, value in after[0].items():
        torch.testing.assert_close(after[1][name], value, rtol=1e-7, atol=1e-10, msg=name)


def test_state_dict_and_genotype_do_not_depend_on_options() -> None:
    plain = make_supernet(16, PLAIN)
    fast = make_supernet(16, SupernetOptions())
    assert list(plain.state_dict()) == list(fast.state_dict())
    fast.load_state_dict(plain.state_dict())
    plain.load_state_dict(fast.state_dict())
    assert fast.genotype() == plain.genotype()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    plain.eval()
    fast.eval()
    torch.testing.assert_close(fast(x), plain(x))
    fast.options = PLAIN  # switching paths on a live model keeps the genotype
    assert fast.genotype() == plain.genotype()


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_weighted_batch_norm_equals_scaled_batch_norm(channels_last: bool, train: bool) -> None:
    """Also a regression test: torch 2.14's CPU channels-last BatchNorm backward misreads a
    stride-0 weight, so the weight must be a real copy."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for affine in (False, True):
        bn = nn.BatchNorm2d(8, affine=affine).double().train(train)
        if affine:
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_()
        ref_bn = copy.deepcopy(bn)
        x = torch.randn(3, 8, 4, 4, dtype=torch.float64).to(memory_format=fmt).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        alpha = torch.randn(3, dtype=torch.float64, requires_grad=True)
        grad_out = torch.randn(3, 8, 4, 4, dtype=torch.float64).to(memory_format=fmt)
        out = weighted_batch_norm(bn, x, alpha.softmax(0)[1])
        ref = ref_bn(x_ref) * alpha.softmax(0)[1]
        torch.testing.assert_close(out, ref)
        params = [x, alpha] + ([bn.weight, bn.bias] if affine else [])
        ref_params = [x_ref, alpha] + ([ref_bn.weight, ref_bn.bias] if affine else [])
        for got, want in zip(
            torch.autograd.grad(out, params, grad_out), torch.autograd.grad(ref, ref_params, grad_out)
        ):
            torch.testing.assert_close(got, want)
        for got, want in zip(bn.buffers(), ref_bn.buffers()):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7])
def test_fused_mixed_op_equals_plain(stride: int, size: int) -> None:
    torch.manual_seed(0)
    mixed = MixedOp(4, stride).double()
    x0 = torch.randn(3, 4, size, size, dtype=torch.float64)
    alpha0 = torch.randn(8, dtype=torch.float64)
    results = []
    for fused, depthwise in ((False, False), (True, False), (True, True)):
        x = x0.clone().to(memory_format=torch.channels_last).requires_grad_()
        alpha = alpha0.clone().requires_grad_()
        mixed.zero_grad()
        if fused:
            node = NodeSum()
            mixed.forward_fused(EdgeInput(x), alpha.softmax(0), node, depthwise)
            out = node.result(x.shape[0])
        else:
            out = mixed(x, alpha.softmax(0))
        out.pow(2).sum().backward()
        grads = [p.grad.clone() for p in mixed.parameters()]
        results.append((out.detach(), x.grad, alpha.grad, grads))
    for result in results[1:]:
        for got, want in zip(result[:3], results[0][:3]):
            torch.testing.assert_close(got, want)
        for got, want in zip(result[3], results[0][3]):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize(
    "kernel, stride, size", [(3, 1, 8), (3, 1, 2), (3, 2, 9), (5, 1, 8), (5, 2, 9), (7, 1, 9), (5, 2, 8), (5, 1, 5)]
)
def test_depthwise_conv2d_matches_conv2d(kernel: int, stride: int, size: int, channels_last: bool) -> None:
    """Forward, input and weight gradients (float64) equal the native convolution's."""
    torch.manual_seed(0)
    pad = kernel // 2
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(3, 1, kernel, kernel, dtype=torch.float64)
    outs, grads = [], []
    for fn in (lambda a, b: F.conv2d(a, b, None, stride, pad, 1, 3), lambda a, b: fastops.depthwise_conv2d(a, b, stride, pad)):
        a, b = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = fn(a, b)
        grads.append(torch.autograd.grad(out, (a, b), torch.ones_like(out) + out.detach()))
        outs.append(out.detach())
    torch.testing.assert_close(outs[1], outs[0])
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kernel", [3, 5])
def test_dilated_conv_on_phases(kernel: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64).to(memory_format=torch.channels_last)
    w = torch.randn(3, 1, kernel, kernel, dtype=torch.float64)
    dilated = F.conv2d(x, w, None, 1, kernel - 1, 2, 3)
    phases = fastops.to_phases(x)
    assert phases.shape == (8, 3, 4, 3)
    torch.testing.assert_close(phases[2 * 2 + 0 * 2 : 2 * 2 + 2], x[:, :, 1::2, 0::2])  # phase (1, 0)
    on_phases = fastops.depthwise_conv2d(phases, w, 1, kernel // 2)
    back = fastops.from_nhwc6(fastops.phases_to_nhwc(on_phases, 2))
    torch.testing.assert_close(back, dilated)
    strided = F.conv2d(x, w, None, 2, kernel - 1, 2, 3)
    torch.testing.assert_close(fastops.depthwise_conv2d(fastops.even_phase(x), w, 1, kernel // 2), strided)


# --------------------------------------------------------------------------- options


def test_options_validation_and_plain() -> None:
    assert SupernetOptions() == SupernetOptions(True, True, True, False, False)
    assert not any(attr for attr in (PLAIN.fused_edges, PLAIN.channels_last, PLAIN.depthwise, PLAIN.compile))
    with pytest.raises(TypeError, match="SupernetOptions.channels_last must be True or False, got 1"):
        SupernetOptions(channels_last=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depthwise=True needs fused_edges=True"):
        SupernetOptions(fused_edges=False)
    with pytest.raises(TypeError, match="DartsSupernet.options must be a SupernetOptions"):
        make_supernet(8).options = "fast"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        DartsSpace(options="plain")  # type: ignore[arg-type]


def test_options_are_gin_configurable() -> None:
    gin.parse_config("SupernetOptions.channels_last = False\nSupernetOptions.depthwise = False")
    assert DartsSpace().options == SupernetOptions(channels_last=False, depthwise=False)
    supernet = DartsSpace(channels=2, layers=2).supernet()
    assert supernet.options.channels_last is False and supernet.options.fused_edges is True


def test_bf16_autocast_is_cuda_only() -> None:
    net = make_supernet(8, SupernetOptions(bf16_autocast=True), layers=2)
    with pytest.raises(RuntimeError, match="bf16_autocast is CUDA only"):
        net(torch.rand(1, 3, 8, 8, dtype=torch.float64))


def test_compile_switch_wraps_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile takes minutes on a CPU; here it is replaced by a stub to test the wiring."""
    compiled: List[object] = []

    def fake_compile(fn):  # type: ignore[no-untyped-def]
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    net = make_supernet(8, SupernetOptions(compile=True), layers=2)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    out = net(x)
    net(x)
    assert len(compiled) == 1
    net.options = PLAIN
    torch.testing.assert_close(out, net(x))
    clone = pickle.loads(pickle.dumps(net))  # the compiled function is not pickled
    assert "_compiled_forward" not in clone.__dict__
    copy.deepcopy(net)


def test_compile_failure_names_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    class BackendCompilerFailed(Exception):  # noqa: N818 - torch._dynamo's name
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"

    def broken(x, *flags):  # type: ignore[no-untyped-def]
        raise BackendCompilerFailed("no compiler")

    monkeypatch.setattr(torch, "compile", lambda fn: broken)
    net = make_supernet(8, SupernetOptions(compile=True), layers=2)
    with pytest.raises(RuntimeError, match=r"compile=True: torch.compile failed.*compile=False"):
        net(torch.rand(1, 3, 8, 8, dtype=torch.float64))
