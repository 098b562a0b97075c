"""Context managers that protect a model's state while something else uses it.

The inner maximization of RNAS-max (and every attack in evaluation) runs the model many times on
inputs that are not training data. These helpers guarantee that such passes leave no trace in the
model: no gradient in weights or architecture parameters, unchanged ``requires_grad`` flags, the
same train/eval mode on every submodule, and unchanged buffers (BatchNorm running statistics).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

__all__ = ["preserved_buffers", "input_gradients_only"]


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Leave every buffer of ``model`` (BatchNorm running statistics included) as it was.

    Forward passes inside the block may use batch statistics (train mode) and so compute exactly
    the function the outer loss sees, but they do not update running statistics: BatchNorm layers
    stop tracking them for the duration of the block (nothing is written, so tensors that an
    enclosing autograd graph saved stay valid). Any other buffer a module changes in place is
    restored on exit.
    """
    norms = [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats
    ]
    # Tracking norms write nothing while tracking is off, so only the other buffers are saved;
    # they are restored unconditionally (comparing them first would synchronize with the device).
    untouched = {id(buffer) for module in norms for buffer in module.buffers(recurse=False)}
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers() if id(buffer) not in untouched]
    try:
        for module in norms:
            module.track_running_stats = False
        yield
    finally:
        for module in norms:
            module.track_running_stats = True
        with torch.no_grad():
            for buffer, copy in saved:
                buffer.copy_(copy)


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Run a block in which autograd can differentiate with respect to inputs only.

    On entry every parameter of ``model`` gets ``requires_grad=False`` (so backward passes compute
    no weight or architecture gradients, which is also faster); on exit, even on an exception, the
    flags, each submodule's train/eval mode and all buffers are restored. The mode is *not*
    changed: a model in train mode keeps using batch statistics, so the function maximized is the
    one the outer loss is computed with.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    with preserved_buffers(model):
        try:
            for parameter, _ in flags:
                parameter.requires_grad_(False)
            with torch.enable_grad():
                yield
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)
            for module, training in modes:
                module.training = training
