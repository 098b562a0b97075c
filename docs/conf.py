"""Sphinx configuration of rnasframe's documentation.

Build (both must finish without a single warning; CI runs them through ``tests/test_docs.py``)::

    sphinx-build -W -n --keep-going -b html    docs docs/_build/html
    sphinx-build -W -n --keep-going -b doctest docs docs/_build/doctest

The build is offline: intersphinx reads the small inventories in ``docs/_inventories/`` (made by
``docs/_inventories/make_inventories.py``), never the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS / "_inventories"))

import rnasframe  # noqa: E402  (the installed package; `pip install -e .[docs]`)
from make_inventories import BASES as INVENTORY_BASES  # noqa: E402

# -- Project ------------------------------------------------------------------------------------

project = "rnasframe"
author = "the rnasframe authors"
copyright = "2026, the rnasframe authors"  # noqa: A001 - Sphinx' name
release = rnasframe.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ---------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "myst_parser",
    "rnasframe_docs",  # docs/_ext: generated API and configuration pages, optional pages
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path: list[str] = []
# Pictures drawn by docs/make_pictures.py (the folder may not exist in a fresh checkout).
html_static_path = ["_static"] if (DOCS / "_static").is_dir() else []
exclude_patterns = ["_build", "_inventories", "_ext"]

# -- Pages that other people write in Markdown --------------------------------------------------
# Each key is the page (a Markdown file, without its suffix); the value is our stand-in, shown
# while that file does not exist. Link to them with ``.. rnasframe-toctree::`` and ``:optdoc:``.
rnasframe_optional_pages = {
    "performance": "_stubs/performance",
    "reduced_scale_study": "_stubs/reduced_scale_study",
    "tutorials/threat_model": "tutorials/threat_model_stand_in",
}
for _page, _stand_in in rnasframe_optional_pages.items():
    if (DOCS / f"{_page}.md").is_file():
        exclude_patterns.append(f"{_stand_in}.rst")

# -- API reference ------------------------------------------------------------------------------
# The only list of documented modules: one line per module, grouped into the sections of the API
# page. Every public name (``__all__``) of a listed module is documented, once, in the deepest
# listed module that exports it.
rnasframe_api_modules = [
    ("The method", [
        "rnasframe",
        "rnasframe.objective",
        "rnasframe.regularizers",
        "rnasframe.bilevel",
        "rnasframe.engine",
    ]),
    ("Interfaces", [
        "rnasframe.interfaces",
    ]),
    ("Plugins", [
        "rnasframe.perturbations",
        "rnasframe.similarity",
        "rnasframe.spaces",
        "rnasframe.spaces.darts",
        "rnasframe.spaces.darts.genotypes",
        "rnasframe.spaces.darts.supernet",
        "rnasframe.spaces.darts.network",
        "rnasframe.spaces.darts.operations",
        "rnasframe.spaces.darts.fastops",
        "rnasframe.spaces.darts.lean",
        "rnasframe.spaces.darts.plot",
    ]),
    ("Training and evaluation", [
        "rnasframe.training",
        "rnasframe.robustness",
        "rnasframe.evaluation",
    ]),
    ("Testing your plugins", [
        "rnasframe.testing",
        "rnasframe.testing.mixins",
        "rnasframe.testing.strategies",
    ]),
    ("Infrastructure", [
        "rnasframe.data",
        "rnasframe.checkpoint",
        "rnasframe.config",
        "rnasframe.cli",
        "rnasframe.distributed",
        "rnasframe.run_folder",
        "rnasframe.seeding",
        "rnasframe.model_state",
        "rnasframe.modules",
        "rnasframe.validation",
    ]),
]
# Modules that are still being written: one that does not import is left out with a message instead
# of failing the build. Take a module off this list once it is stable.
rnasframe_api_optional = [
    "rnasframe.spaces.darts.plot",
    "rnasframe.training",
    "rnasframe.robustness",
    "rnasframe.testing",
    "rnasframe.testing.mixins",
    "rnasframe.testing.strategies",
]
# Run before the examples of every API page (each page adds ``from <module> import *``).
rnasframe_doctest_imports = ["import torch"]

# -- autodoc and napoleon (Google style) ----------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_include_init_with_doc = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- Cross-references ---------------------------------------------------------------------------

nitpicky = True
# One entry per inventory written by _inventories/make_inventories.py (its BASES is the one list of
# projects and their addresses); the inventories are local files, so nothing is downloaded.
intersphinx_mapping = {key: (base, f"_inventories/{key}.inv") for key, (_, _, base) in INVENTORY_BASES.items()}
intersphinx_disabled_reftypes = ["std:doc"]
# References that cannot be linked, each with its reason. Keep this list short: every other
# reference must resolve (nitpicky mode turns an unresolved one into a warning, -W into an error).
nitpick_ignore = [
    # PyTorch's private base of BatchNorm1d/2d/3d: autodoc names it in a signature, PyTorch does not
    # document it (its public subclasses are in the torch inventory).
    ("py:class", "torch.nn.modules.batchnorm._BatchNorm"),
]
nitpick_ignore_regex = [
    # Hypothesis (used by the pytest mix-ins and strategies of rnasframe.testing): we ship no
    # inventory for it, because we could not check the anchors of its pages offline; ``st`` is the
    # usual alias of hypothesis.strategies in annotations.
    (r"py:.*", r"(hypothesis|st)\..*"),
]

# -- doctest ------------------------------------------------------------------------------------

# Every test starts from the same seed; REPO is the checkout (examples/ holds the gin files).
doctest_global_setup = f"""
from pathlib import Path
import torch
REPO = Path({str(DOCS.parent)!r})
torch.manual_seed(0)
"""
doctest_test_doctest_blocks = "default"

# -- MyST (Markdown pages) ----------------------------------------------------------------------

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# -- HTML ---------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"rnasframe {release}"
pygments_style = "sphinx"
pygments_dark_style = "monokai"
