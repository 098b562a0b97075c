"""Conformance checks for search spaces: does a ``SearchSpace`` keep the contract the engine relies on?

:func:`check_search_space` builds the space's supernet and the network of its derived genotype on
a tiny batch and runs one named check per promise of :class:`~rnasframe.interfaces.SearchSpace`.
A broken promise raises :class:`~rnasframe.testing.ConformanceError` with one line naming the
space, the check and the offending value::

    from rnasframe.interfaces import InputSpec
    from rnasframe.testing import check_search_space

    check_search_space(MySpace(), input_spec=InputSpec((3, 8, 8)), num_classes=3)

It needs torch only (no pytest), runs on the CPU in seconds for a small space, and gives back
the global random generators as it found them.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.interfaces.search_space import (
    InputSpec,
    NetworkOutput,
    Picture,
    SearchSpace,
    Supernet,
    split_output,
)
from rnasframe.testing.conformance import ConformanceError, _restored_global_rngs

__all__ = ["SPACE_CHECKS", "check_search_space"]

#: The names of the checks :func:`check_search_space` runs, in order.
SPACE_CHECKS: Tuple[str, ...] = (
    "supernet forward/backward",
    "parameters",
    "alpha shapes",
    "genotype round trip",
    "network forward/backward",
    "set_epoch",
    "state_dict round trip",
    "save_pictures",
    "genotype_metrics",
)


class _BrokenPromiseError(Exception):
    """One broken promise, before the space's and the check's names are added."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise _BrokenPromiseError(message)


def _logits(output: Any, batch: int, num_classes: int, where: str) -> Tensor:
    try:
        logits, aux = split_output(output)
    except TypeError as error:
        raise _BrokenPromiseError(f"{where} {error}") from None
    for name, tensor in (("logits", logits), ("auxiliary logits", aux)):
        if tensor is None:
            continue
        _require(tuple(tensor.shape) == (batch, num_classes),
                 f"{where} gave {name} of shape {tuple(tensor.shape)}, expected {(batch, num_classes)}")
        _require(bool(torch.isfinite(tensor).all()), f"{where} gave non-finite {name}")
    return logits


def _logits_checked(output: Any, context: Dict[str, Any], where: str) -> Any:
    _logits(output, context["x"].shape[0], context["num_classes"], where)
    return output


def _loss(output: Any, labels: Tensor) -> Tensor:
    logits, aux = split_output(output)
    return F.cross_entropy(logits, labels) + (0.0 if aux is None else F.cross_entropy(aux, labels))


def _check_supernet(context: Dict[str, Any]) -> None:
    supernet, x, labels = context["supernet"], context["x"], context["labels"]
    _require(isinstance(supernet, Supernet), f"supernet() returned {type(supernet).__name__}, not a Supernet")
    supernet.train()
    _loss(_logits_checked(supernet(x), context, "the supernet"), labels).backward()
    for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
        _require(alpha.grad is not None and bool(torch.isfinite(alpha.grad).all()),
                 f"arch parameter {name!r} got no finite gradient from the supernet's loss")
    _require(any(p.grad is not None for p in supernet.weight_parameters()),
             "no weight parameter got a gradient from the supernet's loss")


def _check_parameters(context: Dict[str, Any]) -> None:
    supernet = context["supernet"]
    arch, weights = list(supernet.arch_parameters()), list(supernet.weight_parameters())
    arch_ids, weight_ids = {id(p) for p in arch}, {id(p) for p in weights}
    _require(len(arch_ids) == len(arch) and len(weight_ids) == len(weights),
             "arch_parameters() or weight_parameters() lists a parameter twice")
    _require(not arch_ids & weight_ids,
             f"{len(arch_ids & weight_ids)} parameter(s) are both arch and weight parameters")
    missing = [name for name, p in supernet.named_parameters() if id(p) not in arch_ids | weight_ids]
    _require(not missing, f"parameters {missing[:3]} are neither arch nor weight parameters")
    _require(len(arch_ids | weight_ids) == len(list(supernet.parameters())),
             "arch_parameters() + weight_parameters() hold tensors that are not parameters of the supernet")


def _check_alpha_shapes(context: Dict[str, Any]) -> None:
    supernet = context["supernet"]
    names, alphas, ops = list(supernet.arch_parameter_names), supernet.arch_parameters(), supernet.op_names
    _require(len(alphas) > 0, "arch_parameters() is empty")
    _require(len(names) == len(alphas) and len(set(names)) == len(names),
             f"arch_parameter_names {names!r} must name each of the {len(alphas)} arch parameters once")
    for name, alpha in zip(names, alphas):
        _require(isinstance(alpha, nn.Parameter) and alpha.dim() >= 1, f"arch parameter {name!r} is not a "
                 f"Parameter with at least one axis")
        if ops is not None:
            _require(alpha.shape[-1] == len(ops), f"arch parameter {name!r} has shape {tuple(alpha.shape)}, but "
                     f"op_names lists {len(ops)} operations for its last axis")


def _check_genotype(context: Dict[str, Any]) -> None:
    space, genotype = context["space"], context["supernet"].genotype()
    data = space.genotype_to_dict(genotype)
    try:
        text = json.dumps(data, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise _BrokenPromiseError(
            f"genotype_to_dict gave {data!r:.80}, which is not JSON-serializable ({error})"
        ) from None
    again = space.genotype_from_dict(json.loads(text))
    _require(json.dumps(space.genotype_to_dict(again), sort_keys=True) == text,
             f"genotype_from_dict(genotype_to_dict(g)) changed the genotype: {again!r:.80}")
    for form in (text, str(genotype)):
        try:
            resolved = space.resolve_genotype(form)
        except ValueError as error:
            _require(form != text, f"resolve_genotype rejected the JSON form {text!r:.80}: {error}")
            continue  # the space has no notation for str(genotype): allowed
        _require(json.dumps(space.genotype_to_dict(resolved), sort_keys=True) == text,
                 f"resolve_genotype({form!r:.60}) gave another genotype: {resolved!r:.80}")
    context["genotype"] = genotype


def _check_network(context: Dict[str, Any]) -> None:
    space, x, labels, classes = context["space"], context["x"], context["labels"], context["num_classes"]
    network = space.network(context["genotype"], classes, context["input_spec"])
    _require(isinstance(network, nn.Module), f"network() returned {type(network).__name__}, not an nn.Module")
    network.train()
    _loss(_logits_checked(network(x), context, "the network in train mode"), labels).backward()
    _require(any(p.grad is not None for p in network.parameters()), "no network parameter got a gradient")
    network.eval()
    with torch.no_grad():
        output = network(x)
    _require(isinstance(output, Tensor) and not isinstance(output, NetworkOutput),
             f"the network in eval mode returned {type(output).__name__}; attacks and metrics need a plain Tensor")
    _logits(output, x.shape[0], classes, "the network in eval mode")
    context["network"] = network


def _check_set_epoch(context: Dict[str, Any]) -> None:
    space, network = context["space"], context["network"]
    for epoch in (0, 1, 2):
        space.set_epoch(network, epoch, 3)
    network.train()
    _logits(network(context["x"]), context["x"].shape[0], context["num_classes"], "the network after set_epoch")


def _same_outputs(build: Callable[[], nn.Module], model: nn.Module, x: Tensor, what: str) -> None:
    fresh = build()
    fresh.load_state_dict(model.state_dict())
    model.eval()
    fresh.eval()
    with torch.no_grad():
        a, b = split_output(model(x))[0], split_output(fresh(x))[0]
    _require(torch.allclose(a, b, rtol=1e-5, atol=1e-6),
             f"a fresh {what} loaded with state_dict() computes other logits (max difference "
             f"{float((a - b).abs().max()):.3g})")


def _check_state_dict(context: Dict[str, Any]) -> None:
    space, x, spec, classes = context["space"], context["x"], context["input_spec"], context["num_classes"]
    _same_outputs(lambda: space.supernet(classes, spec), context["supernet"], x, "supernet")
    _same_outputs(lambda: space.network(context["genotype"], classes, spec), context["network"], x, "network")


def _check_pictures(context: Dict[str, Any]) -> None:
    supernet = context["supernet"]
    history = {name: [F.softmax(alpha.detach(), dim=-1).numpy()] * 2
               for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters())}
    with tempfile.TemporaryDirectory() as folder:
        pictures = context["space"].save_pictures(context["genotype"], history, folder)
        _require(isinstance(pictures, list), f"save_pictures returned {type(pictures).__name__}, not a list")
        tags: List[str] = []
        for picture in pictures:
            _require(isinstance(picture, Picture), f"save_pictures returned {picture!r:.60}, not a Picture")
            _require(bool(picture.tag) and picture.tag not in tags, f"picture tag {picture.tag!r} is empty or repeated")
            _require(picture.path.is_file() and picture.path.stat().st_size > 0,
                     f"picture {picture.tag!r}: {picture.path} is not a non-empty file")
            _require(Path(folder).resolve() in picture.path.resolve().parents,
                     f"picture {picture.tag!r}: {picture.path} is outside the folder {folder}")
            tags.append(picture.tag)


def _check_metrics(context: Dict[str, Any]) -> None:
    metrics = context["space"].genotype_metrics(context["genotype"])
    _require(isinstance(metrics, Mapping), f"genotype_metrics returned {type(metrics).__name__}, not a mapping")
    for key, value in metrics.items():
        _require(isinstance(key, str) and isinstance(value, (int, float)) and not isinstance(value, bool)
                 and math.isfinite(float(value)), f"genotype_metrics has {key!r}: {value!r}, not a finite float")


_CHECKS: Tuple[Callable[[Dict[str, Any]], None], ...] = (
    _check_supernet, _check_parameters, _check_alpha_shapes, _check_genotype, _check_network,
    _check_set_epoch, _check_state_dict, _check_pictures, _check_metrics,
)


def check_search_space(
    space: SearchSpace, input_spec: Optional[InputSpec] = None, num_classes: int = 3, batch_size: int = 2,
    seed: int = 0,
) -> None:
    """Run every check of :data:`SPACE_CHECKS` on ``space`` with one tiny random batch.

    The checks, in order: the supernet's forward and backward give finite logits of the right
    shape and a gradient for every arch parameter; arch and weight parameters are disjoint and
    cover the supernet's parameters; ``arch_parameter_names`` name them once and ``op_names``
    matches their last axis; the derived genotype survives ``genotype_to_dict`` -> JSON ->
    ``genotype_from_dict`` and ``resolve_genotype`` of its JSON text (and of ``str(genotype)``,
    where the space reads that); ``network(genotype)`` trains (a Tensor or a
    :class:`~rnasframe.interfaces.NetworkOutput`) and evaluates (a plain Tensor); ``set_epoch``
    accepts each epoch; supernet and network survive a ``state_dict`` round trip; ``save_pictures``
    returns :class:`~rnasframe.interfaces.Picture` objects of distinct tags whose files exist in
    the folder; ``genotype_metrics`` maps names to finite floats.

    Args:
        space: the search space to check.
        input_spec: the images to build for (default: ``InputSpec((3, 8, 8))``).
        num_classes: classes of the networks built.
        batch_size: images in the batch (at least 2, for BatchNorm in train mode).
        seed: seed of the parameters and of the batch.

    Raises:
        ConformanceError: ``"<Space> fails <check>: <what and which value>"``, at the first broken
            promise.
        ValueError: for a bad argument of this function.
    """
    if not isinstance(space, SearchSpace):
        raise ValueError(f"check_search_space needs a SearchSpace, got {type(space).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2 (BatchNorm in train mode), got {batch_size!r}")
    spec = input_spec if input_spec is not None else InputSpec((3, 8, 8))
    with _restored_global_rngs():
        torch.manual_seed(seed)
        context: Dict[str, Any] = {
            "space": space, "input_spec": spec, "num_classes": num_classes,
            "x": torch.rand((batch_size, *spec.shape)), "labels": torch.arange(batch_size) % num_classes,
        }
        for name, check in zip(SPACE_CHECKS, _CHECKS):
            try:
                if "supernet" not in context:
                    context["supernet"] = space.supernet(num_classes, spec)
                check(context)
            except _BrokenPromiseError as failure:
                raise ConformanceError(f"{type(space).__name__} fails {name}: {failure}") from None
            except Exception as error:  # any crash of the space is a failed check
                message = f"{type(error).__name__}: {error}".splitlines()[0]
                raise ConformanceError(f"{type(space).__name__} fails {name}: {message}") from error
