"""Training from scratch: the genotype's network, pluggable objectives, checkpoint selection.

* :class:`Trainer` — the loop (paper section 4.2 by default), run folder, resume, ``best.pt``,
  final robustness evaluation into ``results.json`` / ``results.md``.
* Objectives (paper section 4.3): :class:`StandardTraining`, :class:`AdversarialTraining`
  (Madry's PGD-7) and :class:`TradesTraining` (TRADES' KL with β = 6), all gin-bindable as
  ``Trainer.objective``.
* :func:`resolve_genotype` — a genotype from a ``genotype.json``, a run folder or a name.
"""

from rnasframe.training.genotypes import resolve_genotype
from rnasframe.training.objectives import (
    AdversarialTraining,
    StandardTraining,
    TradesTraining,
    TrainingObjective,
    TrainingOutput,
)
from rnasframe.training.trainer import BEST_FORMAT, CHECKPOINT_FORMAT, Trainer, TrainResult

__all__ = [
    "AdversarialTraining",
    "BEST_FORMAT",
    "CHECKPOINT_FORMAT",
    "StandardTraining",
    "TradesTraining",
    "TrainResult",
    "Trainer",
    "TrainingObjective",
    "TrainingOutput",
    "resolve_genotype",
]
