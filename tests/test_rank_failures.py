"""A failure on one rank ends a data-parallel run promptly (gloo, 2 processes on the CPU).

One pair of spawned processes runs every scenario in turn (spawning costs more than the
scenarios), each in a fresh process group of its own port, and writes what it saw to a JSON file
per rank; the tests read them. The scenarios:

* ``download``: ``CIFAR10Source(download=True)`` downloads on rank 0 only (torchvision's class is
  replaced by a stand-in that counts its downloads); a failed download on rank 0 stops rank 1
  with rank 0's reason instead of a timeout.
* ``nan``: a search (its warm-up: weights only) whose loss is NaN on rank 1 only stops on both ranks together, naming rank 1;
  only rank 0 asks for a progress bar.
* ``slow_main``: rank 0 works alone for longer than the collectives' timeout (as it does when it
  evaluates a trained network); rank 1 leaves the process group only after rank 0 is done (NCCL's
  teardown is collective) and does not time out.
* ``main_raises`` and ``main_dies``: rank 0 fails (an exception; a hard exit) while rank 1
  waits for it: rank 1 is released at once, not after the waiting timeout.
* ``main_hangs``: rank 0 outlasts the waiting timeout (shortened to 1 s): rank 1 gives up with a
  ``TimeoutError`` and posts that, so rank 0, when it is done, aborts instead of waiting for it.

What only NCCL shows (that its ``destroy_process_group`` blocks until every rank calls it, and
that an aborted communicator must be aborted everywhere) is stood in for here by the order of
the ranks' teardown calls, which the tests check.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch
import torch.multiprocessing as mp
from toy import ToySpace, ToySupernet

from rnasframe import FirstOrderDarts, RobustObjective, SearchEngine, distributed
from rnasframe.data import DigitsSource
from rnasframe.run import Run

SCENARIOS = ("download", "nan", "slow_main", "main_raises", "main_hangs", "main_dies")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _NanOnRankOne(ToySupernet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return logits * float("nan") if distributed.rank() == 1 else logits


class _NanSpace(ToySpace):
    def supernet(self, num_classes: int, input_spec: Any = None) -> Any:
        net = super().supernet(num_classes, input_spec)
        net.__class__ = _NanOnRankOne
        return net


class _FakeCIFAR10:
    """Stands in for torchvision's CIFAR10: a "download" writes the folder and logs one line."""

    fail = False

    def __init__(self, root: str, train: bool, download: bool) -> None:
        folder = Path(root) / "cifar-10-batches-py"
        if download and not folder.is_dir():
            time.sleep(0.5)  # long enough for a second downloader to start too
            if _FakeCIFAR10.fail:
                raise OSError("no internet")
            Path(root).mkdir(parents=True, exist_ok=True)
            with open(Path(root) / "downloads.log", "a") as log:
                log.write(f"rank {distributed.rank()}\n")
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise RuntimeError("Dataset not found or corrupted.")
        self.data = torch.zeros(4, 32, 32, 3, dtype=torch.uint8).numpy()
        self.targets = [0, 1, 2, 3]


def _group(port: int) -> None:
    os.environ["MASTER_PORT"] = str(port)
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))


def _download(rank: int, port: int, root: Path) -> Dict[str, Any]:
    import torchvision.datasets

    from rnasframe.data.sources import CIFAR10Source

    torchvision.datasets.CIFAR10 = _FakeCIFAR10  # type: ignore[misc,assignment]
    _group(port)
    try:
        torch.distributed.barrier()  # both ranks start together
        images = CIFAR10Source(root=str(root / "data"), download=True).load_train()
        outcome: Dict[str, Any] = {"images": len(images)}
        _FakeCIFAR10.fail = True
        try:
            CIFAR10Source(root=str(root / "offline"), download=True).load_train()
        except Exception as error:  # the outcome is what is checked
            outcome["failure"] = f"{type(error).__name__}: {error}"
        return outcome
    finally:
        torch.distributed.destroy_process_group()


def _nan(rank: int, port: int, root: Path) -> Dict[str, Any]:
    import rnasframe.run

    asked: List[Any] = []
    original = rnasframe.run.tqdm

    def recording(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("disable"))
        return original(*args, **kwargs)

    rnasframe.run.tqdm = recording  # type: ignore[assignment]
    os.environ["MASTER_PORT"] = str(port)
    engine = SearchEngine(
        space=_NanSpace(), data=DigitsSource(), objective=RobustObjective(), optimizer=FirstOrderDarts(),
        epochs=2, warmup_epochs=2, batch_size=16, augmentation=None, seed=5, device="cpu",
        max_steps_per_epoch=1, eval_batches=0,
    )
    try:
        engine.run(root / "nan")
        error = "none"
    except FloatingPointError as failure:
        error = str(failure)
    return {"error": error, "bars_disabled": asked, "group_left": not torch.distributed.is_initialized()}


def _order(root: Path, event: str) -> None:
    with open(root / "order.log", "a") as log:
        log.write(event + "\n")


def _slow_main(rank: int, port: int, root: Path) -> Dict[str, Any]:
    os.environ["MASTER_PORT"] = str(port)
    destroy = torch.distributed.destroy_process_group

    def recorded_destroy(*args: Any, **kwargs: Any) -> None:
        _order(root, f"rank {rank} destroys")
        destroy(*args, **kwargs)

    torch.distributed.destroy_process_group = recorded_destroy
    collective_timeout = distributed.COLLECTIVE_TIMEOUT
    distributed.COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=2)  # rank 0's work outlasts it
    try:
        with Run(root / f"slow-{rank}", "training", False, torch.device("cpu")) as run:
            if run.main:
                time.sleep(4)
                _order(root, "rank 0 evaluated")
        return {"left": not torch.distributed.is_initialized()}
    finally:
        torch.distributed.destroy_process_group = destroy
        # the later scenarios join with the usual timeout: a rank that reaches the next scenario
        # seconds before the other (rank 1 leaves main_hangs early by design) must wait for it
        distributed.COLLECTIVE_TIMEOUT = collective_timeout


def _main_fails(rank: int, port: int, root: Path, how: str) -> Dict[str, Any]:
    os.environ["MASTER_PORT"] = str(port)
    distributed.MAIN_WAIT_TIMEOUT = datetime.timedelta(seconds=1 if how == "hangs" else 60)
    started = time.perf_counter()
    outcome: Dict[str, Any] = {}
    try:
        with Run(root / f"fails-{how}-{rank}", "training", False, torch.device("cpu")) as run:
            if run.main:
                time.sleep(3 if how == "hangs" else 0.5)
                if how == "dies":
                    os._exit(7)
                if how == "raises":
                    raise KeyError("rank 0's evaluation broke")
        outcome["error"] = "none"
    except BaseException as error:  # the outcome is what is checked
        outcome["error"] = f"{type(error).__name__}: {error}"
    outcome["released_before_timeout"] = time.perf_counter() - started < 60
    outcome["left"] = not torch.distributed.is_initialized()
    return outcome


def _worker(rank: int, ports: Dict[str, int], root: str) -> None:
    base = Path(root)
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    runners = {
        "download": lambda: _download(rank, ports["download"], base),
        "nan": lambda: _nan(rank, ports["nan"], base),
        "slow_main": lambda: _slow_main(rank, ports["slow_main"], base),
        "main_raises": lambda: _main_fails(rank, ports["main_raises"], base, "raises"),
        "main_hangs": lambda: _main_fails(rank, ports["main_hangs"], base, "hangs"),
        "main_dies": lambda: _main_fails(rank, ports["main_dies"], base, "dies"),
    }
    for name in SCENARIOS:
        try:
            result = runners[name]()
        except BaseException as error:  # recorded for the tests
            result = {"unexpected": f"{type(error).__name__}: {error}"}
        (base / f"{name}-{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rank_failures")
    context = mp.get_context("spawn")
    ports = {name: _free_port() for name in SCENARIOS}
    processes = [context.Process(target=_worker, args=(r, ports, str(root))) for r in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert processes[0].exitcode == 7, "rank 0 ends with its hard exit"
    assert processes[1].exitcode == 0
    return root


def _read(root: Path, name: str) -> List[Dict[str, Any]]:
    results = []
    for rank in range(2):
        path = root / f"{name}-{rank}.json"
        results.append(json.loads(path.read_text()) if path.exists() else {})
    return results


@pytest.mark.slow
def test_only_rank_0_downloads_and_its_failure_stops_the_others(outcomes: Path) -> None:
    ranks = _read(outcomes, "download")
    assert [r.get("images") for r in ranks] == [4, 4], ranks
    assert (outcomes / "data" / "downloads.log").read_text() == "rank 0\n"
    assert ranks[0]["failure"].startswith("OSError: no internet")
    assert ranks[1]["failure"].startswith("RuntimeError: rank 0 failed: OSError: no internet"), ranks[1]


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_naming_it(outcomes: Path) -> None:
    ranks = _read(outcomes, "nan")
    for result in ranks:
        assert "metric" in result.get("error", "") and "in epoch 1 on rank 1 of 2" in result["error"], ranks
        assert result["error"].endswith("the search diverged") and result["group_left"]
    assert "became nan" in ranks[1]["error"]
    assert ranks[0]["bars_disabled"] == [None] and ranks[1]["bars_disabled"] == [True]


@pytest.mark.slow
def test_the_other_ranks_leave_after_rank_0_without_a_collective_timeout(outcomes: Path) -> None:
    ranks = _read(outcomes, "slow_main")
    assert ranks == [{"left": True}, {"left": True}]
    order = (outcomes / "order.log").read_text().splitlines()
    assert order[0] == "rank 0 evaluated" and sorted(order[1:]) == ["rank 0 destroys", "rank 1 destroys"], order


@pytest.mark.slow
def test_a_failing_rank_0_releases_the_others_at_once(outcomes: Path) -> None:
    raised, waited = _read(outcomes, "main_raises")
    assert raised["error"].startswith("KeyError") and raised["left"]
    assert waited["released_before_timeout"] and waited["left"], waited
    assert "TimeoutError" not in waited["error"]
    _, survivor = _read(outcomes, "main_dies")
    assert survivor["released_before_timeout"] and survivor["left"], survivor
    assert survivor["error"].startswith("RuntimeError: rank 1 lost the process group while waiting for rank 0"), survivor


@pytest.mark.slow
def test_a_hanging_rank_0_is_given_up_after_the_waiting_timeout(outcomes: Path) -> None:
    main, other = _read(outcomes, "main_hangs")
    assert other["error"] == "TimeoutError: rank 1 waited 0:00:01 for rank 0's end of the run; giving up", other
    assert other["left"] and main == {"error": "none", "released_before_timeout": True, "left": True}


@pytest.mark.parametrize(("local_rank", "visible", "index"), [(0, 8, 0), (3, 8, 3), (7, 8, 7), (3, 1, 0), (0, 1, 0)])
def test_each_rank_uses_a_gpu_it_can_see(local_rank: int, visible: int, index: int) -> None:
    assert distributed.cuda_index(local_rank, visible) == index


@pytest.mark.parametrize(("local_rank", "visible", "message"), [
    (4, 4, r"LOCAL_RANK=4 but this process sees only 4 GPUs: launch at most 4 processes per node"),
    (0, 0, r"LOCAL_RANK=0 asks for a GPU, but this process sees none"),
    (-1, 2, r"LOCAL_RANK must be >= 0, got -1"),
])
def test_impossible_gpu_assignments_fail_in_one_line(local_rank: int, visible: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distributed.cuda_index(local_rank, visible)


def test_one_visible_gpu_per_process_gives_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's LOCAL_RANK=3 with a launcher that shows each process one GPU: cuda:0, not cuda:3."""
    chosen: List[int] = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: chosen.append(torch.device("cuda", index).index))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: chosen[-1])
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # no group is created here
    assert distributed.initialize_from_environment(torch.device("cuda")) == torch.device("cuda", 0)
    assert chosen == [0]


def test_a_divergence_names_the_metric_and_nothing_is_reduced_alone(tmp_path: Path) -> None:
    with Run(tmp_path / "run", "search", False, torch.device("cpu")) as run:
        run.check_finite({"loss": 1.0}, 0)
        with pytest.raises(FloatingPointError, match=r"^metric loss became nan in epoch 3; the search diverged$"):
            run.check_finite({"ce": 0.5, "loss": float("nan")}, 2)
    assert distributed.nonfinite_ranks({"a": float("-inf")}) == [0] and distributed.nonfinite_ranks({}) == []


def test_progress_bars_are_drawn_on_rank_0_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(tmp_path / "run", "search", False, torch.device("cpu"))
    main = run.progress(range(3), 3, 0, "x")
    assert list(main) == [0, 1, 2]
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    other = run.progress(range(3), 3, 0, "x")
    assert other.disable is True  # type: ignore[attr-defined] and list(other) == [0, 1, 2]
