"""NAS-Bench-201 genotypes: the operations, the edge order, the architecture string and derivation.

A NAS-Bench-201 cell (Dong & Yang, 2020) is a complete DAG on 4 nodes: node ``i`` is the sum over
``j < i`` of ``op(node j)``, node 0 is the cell input and node 3 its output. Its 6 edges, in the
order of the rows of the supernet's alpha (NAS-Bench-201's sorted ``"i<-j"`` keys), are
``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``. A :class:`NasBench201Genotype` names one operation per edge and is
written as NAS-Bench-201's architecture string, one ``|op~j|`` group per input of a node, the
nodes joined by ``+``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Sequence, Tuple

import attrs
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "OPERATIONS",
    "EDGES",
    "NODES",
    "NasBench201Genotype",
    "parse_architecture",
    "genotype_to_dict",
    "genotype_from_dict",
    "genotype_from_text",
    "derive_genotype",
]

#: The candidate operations of every edge, in the order of the columns of alpha.
OPERATIONS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: Number of nodes of a cell: the input (0), two intermediate nodes and the output (3).
NODES = 4

#: The edges ``(target, source)`` in the order of the rows of alpha and of
#: ``NasBench201Genotype.operations``.
EDGES: Tuple[Tuple[int, int], ...] = tuple((i, j) for i in range(1, NODES) for j in range(i))

_FORMAT = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"


def _check_operations(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, tuple) or len(value) != len(EDGES):
        raise ValueError(
            f"NasBench201Genotype.operations must be a tuple of {len(EDGES)} operation names (edges "
            f"{', '.join(f'{i}<-{j}' for i, j in EDGES)}), got {value!r}"
        )
    for edge, name in zip(EDGES, value):
        if name not in OPERATIONS:
            raise ValueError(
                f"unknown operation {name!r} on edge {edge[0]}<-{edge[1]}; allowed: {', '.join(OPERATIONS)}"
            )


def _list_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@attrs.frozen
class NasBench201Genotype:
    """One NAS-Bench-201 cell: the operation of each of the 6 edges, in :data:`EDGES` order.

    ``str(genotype)`` is NAS-Bench-201's architecture string; :func:`parse_architecture` is its
    inverse. Build one from a string with ``NasBench201Genotype.from_string(text)``.

    Args:
        operations: 6 names from :data:`OPERATIONS`, for edges ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``.
    """

    operations: Tuple[str, ...] = attrs.field(converter=_list_to_tuple, validator=_check_operations)

    @classmethod
    def from_string(cls, text: str) -> "NasBench201Genotype":
        """Parse NAS-Bench-201's architecture string (see :func:`parse_architecture`)."""
        return parse_architecture(text)

    def edges(self) -> Tuple[Tuple[int, int, str], ...]:
        """Return ``(target, source, operation)`` for every edge, in :data:`EDGES` order."""
        return tuple((i, j, op) for (i, j), op in zip(EDGES, self.operations))

    def __str__(self) -> str:
        groups = []
        for target in range(1, NODES):
            ops = [f"{op}~{j}" for (i, j), op in zip(EDGES, self.operations) if i == target]
            groups.append("|" + "|".join(ops) + "|")
        return "+".join(groups)


def parse_architecture(text: str) -> NasBench201Genotype:
    """Parse NAS-Bench-201's architecture string into a :class:`NasBench201Genotype`.

    Args:
        text: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` with names from :data:`OPERATIONS`; node
            ``i``'s group lists its inputs ``0 .. i-1`` (in any order, each once).

    Raises:
        TypeError: ``text`` is not a string.
        ValueError: a wrong number of nodes or edges, an unknown operation, or a bad input index.
    """
    if not isinstance(text, str):
        raise TypeError(f"a NAS-Bench-201 architecture string must be a str, got {type(text).__name__}: {text!r}")
    stripped = text.strip()
    groups = stripped.split("+")
    if len(groups) != NODES - 1:
        raise ValueError(
            f"architecture string {text!r} has {len(groups)} node group(s) separated by '+'; "
            f"NAS-Bench-201 needs {NODES - 1}: {_FORMAT}"
        )
    chosen: Dict[Tuple[int, int], str] = {}
    for target, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise ValueError(f"node {target} group {group!r} of {text!r} must look like '|op~j|...|': {_FORMAT}")
        items = group[1:-1].split("|")
        if len(items) != target:
            raise ValueError(
                f"node {target} of {text!r} has {len(items)} edge(s) ({group!r}); it needs exactly "
                f"{target}, one from each of nodes {list(range(target))}"
            )
        for item in items:
            name, sep, index_text = item.rpartition("~")
            if not sep:
                raise ValueError(
                    f"edge {item!r} of node {target} in {text!r} must be 'op~input', e.g. 'nor_conv_3x3~0'"
                )
            if name not in OPERATIONS:
                raise ValueError(
                    f"unknown operation {name!r} in {text!r}; allowed: {', '.join(OPERATIONS)}"
                )
            if not index_text.isdigit() or int(index_text) >= target:
                raise ValueError(
                    f"bad input index {index_text!r} of edge {item!r} into node {target} in {text!r}; "
                    f"allowed: {', '.join(str(j) for j in range(target))}"
                )
            source = int(index_text)
            if (target, source) in chosen:
                raise ValueError(
                    f"input {source} appears twice in node {target} of {text!r}; each of nodes "
                    f"{list(range(target))} must appear once"
                )
            chosen[(target, source)] = name
    return NasBench201Genotype(tuple(chosen[edge] for edge in EDGES))


def genotype_to_dict(genotype: NasBench201Genotype) -> Dict[str, Any]:
    """Return ``{"arch_str": str(genotype)}``, the JSON form (``genotype.json``) of a cell."""
    if not isinstance(genotype, NasBench201Genotype):
        raise TypeError(f"expected a NAS-Bench-201 NasBench201Genotype, got {type(genotype).__name__}: {genotype!r}")
    return {"arch_str": str(genotype)}


def genotype_from_dict(data: Mapping[str, Any]) -> NasBench201Genotype:
    """Inverse of :func:`genotype_to_dict`: read ``data["arch_str"]``.

    Raises:
        ValueError: ``data`` is not a mapping with exactly the key ``arch_str``, or the string is invalid.
    """
    if not isinstance(data, Mapping) or set(data) != {"arch_str"}:
        raise ValueError(
            f"a NAS-Bench-201 genotype dict must be {{'arch_str': '<architecture string>'}}, got {data!r}"
        )
    return parse_architecture(data["arch_str"])


def genotype_from_text(text: str) -> NasBench201Genotype:
    """Read an architecture string or the JSON text of :func:`genotype_to_dict` (or a bare JSON string).

    Raises:
        ValueError: neither form parses; the message says what is allowed.
    """
    stripped = text.strip() if isinstance(text, str) else text
    if isinstance(stripped, str) and stripped[:1] in ("{", '"'):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"genotype text {text!r} looks like JSON but does not parse: {error}") from None
        return parse_architecture(data) if isinstance(data, str) else genotype_from_dict(data)
    return parse_architecture(stripped)


def derive_genotype(alpha: Tensor | np.ndarray | Sequence[Sequence[float]]) -> NasBench201Genotype:
    """NAS-Bench-201's DARTS derivation: on every edge, the operation of largest alpha.

    The argmax runs over all five :data:`OPERATIONS`, ``none`` included (unlike DARTS' own space,
    which excludes ``none``); ties go to the first operation in :data:`OPERATIONS` order, as
    ``torch.argmax`` does. softmax is monotone, so alpha or softmax(alpha) give the same result.

    Args:
        alpha: shape ``(6, 5)`` (edges in :data:`EDGES` order x :data:`OPERATIONS`).

    Raises:
        ValueError: wrong shape or non-finite values.
    """
    weights = torch.as_tensor(np.asarray(alpha.detach().cpu() if isinstance(alpha, Tensor) else alpha,
                                         dtype=np.float64))
    expected = (len(EDGES), len(OPERATIONS))
    if tuple(weights.shape) != expected:
        raise ValueError(f"alpha must have shape {expected} (edges x operations), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all():
        raise ValueError(f"alpha must be finite, got {weights.tolist()}")
    return NasBench201Genotype(tuple(OPERATIONS[int(k)] for k in weights.argmax(dim=1)))
