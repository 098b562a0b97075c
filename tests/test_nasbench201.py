"""NAS-Bench-201 space: genotypes, derivation, networks, supernet and pictures.

The reference implementation (``xautodl``, NAS-Bench-201's own code) is optional: the tests that
compare against it skip when it is not installed; hard-coded counts from it always run.
"""

from __future__ import annotations

import collections
import json
from typing import Dict, List

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from rnasframe.interfaces.search_space import InputSpec, Picture
from rnasframe.spaces.nasbench201 import (
    EDGES,
    OPERATIONS,
    NasBench201Genotype,
    NasBench201Network,
    NasBench201Space,
    NasBench201Supernet,
    derive_genotype,
    genotype_from_dict,
    genotype_to_dict,
    parse_architecture,
)

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"

genotypes = st.lists(st.sampled_from(OPERATIONS), min_size=6, max_size=6).map(
    lambda ops: NasBench201Genotype(tuple(ops))
)


def _uniform(op: str) -> str:
    return "+".join("|" + "|".join(f"{op}~{j}" for j in range(i)) + "|" for i in range(1, 4))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- genotypes ------------------------------------------------------------------------------


def test_operations_and_edge_order() -> None:
    assert OPERATIONS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_string_of_example() -> None:
    genotype = parse_architecture(EXAMPLE)
    assert genotype.operations == (
        "nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect"
    )
    assert str(genotype) == EXAMPLE
    assert genotype_to_dict(genotype) == {"arch_str": EXAMPLE}


@settings(max_examples=50, deadline=None)
@given(genotypes)
def test_round_trips(genotype: NasBench201Genotype) -> None:
    space = NasBench201Space()
    assert parse_architecture(str(genotype)) == genotype
    assert genotype_from_dict(json.loads(json.dumps(genotype_to_dict(genotype)))) == genotype
    assert space.resolve_genotype(str(genotype)) == genotype
    assert space.resolve_genotype(json.dumps(space.genotype_to_dict(genotype))) == genotype


def test_parser_accepts_inputs_in_any_order() -> None:
    shuffled = "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|nor_conv_3x3~1|skip_connect~0|"
    assert parse_architecture(shuffled) == parse_architecture(EXAMPLE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (EXAMPLE.replace("avg_pool_3x3", "max_pool_3x3"), "unknown operation 'max_pool_3x3'"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "node group"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", "has 1 edge"),
        (EXAMPLE.replace("skip_connect~2", "skip_connect~3"), "bad input index '3'"),
        (EXAMPLE.replace("avg_pool_3x3~1", "avg_pool_3x3~0"), "appears twice"),
        (EXAMPLE.replace("nor_conv_3x3~0|+", "nor_conv_3x3|+", 1), "must be 'op~input'"),
    ],
)
def test_parser_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_architecture(text)
    assert "\n" not in str(error.value)


def test_bad_genotypes_rejected() -> None:
    with pytest.raises(ValueError, match="tuple of 6"):
        NasBench201Genotype(("none",) * 5)
    with pytest.raises(ValueError, match="unknown operation 'sep_conv_3x3'"):
        NasBench201Genotype(("sep_conv_3x3",) * 6)
    with pytest.raises(ValueError, match="arch_str"):
        genotype_from_dict({"normal": []})
    with pytest.raises(ValueError, match="does not parse"):
        NasBench201Space().resolve_genotype("{not json")
    with pytest.raises(TypeError, match="NasBench201Genotype or an architecture string"):
        NasBench201Space().network(42)


# --- derivation -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=30, max_size=30), st.booleans())
def test_derivation_is_argmax_over_all_operations(values: List[float], ties: bool) -> None:
    alpha = np.asarray(values, dtype=np.float32).reshape(6, 5)  # the supernet's dtype
    if ties:  # quantize: exercise ties, which go to the first operation
        alpha = np.round(alpha)
    expected = []
    for row in alpha.tolist():  # independent: a plain Python scan keeping the first maximum
        best = 0
        for k, value in enumerate(row):
            if value > row[best]:
                best = k
        expected.append(OPERATIONS[best])
    assert derive_genotype(torch.from_numpy(alpha)).operations == tuple(expected)
    assert derive_genotype(alpha).operations == tuple(expected)


def test_derivation_keeps_none() -> None:
    alpha = torch.zeros(6, 5)
    alpha[:, 0] = 1.0
    assert str(derive_genotype(alpha)) == _uniform("none")
    supernet = NasBench201Space(channels=2, cells_per_stage=1).supernet(10)
    with torch.no_grad():
        supernet.alpha.copy_(alpha)
    assert str(supernet.genotype()) == _uniform("none")


def test_derivation_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
        derive_genotype(torch.zeros(6, 8))
    with pytest.raises(ValueError, match="finite"):
        derive_genotype(torch.full((6, 5), float("nan")))


# --- stand-alone network ----------------------------------------------------------------------

#: NAS-Bench-201's TinyNetwork(C=16, N=5) parameter counts (measured with xautodl 1.0.0).
REFERENCE_COUNTS: Dict[tuple, int] = {
    (_uniform("nor_conv_3x3"), 10): 1_531_546,
    (_uniform("nor_conv_3x3"), 100): 1_537_396,
    (_uniform("nor_conv_1x1"), 10): 241_306,
    (_uniform("skip_connect"), 10): 73_306,
    (_uniform("none"), 120): 80_456,
    (_uniform("avg_pool_3x3"), 10): 73_306,
    (EXAMPLE, 10): 802_426,
    (EXAMPLE, 100): 808_276,
    ("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|", 10): 372_346,
}


@pytest.mark.parametrize(("arch", "num_classes"), list(REFERENCE_COUNTS))
def test_parameter_counts_hard_coded(arch: str, num_classes: int) -> None:
    assert _count(NasBench201Space().network(arch, num_classes)) == REFERENCE_COUNTS[(arch, num_classes)]


def test_network_forward_backward_small() -> None:
    space = NasBench201Space(network_channels=4, network_cells_per_stage=1)
    spec = InputSpec((1, 8, 8), mean=(0.5,), std=(0.25,))
    for arch in (EXAMPLE, _uniform("none")):
        net = space.network(arch, 7, spec)
        x = torch.rand(3, 1, 8, 8)
        out = net(x)
        assert out.shape == (3, 7) and torch.isfinite(out).all()
        out.sum().backward()
        net.eval()
        assert net(x).shape == (3, 7)


# --- supernet -------------------------------------------------------------------------------


def test_supernet_parameters_and_forward() -> None:
    supernet = NasBench201Space(channels=4, cells_per_stage=1).supernet(10, InputSpec((3, 8, 8)))
    arch = supernet.arch_parameters()
    assert [tuple(a.shape) for a in arch] == [(6, 5)]
    assert list(supernet.arch_parameter_names) == ["cell"] and list(supernet.op_names) == list(OPERATIONS)
    weights = list(supernet.weight_parameters())
    assert {id(p) for p in weights}.isdisjoint({id(a) for a in arch})
    assert len(weights) + 1 == len(list(supernet.parameters()))
    supernet(torch.rand(2, 3, 8, 8)).logsumexp(1).sum().backward()
    assert arch[0].grad is not None and torch.isfinite(arch[0].grad).all()
    # the edge BatchNorms of the cells have no affine parameters
    assert all(not m.affine for cell in supernet.cells if hasattr(cell, "bn3x3") for m in cell.modules()
               if isinstance(m, nn.BatchNorm2d))


def _copy_into_network(supernet: NasBench201Supernet, network: NasBench201Network) -> None:
    """Give ``network`` the supernet's weights: shared names as they are, each edge's block of the
    source node's stacked convolution for the genotype's convolutions."""
    source = supernet.state_dict()
    target = network.state_dict()
    for key in target:
        if key in source:
            target[key] = source[key].clone()
    for index, cell in enumerate(network.cells):
        for name, op in getattr(cell, "edges", {}).items():
            if isinstance(op, nn.Sequential):  # ReLU, conv, BatchNorm (affine: weight 1, bias 0)
                i, j = (int(s) for s in name.split("<-"))
                conv = "conv1x1" if op[1].kernel_size == (1, 1) else "conv3x3"
                width = op[1].out_channels
                block = slice((i - j - 1) * width, (i - j) * width)
                stacked = source[f"cells.{index}.{conv}.{j}.weight"]
                target[f"cells.{index}.edges.{name}.1.weight"] = stacked[block].clone()
    network.load_state_dict(target)


@settings(max_examples=8, deadline=None)
@given(genotypes)
def test_supernet_with_one_hot_alpha_is_the_network(genotype: NasBench201Genotype) -> None:
    """With softmax(alpha) exactly one-hot, the supernet computes the genotype's network (float64)."""
    torch.manual_seed(1)
    channels, spec = 3, InputSpec((3, 8, 8))
    for channels_last in (False, True):
        space = NasBench201Space(channels=channels, cells_per_stage=1, network_channels=channels,
                                 network_cells_per_stage=1, channels_last=channels_last)
        supernet = space.supernet(5, spec).double()
        with torch.no_grad():
            supernet.alpha.fill_(-1e4)
            for e, name in enumerate(genotype.operations):
                supernet.alpha[e, OPERATIONS.index(name)] = 0.0
        network = space.network(genotype, 5, spec).double()
        _copy_into_network(supernet, network)
        x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
        torch.testing.assert_close(supernet(x), network(x), rtol=1e-9, atol=1e-9)
        supernet.eval(), network.eval()  # running statistics were updated alike
        torch.testing.assert_close(supernet(x), network(x), rtol=1e-9, atol=1e-9)


def test_channels_last_changes_nothing() -> None:
    torch.manual_seed(2)
    a = NasBench201Space(channels=4, cells_per_stage=1, channels_last=False).supernet(10, InputSpec((3, 8, 8)))
    b = NasBench201Space(channels=4, cells_per_stage=1, channels_last=True).supernet(10, InputSpec((3, 8, 8)))
    b.load_state_dict(a.state_dict())
    a.double(), b.double()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    ga = torch.autograd.grad(ya.square().sum(), list(a.parameters()))
    gb = torch.autograd.grad(yb.square().sum(), list(b.parameters()))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v)


# --- pictures and metrics ---------------------------------------------------------------------


def test_save_pictures(tmp_path) -> None:
    space = NasBench201Space()
    history = {"cell": [np.full((6, 5), 0.2), np.eye(6, 5)]}
    pictures = space.save_pictures(parse_architecture(EXAMPLE), history, tmp_path / "run")
    assert [p.tag for p in pictures] == ["cell", "alpha/cell"]
    assert all(isinstance(p, Picture) and p.path.is_file() and p.path.stat().st_size > 0 for p in pictures)
    assert [p.tag for p in space.save_pictures(EXAMPLE, {"cell": []}, tmp_path)] == ["cell"]
    with pytest.raises(ValueError, match=r"shape \(6, 5\)"):
        space.save_pictures(EXAMPLE, {"cell": [np.zeros((6, 8))]}, tmp_path)


def test_only_the_skip_count_without_data() -> None:
    expected = float(str(EXAMPLE).count("skip_connect"))
    assert NasBench201Space().genotype_metrics(parse_architecture(EXAMPLE)) == {"cell_skip_connect": expected}
    NasBench201Space().set_epoch(nn.Linear(1, 1), 0, 1)  # nothing to schedule


def test_conformance_kit() -> None:
    testing = pytest.importorskip("rnasframe.testing")
    check = getattr(testing, "check_search_space", None)
    if check is None:
        pytest.skip("rnasframe.testing.check_search_space is not available")
    check(NasBench201Space(channels=2, cells_per_stage=1, network_channels=2, network_cells_per_stage=1),
          input_spec=InputSpec((1, 8, 8)), num_classes=3)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_scaled_batch_norm_is_batch_norm_times_scale(training: bool, track: bool, momentum) -> None:
    from rnasframe.spaces.nasbench201.supernet import _scaled_batch_norm

    torch.manual_seed(3)
    ours, reference = (nn.BatchNorm2d(4, affine=False, momentum=momentum).double() for _ in range(2))
    with torch.no_grad():
        for bn in (ours, reference):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    reference.load_state_dict(ours.state_dict())
    for bn in (ours, reference):
        bn.train(training)
        bn.track_running_stats = track
    scale = torch.rand(4, dtype=torch.float64)
    for _ in range(2):
        z = torch.randn(3, 4, 5, 5, dtype=torch.float64)
        torch.testing.assert_close(_scaled_batch_norm(ours, z, scale), reference(z) * scale.view(1, -1, 1, 1))
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value)


def test_rnas_max_step_runs() -> None:
    """PGD's inner loop switches running statistics off; the outer graph must stay valid."""
    from rnasframe.bilevel import FirstOrderDarts
    from rnasframe.objective import RobustObjective
    from rnasframe.perturbations import LinfBall, PGDMaximizer
    from rnasframe.regularizers import PerturbationConsistency
    from rnasframe.similarity import KLSimilarity

    supernet = NasBench201Space(channels=2, cells_per_stage=1).supernet(3, InputSpec((1, 8, 8)))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    optimizer = FirstOrderDarts()
    optimizer.setup(supernet, 1)
    objective = RobustObjective(regularizers=[PerturbationConsistency(
        weight=1.0, similarity=KLSimilarity(), perturbation=PGDMaximizer(ball=LinfBall(epsilon=0.03), steps=2))])
    batch = (torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4,)))
    optimizer.step(supernet, objective, batch, batch, True)
    assert not torch.equal(before["alpha"], supernet.alpha.detach())


def _aten_ops(supernet: NasBench201Supernet, x: torch.Tensor) -> "collections.Counter[str]":
    """The aten operators of one forward and backward pass, by name."""

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: "collections.Counter[str]" = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    with Count() as counter:
        supernet(x).sum().backward()
    return counter.ops


def test_mixing_weights_are_computed_once_per_width() -> None:
    """Adding cells adds only their own operators: the per-edge weights are laid out once per width."""
    x = torch.rand(2, 3, 8, 8)
    one, two = (_aten_ops(NasBench201Space(channels=2, cells_per_stage=n).supernet(10, InputSpec((3, 8, 8))), x)
                for n in (1, 2))
    extra = two - one  # the 3 added cells
    assert one["index"] == 3 * 3  # the edges of each of 3 source nodes, once for each of 3 widths
    assert all(extra[name] == 0 for name in ("select", "index", "unbind", "expand", "stack"))
    assert extra["convolution"] == 3 * 6  # per cell: 1x1 and 3x3 for each of the 3 source nodes
    assert sum(extra.values()) <= 3 * 180  # per added cell, forward and backward (176 with torch 2.14)
