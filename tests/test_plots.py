"""Tests of the pictures: DARTS cells drawn as DAGs and the evolution of softmax(alpha)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import pytest
import torch
from PIL import Image, ImageChops, ImageFont, ImageStat

from rnasframe.interfaces.search_space import InputSpec, SearchSpace
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


def spread(image: Image.Image) -> float:
    """Standard deviation of the pixels, over all channels (0 for a blank picture)."""
    return float(np.mean(ImageStat.Stat(image).stddev))


def has_colour(image: Image.Image, colour: Sequence[int], tolerance: int = 24) -> bool:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool((np.abs(pixels - np.asarray(colour, dtype=np.int16)).max(axis=-1) <= tolerance).any())


GENOTYPES = {
    "DARTS_V1": genotypes.DARTS_V1,
    "DARTS_V2": genotypes.DARTS_V2,
    "random": random_genotype(3),
}


# --------------------------------------------------------------------------------------------
# cells
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_cells_are_legible_pictures_of_their_operations(name: str) -> None:
    genotype = GENOTYPES[name]
    images = {}
    for cell in ("normal", "reduce"):
        image = plot.draw_cell(genotype, cell)
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        assert 400 <= image.width <= 2000 and 150 <= image.height <= 1200, image.size
        assert spread(image) > 20, "the picture is (almost) blank"
        assert image.getpixel((0, 0)) == (255, 255, 255)
        for op, _ in getattr(genotype, cell):  # every operation of the cell appears in its colour
            assert has_colour(image, plot.OP_COLOURS[op]), op
        images[cell] = image
    normal, reduce = images["normal"], images["reduce"]
    assert normal.size != reduce.size or ImageChops.difference(normal, reduce).getbbox() is not None


def test_cell_pictures_depend_on_the_genotype_and_the_title() -> None:
    v1 = plot.draw_cell(genotypes.DARTS_V1, "normal")
    v2 = plot.draw_cell(genotypes.DARTS_V2, "normal")
    assert v1.size != v2.size or ImageChops.difference(v1, v2).getbbox() is not None
    untitled = plot.draw_cell(genotypes.DARTS_V2, "normal", title="")
    assert untitled.height < v2.height
    assert plot.draw_cell(genotypes.DARTS_V2, "normal").tobytes() == v2.tobytes()  # deterministic


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_cells_of_other_sizes_are_drawn(steps: int) -> None:
    genotype = random_genotype(steps, steps)
    for cell in ("normal", "reduce"):
        image = plot.draw_cell(genotype, cell)
        assert spread(image) > 10 and image.width >= 200


def test_unusual_but_valid_cells_are_drawn() -> None:
    # both edges of a node from the same input, a node nobody reads, a partial concat
    cell = [("skip_connect", 1), ("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("avg_pool_3x3", 0)]
    genotype = Genotype(normal=cell, normal_concat=[3], reduce=cell, reduce_concat=[2, 3, 3])
    assert spread(plot.draw_cell(genotype, "normal")) > 10
    assert spread(plot.draw_cell(genotype, "reduce")) > 10


def test_bad_cell_name_or_genotype_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cell must be one of 'normal', 'reduce'"):
        plot.draw_cell(genotypes.DARTS_V2, "reduction")
    bad = genotypes.DARTS_V2._replace(normal=[("conv_7x7", 0)] + genotypes.DARTS_V2.normal[1:])
    with pytest.raises(ValueError, match="conv_7x7"):
        plot.draw_cell(bad, "normal")
    with pytest.raises(ValueError):
        plot.save_cells(bad, "unused")


def test_save_cells_writes_readable_pngs(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "pictures"  # created on demand
    paths = plot.save_cells(genotypes.DARTS_V2, folder)
    assert paths == [folder / "cell_normal.png", folder / "cell_reduce.png"]
    for path, cell in zip(paths, ("normal", "reduce")):
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.load()
            assert image.tobytes() == plot.draw_cell(genotypes.DARTS_V2, cell).tobytes()
    # drawing again replaces the pictures and leaves no temporary file behind
    assert plot.save_cells(genotypes.DARTS_V1, folder) == paths
    assert sorted(p.name for p in folder.iterdir()) == ["cell_normal.png", "cell_reduce.png"]
    with Image.open(paths[0]) as image:
        assert image.convert("RGB").tobytes() == plot.draw_cell(genotypes.DARTS_V1, "normal").tobytes()


# --------------------------------------------------------------------------------------------
# alpha evolution
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 2, 40])
def test_alpha_evolution_for_one_and_many_epochs(epochs: int) -> None:
    image = plot.plot_alpha_evolution(random_history(epochs), PRIMITIVES, "softmax(alpha), normal cell")
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert 600 <= image.width <= 2500 and 300 <= image.height <= 1500, image.size
    assert spread(image) > 15
    for colour in plot.OP_COLOURS.values():  # every operation has its line (or dot) and legend entry
        assert has_colour(image, colour)


def test_alpha_evolution_changes_with_the_data_and_the_range() -> None:
    first = plot.plot_alpha_evolution(random_history(10, seed=1), PRIMITIVES)
    second = plot.plot_alpha_evolution(random_history(10, seed=2), PRIMITIVES)
    fixed = plot.plot_alpha_evolution(random_history(10, seed=1), PRIMITIVES, y_range=(0.0, 1.0))
    assert ImageChops.difference(first, second).getbbox() is not None
    assert ImageChops.difference(first, fixed).getbbox() is not None


@pytest.mark.parametrize("edges", [2, 5, 7, 14, 20])
def test_alpha_evolution_any_number_of_edges_and_ops(edges: int) -> None:
    names = ["conv", "pool", "identity"]  # not DARTS names: fallback colours
    image = plot.plot_alpha_evolution(random_history(6, edges=edges, ops=3), names, "")
    assert spread(image) > 10


def test_alpha_evolution_accepts_tensors_and_lists() -> None:
    history = random_history(3)
    from_tensors = plot.plot_alpha_evolution([torch.tensor(h, requires_grad=True) for h in history], PRIMITIVES)
    from_lists = plot.plot_alpha_evolution([h.tolist() for h in history], PRIMITIVES)
    from_array = plot.plot_alpha_evolution(torch.tensor(np.stack(history)), PRIMITIVES)
    assert from_tensors.tobytes() == from_lists.tobytes() == from_array.tobytes()


@pytest.mark.parametrize(
    "history, names, match",
    [
        ([], PRIMITIVES, "non-empty list"),
        (np.full((14, 8), 0.125), PRIMITIVES, "got an array of shape \\(14, 8\\)"),  # one epoch, not a list
        ([np.full((14, 7), 0.125)], PRIMITIVES, "must have shape \\(edges, 8\\)"),
        ([np.full(8, 0.125)], PRIMITIVES, "must have shape"),
        ([np.full((14, 8), 0.125), np.full((13, 8), 0.125)], PRIMITIVES, "history\\[1\\] must have shape \\(14, 8\\)"),
        ([np.full((14, 8), np.nan)], PRIMITIVES, "non-finite"),
        ([[["a"] * 8] * 14], PRIMITIVES, "not a numeric"),
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
    sizes = []
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.load()
            assert spread(image.convert("RGB")) > 15
            sizes.append(image.size)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["alpha_normal.png", "alpha_reduce.png"]
    with pytest.raises(ValueError, match="file name"):
        plot.save_alpha_evolution({"../normal": random_history(1)}, PRIMITIVES, tmp_path)
    assert plot.save_alpha_evolution({}, PRIMITIVES, tmp_path / "nothing") == []


# --------------------------------------------------------------------------------------------
# the search-space hook
# --------------------------------------------------------------------------------------------


def test_darts_space_saves_cells_and_alpha_plots(tmp_path: Path) -> None:
    space = DartsSpace(channels=4, layers=2)
    supernet = space.supernet(num_classes=10)
    history: Mapping[str, List[torch.Tensor]] = {name: [] for name in supernet.arch_parameter_names}
    for _ in range(3):
        for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
            with torch.no_grad():
                alpha.add_(torch.randn_like(alpha))
            history[name].append(torch.softmax(alpha.detach(), dim=-1))
    paths = space.save_pictures(supernet.genotype(), history, tmp_path)
    assert [p.name for p in paths] == ["cell_normal.png", "cell_reduce.png", "alpha_normal.png", "alpha_reduce.png"]
    for path in paths:
        with Image.open(path) as image:
            image.verify()
    # before the first epoch there is no history yet: only the cells
    assert len(space.save_pictures(genotypes.DARTS_V2, {"normal": [], "reduce": []}, tmp_path / "x")) == 2


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


# --------------------------------------------------------------------------------------------
# Pillow without FreeType: the bitmap font
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def bitmap_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the plots use Pillow's fixed-size bitmap font, as where FreeType is missing."""
    caches = (plot._text_width, plot._vertical_extent)
    for cache in caches:
        cache.cache_clear()
    if not hasattr(ImageFont, "load_default_imagefont"):  # Pillow < 10.1: load_default is the bitmap
        pytest.skip("this Pillow has no separate bitmap default font")
    font = ImageFont.load_default_imagefont()
    monkeypatch.setattr(plot, "_font", lambda size: font)
    yield
    for cache in caches:
        cache.cache_clear()


def test_pictures_without_freetype(bitmap_font: None, tmp_path: Path) -> None:
    assert plot._supersample() == 1
    for cell in ("normal", "reduce"):
        assert spread(plot.draw_cell(genotypes.DARTS_V2, cell)) > 20
    assert spread(plot.plot_alpha_evolution(random_history(4), PRIMITIVES)) > 15
