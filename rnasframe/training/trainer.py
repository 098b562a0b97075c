"""Training a genotype from scratch, checkpoint selection on held-out images, and the robustness table.

The loop mirrors the search engine's: a run folder with ``config.gin``, ``operative_config.gin``,
``log.txt`` and tensorboardX events; ``checkpoint.pt`` written atomically after every epoch
(``--resume`` continues bit-exactly); ``best.pt`` beside it, the epoch selected on a held-out
split of the *training* images. The test set is loaded once, after the last epoch, to evaluate
``best.pt`` (clean, FGSM, PGD-20, sanity checks) into ``results.json`` and ``results.md``.

Training runs data-parallel under ``torchrun`` as the search does (see :mod:`rnasframe.distributed`
and the :class:`Trainer` docstring): ``torchrun --nproc_per_node=4 examples/train_cifar10.py ...``.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import attrs
import gin
import torch
from torch import nn
from tqdm.auto import tqdm

from rnasframe import distributed, validation
from rnasframe.bilevel import WeightOptimizerSettings
from rnasframe.checkpoint import CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state, save_atomic
from rnasframe.data.images import LabeledImages
from rnasframe.data.loader import Augmentation, BatchLoader, split_indices
from rnasframe.data.sources import CIFAR10Source, DataSource
from rnasframe.interfaces.search_space import InputSpec, SearchSpace
from rnasframe.interfaces.perturbation import Perturbation
from rnasframe.perturbations import PGD
from rnasframe.robustness.attacks import attack_settings
from rnasframe.robustness.evaluator import RobustnessEvaluation, RobustnessReport, attack_accuracy, check_attack_radius
from rnasframe.robustness.report import attack_label, count_parameters_millions, write_results
from rnasframe.run_folder import MetricMeter, RunFolder, device_description
from rnasframe.seeding import resolve_device, seed_everything
from rnasframe.training.genotypes import resolve_genotype
from rnasframe.training.objectives import StandardTraining, TrainingObjective

__all__ = ["Trainer", "TrainResult", "CHECKPOINT_FORMAT", "BEST_FORMAT"]

#: The ``format`` entry of training checkpoints (``checkpoint.pt``).
CHECKPOINT_FORMAT = "rnasframe.train/1"
#: The ``format`` entry of the selected weights (``best.pt``).
BEST_FORMAT = "rnasframe.train-best/1"
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


def _default_space() -> SearchSpace:
    from rnasframe.spaces.darts import DartsSpace

    return DartsSpace()


def _default_optimizer() -> WeightOptimizerSettings:
    return WeightOptimizerSettings(
        learning_rate=0.025, min_learning_rate=0.0, momentum=0.9, weight_decay=3e-4, grad_clip=5.0
    )


def _default_augmentation() -> Augmentation:
    return Augmentation(crop_padding=4, horizontal_flip=True, cutout=16)


def _default_selection(trainer: "Trainer") -> Optional[Perturbation]:
    """PGD-10 (step 2.5·ε/10, random start, the default ball) for robust objectives; ``None`` (clean) otherwise."""
    if not trainer.objective.robust:
        return None
    ball = PGD().ball
    return PGD(ball=ball, steps=10, step_size=2.5 * max(ball.epsilon, 1e-12) / 10)


def _check_selection(instance: "Trainer", attribute: "attrs.Attribute[Any]", value: Optional[Perturbation]) -> None:
    if value is not None:
        check_attack_radius(value, instance.evaluation.epsilon, "Trainer.selection")


def _check_drop_path(instance: "Trainer", attribute: "attrs.Attribute[float]", value: float) -> None:
    validation.in_closed_range(0.0, 0.99, "a probability below 1")(instance, attribute, value)


@attrs.define(frozen=True)
class TrainResult:
    """What a finished training returns (also in ``results.json``).

    Attributes:
        model_name: the name in the results table.
        genotype: the trained genotype.
        epochs: epochs trained.
        best_epoch: the selected epoch (1-based).
        selection_value: its validation metric (``None`` without a held-out split).
        seconds_per_epoch: wall-clock time of each epoch (training and selection).
        train_seconds: their sum.
        evaluate_seconds: wall-clock time of the final evaluation.
        params_millions: parameters without the auxiliary head, in millions.
        report: the robustness report on the test set.
        run_dir: the run folder.
    """

    model_name: str
    genotype: Any
    epochs: int
    best_epoch: int
    selection_value: Optional[float]
    seconds_per_epoch: List[float]
    train_seconds: float
    evaluate_seconds: float
    params_millions: float
    report: RobustnessReport
    run_dir: Path


@gin.configurable
@attrs.define(eq=False)
class Trainer:
    """Trains the network of a genotype from scratch, selects a checkpoint, evaluates robustness.

    Defaults are the paper's protocol (section 4.2, DARTS' evaluation): 20 cells, 36 initial
    channels, 600 epochs, batch 96, SGD lr 0.025 cosine-annealed to 0, momentum 0.9, weight decay
    3e-4, gradient clip 5, cutout 16, auxiliary tower weight 0.4, drop path probability 0.3
    ramped linearly from 0 over the epochs (epoch ``e`` uses ``0.3 * e / epochs``, as DARTS).

    **Data-parallel training.** Under ``torchrun`` (``WORLD_SIZE`` > 1) :meth:`run` joins the
    process group (NCCL on CUDA, one GPU per process; gloo on the CPU) and trains as the search
    does, without DistributedDataParallel (see :mod:`rnasframe.distributed`):

    * :attr:`batch_size` is the *global* batch, split evenly: it must be a multiple of the number
      of processes (checked before anything else, :meth:`check_world_size`). Every rank draws
      and augments the same global batch from the one :attr:`seed` and takes its own disjoint
      shard, so the batches do not depend on the number of processes.
    * Every rank builds the network from the same seed, then takes rank 0's parameters and
      buffers. Before every optimizer step the gradients are averaged over ranks with one
      all-reduce (what DDP computes; the objective's loss is a mean over the shard and the shards
      are equal), and gradient clipping is applied to the averaged gradient, so every rank clips
      and steps identically and the weights stay identical after every step.
    * Adversarial and TRADES objectives: each rank computes ``x'`` for its own shard (PGD is per
      example), as under DDP. Random draws (drop path, PGD's random start) differ per rank, seeded
      per (seed, rank, epoch).
    * BatchNorm normalizes with each rank's own shard statistics (no SyncBatchNorm, as in the
      search and under DDP), so a run on N processes differs from a one-process run by that
      alone. At the end of every epoch the running means and variances are averaged over ranks
      (as timm's ``distribute_bn``), so that all ranks hold one network again; then the
      parameters and all buffers are checked to be bit-identical on every rank
      (:func:`~rnasframe.distributed.check_identical`; the run fails otherwise).
    * Rank 0 alone writes the run folder: logs, tensorboardX events, ``config.gin``,
      ``genotype.json``, ``checkpoint.pt`` (it records ``world_size``), ``best.pt``,
      ``results.json`` and ``results.md``; logged metrics are averaged over ranks.
    * Checkpoint selection runs on rank 0 only, unsharded (the same held-out images and attack
      seed as in a one-process run), while the other ranks wait at a barrier. The final
      robustness evaluation also runs on rank 0 only: the other ranks return ``None`` from
      :meth:`run` as soon as the last checkpoint is written (a long evaluation such as AutoAttack
      would outlast the process group's 30-minute collective timeout if they waited at a
      barrier). Neither is sharded: their cost is small next to training's, and they are
      computed exactly as in a one-process run.
    * A checkpoint resumes on any number of processes (the run folder must be on a file system
      every node sees); the resumed run is bit-exact on the same number, since every rank
      re-seeds at each epoch and holds the checkpoint's weights and statistics.

    Args:
        space: the search space that builds the network (default: DARTS' space).
        genotype: what to train (see :func:`~rnasframe.training.genotypes.resolve_genotype`): a
            genotype.json, a search's run folder, a name such as ``"DARTS_V2"`` or a dict; the
            command line's ``--genotype`` replaces it.
        data: the data source; its training images are split into a training part and a held-out
            validation part; its test images are read once, at the end.
        objective: :class:`~rnasframe.training.StandardTraining` (default),
            :class:`~rnasframe.training.AdversarialTraining` or :class:`~rnasframe.training.TradesTraining`.
        epochs: training epochs (600).
        batch_size: examples per batch (96); under ``torchrun`` the global batch, split evenly
            across the processes.
        channels: initial channels ``C`` of the network (36).
        layers: number of cells (20).
        auxiliary_weight: weight of the auxiliary tower's cross-entropy (0.4); 0 builds no tower.
        drop_path_prob: final drop path probability (0.3), reached linearly.
        optimizer: SGD settings: lr 0.025 annealed to ``min_learning_rate`` (0), momentum,
            weight decay, gradient clip.
        augmentation: random crop, flip and cutout of training batches (``None``: none).
        validation_portion: share of the training images held out for checkpoint selection
            (0.1; the paper trains on all 50,000: 0 does that and selects the last epoch).
        selection: the attack of checkpoint selection on the held-out part, e.g. ``PGD(steps=10)``,
            or ``None`` for clean accuracy; its ball must have :attr:`evaluation`'s radius. Default:
            PGD-10 (step 2.5·ε/10, random start) for robust objectives, ``None`` for standard training.
        selection_max_examples: evaluate selection on at most this many held-out images.
        evaluation: the final robustness evaluation on the test set.
        seed: seeds Python, NumPy and torch, the split and the batch order.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        max_steps_per_epoch: cap on steps per epoch (smoke runs); ``None`` for a full pass.
        model_name: the name in the results table (default: from the genotype's source).
    """

    space: SearchSpace = attrs.field(factory=_default_space, validator=attrs.validators.instance_of(SearchSpace))
    genotype: Any = None
    data: DataSource = attrs.field(factory=CIFAR10Source, validator=attrs.validators.instance_of(DataSource))
    objective: TrainingObjective = attrs.field(
        factory=StandardTraining, validator=attrs.validators.instance_of(TrainingObjective)
    )
    epochs: int = attrs.field(default=600, validator=validation.positive_int)
    batch_size: int = attrs.field(default=96, validator=validation.positive_int)
    channels: int = attrs.field(default=36, validator=validation.positive_int)
    layers: int = attrs.field(default=20, validator=validation.positive_int)
    auxiliary_weight: float = attrs.field(default=0.4, validator=validation.at_least(0.0))
    drop_path_prob: float = attrs.field(default=0.3, validator=_check_drop_path)
    optimizer: WeightOptimizerSettings = attrs.field(
        factory=_default_optimizer, validator=attrs.validators.instance_of(WeightOptimizerSettings)
    )
    augmentation: Optional[Augmentation] = attrs.field(
        factory=_default_augmentation, validator=attrs.validators.optional(attrs.validators.instance_of(Augmentation))
    )
    validation_portion: float = attrs.field(default=0.1, validator=validation.in_closed_range(0.0, 0.5))
    selection: Optional[Perturbation] = attrs.field(
        default=attrs.Factory(_default_selection, takes_self=True), validator=_check_selection
    )
    selection_max_examples: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    evaluation: RobustnessEvaluation = attrs.field(
        factory=RobustnessEvaluation, validator=attrs.validators.instance_of(RobustnessEvaluation)
    )
    seed: int = attrs.field(default=0, validator=validation.non_negative_int)
    device: str = "auto"
    max_steps_per_epoch: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    model_name: Optional[str] = None
    _resolved: Optional[Tuple[Any, str]] = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        resolve_device(self.device)  # fail now on a bad or unavailable device
        if self.genotype is not None:
            self._resolved = resolve_genotype(self.genotype, self.space)

    def with_genotype(self, genotype: Any) -> "Trainer":
        """A copy that trains ``genotype`` (validated now; see :attr:`genotype`)."""
        return attrs.evolve(self, genotype=genotype)

    def selection_attack(self) -> Optional[Perturbation]:
        """The attack of checkpoint selection (``None``: clean accuracy)."""
        return self.selection

    def _selection_description(self, held_out: int) -> str:
        if held_out == 0:
            return "none: no held-out split (validation_portion = 0), the last epoch is kept"
        attack = self.selection_attack()
        if attack is None:
            return f"clean accuracy on {held_out} held-out training images"
        settings = ", ".join(f"{k}={v}" for k, v in attack_settings(attack).items() if k != "name")
        return f"{attack_label(attack)} accuracy ({settings}) on {held_out} held-out training images"

    def _split(self, n: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.validation_portion == 0:
            return torch.arange(n), None
        train_idx, valid_idx = split_indices(n, 1.0 - self.validation_portion, self.seed)
        return train_idx, valid_idx

    def _build(self, genotype: Any, network: Dict[str, Any]) -> nn.Module:
        spec = InputSpec(tuple(network["input_shape"]), network["mean"], network["std"])
        return self.space.network(
            genotype, network["num_classes"], spec, channels=network["channels"], layers=network["layers"],
            auxiliary=network["auxiliary"], drop_path_prob=0.0,
        )

    def check_world_size(self, world_size: int) -> None:
        """Check that the global batch splits evenly over ``world_size`` data-parallel processes.

        :meth:`run` calls this before it reads anything; the command line calls it before
        training starts, so that a bad combination fails in one line on every rank.

        Args:
            world_size: the number of processes (``torchrun``'s ``WORLD_SIZE``; 1 when not
                distributed).

        Raises:
            ValueError: ``world_size`` is below 1, or :attr:`batch_size` is smaller than it or
                not a multiple of it.
        """
        if world_size < 1:
            raise ValueError(f"the number of processes must be >= 1, got {world_size}")
        if self.batch_size % world_size:
            suggestion = max(world_size, round(self.batch_size / world_size) * world_size)
            raise ValueError(
                f"Trainer.batch_size={self.batch_size} is the global batch, split evenly across the "
                f"{world_size} processes: it must be a multiple of {world_size} (at least {world_size}), "
                f"e.g. Trainer.batch_size = {suggestion}"
            )

    def run(
        self,
        run_dir: os.PathLike[str] | str,
        resume: bool = False,
        stop_after_epoch: Optional[int] = None,
    ) -> Optional[TrainResult]:
        """Train, select, evaluate; write everything to ``run_dir``; return the result when done.

        Under ``torchrun`` every process calls this with the same arguments (see the class
        docstring); a process group that already exists is used as it is.

        Args:
            run_dir: the run folder; one that holds a checkpoint is only reused with ``resume``.
            resume: continue from ``run_dir``'s checkpoint (the genotype is then taken from it
                when none is given), on any number of processes.
            stop_after_epoch: stop (as if interrupted) once this many epochs are done; returns
                ``None`` then.

        Returns:
            The result on rank 0 (the only process of a plain run); ``None`` when stopped by
            ``stop_after_epoch``, and on the other ranks of a data-parallel run, which leave once
            training is done while rank 0 evaluates.

        Raises:
            FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is false.
            CheckpointError: a missing, truncated or foreign checkpoint, or one of another
                genotype or data split.
            ValueError: no genotype, an invalid one, a batch larger than the data, or a batch that
                does not split evenly over the processes.
        """
        run_dir = Path(run_dir)
        checkpoint_path = run_dir / CHECKPOINT_NAME
        if not resume and checkpoint_path.exists():
            raise FileExistsError(
                f"{run_dir} already holds a training run ({CHECKPOINT_NAME}); pass --resume to continue it "
                f"or choose another --run_dir"
            )
        self.check_world_size(_launch_world_size())
        self.evaluation.check_available()
        checkpoint = load_checkpoint(checkpoint_path, CHECKPOINT_FORMAT) if resume else None
        if self._resolved is not None:
            genotype, source_name = self._resolved
        elif checkpoint is not None:
            genotype, source_name = self.space.genotype_from_dict(checkpoint["genotype"]), checkpoint["model_name"]
        else:
            genotype, source_name = resolve_genotype(None, self.space)
        genotype_dict = dict(self.space.genotype_to_dict(genotype))
        name = self.model_name or source_name
        if checkpoint is not None and checkpoint["genotype"] != genotype_dict:
            raise CheckpointError(
                f"{checkpoint_path} trained another genotype ({checkpoint['model_name']}); resume without "
                f"--genotype or with the same one"
            )
        device = resolve_device(self.device)
        owns_group = not distributed.world_size() > 1 and _launch_world_size() > 1
        device = distributed.initialize_from_environment(device) or device
        try:
            return self._run(run_dir, checkpoint, genotype, genotype_dict, name, device, stop_after_epoch)
        finally:
            if owns_group:
                torch.distributed.destroy_process_group()

    def _run(
        self,
        run_dir: Path,
        checkpoint: Optional[Dict[str, Any]],
        genotype: Any,
        genotype_dict: Dict[str, Any],
        name: str,
        device: torch.device,
        stop_after_epoch: Optional[int],
    ) -> Optional[TrainResult]:
        world, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main_process()
        checkpoint_path = run_dir / CHECKPOINT_NAME
        seed_everything(self.seed)

        train_images = self.data.load_train()
        train_idx, valid_idx = self._split(len(train_images))
        if checkpoint is not None and not torch.equal(checkpoint["split"]["train"], train_idx):
            raise CheckpointError(
                f"{checkpoint_path} was written with another data split (different data, seed or "
                f"validation_portion); resume with the run's own configuration ({run_dir / 'config.gin'})"
            )
        mean, std = self.data.normalization(train_images)
        network = {
            "num_classes": train_images.num_classes, "input_shape": list(train_images.shape),
            "mean": list(mean), "std": list(std), "channels": self.channels, "layers": self.layers,
            "auxiliary": self.auxiliary_weight > 0,
        }
        model = self._build(genotype, network).to(device)
        distributed.broadcast_module(model)
        settings = self.optimizer
        sgd = torch.optim.SGD(
            model.parameters(), lr=settings.learning_rate, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=self.epochs, eta_min=settings.min_learning_rate)
        loader = BatchLoader(
            train_images.subset(train_idx, "training part"), self.batch_size, seed=self.seed,
            augmentation=self.augmentation, drop_last=True, device=device, rank=rank, world_size=world,
        )
        held_out: Optional[LabeledImages] = None if valid_idx is None else train_images.subset(valid_idx, "held-out part")
        steps = len(loader)
        if steps == 0:
            raise ValueError(
                f"Trainer.batch_size={self.batch_size} is larger than the training part ({len(train_idx)} images)"
            )
        if self.max_steps_per_epoch is not None:
            steps = min(steps, self.max_steps_per_epoch)
        selection = self._selection_description(0 if held_out is None else len(held_out))
        selector = self.selection_attack()

        folder = RunFolder(run_dir, enabled=main)
        history: List[float] = []
        start_epoch = 0
        best: Dict[str, Any] = {}
        metrics: Dict[str, float] = {}
        try:
            if checkpoint is None:
                if main:
                    _write_config(folder)
                folder.write_json("genotype.json", genotype_dict)
                folder.log(
                    f"training {name} from scratch: {self.epochs} epochs, {steps} steps/epoch, batch "
                    f"{self.batch_size}, {len(train_idx)} training + {0 if held_out is None else len(held_out)} "
                    f"held-out images, {count_parameters_millions(model):.3f} M parameters, objective "
                    f"{self.objective.describe()['name']}, device {device_description(device)}"
                    + (f", {world} processes ({self.batch_size // world} examples each per batch)" if world > 1 else "")
                )
                folder.log(f"checkpoint selection: {selection}")
                folder.log(f"genotype: {genotype}")
            else:
                model.load_state_dict(checkpoint["model"])
                sgd.load_state_dict(checkpoint["optimizer"])
                scheduler.load_state_dict(checkpoint["scheduler"])
                restore_rng_state(checkpoint["rng"])
                start_epoch = int(checkpoint["epoch"])
                history = list(checkpoint["seconds_per_epoch"])
                best = dict(checkpoint["best"])
                metrics = dict(checkpoint.get("metrics", {}))
                written_by = int(checkpoint.get("world_size", 1))
                folder.log(
                    f"resumed from {checkpoint_path} after epoch {start_epoch}"
                    + (f" on {world} process(es), written by {written_by}" if world != written_by else "")
                )
            for epoch in range(start_epoch, self.epochs):
                if stop_after_epoch is not None and epoch >= stop_after_epoch:
                    folder.log(f"stopped after epoch {epoch}; resume with --resume --run_dir {run_dir}")
                    return None
                if world > 1:  # each rank its own noise (drop path, PGD starts), reproducible per (seed, rank, epoch)
                    seed_everything(self.seed + 1_000_003 * rank + 7_919 * epoch)
                started = time.perf_counter()
                if hasattr(model, "drop_path_prob"):
                    model.drop_path_prob = self.drop_path_prob * epoch / self.epochs
                metrics = distributed.all_reduce_mean(self._train_epoch(model, sgd, loader, epoch, steps))
                for key, value in metrics.items():  # after the reduction: every rank stops together
                    if not math.isfinite(value):
                        raise FloatingPointError(f"metric {key} became {value} in epoch {epoch + 1}; the training diverged")
                metrics["lr"] = float(sgd.param_groups[0]["lr"])
                metrics["drop_path_prob"] = float(getattr(model, "drop_path_prob", 0.0))
                scheduler.step()
                if world > 1:
                    _average_running_statistics(model)
                    distributed.check_identical(
                        [*model.parameters(), *model.buffers()], "network weights or BatchNorm statistics"
                    )
                value: Optional[float] = None
                if held_out is not None and main:
                    value = attack_accuracy(
                        model, held_out, selector, self.evaluation.batch_size, device, self.seed,
                        self.selection_max_examples,
                    )
                    metrics["selection/accuracy"] = value
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - started
                history.append(seconds)
                metrics["epoch_seconds"] = seconds
                if main:
                    improved = not best or value is None or value > best["value"]
                    if improved:
                        best = {"epoch": epoch + 1, "value": value}
                        save_atomic(
                            {"format": BEST_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                             "selection": {"metric": selection, "value": value}, "genotype": genotype_dict,
                             "network": network, "model_name": name},
                            run_dir / BEST_NAME,
                        )
                    folder.scalars(metrics, epoch + 1)
                    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                    folder.log(f"epoch {epoch + 1}/{self.epochs}: {shown}{' (best so far)' if improved else ''}")
                    save_atomic(
                        {
                            "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                            "optimizer": sgd.state_dict(), "scheduler": scheduler.state_dict(),
                            "rng": capture_rng_state(), "split": {"train": train_idx, "seed": self.seed},
                            "seconds_per_epoch": history, "metrics": metrics, "best": best,
                            "genotype": genotype_dict, "network": network, "model_name": name,
                            "selection": selection, "objective": self.objective.describe(), "world_size": world,
                        },
                        checkpoint_path,
                    )
                distributed.barrier()  # the other ranks wait for the selection and the checkpoint
            if not main:
                return None  # rank 0 alone evaluates; see the class docstring
            return self._evaluate(folder, device, checkpoint_name=BEST_NAME)
        except KeyboardInterrupt:
            folder.log(
                f"interrupted during epoch {len(history) + 1}; the checkpoint of epoch {len(history)} is intact; "
                f"resume with --resume --run_dir {run_dir}"
            )
            raise
        finally:
            folder.close()

    def evaluate_run(self, run_dir: os.PathLike[str] | str, checkpoint: str = "best") -> TrainResult:
        """Evaluate a finished (or interrupted) training run again, rewriting its results files.

        Args:
            run_dir: the training run folder.
            checkpoint: ``"best"`` (``best.pt``, the selected epoch) or ``"last"`` (``checkpoint.pt``).

        Raises:
            CheckpointError: the run folder or its checkpoints are missing or foreign.
            ValueError: ``checkpoint`` is neither ``"best"`` nor ``"last"``.
        """
        if checkpoint not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"no training run folder at {run_dir}")
        self.evaluation.check_available()
        folder = RunFolder(run_dir)
        try:
            return self._evaluate(folder, resolve_device(self.device), BEST_NAME if checkpoint == "best" else CHECKPOINT_NAME)
        finally:
            folder.close()

    def _evaluate(self, folder: RunFolder, device: torch.device, checkpoint_name: str) -> TrainResult:
        training = load_checkpoint(folder.path / CHECKPOINT_NAME, CHECKPOINT_FORMAT)
        if checkpoint_name == BEST_NAME:
            state = load_checkpoint(folder.path / BEST_NAME, BEST_FORMAT)
        else:
            state = training
        genotype = self.space.genotype_from_dict(state["genotype"])
        model = self._build(genotype, state["network"]).to(device)
        model.load_state_dict(state["model"])
        name = self.model_name or state["model_name"]
        test_images = self.data.load_test()  # the only place that reads the test set
        folder.log(
            f"evaluating {checkpoint_name} (epoch {state['epoch']}) on "
            f"{min(len(test_images), self.evaluation.max_examples or len(test_images))} test images "
            f"({test_images.name}): clean, {', '.join(attack_label(a) for a in self.evaluation.attacks)}"
        )
        started = time.perf_counter()
        report = self.evaluation.evaluate(model, test_images, device)
        evaluate_seconds = time.perf_counter() - started
        for line in report.warnings():
            folder.logger.warning(line)
        history = list(training["seconds_per_epoch"])
        best = training["best"]
        params = count_parameters_millions(model)
        processes = int(training.get("world_size", 1))  # of the last epoch; older checkpoints: 1
        payload = {
            "model": name,
            "genotype": state["genotype"],
            "genotype_text": str(genotype),
            "params_millions": params,
            "data": test_images.name,
            "checkpoint": f"{checkpoint_name} (epoch {state['epoch']} of {training['epoch']} trained)",
            "seed": self.seed,
            "device": device_description(device) + (f" (trained on {processes} processes)" if processes > 1 else ""),
            "training": {
                "objective": training["objective"],
                "epochs": int(training["epoch"]),
                "processes": processes,
                "selection": training["selection"],
                "best_epoch": best.get("epoch"),
                "selection_value": best.get("value"),
                "seconds_per_epoch": history,
                "final_metrics": training.get("metrics", {}),
            },
            "evaluation": report.as_dict(),
            "seconds": {"train": float(sum(history)), "evaluate": evaluate_seconds},
        }
        write_results(folder.path, payload)
        folder.scalars({f"test/{k}": v for k, v in {"clean": report.clean, **report.attacks}.items()}, int(state["epoch"]))
        folder.writer.add_text("results", (folder.path / "results.md").read_text(), int(state["epoch"]))
        shown = ", ".join(f"{attack_label(k)} {100 * v:.2f}%" for k, v in {"clean": report.clean, **report.attacks}.items())
        folder.log(
            f"{name}: {shown} on {report.examples} test images; sanity {'passed' if report.sane else 'FAILED'}; "
            f"results in {folder.path / 'results.md'}"
        )
        return TrainResult(
            model_name=name, genotype=genotype, epochs=int(training["epoch"]), best_epoch=int(state["epoch"]),
            selection_value=best.get("value"), seconds_per_epoch=history, train_seconds=float(sum(history)),
            evaluate_seconds=evaluate_seconds, params_millions=params, report=report, run_dir=folder.path,
        )

    def _train_epoch(
        self, model: nn.Module, sgd: torch.optim.SGD, loader: BatchLoader, epoch: int, steps: int
    ) -> Dict[str, float]:
        model.train()
        meter = MetricMeter()
        clip = self.optimizer.grad_clip
        batches = itertools.islice(loader.epoch(epoch), steps)
        progress = tqdm(
            batches, total=steps, desc=f"epoch {epoch + 1}/{self.epochs} (train)", leave=False,
            disable=None if distributed.is_main_process() else True,
        )
        for x, y in progress:
            sgd.zero_grad(set_to_none=True)
            output = self.objective(model, x, y, self.auxiliary_weight)
            output.loss.backward()
            distributed.average_gradients(model.parameters())  # before clipping: every rank clips alike
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            sgd.step()
            meter.update(output.metrics, weight=int(y.shape[0]))
        return meter.means()


def _launch_world_size() -> int:
    """The number of processes of this run: the process group's, else ``torchrun``'s ``WORLD_SIZE``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return distributed.world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def _average_running_statistics(model: nn.Module) -> None:
    """Average BatchNorm's running means and variances over ranks (no-op when not distributed).

    Only floating-point buffers named ``running_mean`` or ``running_var`` are averaged; the others
    (``num_batches_tracked``, constants) are identical on every rank already.
    """
    statistics = [
        buffer for buffer_name, buffer in model.named_buffers()
        if buffer_name.rsplit(".", 1)[-1] in ("running_mean", "running_var") and buffer.is_floating_point()
    ]
    distributed.average_tensors(statistics)


def _write_config(folder: RunFolder) -> None:
    operative = gin.operative_config_str()
    full = gin.config_str()
    if full.strip():
        (folder.path / "config.gin").write_text(full)
    if operative.strip():
        (folder.path / "operative_config.gin").write_text(operative)
        folder.writer.add_text("config/operative", "    " + operative.replace("\n", "\n    "), 0)
