"""Data-parallel search on CPU with gloo and 2 processes (torchrun and torch.multiprocessing)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from toy import ToySpace

from rnasframe import FirstOrderDarts, RobustObjective, SearchEngine
from rnasframe.checkpoint import load_checkpoint
from rnasframe.data import DigitsSource
from rnasframe.engine import CHECKPOINT_FORMAT

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toy_engine() -> SearchEngine:
    return SearchEngine(
        space=ToySpace(), data=DigitsSource(), objective=RobustObjective(), optimizer=FirstOrderDarts(),
        epochs=2, warmup_epochs=1, batch_size=16, augmentation=None, seed=5, device="cpu",
        max_steps_per_epoch=4, eval_batches=1,
    )


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _toy_engine().run(run_dir)


def test_two_processes_match_one_process_over_the_same_global_batch(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _toy_engine().run(tmp_path / "single")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "double")), nprocs=2, join=True)
    single = load_checkpoint(tmp_path / "single" / "checkpoint.pt", CHECKPOINT_FORMAT)
    double = load_checkpoint(tmp_path / "double" / "checkpoint.pt", CHECKPOINT_FORMAT)
    assert double["world_size"] == 2 and single["world_size"] == 1
    for key, value in single["model"].items():
        torch.testing.assert_close(double["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(single["model"]["alpha"], torch.zeros_like(single["model"]["alpha"]))
    assert double["genotype"] == single["genotype"]
    assert "2 processes" in (tmp_path / "double" / "log.txt").read_text()


def _mismatch_worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    import torch.distributed as dist

    from rnasframe import distributed

    dist.init_process_group("gloo")
    try:
        distributed.check_identical([torch.full((3,), float(rank))], "architecture parameters")
        queue.put((rank, "no error"))
    except RuntimeError as error:
        queue.put((rank, str(error)))
    finally:
        dist.destroy_process_group()


def test_diverged_ranks_are_detected() -> None:
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_mismatch_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)
    messages = dict(queue.get(timeout=5) for _ in range(2))
    assert all("differ between rank 0 and rank 1" in m for m in messages.values()), messages


@pytest.mark.slow
def test_torchrun_search_keeps_alpha_and_genotype_identical_across_ranks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
        str(ROOT / "examples" / "rnas_cifar10.py"), "--gin_file=uniform.gin", "--gin_file=smoke.gin", f"--run_dir={run_dir}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("genotype = Genotype(") == 1  # rank 0 reports
    log = (run_dir / "log.txt").read_text()
    assert "2 processes" in log and "search done" in log
    # Every epoch checked that alpha is bit-identical on both ranks (the run would have failed).
    assert load_checkpoint(run_dir / "checkpoint.pt", CHECKPOINT_FORMAT)["world_size"] == 2
