"""Median seconds per search step (alpha-step + w-step) for DARTS, RNAS-uniform and RNAS-max.

Each method runs in its own subprocess so that its peak memory is its own (peak resident set size
on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA). Same supernet, same batch, same maths as
the search; data are random pixels (speed does not depend on them).

    python benchmarks/search_step.py                          # paper settings: C=16, 8 cells, batch 64
    python benchmarks/search_step.py --channels 8 --layers 5  # a smaller supernet, faster on a CPU
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

METHODS = ("darts", "uniform", "max")


def _objective(method: str, pgd_steps: int):
    from rnasframe import PerturbationConsistency, RobustObjective
    from rnasframe.perturbations import LinfBall, PGDMaximizer, UniformSampler

    if method == "darts":
        return RobustObjective()
    perturbation = (
        UniformSampler(LinfBall(0.031)) if method == "uniform" else PGDMaximizer(LinfBall(0.031), steps=pgd_steps, step_size=0.003)
    )
    return RobustObjective([PerturbationConsistency(perturbation, weight=1.0)])


def measure(method: str, args: argparse.Namespace) -> Dict[str, float]:
    """Time ``args.repeats`` search steps of ``method`` after ``args.warmup`` untimed ones."""
    from rnasframe import FirstOrderDarts, SecondOrderDarts
    from rnasframe.interfaces import InputSpec
    from rnasframe.spaces.darts import DartsSpace

    torch.manual_seed(0)
    device = torch.device(args.device)
    supernet = DartsSpace(channels=args.channels, layers=args.layers).supernet(10, InputSpec((3, args.size, args.size))).to(device)
    optimizer = SecondOrderDarts() if args.second_order else FirstOrderDarts()
    optimizer.setup(supernet, epochs=50)
    objective = _objective(method, args.pgd_steps)
    batch = lambda: (torch.rand(args.batch, 3, args.size, args.size, device=device), torch.randint(0, 10, (args.batch,), device=device))
    times: List[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(args.warmup + args.repeats):
        train, valid = batch(), batch()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        optimizer.step(supernet, objective, train, valid, update_arch=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= args.warmup:
            times.append(time.perf_counter() - started)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"median_s": statistics.median(times), "min_s": min(times), "peak_mib": peak_mib, "repeats": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--second-order", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)  # internal: one method, JSON out
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return
    results = {}
    for method in args.methods.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--only", method]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])
    device = args.device if args.device == "cpu" else torch.cuda.get_device_name()
    print(
        f"search step (alpha + w), {'second' if args.second_order else 'first'}-order, C={args.channels}, "
        f"{args.layers} cells, {args.size}x{args.size}, batch {args.batch}, K={args.pgd_steps}, "
        f"{args.repeats} timed steps, device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'method':<10}{'median s/step':>15}{'min s/step':>12}{'peak MiB':>10}{'ratio':>8}")
    base = results.get("darts", {}).get("median_s")
    for method, r in results.items():
        ratio = f"{r['median_s'] / base:.2f}" if base else "-"
        print(f"{method:<10}{r['median_s']:>15.3f}{r['min_s']:>12.3f}{r['peak_mib']:>10.0f}{ratio:>8}")
    print(json.dumps({"settings": vars(args), "results": results}))


if __name__ == "__main__":
    main()
