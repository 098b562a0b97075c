"""Tests of the discrepancies f(m(x'), m(x)): KLSimilarity, CosineSimilarity, MSESimilarity."""

from __future__ import annotations

import attrs
import gin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import Tensor

from rnasframe.interfaces import Similarity
from rnasframe.similarity import CosineSimilarity, KLSimilarity, MSESimilarity

FAST = settings(max_examples=80, deadline=None)
ALL = [KLSimilarity(), CosineSimilarity(), MSESimilarity()]
IDS = [type(s).__name__ for s in ALL]

logit_shapes = st.tuples(st.integers(1, 4), st.integers(1, 10))


def logit_arrays(shape: tuple[int, int]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float32, shape, elements=st.floats(-20.0, 20.0, width=32))


@st.composite
def logit_pairs(draw: st.DrawFn) -> tuple[Tensor, Tensor]:
    """Two logit batches: unrelated, or the second a small perturbation of the first."""
    shape = draw(logit_shapes)
    natural = torch.from_numpy(draw(logit_arrays(shape)))
    if draw(st.booleans()):
        perturbed = torch.from_numpy(draw(logit_arrays(shape)))
    else:
        scale = draw(st.sampled_from([1e-6, 1e-3, 1e-1]))
        noise = torch.from_numpy(
            draw(hnp.arrays(np.float32, shape, elements=st.floats(-1.0, 1.0, width=32)))
        )
        perturbed = natural + scale * noise
    return perturbed, natural


def reference_kl(perturbed: np.ndarray, natural: np.ndarray) -> float:
    """KL(softmax(natural) || softmax(perturbed)), batch mean, in float64 numpy."""

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64)
        shifted = z - z.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(natural), log_softmax(perturbed)
    return float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
@FAST
@given(logit_pairs())
def test_non_negative_scalar(similarity: Similarity, pair: tuple[Tensor, Tensor]) -> None:
    value = similarity(*pair)
    assert value.dim() == 0 and value.dtype == pair[0].dtype
    assert torch.isfinite(value)
    assert float(value) >= -1e-6


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
@FAST
@given(logit_shapes.flatmap(logit_arrays))
def test_zero_on_equal_inputs(similarity: Similarity, logits: np.ndarray) -> None:
    a = torch.from_numpy(logits)
    assert float(similarity(a, a.clone())) == 0.0


@FAST
@given(logit_pairs())
def test_kl_matches_float64_reference(pair: tuple[Tensor, Tensor]) -> None:
    perturbed, natural = pair
    expected = reference_kl(perturbed.numpy(), natural.numpy())
    assert float(KLSimilarity()(perturbed, natural)) == pytest.approx(expected, rel=1e-4, abs=1e-5)


@FAST
@given(logit_pairs())
def test_kl_direction_is_trades(pair: tuple[Tensor, Tensor]) -> None:
    perturbed, natural = pair
    trades = F.kl_div(
        F.log_softmax(perturbed.double(), dim=1),
        F.softmax(natural.double(), dim=1),
        reduction="batchmean",
    )
    ours = KLSimilarity()(perturbed.double(), natural.double())
    torch.testing.assert_close(ours, trades, rtol=1e-9, atol=1e-12)


def test_kl_is_asymmetric_in_the_trades_direction() -> None:
    natural = torch.tensor([[4.0, 0.0, 0.0]], dtype=torch.float64)
    perturbed = torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64)
    p, q = F.softmax(natural, dim=1), F.softmax(perturbed, dim=1)
    forward = float((p * (p.log() - q.log())).sum())
    backward = float((q * (q.log() - p.log())).sum())
    assert forward != pytest.approx(backward)
    assert float(KLSimilarity()(perturbed, natural)) == pytest.approx(forward)


def test_kl_is_invariant_to_logit_offsets_but_mse_is_not() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    offset = torch.randn(3, 1)
    torch.testing.assert_close(KLSimilarity()(a + offset, b), KLSimilarity()(a, b))
    assert float(MSESimilarity()(a + offset, b)) != pytest.approx(float(MSESimilarity()(a, b)))


def test_kl_is_finite_for_extreme_logits() -> None:
    natural = torch.tensor([[1000.0, -1000.0, 0.0]])
    perturbed = torch.tensor([[-1000.0, 1000.0, 0.0]])
    value = KLSimilarity()(perturbed, natural)
    assert torch.isfinite(value) and float(value) == pytest.approx(2000.0)


def test_cosine_values() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [4.0, 3.0]])
    per_example = [CosineSimilarity()(a[i : i + 1], b[i : i + 1]) for i in range(4)]
    torch.testing.assert_close(torch.stack(per_example), torch.tensor([0.0, 1.0, 2.0, 1 - 24 / 25]))
    torch.testing.assert_close(CosineSimilarity()(a, b), torch.stack(per_example).mean())
    # All-zero logits: equal inputs still give 0 (a plain cosine would be undefined).
    zeros = torch.zeros(2, 3)
    assert float(CosineSimilarity()(zeros, zeros.clone())) == 0.0


@FAST
@given(logit_pairs())
def test_cosine_matches_one_minus_cos_and_lies_in_0_2(pair: tuple[Tensor, Tensor]) -> None:
    perturbed, natural = (t.double() for t in pair)
    value = float(CosineSimilarity()(perturbed, natural))
    assert -1e-6 <= value <= 2.0 + 1e-6
    norms_ok = (perturbed.norm(dim=1) > 1e-6) & (natural.norm(dim=1) > 1e-6)
    if bool(norms_ok.all()):
        expected = float((1 - F.cosine_similarity(perturbed, natural, dim=1)).mean())
        assert value == pytest.approx(expected, abs=1e-9)


@FAST
@given(logit_pairs())
def test_mse_is_the_elementwise_mean(pair: tuple[Tensor, Tensor]) -> None:
    perturbed, natural = (t.double() for t in pair)
    expected = float(((perturbed - natural) ** 2).sum() / perturbed.numel())
    assert float(MSESimilarity()(perturbed, natural)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
def test_gradcheck_in_both_arguments(similarity: Similarity) -> None:
    generator = torch.Generator().manual_seed(3)
    perturbed = torch.randn(3, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    natural = torch.randn(3, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(similarity, (perturbed, natural))
    assert torch.autograd.gradgradcheck(similarity, (perturbed, natural))


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
def test_gradients_reach_both_arguments(similarity: Similarity) -> None:
    perturbed = torch.randn(4, 6, requires_grad=True)
    natural = torch.randn(4, 6, requires_grad=True)
    similarity(perturbed, natural).backward()
    for tensor in (perturbed, natural):
        assert tensor.grad is not None
        assert torch.isfinite(tensor.grad).all() and float(tensor.grad.abs().sum()) > 0


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
def test_batch_mean(similarity: Similarity) -> None:
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    singles = torch.stack([similarity(a[i : i + 1], b[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(similarity(a, b), singles.mean())


@pytest.mark.parametrize("similarity", ALL, ids=IDS)
def test_shape_checks(similarity: Similarity) -> None:
    with pytest.raises(ValueError, match="same shape"):
        similarity(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        similarity(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))


def test_acts_on() -> None:
    assert KLSimilarity.acts_on == "probabilities"
    assert CosineSimilarity.acts_on == "logits"
    assert MSESimilarity.acts_on == "logits"
    assert "acts_on" not in attrs.fields_dict(KLSimilarity)


def test_hyperparameters_gin_and_immutability() -> None:
    with pytest.raises(ValueError) as info:
        CosineSimilarity(eps=0.0)
    assert "CosineSimilarity.eps" in str(info.value) and "0.0" in str(info.value)
    gin.parse_config("CosineSimilarity.eps = 1e-6")
    assert CosineSimilarity().eps == 1e-6
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        CosineSimilarity().eps = 1.0  # type: ignore[misc]
    assert KLSimilarity() == KLSimilarity() and hash(MSESimilarity()) == hash(MSESimilarity())
