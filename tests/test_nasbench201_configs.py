"""The NAS-Bench-201 gin files parse strictly and build what they describe."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest

from rnasframe.config import parse_gin
from rnasframe.spaces.nasbench201 import NasBench201Space

CONFIGS = Path(__file__).resolve().parents[1] / "rnasframe" / "configs"


def _engine(name: str):
    parse_gin([str(CONFIGS / name)])
    from rnasframe.engine import SearchEngine

    return SearchEngine()


@pytest.mark.parametrize(
    ("name", "regularizer", "perturbation"),
    [("nb201_darts.gin", None, None), ("nb201_uniform.gin", "PerturbationConsistency", "UniformSampler"),
     ("nb201_max.gin", "PerturbationConsistency", "PGDMaximizer")],
)
def test_search_configs_are_the_papers_settings(name: str, regularizer: str, perturbation: str) -> None:
    engine = _engine(name)
    assert engine.space == NasBench201Space(channels=16, cells_per_stage=5)
    assert (engine.epochs, engine.warmup_epochs, engine.batch_size) == (50, 15, 64)
    assert engine.optimizer.weights.learning_rate == 0.025 and engine.optimizer.arch.learning_rate == 3e-4
    regularizers = engine.objective.regularizers
    if regularizer is None:
        assert list(regularizers) == []
        return
    (consistency,) = regularizers
    assert type(consistency).__name__ == regularizer and consistency.weight == 1.0
    assert type(consistency.perturbation).__name__ == perturbation
    ball = consistency.perturbation.ball
    assert ball.epsilon == 0.031
    if perturbation == "PGDMaximizer":
        assert (consistency.perturbation.steps, consistency.perturbation.step_size) == (10, 0.003)


def test_quickstart_config() -> None:
    engine = _engine("nb201_quickstart.gin")
    assert type(engine.data).__name__ == "DigitsSource" and engine.device == "cpu"
    assert engine.space.channels == 8 and engine.space.cells_per_stage == 1
    assert engine.epochs == 10


def test_training_config_is_nasbench201s_protocol() -> None:
    parse_gin([str(CONFIGS / "train_nb201.gin")])
    from rnasframe.training import Trainer

    trainer = Trainer()
    assert isinstance(trainer.space, NasBench201Space)
    assert (trainer.space.network_channels, trainer.space.network_cells_per_stage) == (16, 5)
    assert (trainer.epochs, trainer.batch_size) == (200, 256)
    settings = trainer.optimizer
    assert (settings.learning_rate, settings.min_learning_rate, settings.momentum, settings.weight_decay) == (
        0.1, 0.0, 0.9, 5e-4)
    assert settings.grad_clip is None and settings.nesterov
    assert trainer.augmentation.crop_padding == 4 and trainer.augmentation.horizontal_flip
    assert trainer.augmentation.cutout == 0
    gin.clear_config()


def test_training_quickstart_config() -> None:
    parse_gin([str(CONFIGS / "train_nb201_quickstart.gin")])
    from rnasframe.training import Trainer

    trainer = Trainer()
    assert type(trainer.data).__name__ == "DigitsSource" and trainer.device == "cpu"
    assert (trainer.space.network_channels, trainer.space.network_cells_per_stage) == (8, 1)
    assert trainer.augmentation.cutout == 0 and not trainer.augmentation.horizontal_flip
    gin.clear_config()
