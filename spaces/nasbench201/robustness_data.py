"""Tabulated robustness of every NAS-Bench-201 cell (Jung, Lukasik & Keuper, ICLR 2023).

Jung et al. trained all NAS-Bench-201 architectures and evaluated each of the 6,466 unique ones
under adversarial attacks and corruptions. Their released folder is read as published:

* ``meta.json``: under ``"ids"``, per architecture id its ``"nb201-string"`` (the architecture
  string) and ``"isomorph"`` (the id it was evaluated as); under ``"epsilons"``, per attack key its
  epsilon grid (in units of 1/255);
* one folder per data set (``cifar10/``, ``cifar100/``, ``ImageNet16-120/``) with files
  ``<key>_<measure>.json`` holding ``[data set][key][measure][architecture id]``; keys ``clean``,
  ``fgsm@Linf``, ``pgd@Linf``, ``aa_apgd-ce@Linf``, ``aa_square@Linf`` and the corruption names,
  measures ``accuracy``, ``confidence``, ``cm``.

Only the files a query needs are read, each once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import gin

from rnasframe.spaces.nasbench201.genotypes import NasBench201Genotype, parse_architecture

__all__ = ["RobustnessDataset", "MEASURES", "SUMMARY_KEYS"]

#: What a data file may hold about an architecture.
MEASURES: Tuple[str, ...] = ("accuracy", "confidence", "cm")

#: The keys :meth:`RobustnessDataset.summary` reports: clean, FGSM and PGD accuracy.
SUMMARY_KEYS: Tuple[str, ...] = ("clean", "fgsm@Linf", "pgd@Linf")


@gin.configurable
class RobustnessDataset:
    """Jung et al.'s robustness data of NAS-Bench-201, queried by genotype.

    Args:
        folder: the unpacked release: ``meta.json`` and one folder per data set.
        data_set: the data set that ``summary`` reports (a subfolder, e.g. ``"cifar10"``).
        epsilon: the attack radius that ``summary`` reports for FGSM and PGD, in units of 1/255
            like the data's epsilon grid (8 ~ 0.031, the radius of the paper's evaluation).

    Raises:
        ValueError: ``folder`` has no ``meta.json``, or it is not the expected JSON.
    """

    def __init__(self, folder: Union[str, Path], data_set: str = "cifar10",
                 epsilon: float = 8.0) -> None:
        self.folder = Path(folder).expanduser()
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise ValueError(
                f"robustness data folder {str(self.folder)!r} has no meta.json; expected Jung et al.'s "
                f"release (meta.json and cifar10/, cifar100/, ImageNet16-120/)"
            )
        try:
            self.meta: Dict[str, Any] = json.loads(meta_path.read_text())
            ids = self.meta["ids"]
            self._ids_by_string = {entry["nb201-string"]: str(i) for i, entry in ids.items()}
            self._isomorph = {str(i): str(entry["isomorph"]) for i, entry in ids.items()}
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{meta_path} is not Jung et al.'s meta.json (needs 'ids' -> id -> 'nb201-string' and "
                f"'isomorph'): {type(error).__name__}: {error}"
            ) from None
        if not isinstance(data_set, str) or not data_set:
            raise ValueError(
                f"RobustnessDataset.data_set must be a data set folder name such as 'cifar10', got {data_set!r}"
            )
        self.data_set = data_set
        self.epsilon = float(epsilon)
        for key in SUMMARY_KEYS:  # fail now, not after the first epoch of a search
            grid = self.epsilons(key)
            if grid is not None and not any(abs(e - self.epsilon) < 1e-9 for e in grid):
                raise ValueError(
                    f"RobustnessDataset.epsilon {self.epsilon:g} (units of 1/255) is not on the grid of "
                    f"{key!r} in meta.json; allowed: {grid}"
                )
        self._files: Dict[Tuple[str, str, str], Mapping[str, Any]] = {}

    def __repr__(self) -> str:
        return f"RobustnessDataset({str(self.folder)!r}, data_set={self.data_set!r}, epsilon={self.epsilon})"

    # --- what the folder holds -------------------------------------------------------------

    def data_sets(self) -> List[str]:
        """The data set folders present (e.g. ``["cifar10", "cifar100"]``)."""
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir())

    def keys(self, data_set: Optional[str] = None) -> List[str]:
        """The keys (``clean``, attacks, corruptions) with at least one file in ``data_set``."""
        return sorted({key for key, _ in self._available(data_set or self.data_set)})

    def measures(self, key: str, data_set: Optional[str] = None) -> List[str]:
        """The measures stored for ``key`` in ``data_set``."""
        return sorted(m for k, m in self._available(data_set or self.data_set) if k == key)

    def epsilons(self, key: str) -> Optional[List[float]]:
        """The epsilon grid of an attack key (units of 1/255) from ``meta.json``; ``None`` if not listed."""
        grid = self.meta.get("epsilons", {}).get(key)
        return None if grid is None else [float(e) for e in grid]

    def architecture_id(self, genotype: Union[NasBench201Genotype, str]) -> str:
        """The id of the architecture in ``meta.json``.

        Raises:
            ValueError: the architecture is not in the data.
        """
        text = str(genotype if isinstance(genotype, NasBench201Genotype) else parse_architecture(genotype))
        if text not in self._ids_by_string:
            raise ValueError(
                f"architecture {text!r} is not in {self.folder / 'meta.json'} "
                f"({len(self._ids_by_string)} architectures listed)"
            )
        return self._ids_by_string[text]

    def evaluated_id(self, genotype: Union[NasBench201Genotype, str]) -> str:
        """The id the architecture was evaluated as (its ``"isomorph"``)."""
        return self._isomorph[self.architecture_id(genotype)]

    # --- queries -------------------------------------------------------------------------------

    def value(self, genotype: Union[NasBench201Genotype, str], key: str = "clean", measure: str = "accuracy",
              data_set: Optional[str] = None) -> Any:
        """The stored value of ``genotype`` for ``key`` and ``measure``: a number, or a list over the
        attack's epsilon grid (see :meth:`epsilons`), exactly as in the file.

        Raises:
            ValueError: an unknown data set, key or measure (the message lists those present), or
                an architecture missing from the data.
        """
        name = data_set or self.data_set
        table = self._table(name, key, measure)
        uid = self.evaluated_id(genotype)
        if uid not in table:
            raise ValueError(
                f"architecture {str(genotype)!r} (id {self.architecture_id(genotype)}, evaluated as "
                f"{uid}) is missing from {name}/{key}_{measure}.json ({len(table)} architectures)"
            )
        return table[uid]

    def query(self, genotype: Union[NasBench201Genotype, str], keys: Sequence[str] = SUMMARY_KEYS,
              measure: str = "accuracy", data_set: Optional[str] = None) -> Dict[str, Any]:
        """``{key: value(genotype, key, measure, data_set)}`` for every key of ``keys``."""
        return {key: self.value(genotype, key, measure, data_set) for key in keys}

    def summary(self, genotype: Union[NasBench201Genotype, str]) -> Dict[str, float]:
        """Clean, FGSM and PGD accuracy of ``genotype`` on ``data_set``, attacks at ``epsilon``.

        Keys ``"<data set>/clean"``, ``"<data set>/fgsm@Linf"``, ``"<data set>/pgd@Linf"``
        (accuracies in [0, 1] as stored).
        """
        result: Dict[str, float] = {}
        for key in SUMMARY_KEYS:
            result[f"{self.data_set}/{key}"] = self.at_epsilon(key, self.value(genotype, key))
        return result

    def at_epsilon(self, key: str, stored: Any, epsilon: Optional[float] = None) -> float:
        """Pick the entry at ``epsilon`` (default ``epsilon``) of a value stored over the
        epsilon grid of ``key``; a number is returned as it is.

        Raises:
            ValueError: no grid for ``key`` in ``meta.json`` or ``epsilon`` is not on it.
        """
        if not isinstance(stored, list):
            return float(stored)
        eps = self.epsilon if epsilon is None else float(epsilon)
        grid = self.epsilons(key)
        if grid is None or len(grid) != len(stored):
            raise ValueError(
                f"{key!r} holds {len(stored)} values but meta.json lists "
                f"{'no' if grid is None else len(grid)} epsilons for it under 'epsilons'"
            )
        matches = [i for i, e in enumerate(grid) if abs(e - eps) < 1e-9]
        if not matches:
            raise ValueError(f"epsilon {eps:g} (units of 1/255) is not on the grid of {key!r}; allowed: {grid}")
        return float(stored[matches[0]])

    # --- files ---------------------------------------------------------------------------------

    def _available(self, data_set: str) -> List[Tuple[str, str]]:
        directory = self.folder / data_set
        if not directory.is_dir():
            raise ValueError(
                f"data set {data_set!r} is not in {str(self.folder)!r}; "
                f"allowed: {', '.join(self.data_sets()) or 'none'}"
            )
        pairs = []
        for path in directory.glob("*.json"):
            key, sep, measure = path.stem.rpartition("_")
            if sep and measure in MEASURES:
                pairs.append((key, measure))
        return pairs

    def _table(self, data_set: str, key: str, measure: str) -> Mapping[str, Any]:
        cache_key = (data_set, key, measure)
        if cache_key in self._files:
            return self._files[cache_key]
        available = self._available(data_set)
        keys = sorted({k for k, _ in available})
        if key not in keys:
            raise ValueError(f"key {key!r} is not in {data_set}/ of {str(self.folder)!r}; allowed: {', '.join(keys)}")
        measures = sorted(m for k, m in available if k == key)
        if measure not in measures:
            raise ValueError(
                f"measure {measure!r} of {key!r} is not in {data_set}/ of {str(self.folder)!r}; "
                f"allowed: {', '.join(measures)}"
            )
        path = self.folder / data_set / f"{key}_{measure}.json"
        try:
            table = json.loads(path.read_text())[data_set][key][measure]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} does not hold [{data_set!r}][{key!r}][{measure!r}] as Jung et al.'s files do: "
                f"{type(error).__name__}: {error}"
            ) from None
        self._files[cache_key] = table
        return table
