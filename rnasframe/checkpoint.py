"""Checkpoints: typed records with a format version, atomic writes, RNG state capture.

A checkpoint is an attrs record (:class:`SearchCheckpoint`, :class:`TrainingCheckpoint`,
:class:`BestWeights`) that turns into a plain dict of tensors, numbers, strings, lists and dicts
(:meth:`~CheckpointRecord.to_dict`), written with :func:`torch.save` through
:func:`~rnasframe.run_folder.write_atomic` and read back with ``torch.load(weights_only=True)``
(no arbitrary code runs on load). The dict's ``format`` entry names the record and its version;
:meth:`~CheckpointRecord.from_dict` reads the current version and the earlier ones it lists.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import attrs
import numpy as np
import torch
from torch import Tensor
from typing_extensions import Self

from rnasframe.run_folder import write_atomic

__all__ = [
    "CheckpointError",
    "CheckpointRecord",
    "SearchCheckpoint",
    "TrainingCheckpoint",
    "BestWeights",
    "save_atomic",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "CudaGenerators",
    "CUDA_GENERATORS",
]

class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, or not a checkpoint of the expected kind."""


def save_atomic(state: Mapping[str, Any], path: os.PathLike[str] | str) -> None:
    """Write ``state`` with :func:`torch.save` atomically (:func:`~rnasframe.run_folder.write_atomic`).

    A crash, a kill or Ctrl-C while writing leaves the previous checkpoint intact.
    """
    write_atomic(path, lambda stream: torch.save(dict(state), stream))


def load_checkpoint(
    path: os.PathLike[str] | str, kind: Union[str, Sequence[str]], map_location: Any = "cpu"
) -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` and check that its format is ``kind``.

    Args:
        path: the checkpoint file.
        kind: the accepted ``format`` entry, or several (e.g. a record's current and earlier versions).
        map_location: where tensors are loaded (default: the CPU).

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, not loadable with
            ``weights_only=True``, or of another kind (its ``format`` entry differs).
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is truncated, corrupted or not an rnasframe checkpoint ({first_line})"
        ) from error
    found = state.get("format") if isinstance(state, dict) else None
    if found not in kinds:
        raise CheckpointError(f"{path} is not a {kinds[0]!r} checkpoint (format: {found!r})")
    return state


def _non_negative(instance: Any, attribute: "attrs.Attribute[int]", value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{type(instance).__name__}.{attribute.name} must be an integer >= 0, got {value!r}")


class CheckpointRecord:
    """What every checkpoint record shares: a format version, dict conversion, atomic save, load.

    Subclasses are attrs classes that set :attr:`FORMAT` (the current ``format`` entry) and
    :attr:`READS` (every format :meth:`from_dict` accepts, the current one first). Fields with a
    default may be absent from earlier versions; the others must be present.
    """

    FORMAT: ClassVar[str]
    READS: ClassVar[Tuple[str, ...]]

    def to_dict(self) -> Dict[str, Any]:
        """The record as a ``weights_only``-loadable dict, with its ``format`` entry."""
        return {"format": self.FORMAT, **attrs.asdict(self, recurse=False)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "checkpoint") -> Self:
        """Rebuild the record from :meth:`to_dict`'s output (this version or an earlier one).

        Raises:
            CheckpointError: ``data`` has another format or lacks a required entry.
        """
        found = data.get("format")
        if found not in cls.READS:
            raise CheckpointError(f"{source} is not a {cls.FORMAT!r} checkpoint (format: {found!r})")
        fields = attrs.fields(cls)  # type: ignore[arg-type]
        missing = [f.name for f in fields if f.default is attrs.NOTHING and f.name not in data]
        if missing:
            raise CheckpointError(f"{source} ({found}) lacks the entries {', '.join(missing)}")
        return cls(**{f.name: data[f.name] for f in fields if f.name in data})

    def save(self, path: os.PathLike[str] | str) -> None:
        """Write the record to ``path`` atomically."""
        save_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: os.PathLike[str] | str, map_location: Any = "cpu") -> Self:
        """Read a record written by :meth:`save` (or an earlier version of it).

        Raises:
            CheckpointError: missing, truncated, foreign or incomplete.
        """
        return cls.from_dict(load_checkpoint(path, cls.READS, map_location), str(path))


@attrs.define(frozen=True)
class SearchCheckpoint(CheckpointRecord):
    """The state of a search after ``epoch`` completed epochs (``checkpoint.pt`` of a search).

    Attributes:
        epoch: completed epochs.
        model: the supernet's ``state_dict`` (weights and architecture parameters).
        optimizer: the bi-level optimizer's ``state_dict``.
        rng: :func:`capture_rng_state` at the end of the epoch.
        split: the data split: ``train`` and ``valid`` index tensors and the ``seed``.
        seconds_per_epoch: wall-clock seconds of each completed epoch.
        metrics: the last epoch's metrics.
        genotype: the derived genotype in the space's dict form.
        world_size: the number of processes that wrote it.
        alpha_history: softmax(alpha) after each epoch, by architecture parameter name.
        step: steps done inside epoch ``epoch + 1`` (0: the checkpoint is at an epoch's end). A
            record with ``step > 0`` also needs the loaders' position and the partial metric
            sums, which :attr:`position` holds.
        position: the position inside the epoch (empty at an epoch's end).
        example_stores: the objective's per-example stores
            (:meth:`~rnasframe.objective.RobustObjective.state_dict`: a warm-started
            perturbation's stored ``x' - x``), by regularizer name; empty when none keeps one
            (and in checkpoints written before stores existed).
    """

    FORMAT: ClassVar[str] = "rnasframe.search/2"
    READS: ClassVar[Tuple[str, ...]] = ("rnasframe.search/2", "rnasframe.search/1")

    epoch: int = attrs.field(validator=_non_negative)
    model: Dict[str, Tensor]
    optimizer: Dict[str, Any]
    rng: Dict[str, Any]
    split: Dict[str, Any]
    seconds_per_epoch: List[float]
    metrics: Dict[str, float] = attrs.field(factory=dict)
    genotype: Optional[Dict[str, Any]] = None
    world_size: int = 1
    alpha_history: Dict[str, List[Tensor]] = attrs.field(factory=dict)
    step: int = attrs.field(default=0, validator=_non_negative)
    position: Dict[str, Any] = attrs.field(factory=dict)
    example_stores: Dict[str, Dict[str, Any]] = attrs.field(factory=dict)


@attrs.define(frozen=True)
class TrainingCheckpoint(CheckpointRecord):
    """The state of a training run after ``epoch`` completed epochs (``checkpoint.pt`` of training).

    Attributes:
        epoch: completed epochs.
        model: the network's ``state_dict``.
        optimizer: SGD's ``state_dict``.
        scheduler: the learning-rate schedule's ``state_dict``.
        rng: :func:`capture_rng_state` at the end of the epoch.
        split: ``train`` (index tensor of the training part) and the ``seed``.
        seconds_per_epoch: wall-clock seconds of each completed epoch.
        metrics: the last epoch's metrics.
        best: ``epoch`` and ``value`` of the selected epoch so far (empty before the first).
        genotype: the trained genotype in the space's dict form.
        network: what the network was built for: ``num_classes``, ``input_shape``, ``mean``,
            ``std`` (version 1 also recorded DARTS' ``channels``, ``layers``, ``auxiliary``).
        model_name: the name in the results table.
        selection: the description of checkpoint selection.
        objective: the training objective's name and settings.
        world_size: the number of processes that wrote it.
        step: steps done inside epoch ``epoch + 1`` (0: at an epoch's end); see
            :attr:`SearchCheckpoint.step`.
        position: the position inside the epoch (empty at an epoch's end).
    """

    FORMAT: ClassVar[str] = "rnasframe.train/2"
    READS: ClassVar[Tuple[str, ...]] = ("rnasframe.train/2", "rnasframe.train/1")

    epoch: int = attrs.field(validator=_non_negative)
    model: Dict[str, Tensor]
    optimizer: Dict[str, Any]
    scheduler: Dict[str, Any]
    rng: Dict[str, Any]
    split: Dict[str, Any]
    seconds_per_epoch: List[float]
    metrics: Dict[str, float]
    best: Dict[str, Any]
    genotype: Dict[str, Any]
    network: Dict[str, Any]
    model_name: str
    selection: str
    objective: Dict[str, Any]
    world_size: int = 1
    step: int = attrs.field(default=0, validator=_non_negative)
    position: Dict[str, Any] = attrs.field(factory=dict)


@attrs.define(frozen=True)
class BestWeights(CheckpointRecord):
    """The weights of the selected epoch (``best.pt``) and what they were selected on.

    Attributes:
        epoch: the selected epoch (1-based).
        model: the network's ``state_dict``.
        selection: ``metric`` (its description) and ``value`` (``None`` without a held-out split).
        genotype: the trained genotype in the space's dict form.
        network: as :attr:`TrainingCheckpoint.network`.
        model_name: the name in the results table.
    """

    FORMAT: ClassVar[str] = "rnasframe.train-best/2"
    READS: ClassVar[Tuple[str, ...]] = ("rnasframe.train-best/2", "rnasframe.train-best/1")

    epoch: int = attrs.field(validator=_non_negative)
    model: Dict[str, Tensor]
    selection: Dict[str, Any]
    genotype: Dict[str, Any]
    network: Dict[str, Any]
    model_name: str


class CudaGenerators:
    """The CUDA side of :func:`capture_rng_state` / :func:`restore_rng_state`: torch's default CUDA generators.

    The generator functions take the device index explicitly. A test, or a user whose CUDA
    generators live elsewhere, passes a stand-in with the same five methods.
    """

    def available(self) -> bool:
        """Whether CUDA is available in this process."""
        return torch.cuda.is_available()

    def device_count(self) -> int:
        """The number of GPUs this process sees (``CUDA_VISIBLE_DEVICES`` applied)."""
        return torch.cuda.device_count()

    def current_device(self) -> int:
        """The index of the current GPU (what ``torch.device("cuda")`` means)."""
        return torch.cuda.current_device()

    def get_state(self, index: int) -> Tensor:
        """The state of GPU ``index``'s default generator."""
        return torch.cuda.get_rng_state(index)

    def set_state(self, state: Tensor, index: int) -> None:
        """Set the state of GPU ``index``'s default generator."""
        torch.cuda.set_rng_state(state, index)


#: The CUDA generators :func:`capture_rng_state` and :func:`restore_rng_state` use by default.
CUDA_GENERATORS = CudaGenerators()


def _cuda_index(device: Optional[torch.device], cuda: CudaGenerators) -> Optional[int]:
    """The GPU whose generator a run on ``device`` draws from; ``None`` for a CPU run.

    ``device=None`` means "this process' current GPU when CUDA is available" (what a caller that
    does not name its device meant before devices were named).
    """
    if device is None:
        return cuda.current_device() if cuda.available() else None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    if not cuda.available():
        raise ValueError(f"the run device is {device}, but CUDA is not available in this process")
    return cuda.current_device() if device.index is None else device.index


def capture_rng_state(
    device: Optional[torch.device] = None, cuda: Optional[CudaGenerators] = None
) -> Dict[str, Any]:
    """The states of Python's, NumPy's and torch's CPU generators, and of the run device's CUDA generator.

    Args:
        device: the device the run uses. A CUDA device adds ``"cuda"``: the generator state of
            that GPU with its index and the number of visible GPUs, so that the state can be
            restored onto whichever GPU resumes the run. ``None``: the current GPU when CUDA is
            available (nothing for a machine without CUDA).
        cuda: the CUDA generators (default: :data:`CUDA_GENERATORS`).
    """
    cuda = CUDA_GENERATORS if cuda is None else cuda
    np_state = cast(Tuple[Any, ...], np.random.get_state())  # the legacy tuple; numpy's stubs say a dict
    state: Dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    index = _cuda_index(device, cuda)
    if index is not None:
        state["cuda"] = {"device": index, "device_count": cuda.device_count(), "state": cuda.get_state(index)}
    return state


def restore_rng_state(
    state: Mapping[str, Any], device: Optional[torch.device] = None, cuda: Optional[CudaGenerators] = None
) -> Optional[str]:
    """Restore generator states from :func:`capture_rng_state` for a run on ``device``.

    Python's, NumPy's and torch's CPU generators are always restored. A CUDA generator state is
    restored onto the GPU this run uses, whatever GPU and number of visible GPUs wrote it
    (checkpoints of earlier versions, which hold one state per visible GPU, included). The
    continuation is the uninterrupted run's, bit for bit, when the run resumes on the same GPU
    index with the same number of visible GPUs and the same kind of device; otherwise the
    states are restored as far as they apply and a note says what differs.

    Args:
        state: the output of :func:`capture_rng_state`.
        device: the device the resumed run uses (``None``: as in :func:`capture_rng_state`).
        cuda: the CUDA generators (default: :data:`CUDA_GENERATORS`).

    Returns:
        ``None`` when the generators continue exactly; otherwise a note for the run's log.
    """
    cuda = CUDA_GENERATORS if cuda is None else cuda
    random.setstate(_to_tuples(state["python"]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(position), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    index = _cuda_index(device, cuda)
    saved = state.get("cuda")
    if saved is None:
        if index is None:
            return None
        return (
            f"the checkpoint holds no CUDA generator state (written by a run on the CPU); the generator of "
            f"cuda:{index} keeps its state (from the run's seed), not the interrupted run's"
        )
    if isinstance(saved, Mapping):
        saved_index, saved_count, generator = int(saved["device"]), int(saved["device_count"]), saved["state"]
        written = f"cuda:{saved_index} of {saved_count} visible GPU{'s' if saved_count != 1 else ''}"
    else:  # earlier versions: one state per visible GPU, not saying which one the run used
        states = list(saved)
        saved_count = len(states)
        saved_index = index if index is not None and index < saved_count else 0
        generator = states[saved_index]
        written = f"a machine with {saved_count} visible GPU{'s' if saved_count != 1 else ''} (earlier format)"
    if index is None:
        return (
            f"the checkpoint was written on {written}; this run continues on the CPU, so its random "
            f"numbers differ from a continuation on the GPU (the CPU generators are restored)"
        )
    cuda.set_state(generator, index)
    count = cuda.device_count()
    if (saved_index, saved_count) == (index, count):
        return None
    return (
        f"the CUDA generator state of {written} was restored onto cuda:{index} of {count} visible; "
        f"the random stream continues, but bit-exact continuation is only claimed on the same GPU "
        f"index and number of visible GPUs"
    )


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value
