"""DARTS genotypes: the discrete cells, the published ones, validation, JSON form and derivation.

A :class:`Genotype` is exactly DARTS' format: ``normal`` and ``reduce`` list two
``(op_name, input_index)`` pairs per intermediate node (node ``i`` may read the two cell inputs,
indices 0 and 1, and the earlier nodes ``2 .. i + 1``); ``normal_concat`` / ``reduce_concat`` list
the nodes whose outputs are concatenated into the cell output (``[2, 3, 4, 5]`` for 4 nodes).
"""

from __future__ import annotations

import ast
import json
from collections import namedtuple
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PRIMITIVES",
    "Genotype",
    "DARTS_V1",
    "DARTS_V2",
    "DARTS",
    "by_name",
    "PUBLISHED",
    "parse_genotype",
    "num_edges",
    "validate_genotype",
    "genotype_to_dict",
    "genotype_from_dict",
    "derive_genotype",
]

#: The candidate operations of every edge, in the order of the columns of the alphas.
PRIMITIVES: List[str] = [
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
]

_NONE_INDEX = PRIMITIVES.index("none")

#: A discrete DARTS architecture (the same namedtuple as DARTS' ``genotypes.Genotype``).
Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")

#: The cells found by first-order DARTS (Liu et al., 2019).
DARTS_V1 = Genotype(
    normal=[
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: The cells found by second-order DARTS (the paper's 2.76% CIFAR-10 model, 3.3M parameters).
DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: Alias of :data:`DARTS_V2`, as in DARTS' code.
DARTS = DARTS_V2

#: The published genotypes by name.
PUBLISHED: Mapping[str, Genotype] = {"DARTS": DARTS, "DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2}
_KNOWN = PUBLISHED

_DICT_KEYS = ("normal", "normal_concat", "reduce", "reduce_concat")


def by_name(name: str) -> Genotype:
    """Return a published genotype by its name.

    Args:
        name: ``"DARTS_V1"``, ``"DARTS_V2"`` or ``"DARTS"`` (same as ``"DARTS_V2"``).

    Returns:
        The genotype.

    Raises:
        ValueError: if ``name`` is unknown; the message lists the valid names.
    """
    if name not in _KNOWN:
        raise ValueError(f"unknown genotype name {name!r}; valid names: {', '.join(sorted(_KNOWN))}")
    return _KNOWN[name]


def num_edges(steps: int) -> int:
    """Return the number of mixed edges of a cell with ``steps`` intermediate nodes (14 for 4)."""
    return sum(2 + i for i in range(steps))


def _check_cell(
    genotype_field: str, edges: Any, steps: Optional[int]
) -> Tuple[List[Tuple[str, int]], int]:
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise ValueError(
            f"genotype.{genotype_field} must be a list of (op_name, input_index) pairs, got {edges!r}"
        )
    if len(edges) == 0 or len(edges) % 2 != 0:
        raise ValueError(
            f"genotype.{genotype_field} must list 2 (op_name, input_index) pairs per intermediate "
            f"node (an even, positive number), got {len(edges)} pairs"
        )
    cell_steps = len(edges) // 2
    if steps is not None and cell_steps != steps:
        raise ValueError(
            f"genotype.{genotype_field} has {cell_steps} intermediate nodes ({len(edges)} pairs), "
            f"but the space has steps={steps} ({2 * steps} pairs)"
        )
    checked: List[Tuple[str, int]] = []
    for position, pair in enumerate(edges):
        where = f"genotype.{genotype_field}[{position}]"
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{where} must be an (op_name, input_index) pair, got {pair!r}")
        op_name, index = pair
        if not isinstance(op_name, str) or op_name not in PRIMITIVES:
            raise ValueError(
                f"{where} has unknown operation {op_name!r}; allowed: {', '.join(PRIMITIVES)}"
            )
        node = position // 2
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < node + 2:
            raise ValueError(
                f"{where} reads input {index!r}, but intermediate node {node} can only read "
                f"0..{node + 1} (0 and 1 are the cell inputs, 2.. the earlier nodes)"
            )
        checked.append((op_name, index))
    return checked, cell_steps


def _check_concat(genotype_field: str, concat: Any, steps: int) -> List[int]:
    if isinstance(concat, (str, bytes)) or not isinstance(concat, Sequence) or not concat:
        raise ValueError(
            f"genotype.{genotype_field} must be a non-empty list of node indices, got {concat!r}"
        )
    for index in concat:
        if isinstance(index, bool) or not isinstance(index, int) or not 2 <= index < steps + 2:
            raise ValueError(
                f"genotype.{genotype_field} contains {index!r}; allowed node indices with "
                f"{steps} intermediate nodes: 2..{steps + 1}"
            )
    return list(concat)


def validate_genotype(genotype: Any, steps: Optional[int] = None) -> Genotype:
    """Check a genotype and return it in canonical form (lists of tuples, concat as lists).

    Args:
        genotype: a :class:`Genotype` (or any 4-tuple in its field order).
        steps: the number of intermediate nodes it must have; ``None`` accepts any number, as long
            as the normal and reduction cells agree.

    Returns:
        An equal :class:`Genotype` whose cells are lists of ``(str, int)`` tuples and whose concat
        fields are lists.

    Raises:
        ValueError: naming the bad field, value and what is allowed, for unknown operations, input
            indices out of range, concat indices out of range or a wrong number of nodes.
    """
    if not isinstance(genotype, tuple) or len(genotype) != 4:
        raise ValueError(
            f"expected a Genotype(normal, normal_concat, reduce, reduce_concat), got {genotype!r}"
        )
    normal, normal_concat, reduce, reduce_concat = genotype
    normal_edges, normal_steps = _check_cell("normal", normal, steps)
    reduce_edges, reduce_steps = _check_cell("reduce", reduce, steps)
    if normal_steps != reduce_steps:
        raise ValueError(
            f"genotype.normal has {normal_steps} intermediate nodes but genotype.reduce has "
            f"{reduce_steps}; both cells must have the same number"
        )
    return Genotype(
        normal=normal_edges,
        normal_concat=_check_concat("normal_concat", normal_concat, normal_steps),
        reduce=reduce_edges,
        reduce_concat=_check_concat("reduce_concat", reduce_concat, reduce_steps),
    )


def genotype_to_dict(genotype: Genotype) -> Dict[str, Any]:
    """Return a JSON-serializable dict of ``genotype``.

    Args:
        genotype: a valid genotype.

    Returns:
        ``{"normal": [[op, index], ...], "normal_concat": [...], "reduce": ..., "reduce_concat": ...}``.
    """
    checked = validate_genotype(genotype)
    return {
        "normal": [[op, index] for op, index in checked.normal],
        "normal_concat": list(checked.normal_concat),
        "reduce": [[op, index] for op, index in checked.reduce],
        "reduce_concat": list(checked.reduce_concat),
    }


def genotype_from_dict(data: Mapping[str, Any], steps: Optional[int] = None) -> Genotype:
    """Inverse of :func:`genotype_to_dict`, with validation.

    Args:
        data: a mapping with exactly the keys ``normal``, ``normal_concat``, ``reduce`` and
            ``reduce_concat``.
        steps: the number of intermediate nodes the genotype must have (``None``: any).

    Returns:
        The genotype, cells as lists of ``(op_name, input_index)`` tuples.

    Raises:
        ValueError: for missing or unknown keys and for any invalid content (see
            :func:`validate_genotype`).
    """
    if not isinstance(data, Mapping):
        raise ValueError(
            f"a genotype dict must be a mapping with keys {list(_DICT_KEYS)}, got {data!r}"
        )
    missing = [key for key in _DICT_KEYS if key not in data]
    unknown = sorted(str(key) for key in data if key not in _DICT_KEYS)
    if missing or unknown:
        raise ValueError(
            f"a genotype dict needs exactly the keys {list(_DICT_KEYS)}; missing {missing}, "
            f"unknown {unknown}"
        )
    return validate_genotype(tuple(data[key] for key in _DICT_KEYS), steps=steps)


def _parse_cell(weights: List[List[float]], steps: int) -> List[Tuple[str, int]]:
    """DARTS' ``_parse``: the 2 strongest incoming edges of each node and their best real op."""

    def strength(row: List[float]) -> float:
        return max(w for k, w in enumerate(row) if k != _NONE_INDEX)

    gene: List[Tuple[str, int]] = []
    start = 0
    for node in range(steps):
        rows = weights[start : start + node + 2]
        edges = sorted(range(node + 2), key=lambda j: -strength(rows[j]))[:2]
        for j in edges:
            best = None
            for k, w in enumerate(rows[j]):
                if k != _NONE_INDEX and (best is None or w > rows[j][best]):
                    best = k
            assert best is not None
            gene.append((PRIMITIVES[best], j))
        start += node + 2
    return gene


def _softmax_rows(
    name: str, alphas: Union[Tensor, Sequence[Sequence[float]]], steps: int
) -> List[List[float]]:
    tensor = alphas.detach() if isinstance(alphas, Tensor) else torch.as_tensor(alphas)
    if not tensor.is_floating_point():
        tensor = tensor.float()
    expected = (num_edges(steps), len(PRIMITIVES))
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"{name} must have shape {expected} (edges of a {steps}-node cell x primitives), "
            f"got {tuple(tensor.shape)}"
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains non-finite values")
    return F.softmax(tensor.cpu(), dim=-1).tolist()


def derive_genotype(
    alphas_normal: Union[Tensor, Sequence[Sequence[float]]],
    alphas_reduce: Union[Tensor, Sequence[Sequence[float]]],
    steps: int = 4,
    multiplier: Optional[int] = None,
) -> Genotype:
    """Derive the discrete genotype from architecture parameters, exactly as DARTS does.

    Each alpha row is softmaxed. For intermediate node ``i``, the two incoming edges with the
    largest strongest-non-``none`` weight are kept, in that order (ties keep the lower input
    index first, as Python's stable sort in DARTS' ``_parse``), each with its strongest
    non-``none`` operation.

    Args:
        alphas_normal: ``(num_edges(steps), len(PRIMITIVES))`` logits of the normal cell (the
            rows of node 0's edges first, then node 1's, ...), columns in :data:`PRIMITIVES` order.
        alphas_reduce: the same for the reduction cell.
        steps: number of intermediate nodes.
        multiplier: number of last nodes concatenated into the cell output (default ``steps``).

    Returns:
        The genotype, with ``concat = list(range(2 + steps - multiplier, steps + 2))``.

    Raises:
        ValueError: if a shape does not match ``steps`` or an alpha is not finite.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"derive_genotype: steps must be an integer >= 1, got {steps!r}")
    multiplier = steps if multiplier is None else multiplier
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not 1 <= multiplier <= steps:
        raise ValueError(
            f"derive_genotype: multiplier must be an integer in 1..{steps}, got {multiplier!r}"
        )
    normal = _parse_cell(_softmax_rows("alphas_normal", alphas_normal, steps), steps)
    reduce = _parse_cell(_softmax_rows("alphas_reduce", alphas_reduce, steps), steps)
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=list(concat))



def _literal(node: ast.expr) -> Any:
    """A Python literal, or ``range(a[, b])`` as DARTS writes concatenated nodes, from an AST node."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" and not node.keywords:
        return list(range(*(ast.literal_eval(arg) for arg in node.args)))
    return ast.literal_eval(node)


def parse_genotype(text: str, steps: Optional[int] = None) -> Genotype:
    """Read a genotype from text: a published name, the JSON form, or ``Genotype(...)`` as DARTS prints it.

    Args:
        text: ``"DARTS_V2"`` (see :data:`PUBLISHED`), the JSON text of :func:`genotype_to_dict`, or
            ``"Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)"``, the
            ``repr`` of a :class:`Genotype` as DARTS' logs show it (evaluated as literals, never run).
        steps: the number of intermediate nodes the genotype must have (``None``: any).

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or unreadable/invalid text.
    """
    if not isinstance(text, str):
        raise ValueError(f"a genotype text must be a str, got {type(text).__name__}")
    text = text.strip()
    if text in PUBLISHED:
        return validate_genotype(PUBLISHED[text], steps=steps)
    if text.startswith("{"):
        try:
            return genotype_from_dict(json.loads(text), steps=steps)
        except json.JSONDecodeError as error:
            raise ValueError(f"genotype JSON text is not valid JSON: {error}") from None
    if text.startswith("Genotype("):
        expected = (f"cannot read {text[:60]!r}: expected Genotype(normal=[...], normal_concat=[...], reduce=[...], "
                    f"reduce_concat=[...]) with literal values")
        try:
            call = ast.parse(text, mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                raise ValueError(expected)
            fields = {str(keyword.arg): _literal(keyword.value) for keyword in call.keywords}
        except (SyntaxError, ValueError, TypeError):
            raise ValueError(expected) from None
        return genotype_from_dict(fields, steps=steps)
    raise ValueError(
        f"unknown genotype {text!r}; known names: {', '.join(PUBLISHED)}; or the JSON form "
        f"({{\"normal\": [[op, input], ...], ...}}) or Genotype(normal=[...], ...) as DARTS prints it"
    )
