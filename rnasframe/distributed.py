"""Data-parallel search and training through ``torchrun``: process group, gradient averaging, checks.

rnasframe does not wrap models in :class:`~torch.nn.parallel.DistributedDataParallel`: a search
step runs several backward passes with different ``inputs`` (``alpha`` only, ``w`` only, the
input only inside PGD), which DDP's hooks do not follow. Instead, each optimizer averages the
gradients it is about to apply with one all-reduce per step (:func:`average_gradients`), which is
what DDP computes, and every rank starts from rank 0's parameters. BatchNorm statistics stay
per rank, as under DDP without SyncBatchNorm.

Launch with ``torchrun --nproc_per_node=N examples/rnas_cifar10.py --gin_file=max.gin``; the
global batch (``SearchEngine.batch_size``) is split evenly across ranks.
"""

from __future__ import annotations

import datetime
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "world_size",
    "rank",
    "is_main_process",
    "initialize_from_environment",
    "average_gradients",
    "average_tensors",
    "broadcast_module",
    "check_identical",
    "all_reduce_mean",
    "barrier",
]


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process' rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0, which alone writes the run folder and checkpoints."""
    return rank() == 0


def initialize_from_environment(device: torch.device) -> Optional[torch.device]:
    """Join the process group described by ``torchrun``'s environment, if any.

    Uses NCCL for CUDA devices and gloo otherwise. Does nothing when ``WORLD_SIZE`` is unset or 1,
    or when a process group already exists.

    Returns:
        The device this rank should use (``cuda:LOCAL_RANK`` for CUDA), or ``None`` when not
        distributed.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return device


def _flat_all_reduce_mean(tensors: Sequence[Tensor]) -> None:
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Replace each parameter's ``.grad`` by its mean over ranks (no-op when not distributed).

    Parameters without a gradient get a zero gradient first, so every rank reduces the same list.
    """
    if not _active():
        return
    by_dtype: Dict[Tuple[torch.dtype, torch.device], List[Tensor]] = {}
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in by_dtype.values():
        _flat_all_reduce_mean(grads)


def average_tensors(tensors: Sequence[Tensor]) -> None:
    """Replace each tensor in place by its mean over ranks (no-op when not distributed)."""
    if not _active():
        return
    by_dtype: dict = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for group in by_dtype.values():
        _flat_all_reduce_mean(group)


def all_reduce_mean(values: dict) -> dict:
    """Average a dict of floats over ranks (same keys on every rank).

    The values travel in a tensor on this rank's CUDA device under NCCL (which reduces CUDA
    tensors only), on the CPU otherwise.
    """
    if not _active():
        return values
    keys = sorted(values)
    nccl = dist.get_backend() == dist.Backend.NCCL
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, tensor.tolist())}


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (no-op when not distributed)."""
    if not _active():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor, src=0)


def check_identical(tensors: Sequence[Tensor], what: str) -> None:
    """Raise :class:`RuntimeError` unless ``tensors`` are bit-identical on every rank.

    Cheap for small tensors such as architecture parameters; guards against ranks that silently
    search different architectures.
    """
    if not _active():
        return
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    gathered: List[Tensor] = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    reference = gathered[0].cpu()
    for index, other in enumerate(gathered[1:], start=1):
        if not torch.equal(reference, other.cpu()):
            raise RuntimeError(f"{what} differ between rank 0 and rank {index}; the ranks are no longer in sync")


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if _active():
        dist.barrier()
