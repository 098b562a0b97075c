"""The exactness contract of a run: deterministic kernels and the TF32 policy, in one switch.

:class:`Exactness` is applied by the run lifecycle (:class:`~rnasframe.run.Run`) around every
search and training run, and restores torch's global flags when the run ends:

* ``deterministic`` sets ``torch.use_deterministic_algorithms`` (an operation without a
  deterministic kernel then raises instead of silently varying), cuDNN's ``deterministic`` flag
  with ``benchmark`` off (no timing-based algorithm choice), and, on CUDA, the
  ``CUBLAS_WORKSPACE_CONFIG`` that cuBLAS needs to reduce in a fixed order. Default: on for the
  CPU (it costs nothing measurable there), off on CUDA, where deterministic cuDNN algorithms and
  the absence of autotuning can cost time (``benchmarks/gpu_check.sh`` measures it on the card
  at hand); bind ``Exactness.deterministic = True`` for bit-exact GPU runs.
* ``tf32`` lets CUDA's float32 matrix products and convolutions run on TF32 tensor cores (10-bit
  mantissa products). Off by default: the architecture gradients of a search are small
  differences of large terms, and torch's own default turns TF32 on for convolutions.

``docs/exactness.md`` states what is bit-exact where.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Optional

import attrs
import gin
import torch

from rnasframe import validation

__all__ = ["CUBLAS_WORKSPACE", "Exactness", "prepare_cublas"]

#: The cuBLAS workspace setting that makes cuBLAS deterministic (8 buffers of 4 MiB, as torch documents).
CUBLAS_WORKSPACE = ":4096:8"
_DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")


def prepare_cublas() -> Optional[str]:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` to :data:`CUBLAS_WORKSPACE` unless it already holds a deterministic value.

    cuBLAS reads the variable when torch creates its first handle, so it must be set before the
    process' first CUDA matrix product. Returns a note (for the run's log) when CUDA is already
    initialized and the variable was missing or different: this process may have created its
    cuBLAS handle already, and its products may then not be reproducible; ``None`` otherwise.
    """
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current in _DETERMINISTIC_WORKSPACES:
        return None
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    if torch.cuda.is_initialized():
        return (
            f"deterministic mode set CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} after CUDA was initialized "
            f"(it was {current!r}); for reproducible matrix products export it before starting Python"
        )
    return None


@gin.configurable
@attrs.define(frozen=True)
class Exactness:
    """Deterministic kernels and TF32, applied around a run (see the module docstring).

    Attributes:
        deterministic: use deterministic algorithms only; ``None``: on for the CPU, off on CUDA.
        tf32: allow TF32 in CUDA float32 matrix products and convolutions.
    """

    deterministic: Optional[bool] = attrs.field(default=None, validator=attrs.validators.optional(validation.boolean))
    tf32: bool = attrs.field(default=False, validator=validation.boolean)

    def deterministic_on(self, device: torch.device) -> bool:
        """Whether deterministic algorithms are used for a run on ``device``."""
        if self.deterministic is None:
            return device.type == "cpu"
        return self.deterministic

    @contextlib.contextmanager
    def applied(self, device: torch.device) -> Iterator[List[str]]:
        """Set torch's flags for a run on ``device``; restore them on exit.

        Yields:
            Notes for the run's log (empty when everything could be set as asked).
        """
        deterministic = self.deterministic_on(device)
        saved = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
        )
        notes: List[str] = []
        if deterministic and device.type == "cuda":
            note = prepare_cublas()
            if note:
                notes.append(note)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic = deterministic
        if deterministic:
            torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32
        try:
            yield notes
        finally:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
            torch.backends.cudnn.deterministic = saved[2]
            torch.backends.cudnn.benchmark = saved[3]
            torch.backends.cuda.matmul.allow_tf32 = saved[4]
            torch.backends.cudnn.allow_tf32 = saved[5]

    def describe(self, device: torch.device) -> str:
        """One line for the run's log: the mode and the TF32 policy on ``device``."""
        mode = "deterministic" if self.deterministic_on(device) else "nondeterministic (fastest) kernels"
        return f"exactness: {mode}, TF32 {'on' if self.tf32 else 'off'}"
