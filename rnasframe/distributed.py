"""Data-parallel search and training through ``torchrun``: process group, gradient averaging, checks.

rnasframe does not wrap models in :class:`~torch.nn.parallel.DistributedDataParallel`: a search
step runs several backward passes with different ``inputs`` (``alpha`` only, ``w`` only, the
input only inside PGD), which DDP's hooks do not follow. Instead, each optimizer averages the
gradients it is about to apply with one all-reduce per step (:func:`average_gradients`), which is
what DDP computes, and every rank starts from rank 0's parameters. BatchNorm statistics stay
per rank, as under DDP without SyncBatchNorm.

Launch with ``torchrun --nproc_per_node=N examples/rnas_cifar10.py --gin_file=max.gin``; the
global batch (``SearchEngine.batch_size``) is split evenly across ranks.

A failure on one rank ends the job promptly rather than at a collective's timeout: divergence is
decided on every rank together (:func:`nonfinite_ranks`); work that rank 0 does alone (the final
evaluation of a training run, a download) is waited for through the process group's key-value
store, not inside a collective, so that no timeout of the collectives applies and a crash of
rank 0 releases the others (:func:`main_process_first`, :func:`leave_process_group`); a rank that
fails aborts its communicators instead of entering NCCL's collective teardown.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

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
    "cuda_index",
    "nonfinite_ranks",
    "main_process_first",
    "leave_process_group",
    "COLLECTIVE_TIMEOUT",
    "MAIN_WAIT_TIMEOUT",
]

#: The timeout of the process group's collectives (a rank that stops answering fails the others after it).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
#: How long the other ranks wait for what rank 0 does alone (its final evaluation, a download)
#: before they give up; a crash of rank 0 releases them at once.
MAIN_WAIT_TIMEOUT = datetime.timedelta(hours=24)
_KEY_PREFIX = "rnasframe/"


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


def cuda_index(local_rank: int, visible: int) -> int:
    """The index, among the GPUs this process sees, of the GPU a ``torchrun`` rank should use.

    ``torchrun`` numbers the processes of a node with ``LOCAL_RANK``. When each process sees all
    of the node's GPUs, process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK``; when the launcher gives
    each process one GPU of its own (a visible-device mask per process, as cluster schedulers
    set it), that GPU is index 0 whatever the rank.

    Raises:
        ValueError: no GPU is visible, or several are but fewer than ``local_rank + 1``
            (two ranks on one GPU, which NCCL does not support).
    """
    if local_rank < 0:
        raise ValueError(f"LOCAL_RANK must be >= 0, got {local_rank}")
    if visible < 1:
        raise ValueError(f"LOCAL_RANK={local_rank} asks for a GPU, but this process sees none")
    if visible == 1:
        return 0
    if local_rank >= visible:
        raise ValueError(
            f"LOCAL_RANK={local_rank} but this process sees only {visible} GPUs: launch at most {visible} "
            f"processes per node, or give each process one GPU of its own (CUDA_VISIBLE_DEVICES)"
        )
    return local_rank


def initialize_from_environment(device: torch.device) -> Optional[torch.device]:
    """Join the process group described by ``torchrun``'s environment, if any.

    Uses NCCL for CUDA devices and gloo otherwise. Does nothing when ``WORLD_SIZE`` is unset or 1,
    or when a process group already exists. A CUDA rank selects its GPU with :func:`cuda_index`
    (``torch.cuda.set_device``) before joining.

    Returns:
        The device this rank should use (``cuda:i`` with ``i = torch.cuda.current_device()`` for
        CUDA), or ``None`` when not distributed.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if device.type == "cuda":
        torch.cuda.set_device(cuda_index(int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()))
        device = torch.device("cuda", torch.cuda.current_device())
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return device


def _reduction_device() -> torch.device:
    """Where small tensors of a collective live: this rank's GPU under NCCL (CUDA tensors only), else the CPU."""
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def nonfinite_ranks(values: Mapping[str, float]) -> List[int]:
    """The ranks whose ``values`` hold a NaN or an infinity, the same list on every rank.

    A collective: every rank calls it with its own values (keys may differ), so that a
    divergence seen by one rank stops all of them together instead of leaving the others in
    their next collective until its timeout. Not distributed: ``[0]`` or ``[]``.
    """
    local = any(not math.isfinite(float(value)) for value in values.values())
    if not _active():
        return [0] if local else []
    flags = torch.tensor([float(local)], device=_reduction_device())
    gathered = [torch.empty_like(flags) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flags)
    return [index for index, flag in enumerate(torch.cat(gathered).tolist()) if flag]


def _store() -> dist.Store:
    return dist.distributed_c10d._get_default_store()


def _wait_for(store: dist.Store, key: str, timeout: datetime.timedelta, what: str) -> str:
    """Wait for ``key`` (set by another rank) and return its value; one clear error otherwise."""
    try:
        store.wait([key], timeout)
        return store.get(key).decode()
    except dist.DistStoreError as error:
        raise TimeoutError(f"rank {rank()} waited {timeout} for {what}; giving up") from error
    except RuntimeError as error:  # the store's host (rank 0 under env://) is gone
        raise RuntimeError(f"rank {rank()} lost the process group while waiting for {what}: {error}") from error


@contextlib.contextmanager
def main_process_first(name: str, timeout: Optional[datetime.timedelta] = None) -> Iterator[None]:
    """Run the block on rank 0 first; the other ranks run it once rank 0's block has ended well.

    For preparation that must happen once, such as a download into a shared folder: rank 0
    downloads, the others then find the files. Not a collective: the others wait on the
    process group's key-value store under ``name``, so ranks that never enter the block owe
    nothing, no collective timeout applies, and rank 0 may enter a block of this name alone
    (as it does when it evaluates). Once rank 0 has completed a block of ``name`` in this
    process group, later waits for it return at once. Not distributed: runs the block.

    Raises:
        RuntimeError: on the other ranks, when rank 0's block raised or rank 0 is gone.
        TimeoutError: on the other ranks, after ``timeout`` (default ``MAIN_WAIT_TIMEOUT``).
    """
    if not _active():
        yield
        return
    key = _KEY_PREFIX + "first/" + name
    store = _store()
    if rank() == 0:
        try:
            yield
        except BaseException as error:
            store.set(key, f"failed: {type(error).__name__}: {error}")
            raise
        store.set(key, "ok")
        return
    status = _wait_for(store, key, timeout or MAIN_WAIT_TIMEOUT, f"rank 0 to finish: {name}")
    if status != "ok":
        raise RuntimeError(f"rank 0 {status} ({name}); this rank stops too")
    yield


def leave_process_group(failed: bool, timeout: Optional[datetime.timedelta] = None) -> None:
    """Leave the process group so that no rank hangs, whether the run ended well or not.

    NCCL's teardown (``destroy_process_group``) is collective: it returns once every rank has
    called it, and never if one rank aborted or died. So every rank first posts on the key-value
    store whether it ended well and, if it did, reads every other rank's post: the other ranks
    wait there for rank 0's own work (its final evaluation) for up to ``timeout`` (default
    ``MAIN_WAIT_TIMEOUT``; no collective timeout applies, and a crash of rank 0 releases them at
    once), rank 0 for the others (which are done by then). All ranks destroy the group when all
    ended well; otherwise each aborts its communicators (gloo's groups are destroyed: their
    teardown is local). A failed rank posts and aborts without waiting. Not distributed, or no
    process group: nothing to do.

    Raises:
        RuntimeError: the store became unreachable (rank 0 is gone) while this rank waited.
        TimeoutError: a rank did not post within its time.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    all_well, error = not failed, None
    if _active():
        store, me, world = _store(), rank(), dist.get_world_size()
        own = f"{_KEY_PREFIX}leave/{me}"
        store.set(own, "failed" if failed else "ok")
        try:
            for other in range(world):
                if all_well and other != me:
                    what = "rank 0's end of the run" if other == 0 else f"rank {other} to leave"
                    wait = (timeout or MAIN_WAIT_TIMEOUT) if other == 0 else COLLECTIVE_TIMEOUT
                    all_well = _wait_for(store, f"{_KEY_PREFIX}leave/{other}", wait, what) == "ok"
        except (RuntimeError, TimeoutError) as caught:
            all_well, error = False, caught
        try:
            if error is not None:
                store.set(own, "failed")  # a rank that reads this later aborts too
            # Under env:// rank 0 hosts the store: it stays until every rank has read what it needs.
            if store.add(f"{_KEY_PREFIX}leave/read", 1) == world:
                store.set(f"{_KEY_PREFIX}leave/all_read", "1")
            if me == 0 and all_well:
                _wait_for(store, f"{_KEY_PREFIX}leave/all_read", COLLECTIVE_TIMEOUT, "every rank to leave")
        except (RuntimeError, TimeoutError) as caught:
            all_well, error = False, error or caught
    _teardown(all_well)
    if error is not None:
        raise error


def _teardown(all_well: bool) -> None:
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if all_well or dist.get_backend() != dist.Backend.NCCL or abort is None:
        dist.destroy_process_group()
    else:
        abort()


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
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduction_device())
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
