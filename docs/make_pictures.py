"""Regenerate the pictures of ``docs/_static/``: DARTS_V2's two cells and an example alpha plot.

Run from anywhere, with rnasframe installed::

    python docs/make_pictures.py              # writes into docs/_static/
    python docs/make_pictures.py --out /tmp   # or elsewhere

The alpha plot is synthetic (no search is run): 50 epochs whose first 15 are warm-up (alpha
untouched, so every weight stays at 1/8), after which each edge that DARTS_V2's normal cell keeps
drifts towards its operation, and the other edges wander at random.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from rnasframe.spaces.darts import PRIMITIVES, genotypes, plot
from rnasframe.spaces.darts.genotypes import Genotype, derive_genotype, num_edges

#: Where the pictures go by default.
STATIC = Path(__file__).resolve().parent / "_static"


def synthetic_history(
    genotype: Genotype, cell: str = "normal", epochs: int = 50, warmup: int = 15, seed: int = 0
) -> List[np.ndarray]:
    """A plausible softmax(alpha) history of one cell that ends by deriving ``genotype``'s cell.

    Args:
        genotype: the genotype whose cell the kept edges drift towards.
        cell: ``"normal"`` or ``"reduce"``.
        epochs: number of epochs.
        warmup: epochs during which alpha does not move.
        seed: seed of the random drift.

    Returns:
        One ``(edges, len(PRIMITIVES))`` array per epoch.
    """
    edges_of_cell = getattr(genotype, cell)
    steps = len(edges_of_cell) // 2
    rng = np.random.default_rng(seed)
    drift = rng.normal(0.0, 0.015, size=(num_edges(steps), len(PRIMITIVES)))
    start = 0
    for node in range(steps):
        for bonus, (op, source) in zip((0.09, 0.065), edges_of_cell[2 * node : 2 * node + 2]):
            drift[start + source, PRIMITIVES.index(op)] += bonus  # the first kept edge the strongest
        start += node + 2
    logits = np.zeros_like(drift)
    history = []
    for epoch in range(epochs):
        if epoch >= warmup:
            logits = logits + drift + rng.normal(0.0, 0.03, size=logits.shape)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        history.append(weights / weights.sum(axis=1, keepdims=True))
    final = np.log(history[-1])
    derived = derive_genotype(final, final, steps=steps).normal
    if derived != list(edges_of_cell):
        raise RuntimeError(f"the synthetic history derives {derived}, not {edges_of_cell}; change the seed")
    return history


def main(argv: Optional[Sequence[str]] = None) -> List[Path]:
    """Write ``darts_v2_normal.png``, ``darts_v2_reduce.png`` and ``alpha_example.png``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The paths written.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STATIC, help=f"output folder (default: {STATIC})")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {
        "darts_v2_normal.png": plot.draw_cell(genotypes.DARTS_V2, "normal", title="DARTS_V2, normal cell"),
        "darts_v2_reduce.png": plot.draw_cell(genotypes.DARTS_V2, "reduce", title="DARTS_V2, reduction cell"),
        "alpha_example.png": plot.plot_alpha_evolution(
            synthetic_history(genotypes.DARTS_V2),
            PRIMITIVES,
            "softmax(alpha) of the normal cell, per edge (synthetic example: 15 warm-up epochs, then search)",
        ),
    }
    paths = []
    for name, figure in figures.items():
        path = args.out / name
        figure.savefig(path, format="png", facecolor="white", metadata={"Software": None})
        paths.append(path)
        width, height = figure.get_size_inches() * figure.dpi
        print(f"wrote {path} ({width:.0f}x{height:.0f})")
    return paths


if __name__ == "__main__":
    main()
