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

from make_inventories import BASES as INVENTORY_BASES  # noqa: E402

import rnasframe  # noqa: E402  (the installed package; `pip install -e .[docs]`)

# -- Project ------------------------------------------------------------------------------------

project = "rnasframe"
author = "the rnasframe authors"
copyright = "2026, the rnasframe authors"
release = rnasframe.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ---------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "myst_parser",
    "gin_reference",  # docs/_ext: the configuration reference, generated from gin's registry
    "autodoc_fixes",  # docs/_ext: cross-references by re-exported paths, attrs signatures
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
html_static_path = ["_static"]
exclude_patterns = ["_build", "_inventories", "_ext", "_templates"]

# -- API reference (api.rst) --------------------------------------------------------------------
# autosummary walks the packages listed in api.rst and writes one page per module, with the
# template _templates/autosummary/module.rst: each class and function documented once, in the
# module that defines it.
autosummary_generate = True
autosummary_ignore_module_all = True  # walk every public submodule, not only those in __all__
autosummary_imported_members = False

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
    # attrs' generic Attribute in the type of rnasframe.validation.Validator (a string in a type
    # alias, shown as written); we ship no inventory for attrs.
    (r"py:class", r"attrs\.Attribute\[.*\]"),
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
