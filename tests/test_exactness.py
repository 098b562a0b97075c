"""The exactness contract: generator states per run device, pixels, deterministic kernels, float32 mixing.

CUDA's generator layer is replaced by :class:`FakeCuda`, a stand-in installed over ``torch.cuda``'s
own functions (so that the code under test, old or new, goes through it): a machine with ``count``
visible GPUs, each with its own generator state, where an index beyond the visible ones raises
``IndexError`` as ``torch.cuda.default_generators[i]`` does.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine
from rnasframe.checkpoint import CudaGenerators, capture_rng_state, restore_rng_state
from rnasframe.data.images import LabeledImages, byte_to_unit
from rnasframe.data.sources import DataSource
from rnasframe.determinism import CUBLAS_WORKSPACE, Exactness, prepare_cublas
from rnasframe.interfaces.search_space import InputSpec
from rnasframe.perturbations import LinfBall, UniformSampler
from rnasframe.robustness import evaluator
from rnasframe.run import Run
from rnasframe.spaces.darts import DartsSpace, lean
from rnasframe.spaces.darts.genotypes import DARTS_V2
from rnasframe.spaces.darts.network import DartsNetwork, pool_to_2x2
from rnasframe.spaces.darts.supernet import MixedOp, SupernetOptions, weighted
from rnasframe.spaces.nasbench201.genotypes import NasBench201Genotype
from rnasframe.spaces.nasbench201.network import NasBench201Network
from rnasframe.spaces.nasbench201.supernet import NasBench201Supernet

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


# --- generator states per run device -------------------------------------------------------------


class FakeCuda:
    """``count`` visible GPUs with distinct generator states; ``current`` is the current one."""

    def __init__(self, count: int, current: int = 0, salt: int = 0) -> None:
        self.count, self.current = count, current
        self.states = [torch.full((16,), 10 * salt + i, dtype=torch.uint8) for i in range(count)]

    def index(self, device: Any) -> int:
        if isinstance(device, int):
            return device
        device = torch.device(device)
        return self.current if device.index is None else device.index

    def get_rng_state(self, device: Any = "cuda") -> Tensor:
        return self.states[self.index(device)].clone()  # IndexError beyond the visible GPUs

    def set_rng_state(self, state: Tensor, device: Any = "cuda") -> None:
        index = self.index(device)
        if index >= self.count:
            raise IndexError("tuple index out of range")
        self.states[index] = state.clone()

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator["FakeCuda"]:
        with monkeypatch.context() as patch:
            for module in (torch.cuda, torch.cuda.random):
                patch.setattr(module, "device_count", lambda: self.count)
                patch.setattr(module, "get_rng_state", self.get_rng_state)
                patch.setattr(module, "set_rng_state", self.set_rng_state)
            patch.setattr(torch.cuda, "is_available", lambda: self.count > 0)
            patch.setattr(torch.cuda, "current_device", lambda: self.current)
            yield self


def _draws() -> List[Any]:
    return [random.random(), float(np.random.rand()), torch.rand(3).tolist()]


def test_an_eight_gpu_checkpoint_resumes_with_one_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCuda(8, current=0).installed(monkeypatch):
        state = capture_rng_state(torch.device("cuda:0"))
        expected = _draws()
    saved = state["cuda"]
    assert saved["device"] == 0 and saved["device_count"] == 8
    with FakeCuda(1, salt=5).installed(monkeypatch) as one:
        note = restore_rng_state(state, torch.device("cuda:0"))
        assert _draws() == expected  # the CPU generators continue exactly
    assert torch.equal(one.states[0], saved["state"])
    assert note is not None and "cuda:0 of 8 visible GPUs" in note and "cuda:0 of 1" in note


def test_a_checkpoint_of_an_earlier_version_resumes_with_fewer_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Earlier checkpoints hold one state per visible GPU (``get_rng_state_all``)."""
    eight = FakeCuda(8)
    with eight.installed(monkeypatch):
        state = capture_rng_state(torch.device("cuda:0"))
    state["cuda"] = [s.clone() for s in eight.states]
    with FakeCuda(4, current=2, salt=5).installed(monkeypatch) as four:
        note = restore_rng_state(state, torch.device("cuda"))
    assert torch.equal(four.states[2], eight.states[2]) and note is not None and "8 visible" in note
    with FakeCuda(8, salt=5).installed(monkeypatch) as same:
        assert restore_rng_state(state, torch.device("cuda:3")) is None  # same GPU, same count: exact
    assert torch.equal(same.states[3], eight.states[3])


def test_a_run_moved_from_cuda0_to_cuda1_continues_the_generator_it_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCuda(2).installed(monkeypatch) as before:
        state = capture_rng_state(torch.device("cuda:0"))
    used = before.states[0]
    with FakeCuda(2, salt=5).installed(monkeypatch) as after:
        note = restore_rng_state(state, torch.device("cuda:1"))
    assert torch.equal(after.states[1], used)  # not GPU 1's old state
    assert torch.equal(after.states[0], torch.full((16,), 50, dtype=torch.uint8))  # untouched
    assert note is not None and "restored onto cuda:1" in note


def test_the_same_gpu_and_count_resume_exactly_without_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCuda(4, current=3).installed(monkeypatch) as before:
        state = capture_rng_state(torch.device("cuda"))  # the current GPU, not GPU 0
        assert state["cuda"]["device"] == 3
        expected = _draws()
    with FakeCuda(4, current=3, salt=5).installed(monkeypatch) as after:
        assert restore_rng_state(state, torch.device("cuda")) is None
        assert _draws() == expected
    assert torch.equal(after.states[3], before.states[3])


def test_a_cpu_checkpoint_resumes_on_a_gpu_machine_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCuda(0).installed(monkeypatch):
        state = capture_rng_state(torch.device("cpu"))
        expected = _draws()
    assert "cuda" not in state
    with FakeCuda(2, salt=5).installed(monkeypatch) as gpus:
        note = restore_rng_state(state, torch.device("cuda:0"))
        assert _draws() == expected
        assert restore_rng_state(state, torch.device("cpu")) is None  # a CPU run there: exact
    assert torch.equal(gpus.states[0], torch.full((16,), 50, dtype=torch.uint8))
    assert note is not None and "no CUDA generator state" in note


def test_a_gpu_checkpoint_resumes_on_a_cpu_only_machine_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeCuda(8).installed(monkeypatch):
        state = capture_rng_state(torch.device("cuda:5"))
        expected = _draws()
    with FakeCuda(0).installed(monkeypatch):
        note = restore_rng_state(state, torch.device("cpu"))
        assert _draws() == expected
        with pytest.raises(ValueError, match="CUDA is not available"):
            restore_rng_state(state, torch.device("cuda:0"))
    assert note is not None and "cuda:5 of 8" in note and "continues on the CPU" in note


def test_the_cuda_layer_can_be_injected_and_the_state_loads_weights_only(tmp_path: Path) -> None:
    class Stand(CudaGenerators):
        def __init__(self, fake: FakeCuda) -> None:
            self.fake = fake

        def available(self) -> bool:
            return True

        def device_count(self) -> int:
            return self.fake.count

        def current_device(self) -> int:
            return self.fake.current

        def get_state(self, index: int) -> Tensor:
            return self.fake.get_rng_state(index)

        def set_state(self, state: Tensor, index: int) -> None:
            self.fake.set_rng_state(state, index)

    source, target = Stand(FakeCuda(3, current=1)), Stand(FakeCuda(3, current=1, salt=5))
    torch.save(capture_rng_state(cuda=source), tmp_path / "rng.pt")
    state = torch.load(tmp_path / "rng.pt", weights_only=True)
    assert restore_rng_state(state, cuda=target) is None
    assert torch.equal(target.fake.states[1], source.fake.states[1])


# --- pixels ---------------------------------------------------------------------------------------


def _bits(x: Tensor) -> Tensor:
    return x.contiguous().view(torch.int32)


def test_the_byte_table_is_the_cpu_division_bit_for_bit() -> None:
    table = byte_to_unit("cpu")
    assert table.dtype == torch.float32 and table.shape == (256,)
    assert torch.equal(_bits(table), _bits(torch.arange(256, dtype=torch.uint8).float().div_(255.0)))
    exact = torch.from_numpy(np.arange(256, dtype=np.float32) / np.float32(255))  # IEEE division
    assert torch.equal(_bits(table), _bits(exact))


def test_the_reciprocal_product_cuda_uses_rounds_126_bytes_differently() -> None:
    """Why a table: CUDA divides by a host scalar as ``x * (1 / 255)`` (in float32)."""
    reciprocal = torch.tensor(1.0, dtype=torch.float32) / 255.0
    product = torch.arange(256, dtype=torch.float32) * reciprocal
    assert int((_bits(product) != _bits(byte_to_unit())).sum()) == 126


def _devices() -> List[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("device", _devices())
def test_pixels_are_the_same_bits_on_the_device_at_hand(device: str) -> None:
    every_byte = torch.arange(256, dtype=torch.uint8).view(4, 1, 8, 8)
    images = LabeledImages(every_byte, torch.zeros(4, dtype=torch.long), 1)
    on_device = LabeledImages(every_byte.to(device), torch.zeros(4, dtype=torch.long, device=device), 1)
    index = torch.arange(4)
    cpu = images.pixels(index)
    there = on_device.pixels(index.to(device))
    assert there.device.type == device and there.dtype == torch.float32
    assert torch.equal(_bits(there.cpu()), _bits(cpu))
    assert torch.equal(_bits(cpu.flatten()), _bits(byte_to_unit()))


# --- the deterministic switch --------------------------------------------------------------------


def _flags() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )


def test_exactness_defaults_and_validation() -> None:
    exactness = Exactness()
    assert exactness.deterministic_on(torch.device("cpu"))
    assert not exactness.deterministic_on(torch.device("cuda"))
    assert Exactness(deterministic=True).deterministic_on(torch.device("cuda"))
    assert not exactness.tf32
    with pytest.raises(TypeError, match="Exactness.deterministic must be True or False, got 1"):
        Exactness(deterministic=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Exactness.tf32"):
        Exactness(tf32="no")  # type: ignore[arg-type]


def test_exactness_sets_the_flags_and_restores_them() -> None:
    before = _flags()
    with Exactness().applied(torch.device("cpu")) as notes:
        assert notes == []
        assert _flags() == (True, True, False, False, False)
    assert _flags() == before
    with Exactness(deterministic=False, tf32=True).applied(torch.device("cpu")):
        assert _flags()[0] is False and _flags()[3:] == (True, True)
    assert _flags() == before


def test_cublas_workspace_is_set_for_deterministic_cuda_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    with Exactness(deterministic=True).applied(torch.device("cuda")) as notes:
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE and notes == []
        assert torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    assert prepare_cublas() is None and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # too late: say so
    note = prepare_cublas()
    assert note is not None and "export it before starting Python" in note


def test_a_run_applies_the_gin_bound_contract_and_logs_it(tmp_path: Path) -> None:
    before = _flags()
    with Run(tmp_path / "a", "search", False, torch.device("cpu")) as run:
        assert torch.are_deterministic_algorithms_enabled()
        run.open_folder()
    assert _flags() == before
    assert "exactness: deterministic, TF32 off" in (tmp_path / "a" / "log.txt").read_text()
    gin.bind_parameter("Exactness.deterministic", False)
    with Run(tmp_path / "b", "search", False, torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()


# --- pooling without nondeterministic CUDA kernels ----------------------------------------------


def test_the_global_mean_is_adaptive_pooling_to_one_forward_and_backward() -> None:
    x = torch.randn(3, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, dtype=torch.float64)
    old = nn.AdaptiveAvgPool2d(1)(x).flatten(1)
    (old_grad,) = torch.autograd.grad((old * g).sum(), x)
    new = x.mean((2, 3))
    (new_grad,) = torch.autograd.grad((new * g).sum(), x)
    assert torch.equal(new, old) and torch.equal(new_grad, old_grad)
    y = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    assert torch.equal(_bits(y.mean((2, 3))), _bits(nn.AdaptiveAvgPool2d(1)(y).flatten(1)))  # float32 too


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12))
def test_pool_to_2x2_is_adaptive_pooling_to_2x2(h: int, w: int) -> None:
    x = torch.randn(2, 3, h, w, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    old = F.adaptive_avg_pool2d(x, 2)
    (old_grad,) = torch.autograd.grad((old * g).sum(), x)
    new = pool_to_2x2(x)
    (new_grad,) = torch.autograd.grad((new * g).sum(), x)
    torch.testing.assert_close(new, old, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(new_grad, old_grad, rtol=1e-14, atol=1e-15)


class _OpNames(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Optional[Dict] = None) -> Any:
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _networks() -> Dict[str, nn.Module]:
    spec = InputSpec((3, 16, 16))
    return {
        "darts supernet": DartsSpace(channels=2, layers=3).supernet(10, spec),
        "darts network with auxiliary head (4x4 maps)": DartsNetwork(
            DARTS_V2, channels=4, layers=3, auxiliary=True, input_spec=spec
        ),
        "nas-bench-201 supernet": NasBench201Supernet(channels=4, cells_per_stage=1, input_spec=spec),
        "nas-bench-201 network": NasBench201Network(
            NasBench201Genotype.from_string("|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"),
            channels=4, cells_per_stage=1, input_spec=spec,
        ),
    }


@pytest.mark.parametrize("name", list(_networks()))
def test_no_network_runs_adaptive_pooling(name: str) -> None:
    """Adaptive average pooling's CUDA backward has no deterministic kernel (it raises in deterministic mode)."""
    net = _networks()[name].train()
    x = torch.rand(2, 3, 16, 16)
    with _OpNames() as ops:
        out = net(x)
        logits = out if isinstance(out, Tensor) else out.logits + out.aux_logits
        logits.sum().backward()
    assert not {n for n in ops.names if "adaptive" in n}, sorted(ops.names)


# --- float32 mixing under bfloat16 autocast ------------------------------------------------------


def test_weighted_keeps_the_mixing_in_float32() -> None:
    weight = torch.tensor(0.3, requires_grad=True)
    term = torch.randn(4, 8, 5, 5).bfloat16()
    g = torch.randn(4, 8, 5, 5)
    out = weighted(weight, term)
    assert out.dtype == torch.float32
    (out * g).sum().backward()
    expected = (g.double() * term.double()).sum()
    torch.testing.assert_close(weight.grad.double(), expected, rtol=1e-5, atol=1e-6)
    plain = torch.randn(3)
    assert weighted(weight, plain).dtype == torch.float32


def test_alpha_gradient_under_bf16_autocast_is_the_float32_one() -> None:
    """An edge under CPU bfloat16 autocast: alpha's gradient equals the float64 gradient of the same mixture."""
    torch.manual_seed(0)
    edge = MixedOp(8, 1).eval()
    alpha = (torch.randn(8) * 0.5).requires_grad_()
    x = torch.randn(4, 8, 6, 6)
    g = torch.randn(4, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = edge(x, F.softmax(alpha, dim=-1))
        terms = [op(x) for op in edge.ops]  # the operations' own (bfloat16) outputs
    assert out.dtype == torch.float32
    (out.float() * g).sum().backward()
    reference = alpha.detach().double().requires_grad_()
    weights = F.softmax(reference, dim=-1)
    mixture = sum(weights[k] * terms[k].double() for k in range(len(terms)) if k != 0)
    (expected,) = torch.autograd.grad((mixture * g.double()).sum(), reference)
    torch.testing.assert_close(alpha.grad.double(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("path", ["plain", "fused", "lean"])
def test_cells_mix_in_float32_under_bf16_autocast(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell's output (its nodes' weighted sums) is float32 under CPU bfloat16 autocast."""
    options = {
        "plain": SupernetOptions.plain(),
        "fused": SupernetOptions(lean=False, depthwise=False),  # oneDNN has no bfloat16 reformulated kernels
        "lean": SupernetOptions(lean=True, depthwise=False),
    }[path]
    net = DartsSpace(channels=4, layers=3, options=options).supernet(10, InputSpec((3, 8, 8)))
    dtypes: List[torch.dtype] = []
    for cell in net.cells:
        cell.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    lean_cell_forward = lean.lean_cell_forward  # the lean path does not call the cells' forward

    def recorded(*args: Any) -> Tensor:
        out = lean_cell_forward(*args)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(lean, "lean_cell_forward", recorded)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(2, 3, 8, 8)).float().sum().backward()
    assert dtypes == [torch.float32] * 3
    assert all(alpha.grad is not None and alpha.grad.dtype == torch.float32 for alpha in net.arch_parameters())


# --- attack seeding and the benchmark's device ---------------------------------------------------


def test_attack_seeding_forks_the_generator_of_the_gpu_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    forked: List[List[int]] = []

    @contextlib.contextmanager
    def fork_rng(devices: List[int], **kwargs: Any) -> Iterator[None]:
        forked.append(list(devices))
        yield

    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    for device in ("cuda", "cuda:1", "cpu"):
        with evaluator.seeded_randomness(0, torch.device(device)):
            pass
    assert forked == [[3], [1], []]


def test_benchmark_events_are_recorded_on_the_benchmarked_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import search_step
    finally:
        sys.path.remove(str(BENCHMARKS))
    recorded: List[Any] = []
    current = {"device": 0}

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            pass

        def record(self, stream: Any = None) -> None:
            recorded.append(stream if stream is not None else f"stream of cuda:{current['device']}")

        def elapsed_time(self, other: "Event") -> float:
            return 1.0

    @contextlib.contextmanager
    def device(which: Any) -> Iterator[None]:
        previous, current["device"] = current["device"], torch.device(which).index
        yield
        current["device"] = previous

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {torch.device(device)}")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"card {index}")
    assert search_step.timed(lambda: None, torch.device("cuda:1")) == pytest.approx(1e-3)
    assert recorded == ["stream of cuda:1", "stream of cuda:1"]
    assert search_step.device_name(torch.device("cuda:1")) == "card 1 (cuda:1)"
    assert search_step.device_name(torch.device("cuda")) == "card 0 (cuda:0)"
    assert search_step.device_name(torch.device("cpu")) == "cpu"


# --- the run lifecycle's use of them -------------------------------------------------------------


class _Noise(DataSource):
    """64 random 8x8 RGB images in 10 classes (training) and 16 (test)."""

    def _images(self, count: int, seed: int) -> LabeledImages:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (count, 3, 8, 8), dtype=torch.uint8, generator=generator)
        return LabeledImages(images, torch.randint(0, 10, (count,), generator=generator), 10)

    def load_train(self) -> LabeledImages:
        return self._images(64, 0)

    def load_test(self) -> LabeledImages:
        return self._images(16, 1)


@pytest.mark.slow
def test_a_search_resumes_a_gpu_checkpoint_on_the_cpu_exactly_and_logs_the_note(tmp_path: Path) -> None:
    """A checkpoint written on an 8-GPU node (earlier format: one CUDA state per GPU), resumed on the CPU."""

    def engine() -> SearchEngine:
        return SearchEngine(
            space=DartsSpace(channels=2, layers=3), data=_Noise(),
            objective=RobustObjective([PerturbationConsistency(UniformSampler(LinfBall(0.031)), weight=1.0)]),
            optimizer=FirstOrderDarts(), epochs=2, warmup_epochs=0, batch_size=16, seed=3, device="cpu",
            max_steps_per_epoch=1, eval_batches=0,
        )

    engine().run(tmp_path / "straight")
    assert engine().run(tmp_path / "resumed", stop_after_epoch=1) is None
    path = tmp_path / "resumed" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["rng"]["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(8)]
    torch.save(state, path)
    engine().run(tmp_path / "resumed", resume=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(path, weights_only=True)["model"]
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    log = (tmp_path / "resumed" / "log.txt").read_text()
    assert "written on a machine with 8 visible GPUs (earlier format); this run continues on the CPU" in log
    assert "exactness: deterministic, TF32 off" in log


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnasframe.seeding import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"'cuda:1' was asked for, but this process sees 1 GPU\(s\) \(CUDA_VISIBLE_DEVICES=3\)"):
        resolve_device("cuda:1")
