"""Robust neural architecture search (RNAS) on CIFAR-10, configured with gin.

Examples::

    python examples/rnas_cifar10.py --gin_file=max.gin       # RNAS-max (paper section 3.2)
    python examples/rnas_cifar10.py --gin_file=uniform.gin   # RNAS-uniform (section 3.3)
    python examples/rnas_cifar10.py --gin_file=darts.gin     # the DARTS baseline
    python examples/rnas_cifar10.py --gin_file=quickstart.gin   # offline, bundled digits, minutes
    python examples/rnas_cifar10.py --resume --run_dir runs/max-20260101-120000

The same program as the installed console script ``rnas-search``. Bare gin file names are looked up
among the packaged configs (``rnasframe/configs``) and in this folder; ``--gin_param`` overrides
single values, e.g. ``--gin_param='SearchEngine.epochs = 1'``.
"""

from pathlib import Path

from rnasframe.cli import search_main

if __name__ == "__main__":
    raise SystemExit(search_main(examples_dir=Path(__file__).resolve().parent))
