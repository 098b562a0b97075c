"""The run folder: log file, tensorboardX events, JSON artifacts and metric averaging."""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Dict, Mapping, Optional, Union

import torch
from torch import Tensor

__all__ = ["RunFolder", "MetricMeter", "device_description", "write_atomic", "write_json_atomic"]


def write_atomic(path: os.PathLike[str] | str, content: Union[bytes, str, Callable[[IO[bytes]], None]]) -> None:
    """Write a file so that readers only ever see the old or the new version, never half of one.

    The content goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` (atomic on POSIX file systems). A crash, a kill or Ctrl-C during the write leaves the
    previous file intact and at most a stray hidden ``.<name>.*.tmp`` file. Every file of a run
    folder that is rewritten (checkpoints, JSON, Markdown) goes through here.

    Args:
        path: the file to (re)write; its folder is created if missing.
        content: bytes, text (UTF-8), or a function that writes into a binary stream (e.g.
            ``lambda stream: torch.save(state, stream)``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            if callable(content):
                content(stream)
            else:
                stream.write(content.encode() if isinstance(content, str) else content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_json_atomic(path: os.PathLike[str] | str, payload: Any) -> None:
    """Write ``payload`` as indented JSON with :func:`write_atomic` (never half-written)."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def device_description(device: torch.device) -> str:
    """A human-readable name of ``device`` for the search-cost record."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine() or "cpu"
    return f"cpu:{name} ({torch.get_num_threads()} threads)"


class MetricMeter:
    """Running means of scalar metrics, kept as tensors (no device sync until :meth:`means`)."""

    def __init__(self) -> None:
        self._sums: Dict[str, Tensor] = {}
        self._counts: Dict[str, int] = {}

    def update(self, metrics: Mapping[str, Tensor], weight: int = 1) -> None:
        """Add one observation of each metric, weighted by ``weight`` (the batch size)."""
        for key, value in metrics.items():
            value = value.detach().float() * weight
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + weight

    def means(self) -> Dict[str, float]:
        """The mean of each metric."""
        return {key: float(total) / self._counts[key] for key, total in sorted(self._sums.items())}

    def state_dict(self) -> Dict[str, Any]:
        """The partial sums and counts (for a checkpoint inside an epoch)."""
        return {"sums": {k: v.detach().cpu().clone() for k, v in self._sums.items()}, "counts": dict(self._counts)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: Optional[torch.device] = None) -> "MetricMeter":
        """A meter that continues from :meth:`state_dict`'s sums and counts (bit for bit)."""
        meter = cls()
        meter._sums = {k: v.to(device) if device is not None else v for k, v in state["sums"].items()}
        meter._counts = {k: int(v) for k, v in state["counts"].items()}
        return meter


class RunFolder:
    """``runs/<name>/``: ``log.txt``, tensorboardX events and JSON files.

    Args:
        path: the folder (created if missing).
        logger_name: name of the :mod:`logging` logger that also writes to ``log.txt``.
        enabled: ``False`` on the non-zero ranks of a data-parallel run: nothing is written or
            printed, and :attr:`writer` must not be used.
    """

    def __init__(self, path: os.PathLike[str] | str, logger_name: str = "rnasframe", enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.logger = logging.getLogger(f"{logger_name}.{self.path.resolve()}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self._writer: Optional[Any] = None
        self._handlers: list = []
        if not enabled:
            self.logger.disabled = True
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.logger.disabled = False
        self._handlers = [logging.FileHandler(self.path / "log.txt"), logging.StreamHandler()]
        formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in self._handlers:
            handler.setFormatter(formatter)
            self.logger.addHandler(handler)

    @property
    def writer(self) -> Any:
        """The :class:`tensorboardX.SummaryWriter` of this folder (opened on first use)."""
        if not self.enabled:
            raise RuntimeError("this RunFolder is disabled (a non-zero rank); it has no event writer")
        if self._writer is None:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir=str(self.path))
        return self._writer

    def log(self, message: str) -> None:
        """Write ``message`` to ``log.txt`` and the console."""
        self.logger.info(message)

    def scalars(self, metrics: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Log scalar metrics to tensorboardX at ``step``."""
        if not self.enabled:
            return
        for key, value in metrics.items():
            self.writer.add_scalar(f"{prefix}{key}", value, step)

    def write_json(self, name: str, payload: Any) -> Path:
        """Write ``payload`` to ``<folder>/<name>`` atomically and return the path."""
        path = self.path / name
        if self.enabled:
            write_json_atomic(path, payload)
        return path

    def close(self) -> None:
        """Flush and close the event file and the log handlers."""
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        for handler in self._handlers:
            handler.flush()
            handler.close()
            self.logger.removeHandler(handler)
        self._handlers = []
