"""GPU validation of the supernet paths in one run (under 8 minutes on one GPU): correctness
against the CPU, iteration times, extrapolated search hours and a 2-process search step.

1. **Same numbers as the CPU.** One first-order iteration (alpha-step + w-step) of DARTS,
   RNAS-uniform and RNAS-max from the same initialization and the same batches, on CUDA and on
   the CPU, for the ``plain``, ``fast`` and ``lean`` supernets and the lean one with
   ``cuda_graphs``; TF32 is off and the perturbations' random noise is drawn on the CPU, so both
   devices see the same inputs. Tolerances (float32, sums in other orders):

   - weights: ``||dw_cuda - dw_cpu|| / ||dw_cpu|| <= 1e-3`` over all weights, ``dw`` the update
     of the iteration;
   - alphas: Adam's first step moves each entry by about ``lr * sign(g)``, so entries whose CPU
     gradient ``|g|`` exceeds ``1e-6`` must agree to ``1e-5``; every entry to ``2 * lr``.
2. **Speed.** Seconds per search iteration and per warm-up iteration (w-step only) at the paper's
   size (C = 16, 8 cells, batch 64, K = 10), CUDA events, lean default supernet.
3. **Full searches.** Those times x 390 iterations per epoch x (15 warm-up + 35 search epochs), in
   hours, for DARTS, RNAS-uniform and RNAS-max.
4. **Data parallel.** One search step in 2 processes on one GPU with NCCL (NCCL refuses two ranks
   on one device in some versions; then the step is repeated with gloo on the same CUDA tensors
   and both outcomes are printed).
5. **Exactness** (``docs/exactness.md``), with ``Exactness.deterministic = True``:

   - *pixels*: every byte converts to the CPU's float32 bits on the GPU, and a resident loader
     (data on the GPU) yields the copied loader's batches bit for bit;
   - *deterministic kernels*: a DARTS network with its auxiliary head on 16x16 inputs (adaptive
     pooling to 2x2) and a NAS-Bench-201 supernet run forward and backward without an operation
     that lacks a deterministic kernel;
   - *identical alpha*: a tiny RNAS-uniform search (2 epochs of 2 steps, random noise on the GPU)
     run twice in fresh processes gives the same alpha, bit for bit;
   - *resume across GPU counts*: the same search stopped after epoch 1 with every GPU visible,
     its checkpoint's CUDA generator state rewritten as a checkpoint of an earlier version from
     an 8-GPU node would hold it (one state per GPU), resumed with ``CUDA_VISIBLE_DEVICES=0``:
     it must finish with the uninterrupted search's alpha, bit for bit (the run keeps GPU 0's
     generator), and log that the generator came from another number of GPUs.

``--dry`` runs every part on the CPU at a tiny size (a few seconds; the test suite runs it so this
script cannot rot); the graph switch is then only checked to refuse CPU inputs with its message.

    bash benchmarks/gpu_check.sh            # on a machine with a GPU
    bash benchmarks/gpu_check.sh --dry      # anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List, Tuple

import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_step

METHODS = ("darts", "uniform", "max")
PATHS = ("plain", "fast", "lean", "lean+graphs")
ITERATIONS_PER_EPOCH, WARMUP_EPOCHS, SEARCH_EPOCHS = 390, 15, 35
WEIGHT_TOLERANCE, ALPHA_TOLERANCE, ALPHA_GRADIENT_FLOOR = 1e-3, 1e-5, 1e-6


@contextlib.contextmanager
def host_noise(seed: int) -> Iterator[None]:
    """Draw ``torch.rand_like`` / ``torch.randn_like`` on the CPU (seeded), then move it: the same
    perturbation noise on every device."""
    generator = torch.Generator().manual_seed(seed)
    rand_like, randn_like = torch.rand_like, torch.randn_like

    def draw(sampler: Any, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return sampler(x.shape, generator=generator, dtype=x.dtype).to(x.device)

    torch.rand_like = lambda x, **kw: draw(torch.rand, x, **kw)  # type: ignore[assignment]
    torch.randn_like = lambda x, **kw: draw(torch.randn, x, **kw)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.rand_like, torch.randn_like = rand_like, randn_like  # type: ignore[assignment]


def settings(args: argparse.Namespace, device: str, batch: int) -> argparse.Namespace:
    return argparse.Namespace(
        channels=args.channels, layers=args.layers, size=args.size, batch=batch,
        pgd_steps=args.pgd_steps, second_order=False, device=device,
    )


def make_run(method: str, path: str, args: argparse.Namespace, device: str, batch: int) -> search_step.SearchRun:
    from rnasframe.spaces.darts.supernet import SupernetOptions

    run = search_step.SearchRun(method, path.split("+")[0], settings(args, device, batch), seed=0)
    if path == "lean+graphs":
        run.supernet.options = SupernetOptions(cuda_graphs=True)
    return run


def one_iteration(method: str, path: str, args: argparse.Namespace, device: str) -> Dict[str, torch.Tensor]:
    """Parameters before and after one iteration, and the alpha gradients, on the CPU."""
    run = make_run(method, path, args, device, args.check_batch)
    generator = torch.Generator().manual_seed(1)
    shape = (args.check_batch, 3, args.size, args.size)
    batches = [
        (torch.rand(shape, generator=generator).to(device), torch.randint(0, 10, (args.check_batch,), generator=generator).to(device))
        for _ in range(2)
    ]
    before = {n: p.detach().cpu().clone() for n, p in run.supernet.named_parameters()}
    with host_noise(2):
        run.optimizer.step(run.supernet, run.objective, batches[0], batches[1], update_arch=True)
    result = {f"delta/{n}": p.detach().cpu() - before[n] for n, p in run.supernet.named_parameters()}
    for name, alpha in zip(("alphas_normal", "alphas_reduce"), run.supernet.arch_parameters()):
        grad = alpha.grad if alpha.grad is not None else torch.zeros_like(alpha)  # no cell of that type
        result[f"grad/{name}"] = grad.detach().cpu()
    return result


def compare(device_result: Dict[str, torch.Tensor], cpu: Dict[str, torch.Tensor], lr_alpha: float) -> Dict[str, Any]:
    """Relative weight-update error and alpha disagreement (see the module docstring)."""
    alphas = ("alphas_normal", "alphas_reduce")
    weights = [k for k in cpu if k.startswith("delta/") and k[6:] not in alphas]
    diff = torch.sqrt(sum(((device_result[k] - cpu[k]) ** 2).sum() for k in weights))
    norm = torch.sqrt(sum((cpu[k] ** 2).sum() for k in weights))
    weight_error = float(diff / norm)
    alpha_error, alpha_max = 0.0, 0.0
    for name in alphas:
        delta = (device_result[f"delta/{name}"] - cpu[f"delta/{name}"]).abs()
        clear = cpu[f"grad/{name}"].abs() > ALPHA_GRADIENT_FLOOR
        alpha_error = max(alpha_error, float(delta[clear].max()) if clear.any() else 0.0)
        alpha_max = max(alpha_max, float(delta.max()))
    ok = weight_error <= WEIGHT_TOLERANCE and alpha_error <= ALPHA_TOLERANCE and alpha_max <= 2 * lr_alpha
    return {"weight_rel_error": weight_error, "alpha_error": alpha_error, "alpha_max_diff": alpha_max, "ok": ok}


def correctness(args: argparse.Namespace, device: str) -> Dict[str, Any]:
    from rnasframe.bilevel import ArchOptimizerSettings

    lr_alpha = ArchOptimizerSettings().learning_rate
    report: Dict[str, Any] = {}
    # The dry run compares CPU with CPU: plain against itself would say nothing.
    paths = [p for p in PATHS if not (device == "cpu" and p == "plain")]
    for method in METHODS:
        cpu = one_iteration(method, "plain", args, "cpu")
        for path in paths:
            key = f"{method}/{path}"
            if path == "lean+graphs" and device == "cpu":
                try:
                    one_iteration(method, path, args, "cpu")
                    report[key] = {"ok": False, "error": "cuda_graphs accepted a CPU input"}
                except RuntimeError as error:
                    report[key] = {"ok": "needs a CUDA input" in str(error), "refused_on_cpu": True}
                print(f"  {key:<22} {json.dumps(report[key])}", flush=True)
                continue
            try:
                report[key] = compare(one_iteration(method, path, args, device), cpu, lr_alpha)
            except Exception as error:
                report[key] = {"ok": False, "error": f"{type(error).__name__}: {str(error)[:300]}"}
            print(f"  {key:<22} {json.dumps(report[key])}", flush=True)
    return report


def timings(args: argparse.Namespace, device: str) -> Dict[str, Dict[str, float]]:
    """Median seconds per search and warm-up iteration (CUDA events on a GPU)."""
    result: Dict[str, Dict[str, float]] = {}
    for method in METHODS:
        run = make_run(method, "lean", args, device, args.batch)

        def step(update_arch: bool) -> float:
            train, valid = run.batch(), run.batch()
            return search_step.timed(
                lambda: run.optimizer.step(run.supernet, run.objective, train, valid, update_arch=update_arch),
                run.device,
            )

        for _ in range(args.warmup):
            step(True)
        search = sorted(step(True) for _ in range(args.repeats))
        warm = sorted(step(False) for _ in range(args.repeats))
        result[method] = {"search_s": search[len(search) // 2], "warmup_s": warm[len(warm) // 2]}
        print(f"  {method:<8} search {result[method]['search_s']:.4f} s/iteration, warm-up {result[method]['warmup_s']:.4f} s/iteration", flush=True)
    return result


def extrapolate(times: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    """Hours of a full search: 390 iterations x (15 warm-up + 35 search epochs)."""
    return {
        method: ITERATIONS_PER_EPOCH * (WARMUP_EPOCHS * t["warmup_s"] + SEARCH_EPOCHS * t["search_s"]) / 3600
        for method, t in times.items()
    }


def _distributed_worker(rank: int, backend: str, device: str, args: argparse.Namespace, port: int, queue: Any) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    try:
        dist.init_process_group(backend=backend, rank=rank, world_size=2)
        run = make_run("uniform", "lean", args, device, args.check_batch)
        torch.manual_seed(10 + rank)  # different batches per rank, as in a real data-parallel run
        run.step()
        alphas = torch.cat([a.detach().reshape(-1) for a in run.supernet.arch_parameters()])
        gathered = [torch.empty_like(alphas) for _ in range(2)]
        dist.all_gather(gathered, alphas)
        queue.put((rank, "ok", bool(torch.equal(gathered[0], gathered[1]))))
    except Exception as error:
        queue.put((rank, f"{type(error).__name__}: {str(error)[:300]}", False))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def distributed(args: argparse.Namespace, device: str) -> Dict[str, Any]:
    """One RNAS-uniform step in 2 processes; alphas must be identical on both ranks after it."""
    backends = ["nccl", "gloo"] if device == "cuda" else ["gloo"]
    report: Dict[str, Any] = {}
    context = mp.get_context("spawn")
    for index, backend in enumerate(backends):
        queue = context.Queue()
        port = 29500 + (os.getpid() % 1000) + index
        processes = [context.Process(target=_distributed_worker, args=(r, backend, device, args, port, queue)) for r in range(2)]
        for p in processes:
            p.start()
        outcomes: List[Tuple[int, str, bool]] = []
        try:
            outcomes = [queue.get(timeout=args.distributed_timeout) for _ in processes]
        except Exception:
            outcomes = [(-1, "timed out", False)]
        for p in processes:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        ok = len(outcomes) == 2 and all(status == "ok" and same for _, status, same in outcomes)
        report[backend] = {"ok": ok, "ranks": [list(o) for o in sorted(outcomes)]}
        print(f"  {backend}: {json.dumps(report[backend])}", flush=True)
        if ok:
            break
    return report


def pixels_and_batches(device: str) -> Dict[str, Any]:
    """Every byte's float32 bits on ``device`` against the CPU's; resident against copied batches."""
    from rnasframe.data import Augmentation, BatchLoader
    from rnasframe.data.images import LabeledImages

    every_byte = torch.arange(256, dtype=torch.uint8).view(4, 1, 8, 8)
    labels = torch.zeros(4, dtype=torch.long)
    cpu = LabeledImages(every_byte, labels, 1).pixels(torch.arange(4))
    there = LabeledImages(every_byte.to(device), labels.to(device), 1).pixels(torch.arange(4, device=device))
    pixel_ok = torch.equal(cpu.view(torch.int32), there.cpu().view(torch.int32))
    generator = torch.Generator().manual_seed(0)
    images = LabeledImages(
        torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=generator),
        torch.randint(0, 10, (64,), generator=generator), 10,
    )
    common: Dict[str, Any] = {"seed": 3, "augmentation": Augmentation(crop_padding=2, cutout=4), "drop_last": True, "device": device}
    copied, resident = BatchLoader(images, 16, **common), BatchLoader(images, 16, resident=True, **common)
    batches_ok = all(
        torch.equal(x.cpu().view(torch.int32), x_resident.cpu().view(torch.int32)) and torch.equal(y.cpu(), y_resident.cpu())
        for epoch in (0, 1)
        for (x, y), (x_resident, y_resident) in zip(copied.epoch(epoch), resident.epoch(epoch))
    )
    return {"ok": pixel_ok and batches_ok, "pixels_equal_cpu": pixel_ok, "resident_equals_copied": batches_ok}


def deterministic_kernels(device: str) -> Dict[str, Any]:
    """Forward and backward of the networks that used adaptive pooling, in deterministic mode."""
    from rnasframe.determinism import Exactness
    from rnasframe.interfaces.search_space import InputSpec
    from rnasframe.spaces.darts.genotypes import DARTS_V2
    from rnasframe.spaces.darts.network import DartsNetwork
    from rnasframe.spaces.nasbench201.supernet import NasBench201Supernet

    spec = InputSpec((3, 16, 16))
    report: Dict[str, Any] = {"ok": True}
    with Exactness(deterministic=True).applied(torch.device(device)):
        for name, net in (
            ("darts_network_auxiliary", DartsNetwork(DARTS_V2, channels=4, layers=3, auxiliary=True, input_spec=spec)),
            ("nasbench201_supernet", NasBench201Supernet(channels=4, cells_per_stage=1, input_spec=spec)),
        ):
            try:
                out = net.to(device).train()(torch.rand(4, 3, 16, 16, device=device))
                (out if isinstance(out, torch.Tensor) else out.logits + out.aux_logits).sum().backward()
                report[name] = "ok"
            except RuntimeError as error:
                report[name] = str(error).splitlines()[0][:300]
                report["ok"] = False
    return report


def _search_role(role: str, run_dir: str, device: str) -> Dict[str, Any]:
    """One tiny RNAS-uniform search in this process (``whole``, ``write``: stop after epoch 1, ``resume``)."""
    import gin

    from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine
    from rnasframe.checkpoint import SearchCheckpoint
    from rnasframe.data.images import LabeledImages
    from rnasframe.data.sources import DataSource
    from rnasframe.determinism import prepare_cublas
    from rnasframe.perturbations import LinfBall, UniformSampler
    from rnasframe.spaces.darts import DartsSpace

    prepare_cublas()  # before this process' first CUDA matrix product
    gin.bind_parameter("Exactness.deterministic", True)

    class Noise(DataSource):
        def _images(self, seed: int) -> LabeledImages:
            generator = torch.Generator().manual_seed(seed)
            return LabeledImages(
                torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=generator),
                torch.randint(0, 10, (64,), generator=generator), 10,
            )

        def load_train(self) -> LabeledImages:
            return self._images(0)

        def load_test(self) -> LabeledImages:
            return self._images(1)

    objective = RobustObjective([PerturbationConsistency(UniformSampler(ball=LinfBall(0.031)), weight=1.0)])
    engine = SearchEngine(
        space=DartsSpace(channels=4, layers=3), data=Noise(), objective=objective, optimizer=FirstOrderDarts(),
        epochs=2, warmup_epochs=0, batch_size=16, seed=3, device=device, max_steps_per_epoch=2, eval_batches=0,
    )
    engine.run(run_dir, resume=role == "resume", stop_after_epoch=1 if role == "write" else None)
    model = SearchCheckpoint.load(os.path.join(run_dir, "checkpoint.pt")).model
    digest = hashlib.sha256()
    for name in ("alphas_normal", "alphas_reduce"):
        digest.update(model[name].float().contiguous().numpy().tobytes())
    return {"alpha_sha256": digest.hexdigest(), "gpus": torch.cuda.device_count() if device == "cuda" else 0}


def _in_fresh_process(role: str, run_dir: str, device: str, visible: str | None) -> Dict[str, Any]:
    env = dict(os.environ)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    command = [sys.executable, os.path.abspath(__file__), "--search_role", role, "--run_dir", run_dir, "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode:
        return {"error": (done.stdout + done.stderr)[-600:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _as_eight_gpu_checkpoint(path: str) -> None:
    """Rewrite the checkpoint's CUDA generator state as an earlier version on an 8-GPU node held it."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    cuda = state["rng"].get("cuda")
    if cuda is not None:  # GPU 0's state, then seven others (what ``get_rng_state_all`` returned)
        state["rng"]["cuda"] = [cuda["state"]] + [torch.roll(cuda["state"], k) for k in range(1, 8)]
    torch.save(state, path)


def identical_alpha_and_resume(device: str) -> Dict[str, Any]:
    """Two deterministic searches, and one stopped, rewritten as an 8-GPU checkpoint and resumed on one GPU."""
    with tempfile.TemporaryDirectory() as folder:
        first = _in_fresh_process("whole", os.path.join(folder, "first"), device, None)
        second = _in_fresh_process("whole", os.path.join(folder, "second"), device, None)
        stopped = os.path.join(folder, "stopped")
        written = _in_fresh_process("write", stopped, device, None)
        if "error" not in written:
            _as_eight_gpu_checkpoint(os.path.join(stopped, "checkpoint.pt"))
        resumed = _in_fresh_process("resume", stopped, device, "0" if device == "cuda" else None)
        log_path = os.path.join(stopped, "log.txt")
        log = ""
        if os.path.exists(log_path):
            with open(log_path) as handle:
                log = handle.read()
    same = "alpha_sha256" in first and first.get("alpha_sha256") == second.get("alpha_sha256")
    resumed_same = "alpha_sha256" in resumed and resumed.get("alpha_sha256") == first.get("alpha_sha256")
    noted = device != "cuda" or "8 visible GPUs" in log
    return {
        "ok": same and resumed_same and noted,
        "identical_alpha_in_two_runs": same,
        "resumed_with_one_visible_gpu_equals_uninterrupted": resumed_same,
        "written_with_gpus": written.get("gpus"),
        "resumed_with_gpus": resumed.get("gpus"),
        "note_logged": noted,
        "runs": {"first": first, "second": second, "written": written, "resumed": resumed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="everything on the CPU at a tiny size")
    parser.add_argument("--json", default=None)
    parser.add_argument("--search_role", default=None, help=argparse.SUPPRESS)  # internal: part 5's searches
    parser.add_argument("--run_dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search_role:
        print(json.dumps(_search_role(args.search_role, args.run_dir, args.device)))
        return
    dry = args.dry or not torch.cuda.is_available()
    if not args.dry and not torch.cuda.is_available():
        print("no CUDA device: running the dry mode on the CPU", flush=True)
    if dry:
        size = {"channels": 4, "layers": 2, "size": 8, "batch": 2, "check_batch": 2, "pgd_steps": 2, "warmup": 0, "repeats": 1}
    else:
        size = {"channels": 16, "layers": 8, "size": 32, "batch": 64, "check_batch": 16, "pgd_steps": 10, "warmup": 2, "repeats": 5}
    args.__dict__.update(size, distributed_timeout=120 if dry else 300)
    device = "cpu" if dry else "cuda"
    if device == "cuda":
        from rnasframe.determinism import prepare_cublas

        prepare_cublas()  # part 5's deterministic mode needs it before the first cuBLAS call
    torch.manual_seed(0)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    started = time.perf_counter()
    print(f"gpu_check on {name}, torch {torch.__version__}, {json.dumps(size)}", flush=True)
    print("1. one iteration vs the CPU (plain path):", flush=True)
    report: Dict[str, Any] = {"device": name, "settings": size}
    report["correctness"] = correctness(args, device)
    print("2. seconds per iteration (lean):", flush=True)
    report["timings"] = timings(args, device)
    report["hours"] = extrapolate(report["timings"])
    print("3. full search (15 warm-up + 35 search epochs x 390 iterations): "
          + ", ".join(f"{m} {h:.2f} h" for m, h in report["hours"].items()), flush=True)
    print("4. 2-process search step:", flush=True)
    report["distributed"] = distributed(args, device)
    print("5. exactness (deterministic mode):", flush=True)
    report["exactness"] = {
        "pixels_and_batches": pixels_and_batches(device),
        "deterministic_kernels": deterministic_kernels(device),
        "identical_alpha_and_resume": identical_alpha_and_resume(device),
    }
    for key, value in report["exactness"].items():
        shown = {k: v for k, v in value.items() if k != "runs"}
        print(f"  {key:<28} {json.dumps(shown)}", flush=True)
    report["seconds"] = time.perf_counter() - started
    failed = [k for k, v in report["correctness"].items() if not v["ok"]]
    if not any(v["ok"] for v in report["distributed"].values()):
        failed.append("distributed")
    failed += [f"exactness/{k}" for k, v in report["exactness"].items() if not v["ok"]]
    report["failed"] = failed
    print(f"done in {report['seconds']:.0f} s; failed: {failed or 'none'}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
