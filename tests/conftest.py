"""Shared pytest fixtures: a clean gin config and deterministic torch for every test."""

from __future__ import annotations

from typing import Iterator

import gin
import pytest
import torch


@pytest.fixture(autouse=True)
def _clean_gin_and_torch() -> Iterator[None]:
    """Clear gin's config around each test; seed torch and run it on 1 thread.

    One intra-op thread: the tests' tensors are tiny, and on a busy 2-core machine a second
    spinning thread makes small convolutions many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gin.clear_config()
    torch.manual_seed(0)
    yield
    gin.clear_config()
    torch.set_num_threads(threads)
