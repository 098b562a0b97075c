"""gin glue: one place that registers every configurable, resolves and strictly parses config files.

Every shipped class works without gin; gin only composes them. Bind objects, not strings::

    RobustObjective.regularizers = [@PerturbationConsistency()]
    PerturbationConsistency.perturbation = @PGDMaximizer()
"""

from __future__ import annotations

import importlib
import logging
import sys
import tokenize
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import gin

__all__ = ["ConfigError", "register_configurables", "resolve_gin_file", "parse_gin", "CONFIGURABLE_MODULES"]

#: Modules whose import registers rnasframe's configurables with gin.
CONFIGURABLE_MODULES = (
    "rnasframe.spaces.darts",
    "rnasframe.perturbations",
    "rnasframe.similarity",
    "rnasframe.regularizers",
    "rnasframe.objective",
    "rnasframe.bilevel",
    "rnasframe.data",
    "rnasframe.engine",
    "rnasframe.robustness",
    "rnasframe.training",
)


class ConfigError(ValueError):
    """A gin file or binding is missing, malformed or names something that does not exist."""


def register_configurables(extra_modules: Iterable[str] = ()) -> None:
    """Import every module that defines configurables (plus ``extra_modules``, e.g. a user's plugin)."""
    for module in (*CONFIGURABLE_MODULES, *extra_modules):
        importlib.import_module(module)


def resolve_gin_file(name: str, search_dirs: Sequence[Path] = ()) -> Path:
    """Find a gin file: ``name`` as a path, else a bare name (``max.gin`` or ``max``) in ``search_dirs``.

    Raises:
        ConfigError: not found; the message lists the files available in ``search_dirs``.
    """
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    for directory in search_dirs:
        for option in (directory / name, directory / f"{name}.gin"):
            if option.is_file():
                return option.resolve()
    available = sorted({p.name for d in search_dirs if d.is_dir() for p in d.glob("*.gin")})
    where = ", ".join(str(d) for d in search_dirs) or "(no search folder)"
    raise ConfigError(
        f"gin file {name!r} not found as a path nor in {where}; available: {', '.join(available) or 'none'}"
    )


def parse_gin(files: Sequence[str], bindings: Sequence[str] = (), search_dirs: Sequence[Path] = ()) -> List[Path]:
    """Register configurables, then parse ``files`` and ``bindings`` strictly (unknown names fail).

    Bare file names are resolved in ``search_dirs``; ``include`` statements inside files are
    resolved against the folders of the given files and ``search_dirs``, and so are gin ``import``
    statements: a user's module (a custom ``Perturbation``, say) that sits beside the gin file that
    imports it is found without installing it.

    Returns:
        The resolved paths of ``files``.

    Raises:
        ConfigError: a file is missing, a literal is malformed, or a binding names a configurable
            or parameter that does not exist. The message carries the whole explanation.
    """
    register_configurables()
    paths = [resolve_gin_file(f, search_dirs) for f in files]
    for directory in [*(p.parent for p in paths), *search_dirs]:
        if str(directory) not in gin.config._LOCATION_PREFIXES:  # include search path
            gin.add_config_file_search_path(str(directory))
        if str(directory) not in sys.path:  # gin `import` statements
            sys.path.append(str(directory))
    # gin's resource reader logs "Path not found" at ERROR level for every search folder that
    # does not hold an included file, before it finds the right one: silence it while parsing.
    logging.disable(logging.ERROR)
    try:
        gin.parse_config_files_and_bindings([str(p) for p in paths], list(bindings), skip_unknown=False)
    except tokenize.TokenError as error:
        raise ConfigError(f"malformed gin literal (unbalanced bracket or quote?) in {_sources(files, bindings)}: {error}") from None
    except (ValueError, TypeError, SyntaxError, KeyError, OSError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"invalid gin configuration in {_sources(files, bindings)}: {message}") from None
    finally:
        logging.disable(logging.NOTSET)
    return paths


def _sources(files: Sequence[str], bindings: Sequence[str]) -> str:
    parts = [*(f"--gin_file={f}" for f in files), *(f"--gin_param={b!r}" for b in bindings)]
    return " ".join(parts) or "(nothing)"
