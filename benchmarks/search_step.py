"""Median seconds per search step (alpha-step + w-step) for DARTS, RNAS-uniform and RNAS-max.

Also RNAS-max with the cheap inner maximizers (``--methods darts,max,max_fgsm,max_warm``):
``max_fgsm`` (FGSMRandomStart) and ``max_warm`` (WarmStartPGD with its per-example store).
``--interleaved`` runs every method in one process, in turn, so that all share the machine's load
(use it on a busy machine; peak memory is then not per method).

Each method runs in its own subprocess so that its peak memory is its own (peak resident set size
above the resident size just before the first step, on the CPU; ``torch.cuda.max_memory_allocated``
on CUDA). Same supernet, same batch, same maths as the search; data are random pixels (speed does
not depend on them). ``--options`` picks the supernet implementation (see
``rnasframe.spaces.darts.SupernetOptions``); ``benchmarks/suite.py`` runs the whole comparison.

    python benchmarks/search_step.py                          # paper settings: C=16, 8 cells, batch 64
    python benchmarks/search_step.py --channels 8 --layers 5  # a smaller supernet, faster on a CPU
    python benchmarks/search_step.py --options plain          # DARTS' straightforward implementation
    python benchmarks/search_step.py --methods darts,max,max_fgsm,max_warm --interleaved
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

METHODS = ("darts", "uniform", "max")
#: RNAS-max with a cheaper inner maximizer: one FGSM step from a random start; one warm-started step.
CHEAP_METHODS = ("max_fgsm", "max_warm")
#: Examples in the warm store of ``max_warm``, in batches (each step draws its batches from them).
WARM_POOL_BATCHES = 16
OPTION_SETS = ("lean", "fast", "plain")


def supernet_options(name: str) -> Any:
    """``SupernetOptions`` by name: ``lean`` (cells in waves, the default on accelerators), ``fast``
    (the fused edges, one edge at a time, the default on the CPU) or ``plain`` (every switch off)."""
    from rnasframe.spaces.darts.supernet import SupernetOptions

    if name == "lean":
        return SupernetOptions(lean=True)
    if name == "fast":
        return SupernetOptions(lean=False)
    if name == "plain":
        return SupernetOptions.plain()
    raise ValueError(f"unknown option set {name!r}; allowed: {', '.join(OPTION_SETS)}")


def objective_for(method: str, pgd_steps: int) -> Any:
    """The search objective of ``method``: plain DARTS, RNAS-uniform, RNAS-max (K PGD steps), or RNAS-max
    with FGSM from a random start (``max_fgsm``) or one warm-started step (``max_warm``), as in the configs."""
    from rnasframe import PerturbationConsistency, RobustObjective
    from rnasframe.perturbations import FGSMRandomStart, LinfBall, PGDMaximizer, UniformSampler, WarmStartPGD

    if method == "darts":
        return RobustObjective()
    if method == "uniform":
        perturbation: Any = UniformSampler(LinfBall(0.031))
    elif method == "max":
        perturbation = PGDMaximizer(LinfBall(0.031), steps=pgd_steps, step_size=0.003)
    elif method == "max_fgsm":
        perturbation = FGSMRandomStart(LinfBall(0.031), alpha=1.25)
    elif method == "max_warm":
        perturbation = WarmStartPGD(LinfBall(0.031), steps=1, alpha=1.0)
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS + CHEAP_METHODS)}")
    return RobustObjective([PerturbationConsistency(perturbation, weight=1.0)])


class SearchRun:
    """One supernet, its bi-level optimizer and the objective of one method, ready to step.

    Args:
        method: ``darts``, ``uniform`` or ``max``.
        options: ``fast`` or ``plain`` (the supernet implementation).
        args: the benchmark settings (channels, layers, size, batch, pgd_steps, second_order, device).
        seed: the initialization seed (the same for every run, so runs are comparable).
    """

    def __init__(self, method: str, options: str, args: argparse.Namespace, seed: int = 0) -> None:
        from rnasframe import FirstOrderDarts, SecondOrderDarts
        from rnasframe.interfaces import InputSpec
        from rnasframe.spaces.darts import DartsSpace

        self.method, self.options, self.args = method, options, args
        self.device = torch.device(args.device)
        torch.manual_seed(seed)
        space = DartsSpace(channels=args.channels, layers=args.layers, options=supernet_options(options))
        self.supernet = space.supernet(10, InputSpec((3, args.size, args.size))).to(self.device)
        self.optimizer = SecondOrderDarts() if args.second_order else FirstOrderDarts()
        self.optimizer.setup(self.supernet, epochs=50)
        self.objective = objective_for(method, args.pgd_steps)
        self.pool = 0  # examples in a per-example store (max_warm)
        if self.objective.uses_example_index:
            self.pool = WARM_POOL_BATCHES * args.batch
            self.objective.bind_examples(self.pool, "benchmark")

    def batch(self) -> Tuple[torch.Tensor, ...]:
        """A random batch of pixels in [0, 1] and labels (and example indices when the method keeps a store)."""
        a = self.args
        x = torch.rand(a.batch, 3, a.size, a.size, device=self.device)
        y = torch.randint(0, 10, (a.batch,), device=self.device)
        if not self.objective.uses_example_index:
            return x, y
        return x, y, torch.randperm(self.pool, device=self.device)[: a.batch]

    def step(self) -> float:
        """Run one search step (alpha-step, then w-step) and return its seconds."""
        train, valid = self.batch(), self.batch()
        return timed(lambda: self.optimizer.step(self.supernet, self.objective, train, valid, update_arch=True), self.device)


def device_name(device: torch.device) -> str:
    """``"cpu"``, or the name of the GPU ``device`` names (``"cuda"``: the current one)."""
    if device.type != "cuda":
        return device.type
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"{torch.cuda.get_device_name(index)} (cuda:{index})"


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds that ``fn()`` takes: CUDA events on a GPU, ``time.perf_counter`` on the CPU.

    The events are recorded on the current stream of ``device`` (with ``device`` current), where
    ``fn``'s kernels run, not on whichever GPU happens to be current.
    """
    if device.type == "cuda":
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record(stream)
            fn()
            end.record(stream)
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def current_rss_mib() -> float:
    """The resident set size of this process now (Linux ``/proc/self/statm``), MiB."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: no baseline
        return 0.0


def reset_peak_rss() -> None:
    """Restart the peak resident size at the current one (Linux >= 4.0: ``/proc/self/clear_refs``).

    Without it the peak would include transient memory from importing torch and building the
    model; where it is not available the peak is measured since the process started.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """The peak resident set size of this process, MiB (``VmHWM``; else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(method: str, args: argparse.Namespace, options: Optional[str] = None) -> Dict[str, float]:
    """Time ``args.repeats`` steps of ``method`` after ``args.warmup`` untimed ones; peak memory.

    ``peak_mib`` is the peak memory of the steps: on CUDA the peak allocated bytes, on the CPU the
    peak resident size during the steps minus the resident size after building the run and before
    the first step (so the interpreter, torch and the model itself are not counted; optimizer
    state is).
    """
    torch.set_num_threads(args.threads)
    run = SearchRun(method, options or args.options, args)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    reset_peak_rss()
    baseline = current_rss_mib()
    times: List[float] = []
    for index in range(args.warmup + args.repeats):
        seconds = run.step()
        if index >= args.warmup:
            times.append(seconds)
    if run.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(run.device) / 2**20
        total = peak
    else:
        total = peak_rss_mib()
        peak = total - baseline
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "peak_mib": peak,
        "peak_rss_mib": total,
        "repeats": len(times),
    }


def interleaved(runs: Sequence[SearchRun], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Step every run in turn (A, B, C, A, B, C, ...) and return each run's step times.

    Interleaving puts every run under the same machine load, so their ratios are meaningful on a
    shared machine. Keys are ``"<method>/<options>"``.
    """
    times: Dict[str, List[float]] = {f"{r.method}/{r.options}": [] for r in runs}
    for index in range(warmup + repeats):
        for run in runs:
            seconds = run.step()
            if index >= warmup:
                times[f"{run.method}/{run.options}"].append(seconds)
    return times


def run_interleaved(args: argparse.Namespace) -> Dict[str, Dict[str, float]]:
    """Every method of ``args.methods`` in this process, stepped in turn (:func:`interleaved`).

    The ratios between methods are then measured under one load; ``peak_mib`` is not per method
    (reported as 0).
    """
    torch.set_num_threads(args.threads)
    runs = [SearchRun(method, args.options, args) for method in args.methods.split(",")]
    times = interleaved(runs, args.repeats, args.warmup)
    return {
        run.method: {
            "median_s": statistics.median(times[f"{run.method}/{run.options}"]),
            "min_s": min(times[f"{run.method}/{run.options}"]),
            "peak_mib": 0.0,
            "peak_rss_mib": 0.0,
            "repeats": args.repeats,
        }
        for run in runs
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings shared with ``benchmarks/suite.py``."""
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--pgd-steps", type=int, default=10, help="K, the PGD steps of RNAS-max")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--second-order", action="store_true")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS + CHEAP_METHODS)}")
    parser.add_argument("--options", default="lean", choices=OPTION_SETS, help="supernet implementation")
    parser.add_argument("--interleaved", action="store_true", help="all methods in one process, in turn")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # internal: one method, JSON out
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    results = run_interleaved(args) if args.interleaved else {}
    for method in [] if args.interleaved else args.methods.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--only", method]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])
    device = device_name(torch.device(args.device))
    print(
        f"search step (alpha + w), {'second' if args.second_order else 'first'}-order, {args.options} supernet, "
        f"C={args.channels}, {args.layers} cells, {args.size}x{args.size}, batch {args.batch}, K={args.pgd_steps}, "
        f"{args.repeats} timed steps, device {device}, torch {torch.__version__}, {args.threads} threads"
    )
    print(f"{'method':<10}{'median s/step':>15}{'min s/step':>12}{'peak MiB':>10}{'ratio':>8}")
    base = results.get("darts", {}).get("median_s")
    for method, r in results.items():
        ratio = f"{r['median_s'] / base:.2f}" if base else "-"
        print(f"{method:<10}{r['median_s']:>15.3f}{r['min_s']:>12.3f}{r['peak_mib']:>10.0f}{ratio:>8}")
    print(json.dumps({"settings": vars(args), "results": results}))


if __name__ == "__main__":
    main()
