"""Atomic checkpoints and RNG state capture, loaded with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping

import numpy as np
import torch

__all__ = ["CheckpointError", "save_atomic", "load_checkpoint", "capture_rng_state", "restore_rng_state"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, or not a checkpoint of the expected kind."""


def save_atomic(state: Mapping[str, Any], path: os.PathLike[str] | str) -> None:
    """Write ``state`` with :func:`torch.save` to a temporary file, then rename it over ``path``.

    A crash or Ctrl-C while writing leaves the previous checkpoint intact: the rename is atomic on
    POSIX file systems, and the file is flushed to disk before it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(dict(state), stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_checkpoint(path: os.PathLike[str] | str, kind: str, map_location: Any = "cpu") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` and check that it is of ``kind``.

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, not loadable with
            ``weights_only=True``, or of another kind (its ``format`` entry differs).
    """
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
    if found != kind:
        raise CheckpointError(f"{path} is not a {kind!r} checkpoint (format: {found!r})")
    return state


def capture_rng_state() -> Dict[str, Any]:
    """The states of Python's, NumPy's, torch's CPU and (when present) CUDA random generators."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore generator states from :func:`capture_rng_state`."""
    random.setstate(_to_tuples(state["python"]))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(position), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value
