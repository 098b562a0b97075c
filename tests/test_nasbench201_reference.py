"""The NAS-Bench-201 space against NAS-Bench-201's own code (the ``xautodl`` package).

Skipped when ``xautodl`` is not installed (``pip install --no-deps xautodl``; it needs only torch).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rnasframe.spaces.nasbench201 import OPERATIONS, NasBench201Genotype, NasBench201Space, derive_genotype

tiny_network = pytest.importorskip("xautodl.models.cell_infers.tiny_network")
search_darts = pytest.importorskip("xautodl.models.cell_searchs.search_model_darts")
structures = pytest.importorskip("xautodl.models.cell_searchs.genotypes")

genotypes = st.lists(st.sampled_from(OPERATIONS), min_size=6, max_size=6).map(
    lambda ops: NasBench201Genotype(tuple(ops))
)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _reference_count(genotype: NasBench201Genotype, num_classes: int, channels: int = 16, cells: int = 5) -> int:
    structure = structures.Structure.str2structure(str(genotype))
    return _count(tiny_network.TinyNetwork(channels, cells, structure, num_classes))


def _with_counts(n1x1: int, n3x3: int, rng: random.Random) -> NasBench201Genotype:
    """A genotype with ``n1x1`` 1x1 and ``n3x3`` 3x3 convolutions at random edges, the rest random."""
    ops = ["nor_conv_1x1"] * n1x1 + ["nor_conv_3x3"] * n3x3
    ops += [rng.choice(("none", "skip_connect", "avg_pool_3x3")) for _ in range(6 - len(ops))]
    rng.shuffle(ops)
    return NasBench201Genotype(tuple(ops))


def test_parameter_counts_equal_the_reference_for_every_count_of_convolutions() -> None:
    """A network's parameter count depends only on how many 1x1 and 3x3 convolutions its cell has
    (both implementations; see the property test below): the 28 possible pairs cover all 15,625
    architectures."""
    rng = random.Random(0)
    space = NasBench201Space()
    for n1x1, n3x3 in itertools.product(range(7), range(7)):
        if n1x1 + n3x3 <= 6:
            genotype = _with_counts(n1x1, n3x3, rng)
            assert _count(space.network(genotype, 10)) == _reference_count(genotype, 10), genotype


@settings(max_examples=25, deadline=None)
@given(genotypes, st.sampled_from([10, 100, 120]))
def test_parameter_counts_equal_the_reference(genotype: NasBench201Genotype, num_classes: int) -> None:
    assert _count(NasBench201Space().network(genotype, num_classes)) == _reference_count(genotype, num_classes)


def _reference_supernet(channels: int, cells: int, num_classes: int) -> nn.Module:
    return search_darts.TinyNetworkDarts(channels, cells, 4, num_classes, list(OPERATIONS), False, True)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=30, max_size=30))
def test_derivation_equals_the_reference(values) -> None:
    reference = _reference_supernet(2, 1, 10)
    alpha = torch.tensor(values, dtype=torch.float32).view(6, 5)
    with torch.no_grad():
        reference.arch_parameters.copy_(alpha)
    assert str(derive_genotype(alpha)) == reference.genotype().tostr()


def _load_reference_weights(ours: nn.Module, reference: nn.Module) -> None:
    """Give our supernet the reference supernet's weights (and zero the reference's conv biases,
    which the BatchNorm after them cancels in training mode but which shift running means)."""
    target = ours.state_dict()
    for name, value in reference.state_dict().items():
        value = value.clone()
        if name == "arch_parameters":
            target["alpha"] = value
            continue
        if ".edges." in name:  # cells.<c>.edges.<i><-<j>.<op>.op.<1: conv | 2: bn>.<what>
            parts = name.split(".")
            cell, edge, op, layer, what = int(parts[1]), parts[3], int(parts[4]), int(parts[6]), parts[7]
            i, j = (int(s) for s in edge.split("<-"))
            kind = {2: "1x1", 3: "3x3"}[op]
            module = f"conv{kind}" if layer == 1 else f"bn{kind}"
            if what == "bias" and layer == 1:
                continue
            if what == "num_batches_tracked":
                target[f"cells.{cell}.{module}.{j}.{what}"] = value
                continue
            width = value.shape[0]
            block = slice((i - j - 1) * width, (i - j) * width)
            target[f"cells.{cell}.{module}.{j}.{what}"][block] = value
            continue
        name = name.replace("lastact.", "last.").replace("downsample.", "shortcut.").replace(".op.", ".")
        target[name] = value
    ours.load_state_dict(target)
    with torch.no_grad():
        for name, parameter in reference.named_parameters():
            if ".edges." in name and name.endswith(".bias"):
                parameter.zero_()


def test_supernet_equals_the_reference() -> None:
    """Same weights, same alpha: same logits, gradients and running statistics (float64)."""
    torch.manual_seed(0)
    for channels_last in (False, True):
        reference = _reference_supernet(3, 2, 10).double()
        ours = NasBench201Space(channels=3, cells_per_stage=2, channels_last=channels_last).supernet(10).double()
        with torch.no_grad():
            reference.arch_parameters.normal_()
        _load_reference_weights(ours, reference)
        x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
        _, expected = reference(x)
        got = ours(x)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        edge = reference.cells[0].edges["2<-0"]  # block 1 of source node 0's stacked convolutions
        g_ref = torch.autograd.grad(expected.square().sum(), [reference.arch_parameters, edge[3].op[1].weight,
                                                              edge[2].op[1].weight, reference.stem[0].weight])
        cell = ours.cells[0]
        g_ours = torch.autograd.grad(got.square().sum(), [ours.alpha, cell.conv3x3[0].weight,
                                                          cell.conv1x1[0].weight, ours.stem[0].weight])
        torch.testing.assert_close(g_ours[0], g_ref[0], rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(g_ours[1][3:6], g_ref[1], rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(g_ours[2][3:6], g_ref[2], rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(g_ours[3], g_ref[3], rtol=1e-8, atol=1e-10)
        reference.eval(), ours.eval()
        torch.testing.assert_close(ours(x), reference(x)[1], rtol=1e-10, atol=1e-10)
