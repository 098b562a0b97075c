"""Tests of the DARTS search space: operations, genotypes, supernet, stand-alone network, space."""

from __future__ import annotations

import copy
import json
from typing import Any, List, Sequence, Tuple

import gin
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnasframe.interfaces.search_space import InputSpec, NetworkOutput, SearchSpace, Supernet
from rnasframe.modules import Normalize
from rnasframe.spaces import DartsSpace as ReexportedDartsSpace
from rnasframe.spaces.darts import PRIMITIVES, DartsNetworkConfig, DartsSpace, derive_genotype, genotypes
from rnasframe.spaces.darts.genotypes import Genotype, num_edges
from rnasframe.spaces.darts.network import Cell, DartsNetwork, drop_path
from rnasframe.spaces.darts.operations import OPS, FactorizedReduce, Identity, make_op
from rnasframe.spaces.darts.supernet import MixedOp

SMALL = dict(channels=4, layers=3)
NONE = PRIMITIVES.index("none")


def small_space() -> DartsSpace:
    return DartsSpace(channels=4, layers=3)


def network_space(**config: Any) -> DartsSpace:
    """A space whose stand-alone networks are built with ``DartsNetworkConfig(**config)``."""
    return DartsSpace(channels=4, layers=3, network_config=DartsNetworkConfig(**config))


def alphas_deriving(
    cell: Sequence[Tuple[str, int]], steps: int, none_logit: float = 0.0
) -> torch.Tensor:
    """Alphas whose DARTS derivation is exactly ``cell`` (edges in the listed order).

    The first edge of each node gets logit 10 on its op, the second logit 9, every other entry 0,
    except the ``none`` column, which gets ``none_logit`` on every row (derivation must ignore it).
    """
    alphas = torch.zeros(num_edges(steps), len(PRIMITIVES))
    alphas[:, NONE] = none_logit
    start = 0
    for node in range(steps):
        (op_a, j_a), (op_b, j_b) = cell[2 * node], cell[2 * node + 1]
        alphas[start + j_a, PRIMITIVES.index(op_a)] = 10.0
        alphas[start + j_b, PRIMITIVES.index(op_b)] = 9.0
        start += node + 2
    return alphas


# --------------------------------------------------------------------------- primitives & genotypes


def test_primitives_and_ops_are_in_darts_order() -> None:
    assert PRIMITIVES == [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    ]
    assert list(OPS) == PRIMITIVES


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_op_keeps_channels_and_strides(name: str, stride: int) -> None:
    op = make_op(name, 4, stride, affine=True)
    for size in (8, 7):
        out = op(torch.randn(2, 4, size, size))
        expected = size if stride == 1 else (size + 1) // 2
        assert out.shape == (2, 4, expected, expected)


def test_make_op_rejects_unknown_name() -> None:
    with pytest.raises(ValueError, match="conv_7x7.*allowed: none, max_pool_3x3"):
        make_op("conv_7x7", 4, 1, affine=True)


def test_skip_connect_is_identity_only_with_stride_1() -> None:
    assert isinstance(make_op("skip_connect", 4, 1, True), Identity)
    assert isinstance(make_op("skip_connect", 4, 2, True), FactorizedReduce)


def test_published_genotypes() -> None:
    assert genotypes.Genotype._fields == ("normal", "normal_concat", "reduce", "reduce_concat")
    assert genotypes.DARTS is genotypes.DARTS_V2
    assert genotypes.DARTS_V2.normal == [
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
    ]  # fmt: skip
    assert genotypes.DARTS_V2.reduce == [
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
    ]  # fmt: skip
    assert genotypes.DARTS_V1.normal == [
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
        ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2),
    ]  # fmt: skip
    assert genotypes.DARTS_V1.reduce == [
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0),
    ]  # fmt: skip
    for genotype in (genotypes.DARTS_V1, genotypes.DARTS_V2):
        assert genotype.normal_concat == genotype.reduce_concat == [2, 3, 4, 5]


def test_by_name() -> None:
    assert genotypes.by_name("DARTS_V1") is genotypes.DARTS_V1
    assert genotypes.by_name("DARTS") is genotypes.DARTS_V2
    with pytest.raises(ValueError, match="'DARTS_V3'.*DARTS, DARTS_V1, DARTS_V2"):
        genotypes.by_name("DARTS_V3")


#: DARTS_V1 as DARTS' own logs print it (concatenated nodes as ``range``).
DARTS_V1_LOGGED = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=range(2, 6))"
)


def test_resolve_genotype_reads_names_json_and_printed_genotypes() -> None:
    space = DartsSpace()
    for name, genotype in genotypes.PUBLISHED.items():
        assert space.resolve_genotype(name) == genotype
        assert space.resolve_genotype(f"  {name}\n") == genotype
        assert space.resolve_genotype(json.dumps(space.genotype_to_dict(genotype))) == genotype
        assert space.resolve_genotype(str(genotype)) == genotype
    assert space.resolve_genotype(DARTS_V1_LOGGED) == genotypes.DARTS_V1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 5))
def test_resolve_genotype_round_trips_derived_genotypes(seed: int, steps: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    shape = (num_edges(steps), len(PRIMITIVES))
    genotype = derive_genotype(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator), steps)
    space = DartsSpace(steps=steps, multiplier=steps)
    assert space.resolve_genotype(str(genotype)) == genotype
    assert space.resolve_genotype(json.dumps(space.genotype_to_dict(genotype))) == genotype


@pytest.mark.parametrize(
    "text, match",
    [
        ("DARTS_V3", "unknown genotype 'DARTS_V3'; known names: DARTS, DARTS_V1, DARTS_V2;"),
        ("darts_v2", "known names: DARTS, DARTS_V1, DARTS_V2"),
        ('{"normal": []', "not valid JSON"),
        ('{"normal": [], "reduce": []}', "needs exactly the keys"),
        ("Genotype(normal=__import__('os').getcwd())", "with literal values"),
        ("Genotype(1, 2)", "with literal values"),
        ("Genotype(normal=[('conv_9x9', 0)] * 8, normal_concat=[2], reduce=[], reduce_concat=[2])", "with literal"),
        (str(genotypes.DARTS_V2).replace("'skip_connect', 2", "'skip_connect', 9"), "reads input 9"),
    ],
)
def test_resolve_genotype_errors_name_the_value_and_what_is_allowed(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        DartsSpace().resolve_genotype(text)
    assert "\n" not in str(error.value)


def test_resolve_genotype_checks_the_number_of_nodes() -> None:
    with pytest.raises(ValueError, match="the space has steps=3"):
        DartsSpace(steps=3, multiplier=3).resolve_genotype("DARTS_V2")


# --------------------------------------------------------------------------- genotype derivation


def test_derive_genotype_ignores_a_dominant_none() -> None:
    alphas = torch.zeros(num_edges(2), len(PRIMITIVES))
    # node 0: edge from input 0 is dominated by `none`; from input 1, max_pool wins.
    alphas[0, NONE], alphas[0, PRIMITIVES.index("sep_conv_3x3")] = 5.0, 1.0
    alphas[1, PRIMITIVES.index("max_pool_3x3")] = 2.0
    # node 1: `none` on the edge from input 0 is the largest weight of the whole cell, yet that
    # edge must lose to the two edges whose best real operation is stronger.
    alphas[2, NONE], alphas[2, PRIMITIVES.index("dil_conv_5x5")] = 8.0, 0.5
    alphas[3, PRIMITIVES.index("skip_connect")] = 1.0
    alphas[4, PRIMITIVES.index("avg_pool_3x3")] = 1.5
    genotype = derive_genotype(alphas, alphas, steps=2)
    expected = [("max_pool_3x3", 1), ("sep_conv_3x3", 0), ("avg_pool_3x3", 2), ("skip_connect", 1)]
    assert genotype == Genotype(expected, [2, 3], expected, [2, 3])


def test_derive_genotype_breaks_ties_like_darts() -> None:
    # Uniform weights: the stable sort keeps the lowest inputs and the first real op.
    genotype = derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8))
    assert genotype.normal == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    assert genotype.normal_concat == [2, 3, 4, 5]


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
@pytest.mark.parametrize("none_logit", [0.0, 12.0])
def test_alphas_derive_published_genotypes_exactly(name: str, none_logit: float) -> None:
    target = genotypes.by_name(name)
    normal = alphas_deriving(target.normal, 4, none_logit)
    reduce = alphas_deriving(target.reduce, 4, none_logit)
    assert derive_genotype(normal, reduce) == target
    assert derive_genotype(normal.tolist(), reduce.tolist()) == target


def test_supernet_genotype_uses_its_alphas() -> None:
    supernet = small_space().supernet()
    with torch.no_grad():
        supernet.alphas_normal.copy_(alphas_deriving(genotypes.DARTS_V2.normal, 4))
        supernet.alphas_reduce.copy_(alphas_deriving(genotypes.DARTS_V2.reduce, 4))
    assert supernet.genotype() == genotypes.DARTS_V2


def test_derive_genotype_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"alphas_normal must have shape \(14, 8\).*\(5, 8\)"):
        derive_genotype(torch.zeros(5, 8), torch.zeros(14, 8))
    with pytest.raises(ValueError, match="multiplier"):
        derive_genotype(torch.zeros(14, 8), torch.zeros(14, 8), multiplier=5)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.integers(1, 4),
    data=st.data(),
)
def test_derived_genotype_invariants(steps: int, data: st.DataObject) -> None:
    values = st.floats(-5.0, 5.0, allow_nan=False, width=32)
    shape = (num_edges(steps), len(PRIMITIVES))
    row = st.lists(values, min_size=shape[1], max_size=shape[1])
    rows = data.draw(st.lists(row, min_size=shape[0], max_size=shape[0]))
    alphas = torch.tensor(rows)
    genotype = derive_genotype(alphas, alphas, steps=steps)
    weights = F.softmax(alphas, dim=-1)
    start = 0
    for node in range(steps):
        pairs = genotype.normal[2 * node : 2 * node + 2]
        chosen = [j for _, j in pairs]
        assert len(set(chosen)) == 2 and all(0 <= j < node + 2 for j in chosen)
        strength = [
            max(w for k, w in enumerate(weights[start + j].tolist()) if k != NONE)
            for j in range(node + 2)
        ]
        # chosen edges are listed strongest first and beat every other edge
        assert strength[chosen[0]] >= strength[chosen[1]]
        assert all(strength[chosen[1]] >= strength[j] for j in range(node + 2) if j not in chosen)
        for op, j in pairs:
            assert op != "none"
            row = weights[start + j].tolist()
            assert row[PRIMITIVES.index(op)] == max(w for k, w in enumerate(row) if k != NONE)
        start += node + 2
    assert genotype.normal_concat == list(range(2, steps + 2))
    assert genotype.normal == genotype.reduce


# --------------------------------------------------------------------------- dict round trip


@st.composite
def valid_genotypes(draw: st.DrawFn, steps: int = 4) -> Genotype:
    def cell() -> List[Tuple[str, int]]:
        return [
            (draw(st.sampled_from(PRIMITIVES)), draw(st.integers(0, node + 1)))
            for node in range(steps)
            for _ in range(2)
        ]

    def concat() -> List[int]:
        return draw(st.lists(st.integers(2, steps + 1), min_size=1, max_size=steps, unique=True))

    return Genotype(cell(), concat(), cell(), concat())


@settings(max_examples=50, deadline=None)
@given(genotype=valid_genotypes())
def test_genotype_dict_round_trip_through_json(genotype: Genotype) -> None:
    space = DartsSpace()
    text = json.dumps(space.genotype_to_dict(genotype))
    assert space.genotype_from_dict(json.loads(text)) == genotype


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
def test_published_genotypes_round_trip(name: str) -> None:
    space = DartsSpace()
    genotype = genotypes.by_name(name)
    data = json.loads(json.dumps(space.genotype_to_dict(genotype)))
    assert data["normal"][0] == [genotype.normal[0][0], genotype.normal[0][1]]
    assert space.genotype_from_dict(data) == genotype


def _with(genotype: Genotype, **changes: object) -> dict:
    data = DartsSpace().genotype_to_dict(genotype)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (
            _with(genotypes.DARTS_V2, normal=[["conv_9x9", 0]] + [["skip_connect", 0]] * 7),
            "'conv_9x9'.*allowed: none",
        ),
        (
            _with(genotypes.DARTS_V2, reduce=[["skip_connect", 2]] + [["skip_connect", 0]] * 7),
            r"reduce\[0\] reads input 2.*0\.\.1",
        ),
        (_with(genotypes.DARTS_V2, normal=[["skip_connect", -1]] * 8), "reads input -1"),
        (
            _with(genotypes.DARTS_V2, normal=[["skip_connect", 0]] * 6, reduce=[["skip_connect", 0]] * 6),
            "3 intermediate nodes.*steps=4",
        ),
        (_with(genotypes.DARTS_V2, normal=[["skip_connect", 0]] * 7), "even"),
        (_with(genotypes.DARTS_V2, normal_concat=[2, 6]), "normal_concat contains 6.*2..5"),
        (_with(genotypes.DARTS_V2, reduce_concat=[]), "reduce_concat must be a non-empty"),
        ({"normal": [], "reduce": []}, r"missing \['normal_concat', 'reduce_concat'\]"),
        (_with(genotypes.DARTS_V2, extra=1), r"unknown \['extra'\]"),
    ],
)
def test_genotype_from_dict_rejects_bad_content(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DartsSpace().genotype_from_dict(data)


def test_network_rejects_bad_genotype_at_construction() -> None:
    bad_op = genotypes.DARTS_V2._replace(normal=[("sep_conv_9x9", 0), *genotypes.DARTS_V2.normal[1:]])
    with pytest.raises(ValueError, match="'sep_conv_9x9'.*allowed"):
        small_space().network(bad_op)
    bad_reduce = [*genotypes.DARTS_V2.reduce[:-1], ("max_pool_3x3", 7)]
    bad_index = genotypes.DARTS_V2._replace(reduce=bad_reduce)
    with pytest.raises(ValueError, match=r"reduce\[7\] reads input 7.*0\.\.4"):
        small_space().network(bad_index)
    with pytest.raises(ValueError, match="steps=2"):
        DartsSpace(steps=2, multiplier=2).network(genotypes.DARTS_V2)


# --------------------------------------------------------------------------- space & validation


def test_space_is_a_search_space_and_reexported() -> None:
    assert ReexportedDartsSpace is DartsSpace
    space = DartsSpace()
    assert isinstance(space, SearchSpace)
    fields = (space.channels, space.layers, space.steps, space.multiplier, space.stem_multiplier)
    assert fields == (16, 8, 4, 4, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": 0}, "DartsSpace.channels must be an integer >= 1, got 0"),
        ({"layers": -1}, "DartsSpace.layers must be an integer >= 1, got -1"),
        ({"steps": 0}, "DartsSpace.steps"),
        ({"multiplier": 5}, r"DartsSpace.multiplier must be <= steps \(4\).*got 5"),
    ],
)
def test_space_rejects_bad_hyperparameters(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DartsSpace(**kwargs)


def test_bad_sizes_raise_value_errors() -> None:
    space = small_space()
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        space.supernet(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        space.network(genotypes.DARTS_V2, num_classes=0)
    with pytest.raises(ValueError, match="DartsNetwork.channels must be an integer >= 1, got 0"):
        DartsNetwork(genotypes.DARTS_V2, channels=0)
    with pytest.raises(ValueError, match="DartsNetworkConfig.channels must be an integer >= 1, got 0"):
        DartsNetworkConfig(channels=0)
    with pytest.raises(ValueError, match=r"drop_path_prob must be a number in \[0, 1\), got 1.0"):
        DartsNetwork(genotypes.DARTS_V2, channels=4, layers=3, drop_path_prob=1.0)
    net = network_space(**SMALL).network(genotypes.DARTS_V2)
    with pytest.raises(ValueError, match="drop_path_prob"):
        net.drop_path_prob = -0.1


def test_space_is_gin_configurable() -> None:
    gin.parse_config("DartsSpace.channels = 8\nDartsSpace.layers = 5")
    space = DartsSpace()
    assert (space.channels, space.layers) == (8, 5)
    with pytest.raises(attrs_frozen_error()):
        space.channels = 3  # type: ignore[misc]


def attrs_frozen_error() -> type:
    import attrs

    return attrs.exceptions.FrozenInstanceError


# --------------------------------------------------------------------------- supernet


def test_supernet_full_size_matches_darts() -> None:
    supernet = DartsSpace().supernet(num_classes=10)
    assert len(supernet.cells) == 8
    assert [i for i, cell in enumerate(supernet.cells) if cell.reduction] == [2, 5]
    assert all(len(cell.edges) == 14 for cell in supernet.cells)
    # DARTS' search logs report "param size = 1.930618MB" for this supernet.
    assert sum(p.numel() for p in supernet.weight_parameters()) == 1_930_618


def test_supernet_parameters() -> None:
    supernet = small_space().supernet()
    assert isinstance(supernet, Supernet)
    alphas = supernet.arch_parameters()
    assert [tuple(a.shape) for a in alphas] == [(14, 8), (14, 8)]
    assert alphas[0] is supernet.alphas_normal and alphas[1] is supernet.alphas_reduce
    assert all(isinstance(a, nn.Parameter) and a.requires_grad for a in alphas)
    assert all(a.abs().max() < 1e-2 for a in alphas)  # 1e-3 * randn
    weights = list(supernet.weight_parameters())
    arch_ids = {id(a) for a in alphas}
    assert not any(id(p) in arch_ids for p in weights)
    assert len(weights) + 2 == len(list(supernet.parameters()))
    state = supernet.state_dict()
    assert "alphas_normal" in state and "alphas_reduce" in state


def test_supernet_structure() -> None:
    supernet = small_space().supernet(input_spec=InputSpec((1, 8, 8), mean=(0.5,), std=(0.25,)))
    assert isinstance(next(iter(supernet.children())), Normalize)
    cell_bns = [m for m in supernet.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert cell_bns and all(not bn.affine for bn in cell_bns)
    for edge in supernet.cells[0].edges:
        for primitive, op in zip(PRIMITIVES, edge.ops):
            if "pool" in primitive:
                assert isinstance(op, nn.Sequential) and isinstance(op[1], nn.BatchNorm2d)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (1, 28, 28)])
def test_supernet_forward_backward(shape: Tuple[int, int, int]) -> None:
    supernet = small_space().supernet(num_classes=7, input_spec=InputSpec(shape))
    x = torch.rand(2, *shape)
    logits = supernet(x)
    assert logits.shape == (2, 7)
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    for alpha in supernet.arch_parameters():
        assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert all(p.grad is not None for p in supernet.weight_parameters())


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_skipping_none_equals_naive_sum(stride: int) -> None:
    mixed = MixedOp(4, stride)
    x = torch.randn(3, 4, 8, 8)
    weights = F.softmax(torch.randn(len(PRIMITIVES)), dim=-1)
    naive = sum(w * op(x) for w, op in zip(weights, mixed.ops))
    torch.testing.assert_close(mixed(x, weights), naive)


def test_supernet_output_and_alpha_grads_equal_naive_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    supernet = small_space().supernet()
    with torch.no_grad():
        for alpha in supernet.arch_parameters():
            alpha.normal_()
            alpha[:, NONE] += 2.0  # make `none` matter in the softmax
    x = torch.rand(2, 3, 16, 16)

    def run() -> Tuple[torch.Tensor, List[torch.Tensor]]:
        supernet.zero_grad()
        out = supernet(x)
        out.square().sum().backward()
        return out.detach(), [a.grad.clone() for a in supernet.arch_parameters()]

    fast_out, fast_grads = run()

    def naive_forward(self: MixedOp, inp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(inp) for w, op in zip(weights, self.ops))

    monkeypatch.setattr(MixedOp, "forward", naive_forward)
    naive_out, naive_grads = run()
    torch.testing.assert_close(fast_out, naive_out)
    for fast, naive in zip(fast_grads, naive_grads):
        torch.testing.assert_close(fast, naive)


# --------------------------------------------------------------------------- stand-alone network


def test_darts_v2_parameter_count_matches_darts() -> None:
    net = DartsSpace().network(genotypes.DARTS_V2, num_classes=10)  # the default: C=36, 20 cells, auxiliary
    # DARTS' utils.count_parameters_in_MB: every parameter whose name lacks "auxiliary".
    count = sum(p.numel() for name, p in net.named_parameters() if "auxiliary" not in name)
    assert count == 3_349_342
    assert net.auxiliary_head is not None
    assert isinstance(next(iter(net.children())), Normalize)
    bns = [m for m in net.cells.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.affine for bn in bns)


@pytest.mark.parametrize(
    "spec",
    [
        InputSpec(),
        InputSpec((1, 8, 8), mean=(0.5,), std=(0.25,)),
        InputSpec((3, 16, 16)),
        InputSpec((1, 28, 28)),
    ],
    ids=str,
)
def test_network_trains_one_step(spec: InputSpec) -> None:
    net = network_space(auxiliary=True, **SMALL).network(genotypes.DARTS_V2, num_classes=5, input_spec=spec)
    net.drop_path_prob = 0.2
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.rand(4, *spec.shape), torch.tensor([0, 1, 2, 4])
    before = [p.detach().clone() for p in net.parameters()]
    net.train()
    output = net(x)
    assert isinstance(output, NetworkOutput)
    logits, aux_logits = output
    assert logits.shape == (4, 5)
    assert aux_logits is not None and aux_logits.shape == (4, 5)
    loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux_logits, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is not None for p in net.parameters())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    copy.deepcopy(net)
    net.eval()
    with torch.no_grad():
        assert isinstance(net(x), torch.Tensor) and net(x).shape == (4, 5)
    assert not hasattr(net, "aux_logits")


def test_network_without_auxiliary_head() -> None:
    net = network_space(auxiliary=False, **SMALL).network(genotypes.DARTS_V1)
    assert net.auxiliary_head is None
    assert not any("auxiliary" in name for name, _ in net.named_parameters())
    assert isinstance(net(torch.rand(2, 3, 32, 32)), torch.Tensor)  # a plain tensor in training mode too


def test_network_layout_follows_darts() -> None:
    net = network_space(channels=4, layers=8).network(genotypes.DARTS_V2)
    assert [i for i, cell in enumerate(net.cells) if cell.reduction] == [2, 5]
    assert isinstance(net.cells[3].preprocess0, FactorizedReduce)  # input from a reduction cell
    assert not isinstance(net.cells[4].preprocess0, FactorizedReduce)
    assert net.auxiliary_head is not None
    # the auxiliary head reads cell 2 * layers // 3 = 5 (a reduction cell with 4 * 16 channels)
    assert net.auxiliary_head.features[0].in_channels == 4 * 4 * 4


def test_drop_path_is_per_sample_and_only_in_training() -> None:
    torch.manual_seed(1)
    x = torch.ones(64, 2, 3, 3)
    out = drop_path(x, 0.5)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert drop_path(x, 0.0) is x

    net = network_space(**SMALL).network(genotypes.DARTS_V2)
    net.drop_path_prob = 0.5
    net.eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.manual_seed(0)
        first = net(x)
        torch.manual_seed(1)
        torch.testing.assert_close(net(x), first)


def test_drop_path_skips_identity_ops() -> None:
    edges = [("skip_connect", 0), ("skip_connect", 1)] * 2
    cell = Cell(edges, [2, 3], 4, 4, 4, reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(8, 4, 4, 4), torch.randn(8, 4, 4, 4)
    torch.manual_seed(0)
    first = cell(s0, s1, 0.9)
    torch.manual_seed(1)
    torch.testing.assert_close(cell(s0, s1, 0.9), first)
    torch.testing.assert_close(cell(s0, s1, 0.0), first)

    conv_cell = Cell([("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [2], 4, 4, 4, False, False).train()
    torch.manual_seed(0)
    dropped = conv_cell(s0, s1, 0.9)
    assert not torch.allclose(dropped, conv_cell(s0, s1, 0.0))


def test_drop_path_prob_is_settable() -> None:
    net = network_space(**SMALL).network(genotypes.DARTS_V2)
    assert isinstance(net, DartsNetwork) and net.drop_path_prob == 0.0
    net.drop_path_prob = 0.3
    assert net.drop_path_prob == 0.3
