"""Context managers that protect a model's state while something else uses it.

The inner maximization of RNAS-max (and every attack in evaluation) runs the model many times on
inputs that are not training data. These helpers guarantee that such passes leave no trace in the
model: no gradient in weights or architecture parameters, unchanged ``requires_grad`` flags, the
same train/eval mode on every submodule, and unchanged buffers (BatchNorm running statistics).

They run around every perturbation call, so they cost no tensor operator on the models rnasframe
builds: BatchNorm layers stop tracking running statistics for the duration of the block (an
attribute flip per layer; nothing is written, so nothing needs saving), and the buffers of module
types declared with :func:`read_only_buffers` (such as :class:`~rnasframe.modules.Normalize`) are
left alone. Only the buffers of other modules, which a forward pass might write, are saved and
restored. :func:`strict_buffer_checks` (a debugging aid; the conformance kit's checks do the same)
compares every buffer after the block and names the first one that changed.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List, Set, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = ["preserved_buffers", "input_gradients_only", "read_only_buffers", "strict_buffer_checks"]

_READ_ONLY_TYPES: Set[type] = set()
_STRICT = [os.environ.get("RNASFRAME_STRICT_BUFFERS", "") not in ("", "0")]


def read_only_buffers(cls: Type[nn.Module]) -> Type[nn.Module]:
    """Class decorator: declare that ``cls``'s forward pass never writes the module's own buffers.

    The guards then neither save nor restore them (constants such as a normalization's mean are
    the typical case). The declaration covers ``cls`` itself, not its subclasses, whose forward
    may differ. :func:`strict_buffer_checks` verifies a declaration.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"read_only_buffers decorates torch.nn.Module subclasses, got {cls!r}")
    _READ_ONLY_TYPES.add(cls)
    return cls


@contextlib.contextmanager
def strict_buffer_checks(enabled: bool = True) -> Iterator[None]:
    """Within the block, the guards also compare every buffer on exit (a debugging aid).

    A buffer that changed raises :class:`RuntimeError` naming it, its module's type and how to
    fix it. This copies and compares every buffer, with one host synchronization each, so it is
    off by default; set the environment variable ``RNASFRAME_STRICT_BUFFERS=1`` to turn it on
    for a whole process.
    """
    previous = _STRICT[0]
    _STRICT[0] = bool(enabled)
    try:
        yield
    finally:
        _STRICT[0] = previous


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._NormBase)


def _submodules(model: nn.Module) -> List[nn.Module]:
    """``list(model.modules())`` (the same modules, each once), without building their names.

    Walked afresh on every call: a cached list would miss modules added since (containers such
    as ``nn.ModuleList.insert`` add them without any hook that could invalidate a cache).
    """
    found, seen, index = [model], {id(model)}, 0
    while index < len(found):
        for child in found[index]._modules.values():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                found.append(child)
        index += 1
    return found


def _writable_buffers(modules: List[nn.Module]) -> List[Tensor]:
    """Buffers a guarded forward pass might write: those of modules that are neither norms nor read-only."""
    return [
        buffer
        for module in modules
        if module._buffers and not _is_norm(module) and type(module) not in _READ_ONLY_TYPES
        for buffer in module._buffers.values()
        if buffer is not None
    ]


@contextlib.contextmanager
def _frozen_buffers(modules: List[nn.Module]) -> Iterator[None]:
    norms = [m for m in modules if _is_norm(m) and m.track_running_stats]
    saved = [(buffer, buffer.detach().clone()) for buffer in _writable_buffers(modules)]
    strict = None
    if _STRICT[0]:
        strict = [
            (type(m).__name__, name, b, b.detach().clone())
            for m in modules for name, b in m._buffers.items() if b is not None
        ]
    try:
        for module in norms:  # a plain attribute: object.__setattr__ skips nn.Module's slow checks
            object.__setattr__(module, "track_running_stats", False)
        yield
    finally:
        for module in norms:
            object.__setattr__(module, "track_running_stats", True)
        if saved:
            with torch.no_grad():
                # Restored unconditionally: comparing first would synchronize with the device.
                for buffer, copy in saved:
                    buffer.copy_(copy)
        if strict is not None:
            _compare(strict)


def _compare(snapshot: List[Tuple[str, str, Tensor, Tensor]]) -> None:
    for kind, name, buffer, before in snapshot:
        if not torch.equal(buffer, before):
            raise RuntimeError(
                f"buffer {name!r} of a {kind} changed inside a guarded block; a module whose forward "
                f"pass writes its buffers must not be declared with read_only_buffers (norm layers "
                f"must keep track_running_stats switched off while guarded)"
            )


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Leave every buffer of ``model`` (BatchNorm running statistics included) as it was.

    Forward passes inside the block may use batch statistics (train mode) and so compute exactly
    the function the outer loss sees, but they do not update running statistics: norm layers
    stop tracking them for the duration of the block (nothing is written, so tensors that an
    enclosing autograd graph saved stay valid). Buffers of modules declared with
    :func:`read_only_buffers` are not touched; any other buffer is restored on exit. On the
    models rnasframe builds this costs no tensor operator.
    """
    with _frozen_buffers(_submodules(model)):
        yield


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Run a block in which autograd can differentiate with respect to inputs only.

    On entry every parameter of ``model`` gets ``requires_grad=False`` (so backward passes compute
    no weight or architecture gradients, which is also faster); on exit, even on an exception, the
    flags, each submodule's train/eval mode and all buffers are restored (as
    :func:`preserved_buffers` does). The mode is *not* changed: a model in train mode keeps using
    batch statistics, so the function maximized is the one the outer loss is computed with.
    """
    modules = _submodules(model)  # one walk serves the flags, the modes and the buffers
    trainable = [p for m in modules for p in m._parameters.values() if p is not None and p.requires_grad]
    modes = [m.training for m in modules]
    with _frozen_buffers(modules):
        try:
            for parameter in trainable:
                parameter.requires_grad_(False)
            with torch.enable_grad():
                yield
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)
            for module, training in zip(modules, modes):
                if module.training != training:  # writes only what the block changed
                    module.training = training
