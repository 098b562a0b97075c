"""The search loop: epochs, data, logging, checkpoints, resume and the result."""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import attrs
import gin
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from rnasframe import distributed, validation
from rnasframe.bilevel import FirstOrderDarts
from rnasframe.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_atomic
from rnasframe.data.loader import Augmentation, BatchLoader, split_indices
from rnasframe.data.sources import CIFAR10Source, DataSource
from rnasframe.evaluation import evaluate_natural
from rnasframe.interfaces.bilevel import BilevelOptimizer
from rnasframe.interfaces.search_space import InputSpec, SearchSpace, Supernet
from rnasframe.objective import RobustObjective
from rnasframe.run_folder import MetricMeter, RunFolder, device_description
from rnasframe.seeding import resolve_device, seed_everything

__all__ = ["SearchEngine", "SearchResult", "CHECKPOINT_FORMAT"]

#: The ``format`` entry of search checkpoints.
CHECKPOINT_FORMAT = "rnasframe.search/1"
CHECKPOINT_NAME = "checkpoint.pt"


def _default_space() -> SearchSpace:
    from rnasframe.spaces.darts import DartsSpace

    return DartsSpace()


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
    """

    genotype: Any
    genotype_dict: Dict[str, Any]
    epochs: int
    seconds_per_epoch: List[float]
    total_seconds: float
    device: str
    final_metrics: Dict[str, float]
    run_dir: Path


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
        space: the search space (default: DARTS' cell space).
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
    """

    space: SearchSpace = attrs.field(factory=_default_space, validator=attrs.validators.instance_of(SearchSpace))
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
        run_dir = Path(run_dir)
        checkpoint_path = run_dir / CHECKPOINT_NAME
        if not resume and checkpoint_path.exists():
            raise FileExistsError(
                f"{run_dir} already holds a search ({CHECKPOINT_NAME}); pass --resume to continue it "
                f"or choose another --run_dir"
            )
        checkpoint = load_checkpoint(checkpoint_path, CHECKPOINT_FORMAT) if resume else None
        device = resolve_device(self.device)
        owns_group = not distributed.world_size() > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1
        device = distributed.initialize_from_environment(device) or device
        try:
            return self._run(run_dir, checkpoint, device, stop_after_epoch)
        finally:
            if owns_group:
                torch.distributed.destroy_process_group()

    def _run(
        self, run_dir: Path, checkpoint: Optional[Dict[str, Any]], device: torch.device, stop_after_epoch: Optional[int]
    ) -> Optional[SearchResult]:
        world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main_process()
        if self.batch_size % world:
            raise ValueError(
                f"SearchEngine.batch_size={self.batch_size} (the global batch) must be divisible by the "
                f"number of processes ({world})"
            )
        checkpoint_path = run_dir / CHECKPOINT_NAME
        seed_everything(self.seed)
        train_images = self.data.load_train()
        train_idx, valid_idx = split_indices(len(train_images), self.train_portion, self.seed)
        if checkpoint is not None and not (
            torch.equal(checkpoint["split"]["train"], train_idx) and torch.equal(checkpoint["split"]["valid"], valid_idx)
        ):
            raise CheckpointError(
                f"{checkpoint_path} was written with another data split (different data, seed or "
                f"train_portion); resume with the run's own configuration ({run_dir / 'config.gin'})"
            )
        mean, std = self.data.normalization(train_images)
        input_spec = InputSpec(train_images.shape, mean, std)
        supernet: Supernet = self.space.supernet(train_images.num_classes, input_spec).to(device)
        distributed.broadcast_module(supernet)
        self.optimizer.setup(supernet, self.epochs)
        shard = dict(
            drop_last=True, device=device, rank=rank, world_size=world, augmentation=self.augmentation,
            resident=self.resident_data,
        )
        train_loader = BatchLoader(train_images.subset(train_idx, "w half"), self.batch_size, seed=self.seed, **shard)
        valid_loader = BatchLoader(train_images.subset(valid_idx, "alpha half"), self.batch_size, seed=self.seed + 1, **shard)
        eval_loader = BatchLoader(train_images.subset(valid_idx), self.batch_size, shuffle=False, device=device)
        steps = min(len(train_loader), len(valid_loader))
        if steps == 0:
            raise ValueError(
                f"SearchEngine.batch_size={self.batch_size} is larger than each half of the data "
                f"({len(train_idx)} and {len(valid_idx)} images)"
            )
        if self.max_steps_per_epoch is not None:
            steps = min(steps, self.max_steps_per_epoch)

        folder = RunFolder(run_dir, enabled=main)
        history: List[float] = []
        alpha_history: Dict[str, List[torch.Tensor]] = {name: [] for name in supernet.arch_parameter_names}
        start_epoch = 0
        metrics: Dict[str, float] = {}
        try:
            if checkpoint is None:
                if main:
                    self._write_config(folder)
                folder.log(
                    f"search: {self.epochs} epochs ({self.warmup_epochs} warm-up), {steps} steps/epoch, "
                    f"batch {self.batch_size}, {len(train_idx)} + {len(valid_idx)} images, "
                    f"device {device_description(device)}" + (f", {world} processes" if world > 1 else "")
                )
            else:
                supernet.load_state_dict(checkpoint["model"])
                self.optimizer.load_state_dict(checkpoint["optimizer"])
                restore_rng_state(checkpoint["rng"])
                start_epoch = int(checkpoint["epoch"])
                history = list(checkpoint["seconds_per_epoch"])
                metrics = dict(checkpoint.get("metrics", {}))
                for name, values in checkpoint.get("alpha_history", {}).items():
                    alpha_history[name] = list(values)
                folder.log(f"resumed from {checkpoint_path} after epoch {start_epoch}")
            for epoch in range(start_epoch, self.epochs):
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    folder.log(f"stopped after epoch {epoch}; resume with --resume --run_dir {run_dir}")
                    return None
                if world > 1:  # each rank its own noise, reproducible per (seed, rank, epoch)
                    seed_everything(self.seed + 1_000_003 * rank + 7_919 * epoch)
                started = time.perf_counter()
                metrics = distributed.all_reduce_mean(self._search_epoch(supernet, train_loader, valid_loader, epoch, steps))
                metrics["lr"] = self.optimizer.weight_learning_rate
                self.optimizer.end_epoch()
                distributed.check_identical(supernet.arch_parameters(), "architecture parameters")
                if self.eval_batches != 0 and main:
                    evaluation = evaluate_natural(supernet, eval_loader.epoch(0), self.eval_batches)
                    metrics["eval/loss"] = evaluation["loss"]
                    metrics["eval/natural_acc"] = evaluation["natural_acc"]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - started
                history.append(seconds)
                metrics["epoch_seconds"] = seconds
                genotype = supernet.genotype()
                for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
                    alpha_history[name].append(torch.softmax(alpha.detach().float(), dim=-1).cpu())
                if main:
                    self._log_epoch(folder, supernet, genotype, metrics, epoch)
                    self._save_pictures(folder, genotype, alpha_history, epoch)
                    folder.write_json("genotype.json", self.space.genotype_to_dict(genotype))
                    save_atomic(
                        {
                            "format": CHECKPOINT_FORMAT,
                            "epoch": epoch + 1,
                            "model": supernet.state_dict(),
                            "optimizer": self.optimizer.state_dict(),
                            "rng": capture_rng_state(),
                            "split": {"train": train_idx, "valid": valid_idx, "seed": self.seed},
                            "seconds_per_epoch": history,
                            "metrics": metrics,
                            "genotype": self.space.genotype_to_dict(genotype),
                            "world_size": world,
                            "alpha_history": alpha_history,
                        },
                        checkpoint_path,
                    )
            genotype = supernet.genotype()
            result = SearchResult(
                genotype=genotype,
                genotype_dict=dict(self.space.genotype_to_dict(genotype)),
                epochs=self.epochs,
                seconds_per_epoch=history,
                total_seconds=float(sum(history)),
                device=device_description(device) + (f" x {world} processes" if world > 1 else ""),
                final_metrics=metrics,
                run_dir=run_dir,
            )
            folder.write_json("results.json", _result_payload(result))
            folder.log(
                f"search done in {result.total_seconds:.1f} s ({result.total_seconds / 86400:.4f} "
                f"device-days) on {result.device}\ngenotype: {genotype}"
            )
            distributed.barrier()
            return result
        except KeyboardInterrupt:
            done = len(history)
            folder.log(
                f"interrupted during epoch {done + 1}; the checkpoint of epoch {done} is intact; "
                f"resume with --resume --run_dir {run_dir}"
            )
            raise
        finally:
            folder.close()

    def _search_epoch(
        self,
        supernet: Supernet,
        train_loader: BatchLoader,
        valid_loader: BatchLoader,
        epoch: int,
        steps: int,
    ) -> Dict[str, float]:
        supernet.train()
        update_arch = epoch >= self.warmup_epochs
        meter = MetricMeter()
        batches = itertools.islice(zip(train_loader.epoch(epoch), valid_loader.epoch(epoch)), steps)
        phase = "search" if update_arch else "warm-up"
        progress = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}/{self.epochs} ({phase})", leave=False, disable=None)
        for train_batch, valid_batch in progress:
            step_metrics = self.optimizer.step(supernet, self.objective, train_batch, valid_batch, update_arch)
            meter.update(step_metrics, weight=int(train_batch[1].shape[0]))
        means = meter.means()
        for key, value in means.items():
            if not math.isfinite(value):
                raise FloatingPointError(f"metric {key} became {value} in epoch {epoch + 1}; the search diverged")
        return means

    def _save_pictures(
        self, folder: RunFolder, genotype: Any, alpha_history: Dict[str, List[torch.Tensor]], epoch: int
    ) -> None:
        """Let the space draw its pictures into the run folder; log each to tensorboardX under its tag.

        Best effort: a picture that cannot be drawn is reported in the log and never stops a search.
        """
        history = {name: [t.numpy() for t in values] for name, values in alpha_history.items()}
        try:
            paths = self.space.save_pictures(genotype, history, folder.path)
        except Exception as error:  # noqa: BLE001 - a picture is never worth a search
            folder.log(f"epoch {epoch + 1}: pictures not drawn ({type(error).__name__}: {error})")
            return
        for picture in paths:
            with Image.open(picture.path) as image:
                pixels = np.asarray(image.convert("RGB"))
            folder.writer.add_image(picture.tag, pixels, epoch + 1, dataformats="HWC")

    def _write_config(self, folder: RunFolder) -> None:
        operative = gin.operative_config_str()
        full = gin.config_str()
        if full.strip():
            (folder.path / "config.gin").write_text(full)
        if operative.strip():
            (folder.path / "operative_config.gin").write_text(operative)
            folder.writer.add_text("config/operative", "    " + operative.replace("\n", "\n    "), 0)

    def _log_epoch(self, folder: RunFolder, supernet: Supernet, genotype: Any, metrics: Dict[str, float], epoch: int) -> None:
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
    }
