"""Where the genotype to train comes from: a genotype.json, a run folder, the space's own notation, a dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Tuple

from rnasframe.interfaces.search_space import SearchSpace

__all__ = ["resolve_genotype"]


def _from_file(space: SearchSpace, path: Path) -> Any:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"genotype file {path} is not readable JSON: {error}") from None
    try:
        return space.genotype_from_dict(data)
    except ValueError as error:
        raise ValueError(f"genotype file {path}: {error}") from None


def resolve_genotype(spec: Any, space: SearchSpace) -> Tuple[Any, str]:
    """Turn a genotype specification into a validated genotype and a short name for reports.

    Args:
        spec: one of

            * a path to a ``genotype.json`` file (DARTS' ``Genotype`` fields, as a search writes);
            * a run folder of a search (its ``genotype.json`` is read);
            * any other text, read by the space
              (:meth:`~rnasframe.interfaces.SearchSpace.resolve_genotype`): a published name such
              as ``"DARTS_V2"``, an architecture string, JSON;
            * a mapping in the space's dict form (e.g. bound with gin);
            * a genotype object of the space.
        space: the search space that validates the genotype and builds its network.

    Returns:
        ``(genotype, name)``: ``name`` is the run folder's or file's folder name, the text the space
        read (e.g. the published name), or ``"genotype"``.

    Raises:
        ValueError: the path does not exist and the space cannot read the text (its message says
            what it accepts),
            a run folder without ``genotype.json``, unreadable JSON, or an invalid genotype
            (unknown operation, input index out of range, ...).
    """
    if spec is None:
        raise ValueError(
            "no genotype to train: pass --genotype (a genotype.json, a search's run folder or a name "
            "such as DARTS_V2) or bind Trainer.genotype"
        )
    if isinstance(spec, Mapping):
        return space.genotype_from_dict(spec), "genotype"
    if isinstance(spec, (str, Path)):
        path = Path(spec).expanduser()
        if path.is_dir():
            candidate = path / "genotype.json"
            if not candidate.is_file():
                raise ValueError(
                    f"run folder {path} holds no genotype.json; a search writes it after its first epoch"
                )
            return _from_file(space, candidate), path.resolve().name
        if path.is_file():
            return _from_file(space, path), path.resolve().parent.name
        if any(sep in str(spec) for sep in ("/", "\\")) or str(spec).endswith(".json"):
            raise ValueError(f"genotype path {spec} does not exist (expected a genotype.json file or a run folder)")
        try:
            return space.resolve_genotype(str(spec)), str(spec)
        except ValueError as error:
            raise ValueError(
                f"genotype {str(spec)!r} is not a genotype.json file, a run folder holding one, nor "
                f"a genotype of {type(space).__name__} ({error})"
            ) from None
    genotype_dict = space.genotype_to_dict(spec)  # validates
    return space.genotype_from_dict(genotype_dict), "genotype"
