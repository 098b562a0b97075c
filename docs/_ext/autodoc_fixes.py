"""What autodoc and the nitpicky build need beyond their defaults, for rnasframe's API pages.

* A Python cross-reference may name an object by another public path than the one it is
  documented under: the API pages document every object once, in the module that defines it, while
  docstrings say ``rnasframe.SearchEngine`` or, inside a module, ``Tensor``. ``missing-reference``
  links such a name to where its object is documented (here or in an intersphinx inventory).
* attrs classes get signatures with their real defaults (autodoc shows a factory as ``NOTHING``).
* A private base class is shown as its public bases.
* napoleon reads ``Some prose: more`` at the start of a constant's docstring as a type; that is
  put back into the sentence.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

import attrs
from sphinx.application import Sphinx


def _lookup(path: str) -> Any:
    """The object at a dotted ``path`` (longest importable module, then attributes), or ``None``."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:split]))
        if module is None:
            continue
        obj: Any = module
        for part in parts[split:]:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
    return None


def _documented(app: Sphinx, env: Any, node: Any, contnode: Any, target: str) -> Any:
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node.get("refdoc", env.docname), app.builder, "obj", target, node, contnode)


def _has_attribute(cls: Any, name: str) -> bool:
    fields = attrs.fields(cls) if attrs.has(cls) else ()
    annotated = any(name in getattr(klass, "__annotations__", {}) for klass in cls.__mro__)
    if hasattr(cls, name) or annotated or any(field.name in (name, f"_{name}") for field in fields):
        return True
    try:  # an instance attribute set in a method
        return re.search(rf"\bself\.{re.escape(name)}\s*(:[^=]*)?=", inspect.getsource(cls)) is not None
    except (OSError, TypeError):
        return False


def resolve_alias(app: Sphinx, env: Any, node: Any, contnode: Any) -> Any:
    """``missing-reference``: a Python reference to an object documented under another path.

    Tries the target as written, then in the namespace of the module (and class) that refers to
    it; a name found there links to where its object is documented (here, or in an intersphinx
    inventory). An attribute described in its class' docstring (an attrs field, an instance
    attribute) links to the class.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    names = [f"{module}.{cls}.{target}", f"{module}.{target}", target] if cls else [f"{module}.{target}", target]
    objects = env.get_domain("py").objects
    short = target.rsplit(".", 1)[-1]
    for name in names:
        obj = _lookup(name)
        if obj is None or inspect.ismodule(obj):
            continue
        found = [f"{obj.__module__}.{obj.__qualname__}"] if hasattr(obj, "__qualname__") and hasattr(obj, "__module__") else []
        found += [key for key in objects if key.rsplit(".", 1)[-1] == short and key != target and _lookup(key) is obj]
        for canonical in found:
            retry = node.deepcopy()
            retry["reftarget"] = canonical
            resolved = _documented(app, env, retry, contnode, canonical)
            if resolved is None:
                from sphinx.ext import intersphinx

                resolved = intersphinx.missing_reference(app, env, retry, contnode)
            if resolved is not None:
                return resolved
    if node.get("reftype") in ("attr", "meth"):
        owner_path, _, attribute = target.rpartition(".")
        owners = [_lookup(owner_path)] if owner_path else []
        if cls:
            owners.append(_lookup(f"{module}.{cls}"))
        owners += [value for value in vars(sys.modules.get(module or "", inspect)).values() if inspect.isclass(value)]
        for owner in owners:
            if inspect.isclass(owner) and owner.__module__.startswith("rnasframe") and _has_attribute(owner, attribute):
                resolved = _documented(app, env, node, contnode, f"{owner.__module__}.{owner.__qualname__}")
                if resolved is not None:
                    return resolved
    return None


def public_bases(app: Sphinx, name: str, obj: Any, options: Any, bases: List[type]) -> None:
    """``autodoc-process-bases``: show a private base class' own bases instead of it."""
    for index in reversed(range(len(bases))):
        if bases[index].__name__.startswith("_") and bases[index] is not object:
            bases[index : index + 1] = [base for base in bases[index].__bases__ if base not in bases]


_TYPE_FIELD = re.compile(r"^\s*:type: (.*)$")


def prose_is_not_a_type(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    """``autodoc-process-docstring``, after napoleon: undo a ``:type:`` that napoleon made of prose.

    napoleon reads the text before the first colon of a constant's docstring as its type
    (``Builders of the operations: OPS[name](...)``); a "type" with spaces and no brackets or
    backticks is the start of a sentence, so it goes back in front of the description.
    """
    if what not in ("data", "attribute", "property"):
        return
    for index, line in enumerate(lines):
        match = _TYPE_FIELD.match(line)
        text = match.group(1).strip() if match else ""
        if " " in text and not any(c in text for c in "[|`") and not text.startswith(("Optional", "Union")):
            del lines[index]
            first = next((i for i, line in enumerate(lines) if line.strip()), None)
            if first is None:
                lines.append(text)
            else:
                lines[first] = f"{text}: {lines[first].lstrip()}"
            return


def _default(value: Any) -> str:
    if not isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        return repr(value)
    try:
        made = value.factory() if not value.takes_self else None
    except Exception:
        return "<factory>"
    text = repr(made)
    return text if made is not None and len(text) <= 40 else "<factory>"


def attrs_signature(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: Optional[str], annotation: Optional[str]
) -> Optional[Tuple[str, Optional[str]]]:
    """``autodoc-process-signature``: an attrs class' signature from its fields, defaults as values."""
    if what != "class" or not inspect.isclass(obj) or not attrs.has(obj):
        return None
    parts: List[str] = []
    for field in (field for field in attrs.fields(obj) if field.init):
        if field.kw_only and "*" not in parts:
            parts.append("*")
        argument = field.alias or field.name.lstrip("_")
        parts.append(argument if field.default is attrs.NOTHING else f"{argument}={_default(field.default)}")
    return f"({', '.join(parts)})", annotation


def setup(app: Sphinx) -> Dict[str, Any]:
    """Register the resolver and the autodoc hooks."""
    app.connect("missing-reference", resolve_alias, priority=900)
    app.connect("autodoc-process-signature", attrs_signature)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-process-docstring", prose_is_not_a_type, priority=600)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
