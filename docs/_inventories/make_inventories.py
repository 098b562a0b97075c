"""Write the small intersphinx inventories that let the docs build offline.

The documentation links to Python, PyTorch, NumPy, torchvision, Pillow, tensorboardX and Matplotlib. Sphinx
would normally download each project's ``objects.inv``; CI has no internet, so the objects our
pages and docstrings actually reference are listed here, each with the real address of its
documentation, and written as Sphinx inventories (format version 2) next to this script. The base
address of each project is in ``intersphinx_mapping`` (``docs/conf.py``) and must match ``BASES``.

The lists hold what the documentation links to, plus the built-in types and ``typing`` names
that autodoc writes into signatures (which of them appear depends on the Python and Sphinx
versions). When the nitpicky build reports ``reference target not found`` for an object of one of
these projects, add it here with the address of its documentation, and run::

    python docs/_inventories/make_inventories.py
    python docs/_inventories/make_inventories.py --unused docs/_build/html   # entries no page uses

Names are the ones autodoc and the docstrings produce, which are sometimes a class' defining path
rather than its documented alias (``torch.nn.modules.module.Module`` for ``torch.nn.Module``);
both point to the same page. An address without ``#`` is a page that documents the object without
an anchor of its own.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent

#: Project -> (display name, version, base address). The base must match ``docs/conf.py``.
BASES: Dict[str, Tuple[str, str, str]] = {
    "python": ("Python", "3", "https://docs.python.org/3/"),
    "torch": ("PyTorch", "stable", "https://docs.pytorch.org/docs/stable/"),
    "numpy": ("NumPy", "stable", "https://numpy.org/doc/stable/"),
    "torchvision": ("Torchvision", "stable", "https://docs.pytorch.org/vision/stable/"),
    "pillow": ("Pillow", "stable", "https://pillow.readthedocs.io/en/stable/"),
    "tensorboardx": ("tensorboardX", "latest", "https://tensorboardx.readthedocs.io/en/latest/"),
    "matplotlib": ("Matplotlib", "stable", "https://matplotlib.org/stable/"),
}

# (name, Sphinx object type, address relative to the project's base)
PYTHON: List[Tuple[str, str, str]] = [
    # built-in types and constants
    ("None", "py:data", "library/constants.html#None"),
    ("True", "py:data", "library/constants.html#True"),
    ("False", "py:data", "library/constants.html#False"),
    ("object", "py:class", "library/functions.html#object"),
    ("bool", "py:class", "library/functions.html#bool"),
    ("int", "py:class", "library/functions.html#int"),
    ("float", "py:class", "library/functions.html#float"),
    ("str", "py:class", "library/stdtypes.html#str"),
    ("bytes", "py:class", "library/stdtypes.html#bytes"),
    ("list", "py:class", "library/stdtypes.html#list"),
    ("tuple", "py:class", "library/stdtypes.html#tuple"),
    ("dict", "py:class", "library/stdtypes.html#dict"),
    ("set", "py:class", "library/stdtypes.html#set"),
    ("frozenset", "py:class", "library/stdtypes.html#frozenset"),
    ("type", "py:class", "library/functions.html#type"),
    # exceptions
    ("BaseException", "py:exception", "library/exceptions.html#BaseException"),
    ("Exception", "py:exception", "library/exceptions.html#Exception"),
    ("AssertionError", "py:exception", "library/exceptions.html#AssertionError"),
    ("FileExistsError", "py:exception", "library/exceptions.html#FileExistsError"),
    ("FileNotFoundError", "py:exception", "library/exceptions.html#FileNotFoundError"),
    ("ImportError", "py:exception", "library/exceptions.html#ImportError"),
    ("KeyError", "py:exception", "library/exceptions.html#KeyError"),
    ("NotImplementedError", "py:exception", "library/exceptions.html#NotImplementedError"),
    ("OSError", "py:exception", "library/exceptions.html#OSError"),
    ("RuntimeError", "py:exception", "library/exceptions.html#RuntimeError"),
    ("SystemExit", "py:exception", "library/exceptions.html#SystemExit"),
    ("TypeError", "py:exception", "library/exceptions.html#TypeError"),
    ("ValueError", "py:exception", "library/exceptions.html#ValueError"),
    # typing and collections.abc (autodoc writes annotations with these names)
    ("typing.Any", "py:data", "library/typing.html#typing.Any"),
    ("typing.Callable", "py:data", "library/typing.html#typing.Callable"),
    ("typing.ClassVar", "py:data", "library/typing.html#typing.ClassVar"),
    ("typing.Dict", "py:class", "library/typing.html#typing.Dict"),
    ("typing.FrozenSet", "py:class", "library/typing.html#typing.FrozenSet"),
    ("typing.Iterable", "py:class", "library/typing.html#typing.Iterable"),
    ("typing.Iterator", "py:class", "library/typing.html#typing.Iterator"),
    ("typing.List", "py:class", "library/typing.html#typing.List"),
    ("typing.Mapping", "py:class", "library/typing.html#typing.Mapping"),
    ("typing.MutableMapping", "py:class", "library/typing.html#typing.MutableMapping"),
    ("typing.Optional", "py:data", "library/typing.html#typing.Optional"),
    ("typing.Sequence", "py:class", "library/typing.html#typing.Sequence"),
    ("typing.Set", "py:class", "library/typing.html#typing.Set"),
    ("typing.Tuple", "py:data", "library/typing.html#typing.Tuple"),
    ("typing.Type", "py:class", "library/typing.html#typing.Type"),
    ("typing.Union", "py:data", "library/typing.html#typing.Union"),
    ("collections.abc.Callable", "py:class", "library/collections.abc.html#collections.abc.Callable"),
    ("collections.abc.Iterable", "py:class", "library/collections.abc.html#collections.abc.Iterable"),
    ("collections.abc.Iterator", "py:class", "library/collections.abc.html#collections.abc.Iterator"),
    ("collections.abc.Mapping", "py:class", "library/collections.abc.html#collections.abc.Mapping"),
    ("collections.abc.MutableMapping", "py:class", "library/collections.abc.html#collections.abc.MutableMapping"),
    ("collections.abc.Sequence", "py:class", "library/collections.abc.html#collections.abc.Sequence"),
    # other standard modules
    ("abc.ABC", "py:class", "library/abc.html#abc.ABC"),
    ("argparse", "py:module", "library/argparse.html#module-argparse"),
    ("argparse.ArgumentParser", "py:class", "library/argparse.html#argparse.ArgumentParser"),
    ("logging", "py:module", "library/logging.html#module-logging"),
    ("os.PathLike", "py:class", "library/os.html#os.PathLike"),
    ("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path"),
    ("random", "py:module", "library/random.html#module-random"),
]

TORCH: List[Tuple[str, str, str]] = [
    ("torch", "py:module", "torch.html#module-torch"),
    ("torch.Tensor", "py:class", "tensors.html#torch.Tensor"),
    ("torch.device", "py:class", "tensor_attributes.html#torch.device"),
    ("torch.dtype", "py:class", "tensor_attributes.html#torch.dtype"),
    ("torch.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
    ("torch._C.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
    ("torch.save", "py:function", "generated/torch.save.html#torch.save"),
    ("torch.autograd.grad", "py:function", "generated/torch.autograd.grad.html#torch.autograd.grad"),
    ("torch.compile", "py:function", "generated/torch.compile.html#torch.compile"),
    ("torch.manual_seed", "py:function", "generated/torch.manual_seed.html#torch.manual_seed"),
    ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
    ("torch.nn.modules.module.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
    ("torch.nn.Identity", "py:class", "generated/torch.nn.Identity.html#torch.nn.Identity"),
    ("torch.nn.modules.linear.Identity", "py:class", "generated/torch.nn.Identity.html#torch.nn.Identity"),
    ("torch.nn.functional.kl_div", "py:function", "generated/torch.nn.functional.kl_div.html#torch.nn.functional.kl_div"),
    ("torch.nn.Sequential", "py:class", "generated/torch.nn.Sequential.html#torch.nn.Sequential"),
    ("torch.nn.modules.container.Sequential", "py:class", "generated/torch.nn.Sequential.html#torch.nn.Sequential"),
    ("torch.nn.Conv2d", "py:class", "generated/torch.nn.Conv2d.html#torch.nn.Conv2d"),
    ("torch.nn.modules.conv.Conv2d", "py:class", "generated/torch.nn.Conv2d.html#torch.nn.Conv2d"),
    ("torch.nn.Parameter", "py:class", "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter"),
    ("torch.nn.parameter.Parameter", "py:class", "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter"),
    # The page of BatchNorm2d documents the class only; its forward is inherited and has no anchor.
    ("torch.nn.BatchNorm2d.forward", "py:method", "generated/torch.nn.BatchNorm2d.html"),
    ("torch.nn.parallel.DistributedDataParallel", "py:class", "generated/torch.nn.parallel.DistributedDataParallel.html#torch.nn.parallel.DistributedDataParallel"),
]

NUMPY: List[Tuple[str, str, str]] = [
    ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    ("numpy.random.seed", "py:function", "reference/random/generated/numpy.random.seed.html#numpy.random.seed"),
]

TORCHVISION: List[Tuple[str, str, str]] = [
    ("torchvision.datasets.CIFAR10", "py:class", "generated/torchvision.datasets.CIFAR10.html#torchvision.datasets.CIFAR10"),
    ("torchvision.ops.stochastic_depth", "py:function", "generated/torchvision.ops.stochastic_depth.html#torchvision.ops.stochastic_depth"),
    ("torchvision.ops.StochasticDepth", "py:class", "generated/torchvision.ops.StochasticDepth.html#torchvision.ops.StochasticDepth"),
]

MATPLOTLIB: List[Tuple[str, str, str]] = [
    ("matplotlib.pyplot", "py:module", "api/pyplot_summary.html#module-matplotlib.pyplot"),
    ("matplotlib.figure.Figure", "py:class", "api/_as_gen/matplotlib.figure.Figure.html#matplotlib.figure.Figure"),
    ("matplotlib.axes.Axes", "py:class", "api/_as_gen/matplotlib.axes.Axes.html#matplotlib.axes.Axes"),
]

PILLOW: List[Tuple[str, str, str]] = [
    ("PIL.Image.Image", "py:class", "reference/Image.html#PIL.Image.Image"),
    ("PIL.ImageFont.load_default", "py:function", "reference/ImageFont.html#PIL.ImageFont.load_default"),
]

TENSORBOARDX: List[Tuple[str, str, str]] = [
    ("tensorboardX.SummaryWriter", "py:class", "tensorboard.html#tensorboardX.SummaryWriter"),
]

OBJECTS: Dict[str, List[Tuple[str, str, str]]] = {
    "python": PYTHON,
    "torch": TORCH,
    "numpy": NUMPY,
    "torchvision": TORCHVISION,
    "pillow": PILLOW,
    "tensorboardx": TENSORBOARDX,
    "matplotlib": MATPLOTLIB,
}


def inventory_bytes(project: str, version: str, objects: List[Tuple[str, str, str]]) -> bytes:
    """Return a Sphinx inventory (version 2) holding ``objects``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode("utf-8")
    lines = []
    for name, object_type, address in sorted(objects):
        if " " in name or ":" not in object_type:
            raise ValueError(f"bad inventory entry {(name, object_type, address)!r}")
        priority = 1
        lines.append(f"{name} {object_type} {priority} {address} -\n")
    return header + zlib.compress("".join(lines).encode("utf-8"), 9)


def unused(html_dir: Path) -> List[str]:
    """Entries whose address appears in no page of an HTML build (candidates for removal)."""
    pages = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in html_dir.rglob("*.html"))
    found = []
    for key, objects in OBJECTS.items():
        base = BASES[key][2]
        for name, object_type, address in objects:
            if f'href="{base}{address}"' not in pages:
                found.append(f"{key}: {name} ({object_type})")
    return found


def main(argv: List[str]) -> int:
    """Write one ``<project>.inv`` per entry of :data:`OBJECTS` next to this script.

    With ``--unused HTML_DIR``, list instead the entries that no page of that build links to.
    """
    if argv[:1] == ["--unused"]:
        for line in unused(Path(argv[1])):
            print(line)
        return 0
    for key, objects in OBJECTS.items():
        title, version, _ = BASES[key]
        names = [name for name, _, _ in objects]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SystemExit(f"{key}: listed twice: {duplicates}")
        path = HERE / f"{key}.inv"
        data = inventory_bytes(title, version, objects)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(HERE.parent.parent)} ({len(objects)} objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
