"""Pictures of a NAS-Bench-201 search: the cell as a graph and the evolution of softmax(alpha)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rnasframe.spaces.nasbench201.genotypes import EDGES, NODES, OPERATIONS, NasBench201Genotype

__all__ = ["draw_cell", "plot_alpha_evolution"]

# Nodes on a line; consecutive nodes joined straight, skip edges arc above (one node skipped)
# or below (0 -> 3), with matplotlib's arc3 bend of the edge (its label sits on the apex).
_POSITIONS = {node: (float(node), 0.0) for node in range(NODES)}
_BEND = {1: 0.0, 2: -0.5, 3: 0.4}  # by target - source
_NAMES = {0: "in", 1: "1", 2: "2", 3: "out"}


def _figure(**kwargs: Any) -> Any:
    # A bare Figure (no pyplot): no global state, no GUI backend, safe in any process.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def draw_cell(genotype: NasBench201Genotype, path: Path) -> Path:
    """Draw the cell's 4 nodes and its edges labelled with their operations into the PNG ``path``.

    ``none`` edges are left out (they carry nothing); the title is the architecture string.
    """
    fig = _figure(figsize=(7.0, 3.0))
    ax = fig.subplots()
    for (target, source), name in zip(EDGES, genotype.operations):
        if name == "none":
            continue
        (x0, y0), (x1, y1) = _POSITIONS[source], _POSITIONS[target]
        bend = _BEND[target - source]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "shrinkA": 14, "shrinkB": 14, "color": "0.3",
                                "connectionstyle": f"arc3,rad={bend}"})
        # apex of arc3's quadratic curve: midpoint + bend / 2 * (dy, -dx)
        mx = (x0 + x1) / 2 + bend / 2 * (y1 - y0)
        my = (y0 + y1) / 2 - bend / 2 * (x1 - x0)
        ax.text(mx, my, name, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7"})
    for node in range(NODES):
        x, y = _POSITIONS[node]
        ax.scatter([x], [y], s=700, c="lightsteelblue" if node in (0, NODES - 1) else "white",
                   edgecolors="black", zorder=3)
        ax.text(x, y, _NAMES[node], ha="center", va="center", zorder=4)
    ax.set_title(str(genotype), fontsize=7)
    ax.set_xlim(-0.4, 3.4)
    ax.set_ylim(-0.9, 0.8)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_alpha_evolution(history: Sequence[Any], path: Path) -> Path:
    """Plot softmax(alpha) per edge (one panel each) over the epochs into the PNG ``path``.

    Args:
        history: one ``(6, 5)`` array per epoch, oldest first.
    """
    weights = np.stack([np.asarray(h, dtype=float) for h in history])  # (epochs, 6, 5)
    epochs = np.arange(1, len(weights) + 1)
    fig = _figure(figsize=(10, 5))
    axes = fig.subplots(2, 3, sharex=True, sharey=True)
    for index, ((target, source), ax) in enumerate(zip(EDGES, axes.flat)):
        for k, name in enumerate(OPERATIONS):
            ax.plot(epochs, weights[:, index, k], marker="o", markersize=3, label=name)
        ax.set_title(f"edge {target}<-{source}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("softmax(alpha)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
