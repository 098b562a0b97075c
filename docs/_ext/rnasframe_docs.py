"""The Sphinx extension behind rnasframe's documentation.

It generates, at every build, the pages that must never drift from the code:

* the **API reference**: one page per module of ``rnasframe_api_modules`` (``conf.py``), each
  public name (``__all__``) documented exactly once, in the deepest listed module that exports
  it; a public name of any rnasframe module that ends up documented nowhere is a warning;
* the **configuration reference**: every gin configurable that rnasframe registers, with each
  parameter's default (read from the class itself: attrs fields or the signature) and its
  description (read from the ``Args:`` / ``Attributes:`` section of the class docstring).

It keeps the nitpicky build honest without a long ignore list: references to a re-exported name,
to a name as seen from its module's namespace (``Tensor``, ``nn.Module``) or to an attribute that a
class docstring describes are resolved to where the object is documented (``missing-reference``);
attrs classes get signatures with their real defaults; private base classes are replaced by their
public bases.

Pages that other people write in Markdown may not exist yet: ``rnasframe-toctree`` and
``:optdoc:`` link to them or to a stand-in (``rnasframe_optional_pages``), and
``rnasframe-figure`` shows a picture only once it has been drawn. The Python code blocks of
Markdown pages become doctests, and a Python code block that the doctest builder would not run is
a warning.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import textwrap
import types
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.directives.other import TocTree
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: Generated files live here, relative to the documentation folder (ignored by git).
GENERATED = "_generated"

#: What the build hooks share within one process (the API model made at ``builder-inited``).
_STATE: Dict[str, Any] = {}

#: Code-block languages that mean "Python source" and must therefore run under the doctest builder.
PYTHON_LANGUAGES = frozenset({"python", "python3", "py", "pycon", "ipython", "ipython3"})


# ---------------------------------------------------------------------------------------------
# The API model: which module documents which public name
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PublicName:
    """One name exported by a listed module."""

    module: str
    name: str
    obj: Any

    @property
    def kind(self) -> str:
        """``"module"``, ``"class"``, ``"function"`` or ``"data"`` (the autodoc directive to use)."""
        if isinstance(self.obj, types.ModuleType):
            return "module"
        if inspect.isclass(self.obj):
            return "class"
        if inspect.isfunction(self.obj) or inspect.isbuiltin(self.obj):
            return "function"
        return "data"

    @property
    def key(self) -> Tuple[str, int]:
        """The same object re-exported under the same name has the same key."""
        return (self.name, id(self.obj))


@dataclasses.dataclass
class ApiModel:
    """The listed modules, their public names and where each name is documented."""

    sections: List[Tuple[str, List[str]]]
    modules: Dict[str, types.ModuleType]
    names: Dict[str, List[PublicName]]
    owner: Dict[Tuple[str, int], str]
    _aliases: Optional[Dict[str, str]] = None

    def documented_path(self, entry: PublicName) -> str:
        """The full name under which ``entry`` is documented."""
        return f"{self.owner[entry.key]}.{entry.name}"

    def aliases(self) -> Dict[str, str]:
        """Every public path of a documented object (and a class' or function's defining path) -> documented path."""
        if self._aliases is None:
            found: Dict[str, str] = {}
            for module_name, entries in self.names.items():
                for entry in entries:
                    documented = self.documented_path(entry)
                    found[f"{module_name}.{entry.name}"] = documented
                    qualname = getattr(entry.obj, "__qualname__", None)
                    if entry.kind in ("class", "function") and qualname:
                        found.setdefault(f"{entry.obj.__module__}.{qualname}", documented)
            self._aliases = found
        return self._aliases

    def path_of_object(self, obj: Any, name: Optional[str] = None) -> Optional[str]:
        """The documented full name of ``obj`` (exported as ``name``, if given), if it is documented."""
        for entries in self.names.values():
            for entry in entries:
                if entry.obj is obj and name in (None, entry.name) and self.owner[entry.key] == entry.module:
                    return self.documented_path(entry)
        return None


def _public_names(module: types.ModuleType) -> List[str]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return list(exported)
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    )


def _defining_module(obj: Any) -> Optional[str]:
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return getattr(obj, "__module__", None)
    return None


def _choose_owner(entry: PublicName, exporters: Sequence[str]) -> str:
    """The deepest exporter that is the defining module or one of its packages (else the deepest)."""
    defining = _defining_module(entry.obj)
    related = [m for m in exporters if defining is not None and (defining == m or defining.startswith(m + "."))]
    candidates = related or list(exporters)
    deepest = max(m.count(".") for m in candidates)
    return next(m for m in candidates if m.count(".") == deepest)


def build_api_model(sections: Sequence[Tuple[str, Sequence[str]]], optional: Iterable[str]) -> ApiModel:
    """Import the listed modules and decide where each public name is documented.

    A listed module that cannot be imported is a warning (the build fails under ``-W``), unless it
    is in ``optional``: then it is left out with an informational message.
    """
    optional = set(optional)
    kept_sections: List[Tuple[str, List[str]]] = []
    modules: Dict[str, types.ModuleType] = {}
    names: Dict[str, List[PublicName]] = {}
    for title, listed in sections:
        kept: List[str] = []
        for name in listed:
            try:
                module = importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 - any import failure is reported the same way
                if name in optional:
                    logger.info("rnasframe docs: optional module %s left out of the API reference (%s)", name, error)
                else:
                    logger.warning("rnasframe docs: cannot import %s for the API reference: %s", name, error)
                continue
            entries = []
            for public in _public_names(module):
                try:
                    entries.append(PublicName(name, public, getattr(module, public)))
                except Exception as error:  # noqa: BLE001
                    logger.warning("rnasframe docs: %s lists %r in __all__ but it cannot be loaded: %s", name, public, error)
            modules[name] = module
            names[name] = entries
            kept.append(name)
        if kept:
            kept_sections.append((title, kept))
    exporters: Dict[Tuple[str, int], List[str]] = {}
    for module_name, entries in names.items():
        for entry in entries:
            exporters.setdefault(entry.key, []).append(module_name)
    owner: Dict[Tuple[str, int], str] = {}
    for entries in names.values():
        for entry in entries:
            if entry.key not in owner:
                owner[entry.key] = _choose_owner(entry, exporters[entry.key])
    return ApiModel(kept_sections, modules, names, owner)


def check_completeness(model: ApiModel, root: str = "rnasframe") -> List[str]:
    """Names in the ``__all__`` of an importable rnasframe module that no API page documents.

    Walks ``root`` and every listed package (the plugin packages live in other folders), so a new
    module whose public names are not re-exported by a listed package is reported.
    """
    import pkgutil

    documented = {id(entry.obj) for entries in model.names.values() for entry in entries}
    packages = [root, *(name for name, module in model.modules.items() if hasattr(module, "__path__"))]
    seen = set()
    missing = []
    for package_name in packages:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + ".", onerror=lambda name: None):
            if info.name in seen or info.name in model.modules:
                continue
            seen.add(info.name)
            try:
                module = importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - a module that does not import is not documented either way
                continue
            for name in getattr(module, "__all__", ()):
                if hasattr(module, name) and id(getattr(module, name)) not in documented:
                    missing.append(f"{info.name}.{name}")
    return missing


# ---------------------------------------------------------------------------------------------
# Writing generated files
# ---------------------------------------------------------------------------------------------


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (keeps Sphinx' incremental builds quiet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _heading(text: str, underline: str, overline: bool = False) -> List[str]:
    line = underline * max(len(text), 3)
    return [line, text, line, ""] if overline else [text, line, ""]


def _api_page(model: ApiModel, module_name: str, doctest_imports: Sequence[str]) -> str:
    module = model.modules[module_name]
    entries = model.names[module_name]
    lines = [
        ".. This page is generated by docs/_ext/rnasframe_docs.py at every build; do not edit it.",
        "",
        *_heading(module_name, "="),
        f".. automodule:: {module_name}",
        "",
    ]
    setup = list(doctest_imports)
    if entries:
        setup.append(f"from {module_name} import *")
    lines += [".. testsetup:: *", "", *(f"   {line}" for line in setup), ""]
    submodules = [e for e in entries if e.kind == "module"]
    listed = [e for e in entries if e.kind != "module"]
    if listed:
        lines += [".. rubric:: Public names", ""]
        lines += _summary_table([(f":py:obj:`~{model.documented_path(e)}`", _summary(e.obj, e.kind)) for e in listed])
        elsewhere = [e for e in listed if model.owner[e.key] != module_name]
        if elsewhere:
            lines += [
                f"Re-exported by ``{module_name}`` and documented with their own modules: "
                + ", ".join(f":py:obj:`~{model.documented_path(e)}`" for e in elsewhere)
                + ".",
                "",
            ]
    if submodules:
        links = []
        for entry in submodules:
            target = entry.obj.__name__
            if target in model.modules:
                links.append(f":py:mod:`{target}`")
            else:
                logger.warning(
                    "rnasframe docs: %s exports the submodule %s, which is not in rnasframe_api_modules (conf.py)",
                    module_name, target,
                )
        if links:
            lines += [".. rubric:: Submodules", "", ", ".join(links), ""]
    owned = [e for e in listed if model.owner[e.key] == module_name]
    if owned:
        lines += [".. rubric:: Reference", ""]
    for entry in owned:
        full = f"{module_name}.{entry.name}"
        if entry.kind == "class":
            lines += [f".. autoclass:: {full}", "   :members:", "   :special-members: __call__", "   :show-inheritance:", ""]
        elif entry.kind == "function":
            lines += [f".. autofunction:: {full}", ""]
        else:
            lines += [f".. autodata:: {full}", ""]
    if not entries and not (module.__doc__ or "").strip():
        logger.warning("rnasframe docs: %s has neither a docstring nor public names", module_name)
    return "\n".join(lines).rstrip() + "\n"


def _api_toc(model: ApiModel) -> str:
    lines = [".. This text is generated by docs/_ext/rnasframe_docs.py at every build; do not edit it.", ""]
    for title, module_names in model.sections:
        lines += _heading(title, "-")
        lines += _summary_table([(f":py:mod:`{name}`", _summary(model.modules[name], "module")) for name in module_names])
        lines += [".. toctree::", "   :hidden:", ""]
        lines += [f"   {GENERATED}/api/{name}" for name in module_names]
        lines.append("")
    return "\n".join(lines)


_ROLE_RE = re.compile(r":(?:py:)?[a-z]+:`(~?)([^`<]*?)(?:\s*<([^>]*)>)?`")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Eq.", "Alg.", "al.")


def _first_sentence(text: str) -> str:
    """Text up to the first full stop that ends a sentence (not inside ``literals`` or an abbreviation)."""
    in_literal = False
    index = 0
    while index < len(text):
        if text.startswith("``", index):
            in_literal = not in_literal
            index += 2
            continue
        if not in_literal and text[index] == "." and (index + 1 == len(text) or text[index + 1] == " "):
            if not any(text[: index + 1].endswith(a) for a in _ABBREVIATIONS):
                return text[: index + 1]
        index += 1
    return text


def _summary(obj: Any, kind: str) -> str:
    """The first sentence of ``obj``'s docstring, with cross-reference roles turned into literals.

    Roles are dropped because a summary is shown out of its context (a ``:meth:`means``` in a
    class docstring only resolves inside that class).
    """
    if kind == "data":
        return ""
    doc = inspect.getdoc(obj) or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())

    def literal(found: "re.Match[str]") -> str:
        tilde, target, explicit_target = found.group(1), found.group(2).strip(), found.group(3)
        if explicit_target:
            return target
        return f"``{target.split('.')[-1] if tilde else target}``"

    return _ROLE_RE.sub(literal, _first_sentence(paragraph))


def _summary_table(rows: Sequence[Tuple[str, str]]) -> List[str]:
    """An rst list-table of ``(name, summary)`` rows."""
    lines = [".. list-table::", "   :widths: 30 70", "   :class: rnasframe-summary", ""]
    for name, summary in rows:
        lines += [f"   * - {name}", f"     - {summary or ' '}"]
    lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------
# The configuration reference
# ---------------------------------------------------------------------------------------------

_SECTION_RE = re.compile(r"^(Args|Arguments|Parameters|Attributes|Keyword Args|Keyword Arguments):\s*$")
_ITEM_RE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parameter_descriptions(docstring: Optional[str]) -> Dict[str, str]:
    """Read the Google-style ``Args:`` / ``Attributes:`` sections of a docstring: name -> description."""
    lines = inspect.cleandoc(docstring or "").splitlines()
    found: Dict[str, str] = {}
    index = 0
    while index < len(lines):
        if not _SECTION_RE.match(lines[index]):
            index += 1
            continue
        index += 1
        item_indent: Optional[int] = None
        current: Optional[str] = None
        while index < len(lines):
            line = lines[index]
            if line.strip() and not line.startswith(" "):
                break  # the next section (or text) at the docstring's own level
            if line.strip():
                indent = len(line) - len(line.lstrip())
                if item_indent is None:
                    item_indent = indent
                match = _ITEM_RE.match(line.strip()) if indent == item_indent else None
                if match:
                    current = match.group(1).lstrip("*")
                    found[current] = match.group(3).strip()
                elif current is not None:
                    found[current] = f"{found[current]} {line.strip()}".strip()
            index += 1
    return found


@dataclasses.dataclass
class Parameter:
    """One bindable parameter of a configurable."""

    name: str
    default: str
    annotation: str
    description: str


def _short_repr(value: Any, limit: int = 90) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...)"


def _attrs_parameters(cls: type, descriptions: Dict[str, str]) -> List[Parameter]:
    import attrs

    parameters = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        name = getattr(field, "alias", None) or field.name.lstrip("_")
        if field.default is attrs.NOTHING:
            default = "(required)"
        elif isinstance(field.default, attrs.Factory):
            try:
                made = field.default.factory(cls) if field.default.takes_self else field.default.factory()  # type: ignore[call-arg]
                default = f"``{_short_repr(made)}``"
            except Exception:  # noqa: BLE001 - a factory that needs more context is shown by name
                default = f"made by ``{getattr(field.default.factory, '__qualname__', 'a factory')}()``"
        else:
            default = f"``{_short_repr(field.default)}``"
        annotation = field.type if isinstance(field.type, str) else inspect.formatannotation(field.type)
        parameters.append(Parameter(name, default, annotation or "", descriptions.get(name, descriptions.get(field.name, ""))))
    return parameters


def _signature_parameters(fn: Any, descriptions: Dict[str, str], skip_first: bool) -> List[Parameter]:
    signature = inspect.signature(fn)
    parameters = []
    for index, parameter in enumerate(signature.parameters.values()):
        if skip_first and index == 0:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = "(required)" if parameter.default is parameter.empty else f"``{_short_repr(parameter.default)}``"
        annotation = "" if parameter.annotation is parameter.empty else (
            parameter.annotation if isinstance(parameter.annotation, str) else inspect.formatannotation(parameter.annotation)
        )
        parameters.append(Parameter(parameter.name, default, annotation, descriptions.get(parameter.name, "")))
    return parameters


def configurable_parameters(wrapped: Any) -> List[Parameter]:
    """The parameters gin can bind on ``wrapped`` (a class or a function), with defaults."""
    import attrs

    descriptions = parameter_descriptions(inspect.getdoc(wrapped))
    if inspect.isclass(wrapped) and attrs.has(wrapped):
        return _attrs_parameters(wrapped, descriptions)
    if inspect.isclass(wrapped):
        return _signature_parameters(wrapped.__init__, descriptions, skip_first=True)
    return _signature_parameters(wrapped, descriptions, skip_first=False)


def _registered_configurables() -> Dict[str, Any]:
    """rnasframe's entries of gin's registry (selector -> gin's Configurable record)."""
    import gin.config

    registry = gin.config._REGISTRY  # gin keeps no public accessor for the registry
    return {selector: record for selector, record in registry.items() if record.module.startswith("rnasframe")}


def _cell(text: str) -> List[str]:
    """An rst list-table cell (continuation lines indented to the cell's content)."""
    text = " ".join(text.split()) or " "
    return textwrap.wrap(text, width=100, break_long_words=False, break_on_hyphens=False) or [" "]


def _configurables_text(model: ApiModel, configurable_modules: Sequence[str], registered_first: Dict[str, Any]) -> str:
    """The rst of the configuration reference (included by ``configuration.rst``)."""
    for module in model.modules:  # configurables of the other documented modules too
        importlib.import_module(module)
    everything = _registered_configurables()

    def family(record: Any) -> Tuple[int, str]:
        for index, prefix in enumerate(configurable_modules):
            if record.module == prefix or record.module.startswith(prefix + "."):
                return index, prefix
        return len(configurable_modules), ""

    groups: Dict[Tuple[int, str], List[Tuple[str, Any]]] = {}
    for selector, record in everything.items():
        groups.setdefault(family(record), []).append((selector, record))

    lines = [".. This text is generated by docs/_ext/rnasframe_docs.py at every build; do not edit it.", ""]
    short_names: Dict[str, int] = {}
    for record in everything.values():
        short_names[record.name] = short_names.get(record.name, 0) + 1
    lines += [
        f"rnasframe registers **{len(everything)}** configurables"
        + (
            f"; **{len(registered_first)}** of them are registered by "
            ":func:`rnasframe.config.register_configurables`, which every entry point calls."
            if len(registered_first) != len(everything)
            else ", all registered by :func:`rnasframe.config.register_configurables`, which every entry point calls."
        ),
        "",
    ]
    for (index, prefix), members in sorted(groups.items()):
        title = f"From ``{prefix}``" if prefix else "Registered by other modules (need an ``import`` line in the gin file)"
        lines += _heading(title, "-")
        for selector, record in sorted(members, key=lambda item: item[1].name):
            wrapped = record.wrapped
            gin_name = record.name if short_names[record.name] == 1 else selector
            documented = model.path_of_object(wrapped)
            summary = (inspect.getdoc(wrapped) or "").strip().split("\n\n")[0]
            summary = " ".join(summary.split())
            lines += [f".. _gin-{selector}:", "", *_heading(gin_name, "~")]
            if documented:
                owner_module = documented.rsplit(".", 1)[0]
                lines += [f".. currentmodule:: {owner_module}", ""]
                lines += [f"Python: :py:class:`{documented}` — full gin name ``{selector}``.", ""]
            else:
                lines += [f"Python: ``{record.module}.{record.name}`` (not in the API reference) — full gin name ``{selector}``.", ""]
            if summary:
                lines += [summary, ""]
            parameters = configurable_parameters(wrapped)
            denied = set(record.denylist or ())
            allowed = set(record.allowlist) if record.allowlist else None
            parameters = [p for p in parameters if p.name not in denied and (allowed is None or p.name in allowed)]
            if not parameters:
                lines += ["No parameters.", ""]
                continue
            lines += [".. list-table::", "   :header-rows: 1", "   :widths: 22 30 48", "   :class: rnasframe-configurable", ""]
            lines += ["   * - Binding", "     - Default", "     - Description"]
            for parameter in parameters:
                binding = f"``{gin_name}.{parameter.name}``"
                description = parameter.description
                if documented:  # a relative :attr:`x` of the class docstring, out of its class here
                    description = re.sub(r":(attr|meth):`(\w+)`", rf":\1:`~{documented}.\2`", description)
                if parameter.annotation:
                    description = f"({parameter.annotation}) {description}" if description else f"({parameter.annotation})"
                for column, text in enumerate((binding, parameter.default, description)):
                    wrapped_lines = _cell(text)
                    lead = "   * - " if column == 0 else "     - "
                    lines.append(lead + wrapped_lines[0])
                    lines += [" " * len(lead) + rest for rest in wrapped_lines[1:]]
            lines.append("")
    lines += [".. currentmodule:: None", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Cross-references and autodoc output
# ---------------------------------------------------------------------------------------------


def _lookup(module_name: Optional[str], dotted: str) -> Tuple[bool, Any]:
    """Evaluate ``dotted`` in the namespace of an imported module: ``(found, object)``."""
    import sys

    module = sys.modules.get(module_name or "")
    if module is None:
        return False, None
    obj: Any = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False, None
        obj = getattr(obj, part)
    return True, obj


def _is_type_alias(obj: Any) -> bool:
    import typing

    return typing.get_origin(obj) is not None or type(obj).__module__ == "typing"


def _describes_attribute(cls: Any, name: str) -> bool:
    """Whether ``name`` is an attribute of ``cls`` that has no entry of its own in the docs.

    attrs fields and annotated class attributes are described in the class docstring (``Args:``),
    and instance attributes set in a method (``self.name = ...``) in its text.
    """
    import attrs

    if not inspect.isclass(cls):
        return False
    if attrs.has(cls) and any(field.name in (name, f"_{name}") for field in attrs.fields(cls)):
        return True
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return True
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return False
    return re.search(rf"\bself\.{re.escape(name)}\s*(:[^=]*)?=", source) is not None


def _resolve_to(app: Sphinx, env: Any, node: Any, contnode: Any, target: str) -> Any:
    """Resolve ``node`` as a Python reference to ``target`` (any object type); ``None`` if unknown."""
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node.get("refdoc", env.docname), app.builder, "obj", target, node, contnode)


def _resolve_missing(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: resolve what autodoc and docstrings name by another path.

    In order:

    1. a public path of a documented object that is documented under another path (a name
       re-exported by a package, or a function's defining module);
    2. a name evaluated in the namespace of the module that refers to it (``Tensor``,
       ``nn.Module``), looked up by its defining path here or in the intersphinx inventories;
       a private type alias of rnasframe (``Validator``) is shown by name, unlinked;
    3. ``:attr:`name``` inside a class, for an attrs field, an annotated class attribute or an
       instance attribute described in the class docstring: a link to the class.
    """
    if node.get("refdomain") != "py" or "model" not in _STATE:
        return None
    model: ApiModel = _STATE["model"]
    target = node["reftarget"].lstrip("~.")
    module_name = node.get("py:module")
    class_name = node.get("py:class")
    candidates = [target]
    if module_name:
        if class_name:
            candidates.append(f"{module_name}.{class_name}.{target}")
        candidates.append(f"{module_name}.{target}")
    aliases = model.aliases()
    for candidate in candidates:
        documented = aliases.get(candidate)
        if documented and documented != candidate:
            resolved = _resolve_to(app, env, node, contnode, documented)
            if resolved is not None:
                return resolved
    namespaces = [module_name]
    if class_name and module_name:
        found, cls = _lookup(module_name, class_name)
        if found and inspect.isclass(cls):
            namespaces.append(cls.__module__)
    for namespace in namespaces:
        found, obj = _lookup(namespace, target)
        if not found:
            continue
        qualname = getattr(obj, "__qualname__", None)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and qualname:
            canonical = f"{obj.__module__}.{qualname}"
            if canonical != target:
                if canonical in aliases:
                    return _resolve_to(app, env, node, contnode, aliases[canonical])
                from sphinx.ext import intersphinx

                retry = node.deepcopy()
                retry["reftarget"] = canonical
                resolved = intersphinx.missing_reference(app, env, retry, contnode)
                if resolved is not None:
                    return resolved
        elif _is_type_alias(obj) and str(namespace).startswith("rnasframe"):
            return contnode
        documented = model.path_of_object(obj, name=target.rsplit(".", 1)[-1])
        if documented:
            return _resolve_to(app, env, node, contnode, documented)
    if node.get("reftype") == "attr":
        owners = []
        if class_name and module_name:
            owners.append((module_name, class_name, target))
        if "." in target:
            owner_path, attribute = target.rsplit(".", 1)
            owner_module, _, owner_class = owner_path.rpartition(".")
            owners.append((owner_module, owner_class, attribute))
        for owner_module, owner_class, attribute in owners:
            found, cls = _lookup(owner_module, owner_class)
            if found and _describes_attribute(cls, attribute.rsplit(".", 1)[-1]):
                documented = aliases.get(f"{owner_module}.{owner_class}") or f"{owner_module}.{owner_class}"
                return _resolve_to(app, env, node, contnode, documented)
    return None


def _public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: List[type]) -> None:
    """``autodoc-process-bases``: show a private base class' own bases instead of it."""
    index = 0
    while index < len(bases):
        base = bases[index]
        if base.__name__.startswith("_") and base is not object:
            replacement = [b for b in base.__bases__ if b not in bases]
            bases[index : index + 1] = replacement
            continue
        index += 1


def _default_text(default: Any) -> str:
    """How a signature shows an attrs default: the value, or ``Type()`` for a default-made object."""
    import attrs

    if not isinstance(default, attrs.Factory):
        return repr(default)
    if default.takes_self:
        return "<factory>"
    try:
        made = default.factory()
    except Exception:  # noqa: BLE001 - a factory that needs context is shown as such
        return "<factory>"
    try:
        if made == type(made)() and repr(made) == repr(type(made)()):
            return f"{type(made).__name__}()" if not isinstance(made, (list, dict, tuple, set)) else repr(made)
    except Exception:  # noqa: BLE001 - not constructible without arguments
        pass
    text = repr(made)
    return text if len(text) <= 40 else "<factory>"


def _attrs_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: Optional[str], return_annotation: Optional[str]) -> Optional[Tuple[str, Optional[str]]]:
    """``autodoc-process-signature``: the signature of an attrs class, from its fields.

    attrs generates ``__init__`` with defaults that autodoc shows as ``NOTHING`` (factories) or
    as source text (``attr_dict['epsilon'].default``); show the values instead.
    """
    import attrs

    if what != "class" or not inspect.isclass(obj) or not attrs.has(obj):
        return None
    parts: List[str] = []
    keyword_only = False
    for field in attrs.fields(obj):
        if not field.init:
            continue
        if field.kw_only and not keyword_only:
            parts.append("*")
            keyword_only = True
        argument = getattr(field, "alias", None) or field.name.lstrip("_")
        if field.default is attrs.NOTHING:
            parts.append(argument)
        else:
            parts.append(f"{argument}={_default_text(field.default)}")
    return f"({', '.join(parts)})", return_annotation


def _no_inherited_value_doc(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    """``autodoc-process-docstring``: a constant without a ``#:`` comment gets no docstring.

    autodoc would otherwise show the docstring of the value's type (``str``'s, for ``__version__``).
    """
    if what not in ("data", "attribute") or obj is None:
        return
    type_doc = inspect.getdoc(type(obj))
    if type_doc and "\n".join(lines).strip() == type_doc.strip():
        lines.clear()


_TYPE_FIELD_RE = re.compile(r"^:type: (.*)$")


def _prose_is_not_a_type(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    """``autodoc-process-docstring`` (after napoleon): undo a ``:type:`` made from prose.

    napoleon reads an attribute docstring ``"Builders of the operations: OPS[name](...)"`` as
    ``type: description``. A "type" with spaces and no brackets is the start of a sentence: put
    it back in front of the description.
    """
    if what not in ("attribute", "data", "property"):
        return
    for index, line in enumerate(lines):
        match = _TYPE_FIELD_RE.match(line)
        if not match:
            continue
        text = match.group(1).strip()
        if " " in text and not any(c in text for c in "[|`") and not text.startswith(("Optional", "Union")):
            del lines[index]
            while index > 0 and not lines[index - 1].strip():
                del lines[index - 1]
                index -= 1
            first = next((i for i, l in enumerate(lines) if l.strip()), None)
            if first is not None:
                indent = len(lines[first]) - len(lines[first].lstrip())
                lines[first] = f"{' ' * indent}{text}: {lines[first].lstrip()}"
            else:
                lines.append(text)
        return


# ---------------------------------------------------------------------------------------------
# Build hooks
# ---------------------------------------------------------------------------------------------


def generate(app: Sphinx) -> None:
    """``builder-inited``: write the API pages and the configuration reference."""
    from rnasframe import config as rnas_config

    rnas_config.register_configurables()
    registered_first = dict(_registered_configurables())
    model = build_api_model(app.config.rnasframe_api_modules, app.config.rnasframe_api_optional)
    _STATE["model"] = model
    for name in check_completeness(model):
        logger.warning(
            "rnasframe docs: the public name %s is documented nowhere; add its module (or a package "
            "that re-exports it) to rnasframe_api_modules in docs/conf.py", name,
        )
    root = Path(app.srcdir) / GENERATED
    api_dir = root / "api"
    wanted = set()
    for module_name in model.modules:
        path = api_dir / f"{module_name}.rst"
        wanted.add(path.name)
        _write_if_changed(path, _api_page(model, module_name, app.config.rnasframe_doctest_imports))
    if api_dir.is_dir():
        for stale in api_dir.glob("*.rst"):
            if stale.name not in wanted:
                stale.unlink()
    _write_if_changed(root / "api_toc.inc", _api_toc(model))
    _write_if_changed(
        root / "configurables.inc",
        _configurables_text(model, rnas_config.CONFIGURABLE_MODULES, registered_first),
    )


def _markdown_code_to_doctests(app: Sphinx, doctree: nodes.document) -> None:
    """``doctree-read``: Python code fences of Markdown pages become doctests (``>>>``) or test code.

    Markdown has no ``testcode`` directive, so its pages' Python blocks are turned into tests here:
    a block that starts with ``>>>`` is a doctest (its output is compared), any other block runs as
    test code in the page's namespace, in order.
    """
    source = Path(app.env.doc2path(app.env.docname))
    if source.suffix != ".md":
        return
    for block in list(doctree.findall(nodes.literal_block)):
        if block.get("language", "").lower() not in PYTHON_LANGUAGES or "testnodetype" in block:
            continue
        text = block.astext()
        if text.lstrip().startswith(">>>"):
            replacement = nodes.doctest_block(text, text)
            replacement.source, replacement.line = block.source, block.line
            block.replace_self(replacement)
        else:
            # Run it as test code; what it prints is not compared (a Markdown page shows expected
            # output, if any, in a separate block), so stdout is captured and dropped.
            block["testnodetype"] = "testcode"
            block["groups"] = ["default"]
            block["options"] = {}
            block["test"] = (
                "import contextlib as _rnas_contextlib, io as _rnas_io\n"
                "with _rnas_contextlib.redirect_stdout(_rnas_io.StringIO()):\n"
                f"    exec(compile({text!r}, {'<' + app.env.docname + '.md>'!r}, 'exec'), globals())\n"
            )


def _check_python_blocks(app: Sphinx, doctree: nodes.document) -> None:
    """``doctree-read``: a Python code block that the doctest builder would not run is a warning."""
    for block in doctree.findall(nodes.literal_block):
        if block.get("language", "").lower() in PYTHON_LANGUAGES and "testnodetype" not in block:
            logger.warning(
                "Python code block is not tested: write it as a doctest (>>>) or a testcode block",
                location=block,
            )


class OptionalTocTree(TocTree):
    """A ``toctree`` whose entries may name pages that other people write and that may be missing.

    An entry that is a key of ``rnasframe_optional_pages`` (``conf.py``) links to that page when it
    exists and to its stand-in otherwise.
    """

    def run(self) -> List[nodes.Node]:
        pages = self.config.rnasframe_optional_pages
        found = self.env.found_docs
        base = self.env.docname.rsplit("/", 1)[0] + "/" if "/" in self.env.docname else ""
        content = []
        for line in self.content:
            entry = line.strip()
            absolute = entry.lstrip("/") if entry.startswith("/") else base + entry
            if absolute in pages and absolute not in found:
                line = line.replace(entry, "/" + pages[absolute])
            content.append(line)
        self.content = StringList(content, items=self.content.items)
        return super().run()


def optional_doc_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any, options: Any = None, content: Any = ()):  # noqa: ANN201
    """``:optdoc:`performance``` — a ``:doc:`` link to an optional page, or to its stand-in."""
    env = inliner.document.settings.env
    pages = env.config.rnasframe_optional_pages
    match = re.match(r"^(.*?)\s*<([^>]+)>$", text)
    title, target = (match.group(1), match.group(2)) if match else (None, text)
    key = target.lstrip("/")
    chosen = target if key not in pages or key in env.found_docs else "/" + pages[key]
    doc_role = env.get_domain("std").role("doc")
    return doc_role("doc", rawtext, f"{title} <{chosen}>" if title else chosen, lineno, inliner, options or {}, content)


class OptionalFigure(SphinxDirective):
    """``.. rnasframe-figure:: _static/x.png`` — a figure when the picture exists, else nothing.

    Pictures are drawn by ``docs/make_pictures.py``; until it has run, the page simply has no
    picture (an informational message says which is missing).
    """

    required_arguments = 1
    has_content = True
    option_spec = {"alt": directives.unchanged, "width": directives.unchanged}

    def run(self) -> List[nodes.Node]:
        relative = self.arguments[0]
        path = Path(self.env.srcdir) / relative.lstrip("/")
        if not path.is_file():
            logger.info("rnasframe docs: %s not drawn yet (run docs/make_pictures.py)", relative, location=self.get_location())
            return []
        self.env.note_dependency(str(path))
        lines = [f".. figure:: /{relative.lstrip('/')}"]
        for option in ("alt", "width"):
            if option in self.options:
                lines.append(f"   :{option}: {self.options[option]}")
        lines.append("")
        lines += [f"   {line}" for line in self.content]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> Dict[str, Any]:
    """Register the configuration values, hooks, directives and the role."""
    app.add_config_value("rnasframe_api_modules", [], "env")
    app.add_config_value("rnasframe_api_optional", [], "env")
    app.add_config_value("rnasframe_doctest_imports", ["import torch"], "env")
    app.add_config_value("rnasframe_optional_pages", {}, "env")
    app.connect("builder-inited", generate)
    app.connect("missing-reference", _resolve_missing, priority=900)
    app.connect("autodoc-process-bases", _public_bases)
    app.connect("autodoc-process-signature", _attrs_signature)
    app.connect("autodoc-process-docstring", _no_inherited_value_doc, priority=400)
    app.connect("autodoc-process-docstring", _prose_is_not_a_type, priority=600)
    app.connect("doctree-read", _markdown_code_to_doctests, priority=400)
    app.connect("doctree-read", _check_python_blocks, priority=600)
    app.add_directive("rnasframe-toctree", OptionalTocTree)
    app.add_directive("rnasframe-figure", OptionalFigure)
    app.add_role("optdoc", optional_doc_role)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
