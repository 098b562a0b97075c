"""Shared pytest fixtures: a clean gin config and deterministic torch for every test."""

from __future__ import annotations

from typing import Iterator

import gin
import pytest
import torch


@pytest.fixture(autouse=True)
def _clean_gin_and_torch() -> Iterator[None]:
    """Clear gin's config around each test and keep torch deterministic on 1 thread per test."""
    gin.clear_config()
    torch.manual_seed(0)
    yield
    gin.clear_config()
