"""The lifecycle every run shares: the search (:class:`~rnasframe.SearchEngine`) and training
(:class:`~rnasframe.training.Trainer`) alike.

:class:`Run` owns what used to be written out twice: the guard against overwriting a run folder,
the ``torchrun`` process group, the per-(seed, rank, epoch) reseeding, ``config.gin`` and
``operative_config.gin``, the run folder's log and event file, the "stopped"/"interrupted"
messages, the divergence check and the device-synchronized epoch clock::

    with Run(run_dir, activity="search", resume=resume, device=device) as run:
        ...                                  # validate, load data, build the model
        folder = run.open_folder()           # nothing is written before this
        for epoch in range(start, epochs):
            if run.stop_requested(epoch, stop_after_epoch):
                return None
            run.seed_epoch(seed, epoch)
            started = time.perf_counter()
            for batch in run.progress(batches, total=steps, desc="..."):   # a bar on rank 0 only
                ...
            run.check_finite(local_metrics, epoch)   # every rank, before the reduction
            seconds = run.seconds_since(started)
            run.epochs_done = epoch + 1      # after the checkpoint is written
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, List, Mapping, Optional, Type

import gin
import torch
from tqdm.auto import tqdm

from rnasframe import distributed
from rnasframe.checkpoint import CheckpointError
from rnasframe.determinism import Exactness
from rnasframe.run_folder import RunFolder, write_atomic
from rnasframe.seeding import epoch_seed, seed_everything

__all__ = ["Run", "MidEpochCheckpoints", "check_position", "launch_world_size", "write_config"]

CHECKPOINT_NAME = "checkpoint.pt"


def launch_world_size() -> int:
    """The number of processes of this run: the process group's, else ``torchrun``'s ``WORLD_SIZE``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return distributed.world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def write_config(folder: RunFolder) -> None:
    """Write gin's full config (``config.gin``) and operative config (``operative_config.gin``).

    ``config.gin`` is what ``--resume`` and ``rnas-evaluate`` parse again; the operative config
    (every value actually used) also goes to tensorboardX as text. Nothing is written when gin
    holds no configuration (a run built in Python).
    """
    operative = gin.operative_config_str()
    full = gin.config_str()
    if full.strip():
        write_atomic(folder.path / "config.gin", full)
    if operative.strip():
        write_atomic(folder.path / "operative_config.gin", operative)
        folder.writer.add_text("config/operative", "    " + operative.replace("\n", "\n    "), 0)


class Run:
    """A context manager around one search or training run in ``run_dir``.

    Constructing it checks the guard: a folder that already holds ``checkpoint.pt`` is only reused
    with ``resume=True``, so nothing is ever overwritten by mistake. Entering joins the process
    group that ``torchrun``'s environment describes and leaves it on exit if this run created it
    (:func:`~rnasframe.distributed.leave_process_group`: after an error at once, otherwise once
    every rank is done, rank 0's final evaluation included). :meth:`open_folder` opens the run
    folder (on rank 0 only; the other ranks get a disabled
    one); on exit a Ctrl-C is logged with the way to resume, and the folder is closed.

    From entering to exit the exactness contract (:class:`~rnasframe.determinism.Exactness`, as
    gin binds it) holds: deterministic kernels and the TF32 policy.

    Args:
        run_dir: the run folder.
        activity: ``"search"`` or ``"training"``, used in messages.
        resume: whether the run continues the folder's checkpoint.
        device: the device asked for; :attr:`device` is the one to use (under ``torchrun`` with
            CUDA, the GPU :func:`~rnasframe.distributed.cuda_index` picks for ``LOCAL_RANK``).

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is false.
    """

    def __init__(self, run_dir: os.PathLike[str] | str, activity: str, resume: bool, device: torch.device) -> None:
        self.path = Path(run_dir)
        self.activity = activity
        self.checkpoint_path = self.path / CHECKPOINT_NAME
        if not resume and self.checkpoint_path.exists():
            noun = "a search" if activity == "search" else f"a {activity} run"
            raise FileExistsError(
                f"{self.path} already holds {noun} ({CHECKPOINT_NAME}); pass --resume to continue it "
                f"or choose another --run_dir"
            )
        self.device = device
        #: Epochs whose checkpoint is written (the loop sets it); used in the interruption message.
        self.epochs_done = 0
        self._folder: Optional[RunFolder] = None
        self._owns_group = False
        self._flags = contextlib.ExitStack()
        #: Notes for the log from applying the exactness contract (see :meth:`open_folder`).
        self.notes: List[str] = []

    @property
    def world_size(self) -> int:
        """The number of data-parallel processes (1 when not distributed)."""
        return distributed.world_size()

    @property
    def rank(self) -> int:
        """This process' rank (0 when not distributed)."""
        return distributed.rank()

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return distributed.is_main_process()

    def __enter__(self) -> "Run":
        self._owns_group = not distributed.world_size() > 1 and launch_world_size() > 1
        self.device = distributed.initialize_from_environment(self.device) or self.device
        exactness = Exactness()
        applied = self._flags.enter_context(exactness.applied(self.device))
        self.notes = [exactness.describe(self.device), *applied]
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        try:
            if self._folder is not None:
                if kind is not None and issubclass(kind, KeyboardInterrupt):
                    done = self.epochs_done
                    self._folder.log(
                        f"interrupted during epoch {done + 1}; the checkpoint of epoch {done} is intact; "
                        f"resume with --resume --run_dir {self.path}"
                    )
                self._folder.close()
        finally:
            self._flags.close()
            if self._owns_group:
                distributed.leave_process_group(failed=kind is not None)

    @property
    def folder(self) -> RunFolder:
        """The run folder (after :meth:`open_folder`)."""
        if self._folder is None:
            raise RuntimeError("the run folder is not open yet; call open_folder() first")
        return self._folder

    def open_folder(self, write_config_files: bool = False) -> RunFolder:
        """Create (on rank 0) and open the run folder; optionally write the gin config files.

        Called once the run's settings, data and model are checked, so that a run that fails
        early leaves no folder behind. The exactness notes go to its log.
        """
        self._folder = RunFolder(self.path, enabled=self.main)
        for note in self.notes:
            self._folder.log(note)
        if write_config_files and self.main:
            write_config(self._folder)
        return self._folder

    def stop_requested(self, epoch: int, stop_after_epoch: Optional[int]) -> bool:
        """Whether to stop before ``epoch`` (0-based), as if interrupted; logs how to resume."""
        if stop_after_epoch is None or epoch < stop_after_epoch:
            return False
        self.folder.log(f"stopped after epoch {epoch}; resume with --resume --run_dir {self.path}")
        return True

    def seed_epoch(self, seed: int, epoch: int) -> None:
        """Reseed every generator for ``epoch`` of a data-parallel run (:func:`~rnasframe.seeding.epoch_seed`).

        A one-process run keeps one stream of random numbers from its seed (and its checkpoints
        carry the generator states), so nothing is reseeded there.
        """
        if self.world_size > 1:
            seed_everything(epoch_seed(seed, self.rank, epoch))

    def progress(self, iterable: Iterable[Any], total: int, initial: int, desc: str) -> Iterable[Any]:
        """``iterable`` with a progress bar (a ``tqdm``) on rank 0 only, where a terminal shows it; none elsewhere."""
        return tqdm(iterable, total=total, initial=initial, desc=desc, leave=False, disable=None if self.main else True)

    def check_finite(self, metrics: Mapping[str, float], epoch: int) -> None:
        """Stop the run with :class:`FloatingPointError` when a metric of ``epoch`` is NaN or infinite.

        Every rank calls it with its own metrics, before they are averaged: which ranks diverged is
        decided together (:func:`~rnasframe.distributed.nonfinite_ranks`), so that every rank
        raises at once and none is left waiting in the next collective.
        """
        ranks = distributed.nonfinite_ranks(metrics)
        if not ranks:
            return
        where = f" on rank {', '.join(map(str, ranks))} of {self.world_size}" if self.world_size > 1 else ""
        for key, value in metrics.items():
            if value != value or value in (float("inf"), float("-inf")):
                raise FloatingPointError(
                    f"metric {key} became {value} in epoch {epoch + 1}{where}; the {self.activity} diverged"
                )
        raise FloatingPointError(
            f"a metric became NaN or infinite in epoch {epoch + 1}{where}; the {self.activity} diverged"
        )

    def seconds_since(self, started: float) -> float:
        """Wall-clock seconds since ``started`` (a ``time.perf_counter()`` reading), after the device's queued work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started


class MidEpochCheckpoints:
    """When to write a checkpoint inside an epoch: every ``every_steps`` steps or ``every_minutes`` of work.

    A checkpoint at the epoch's end is always written; these add ones inside the epoch, so that a
    preempted run loses at most that much work. ``None`` disables either trigger.

    Args:
        every_steps: steps between two checkpoints, ``>= 1``.
        every_minutes: wall-clock minutes between two checkpoints, ``> 0``.
    """

    def __init__(self, every_steps: Optional[int], every_minutes: Optional[float]) -> None:
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self._last = time.perf_counter()

    def due(self, step: int, steps: int) -> bool:
        """Whether to write after ``step`` (1-based) of ``steps``; never after the last (the epoch's end writes)."""
        if step >= steps:
            return False
        if self.every_steps is not None and step % self.every_steps == 0:
            return True
        return self.every_seconds is not None and time.perf_counter() - self._last >= self.every_seconds

    def written(self) -> None:
        """Restart the clock after a write (an epoch's end included)."""
        self._last = time.perf_counter()


def check_position(
    position: Mapping[str, object], step: int, path: Path, batch_size: int, world_size: int, steps: int
) -> None:
    """Check that a checkpoint written inside an epoch can continue in this run.

    Raises:
        CheckpointError: it was written with another batch size or number of processes, for
            another number of steps per epoch, or its step is not inside the epoch.
    """
    for name, ours in (("batch_size", batch_size), ("world_size", world_size), ("steps", steps)):
        if position.get(name) != ours:
            raise CheckpointError(
                f"{path} was written inside an epoch with {name}={position.get(name)}; this run has "
                f"{name}={ours}; resume with the run's own configuration and number of processes"
            )
    if not 0 < step < steps:
        raise CheckpointError(f"{path} holds step {step}, which is not inside an epoch of {steps} steps")
