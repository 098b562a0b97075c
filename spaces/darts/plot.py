"""Pictures of DARTS cells and of the evolution of softmax(alpha), drawn with matplotlib.

A cell reads from left to right: inputs ``c_{k-2}``, ``c_{k-1}``, intermediate nodes in columns by
depth, output ``c_{k}``; every operation edge carries its name in its colour (:data:`OP_COLOURS`).
Figures are plain :class:`~matplotlib.figure.Figure` objects on the Agg canvas (never pyplot), so
drawing opens no window and leaves no global state.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import MaxNLocator

from rnasframe.spaces.darts.genotypes import Genotype, validate_genotype

__all__ = ["OP_COLOURS", "CELL_NAMES", "op_colour", "draw_cell", "save_cells", "plot_alpha_evolution",
           "save_alpha_evolution", "cell_to_dot"]

#: The colour of each DARTS operation, in pictures of cells and in alpha plots.
OP_COLOURS: Dict[str, str] = {
    "none": "#969696", "max_pool_3x3": "#1f77b4", "avg_pool_3x3": "#00a0af", "skip_connect": "#2ca02c",
    "sep_conv_3x3": "#d62728", "sep_conv_5x5": "#f07800", "dil_conv_3x3": "#9467bd", "dil_conv_5x5": "#8c564b",
}
#: The cells of a :class:`~rnasframe.spaces.darts.genotypes.Genotype` that can be drawn.
CELL_NAMES: Tuple[str, ...] = ("normal", "reduce")
_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}
_NODE_STYLE = {"input": ("#d9efd9", "#3c8c3c"), "node": ("#dbe8f7", "#3a6ea5"), "output": ("#f7eec0", "#a08c28")}
_INCHES = (2.7, 1.05)  # one column and one row of a cell picture
_SOURCES = {0: "c\u2096\u208b\u2082", 1: "c\u2096\u208b\u2081"}  # c_{k-2}, c_{k-1} in plain text (no mathtext: faster)
_LABEL_T = (0.5, 0.36, 0.64, 0.25, 0.75, 0.15, 0.85)  # where along an edge its name may sit, in order


def op_colour(op_name: str, index: int = 0) -> str:
    """Colour of ``op_name``: :data:`OP_COLOURS`, else matplotlib's ``tab10`` colour ``index``."""
    return OP_COLOURS.get(op_name, f"C{index % 10}")


def _cell(genotype: Genotype, cell: str) -> Tuple[List[Tuple[str, int]], List[int]]:
    """The edges and the concatenated nodes of one cell, validated."""
    if cell not in CELL_NAMES:
        raise ValueError(f"cell must be one of {', '.join(map(repr, CELL_NAMES))}, got {cell!r}")
    checked = validate_genotype(genotype)
    return getattr(checked, cell), getattr(checked, f"{cell}_concat")


def _node_name(node: int, output: int) -> str:
    return {0: "$c_{k-2}$", 1: "$c_{k-1}$", output: "$c_{k}$"}.get(node, str(node - 2))


def _layout(edges: Sequence[Tuple[str, int]], steps: int) -> Dict[int, Tuple[float, float]]:
    """Fixed positions: column = depth (inputs 0, output last), rows by the mean row of the inputs."""
    depth = {0: 0, 1: 0}
    for node in range(2, steps + 2):
        depth[node] = 1 + max(depth[j] for _, j in edges[2 * node - 4 : 2 * node - 2])
    position = {0: (0.0, 0.6), 1: (0.0, -0.6)}
    for column in range(1, max(depth.values()) + 1):
        nodes = [n for n in range(2, steps + 2) if depth[n] == column]
        centre = {n: float(np.mean([position[j][1] for _, j in edges[2 * n - 4 : 2 * n - 2]])) for n in nodes}
        nodes.sort(key=lambda n: (-centre[n], n))
        middle = float(np.mean(list(centre.values())))
        for row, n in enumerate(nodes):
            position[n] = (column + 0.4, middle + (len(nodes) - 1) / 2 - row)
    position[steps + 2] = (max(depth.values()) + 1.4, 0.0)
    return position


def _curve(start: Tuple[float, float], end: Tuple[float, float], bend: float) -> np.ndarray:
    """81 points of matplotlib's ``arc3`` connection (drawn in inches) from ``start`` to ``end``."""
    scale = np.asarray(_INCHES)
    p0, p1 = np.asarray(start) * scale, np.asarray(end) * scale
    control = (p0 + p1) / 2 + bend * np.array([p1[1] - p0[1], p0[0] - p1[0]])
    t = np.linspace(0.0, 1.0, 81)[:, None]
    return ((1 - t) ** 2 * p0 + 2 * t * (1 - t) * control + t**2 * p1) / scale


def _bend(start: Tuple[float, float], end: Tuple[float, float], others: List[Tuple[float, float]]) -> float:
    """The least bend of an edge that keeps it 0.4 inch clear of the nodes it does not join."""
    scale = np.asarray(_INCHES)
    clearance = {bend: min((np.hypot(*((_curve(start, end, bend) - node) * scale).T).min() for node in others),
                           default=9.0) for bend in (0.0, -0.2, 0.2, -0.35, 0.35, -0.5, 0.5)}
    return next((bend for bend, gap in clearance.items() if gap > 0.4), max(clearance, key=clearance.__getitem__))


def draw_cell(genotype: Genotype, cell: str = "normal", *, title: Optional[str] = None) -> Figure:
    """Draw one cell of a genotype: inputs on the left, the output on the right, named edges.

    Nodes sit at fixed places (columns by depth, rows by the mean row of their inputs); an edge
    bends only to pass clear of other nodes, and its name sits where it hides the fewest other edges.

    Args:
        genotype: a DARTS :class:`~rnasframe.spaces.darts.genotypes.Genotype` (any number of nodes).
        cell: ``"normal"`` or ``"reduce"``.
        title: text above the drawing; ``None``: ``"normal cell"`` / ``"reduction cell"``; ``""``: none.

    Raises:
        ValueError: for an unknown ``cell`` or an invalid genotype.
    """
    edges, concat = _cell(genotype, cell)
    steps, output = len(edges) // 2, len(edges) // 2 + 2
    position = _layout(edges, steps)
    links = [(j, 2 + i // 2, op) for i, (op, j) in enumerate(edges)] + [(n, output, None) for n in concat]
    bends = [_bend(position[a], position[b], [p for n, p in position.items() if n not in (a, b)]) for a, b, _ in links]
    curves = [_curve(position[a], position[b], bend) for (a, b, _), bend in zip(links, bends)]
    (left, low), (right, high) = np.min(np.concatenate(curves), axis=0), np.max(np.concatenate(curves), axis=0)
    figure = Figure(figsize=(_INCHES[0] * (right - left + 0.9), _INCHES[1] * (high - low + 1.1) + 0.4), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0 - 0.4 / figure.get_figheight()), xlim=(left - 0.45, right + 0.45),
                           ylim=(low - 0.55, high + 0.55))
    axes.set_axis_off()
    if title != "":
        figure.suptitle(_TITLES[cell] if title is None else title, x=0.02, ha="left", fontsize=13)
    taken: List[Any] = []  # boxes (in pixels) of the nodes and of the names placed so far
    renderer = FigureCanvasAgg(figure).get_renderer()
    for node, (x, y) in position.items():
        kind = "input" if node < 2 else ("output" if node == output else "node")
        face, edge = _NODE_STYLE[kind]
        text = axes.text(x, y, _node_name(node, output), ha="center", va="center", fontsize=12, zorder=4,
                         bbox={"boxstyle": "circle,pad=0.35" if kind == "node" else "round,pad=0.45",
                               "facecolor": face, "edgecolor": edge, "linewidth": 1.4})
        taken.append(text.get_window_extent(renderer).padded(24, 14))  # the frame and the arrowheads around it
    for (source, target, op), bend in zip(links, bends):
        axes.add_patch(FancyArrowPatch(position[source], position[target], connectionstyle=f"arc3,rad={bend}",
                                       arrowstyle="-|>", mutation_scale=13, shrinkA=15, shrinkB=15,
                                       color="#b4b4b4" if op is None else op_colour(op),
                                       linewidth=1.2 if op is None else 1.9, zorder=1 if op is None else 2))
    pixels = [axes.transData.transform(curve) for curve in curves]
    for index, (op, _) in enumerate(edges):
        # the spot along the edge whose name box hides no node, no other name and the fewest other edges
        options: List[Tuple[int, int, Any, Any]] = []
        for t in _LABEL_T:
            x, y = curves[index][round(t * 80)]
            label = axes.text(x, y, op, ha="center", va="center", fontsize=9, color=op_colour(op), zorder=3,
                              bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": op_colour(op),
                                    "lw": 0.9})
            box = label.get_window_extent(renderer).expanded(1.08, 1.3)
            hidden = sum(box.count_contains(points) for i, points in enumerate(pixels) if i != index)
            options.append((100 * sum(box.overlaps(other) for other in taken) + hidden, len(options), label, box))
            label.remove()
        _, _, label, box = min(options, key=lambda option: option[:2])
        axes.add_artist(label)
        taken.append(box)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG through a temporary file and a rename, so no reader sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png", facecolor="white", metadata={"Software": None})
    os.replace(temporary, path)
    return path


def cell_to_dot(genotype: Genotype, cell: str = "normal") -> str:
    """Return the cell in graphviz' dot language, for ``dot -Tsvg`` where graphviz is installed."""
    edges, concat = _cell(genotype, cell)
    names = ["c_{k-2}", "c_{k-1}"] + [str(i) for i in range(len(edges) // 2)]
    lines = [f'"{names[j]}" -> "{names[2 + i // 2]}" [label="{op}", color="{op_colour(op)}"];'
             for i, (op, j) in enumerate(edges)] + [f'"{names[n]}" -> "c_{{k}}" [color=gray];' for n in concat]
    return "digraph cell {\nrankdir=LR;\nnode [shape=circle];\n" + "\n".join(lines) + "\n}\n"


def save_cells(genotype: Genotype, folder: Union[str, "os.PathLike[str]"]) -> List[Path]:
    """Draw both cells into ``folder`` as ``cell_normal.png`` and ``cell_reduce.png``, normal first.

    Raises:
        ValueError: for an invalid genotype.
    """
    figures = [(cell, draw_cell(genotype, cell)) for cell in CELL_NAMES]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return [_save(figure, Path(folder) / f"cell_{cell}.png") for cell, figure in figures]


def _as_history(history: Any, op_names: Sequence[str]) -> np.ndarray:
    """Validate ``history`` and return it as an ``(epochs, edges, ops)`` float array."""
    if isinstance(op_names, (str, bytes)) or not all(isinstance(name, str) for name in op_names):
        raise ValueError(f"op_names must be a sequence of operation names (str), got {op_names!r}")
    try:
        epochs = [np.asarray(h.detach().cpu() if hasattr(h, "detach") else h, dtype=np.float64) for h in history]
    except (TypeError, ValueError) as error:
        raise ValueError(f"history must hold numeric (edges, ops) arrays: {error}") from None
    if not epochs or any(e.ndim != 2 or e.shape != (epochs[0].shape[0], len(op_names)) for e in epochs):
        raise ValueError(f"history must be a non-empty list of (edges, {len(op_names)}) arrays, one per epoch, "
                         f"all of the same shape; got shapes {[e.shape for e in epochs]}")
    if not np.isfinite(epochs).all():
        raise ValueError("history contains non-finite values")
    return np.stack(epochs)


def _cell_steps(edges: int) -> Optional[int]:
    """``steps`` when ``edges`` is a DARTS cell's edge count (2 + 3 + ... + (steps + 1)), else ``None``."""
    steps = next((s for s in range(1, edges + 1) if s * (s + 3) // 2 >= edges), 0)
    return steps if steps * (steps + 3) // 2 == edges else None


def plot_alpha_evolution(history: Sequence[Any], op_names: Sequence[str], title: str = "softmax(alpha) per edge",
                         *, y_range: Optional[Tuple[float, float]] = None) -> Figure:
    """Plot softmax(alpha) of every edge over the epochs: one panel per edge, one line per operation.

    For a DARTS cell (14 edges for 4 nodes) panel ``(i, j)`` is the edge from input ``j`` into node
    ``i`` (titled ``c_{k-2} -> 0``), else panels are ``edge 0``, ``edge 1``, ...; the strongest
    operation of the last epoch is named above each panel on the right, in its colour.

    Args:
        history: one ``(edges, ops)`` array-like per epoch (numpy, torch or lists), or one
            ``(epochs, edges, ops)`` array; epoch ``i`` is drawn at x = ``i + 1``.
        op_names: the name of each column (e.g. :data:`~rnasframe.spaces.darts.PRIMITIVES`).
        title: text above the panels (``""`` for none).
        y_range: ``(low, high)`` of the shared y axis; ``None`` fits the data.

    Raises:
        ValueError: for an empty, ill-shaped or non-finite history or an invalid ``y_range``.
    """
    data = _as_history(history, op_names)
    if y_range is not None and not (len(y_range) == 2 and all(map(math.isfinite, y_range)) and y_range[0] < y_range[1]):
        raise ValueError(f"y_range must be (low, high) with finite low < high, got {y_range!r}")
    epochs, edges, ops = data.shape
    steps = _cell_steps(edges)
    columns = steps + 1 if steps is not None else math.ceil(math.sqrt(edges * 1.3))
    rows = steps if steps is not None else math.ceil(edges / columns)
    cells = [(i, j) for i in range(rows) for j in range(i + 2)] if steps else [divmod(e, columns) for e in range(edges)]
    figure = Figure(figsize=(2.1 * columns + 0.8, 1.55 * rows + 1.3), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    epoch_axis = np.arange(1, epochs + 1)
    colours = [op_colour(name, i) for i, name in enumerate(op_names)]
    for edge, (row, column) in enumerate(cells):
        axes, last = grid[row, column], data[-1, edge]
        winner = int(np.argmax(last))
        for op in sorted(range(ops), key=lambda o: o == winner):  # the final winner on top
            axes.plot(epoch_axis, data[:, edge, op], color=colours[op], lw=2.0 if op == winner else 1.1,
                      marker="o" if epochs <= 20 else None, ms=2.5, label=op_names[op])
        name = f"edge {edge}" if steps is None else f"{_SOURCES.get(column, column - 2)} \u2192 {row}"
        axes.set_title(name, loc="left", fontsize=9, pad=3)
        if ops == 1 or np.sort(last)[-1] - np.sort(last)[-2] > 1e-6:  # no winner while tied
            axes.set_title(op_names[winner], loc="right", fontsize=8, color=colours[winner], pad=3)
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=8, labelbottom=(row + 1, column) not in cells)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    for row, column in {(r, c) for r in range(rows) for c in range(columns)} - set(cells):
        grid[row, column].set_axis_off()
    if y_range is not None:
        grid[0, 0].set_ylim(*y_range)
    free = steps is not None and steps >= 3  # the empty upper-right triangle holds the legend
    figure.legend([Line2D([], [], color=colour, lw=2.0) for colour in colours], list(op_names), fontsize=9,
                  frameon=False, ncol=min(ops, 4 if free else 2 * columns), bbox_to_anchor=(0.99, 0.9) if free
                  else (0.5, 0.0), loc="upper right" if free else "lower center")
    figure.supxlabel("epoch", fontsize=10, y=(0.05 if free else 0.35) / figure.get_figheight(), va="bottom")
    figure.supylabel("softmax(alpha)", fontsize=10)
    if title:
        figure.suptitle(title, x=0.02, ha="left", fontsize=12)
    width, height = figure.get_size_inches()  # fixed margins in inches (tight_layout costs seconds)
    figure.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, top=1 - 0.7 / height,
                           bottom=(0.5 if free else 0.85) / height, wspace=0.12, hspace=0.4)
    return figure


def save_alpha_evolution(history_by_cell: Mapping[str, Sequence[Any]], op_names: Sequence[str],
                         folder: Union[str, "os.PathLike[str]"]) -> List[Path]:
    """Plot each cell's history into ``folder`` as ``alpha_<cell>.png``, skipping empty histories.

    Raises:
        ValueError: for a key that cannot be a file name or an invalid history.
    """
    figures = []
    for name, history in history_by_cell.items():
        if not isinstance(name, str) or not name or any(c in name for c in "/\\:") or name in (".", ".."):
            raise ValueError(f"history_by_cell keys must be plain names usable in a file name, got {name!r}")
        if len(history) > 0:
            title = f"softmax(alpha) of the {_TITLES.get(name, name + ' cell')}, per edge"
            figures.append((name, plot_alpha_evolution(history, op_names, title)))
    if figures:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return [_save(figure, Path(folder) / f"alpha_{name}.png") for name, figure in figures]
