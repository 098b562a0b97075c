"""The supernet's speed and memory figures in one command: JSON plus a printed table.

Sections (each can be skipped):

* ``peak``: this machine's float32 matmul throughput (``torch.mm`` of two 2048x2048 matrices),
  measured in the same run, interleaved with the timings below, so that every fraction of peak is
  taken under the same machine load.
* ``fwd-bwd``: one supernet forward-backward (cross-entropy, gradients of every parameter),
  plain vs fast implementation (``SupernetOptions.plain()`` vs ``SupernetOptions()``),
  interleaved A, B, A, B, ...; FLOPs, achieved GFLOP/s and fraction of the matmul peak.
* ``search``: seconds per search iteration (alpha-step + w-step) of DARTS, RNAS-uniform and
  RNAS-max, first- and/or second-order, for each batch size; all methods x implementations of one
  (order, batch) run interleaved in one subprocess; FLOPs per iteration.
* ``memory``: peak memory of one search iteration, one subprocess per configuration (CPU: peak
  resident set size above the resident size before the first step; CUDA: peak allocated bytes).
* ``throughput``: images/s of training DARTS_V2 from scratch (standard and PGD-7 adversarial
  training steps, as the trainer runs them) and of PGD-20 evaluation, at the paper's evaluation
  size (C=36, 20 cells) unless ``--train-channels``/``--train-layers`` say otherwise.
* ``micro`` (off by default): the depthwise-convolution kernels, oneDNN vs the reformulations.
* ``ops`` (off by default): aten operators per first-order search iteration, forward and backward,
  for every method x implementation (``benchmarks/count_ops.py``; independent of batch and image
  size, so counted on 2 images of 8x8 pixels) as a GPU dispatches them and as the CPU does (with
  its depthwise reformulations), and the tiny supernet's seconds per iteration, the
  implementations interleaved (``--options lean,fast``).

FLOPs are ``2 x multiply-accumulates`` of convolutions and matrix products only (forward and the
backward kernels actually run: input and/or weight gradients), counted with a small
``TorchDispatchMode`` (``torch.utils.flop_counter.FlopCounterMode`` overcounts grouped-convolution
weight gradients by a factor of the channel count in torch 2.14, and its module hooks fail under
``torch.autograd.grad`` on a leaf, which PGD uses). Elementwise work (BatchNorm, pooling, ReLU,
sums) is not counted. The *useful* FLOPs of a configuration are those of the plain implementation;
fractions of peak for both implementations use them (the fast path's tiled weight gradients run
about 2 % more multiply-adds, reported separately as ``executed``).

    python benchmarks/suite.py --quick                     # small supernet, a few minutes on 2 cores
    python benchmarks/suite.py                             # C=16, 8 cells, batches 16 and 64, both orders
    python benchmarks/suite.py --orders first --batches 64 --methods darts,uniform --json out.json
    python benchmarks/suite.py --sections throughput --train-batch 64 --eval-batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import count_ops
import search_step

_aten = torch.ops.aten


# --------------------------------------------------------------------------- FLOP counting


def _prod(values: Sequence[int]) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


def _conv_flops(x_shape: Sequence[int], w_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    # w_shape[1] is in_channels / groups, so grouped and depthwise convolutions are exact.
    return 2 * x_shape[0] * w_shape[0] * w_shape[1] * _prod(w_shape[2:]) * _prod(out_shape[2:])


class FlopCounter(TorchDispatchMode):
    """Counts ``2 x MACs`` of convolutions (forward, input and weight gradients) and matmuls."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = getattr(func, "overloadpacket", None)
        if packet is _aten.convolution:
            self.flops += _conv_flops(args[0].shape, args[1].shape, out.shape)
        elif packet is _aten.convolution_backward:
            grad_out, x, weight = args[0], args[1], args[2]
            mask = args[10]
            one = _conv_flops(x.shape, weight.shape, grad_out.shape)
            self.flops += one * (int(bool(mask[0])) + int(bool(mask[1])))
        elif packet in (_aten.mm, _aten.addmm):
            a, b = (args[0], args[1]) if packet is _aten.mm else (args[1], args[2])
            self.flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        elif packet in (_aten.bmm, _aten.baddbmm):
            a, b = (args[0], args[1]) if packet is _aten.bmm else (args[1], args[2])
            self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (convolutions and matmuls) that ``fn()`` runs."""
    with FlopCounter() as counter:
        fn()
    return counter.flops


# --------------------------------------------------------------------------- timing helpers


def matmul_gflops(device: torch.device, size: int = 2048) -> float:
    """One sample of float32 matmul throughput (best of 3 products), GFLOP/s."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    best = min(search_step.timed(lambda: torch.mm(a, b), device) for _ in range(3))
    return 2 * size**3 / best / 1e9


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _build_supernet(args: argparse.Namespace, options: str) -> torch.nn.Module:
    from rnasframe.interfaces import InputSpec
    from rnasframe.spaces.darts import DartsSpace

    torch.manual_seed(0)
    space = DartsSpace(channels=args.channels, layers=args.layers, options=search_step.supernet_options(options))
    return space.supernet(10, InputSpec((3, args.size, args.size))).to(torch.device(args.device))


def forward_backward(args: argparse.Namespace, batch: int) -> Dict[str, Any]:
    """Plain vs fast supernet forward-backward at ``batch``, interleaved with matmul-peak samples."""
    device = torch.device(args.device)
    nets = {name: _build_supernet(args, name) for name in args.options}
    x = torch.rand(batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step(net: torch.nn.Module) -> None:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()

    flops = {name: count_flops(lambda: step(net)) for name, net in nets.items()}
    useful = flops.get("plain", next(iter(flops.values())))
    times: Dict[str, List[float]] = {name: [] for name in nets}
    peaks: List[float] = []
    for index in range(args.warmup + args.repeats):
        peaks.append(matmul_gflops(device))
        for name, net in nets.items():
            seconds = search_step.timed(lambda: step(net), device)
            if index >= args.warmup:
                times[name].append(seconds)
    peak = _median(peaks)
    result: Dict[str, Any] = {"batch": batch, "useful_flops": useful, "peak_gflops": peak, "peak_samples": peaks}
    for name in nets:
        median = _median(times[name])
        result[name] = {
            "median_s": median,
            "times_s": times[name],
            "executed_flops": flops[name],
            "gflops": useful / median / 1e9,
            "fraction_of_peak": useful / median / 1e9 / peak,
        }
    if "plain" in nets and "fast" in nets:
        result["speedup"] = result["plain"]["median_s"] / result["fast"]["median_s"]
    return result


# --------------------------------------------------------------------------- search iterations


def search_worker(args: argparse.Namespace) -> Dict[str, Any]:
    """In a subprocess: every method x implementation of one (order, batch), interleaved."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs = [
        search_step.SearchRun(method, options, args)
        for method in args.methods
        for options in args.options
    ]
    flops: Dict[str, int] = {}
    for run in runs:  # the warm-up step of the first implementation is counted
        if run.method not in flops:
            flops[run.method] = count_flops(run.step)
        else:
            run.step()
    times = search_step.interleaved(runs, args.repeats, max(0, args.warmup - 1))
    peaks = [matmul_gflops(device) for _ in range(3)]
    return {"times_s": times, "flops": flops, "peak_gflops": _median(peaks)}


def memory_worker(args: argparse.Namespace) -> Dict[str, float]:
    """In a subprocess: one search iteration of one configuration, and its peak memory."""
    return search_step.measure(args.methods[0], argparse.Namespace(**{**vars(args), "warmup": 0, "repeats": 1}), args.options[0])


def _subprocess(args: argparse.Namespace, worker: str, **overrides: Any) -> Dict[str, Any]:
    settings = {**vars(args), **overrides}
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--settings", json.dumps(settings)]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode < 0:  # killed by a signal: SIGKILL is usually the kernel's out-of-memory killer
        raise RuntimeError(
            f"benchmark worker {worker} {overrides} was killed by signal {-completed.returncode} (out of memory? "
            f"run fewer --methods/--options per call or a smaller batch)\n{completed.stderr[-4000:]}"
        )
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark worker {worker} {overrides} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def search(args: argparse.Namespace, order: str, batch: int) -> Dict[str, Any]:
    """Search-iteration times and ratios for one (order, batch)."""
    raw = _subprocess(args, "search", second_order=(order == "second"), batch=batch)
    result: Dict[str, Any] = {"flops": raw["flops"], "peak_gflops": raw["peak_gflops"], "runs": {}}
    for key, times in raw["times_s"].items():
        method, options = key.split("/")
        median = _median(times)
        result["runs"][key] = {
            "median_s": median,
            "times_s": times,
            "fraction_of_peak": raw["flops"][method] / median / 1e9 / raw["peak_gflops"],
        }
    ratios: Dict[str, float] = {}
    for options in args.options:
        base = result["runs"].get(f"darts/{options}")
        for method in args.methods:
            run = result["runs"].get(f"{method}/{options}")
            if base and run and method != "darts":
                ratios[f"{method}/darts ({options})"] = run["median_s"] / base["median_s"]
        if "plain" in args.options and "fast" in args.options and options == "fast":
            for method in args.methods:
                plain, fast = result["runs"].get(f"{method}/plain"), result["runs"].get(f"{method}/fast")
                if plain and fast:
                    ratios[f"{method} plain/fast"] = plain["median_s"] / fast["median_s"]
    result["ratios"] = ratios
    return result


def memory(args: argparse.Namespace, order: str, batch: int) -> Dict[str, Dict[str, float]]:
    """Peak memory of one iteration for every method x implementation (one subprocess each)."""
    table: Dict[str, Dict[str, float]] = {}
    for method in args.methods:
        for options in args.options:
            raw = _subprocess(
                args, "memory", second_order=(order == "second"), batch=batch, methods=[method], options=[options]
            )
            table[f"{method}/{options}"] = raw
    return table


# --------------------------------------------------------------------------- training and evaluation


def throughput(args: argparse.Namespace) -> Dict[str, Any]:
    """Images/s of training a derived network from scratch and of evaluating it under PGD-20.

    The network is DARTS_V2 built by :meth:`DartsSpace.network` with ``--train-channels`` and
    ``--train-layers`` (36 and 20: the paper's evaluation network) and the auxiliary head. One
    training step is what :class:`~rnasframe.training.Trainer` runs: the objective (standard
    training, CE + 0.4 x auxiliary CE; and PGD-7 adversarial training), backward, gradient
    clipping and an SGD step with momentum and weight decay, drop path 0.2, train mode. The
    evaluation step is PGD-20 (ε = 0.031, step 0.003, random start) plus the forward pass that
    scores it, in eval mode, as :class:`~rnasframe.robustness.RobustnessEvaluation` runs it. The
    three runs are interleaved, ``--warmup`` + ``--repeats`` rounds; medians are reported.
    """
    from rnasframe.interfaces import InputSpec
    from rnasframe.perturbations import PGD, LinfBall, PGDMaximizer
    from rnasframe.robustness import cross_entropy_objective, model_mode
    from rnasframe.spaces.darts import DartsNetworkConfig, DartsSpace, genotypes
    from rnasframe.training import AdversarialTraining, StandardTraining

    device = torch.device(args.device)
    torch.manual_seed(0)
    network = DartsNetworkConfig(channels=args.train_channels, layers=args.train_layers, auxiliary=True)
    space = DartsSpace(network_config=network)
    spec = InputSpec((3, args.size, args.size))
    model = space.network(genotypes.DARTS_V2, 10, spec).to(device)
    space.set_epoch(model, 2, 3)  # drop path 0.2, as two thirds into a 0.3 ramp
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    objectives = {
        "standard": StandardTraining(),
        "adversarial_pgd7": AdversarialTraining(
            perturbation=PGDMaximizer(ball=LinfBall(epsilon=0.031), steps=7, step_size=0.01, random_start=True)
        ),
    }
    x_train = torch.rand(args.train_batch, 3, args.size, args.size, device=device)
    y_train = torch.randint(0, 10, (args.train_batch,), device=device)
    x_eval = torch.rand(args.eval_batch, 3, args.size, args.size, device=device)
    y_eval = torch.randint(0, 10, (args.eval_batch,), device=device)
    attack = PGD(ball=LinfBall(epsilon=0.031), steps=20, step_size=0.003, random_start=True)

    def train_step(name: str) -> Callable[[], None]:
        def run() -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            objectives[name](model, x_train, y_train).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()

        return run

    def evaluate_step() -> None:
        with model_mode(model, training=False):
            x_adv = attack(x_eval, cross_entropy_objective(model, y_eval), model=model)
            with torch.no_grad():
                model(x_adv).argmax(dim=1)

    runs: Dict[str, Callable[[], None]] = {name: train_step(name) for name in objectives}
    runs["pgd20_evaluation"] = evaluate_step
    batches = {"standard": args.train_batch, "adversarial_pgd7": args.train_batch, "pgd20_evaluation": args.eval_batch}
    flops = {name: count_flops(run) for name, run in runs.items()}
    times: Dict[str, List[float]] = {name: [] for name in runs}
    peaks: List[float] = []
    for index in range(args.warmup + args.repeats):
        peaks.append(matmul_gflops(device))
        for name, run in runs.items():
            seconds = search_step.timed(run, device)
            if index >= args.warmup:
                times[name].append(seconds)
    peak = _median(peaks)
    result: Dict[str, Any] = {
        "channels": args.train_channels, "layers": args.train_layers, "peak_gflops": peak,
        "params_millions": sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n) / 1e6,
    }
    for name in runs:
        median = _median(times[name])
        result[name] = {
            "batch": batches[name],
            "median_s": median,
            "times_s": times[name],
            "images_per_s": batches[name] / median,
            "flops": flops[name],
            "fraction_of_peak": flops[name] / median / 1e9 / peak,
        }
    return result


# --------------------------------------------------------------------------- micro benchmarks


def micro(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Depthwise convolutions of the supernet: oneDNN vs the reformulations (fwd + both grads)."""
    from rnasframe.spaces.darts import fastops

    device = torch.device(args.device)
    rows = []
    channels_last = torch.channels_last
    for channels, size in ((args.channels, args.size), (4 * args.channels, args.size // 4)):
        for kernel, dilation in ((3, 1), (5, 1), (3, 2), (5, 2)):
            pad = dilation * (kernel // 2)
            x = torch.randn(args.fwd_batch, channels, size, size, device=device).to(memory_format=channels_last)
            w = torch.randn(channels, 1, kernel, kernel, device=device, requires_grad=True)
            x.requires_grad_(True)

            def native() -> None:
                F.conv2d(x, w, None, 1, pad, dilation, channels).sum().backward()

            def reformulated() -> None:
                if dilation == 1:
                    fastops.depthwise_conv2d(x, w, 1, pad).sum().backward()
                else:
                    out = fastops.depthwise_conv2d(fastops.to_phases(x), w, 1, kernel // 2)
                    fastops.phases_to_nhwc(out, x.shape[0]).sum().backward()

            samples: Dict[str, List[float]] = {"native": [], "reformulated": []}
            for index in range(args.warmup + max(3, args.repeats)):
                for name, fn in (("native", native), ("reformulated", reformulated)):
                    seconds = search_step.timed(fn, device)
                    if index >= args.warmup:
                        samples[name].append(seconds)
            native_s, new_s = _median(samples["native"]), _median(samples["reformulated"])
            rows.append(
                {
                    "shape": [args.fwd_batch, channels, size, size],
                    "kernel": kernel,
                    "dilation": dilation,
                    "native_ms": native_s * 1e3,
                    "reformulated_ms": new_s * 1e3,
                    "speedup": native_s / new_s,
                }
            )
    return rows


# --------------------------------------------------------------------------- report


def _load_average() -> Optional[List[float]]:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _machine(args: argparse.Namespace) -> Dict[str, Any]:
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu_model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "device": name,
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def operator_counts(args: argparse.Namespace) -> Dict[str, Any]:
    """Operators per search iteration per method x implementation, as a GPU and as the CPU dispatch
    them, and the tiny supernet's seconds per iteration with the implementations interleaved."""
    result: Dict[str, Any] = {}
    for method in args.methods:
        tiny = argparse.Namespace(
            channels=8, layers=3, size=8, batch=16, pgd_steps=args.pgd_steps, second_order=False, device="cpu"
        )
        runs = [search_step.SearchRun(method, options, tiny) for options in args.options]
        times = search_step.interleaved(runs, args.repeats, max(1, args.warmup))
        for options in args.options:
            counts = {
                as_on: count_ops.count_iteration(
                    method, options, args.channels, args.layers, pgd_steps=args.pgd_steps, as_on=as_on
                )
                for as_on in ("cuda", "cpu")
            }
            result[f"{method}/{options}"] = {
                "total": counts["cuda"].total,
                "forward": sum(counts["cuda"].forward.values()),
                "backward": sum(counts["cuda"].backward.values()),
                "total_cpu": counts["cpu"].total,
                "tiny_s": _median(times[f"{method}/{options}"]),
            }
    return result


def print_report(report: Dict[str, Any]) -> None:
    s = report["settings"]
    m = report["machine"]
    print(
        f"\nrnasframe benchmark suite: C={s['channels']}, {s['layers']} cells, {s['size']}x{s['size']}, "
        f"K={s['pgd_steps']}, torch {m['torch']}, {m['device']} {m['cpu_model']}, "
        f"{m['threads']} threads, load average {report.get('load_average_start')} -> {report.get('load_average_end')}"
    )
    if "ops" in report:
        print(
            "\naten operators per first-order search iteration (alpha + w) as a GPU dispatches them (total, "
            "forward, backward) and as the CPU does (cpu), and tiny-supernet seconds (implementations interleaved)"
        )
        print(f"  {'method/impl':<16}{'total':>9}{'forward':>9}{'backward':>9}{'cpu':>9}{'tiny s':>9}")
        for key, row in report["ops"].items():
            print(
                f"  {key:<16}{row['total']:>9}{row['forward']:>9}{row['backward']:>9}{row['total_cpu']:>9}"
                f"{row['tiny_s']:>9.3f}"
            )
    for row in report.get("forward_backward", []):
        print(
            f"\nsupernet forward-backward, batch {row['batch']}: {row['useful_flops'] / 1e9:.2f} GFLOP, "
            f"matmul peak {row['peak_gflops']:.1f} GFLOP/s (median of {len(row['peak_samples'])} samples)"
        )
        print(f"  {'impl':<8}{'median s':>10}{'GFLOP/s':>10}{'% peak':>8}")
        for name in s["options"]:
            r = row[name]
            print(f"  {name:<8}{r['median_s']:>10.3f}{r['gflops']:>10.2f}{100 * r['fraction_of_peak']:>8.1f}")
        if "speedup" in row:
            print(f"  speedup plain/fast: {row['speedup']:.2f}x")
    for order, by_batch in report.get("search", {}).items():
        for batch, result in by_batch.items():
            mem = report.get("memory", {}).get(order, {}).get(batch, {})
            print(
                f"\nsearch iteration, {order}-order, batch {batch} (matmul peak {result['peak_gflops']:.1f} GFLOP/s)"
            )
            print(f"  {'method/impl':<16}{'median s':>10}{'GFLOP':>9}{'% peak':>8}{'peak MiB':>10}")
            for key, r in result["runs"].items():
                method = key.split("/")[0]
                peak_mib = mem.get(key, {}).get("peak_mib")
                peak_text = f"{peak_mib:>10.0f}" if peak_mib is not None else f"{'-':>10}"
                print(
                    f"  {key:<16}{r['median_s']:>10.3f}{result['flops'][method] / 1e9:>9.1f}"
                    f"{100 * r['fraction_of_peak']:>8.1f}{peak_text}"
                )
            for name, value in result["ratios"].items():
                print(f"  {name}: {value:.2f}")
    for order, by_batch in report.get("memory", {}).items():
        for batch, table in by_batch.items():
            if batch in report.get("search", {}).get(order, {}):
                continue
            print(f"\npeak memory of one iteration, {order}-order, batch {batch}")
            for key, r in table.items():
                print(f"  {key:<16}{r['peak_mib']:>10.0f} MiB (process peak {r['peak_rss_mib']:.0f} MiB)")
    if report.get("throughput"):
        t = report["throughput"]
        print(
            f"\ntraining from scratch and evaluation: DARTS_V2, C={t['channels']}, {t['layers']} cells, "
            f"{t['params_millions']:.2f} M parameters (matmul peak {t['peak_gflops']:.1f} GFLOP/s)"
        )
        print(f"  {'step':<20}{'batch':>6}{'median s':>10}{'images/s':>10}{'GFLOP':>8}{'% peak':>8}")
        for name in ("standard", "adversarial_pgd7", "pgd20_evaluation"):
            r = t[name]
            print(
                f"  {name:<20}{r['batch']:>6}{r['median_s']:>10.3f}{r['images_per_s']:>10.2f}"
                f"{r['flops'] / 1e9:>8.1f}{100 * r['fraction_of_peak']:>8.1f}"
            )
    if report.get("micro"):
        print("\ndepthwise convolution fwd + both grads, oneDNN vs reformulated (ms)")
        for r in report["micro"]:
            print(
                f"  {r['shape']!s:<20} k{r['kernel']} d{r['dilation']}: {r['native_ms']:8.2f} "
                f"{r['reformulated_ms']:8.2f}  x{r['speedup']:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    search_step.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="C=8, 5 cells, batches 8,16, K=3, 2 repeats")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 16,64)")
    parser.add_argument("--fwd-batches", default=None, help="batch sizes of the fwd-bwd section (default: --batches)")
    parser.add_argument("--methods", default=",".join(search_step.METHODS))
    parser.add_argument("--orders", default="first,second", help="first and/or second")
    parser.add_argument("--options", default="plain,fast", help="supernet implementations to compare")
    parser.add_argument(
        "--sections", default="fwd-bwd,search,memory,throughput", help="fwd-bwd, search, memory, throughput, micro, ops"
    )
    parser.add_argument("--train-channels", type=int, default=36, help="C of the network trained from scratch")
    parser.add_argument("--train-layers", type=int, default=20, help="cells of the network trained from scratch")
    parser.add_argument("--train-batch", type=int, default=32, help="batch of the training-throughput section")
    parser.add_argument("--eval-batch", type=int, default=32, help="batch of the PGD-20 evaluation section")
    parser.add_argument("--memory-orders", default=None, help="orders of the memory section (default: --orders)")
    parser.add_argument("--json", default=None, help="also write the report to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        settings = argparse.Namespace(**json.loads(args.settings))
        result = search_worker(settings) if args.worker == "search" else memory_worker(settings)
        print(json.dumps(result))
        return

    if args.quick:
        args.channels, args.layers, args.pgd_steps = 8, 5, 3
        args.train_channels, args.train_layers, args.train_batch, args.eval_batch = 16, 8, 16, 16
        args.repeats = min(args.repeats, 2)
        args.batches = args.batches or "8,16"
    args.batches = [int(b) for b in (args.batches or "16,64").split(",")]
    args.fwd_batches = [int(b) for b in args.fwd_batches.split(",")] if args.fwd_batches else list(args.batches)
    args.fwd_batch = args.fwd_batches[0]
    args.methods = args.methods.split(",")
    args.orders = [o for o in args.orders.split(",") if o]
    args.memory_orders = args.memory_orders.split(",") if args.memory_orders else list(args.orders)
    args.options = args.options.split(",")
    sections = set(args.sections.split(","))
    torch.set_num_threads(args.threads)

    report: Dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "settings")},
        "machine": _machine(args),
        "load_average_start": _load_average(),
    }
    started = time.perf_counter()
    if "micro" in sections:
        report["micro"] = micro(args)
    if "ops" in sections:
        report["ops"] = operator_counts(args)
    if "fwd-bwd" in sections:
        report["forward_backward"] = [forward_backward(args, batch) for batch in args.fwd_batches]
    if "search" in sections:
        report["search"] = {o: {str(b): search(args, o, b) for b in args.batches} for o in args.orders}
    if "memory" in sections:
        report["memory"] = {o: {str(b): memory(args, o, b) for b in args.batches} for o in args.memory_orders}
    if "throughput" in sections:
        report["throughput"] = throughput(args)
    report["load_average_end"] = _load_average()
    report["wall_s"] = time.perf_counter() - started
    print_report(report)
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
