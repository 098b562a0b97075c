"""gin glue: one place that registers every configurable, resolves and strictly parses config files.

Every shipped class works without gin; gin only composes them. Bind objects, not strings::

    RobustObjective.regularizers = [@PerturbationConsistency()]
    PerturbationConsistency.perturbation = @PGDMaximizer()
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import sys
import tokenize
from pathlib import Path
from typing import Iterable, List, Sequence

import gin

__all__ = [
    "CONFIGURABLE_MODULES",
    "MIXIN_MARKER",
    "ConfigError",
    "config_dirs",
    "is_mixin",
    "packaged_configs",
    "parse_gin",
    "register_configurables",
    "resolve_gin_file",
]

#: The first line of a mix-in: a gin file that overlays a base config and cannot run alone.
MIXIN_MARKER = "# mix-in:"

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


def packaged_configs() -> Path:
    """The folder of the gin files shipped inside the package (``rnasframe/configs``)."""
    return Path(str(importlib.resources.files("rnasframe") / "configs"))


def config_dirs(search_dirs: Sequence[Path] = ()) -> List[Path]:
    """Where bare gin names are looked up: ``search_dirs`` (e.g. a clone's ``examples/``), then the packaged configs."""
    folders = [Path(d) for d in search_dirs]
    packaged = packaged_configs()
    return folders if packaged in folders else [*folders, packaged]


def resolve_gin_file(name: str, search_dirs: Sequence[Path] = ()) -> Path:
    """Find a gin file: ``name`` as a path, else a bare name (``max.gin`` or ``max``) in :func:`config_dirs`.

    Raises:
        ConfigError: not found; the message names it and lists the available names.
    """
    candidate = Path(name).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    folders = config_dirs(search_dirs)
    for directory in folders:
        for option in (directory / name, directory / f"{name}.gin"):
            if option.is_file():
                return option.resolve()
    available = sorted({p.name for d in folders if d.is_dir() for p in d.glob("*.gin")})
    raise ConfigError(
        f"gin file {name!r} not found as a path nor among the configs of {', '.join(str(d) for d in folders)}; "
        f"available: {', '.join(available) or 'none'}"
    )


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def is_mixin(path: Path) -> bool:
    """Whether the gin file at ``path`` is a mix-in: its first line starts with :data:`MIXIN_MARKER`."""
    return _first_line(path).startswith(MIXIN_MARKER)


def _check_base_first(paths: Sequence[Path]) -> None:
    """Raise :class:`ConfigError` when the first file is a mix-in (an overlay given without a base)."""
    if paths and is_mixin(paths[0]):
        usage = _first_line(paths[0])[len(MIXIN_MARKER):].strip()
        bases = sorted(p.name for p in packaged_configs().glob("*.gin") if not is_mixin(p))
        raise ConfigError(
            f"{paths[0].name} is a mix-in and cannot run alone: {usage} (base configs: {', '.join(bases)})"
        )


def parse_gin(files: Sequence[str], bindings: Sequence[str] = (), search_dirs: Sequence[Path] = ()) -> List[Path]:
    """Register configurables, then parse ``files`` and ``bindings`` strictly (unknown names fail).

    Bare file names are resolved in ``search_dirs`` and the package's configs; the first file must
    be a base config, not a mix-in (see :data:`MIXIN_MARKER`); ``include`` statements inside files are
    resolved against the folders of the given files and ``search_dirs``, and so are gin ``import``
    statements: a user's module (a custom ``Perturbation``, say) that sits beside the gin file that
    imports it is found without installing it.

    Returns:
        The resolved paths of ``files``.

    Raises:
        ConfigError: a file is missing, a mix-in comes first, a literal is malformed, or a binding names a configurable
            or parameter that does not exist. The message carries the whole explanation.
    """
    register_configurables()
    paths = [resolve_gin_file(f, search_dirs) for f in files]
    _check_base_first(paths)
    for directory in [*(p.parent for p in paths), *config_dirs(search_dirs)]:
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
        raise ConfigError(
            f"malformed gin literal (unbalanced bracket or quote?) in {_sources(files, bindings)}: {error}"
        ) from None
    except (ValueError, TypeError, SyntaxError, KeyError, OSError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"invalid gin configuration in {_sources(files, bindings)}: {message}") from None
    finally:
        logging.disable(logging.NOTSET)
    return paths


def _sources(files: Sequence[str], bindings: Sequence[str]) -> str:
    parts = [*(f"--gin_file={f}" for f in files), *(f"--gin_param={b!r}" for b in bindings)]
    return " ".join(parts) or "(nothing)"
