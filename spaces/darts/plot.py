"""Pictures of DARTS cells and of the evolution of softmax(alpha), drawn with Pillow only.

Pillow is already installed with torchvision, so this module adds no dependency (no matplotlib, no
graphviz). Text uses Pillow's built-in font (:func:`PIL.ImageFont.load_default`): the scalable
Aileron face when Pillow has FreeType support, the small bitmap font otherwise.

Typical use::

    from rnasframe.spaces.darts import genotypes, plot

    plot.draw_cell(genotypes.DARTS_V2, "normal").show()
    plot.save_cells(genotypes.DARTS_V2, "runs/my-run")   # cell_normal.png, cell_reduce.png

A cell is drawn as a DAG from left to right: the cell inputs ``c_{k-2}`` and ``c_{k-1}``, the
intermediate nodes ``0 .. steps-1`` placed in columns by their depth, and the output ``c_{k}``,
the concatenation of the nodes in ``normal_concat`` / ``reduce_concat`` (grey arrows). Every
operation edge carries its name, in one colour per operation (:data:`OP_COLOURS`).
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rnasframe.spaces.darts.genotypes import Genotype, validate_genotype

__all__ = [
    "OP_COLOURS",
    "CELL_NAMES",
    "op_colour",
    "draw_cell",
    "save_cells",
    "plot_alpha_evolution",
    "save_alpha_evolution",
]

#: An RGB colour.
RGB = Tuple[int, int, int]
#: A box ``(left, top, right, bottom)`` in pixels.
Box = Tuple[float, float, float, float]
#: A point ``(x, y)`` in pixels.
Point = Tuple[float, float]

#: The colour of each DARTS operation, in pictures of cells and in alpha plots.
OP_COLOURS: Dict[str, RGB] = {
    "none": (150, 150, 150),
    "max_pool_3x3": (31, 119, 180),
    "avg_pool_3x3": (0, 160, 175),
    "skip_connect": (44, 160, 44),
    "sep_conv_3x3": (214, 39, 40),
    "sep_conv_5x5": (240, 120, 0),
    "dil_conv_3x3": (148, 103, 189),
    "dil_conv_5x5": (140, 86, 75),
}

#: Colours of operations that :data:`OP_COLOURS` does not know (other search spaces), in order.
_EXTRA_COLOURS: Tuple[RGB, ...] = (
    (227, 119, 194),
    (188, 189, 34),
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (240, 120, 0),
    (0, 160, 175),
    (140, 86, 75),
    (90, 90, 90),
)

#: The cells of a :class:`~rnasframe.spaces.darts.genotypes.Genotype` that can be drawn.
CELL_NAMES: Tuple[str, ...] = ("normal", "reduce")

_CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}

_WHITE: RGB = (255, 255, 255)
_BLACK: RGB = (30, 30, 30)
_GREY: RGB = (120, 120, 120)
_LIGHT_GREY: RGB = (225, 225, 225)
_CONCAT_COLOUR: RGB = (175, 175, 175)

# (fill, outline) of the three kinds of node.
_INPUT_STYLE: Tuple[RGB, RGB] = ((214, 236, 214), (86, 140, 86))
_NODE_STYLE: Tuple[RGB, RGB] = ((214, 230, 247), (72, 112, 166))
_OUTPUT_STYLE: Tuple[RGB, RGB] = ((248, 238, 190), (170, 145, 50))

# Rich text: a list of (kind, text) pieces, kind one of "text", "sub" (subscript) or "arrow".
_Rich = List[Tuple[str, str]]


# --------------------------------------------------------------------------------------------
# Fonts and a supersampled canvas
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _font(size: int) -> Union[ImageFont.FreeTypeFont, ImageFont.ImageFont]:
    """Pillow's default font at ``size`` pixels (the bitmap font where sizes are unsupported)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError, AttributeError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _supersample() -> int:
    """Drawing scale before the final downsampling: 2 with a scalable font (antialiasing), else 1."""
    return 2 if isinstance(_font(12), ImageFont.FreeTypeFont) else 1


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))
_LANCZOS = getattr(Image, "Resampling", Image).LANCZOS  # Image.Resampling since Pillow 9.1


class _Canvas:
    """An RGB image drawn at ``k`` times its size, in logical pixel coordinates."""

    def __init__(self, width: float, height: float) -> None:
        self.k = _supersample()
        self.size = (max(1, int(math.ceil(width))), max(1, int(math.ceil(height))))
        self.image = Image.new("RGB", (self.size[0] * self.k, self.size[1] * self.k), _WHITE)
        self.draw = ImageDraw.Draw(self.image)

    def _xy(self, points: Sequence[Point]) -> List[Tuple[float, float]]:
        return [(x * self.k, y * self.k) for x, y in points]

    def _box(self, box: Box) -> Tuple[float, float, float, float]:
        return (box[0] * self.k, box[1] * self.k, box[2] * self.k, box[3] * self.k)

    def line(self, points: Sequence[Point], fill: RGB, width: float = 1.0) -> None:
        """A polyline with rounded joints."""
        if len(points) < 2:
            return
        self.draw.line(self._xy(points), fill=fill, width=max(1, round(width * self.k)), joint="curve")

    def polygon(self, points: Sequence[Point], fill: RGB) -> None:
        """A filled polygon."""
        self.draw.polygon(self._xy(points), fill=fill)

    def dot(self, centre: Point, radius: float, fill: RGB) -> None:
        """A filled disc."""
        x, y = centre
        self.draw.ellipse(self._box((x - radius, y - radius, x + radius, y + radius)), fill=fill)

    def rectangle(
        self, box: Box, fill: Optional[RGB] = None, outline: Optional[RGB] = None, width: float = 1.0
    ) -> None:
        """A rectangle, filled and/or outlined."""
        self.draw.rectangle(self._box(box), fill=fill, outline=outline, width=max(1, round(width * self.k)))

    def rounded(self, box: Box, radius: float, fill: RGB, outline: RGB, width: float = 1.0) -> None:
        """A rounded rectangle."""
        self.draw.rounded_rectangle(
            self._box(box), radius=radius * self.k, fill=fill, outline=outline, width=max(1, round(width * self.k))
        )

    def text(self, left: float, middle: float, text: str, size: int, fill: RGB) -> None:
        """Plain text whose left edge is at ``left``, vertically centred on ``middle``."""
        font = _font(size * self.k)
        top, bottom = _vertical_extent(size * self.k)
        self.draw.text((left * self.k, middle * self.k - (top + bottom) / 2), text, font=font, fill=fill)

    def rich(self, left: float, middle: float, pieces: _Rich, size: int, fill: RGB) -> None:
        """Rich text (subscripts, drawn arrows) starting at ``left``, centred on ``middle``."""
        x = left
        for kind, text in pieces:
            width = _piece_width(kind, text, size)
            if kind == "text":
                self.text(x, middle, text, size, fill)
            elif kind == "sub":
                self.text(x, middle + 0.3 * size, text, _sub_size(size), fill)
            else:  # arrow
                head, pad = 0.32 * size, 0.25 * size
                y = middle + 0.05 * size
                tip = x + width - pad
                self.line([(x + pad, y), (tip - head, y)], fill, max(1.0, size / 12))
                self.polygon([(tip, y), (tip - head, y - head / 2), (tip - head, y + head / 2)], fill)
            x += width

    def paste_rotated(self, centre: Point, pieces: _Rich, size: int, fill: RGB) -> None:
        """Rich text rotated by 90 degrees (reading upwards), centred on ``centre``."""
        width, height = _rich_size(pieces, size)
        label = _Canvas(width + 4, height + 4)
        label.rich(2, (height + 4) / 2, pieces, size, fill)
        rotated = label.image.rotate(90, expand=True)  # drawn at the same scale as this canvas
        x, y = centre
        self.image.paste(rotated, (round(x * self.k - rotated.width / 2), round(y * self.k - rotated.height / 2)))

    def finish(self) -> Image.Image:
        """The picture at its logical size (downsampled, hence antialiased, when supersampled)."""
        if self.k == 1:
            return self.image
        return self.image.resize(self.size, _LANCZOS)


@functools.lru_cache(maxsize=None)
def _vertical_extent(size: int) -> Tuple[float, float]:
    """Top and bottom of capital letters and descenders at ``size``: the text's optical box."""
    bbox = _MEASURE.textbbox((0, 0), "Hg", font=_font(size))
    return float(bbox[1]), float(bbox[3])


def _sub_size(size: int) -> int:
    return max(6, round(size * 0.72))


@functools.lru_cache(maxsize=None)
def _text_width(text: str, size: int) -> float:
    k = _supersample()
    bbox = _MEASURE.textbbox((0, 0), text, font=_font(size * k))
    return (bbox[2]) / k


def _text_height(size: int) -> float:
    k = _supersample()
    top, bottom = _vertical_extent(size * k)
    return (bottom - top) / k


def _piece_width(kind: str, text: str, size: int) -> float:
    if kind == "text":
        return _text_width(text, size)
    if kind == "sub":
        return _text_width(text, _sub_size(size)) + 0.05 * size
    return 1.4 * size  # arrow


def _rich_size(pieces: _Rich, size: int) -> Tuple[float, float]:
    width = sum(_piece_width(kind, text, size) for kind, text in pieces)
    has_sub = any(kind == "sub" for kind, _ in pieces)
    return width, _text_height(size) + (0.3 * size if has_sub else 0.0)


def _node_text(node: int) -> _Rich:
    """The label of a cell node: 0 and 1 are the inputs, -1 the output, i >= 2 the node i - 2."""
    if node == 0:
        return [("text", "c"), ("sub", "k-2")]
    if node == 1:
        return [("text", "c"), ("sub", "k-1")]
    if node == -1:
        return [("text", "c"), ("sub", "k")]
    return [("text", str(node - 2))]


def op_colour(op_name: str, index: int = 0) -> RGB:
    """Return the colour an operation is drawn in.

    Args:
        op_name: the operation's name.
        index: its position among the operations, which picks the colour of a name that
            :data:`OP_COLOURS` does not know.

    Returns:
        ``OP_COLOURS[op_name]``, or a fallback colour chosen by ``index``.
    """
    if op_name in OP_COLOURS:
        return OP_COLOURS[op_name]
    return _EXTRA_COLOURS[index % len(_EXTRA_COLOURS)]


def _darker(colour: RGB, factor: float = 0.72) -> RGB:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


# --------------------------------------------------------------------------------------------
# Cell pictures: layered layout, ordering, coordinates, edge routing and label placement
# --------------------------------------------------------------------------------------------

_NODE_HEIGHT = 34.0
_NODE_SIZE = 36  # font size of node labels is derived from it
_LABEL_SIZE = 13
_ARROW = 9.0
_MARGIN = 18.0

# Minimum vertical gaps between neighbouring items of a layer: two nodes, a node and an edge
# passing through the layer, two passing edges.
_GAP_NODES = 60.0
_GAP_NODE_PASS = 26.0
_GAP_INPUTS = 110.0
_GAP_PASSES = 22.0


def _bezier(p0: Point, p1: Point, samples: int = 28) -> List[Point]:
    """A cubic curve from ``p0`` to ``p1``, horizontal at both ends."""
    (x0, y0), (x1, y1) = p0, p1
    dx = (x1 - x0) * 0.5
    c0, c1 = (x0 + dx, y0), (x1 - dx, y1)
    points = []
    for i in range(samples + 1):
        t = i / samples
        u = 1 - t
        points.append(
            (
                u**3 * x0 + 3 * u * u * t * c0[0] + 3 * u * t * t * c1[0] + t**3 * x1,
                u**3 * y0 + 3 * u * u * t * c0[1] + 3 * u * t * t * c1[1] + t**3 * y1,
            )
        )
    return points


def _overlap(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0.0


def _inflate(box: Box, by: float) -> Box:
    return (box[0] - by, box[1] - by, box[2] + by, box[3] + by)


def _ys_at(path: Sequence[Point], x: float) -> List[float]:
    """The heights at which a polyline crosses the vertical line at ``x``."""
    ys = []
    for (x0, y0), (x1, y1) in zip(path, path[1:]):
        if min(x0, x1) <= x <= max(x0, x1):
            ys.append(y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return ys


def _isotonic(values: List[float]) -> List[float]:
    """Least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: List[List[float]] = []
    for value in values:
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted: List[float] = []
    for total, count in blocks:
        fitted.extend([total / count] * int(count))
    return fitted


class _CellLayout:
    """Where every node, edge and label of one cell goes (logical pixels, before margins)."""

    def __init__(self, edges: Sequence[Tuple[str, int]], concat: Sequence[int]) -> None:
        steps = len(edges) // 2
        self.output = steps + 2  # node ids: 0, 1 inputs; 2 .. steps + 1 intermediate; output
        self.nodes = list(range(steps + 3))
        # links: (source, target, op name or None for the concatenation into the output)
        self.links: List[Tuple[int, int, Optional[str]]] = [
            (source, 2 + position // 2, op) for position, (op, source) in enumerate(edges)
        ]
        self.links += [(node, self.output, None) for node in dict.fromkeys(concat)]
        self.layer: Dict[int, int] = {0: 0, 1: 0}
        for node in range(2, steps + 2):
            sources = [s for s, t, _ in self.links if t == node]
            self.layer[node] = 1 + max(self.layer[s] for s in sources)
        self.layer[self.output] = 1 + max(self.layer[c] for c in dict.fromkeys(concat))
        self.depth = self.layer[self.output]
        self._build_chains()
        self._order()
        self._sizes()
        self._coordinates()
        self._route()
        self._place_labels()

    # items of a layer: ("n", node) for a node, ("d", link, layer) for a link passing through
    def _build_chains(self) -> None:
        self.chains: List[List[Tuple[int, ...]]] = []
        self.layers: List[List[Tuple[int, ...]]] = [[] for _ in range(self.depth + 1)]
        for node in self.nodes:
            self.layers[self.layer[node]].append(("n", node))
        for index, (source, target, _) in enumerate(self.links):
            chain: List[Tuple[int, ...]] = [("n", source)]
            for level in range(self.layer[source] + 1, self.layer[target]):
                chain.append(("d", index, level))
                self.layers[level].append(("d", index, level))
            chain.append(("n", target))
            self.chains.append(chain)
        self.preds: Dict[Tuple[int, ...], List[Tuple[int, ...]]] = {}
        self.succs: Dict[Tuple[int, ...], List[Tuple[int, ...]]] = {}
        for chain in self.chains:
            for a, b in zip(chain, chain[1:]):
                self.succs.setdefault(a, []).append(b)
                self.preds.setdefault(b, []).append(a)

    def _crossings(self, layers: List[List[Tuple[int, ...]]]) -> int:
        position = {item: i for layer in layers for i, item in enumerate(layer)}
        total = 0
        for level in range(len(layers) - 1):
            pairs = [(position[a], position[b]) for a in layers[level] for b in self.succs.get(a, [])]
            for i, (a1, b1) in enumerate(pairs):
                for a2, b2 in pairs[i + 1 :]:
                    if (a1 - a2) * (b1 - b2) < 0:
                        total += 1
        return total

    def _order(self) -> None:
        """Order the items of each layer to avoid crossings (barycentres, then adjacent swaps)."""
        layers = [list(layer) for layer in self.layers]
        best, best_crossings = [list(layer) for layer in layers], self._crossings(layers)

        def sort_by(level: int, neighbours: Dict[Tuple[int, ...], List[Tuple[int, ...]]]) -> None:
            position = {item: i / max(1, len(layer) - 1) for layer in layers for i, item in enumerate(layer)}
            current = {item: i for i, item in enumerate(layers[level])}

            def key(item: Tuple[int, ...]) -> Tuple[float, int]:
                near = neighbours.get(item, [])
                centre = sum(position[n] for n in near) / len(near) if near else position[item]
                return (centre, current[item])

            layers[level].sort(key=key)

        for _ in range(4):
            for level in range(1, self.depth + 1):
                sort_by(level, self.preds)
            for level in range(self.depth - 1, 0, -1):
                sort_by(level, self.succs)
            crossings = self._crossings(layers)
            if crossings < best_crossings:
                best, best_crossings = [list(layer) for layer in layers], crossings
        layers = best
        improved = True
        while improved and best_crossings > 0:
            improved = False
            for level in range(1, self.depth + 1):
                for i in range(len(layers[level]) - 1):
                    layers[level][i], layers[level][i + 1] = layers[level][i + 1], layers[level][i]
                    crossings = self._crossings(layers)
                    if crossings < best_crossings:
                        best_crossings, improved = crossings, True
                    else:
                        layers[level][i], layers[level][i + 1] = layers[level][i + 1], layers[level][i]
        self.layers = layers

    def _sizes(self) -> None:
        node_size = _rich_size(_node_text(-1), _LABEL_SIZE + 2)
        input_width = max(_rich_size(_node_text(n), _LABEL_SIZE + 2)[0] for n in (0, 1, -1)) + 22
        self.width: Dict[int, float] = {n: _NODE_HEIGHT for n in self.nodes}
        for node in (0, 1, self.output):
            self.width[node] = input_width
        concat_count = sum(1 for _, t, _ in self.links if t == self.output)
        self.height: Dict[int, float] = {n: _NODE_HEIGHT for n in self.nodes}
        self.height[self.output] = max(_NODE_HEIGHT, 9.0 * concat_count + 4, node_size[1] + 14)
        self.label_size: Dict[int, Tuple[float, float]] = {}
        for index, (_, _, op) in enumerate(self.links):
            if op is not None:
                self.label_size[index] = (_text_width(op, _LABEL_SIZE) + 10, _text_height(_LABEL_SIZE) + 7)
        widest_label = max(w for w, _ in self.label_size.values())
        # a gap between two columns widens with the number of labels it must hold
        self.gap_width: List[float] = []
        for level in range(self.depth):
            load = 0.0
            for source, target, op in self.links:
                if op is not None and self.layer[source] <= level < self.layer[target]:
                    load += 1.0 / (self.layer[target] - self.layer[source])
            stretch = 1.0 + 0.22 * max(0.0, load - 2.0)
            self.gap_width.append(input_width + min(2.0, stretch) * widest_label + 40)

    def _half(self, item: Tuple[int, ...]) -> float:
        return self.height[item[1]] / 2 if item[0] == "n" else 0.0

    def _gap(self, a: Tuple[int, ...], b: Tuple[int, ...]) -> float:
        if a == ("n", 0) and b == ("n", 1):  # inputs further apart: their edges fan out less steeply
            return _GAP_INPUTS
        if a[0] == "n" and b[0] == "n":
            return _GAP_NODES
        if a[0] == "n" or b[0] == "n":
            return _GAP_NODE_PASS
        return _GAP_PASSES

    def _coordinates(self) -> None:
        """Vertical positions: each item near its neighbours' mean, layers kept in order."""
        self.y: Dict[Tuple[int, ...], float] = {}
        offsets: List[List[float]] = []
        for layer in self.layers:
            offset = [0.0]
            for a, b in zip(layer, layer[1:]):
                offset.append(offset[-1] + self._half(a) + self._gap(a, b) + self._half(b))
            offsets.append(offset)
            for item, o in zip(layer, offset):
                self.y[item] = o - offset[-1] / 2
        for _ in range(12):
            for level in list(range(self.depth + 1)) + list(range(self.depth, -1, -1)):
                layer, offset = self.layers[level], offsets[level]
                targets = []
                for item in layer:
                    near = self.preds.get(item, []) + self.succs.get(item, [])
                    targets.append(sum(self.y[n] for n in near) / len(near) if near else self.y[item])
                fitted = _isotonic([t - o for t, o in zip(targets, offset)])
                for item, z, o in zip(layer, fitted, offset):
                    self.y[item] = z + o
        self.x = {0: 0.0}
        for level in range(1, self.depth + 1):
            self.x[level] = self.x[level - 1] + self.gap_width[level - 1]

    def box(self, node: int) -> Box:
        """The box of a node."""
        x, y = self.x[self.layer[node]], self.y[("n", node)]
        w, h = self.width[node], self.height[node]
        return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)

    def _route(self) -> None:
        """The polyline of every link, with ports spread along the sides of its two nodes."""
        ports_out: Dict[Tuple[int, int], float] = {}
        ports_in: Dict[Tuple[int, int], float] = {}
        for node in self.nodes:
            box = self.box(node)
            for side, ports, neighbour_at in ((2, ports_out, 1), (0, ports_in, -2)):
                links = [
                    (self.y[self.chains[i][neighbour_at]], i)
                    for i, (s, t, _) in enumerate(self.links)
                    if (s if side == 2 else t) == node
                ]
                links.sort()
                spacing = min(9.0, (box[3] - box[1] - 10) / max(1, len(links) - 1))
                for rank, (_, index) in enumerate(links):
                    middle = (box[1] + box[3]) / 2
                    ports[(node, index)] = middle + (rank - (len(links) - 1) / 2) * spacing
        self.paths: List[List[Point]] = []
        self.segments: List[List[List[Point]]] = []
        for index, ((source, target, _), chain) in enumerate(zip(self.links, self.chains)):
            points: List[Point] = [(self.box(source)[2], ports_out[(source, index)])]
            for item in chain[1:-1]:
                points.append((self.x[item[2]], self.y[item]))
            points.append((self.box(target)[0] - _ARROW, ports_in[(target, index)]))
            segments = [_bezier(a, b) for a, b in zip(points, points[1:])]
            self.segments.append(segments)
            path: List[Point] = []
            for segment in segments:
                path.extend(segment if not path else segment[1:])
            self.paths.append(path)

    def _place_labels(self) -> None:
        """Put each operation's name on its edge where it hides no node, label or other edge."""
        obstacles = [_inflate(self.box(n), 5) for n in self.nodes]
        candidates: Dict[int, List[Tuple[Point, float]]] = {}
        for index, segments in enumerate(self.segments):
            if index not in self.label_size:
                continue
            options = []
            for number, segment in enumerate(segments):
                last = number == len(segments) - 1
                for i in range(3, len(segment) - 2):
                    t = i / (len(segment) - 1)
                    if last and t > 0.8:
                        continue
                    options.append((segment[i], 30.0 * abs(t - 0.5) + 2.0 * number))
            candidates[index] = options
        self.labels: Dict[int, Box] = {}
        points = np.array([p for path in self.paths for p in path])
        owner = np.array([i for i, path in enumerate(self.paths) for _ in path])

        def label_box(index: int, centre: Point) -> Box:
            w, h = self.label_size[index]
            return (centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2)

        def fixed_cost(index: int, box: Box) -> float:
            """What does not depend on the other labels: nodes, edges hidden, the edge's course."""
            area = (box[2] - box[0]) * (box[3] - box[1])
            total = 0.0
            for obstacle in obstacles:  # never on a node
                hit = _overlap(box, obstacle)
                total += 400.0 * hit / area + (100.0 if hit else 0.0)
            inner = _inflate(box, 2)  # hide as little of the other edges as possible
            inside = (
                (points[:, 0] >= inner[0]) & (points[:, 0] <= inner[2])
                & (points[:, 1] >= inner[1]) & (points[:, 1] <= inner[3]) & (owner != index)
            )
            total += 2.5 * float(inside.sum())
            middle, half = (box[1] + box[3]) / 2, (box[3] - box[1]) / 2
            for x_side in (box[0], box[2]):  # the edge should run through the label's sides
                ys = _ys_at(self.paths[index], x_side)
                if ys:
                    total += 1.5 * max(0.0, min(abs(y - middle) for y in ys) - half + 2)
            return total

        def overlap_cost(index: int, box: Box) -> float:
            area = (box[2] - box[0]) * (box[3] - box[1])
            total = 0.0
            for other, placed in self.labels.items():
                if other != index:
                    hit = _overlap(_inflate(box, 6), placed)
                    total += 400.0 * hit / area + (100.0 if hit else 0.0)
            return total

        scored: Dict[int, List[Tuple[Box, float]]] = {}
        for index, options in candidates.items():
            boxes = [(label_box(index, centre), preference) for centre, preference in options]
            scored[index] = [(box, preference + fixed_cost(index, box)) for box, preference in boxes]
        order = sorted(scored, key=lambda i: len(scored[i]))
        for round_ in range(4):  # greedy placement, then a few rounds of re-placing each label
            for index in order:
                self.labels.pop(index, None)
                best = min(scored[index], key=lambda option: option[1] + overlap_cost(index, option[0]))
                self.labels[index] = best[0]

    def bounds(self) -> Box:
        """The box that holds every node, edge and label."""
        boxes = [self.box(n) for n in self.nodes] + list(self.labels.values())
        xs = [x for path in self.paths for x, _ in path] + [b[0] for b in boxes] + [b[2] for b in boxes]
        ys = [y for path in self.paths for _, y in path] + [b[1] for b in boxes] + [b[3] for b in boxes]
        return (min(xs), min(ys), max(xs), max(ys))


def _check_cell_name(cell: str) -> None:
    if cell not in CELL_NAMES:
        raise ValueError(f"cell must be one of {', '.join(repr(c) for c in CELL_NAMES)}, got {cell!r}")


def draw_cell(genotype: Genotype, cell: str = "normal", *, title: Optional[str] = None) -> Image.Image:
    """Draw one cell of a genotype as a left-to-right DAG.

    The cell inputs ``c_{k-2}`` and ``c_{k-1}`` are on the left, the intermediate nodes in
    columns by depth, the output ``c_{k}`` on the right; each operation edge is an arrow in the
    operation's colour (:data:`OP_COLOURS`) labelled with its name, and grey arrows show which
    nodes are concatenated into the output.

    Args:
        genotype: a DARTS :class:`~rnasframe.spaces.darts.genotypes.Genotype` (any number of
            intermediate nodes).
        cell: ``"normal"`` or ``"reduce"``.
        title: text above the drawing; ``None`` gives ``"normal cell"`` or ``"reduction cell"``
            and ``""`` leaves the title out.

    Returns:
        An RGB image on a white background, sized to fit the cell.

    Raises:
        ValueError: for an unknown ``cell`` or an invalid genotype.
    """
    _check_cell_name(cell)
    checked = validate_genotype(genotype)
    edges = checked.normal if cell == "normal" else checked.reduce
    concat = checked.normal_concat if cell == "normal" else checked.reduce_concat
    layout = _CellLayout(edges, concat)
    title = _CELL_TITLES[cell] if title is None else title
    title_size = 16
    title_height = _text_height(title_size) + 14 if title else 0.0
    left, top, right, bottom = layout.bounds()
    width = max(right - left + 2 * _MARGIN, _text_width(title, title_size) + 2 * _MARGIN if title else 0)
    canvas = _Canvas(width, bottom - top + 2 * _MARGIN + title_height)
    dx, dy = _MARGIN - left, _MARGIN - top + title_height
    if title:
        canvas.text(_MARGIN - 2, _MARGIN / 2 + title_height / 2, title, title_size, _BLACK)

    def move(point: Point) -> Point:
        return (point[0] + dx, point[1] + dy)

    def move_box(box: Box) -> Box:
        return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)

    # concatenation arrows first, operation edges on top of them
    drawing_order = sorted(range(len(layout.links)), key=lambda i: layout.links[i][2] is not None)
    for index in drawing_order:
        op = layout.links[index][2]
        colour = _CONCAT_COLOUR if op is None else op_colour(op)
        path = [move(p) for p in layout.paths[index]]
        canvas.line(path, colour, 1.6 if op is None else 2.2)
        end_x, end_y = path[-1]
        canvas.polygon([(end_x + _ARROW, end_y), (end_x - 0.5, end_y - 4.2), (end_x - 0.5, end_y + 4.2)], colour)
    for node in layout.nodes:
        kind = 0 if node in (0, 1) else (2 if node == layout.output else 1)
        fill, outline = (_INPUT_STYLE, _NODE_STYLE, _OUTPUT_STYLE)[kind]
        box = move_box(layout.box(node))
        canvas.rounded(box, 7 if kind != 1 else _NODE_HEIGHT / 2, fill, outline, 1.6)
        pieces = _node_text(-1 if node == layout.output else node)
        size = _LABEL_SIZE + 2
        text_width, _ = _rich_size(pieces, size)
        sub_shift = 0.12 * size if any(k == "sub" for k, _ in pieces) else 0.0
        canvas.rich((box[0] + box[2] - text_width) / 2, (box[1] + box[3]) / 2 - sub_shift, pieces, size, _BLACK)
    for index, box in layout.labels.items():
        op = layout.links[index][2]
        assert op is not None
        colour = op_colour(op)
        box = move_box(box)
        canvas.rounded(box, 4, _WHITE, colour, 1.2)
        canvas.text(box[0] + 5, (box[1] + box[3]) / 2, op, _LABEL_SIZE, _darker(colour))
    return canvas.finish()


def _write_png(image: Image.Image, path: Path) -> None:
    """Save through a temporary file and a rename, so a reader never sees half a picture."""
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)


def save_cells(genotype: Genotype, folder: Union[str, "os.PathLike[str]"]) -> List[Path]:
    """Draw both cells of ``genotype`` into ``folder`` as ``cell_normal.png`` and ``cell_reduce.png``.

    Args:
        genotype: a DARTS :class:`~rnasframe.spaces.darts.genotypes.Genotype`.
        folder: where to write (created if missing); existing pictures are replaced atomically.

    Returns:
        The paths written, normal cell first.

    Raises:
        ValueError: for an invalid genotype.
    """
    folder = Path(folder)
    images = [(cell, draw_cell(genotype, cell)) for cell in CELL_NAMES]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for cell, image in images:
        path = folder / f"cell_{cell}.png"
        _write_png(image, path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Evolution of softmax(alpha): small multiples, one panel per edge
# --------------------------------------------------------------------------------------------

_PANEL_W = 176.0
_PANEL_H = 104.0
_PANEL_GAP_X = 14.0
_PANEL_GAP_Y = 12.0
_PANEL_TITLE_H = 20.0
_TICK_SIZE = 11
_PANEL_TITLE_SIZE = 12


def _as_history(history: Any, op_names: Sequence[str]) -> np.ndarray:
    """Validate ``history`` and return it as an ``(epochs, edges, ops)`` float array."""
    if isinstance(op_names, (str, bytes)) or not all(isinstance(name, str) for name in op_names):
        raise ValueError(f"op_names must be a sequence of operation names (str), got {op_names!r}")
    if hasattr(history, "detach"):  # a torch tensor
        history = history.detach().cpu().numpy()
    if isinstance(history, np.ndarray):
        if history.ndim != 3:
            raise ValueError(
                "history must be a list with one (edges, ops) array per epoch, or one "
                f"(epochs, edges, ops) array, got an array of shape {history.shape}"
            )
        history = list(history)
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or len(history) == 0:
        raise ValueError(
            "history must be a non-empty list with one softmax(alpha) array of shape (edges, ops) "
            f"per epoch, got {history!r:.60}"
        )
    arrays = []
    for epoch, weights in enumerate(history):
        if hasattr(weights, "detach"):  # a torch tensor
            weights = weights.detach().cpu().numpy()
        try:
            array = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"history[{epoch}] is not a numeric (edges, ops) array: {error}") from None
        expected = (arrays[0].shape[0] if arrays else None, len(op_names))
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != len(op_names) or (
            expected[0] is not None and array.shape[0] != expected[0]
        ):
            wanted = f"({expected[0] if expected[0] is not None else 'edges'}, {len(op_names)})"
            raise ValueError(
                f"history[{epoch}] must have shape {wanted} (edges x len(op_names)), got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"history[{epoch}] contains non-finite values")
        arrays.append(array)
    return np.stack(arrays)


def _nice_step(span: float, target: int) -> float:
    raw = span / max(1, target)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _ticks(low: float, high: float, target: int = 4) -> List[float]:
    step = _nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + 1e-9 * step:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if step < 1 and abs(round(step * 10**decimals) - step * 10**decimals) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}"


def _triangular_steps(edges: int) -> Optional[int]:
    """``steps`` when ``edges`` is a DARTS cell's edge count (2 + 3 + ... + (steps + 1))."""
    steps, total = 0, 0
    while total < edges:
        total += steps + 2
        steps += 1
    return steps if total == edges else None


def _edge_title(edge: int, steps: Optional[int]) -> _Rich:
    if steps is None:
        return [("text", f"edge {edge}")]
    node, start = 0, 0
    while edge >= start + node + 2:
        start += node + 2
        node += 1
    source = edge - start
    return _node_text(source) + [("arrow", "")] + [("text", str(node))]


def plot_alpha_evolution(
    history: Sequence[Any],
    op_names: Sequence[str],
    title: str = "softmax(alpha) per edge",
    *,
    y_range: Optional[Tuple[float, float]] = None,
) -> Image.Image:
    """Plot how softmax(alpha) of every edge evolved over the epochs, one small panel per edge.

    Each panel has the epochs on its x axis, the weight on its y axis (shared by all panels) and
    one line per operation, coloured as in :func:`draw_cell`; a legend names the operations. When
    the number of edges is that of a DARTS cell (14 for 4 nodes), panel ``(i, j)`` is the edge
    from input ``j`` into intermediate node ``i`` and is titled like ``c_{k-2} -> 0``; otherwise
    panels are titled ``edge 0``, ``edge 1``, ...

    Args:
        history: one array-like of shape ``(edges, ops)`` per epoch (numpy arrays, torch
            tensors or nested lists), the softmax of alpha after that epoch, or all of them as
            one ``(epochs, edges, ops)`` array; epoch ``i`` is drawn at x = ``i + 1``.
        op_names: the name of each column (e.g. :data:`~rnasframe.spaces.darts.PRIMITIVES`).
        title: text above the panels (``""`` for none).
        y_range: ``(low, high)`` of the y axes, e.g. ``(0.0, 1.0)``; ``None`` fits the range of
            the data (with a small margin), which shows small changes better.

    Returns:
        An RGB image on a white background.

    Raises:
        ValueError: for an empty history, arrays of the wrong or of changing shape, non-finite
            values, ``op_names`` of the wrong length or an invalid ``y_range``.
    """
    data = _as_history(history, op_names)
    epochs, edges, ops = data.shape
    if y_range is None:
        low, high = float(data.min()), float(data.max())
        pad = max(0.05 * (high - low), 0.02)
        low, high = max(0.0, low - pad) if low >= 0 else low - pad, high + pad
    else:
        if len(y_range) != 2 or not all(math.isfinite(float(v)) for v in y_range) or y_range[0] >= y_range[1]:
            raise ValueError(f"y_range must be (low, high) with finite low < high, got {y_range!r}")
        low, high = float(y_range[0]), float(y_range[1])
    steps = _triangular_steps(edges)
    if steps is not None:
        rows, columns = steps, steps + 1
        cells = [(node, source) for node in range(steps) for source in range(node + 2)]
    else:
        columns = max(1, math.ceil(math.sqrt(edges * 1.3)))
        rows = math.ceil(edges / columns)
        cells = [(edge // columns, edge % columns) for edge in range(edges)]

    y_ticks = _ticks(low, high)
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else (high - low)
    tick_texts = [_tick_text(v, y_step) for v in y_ticks]
    tick_width = max(_text_width(t, _TICK_SIZE) for t in tick_texts)
    x_low, x_high = (1.0, float(epochs)) if epochs > 1 else (0.0, 2.0)
    x_ticks = [t for t in _ticks(1, max(epochs, 2), 5) if t == int(t) and 1 <= t <= epochs] or [1.0]

    title_size = 16
    title_h = _text_height(title_size) + 16 if title else 6.0
    y_label_w = _text_height(12) + 12
    left = _MARGIN + y_label_w + tick_width + 8
    top = _MARGIN + title_h
    cell_w, cell_h = _PANEL_W + _PANEL_GAP_X, _PANEL_TITLE_H + _PANEL_H + _PANEL_GAP_Y
    grid_w = columns * cell_w - _PANEL_GAP_X
    grid_h = rows * cell_h - _PANEL_GAP_Y

    # legend: swatches and a note, in the empty upper-right triangle when they fit there
    legend_size, legend_row_h = 12, 20.0
    entry_w = max(_text_width(name, legend_size) for name in op_names) + 34
    note = "name above a panel: its strongest operation in the last epoch"
    corner_w = (columns - 2) * cell_w - _PANEL_GAP_X if steps is not None and steps >= 3 else 0.0
    corner_columns = max(1, int(corner_w // entry_w))
    in_corner = (
        corner_w >= max(entry_w, _text_width(note, _TICK_SIZE))
        and (math.ceil(ops / corner_columns) + 1) * legend_row_h <= _PANEL_H
    )
    if in_corner:
        legend_columns = corner_columns
        legend_box = (left + 2 * cell_w + 10, top + _PANEL_TITLE_H)
        legend_h = 0.0
    else:
        legend_columns = max(1, min(ops, int(grid_w // entry_w)))
        legend_h = (math.ceil(ops / legend_columns) + 1) * legend_row_h + 12
        legend_box = (left, 0.0)  # y set below, under the x axis label
    x_label_h = _text_height(_TICK_SIZE) + _text_height(12) + 20
    width = left + grid_w + _MARGIN
    height = top + grid_h + x_label_h + legend_h + _MARGIN
    if not in_corner:
        legend_box = (left, top + grid_h + x_label_h + 8)
    width = max(
        width,
        legend_box[0] + min(legend_columns, ops) * entry_w + _MARGIN,
        legend_box[0] + _text_width(note, _TICK_SIZE) + _MARGIN,
    )
    canvas = _Canvas(width, height)
    if title:
        canvas.text(_MARGIN - 2, _MARGIN / 2 + title_h / 2, title, title_size, _BLACK)

    colours = [op_colour(name, i) for i, name in enumerate(op_names)]
    for edge, (row, column) in enumerate(cells):
        x0 = left + column * cell_w
        y0 = top + row * cell_h + _PANEL_TITLE_H
        box = (x0, y0, x0 + _PANEL_W, y0 + _PANEL_H)

        def to_xy(epoch: float, value: float) -> Point:
            fx = (epoch - x_low) / (x_high - x_low)
            fy = (min(max(value, low), high) - low) / (high - low)
            return (box[0] + 4 + fx * (_PANEL_W - 8), box[3] - 3 - fy * (_PANEL_H - 6))

        canvas.rectangle(box, fill=(250, 250, 250), outline=(200, 200, 200))
        for value in y_ticks:
            y = to_xy(x_low, value)[1]
            canvas.line([(box[0] + 1, y), (box[2] - 1, y)], _LIGHT_GREY, 1.0)
        last = np.sort(data[-1, edge])
        winner = int(np.argmax(data[-1, edge]))
        # the strongest operation of the last epoch, unless tied (as at the uniform start)
        has_winner = ops == 1 or last[-1] - last[-2] > 1e-6 * max(1.0, abs(last[-1]))
        for op in sorted(range(ops), key=lambda o: o == winner):  # the final winner on top
            points = [to_xy(e + 1, float(data[e, edge, op])) for e in range(epochs)]
            canvas.line(points, colours[op], 2.4 if op == winner else 1.6)
            if epochs <= 20:
                for point in points:
                    canvas.dot(point, 2.6 if epochs > 1 else 3.5, colours[op])
        pieces = _edge_title(edge, steps)
        canvas.rich(x0 + 2, y0 - _PANEL_TITLE_H / 2 - 1, pieces, _PANEL_TITLE_SIZE, _BLACK)
        if has_winner:
            best = op_names[winner]
            best_x = box[2] - _text_width(best, _TICK_SIZE) - 1
            canvas.text(best_x, y0 - _PANEL_TITLE_H / 2 - 1, best, _TICK_SIZE, _darker(colours[winner]))
        if column == 0:
            for value, text in zip(y_ticks, tick_texts):
                y = to_xy(x_low, value)[1]
                canvas.text(box[0] - 6 - _text_width(text, _TICK_SIZE), y, text, _TICK_SIZE, _GREY)
        if row == rows - 1 or (steps is None and edge + columns >= edges):
            for value in x_ticks:
                x = to_xy(value, low)[0]
                canvas.line([(x, box[3]), (x, box[3] + 4)], _GREY, 1.0)
                text = str(int(value))
                canvas.text(x - _text_width(text, _TICK_SIZE) / 2, box[3] + 6 + _text_height(_TICK_SIZE) / 2,
                            text, _TICK_SIZE, _GREY)
    canvas.text(left + grid_w / 2 - _text_width("epoch", 12) / 2,
                top + grid_h + _text_height(_TICK_SIZE) + 12 + _text_height(12) / 2, "epoch", 12, _BLACK)
    canvas.paste_rotated((_MARGIN + y_label_w / 2, top + grid_h / 2), [("text", "softmax(alpha)")], 12, _BLACK)
    for i, name in enumerate(op_names):
        lx = legend_box[0] + (i % legend_columns) * entry_w
        ly = legend_box[1] + (i // legend_columns) * legend_row_h + legend_row_h / 2
        canvas.line([(lx, ly), (lx + 22, ly)], colours[i], 3.0)
        canvas.text(lx + 28, ly, name, legend_size, _darker(colours[i], 0.8))
    note_y = legend_box[1] + (math.ceil(ops / legend_columns) + 0.5) * legend_row_h + 2
    canvas.text(legend_box[0], note_y, note, _TICK_SIZE, _GREY)
    return canvas.finish()


def _check_picture_name(name: Any) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\:") or name in (".", ".."):
        raise ValueError(f"history_by_cell keys must be plain names usable in a file name, got {name!r}")
    return name


def save_alpha_evolution(
    history_by_cell: Mapping[str, Sequence[Any]],
    op_names: Sequence[str],
    folder: Union[str, "os.PathLike[str]"],
) -> List[Path]:
    """Plot the evolution of softmax(alpha) of each cell into ``folder`` as ``alpha_<cell>.png``.

    Args:
        history_by_cell: cell name (``"normal"``, ``"reduce"``, or any plain name) to its history,
            one ``(edges, ops)`` array per epoch (see :func:`plot_alpha_evolution`). Cells with an
            empty history are skipped.
        op_names: the name of each column of the arrays.
        folder: where to write (created if missing); existing pictures are replaced atomically.

    Returns:
        The paths written, in the order of ``history_by_cell``.

    Raises:
        ValueError: for a key that cannot be a file name or an invalid history.
    """
    folder = Path(folder)
    images = []
    for name, history in history_by_cell.items():
        name = _check_picture_name(name)
        if isinstance(history, Sequence) and not isinstance(history, (str, bytes)) and len(history) == 0:
            continue
        title = f"softmax(alpha) of the {_CELL_TITLES.get(name, name + ' cell')}, per edge"
        images.append((name, plot_alpha_evolution(history, op_names, title)))
    paths = []
    if images:
        folder.mkdir(parents=True, exist_ok=True)
    for name, image in images:
        path = folder / f"alpha_{name}.png"
        _write_png(image, path)
        paths.append(path)
    return paths
