"""Tests of the pictures: DARTS cells and the evolution of softmax(alpha), drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from rnasframe.interfaces.search_space import InputSpec, Picture, SearchSpace
from rnasframe.spaces.darts import PRIMITIVES, DartsSpace, derive_genotype, genotypes, plot
from rnasframe.spaces.darts.genotypes import Genotype, num_edges


def random_genotype(seed: int, steps: int = 4) -> Genotype:
    """The genotype DARTS derives from random alphas."""
    generator = torch.Generator().manual_seed(seed)
    shape = (num_edges(steps), len(PRIMITIVES))
    return derive_genotype(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator), steps)


def random_history(epochs: int, edges: int = 14, ops: int = len(PRIMITIVES), seed: int = 0) -> List[np.ndarray]:
    """Softmax of alphas drifting from uniform, one (edges, ops) array per epoch."""
    rng = np.random.default_rng(seed)
    logits, history = np.zeros((edges, ops)), []
    for _ in range(epochs):
        weights = np.exp(logits)
        history.append(weights / weights.sum(axis=1, keepdims=True))
        logits = logits + rng.normal(0.0, 0.2, size=logits.shape)
    return history


def pixels(figure: Figure) -> np.ndarray:
    """The rendered RGB pixels of a figure."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def boxes(figure: Figure, fontsize: float) -> List[Any]:
    """Window extents (with their frames) of the texts of one size in the figure's axes: 12 nodes, 9 names."""
    renderer = FigureCanvasAgg(figure).get_renderer()
    return [t.get_window_extent(renderer) for t in figure.axes[0].texts if t.get_fontsize() == fontsize]


GENOTYPES = {"DARTS_V1": genotypes.DARTS_V1, "DARTS_V2": genotypes.DARTS_V2, "random": random_genotype(3)}


# ------------------------------------------------------------------------------------------ cells


@pytest.mark.parametrize("name", sorted(GENOTYPES))
@pytest.mark.parametrize("cell", ["normal", "reduce"])
def test_cells_name_every_edge_without_overlaps(name: str, cell: str) -> None:
    genotype = GENOTYPES[name]
    figure = plot.draw_cell(genotype, cell)
    width, height = figure.get_size_inches()
    assert 5 <= width <= 20 and 2.5 <= height <= 10, (width, height)  # a chain of 4 nodes: 6 columns
    names = [t.get_text() for t in figure.axes[0].texts if t.get_fontsize() == 9]
    assert sorted(names) == sorted(op for op, _ in getattr(genotype, cell))  # one name per edge
    nodes, labels = boxes(figure, 12), boxes(figure, 9)
    assert len(nodes) == len(getattr(genotype, cell)) // 2 + 3
    for i, label in enumerate(labels):  # names hide no node and no other name
        assert not any(label.overlaps(node) for node in nodes), names[i]
        assert not any(label.overlaps(other) for other in labels[i + 1 :]), names[i]
    assert figure.suptitle is not None and figure.texts[0].get_text() == plot._TITLES[cell]
    image = pixels(figure)
    assert image.std() > 20 and (image[0, 0] == 255).all()


def test_cell_pictures_are_deterministic_and_depend_on_the_genotype_and_the_title() -> None:
    v2 = pixels(plot.draw_cell(genotypes.DARTS_V2, "normal"))
    assert np.array_equal(v2, pixels(plot.draw_cell(genotypes.DARTS_V2, "normal")))
    v1 = pixels(plot.draw_cell(genotypes.DARTS_V1, "normal"))
    assert v1.shape != v2.shape or not np.array_equal(v1, v2)
    untitled = plot.draw_cell(genotypes.DARTS_V2, "normal", title="")
    assert not untitled.texts and pixels(untitled).shape == v2.shape


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_cells_of_other_sizes_are_drawn(steps: int) -> None:
    for cell in ("normal", "reduce"):
        assert pixels(plot.draw_cell(random_genotype(steps, steps), cell)).std() > 10


def test_unusual_but_valid_cells_are_drawn() -> None:
    # both edges of a node from the same input, a node nobody reads, a partial concat
    cell = [("skip_connect", 1), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("avg_pool_3x3", 0)]
    genotype = Genotype(normal=cell, normal_concat=[3], reduce=cell, reduce_concat=[2, 3, 3])
    for name in ("normal", "reduce"):
        assert pixels(plot.draw_cell(genotype, name)).std() > 10


def test_bad_cell_name_or_genotype_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cell must be one of 'normal', 'reduce'"):
        plot.draw_cell(genotypes.DARTS_V2, "reduction")
    bad = genotypes.DARTS_V2._replace(normal=[("conv_7x7", 0), *genotypes.DARTS_V2.normal[1:]])
    with pytest.raises(ValueError, match="conv_7x7"):
        plot.draw_cell(bad, "normal")
    with pytest.raises(ValueError, match="conv_7x7"):
        plot.save_cells(bad, "unused")
    with pytest.raises(ValueError, match="cell must be one of"):
        plot.cell_to_dot(genotypes.DARTS_V2, "both")


def test_save_cells_writes_pngs_and_replaces_them(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "pictures"  # created on demand
    paths = plot.save_cells(genotypes.DARTS_V2, folder)
    assert paths == [folder / "cell_normal.png", folder / "cell_reduce.png"]
    first = []
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and 500 <= image.width <= 1600 and 250 <= image.height <= 1000
            first.append(np.asarray(image.convert("RGB")))
    assert plot.save_cells(genotypes.DARTS_V1, folder) == paths
    assert sorted(p.name for p in folder.iterdir()) == ["cell_normal.png", "cell_reduce.png"]  # no temporaries
    with Image.open(paths[0]) as image:
        again = np.asarray(image.convert("RGB"))
    assert again.shape != first[0].shape or not np.array_equal(again, first[0])


def test_cell_to_dot_lists_every_edge() -> None:
    dot = plot.cell_to_dot(genotypes.DARTS_V2, "reduce")
    assert dot.startswith("digraph cell {") and dot.rstrip().endswith("}")
    assert dot.count('label="max_pool_3x3"') == 5 and dot.count('label="skip_connect"') == 3
    assert dot.count('-> "c_{k}"') == 4


# ------------------------------------------------------------------------------- alpha evolution


@pytest.mark.parametrize("epochs", [1, 2, 40])
def test_alpha_evolution_has_one_panel_per_edge_and_a_legend(epochs: int) -> None:
    figure = plot.plot_alpha_evolution(random_history(epochs), PRIMITIVES, "softmax(alpha), normal cell")
    panels = [axes for axes in figure.axes if axes.axison]
    assert len(panels) == 14 and all(len(axes.lines) == len(PRIMITIVES) for axes in panels)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == PRIMITIVES
    assert panels[0].get_title(loc="left") == "c\u2096\u208b\u2082 \u2192 0"  # c_{k-2} -> 0
    assert panels[-1].get_title(loc="left") == "2 \u2192 3"
    winners = [axes.get_title(loc="right") for axes in panels]
    last = random_history(epochs)[-1]  # one epoch: every weight 1/8, no winner
    assert winners == ([""] * 14 if epochs == 1 else [PRIMITIVES[int(np.argmax(row))] for row in last])
    assert pixels(figure).std() > 15


def test_alpha_evolution_is_deterministic_and_follows_the_data_and_the_range() -> None:
    first = pixels(plot.plot_alpha_evolution(random_history(10, seed=1), PRIMITIVES))
    assert np.array_equal(first, pixels(plot.plot_alpha_evolution(random_history(10, seed=1), PRIMITIVES)))
    assert not np.array_equal(first, pixels(plot.plot_alpha_evolution(random_history(10, seed=2), PRIMITIVES)))
    fixed = plot.plot_alpha_evolution(random_history(10, seed=1), PRIMITIVES, y_range=(0.0, 1.0))
    assert fixed.axes[0].get_ylim() == (0.0, 1.0)


@pytest.mark.parametrize("edges", [2, 5, 7, 14, 20])
def test_alpha_evolution_any_number_of_edges_and_ops(edges: int) -> None:
    figure = plot.plot_alpha_evolution(random_history(6, edges=edges, ops=3), ["conv", "pool", "identity"], "")
    assert sum(axes.axison for axes in figure.axes) == edges
    titles = [a.get_title(loc="left") for a in figure.axes if a.axison][:2]
    if edges in (2, 5, 14, 20):  # the edge counts of DARTS cells with 1, 2, 4 and 5 nodes
        assert titles == ["c\u2096\u208b\u2082 \u2192 0", "c\u2096\u208b\u2081 \u2192 0"]
    else:
        assert titles == ["edge 0", "edge 1"]


def test_alpha_evolution_accepts_tensors_lists_and_one_array() -> None:
    history = random_history(3)
    from_tensors = plot.plot_alpha_evolution([torch.tensor(h, requires_grad=True) for h in history], PRIMITIVES)
    from_lists = plot.plot_alpha_evolution([h.tolist() for h in history], PRIMITIVES)
    from_array = plot.plot_alpha_evolution(torch.tensor(np.stack(history)), PRIMITIVES)
    assert np.array_equal(pixels(from_tensors), pixels(from_lists))
    assert np.array_equal(pixels(from_tensors), pixels(from_array))


@pytest.mark.parametrize(
    "history, names, match",
    [
        ([], PRIMITIVES, "non-empty list"),
        (np.full((14, 8), 0.125), PRIMITIVES, "non-empty list of \\(edges, 8\\) arrays"),  # one epoch, not a list
        ([np.full((14, 7), 0.125)], PRIMITIVES, "\\(edges, 8\\)"),
        ([np.full((14, 8), 0.125), np.full((13, 8), 0.125)], PRIMITIVES, "all of the same shape"),
        ([np.full((14, 8), np.nan)], PRIMITIVES, "non-finite"),
        ([[["a"] * 8] * 14], PRIMITIVES, "numeric"),
        ([np.full((14, 8), 0.125)], "none", "op_names"),
    ],
)
def test_bad_alpha_history_is_a_value_error(history: Any, names: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plot.plot_alpha_evolution(history, names)


def test_bad_y_range_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="y_range"):
        plot.plot_alpha_evolution(random_history(2), PRIMITIVES, y_range=(1.0, 0.0))


def test_save_alpha_evolution_writes_one_png_per_cell(tmp_path: Path) -> None:
    history = {"normal": random_history(5, seed=1), "reduce": random_history(5, seed=2), "later": []}
    paths = plot.save_alpha_evolution(history, PRIMITIVES, tmp_path / "run")
    assert paths == [tmp_path / "run" / "alpha_normal.png", tmp_path / "run" / "alpha_reduce.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and 800 <= image.width <= 1600 and 500 <= image.height <= 1200
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["alpha_normal.png", "alpha_reduce.png"]
    with pytest.raises(ValueError, match="file name"):
        plot.save_alpha_evolution({"../normal": random_history(1)}, PRIMITIVES, tmp_path)
    assert plot.save_alpha_evolution({}, PRIMITIVES, tmp_path / "nothing") == []
    assert not (tmp_path / "nothing").exists()


# ---------------------------------------------------------------------------- the search-space hook


def test_darts_space_returns_tagged_pictures(tmp_path: Path) -> None:
    space = DartsSpace(channels=4, layers=2)
    supernet = space.supernet(num_classes=10)
    history: Mapping[str, List[torch.Tensor]] = {name: [] for name in supernet.arch_parameter_names}
    for _ in range(3):
        for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
            with torch.no_grad():
                alpha.add_(torch.randn_like(alpha))
            history[name].append(torch.softmax(alpha.detach(), dim=-1))
    pictures = space.save_pictures(supernet.genotype(), history, tmp_path)
    assert all(isinstance(picture, Picture) for picture in pictures)
    assert [(p.tag, p.path.name) for p in pictures] == [
        ("cell/normal", "cell_normal.png"), ("cell/reduce", "cell_reduce.png"),
        ("alpha/normal", "alpha_normal.png"), ("alpha/reduce", "alpha_reduce.png"),
    ]
    for picture in pictures:
        with Image.open(picture.path) as image:
            image.verify()
    # before the first epoch there is no history yet: only the cells
    assert [p.tag for p in space.save_pictures(genotypes.DARTS_V2, {"normal": [], "reduce": []}, tmp_path / "x")] == [
        "cell/normal", "cell/reduce"]


def test_darts_space_rejects_pictures_of_another_size(tmp_path: Path) -> None:
    space = DartsSpace(steps=3, multiplier=3)
    with pytest.raises(ValueError, match="steps=3"):
        space.save_pictures(genotypes.DARTS_V2, {}, tmp_path)
    good = random_genotype(0, steps=3)
    with pytest.raises(ValueError, match="alpha_history\\['normal'\\]\\[0\\] must have shape \\(9, 8\\)"):
        space.save_pictures(good, {"normal": [np.full((14, 8), 0.125)]}, tmp_path)


def test_search_spaces_draw_no_pictures_by_default(tmp_path: Path) -> None:
    class Minimal(SearchSpace):
        def supernet(self, num_classes: int, input_spec: Optional[InputSpec] = None) -> Any:
            raise NotImplementedError

        def network(self, genotype: Any, num_classes: int, input_spec: Optional[InputSpec] = None) -> Any:
            raise NotImplementedError

        def genotype_to_dict(self, genotype: Any) -> Mapping[str, Any]:
            return {}

        def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
            return None

    assert Minimal().save_pictures(None, {"0": [np.zeros((2, 2))]}, tmp_path / "run") == []
    assert not (tmp_path / "run").exists()
