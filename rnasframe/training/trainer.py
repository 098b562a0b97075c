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
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import attrs
import gin
import torch
from torch import nn

from rnasframe import distributed, validation
from rnasframe.bilevel import WeightOptimizerSettings
from rnasframe.checkpoint import BestWeights, CheckpointError, TrainingCheckpoint, capture_rng_state, restore_rng_state
from rnasframe.data.images import LabeledImages
from rnasframe.data.loader import Augmentation, BatchLoader, split_indices
from rnasframe.data.sources import CIFAR10Source, DataSource
from rnasframe.interfaces.perturbation import Perturbation
from rnasframe.interfaces.search_space import InputSpec, SearchSpace
from rnasframe.perturbations import PGD
from rnasframe.robustness.attacks import attack_settings
from rnasframe.robustness.evaluator import RobustnessEvaluation, RobustnessReport, attack_accuracy, check_attack_radius
from rnasframe.robustness.report import attack_label, count_parameters_millions, write_results
from rnasframe.run import CHECKPOINT_NAME, MidEpochCheckpoints, Run, check_position, launch_world_size
from rnasframe.run_folder import MetricMeter, RunFolder, device_description
from rnasframe.seeding import resolve_device, seed_everything
from rnasframe.training.genotypes import resolve_genotype
from rnasframe.training.objectives import StandardTraining, TrainingObjective

__all__ = ["Trainer", "TrainResult", "CHECKPOINT_FORMAT", "BEST_FORMAT"]

#: The ``format`` entry of training checkpoints (``checkpoint.pt``, :class:`~rnasframe.checkpoint.TrainingCheckpoint`).
CHECKPOINT_FORMAT = TrainingCheckpoint.FORMAT
#: The ``format`` entry of the selected weights (``best.pt``, :class:`~rnasframe.checkpoint.BestWeights`).
BEST_FORMAT = BestWeights.FORMAT
BEST_NAME = "best.pt"


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


@attrs.define(frozen=True)
class _Genotype:
    """The genotype a run trains, its dict form and its name in the results table."""

    genotype: Any
    as_dict: Dict[str, Any]
    name: str


@attrs.define(eq=False)
class _Setup:
    """What a training run builds once."""

    genotype: _Genotype
    network: Dict[str, Any]
    split: Dict[str, Any]
    model: nn.Module
    sgd: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.CosineAnnealingLR
    loader: BatchLoader
    held_out: Optional[LabeledImages]
    steps: int
    selection: str
    selector: Optional[Perturbation]


@attrs.define(eq=False)
class _Progress:
    """What a training run accumulates epoch by epoch (and keeps in its checkpoint)."""

    epoch: int = 0
    seconds_per_epoch: List[float] = attrs.field(factory=list)
    metrics: Dict[str, float] = attrs.field(factory=dict)
    best: Dict[str, Any] = attrs.field(factory=dict)
    step: int = 0
    position: Dict[str, Any] = attrs.field(factory=dict)


@gin.configurable
@attrs.define(eq=False)
class Trainer:
    """Trains the network of a genotype from scratch, selects a checkpoint, evaluates robustness.

    Defaults are the paper's protocol (section 4.2): 600 epochs, batch 96, SGD lr 0.025
    cosine-annealed to 0, momentum 0.9, weight decay 3e-4, gradient clip 5, cutout 16. The
    network itself (width, depth, an auxiliary head, drop path) is the search space's network
    configuration, and its per-epoch schedules run through
    :meth:`~rnasframe.interfaces.SearchSpace.set_epoch`; the weight of auxiliary logits in the
    loss is the objective's.

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
      :meth:`run`, at once when the process group is the caller's, else once rank 0 is done (they
      wait on the process group's store, not in a collective, so a long evaluation such as
      AutoAttack does not meet the collectives' timeout, and a crash of rank 0 releases them; see
      :func:`~rnasframe.distributed.leave_process_group`). Neither is sharded: their cost is small
      next to training's, and they are computed exactly as in a one-process run.
    * A checkpoint resumes on any number of processes (the run folder must be on a file system
      every node sees); the resumed run is bit-exact on the same number, since every rank
      re-seeds at each epoch and holds the checkpoint's weights and statistics.

    Args:
        space: the search space that builds the network (required; the shipped configs bind
            ``Trainer.space`` in gin).
        genotype: what to train (see :func:`~rnasframe.training.genotypes.resolve_genotype`): a
            genotype.json, a search's run folder, the space's own notation (e.g. a published
            name) or a dict; the command line's ``--genotype`` replaces it.
        data: the data source; its training images are split into a training part and a held-out
            validation part; its test images are read once, at the end.
        objective: :class:`~rnasframe.training.StandardTraining` (default),
            :class:`~rnasframe.training.AdversarialTraining` or :class:`~rnasframe.training.TradesTraining`.
        epochs: training epochs (600).
        batch_size: examples per batch (96); under ``torchrun`` the global batch, split evenly
            across the processes.
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
        checkpoint_every_steps: also write ``checkpoint.pt`` after every this many steps inside
            an epoch (``None``: only the time trigger); ``--resume`` continues from that step,
            bit-identical to an uninterrupted run.
        checkpoint_every_minutes: also write it when this many minutes of work passed since the
            last write (10; ``None``: never by time). One-process runs only, as in the search.
    """

    space: SearchSpace = attrs.field(validator=attrs.validators.instance_of(SearchSpace))
    genotype: Any = None
    data: DataSource = attrs.field(factory=CIFAR10Source, validator=attrs.validators.instance_of(DataSource))
    objective: TrainingObjective = attrs.field(
        factory=StandardTraining, validator=attrs.validators.instance_of(TrainingObjective)
    )
    epochs: int = attrs.field(default=600, validator=validation.positive_int)
    batch_size: int = attrs.field(default=96, validator=validation.positive_int)
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
    checkpoint_every_steps: Optional[int] = attrs.field(
        default=None, validator=attrs.validators.optional(validation.positive_int)
    )
    checkpoint_every_minutes: Optional[float] = attrs.field(
        default=10.0,
        # attrs' stubs type the field by its float default, not as Optional[float]
        validator=attrs.validators.optional(validation.greater_than(0.0, "minutes")),  # type: ignore[arg-type]
    )
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

    def _build(self, genotype: Any, network: Mapping[str, Any]) -> nn.Module:
        """The space's network of ``genotype`` for the recorded classes and inputs."""
        spec = InputSpec(tuple(network["input_shape"]), network["mean"], network["std"])
        return self.space.network(genotype, network["num_classes"], spec)

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
            ``stop_after_epoch``, and on the other ranks of a data-parallel run, whose part ends
            with training while rank 0 evaluates.

        Raises:
            FileExistsError: ``run_dir`` holds a checkpoint and ``resume`` is false.
            CheckpointError: a missing, truncated or foreign checkpoint, or one of another
                genotype or data split.
            ValueError: no genotype, an invalid one, a batch larger than the data, or a batch that
                does not split evenly over the processes.
        """
        run = Run(run_dir, "training", resume, resolve_device(self.device))
        self.check_world_size(launch_world_size())
        self.evaluation.check_available()
        checkpoint = TrainingCheckpoint.load(run.checkpoint_path) if resume else None
        genotype = self._genotype(run, checkpoint)
        with run:
            seed_everything(self.seed)
            setup = self._setup(run, checkpoint, genotype)
            progress = self._start(run, setup, checkpoint)
            for epoch in range(progress.epoch, self.epochs):
                if run.stop_requested(epoch, stop_after_epoch):
                    return None
                self._epoch(run, setup, progress, epoch)
            if not run.main:
                return None  # rank 0 alone evaluates; see the class docstring
            return self._evaluate(run.folder, run.device, checkpoint_name=BEST_NAME)

    def _genotype(self, run: Run, checkpoint: Optional[TrainingCheckpoint]) -> _Genotype:
        """The genotype to train (given, else the checkpoint's) and its name; checked against the checkpoint."""
        if self._resolved is not None:
            genotype, source_name = self._resolved
        elif checkpoint is not None:
            genotype, source_name = self.space.genotype_from_dict(checkpoint.genotype), checkpoint.model_name
        else:
            genotype, source_name = resolve_genotype(None, self.space)
        as_dict = dict(self.space.genotype_to_dict(genotype))
        if checkpoint is not None and checkpoint.genotype != as_dict:
            raise CheckpointError(
                f"{run.checkpoint_path} trained another genotype ({checkpoint.model_name}); resume without "
                f"--genotype or with the same one"
            )
        return _Genotype(genotype, as_dict, self.model_name or source_name)

    def _setup(self, run: Run, checkpoint: Optional[TrainingCheckpoint], genotype: _Genotype) -> _Setup:
        """Load and split the data, build the network, SGD, the schedule and the loader."""
        train_images = self.data.load_train()
        train_idx, valid_idx = self._split(len(train_images))
        if checkpoint is not None and not torch.equal(checkpoint.split["train"], train_idx):
            raise CheckpointError(
                f"{run.checkpoint_path} was written with another data split (different data, seed or "
                f"validation_portion); resume with the run's own configuration ({run.path / 'config.gin'})"
            )
        mean, std = self.data.normalization(train_images)
        network = {
            "num_classes": train_images.num_classes, "input_shape": list(train_images.shape),
            "mean": list(mean), "std": list(std),
        }
        model = self._build(genotype.genotype, network).to(run.device)
        distributed.broadcast_module(model)
        settings = self.optimizer
        sgd = torch.optim.SGD(
            model.parameters(),
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.nesterov,
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            sgd, T_max=self.epochs, eta_min=settings.min_learning_rate
        )
        loader = BatchLoader(
            train_images.subset(train_idx, "training part"), self.batch_size, seed=self.seed,
            augmentation=self.augmentation, drop_last=True, device=run.device, rank=run.rank, world_size=run.world_size,
        )
        held_out = None if valid_idx is None else train_images.subset(valid_idx, "held-out part")
        steps = len(loader)
        if steps == 0:
            raise ValueError(
                f"Trainer.batch_size={self.batch_size} is larger than the training part ({len(train_idx)} images)"
            )
        if self.max_steps_per_epoch is not None:
            steps = min(steps, self.max_steps_per_epoch)
        selection = self._selection_description(0 if held_out is None else len(held_out))
        return _Setup(
            genotype, network, {"train": train_idx, "seed": self.seed}, model, sgd, scheduler, loader, held_out,
            steps, selection, self.selection_attack(),
        )

    def _start(self, run: Run, setup: _Setup, checkpoint: Optional[TrainingCheckpoint]) -> _Progress:
        """Open the run folder; log the plan of a new run or restore a checkpoint's state."""
        folder = run.open_folder(write_config_files=checkpoint is None)
        if checkpoint is None:
            folder.write_json("genotype.json", setup.genotype.as_dict)
            held_out = 0 if setup.held_out is None else len(setup.held_out)
            world = run.world_size
            folder.log(
                f"training {setup.genotype.name} from scratch: {self.epochs} epochs, {setup.steps} steps/epoch, batch "
                f"{self.batch_size}, {len(setup.split['train'])} training + {held_out} "
                f"held-out images, {count_parameters_millions(setup.model):.3f} M parameters, objective "
                f"{self.objective.describe()['name']}, device {device_description(run.device)}"
                + (f", {world} processes ({self.batch_size // world} examples each per batch)" if world > 1 else "")
            )
            folder.log(f"checkpoint selection: {setup.selection}")
            folder.log(f"genotype: {setup.genotype.genotype}")
            return _Progress()
        if checkpoint.step:
            check_position(
                checkpoint.position, checkpoint.step, run.checkpoint_path, self.batch_size, run.world_size, setup.steps
            )
        _load_weights(setup.model, checkpoint.model, run.checkpoint_path)
        setup.sgd.load_state_dict(checkpoint.optimizer)
        setup.scheduler.load_state_dict(checkpoint.scheduler)
        note = restore_rng_state(checkpoint.rng, run.device)
        if note:
            folder.log(note)
        run.epochs_done = checkpoint.epoch
        folder.log(
            f"resumed from {run.checkpoint_path} after epoch {checkpoint.epoch}"
            + (f", step {checkpoint.step} of epoch {checkpoint.epoch + 1}" if checkpoint.step else "")
            + (f" on {run.world_size} process(es), written by {checkpoint.world_size}"
               if run.world_size != checkpoint.world_size else "")
        )
        return _Progress(
            checkpoint.epoch, list(checkpoint.seconds_per_epoch), dict(checkpoint.metrics), dict(checkpoint.best),
            checkpoint.step, dict(checkpoint.position),
        )

    def _epoch(self, run: Run, setup: _Setup, progress: _Progress, epoch: int) -> None:
        """One epoch: the space's schedule, training steps, selection, logs, ``best.pt`` and the checkpoint."""
        model = setup.model
        if not progress.step:  # a run resumed inside the epoch has its generators' states already
            run.seed_epoch(self.seed, epoch)  # each rank its own noise (drop path, PGD starts)
        started = time.perf_counter() - float(progress.position.get("seconds", 0.0))
        self.space.set_epoch(model, epoch, self.epochs)
        local = self._train_epoch(run, setup, progress, epoch)
        run.check_finite(local, epoch)  # before the reduction, on every rank together
        metrics = distributed.all_reduce_mean(local)
        metrics["lr"] = float(setup.sgd.param_groups[0]["lr"])
        setup.scheduler.step()
        if run.world_size > 1:
            _average_running_statistics(model)
            distributed.check_identical(
                [*model.parameters(), *model.buffers()], "network weights or BatchNorm statistics"
            )
        value: Optional[float] = None
        if setup.held_out is not None and run.main:
            value = attack_accuracy(
                model, setup.held_out, setup.selector, self.evaluation.batch_size, run.device, self.seed,
                self.selection_max_examples,
            )
            metrics["selection/accuracy"] = value
        seconds = run.seconds_since(started)
        progress.epoch = epoch + 1
        progress.seconds_per_epoch.append(seconds)
        metrics["epoch_seconds"] = seconds
        progress.metrics = metrics
        if run.main:
            improved = not progress.best or value is None or value > progress.best["value"]
            if improved:
                progress.best = {"epoch": epoch + 1, "value": value}
                self._best(setup, epoch, value).save(run.path / BEST_NAME)
            run.folder.scalars(metrics, epoch + 1)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            run.folder.log(f"epoch {epoch + 1}/{self.epochs}: {shown}{' (best so far)' if improved else ''}")
            self._checkpoint(setup, progress, run.world_size).save(run.checkpoint_path)
        distributed.barrier()  # the other ranks wait for the selection and the checkpoint
        run.epochs_done = epoch + 1

    def _best(self, setup: _Setup, epoch: int, value: Optional[float]) -> BestWeights:
        return BestWeights(
            epoch=epoch + 1, model=setup.model.state_dict(), selection={"metric": setup.selection, "value": value},
            genotype=setup.genotype.as_dict, network=setup.network, model_name=setup.genotype.name,
        )

    def _checkpoint(self, setup: _Setup, progress: _Progress, world: int) -> TrainingCheckpoint:
        return TrainingCheckpoint(
            step=progress.step, position=progress.position, epoch=progress.epoch,
            model=setup.model.state_dict(), optimizer=setup.sgd.state_dict(),
            scheduler=setup.scheduler.state_dict(), rng=capture_rng_state(setup.loader.device), split=setup.split,
            seconds_per_epoch=progress.seconds_per_epoch, metrics=progress.metrics, best=progress.best,
            genotype=setup.genotype.as_dict, network=setup.network, model_name=setup.genotype.name,
            selection=setup.selection, objective=self.objective.describe(), world_size=world,
        )

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
            name = BEST_NAME if checkpoint == "best" else CHECKPOINT_NAME
            return self._evaluate(folder, resolve_device(self.device), name)
        finally:
            folder.close()

    def _evaluate(self, folder: RunFolder, device: torch.device, checkpoint_name: str) -> TrainResult:
        """Evaluate ``checkpoint_name`` on the test set; write ``results.json`` and ``results.md``."""
        training = TrainingCheckpoint.load(folder.path / CHECKPOINT_NAME)
        state: Union[TrainingCheckpoint, BestWeights] = (
            BestWeights.load(folder.path / BEST_NAME) if checkpoint_name == BEST_NAME else training
        )
        genotype = self.space.genotype_from_dict(state.genotype)
        model = self._build(genotype, state.network).to(device)
        _load_weights(model, state.model, folder.path / checkpoint_name)
        name = self.model_name or state.model_name
        test_images = self.data.load_test()  # the only place that reads the test set
        folder.log(
            f"evaluating {checkpoint_name} (epoch {state.epoch}) on "
            f"{min(len(test_images), self.evaluation.max_examples or len(test_images))} test images "
            f"({test_images.name}): clean, {', '.join(attack_label(a) for a in self.evaluation.attacks)}"
        )
        started = time.perf_counter()
        report = self.evaluation.evaluate(model, test_images, device)
        evaluate_seconds = time.perf_counter() - started
        for line in report.warnings():
            folder.logger.warning(line)
        params = count_parameters_millions(model)
        payload = self._results_payload(
            training, state, checkpoint_name, name, genotype, params, test_images.name, device
        )
        payload["evaluation"] = report.as_dict()
        payload["seconds"]["evaluate"] = evaluate_seconds
        write_results(folder.path, payload)
        self._log_results(folder, name, report, state.epoch)
        history = list(training.seconds_per_epoch)
        return TrainResult(
            model_name=name, genotype=genotype, epochs=training.epoch, best_epoch=state.epoch,
            selection_value=training.best.get("value"), seconds_per_epoch=history, train_seconds=float(sum(history)),
            evaluate_seconds=evaluate_seconds, params_millions=params, report=report, run_dir=folder.path,
        )

    def _results_payload(
        self,
        training: TrainingCheckpoint,
        state: Union[TrainingCheckpoint, BestWeights],
        checkpoint_name: str,
        name: str,
        genotype: Any,
        params: float,
        data_name: str,
        device: torch.device,
    ) -> Dict[str, Any]:
        """``results.json`` without the evaluation itself (added by the caller)."""
        processes = training.world_size  # of the last epoch
        history = list(training.seconds_per_epoch)
        return {
            "model": name,
            "genotype": state.genotype,
            "genotype_text": str(genotype),
            "params_millions": params,
            "data": data_name,
            "checkpoint": f"{checkpoint_name} (epoch {state.epoch} of {training.epoch} trained)",
            "seed": self.seed,
            "device": device_description(device) + (f" (trained on {processes} processes)" if processes > 1 else ""),
            "training": {
                "objective": training.objective,
                "epochs": training.epoch,
                "processes": processes,
                "selection": training.selection,
                "best_epoch": training.best.get("epoch"),
                "selection_value": training.best.get("value"),
                "seconds_per_epoch": history,
                "final_metrics": training.metrics,
            },
            "evaluation": {},
            "seconds": {"train": float(sum(history)), "evaluate": 0.0},
        }

    @staticmethod
    def _log_results(folder: RunFolder, name: str, report: RobustnessReport, epoch: int) -> None:
        accuracies = {"clean": report.clean, **report.attacks}
        folder.scalars({f"test/{k}": v for k, v in accuracies.items()}, epoch)
        folder.writer.add_text("results", (folder.path / "results.md").read_text(), epoch)
        shown = ", ".join(f"{attack_label(k)} {100 * v:.2f}%" for k, v in accuracies.items())
        folder.log(
            f"{name}: {shown} on {report.examples} test images; sanity {'passed' if report.sane else 'FAILED'}; "
            f"results in {folder.path / 'results.md'}"
        )

    def _train_epoch(self, run: Run, setup: _Setup, progress: _Progress, epoch: int) -> Dict[str, float]:
        """The epoch's training steps (from a mid-epoch checkpoint's step); returns this rank's mean metrics.

        A resumed epoch regenerates the skipped batches and continues with the checkpoint's
        partial metric sums, as the search does.
        """
        model, sgd, steps, first = setup.model, setup.sgd, setup.steps, progress.step
        model.train()
        meter = MetricMeter.from_state(progress.position["meter"], run.device) if first else MetricMeter()
        started = time.perf_counter() - float(progress.position.get("seconds", 0.0))
        schedule = MidEpochCheckpoints(self.checkpoint_every_steps, self.checkpoint_every_minutes)
        clip = self.optimizer.grad_clip
        batches = itertools.islice(setup.loader.epoch(epoch), first, steps)
        bar = run.progress(batches, total=steps, initial=first, desc=f"epoch {epoch + 1}/{self.epochs} (train)")
        for step, (x, y) in enumerate(bar, start=first + 1):
            sgd.zero_grad(set_to_none=True)
            output = self.objective(model, x, y)
            output.loss.backward()
            distributed.average_gradients(model.parameters())  # before clipping: every rank clips alike
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            sgd.step()
            meter.update(output.metrics, weight=int(y.shape[0]))
            if run.world_size == 1 and schedule.due(step, steps):
                progress.step = step
                progress.position = {
                    "batch_size": self.batch_size, "world_size": 1, "steps": steps, "meter": meter.state_dict(),
                    "seconds": time.perf_counter() - started,
                }
                self._checkpoint(setup, progress, 1).save(run.checkpoint_path)
                schedule.written()
        progress.step, progress.position = 0, {}
        return meter.means()


def _load_weights(model: nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """Load a checkpoint's weights; a network of another shape fails in one line naming the file."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{path} holds the weights of another network than the space's configuration builds ({first}); "
            f"use the run's own config.gin"
        ) from None


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
