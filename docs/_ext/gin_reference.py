"""The configuration reference: every gin configurable of rnasframe, its parameters and defaults.

At every build (``builder-inited``) this imports every module of rnasframe and its plugin
packages, reads gin's registry, and writes ``_generated/configurables.inc`` (included by
``configuration.rst``): one entry per configurable with each parameter's default, read from the
class itself (its attrs fields, or its signature), and its description, read from the ``Args:`` or
``Attributes:`` section of the docstring. A new configurable appears with no edit here.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import attrs
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The packages whose modules are imported to fill gin's registry (the plugins live in other folders).
PACKAGES = ("rnasframe", "rnasframe.spaces", "rnasframe.perturbations", "rnasframe.similarity")

_SECTION = re.compile(r"^(Args|Arguments|Attributes):\s*$")
_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def import_all() -> List[str]:
    """Import every module of :data:`PACKAGES`; returns the names of those that failed (and why)."""
    failed = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            try:
                importlib.import_module(info.name)
            except Exception as error:
                failed.append(f"{info.name} ({error})")
    return failed


def registered() -> Dict[str, Any]:
    """rnasframe's entries of gin's registry: full gin name -> gin's record (``.name``, ``.wrapped``)."""
    import gin.config

    registry = gin.config._REGISTRY  # gin has no public accessor for its registry
    return {selector: record for selector, record in registry.items() if record.module.startswith("rnasframe")}


def parameter_descriptions(docstring: Optional[str]) -> Dict[str, str]:
    """The Google-style ``Args:`` and ``Attributes:`` entries of a docstring: name -> description."""
    found: Dict[str, str] = {}
    current: Optional[str] = None
    indent: Optional[int] = None
    in_section = False
    for line in inspect.cleandoc(docstring or "").splitlines():
        if _SECTION.match(line):
            in_section, current, indent = True, None, None
            continue
        if not in_section or not line.strip():
            continue
        if not line.startswith(" "):  # the next section, at the docstring's own level
            in_section = False
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        match = _ITEM.match(line.strip()) if depth == indent else None
        if match:
            current = match.group(1)
            found[current] = match.group(2)
        elif current is not None:
            found[current] += " " + line.strip()
    return found


def _text(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return f"``{text if len(text) <= limit else text[: limit - 4] + ' ...'}``"


def parameters(wrapped: Any) -> Iterator[Tuple[str, str, str]]:
    """``(name, default, annotation)`` of each parameter gin can bind on a class or a function."""
    if inspect.isclass(wrapped) and attrs.has(wrapped):
        for field in attrs.fields(wrapped):
            if not field.init:
                continue
            default = field.default
            if default is attrs.NOTHING:
                shown = "(required)"
            elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                try:
                    shown = _text(default.factory() if not default.takes_self else None)
                except Exception:
                    shown = f"made by ``{getattr(default.factory, '__qualname__', 'a factory')}()``"
            else:
                shown = _text(default)
            annotation = field.type if isinstance(field.type, str) else inspect.formatannotation(field.type)
            yield field.alias or field.name.lstrip("_"), shown, annotation or ""
        return
    signature = inspect.signature(wrapped.__init__ if inspect.isclass(wrapped) else wrapped)
    for index, parameter in enumerate(signature.parameters.values()):
        if (inspect.isclass(wrapped) and index == 0) or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        shown = "(required)" if parameter.default is parameter.empty else _text(parameter.default)
        annotation = parameter.annotation
        if annotation is parameter.empty:
            annotation = ""
        yield parameter.name, shown, annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _cell(lead: str, text: str) -> List[str]:
    lines = textwrap.wrap(" ".join(text.split()) or " ", width=100, break_long_words=False, break_on_hyphens=False)
    return [lead + lines[0], *(" " * len(lead) + line for line in lines[1:])]


def reference_text() -> str:
    """The rst of the configuration reference, from gin's registry."""
    records = registered()
    count: Dict[str, int] = {}
    for record in records.values():
        count[record.name] = count.get(record.name, 0) + 1
    lines = [".. Generated by docs/_ext/gin_reference.py at every build; do not edit.", ""]
    lines += [f"rnasframe registers **{len(records)}** configurables, grouped by the module that defines them.", ""]
    modules = sorted({record.module for record in records.values()})
    for module in modules:
        lines += [f"``{module}``", "-" * (len(module) + 4), "", f".. currentmodule:: {module}", ""]
        for selector, record in sorted((s, r) for s, r in records.items() if r.module == module):
            wrapped = record.wrapped
            name = record.name if count[record.name] == 1 else selector
            role = "class" if inspect.isclass(wrapped) else "func"
            summary = " ".join((inspect.getdoc(wrapped) or "").split("\n\n")[0].split())
            lines += [f".. _gin-{selector}:", "", name, "~" * len(name), ""]
            lines += [f"Python: :py:{role}:`{module}.{wrapped.__qualname__}`; full gin name ``{selector}``.", ""]
            lines += [summary, ""] if summary else []
            descriptions = parameter_descriptions(inspect.getdoc(wrapped))
            denied, allowed = set(record.denylist or ()), set(record.allowlist or ())
            rows = [p for p in parameters(wrapped) if p[0] not in denied and (not allowed or p[0] in allowed)]
            if not rows:
                lines += ["No parameters.", ""]
                continue
            lines += [".. list-table::", "   :header-rows: 1", "   :widths: 22 30 48", ""]
            lines += ["   * - Binding", "     - Default", "     - Description"]
            for parameter, default, annotation in rows:
                description = descriptions.get(parameter, "")
                description = re.sub(r":(attr|meth):`(\w+)`", rf":\1:`~{module}.{wrapped.__qualname__}.\2`", description)
                description = f"({annotation}) {description}" if annotation else description
                lines += _cell("   * - ", f"``{name}.{parameter}``")
                lines += _cell("     - ", default) + _cell("     - ", description)
            lines.append("")
    return "\n".join([*lines, ".. currentmodule:: None", ""])


def generate(app: Sphinx) -> None:
    """``builder-inited``: import everything, then write ``_generated/configurables.inc``."""
    for failure in import_all():
        logger.warning("gin_reference: cannot import %s", failure)
    path = Path(app.srcdir) / "_generated" / "configurables.inc"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = reference_text()
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # keeps incremental builds quiet
        path.write_text(text, encoding="utf-8")


def setup(app: Sphinx) -> Dict[str, Any]:
    """Write the configuration reference at the start of every build."""
    app.connect("builder-inited", generate)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}
