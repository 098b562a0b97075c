"""A search step never waits for the device: no ``.item()``, ``.cpu()``, ``.tolist()`` or
data-dependent Python branching inside the alpha-step, the w-step or the PGD loop.

Every such call is patched to raise while a step runs (after one warm-up step that creates
the optimizers' state and the lean supernet's buffers). Adam's ``step`` counters are host
tensors (``capturable=False``) whose ``.item()`` never synchronizes, so they are allowed. The
perturbation's pixel-range check of its input (:func:`check_pixel_range`, one read of the
batch's minimum and maximum) is replaced by a no-op here: it validates user input once per
perturbation call and is the one synchronization left in a robust step.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Set

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
import search_step

SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


def _forbid(name: str, allowed: Set[int]) -> Callable[..., Any]:
    original = getattr(torch.Tensor, name)

    def guarded(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if id(self) in allowed:
            return original(self, *args, **kwargs)
        raise AssertionError(f"Tensor.{name} called inside a search step (a host-device synchronization)")

    return guarded


@pytest.mark.parametrize("method", ["darts", "uniform", "max"])
@pytest.mark.parametrize("order", ["first", "second"])
def test_search_step_does_not_synchronize(method: str, order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = argparse.Namespace(channels=4, layers=2, size=8, batch=2, pgd_steps=2, second_order=order == "second", device="cpu")
    run = search_step.SearchRun(method, "lean", args)
    run.step()
    allowed = {id(state["step"]) for state in run.optimizer._arch_optimizer.state.values()}  # type: ignore[union-attr]
    monkeypatch.setattr("rnasframe.interfaces.perturbation.check_pixel_range", lambda x, name="x": None)
    train, valid = run.batch(), run.batch()
    for name in SYNCING:
        monkeypatch.setattr(torch.Tensor, name, _forbid(name, allowed))
    run.optimizer.step(run.supernet, run.objective, train, valid, update_arch=True)
