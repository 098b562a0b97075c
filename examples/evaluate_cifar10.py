"""Evaluate a trained network's robustness again (clean, FGSM, PGD-20, optionally AutoAttack).

Examples::

    python examples/evaluate_cifar10.py --run_dir runs/train-20260101-120000
    python examples/evaluate_cifar10.py --run_dir runs/train-... --attacks fgsm,pgd20,autoattack
    python examples/evaluate_cifar10.py --run_dir runs/train-... --checkpoint last
    python examples/evaluate_cifar10.py --run_dir runs/train-... --gin_file=eval_autoattack.gin

The run's own ``config.gin`` is parsed first (data, network), then ``--gin_file``/``--gin_param``;
``results.json`` and ``results.md`` in the run folder are rewritten. ``--attacks`` is a shorthand for
``RobustnessEvaluation.attacks`` (e.g. ``[@FGSM(), @pgd20/PGD()]``). AutoAttack needs the optional
extra: ``pip install 'rnasframe[autoattack]'``. The same program as the console script ``rnas-evaluate``.
"""

from pathlib import Path

from rnasframe.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main(examples_dir=Path(__file__).resolve().parent))
