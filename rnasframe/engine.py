"""The search loop: epochs, data, logging, checkpoints, resume and the result."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
import gin
import numpy as np
import torch
from PIL import Image

from rnasframe import distributed, validation
from rnasframe.bilevel import FirstOrderDarts
from rnasframe.checkpoint import CheckpointError, SearchCheckpoint, capture_rng_state, restore_rng_state
from rnasframe.data.loader import Augmentation, BatchLoader, split_indices
from rnasframe.data.sources import CIFAR10Source, DataSource
from rnasframe.evaluation import evaluate_natural
from rnasframe.interfaces.bilevel import BilevelOptimizer
from rnasframe.interfaces.search_space import InputSpec, SearchSpace, Supernet
from rnasframe.objective import RobustObjective
from rnasframe.run import MidEpochCheckpoints, Run, check_position
from rnasframe.run_folder import MetricMeter, RunFolder, device_description
from rnasframe.seeding import epoch_seed, resolve_device, seed_everything
from rnasframe.signals import CollapseSignals

__all__ = ["SearchEngine", "SearchResult", "CHECKPOINT_FORMAT"]

#: The ``format`` entry of search checkpoints (:class:`~rnasframe.checkpoint.SearchCheckpoint`).
CHECKPOINT_FORMAT = SearchCheckpoint.FORMAT


@attrs.define(frozen=True)
class SearchResult:
    """What a finished search returns (also written to ``results.json``).

    Attributes:
        genotype: the derived architecture (the space's genotype type).
        genotype_dict: its JSON form.
        epochs: epochs completed.
        seconds_per_epoch: wall-clock search time of each epoch.
        total_seconds: their sum.
        device: the device the search ran on.
        final_metrics: the last epoch's metrics.
        run_dir: the run folder.
        genotype_metrics: what the space knows of the genotype without training it
            (:meth:`~rnasframe.interfaces.SearchSpace.genotype_metrics`; empty for most spaces).
    """

    genotype: Any
    genotype_dict: Dict[str, Any]
    epochs: int
    seconds_per_epoch: List[float]
    total_seconds: float
    device: str
    final_metrics: Dict[str, float]
    run_dir: Path
    genotype_metrics: Dict[str, float] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Setup:
    """What a search builds once: the split, the supernet and the loaders."""

    split: Dict[str, Any]
    supernet: Supernet
    train_loader: BatchLoader
    valid_loader: BatchLoader
    eval_loader: BatchLoader
    steps: int


@attrs.define(eq=False)
class _Progress:
    """What a search accumulates epoch by epoch (and keeps in its checkpoint)."""

    epoch: int = 0
    seconds_per_epoch: List[float] = attrs.field(factory=list)
    metrics: Dict[str, float] = attrs.field(factory=dict)
    alpha_history: Dict[str, List[torch.Tensor]] = attrs.field(factory=dict)
    step: int = 0
    position: Dict[str, Any] = attrs.field(factory=dict)


def _check_warmup(instance: "SearchEngine", attribute: "attrs.Attribute[int]", value: int) -> None:
    validation.non_negative_int(instance, attribute, value)
    if value > instance.epochs:
        raise ValueError(
            f"SearchEngine.warmup_epochs must be <= epochs ({instance.epochs}), got {value}"
        )


@gin.configurable
@attrs.define(eq=False)
class SearchEngine:
    """Runs a differentiable architecture search and keeps its run folder.

    Every part is pluggable (and bindable with gin): the search space, the data, the objective
    (plain DARTS or RNAS), the bi-level optimizer.

    Args:
        space: the search space (required; the shipped configs bind ``SearchEngine.space`` in gin).
        data: the data source; its training images are split into halves for ``w`` and ``alpha``.
        objective: the loss used at both levels (default: plain cross-entropy, i.e. DARTS).
        optimizer: the bi-level optimizer (default: first-order DARTS).
        epochs: search epochs (paper: 50).
        warmup_epochs: first epochs that update ``w`` only (paper: 15).
        batch_size: examples per batch at each level (paper: 64).
        train_portion: share of the training images used for ``w`` (the rest for ``alpha``).
        augmentation: batch augmentation of both halves (``None`` for none).
        seed: seeds Python, NumPy and torch, the split and the batch order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        max_steps_per_epoch: cap on search steps per epoch (smoke runs); ``None`` for a full pass.
        eval_batches: cap on the batches of the end-of-epoch supernet evaluation on the ``alpha``
            half; ``None`` for all, 0 to skip it.
        resident_data: keep both halves of the training images on the search's device and build
            every batch there (:class:`~rnasframe.data.BatchLoader`'s ``resident``): no host-to-
            device copy per step on a GPU (CIFAR-10 takes 150 MB as uint8). Same batches either
            way; no effect on the CPU.
        checkpoint_every_steps: also write ``checkpoint.pt`` after every this many steps inside
            an epoch (``None``: only the time trigger below). ``--resume`` then continues from
            that step, bit-identical to an uninterrupted run.
        checkpoint_every_minutes: also write it when this many minutes of work passed since the
            last write (10; ``None``: never by time). One-process runs only: under ``torchrun``
            checkpoints stay at epoch ends (each rank's random numbers are reseeded per epoch).
        signals: the health signals measured after each epoch (alpha entropy, the Hessian's
            dominant eigenvalue; :class:`~rnasframe.signals.CollapseSignals`), logged with the
            prefix ``signals/``; their time is logged as ``signals_seconds``, not in ``epoch_seconds``.
    """

    space: SearchSpace = attrs.field(validator=attrs.validators.instance_of(SearchSpace))
    data: DataSource = attrs.field(factory=CIFAR10Source, validator=attrs.validators.instance_of(DataSource))
    objective: RobustObjective = attrs.field(
        factory=RobustObjective, validator=attrs.validators.instance_of(RobustObjective)
    )
    optimizer: BilevelOptimizer = attrs.field(
        factory=FirstOrderDarts, validator=attrs.validators.instance_of(BilevelOptimizer)
    )
    epochs: int = attrs.field(default=50, validator=validation.positive_int)
    warmup_epochs: int = attrs.field(default=15, validator=_check_warmup)
    batch_size: int = attrs.field(default=64, validator=validation.positive_int)
    train_portion: float = attrs.field(default=0.5, validator=validation.in_closed_range(0.01, 0.99))
    augmentation: Optional[Augmentation] = attrs.field(factory=Augmentation)
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)
    device: str = "auto"
    max_steps_per_epoch: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    eval_batches: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.non_negative_int)
    )
    resident_data: bool = attrs.field(default=False, validator=validation.boolean)
    checkpoint_every_steps: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    checkpoint_every_minutes: Optional[float] = attrs.field(
        default=10.0,
        # attrs' stubs type the field by its float default, not as Optional[float]
        validator=attrs.validators.optional(validation.greater_than(0.0, "minutes")),  # type: ignore[arg-type]
    )
    signals: CollapseSignals = attrs.field(
        factory=CollapseSignals, validator=attrs.validators.instance_of(CollapseSignals)
    )

    def __attrs_post_init__(self) -> None:
        resolve_device(self.device)  # fail now on a bad or unavailable device

    def run(
        self,
        run_dir: os.PathLike[str] | str,
        resume: bool = False,
        stop_after_epoch: Optional[int] = None,
    ) -> Optional[SearchResult]:
        """Search, writing everything to ``run_dir``; return the result when all epochs are done.

        Args:
            run_dir: the run folder. A folder that already holds a checkpoint is only reused with
                ``resume=True``, so nothing already written is ever overwritten by mistake.
            resume: continue from ``run_dir``'s checkpoint (after its last completed epoch).
            stop_after_epoch: stop (as if interrupted) once this many epochs are done; the run
                can be resumed later. Returns ``None`` in that case.

        Raises:
            FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is false.
            CheckpointError: ``resume`` is true but the checkpoint is missing, truncated or foreign.
        """
        run = Run(run_dir, "search", resume, resolve_device(self.device))
        checkpoint = SearchCheckpoint.load(run.checkpoint_path) if resume else None
        with run:
            self._check_world_size(run.world_size)
            seed_everything(self.seed)
            setup = self._setup(run, checkpoint)
            progress = self._start(run, setup, checkpoint)
            for epoch in range(progress.epoch, self.epochs):
                if run.stop_requested(epoch, stop_after_epoch):
                    return None
                self._epoch(run, setup, progress, epoch)
            return self._finish(run, setup, progress)

    def _check_world_size(self, world: int) -> None:
        if self.batch_size % world:
            raise ValueError(
                f"SearchEngine.batch_size={self.batch_size} (the global batch) must be divisible by the "
                f"number of processes ({world})"
            )

    def _setup(self, run: Run, checkpoint: Optional[SearchCheckpoint]) -> _Setup:
        """Load the data, split it, build the supernet, the bi-level optimizer and the loaders."""
        train_images = self.data.load_train()
        train_idx, valid_idx = split_indices(len(train_images), self.train_portion, self.seed)
        if checkpoint is not None and not (
            torch.equal(checkpoint.split["train"], train_idx) and torch.equal(checkpoint.split["valid"], valid_idx)
        ):
            raise CheckpointError(
                f"{run.checkpoint_path} was written with another data split (different data, seed or "
                f"train_portion); resume with the run's own configuration ({run.path / 'config.gin'})"
            )
        mean, std = self.data.normalization(train_images)
        input_spec = InputSpec(train_images.shape, mean, std)
        supernet: Supernet = self.space.supernet(train_images.num_classes, input_spec).to(run.device)
        distributed.broadcast_module(supernet)
        self.optimizer.setup(supernet, self.epochs)
        shard: Dict[str, Any] = {
            "drop_last": True, "device": run.device, "rank": run.rank, "world_size": run.world_size,
            "augmentation": self.augmentation, "resident": self.resident_data,
        }
        train_loader = BatchLoader(train_images.subset(train_idx, "w half"), self.batch_size, seed=self.seed, **shard)
        valid_loader = BatchLoader(
            train_images.subset(valid_idx, "alpha half"), self.batch_size, seed=self.seed + 1, **shard
        )
        eval_loader = BatchLoader(train_images.subset(valid_idx), self.batch_size, shuffle=False, device=run.device)
        steps = min(len(train_loader), len(valid_loader))
        if steps == 0:
            raise ValueError(
                f"SearchEngine.batch_size={self.batch_size} is larger than each half of the data "
                f"({len(train_idx)} and {len(valid_idx)} images)"
            )
        if self.max_steps_per_epoch is not None:
            steps = min(steps, self.max_steps_per_epoch)
        self.objective.bind_examples(len(train_images), _split_key(train_images.name, train_idx, valid_idx))
        split = {"train": train_idx, "valid": valid_idx, "seed": self.seed}
        return _Setup(split, supernet, train_loader, valid_loader, eval_loader, steps)

    def _start(self, run: Run, setup: _Setup, checkpoint: Optional[SearchCheckpoint]) -> _Progress:
        """Open the run folder; log the plan of a new search or restore a checkpoint's state."""
        supernet = setup.supernet
        progress = _Progress(alpha_history={name: [] for name in supernet.arch_parameter_names})
        folder = run.open_folder(write_config_files=checkpoint is None)
        if checkpoint is None:
            train, valid = len(setup.split["train"]), len(setup.split["valid"])
            folder.log(
                f"search: {self.epochs} epochs ({self.warmup_epochs} warm-up), {setup.steps} steps/epoch, "
                f"batch {self.batch_size}, {train} + {valid} images, device {device_description(run.device)}"
                + (f", {run.world_size} processes" if run.world_size > 1 else "")
            )
            return progress
        if checkpoint.step:
            check_position(
                checkpoint.position, checkpoint.step, run.checkpoint_path, self.batch_size, run.world_size, setup.steps
            )
        supernet.load_state_dict(checkpoint.model)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.objective.load_state_dict(checkpoint.example_stores)
        note = restore_rng_state(checkpoint.rng, run.device)
        if note:
            folder.log(note)
        progress.epoch = run.epochs_done = checkpoint.epoch
        progress.step, progress.position = checkpoint.step, dict(checkpoint.position)
        progress.seconds_per_epoch = list(checkpoint.seconds_per_epoch)
        progress.metrics = dict(checkpoint.metrics)
        for name, values in checkpoint.alpha_history.items():
            progress.alpha_history[name] = list(values)
        inside = f", step {checkpoint.step} of epoch {checkpoint.epoch + 1}" if checkpoint.step else ""
        folder.log(f"resumed from {run.checkpoint_path} after epoch {checkpoint.epoch}{inside}")
        return progress

    def _epoch(self, run: Run, setup: _Setup, progress: _Progress, epoch: int) -> None:
        """One epoch: search steps, the end-of-epoch evaluation, logs, pictures and the checkpoint."""
        supernet = setup.supernet
        if not progress.step:  # a run resumed inside the epoch has its generators' states already
            run.seed_epoch(self.seed, epoch)
        started = time.perf_counter() - float(progress.position.get("seconds", 0.0))
        local = self._search_epoch(run, setup, progress, epoch)
        run.check_finite(local, epoch)  # before the reduction, on every rank together
        metrics = distributed.all_reduce_mean(local)
        metrics["lr"] = self.optimizer.weight_learning_rate
        self.optimizer.end_epoch()
        distributed.check_identical(supernet.arch_parameters(), "architecture parameters")
        if self.eval_batches != 0 and run.main:
            evaluation = evaluate_natural(supernet, setup.eval_loader.epoch(0), self.eval_batches)
            metrics["eval/loss"] = evaluation["loss"]
            metrics["eval/natural_acc"] = evaluation["natural_acc"]
        seconds = run.seconds_since(started)
        if run.main:
            metrics.update(self._signals(setup, epoch))
        progress.epoch = epoch + 1
        progress.seconds_per_epoch.append(seconds)
        metrics["epoch_seconds"] = seconds
        progress.metrics = metrics
        for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
            progress.alpha_history[name].append(torch.softmax(alpha.detach().float(), dim=-1).cpu())
        if run.main:
            genotype = supernet.genotype()
            self._log_epoch(run.folder, supernet, genotype, metrics, epoch)
            self._save_pictures(run.folder, genotype, progress.alpha_history, epoch)
            run.folder.write_json("genotype.json", self.space.genotype_to_dict(genotype))
            self._checkpoint(setup, progress, genotype, run.world_size).save(run.checkpoint_path)
        run.epochs_done = epoch + 1

    def _signals(self, setup: _Setup, epoch: int) -> Dict[str, float]:
        """The epoch's health signals (prefixed ``signals/``) and the seconds they took."""
        started = time.perf_counter()
        hessian = self.signals.hessian_due(epoch, self.epochs, self.warmup_epochs)
        setup.supernet.train()  # the function the alpha step differentiates
        measured = self.signals.measure(
            setup.supernet,
            self.objective,
            setup.eval_loader.epoch(0, self.objective.uses_example_index),
            hessian,
            seed=epoch_seed(self.seed, 0, epoch),
        )
        result = {f"signals/{key}": value for key, value in measured.items()}
        if result:
            result["signals_seconds"] = time.perf_counter() - started
        return result

    def _checkpoint(self, setup: _Setup, progress: _Progress, genotype: Any, world: int) -> SearchCheckpoint:
        return SearchCheckpoint(
            step=progress.step,
            position=progress.position,
            epoch=progress.epoch,
            model=setup.supernet.state_dict(),
            optimizer=self.optimizer.state_dict(),
            rng=capture_rng_state(setup.train_loader.device),
            split=setup.split,
            seconds_per_epoch=progress.seconds_per_epoch,
            metrics=progress.metrics,
            genotype=dict(self.space.genotype_to_dict(genotype)),
            world_size=world,
            alpha_history=progress.alpha_history,
            example_stores=self.objective.state_dict(),
        )

    def _finish(self, run: Run, setup: _Setup, progress: _Progress) -> SearchResult:
        """Write ``results.json`` and the closing log line; return the result."""
        genotype = setup.supernet.genotype()
        world = run.world_size
        history = progress.seconds_per_epoch
        result = SearchResult(
            genotype=genotype,
            genotype_dict=dict(self.space.genotype_to_dict(genotype)),
            epochs=self.epochs,
            seconds_per_epoch=history,
            total_seconds=float(sum(history)),
            device=device_description(run.device) + (f" x {world} processes" if world > 1 else ""),
            final_metrics=progress.metrics,
            run_dir=run.path,
            genotype_metrics={key: float(value) for key, value in self.space.genotype_metrics(genotype).items()},
        )
        run.folder.write_json("results.json", _result_payload(result))
        run.folder.log(
            f"search done in {result.total_seconds:.1f} s ({result.total_seconds / 86400:.4f} "
            f"device-days) on {result.device}\ngenotype: {genotype}"
        )
        distributed.barrier()
        return result

    def _search_epoch(self, run: Run, setup: _Setup, progress: _Progress, epoch: int) -> Dict[str, float]:
        """The epoch's search steps (from a mid-epoch checkpoint's step); returns this rank's mean metrics.

        A resumed epoch regenerates the skipped batches (the loaders' order and augmentation depend
        on ``(seed, epoch)`` only) and continues with the checkpoint's partial metric sums.
        """
        supernet, steps, first = setup.supernet, setup.steps, progress.step
        supernet.train()
        update_arch = epoch >= self.warmup_epochs
        meter = MetricMeter.from_state(progress.position["meter"], run.device) if first else MetricMeter()
        started = time.perf_counter() - float(progress.position.get("seconds", 0.0))
        schedule = MidEpochCheckpoints(self.checkpoint_every_steps, self.checkpoint_every_minutes)
        indexed = self.objective.uses_example_index  # (x, y, index) batches for per-example stores
        batches = itertools.islice(
            zip(setup.train_loader.epoch(epoch, indexed), setup.valid_loader.epoch(epoch, indexed)), first, steps
        )
        phase = "search" if update_arch else "warm-up"
        bar = run.progress(batches, total=steps, initial=first, desc=f"epoch {epoch + 1}/{self.epochs} ({phase})")
        for step, (train_batch, valid_batch) in enumerate(bar, start=first + 1):
            step_metrics = self.optimizer.step(supernet, self.objective, train_batch, valid_batch, update_arch)
            meter.update(step_metrics, weight=int(train_batch[1].shape[0]))
            if run.world_size == 1 and schedule.due(step, steps):
                progress.step = step
                progress.position = {
                    "batch_size": self.batch_size, "world_size": 1, "steps": steps, "meter": meter.state_dict(),
                    "seconds": time.perf_counter() - started,
                }
                self._checkpoint(setup, progress, supernet.genotype(), 1).save(run.checkpoint_path)
                schedule.written()
        progress.step, progress.position = 0, {}
        return meter.means()

    def _save_pictures(
        self, folder: RunFolder, genotype: Any, alpha_history: Dict[str, List[torch.Tensor]], epoch: int
    ) -> None:
        """Let the space draw its pictures into the run folder; log each to tensorboardX under its tag.

        Best effort: a picture that cannot be drawn is reported in the log and never stops a search.
        """
        history = {name: [t.numpy() for t in values] for name, values in alpha_history.items()}
        try:
            pictures = self.space.save_pictures(genotype, history, folder.path)
        except Exception as error:  # a picture is never worth a search
            folder.log(f"epoch {epoch + 1}: pictures not drawn ({type(error).__name__}: {error})")
            return
        for picture in pictures:
            with Image.open(picture.path) as image:
                pixels = np.asarray(image.convert("RGB"))
            folder.writer.add_image(picture.tag, pixels, epoch + 1, dataformats="HWC")

    def _log_epoch(
        self, folder: RunFolder, supernet: Supernet, genotype: Any, metrics: Dict[str, float], epoch: int
    ) -> None:
        folder.scalars(metrics, epoch + 1)
        names = supernet.op_names
        for group_name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
            weights = torch.softmax(alpha.detach().float(), dim=-1).cpu()
            for edge in range(weights.shape[0]):
                for op in range(weights.shape[-1]):
                    op_name = names[op] if names else str(op)
                    folder.writer.add_scalar(
                        f"alpha/{group_name}/edge{edge:02d}/{op_name}", float(weights[edge, op]), epoch + 1
                    )
        folder.writer.add_text("genotype", str(genotype), epoch + 1)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("alpha"))
        folder.log(f"epoch {epoch + 1}/{self.epochs}: {shown}")
        folder.log(f"epoch {epoch + 1} genotype: {genotype}")
        known = self.space.genotype_metrics(genotype)
        if known:
            folder.scalars({key: float(value) for key, value in known.items()}, epoch + 1, prefix="genotype/")
            folder.log(f"epoch {epoch + 1} genotype metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in known.items()))


def _split_key(name: str, train_idx: torch.Tensor, valid_idx: torch.Tensor) -> str:
    """A fingerprint of a data split (the data's name and both halves' positions), for per-example stores."""
    digest = hashlib.sha256(name.encode())
    for part in (train_idx, valid_idx):
        digest.update(part.to(torch.int64).numpy().tobytes() + b"|")
    return f"{name}:{digest.hexdigest()[:16]}"


def _result_payload(result: SearchResult) -> Dict[str, Any]:
    return {
        "genotype": result.genotype_dict,
        "genotype_text": str(result.genotype),
        "epochs": result.epochs,
        "search_cost": {
            "device": result.device,
            "seconds_per_epoch": result.seconds_per_epoch,
            "total_seconds": result.total_seconds,
            "device_days": result.total_seconds / 86400.0,
        },
        "final_metrics": result.final_metrics,
        "genotype_metrics": result.genotype_metrics,
    }
