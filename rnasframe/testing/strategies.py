"""hypothesis strategies for threat-model tests: batches of images in [0, 1] and budgets epsilon.

Importing this module needs hypothesis (``pip install rnasframe[test]``)::

    from hypothesis import given
    from rnasframe.testing.strategies import epsilons, images

    @given(images(), epsilons())
    def test_my_ball(x, epsilon):
        check_norm_ball(MyBall(epsilon=epsilon), x=x)
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import Tensor

__all__ = ["float_dtypes", "image_shapes", "images", "epsilons"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def float_dtypes() -> st.SearchStrategy[torch.dtype]:
    """``torch.float32`` or ``torch.float64``."""
    return st.sampled_from([torch.float32, torch.float64])


def image_shapes(
    *, max_batch: int = 4, max_channels: int = 3, max_side: int = 5
) -> st.SearchStrategy[Tuple[int, int, int, int]]:
    """Small batch shapes ``(batch, channels, height, width)``, each size at least 1.

    Args:
        max_batch: the largest batch.
        max_channels: the most channels.
        max_side: the largest height and width.
    """
    return st.tuples(
        st.integers(1, max_batch), st.integers(1, max_channels), st.integers(1, max_side), st.integers(1, max_side)
    )


@st.composite
def images(
    draw: st.DrawFn,
    shapes: Optional[st.SearchStrategy[Tuple[int, ...]]] = None,
    dtypes: Optional[st.SearchStrategy[torch.dtype]] = None,
) -> Tensor:
    """Batches of images with pixels in [0, 1] (the edges 0 and 1 and repeated values included).

    Args:
        shapes: strategy for the batch shape (default: :func:`image_shapes`).
        dtypes: strategy for the dtype (default: :func:`float_dtypes`).

    Returns:
        A strategy for CPU tensors.
    """
    shape = draw(shapes if shapes is not None else image_shapes())
    dtype = draw(dtypes if dtypes is not None else float_dtypes())
    if dtype not in _NUMPY_DTYPES:
        raise ValueError(f"images: dtype must be torch.float32 or torch.float64, got {dtype}")
    elements = st.floats(0.0, 1.0, width=32) if dtype == torch.float32 else st.floats(0.0, 1.0, width=64)
    array = draw(hnp.arrays(_NUMPY_DTYPES[dtype], shape, elements=elements))
    return torch.from_numpy(array.copy())


def epsilons(max_value: float = 1.0, *, allow_zero: bool = True) -> st.SearchStrategy[float]:
    """Budgets ``epsilon`` in pixel units of [0, 1] images, from 0 (or just above) to ``max_value``.

    Args:
        max_value: the largest budget.
        allow_zero: include ``epsilon = 0`` (the identity perturbation), drawn often.
    """
    positive = st.floats(0.0, max_value, allow_nan=False, allow_infinity=False, exclude_min=True)
    return st.one_of(st.just(0.0), positive) if allow_zero else positive
