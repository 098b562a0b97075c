"""Aten operators dispatched per search iteration (alpha-step + w-step), by phase and kind.

On a GPU the DARTS supernet at the paper's size is launch-bound: every aten operator costs
5-10 us of host time while its kernel does a few microseconds of work, so the number of
operators per iteration bounds the speed from below. This script counts them with a
``TorchDispatchMode`` (every operator that reaches the dispatcher's Python key: kernels, views
and in-place updates alike; ``_foreach_*`` operators count once), split into forward (everything
outside autograd's backward), backward (run by the autograd engine) and by operator name. The
count does not depend on the batch or the image size (only on the supernet's structure), so it
is taken on a batch of 2 small images; ``--check-invariance`` verifies that.

Counts are taken on the CPU *as a GPU would dispatch them* (the default, ``--as-on cuda``): the
supernet's CPU-only kernel reformulations (``SupernetOptions.depthwise``, which
``DartsSupernet`` ignores on other devices) are switched off, since operator launches matter on
the GPU. ``--as-on cpu`` counts what the CPU runs, reformulations included.

    python benchmarks/count_ops.py                       # darts, uniform, max at C=16, 8 cells
    python benchmarks/count_ops.py --options fast,lean   # compare implementations
    python benchmarks/count_ops.py --tiny-time           # also: seconds per tiny-supernet iteration
    python benchmarks/count_ops.py --guard               # operators of one guarded perturbation call

``--guard`` counts what :meth:`~rnasframe.interfaces.Perturbation.__call__` adds around a
perturbation (the pixel-range check of ``x``, the model guard ``input_gradients_only`` and the
result's clamp) on the default DARTS supernet and on the DARTS_V2 network, with a perturbation
that only copies ``x``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Any, Dict

import attrs
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_step

from rnasframe.interfaces.perturbation import Perturbation, PerturbationObjective, check_pixel_range

__all__ = ["OpCounter", "count_iteration", "count_guarded_call", "GUARD_MODELS", "tiny_iteration_seconds"]

#: Models ``count_guarded_call`` knows: the default DARTS supernet (C=16, 8 cells) and DARTS_V2 (C=36, 20 cells).
GUARD_MODELS = ("supernet", "darts_v2")


class OpCounter(TorchDispatchMode):
    """Counts aten operators by name, separately for the forward and the backward phase.

    An operator counts as *backward* when the autograd engine runs it (inside a backward node),
    which ``torch._C._current_graph_task_id() != -1`` tells; everything else (forward passes,
    optimizer updates, perturbation updates) counts as *forward*.
    """

    def __init__(self) -> None:
        super().__init__()
        self.forward: Dict[str, int] = collections.Counter()
        self.backward: Dict[str, int] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if torch._C._current_graph_task_id() != -1:
            self.backward[name] += 1
        else:
            self.forward[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        """All operators counted."""
        return sum(self.forward.values()) + sum(self.backward.values())


def _args(channels: int, layers: int, size: int, batch: int, pgd_steps: int, second_order: bool) -> argparse.Namespace:
    return argparse.Namespace(
        channels=channels, layers=layers, size=size, batch=batch, pgd_steps=pgd_steps,
        second_order=second_order, device="cpu",
    )


def count_iteration(
    method: str,
    options: str,
    channels: int = 16,
    layers: int = 8,
    size: int = 8,
    batch: int = 2,
    pgd_steps: int = 10,
    second_order: bool = False,
    as_on: str = "cuda",
) -> OpCounter:
    """Count the operators of one search iteration (after one untimed warm-up iteration).

    The warm-up creates the optimizers' state (momentum buffers, Adam moments), so the counted
    iteration is a steady-state one.
    """
    if as_on not in ("cuda", "cpu"):
        raise ValueError(f"as_on must be 'cuda' or 'cpu', got {as_on!r}")
    run = search_step.SearchRun(method, options, _args(channels, layers, size, batch, pgd_steps, second_order))
    if as_on == "cuda":  # what DartsSupernet runs on a GPU: no CPU-only reformulations
        run.supernet.options = attrs.evolve(run.supernet.options, depthwise=False)
    run.step()
    train, valid = run.batch(), run.batch()
    counter = OpCounter()
    with counter:
        run.optimizer.step(run.supernet, run.objective, train, valid, update_arch=True)
    return counter


class _Copy(Perturbation):
    """A perturbation that returns a copy of ``x``: what is left to count is the guard around it."""

    def perturb(self, x: torch.Tensor, objective: PerturbationObjective) -> torch.Tensor:
        return x.clone()


def guard_model(name: str) -> torch.nn.Module:
    """The model of ``count_guarded_call`` named ``name`` (one of :data:`GUARD_MODELS`), in train mode."""
    from rnasframe.interfaces import InputSpec
    from rnasframe.spaces.darts import DartsSpace

    space, spec = DartsSpace(), InputSpec((3, 8, 8))
    if name == "supernet":
        return space.supernet(10, spec).train()
    if name == "darts_v2":
        return space.network(space.resolve_genotype("DARTS_V2"), 10, spec).train()
    raise ValueError(f"unknown guard model {name!r}; allowed: {', '.join(GUARD_MODELS)}")


def count_guarded_call(model: str = "supernet") -> Dict[str, OpCounter]:
    """Count the operators of one guarded perturbation call around ``model`` (see ``--guard``).

    Returns counters for the whole call (``"call"``: pixel check, guard, a copy of ``x``,
    the result's detach and clamp), the guard alone (``"guard"``: entering and leaving
    ``input_gradients_only`` around nothing) and the pixel-range check alone (``"check"``).
    The counts depend on the model's structure only.
    """
    from rnasframe.model_state import input_gradients_only

    net = guard_model(model)
    x = torch.rand(2, 3, 8, 8)
    counters = {"call": OpCounter(), "guard": OpCounter(), "check": OpCounter()}
    with counters["call"]:
        _Copy()(x, lambda candidate: candidate.sum(), net)
    with counters["guard"], input_gradients_only(net):
        pass
    with counters["check"]:
        check_pixel_range(x)
    return counters


def tiny_iteration_seconds(method: str, options: str, repeats: int = 3, pgd_steps: int = 10) -> float:
    """Median seconds of one iteration of the tiny supernet (C=8, 3 cells, 8x8, batch 16)."""
    run = search_step.SearchRun(method, options, _args(8, 3, 8, 16, pgd_steps, False))
    run.step()
    times = sorted(run.step() for _ in range(repeats))
    return times[len(times) // 2]


def print_guard_counts() -> None:
    """Print the operators of one guarded perturbation call on each of :data:`GUARD_MODELS`."""
    for name in GUARD_MODELS:
        counters = count_guarded_call(name)
        kinds = ", ".join(f"{k} {v}" for k, v in collections.Counter(counters["call"].forward).most_common(8))
        print(f"{name:<9} call {counters['call'].total:>6}  guard {counters['guard'].total:>6}  "
              f"check {counters['check'].total:>3}  ({kinds})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=",".join(search_step.METHODS))
    parser.add_argument("--options", default="fast", help="comma-separated: " + ", ".join(search_step.OPTION_SETS))
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--second-order", action="store_true")
    parser.add_argument("--as-on", default="cuda", choices=("cuda", "cpu"), help="count as dispatched on this device")
    parser.add_argument("--top", type=int, default=12, help="operator kinds listed per phase")
    parser.add_argument("--check-invariance", action="store_true", help="also count at batch 4 and 16x16 images")
    parser.add_argument("--tiny-time", action="store_true", help="time the tiny supernet (one thread)")
    parser.add_argument("--guard", action="store_true", help="count one guarded perturbation call instead")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.guard:
        print_guard_counts()
        return
    report: Dict[str, Any] = {"counts": {}, "tiny_seconds": {}}
    for options in args.options.split(","):
        for method in args.methods.split(","):
            counter = count_iteration(method, options, args.channels, args.layers, pgd_steps=args.pgd_steps, second_order=args.second_order, as_on=args.as_on)
            fwd, bwd = sum(counter.forward.values()), sum(counter.backward.values())
            entry = {"total": counter.total, "forward": fwd, "backward": bwd,
                     "forward_kinds": dict(collections.Counter(counter.forward).most_common(args.top)),
                     "backward_kinds": dict(collections.Counter(counter.backward).most_common(args.top))}
            if args.check_invariance:
                other = count_iteration(method, options, args.channels, args.layers, size=16, batch=4, pgd_steps=args.pgd_steps, second_order=args.second_order, as_on=args.as_on)
                entry["invariant"] = other.total == counter.total
            report["counts"][f"{method}/{options}"] = entry
            print(f"{method:<8} {options:<6} total {counter.total:>8}  forward {fwd:>8}  backward {bwd:>8}"
                  + (f"  invariant {entry['invariant']}" if args.check_invariance else ""), flush=True)
            for phase in ("forward_kinds", "backward_kinds"):
                kinds = ", ".join(f"{k} {v}" for k, v in entry[phase].items())
                print(f"    {phase.split('_')[0]:<8}: {kinds}")
            if args.tiny_time:
                seconds = tiny_iteration_seconds(method, options, pgd_steps=args.pgd_steps)
                report["tiny_seconds"][f"{method}/{options}"] = seconds
                print(f"    tiny supernet (C=8, 3 cells, 8x8, batch 16): {seconds:.3f} s/iteration", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
