"""Print the tabulated robustness of a NAS-Bench-201 cell (Jung, Lukasik & Keuper, ICLR 2023).

Examples::

    python examples/query_robustness.py --dataset_dir robustness-data --genotype runs/search-...
    python examples/query_robustness.py --dataset_dir robustness-data \\
        --genotype '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|'
    python examples/query_robustness.py --dataset_dir robustness-data --genotype ... --keys all --measure accuracy

``--genotype`` is a search's run folder (its ``genotype.json``), a ``genotype.json`` file or an
architecture string. The table has one row per data set and key; values stored over an attack's
epsilon grid are listed per epsilon (units of 1/255).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from rnasframe.spaces.nasbench201 import NasBench201Genotype, NasBench201Space, RobustnessDataset

ADVERSARIAL_KEYS = ("clean", "fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf")


def read_genotype(text: str) -> NasBench201Genotype:
    """A run folder, a genotype.json file or an architecture string (or its JSON form)."""
    space = NasBench201Space()
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "genotype.json"
        if not path.is_file():
            raise ValueError(f"run folder {text!r} holds no genotype.json")
    if path.is_file():
        return space.genotype_from_dict(json.loads(path.read_text()))
    return space.resolve_genotype(text)


def table(
    data: RobustnessDataset,
    genotype: NasBench201Genotype,
    data_sets: Sequence[str],
    keys: Optional[Sequence[str]],
    measure: str,
) -> List[str]:
    """The rows of the printed table (data set, key, value or values per epsilon)."""
    rows = [f"architecture: {genotype} (id {data.architecture_id(genotype)}, evaluated as "
            f"{data.evaluated_id(genotype)})", f"{'data set':<16} {'key':<20} {measure}"]
    for data_set in data_sets:
        present = data.keys(data_set)
        wanted = present if keys is None else [k for k in keys if k in present]
        for key in wanted:
            if measure not in data.measures(key, data_set):
                continue
            value = data.value(genotype, key, measure, data_set)
            grid = data.epsilons(key)
            if isinstance(value, list) and grid is not None and len(grid) == len(value):
                shown = ", ".join(f"eps {e:g}: {v:.4f}" if isinstance(v, float) else f"eps {e:g}: {v}"
                                  for e, v in zip(grid, value))
            else:
                shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            rows.append(f"{data_set:<16} {key:<20} {shown}")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the flags, print the table; errors are one line on stderr (exit status 2)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genotype", required=True, help="run folder, genotype.json or architecture string")
    parser.add_argument(
        "--dataset_dir", required=True, help="Jung et al.'s unpacked release (meta.json, cifar10/, ...)"
    )
    parser.add_argument("--data_sets", default=None, help="comma-separated data set folders (default: all present)")
    parser.add_argument("--keys", default=",".join(ADVERSARIAL_KEYS),
                        help="comma-separated keys, or 'all' for every key present (corruptions included)")
    parser.add_argument("--measure", default="accuracy", help="accuracy, confidence or cm")
    args = parser.parse_args(argv)
    try:
        data = RobustnessDataset(args.dataset_dir)
        genotype = read_genotype(args.genotype)
        data_sets = data.data_sets() if args.data_sets is None else args.data_sets.split(",")
        keys = None if args.keys == "all" else args.keys.split(",")
        print("\n".join(table(data, genotype, data_sets, keys, args.measure)))
    except (ValueError, TypeError) as error:
        parser.exit(2, f"query_robustness.py: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
