"""Every shipped gin file parses and builds; bad configurations fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest

from rnasframe import PerturbationConsistency, SearchEngine
from rnasframe.bilevel import FirstOrderDarts, SecondOrderDarts
from rnasframe.cli import search_main
from rnasframe.config import ConfigError, is_mixin, packaged_configs, parse_gin, resolve_gin_file
from rnasframe.data import CIFAR10Source, DigitsSource
from rnasframe.perturbations import PGDMaximizer, UniformSampler
from rnasframe.similarity import KLSimilarity

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = packaged_configs()
# Training and evaluation files (train*.gin, adv_*.gin, trades*.gin, eval*.gin) configure the Trainer,
# not the SearchEngine; tests/test_training.py builds them. Mix-ins follow a base (see test_configs_overlay.py).
TRAINING_PREFIXES = ("train", "adv_", "trades", "eval")
METHOD_FILES = sorted(
    p.name for p in [*CONFIGS.glob("*.gin"), *EXAMPLES.glob("*.gin")]
    if not is_mixin(p) and not p.name.startswith(TRAINING_PREFIXES)
)


def _build(*files: str, bindings=()) -> SearchEngine:
    parse_gin(list(files), list(bindings), [EXAMPLES])
    return SearchEngine()


@pytest.mark.parametrize("name", METHOD_FILES)
def test_every_shipped_gin_file_parses_and_builds_with_smoke_bindings(name: str) -> None:
    engine = _build(name, "smoke.gin")
    assert engine.epochs == 2 and isinstance(engine.data, DigitsSource)


def test_paper_values_are_bound_in_max_gin() -> None:
    engine = _build("max.gin")
    assert (engine.epochs, engine.warmup_epochs, engine.batch_size, engine.train_portion) == (50, 15, 64, 0.5)
    assert isinstance(engine.data, CIFAR10Source)
    (regularizer,) = engine.objective.regularizers
    assert isinstance(regularizer, PerturbationConsistency) and regularizer.weight == 1.0
    assert isinstance(regularizer.similarity, KLSimilarity)
    pgd = regularizer.perturbation
    assert isinstance(pgd, PGDMaximizer)
    assert (pgd.steps, pgd.step_size, pgd.ball.epsilon, pgd.random_start) == (10, 0.003, 0.031, True)
    optimizer = engine.optimizer
    assert isinstance(optimizer, FirstOrderDarts)
    w, a = optimizer.weights, optimizer.arch
    assert (w.learning_rate, w.min_learning_rate, w.momentum, w.weight_decay, w.grad_clip) == (0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (a.learning_rate, a.betas, a.weight_decay) == (3e-4, (0.5, 0.999), 1e-3)


def test_uniform_and_darts_files_differ_from_max_only_in_the_regularizer() -> None:
    uniform = _build("uniform.gin")
    (regularizer,) = uniform.objective.regularizers
    assert isinstance(regularizer.perturbation, UniformSampler) and regularizer.perturbation.ball.epsilon == 0.031
    gin.clear_config()
    darts = _build("darts.gin")
    assert darts.objective.is_plain and darts.epochs == 50
    gin.clear_config()
    second = _build("max.gin", "darts_second_order.gin")
    assert isinstance(second.optimizer, SecondOrderDarts) and not second.objective.is_plain


def test_bare_names_resolve_with_or_without_extension_and_unknown_names_list_the_choices() -> None:
    assert resolve_gin_file("max") == CONFIGS / "max.gin"
    assert resolve_gin_file("max.gin", [EXAMPLES]) == CONFIGS / "max.gin"
    assert resolve_gin_file("brightness.gin", [EXAMPLES]) == EXAMPLES / "brightness.gin"  # a clone's examples/
    with pytest.raises(ConfigError, match=r"'nope.gin' not found.*available: .*brightness\.gin, .*max\.gin"):
        resolve_gin_file("nope.gin", [EXAMPLES])


def test_the_packaged_configs_hold_the_paper_files() -> None:
    names = {p.name for p in CONFIGS.glob("*.gin")}
    assert {"base.gin", "max.gin", "uniform.gin", "darts.gin", "quickstart.gin", "train.gin", "smoke.gin"} <= names
    # Only configs that import a module beside them stay in examples/ (custom_threat_model.py,
    # tiny_space.py): a wheel holds no examples/.
    assert {p.name for p in EXAMPLES.glob("*.gin")} == {"brightness.gin", "tiny_space.gin"}


@pytest.mark.parametrize(
    "binding, message",
    [
        ("SearchEngine.epochz = 3", "epochz"),
        ("NoSuchThing.value = 1", "NoSuchThing"),
        ("SearchEngine.epochs = (1", "malformed gin literal"),
    ],
)
def test_bindings_to_unknown_names_or_malformed_literals_fail_clearly(binding: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_gin(["max.gin"], [binding], [EXAMPLES])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_values_fail_at_build_naming_field_and_value() -> None:
    with pytest.raises(ValueError, match=r"LinfBall.epsilon must be >= 0.*-0.1"):
        _build("max.gin", bindings=["LinfBall.epsilon = -0.1"])
    gin.clear_config()
    with pytest.raises(ValueError, match=r"PGDMaximizer.steps must be an integer >= 1, got 0"):
        _build("max.gin", bindings=["PGDMaximizer.steps = 0"])


def test_cli_reports_configuration_and_data_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert search_main(["--gin_file=nope.gin"], examples_dir=EXAMPLES) == 2
    assert "available:" in capsys.readouterr().err
    assert search_main(["--gin_file=max.gin", "--gin_param=PerturbationConsistency.weight = -1"], examples_dir=EXAMPLES) == 2
    assert "PerturbationConsistency.weight must be >= 0" in capsys.readouterr().err
    code = search_main(
        ["--gin_file=darts.gin", f"--gin_param=CIFAR10Source.root = '{tmp_path}'", f"--run_dir={tmp_path / 'run'}"],
        examples_dir=EXAMPLES,
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "cifar-10-batches-py" in err
    assert search_main([], examples_dir=EXAMPLES) == 2
    assert search_main(["--resume"], examples_dir=EXAMPLES) == 2


def test_cli_runs_a_smoke_search_saves_the_config_and_resumes_from_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    args = ["--gin_file=uniform.gin", "--gin_file=smoke.gin", "--gin_param=SearchEngine.epochs = 1", f"--run_dir={run_dir}"]
    assert search_main(args, examples_dir=EXAMPLES) == 0
    out = capsys.readouterr().out
    assert "genotype = Genotype(normal=" in out
    operative = (run_dir / "operative_config.gin").read_text()
    assert "UniformSampler" in operative and "SearchEngine.epochs = 1" in operative
    gin.clear_config()
    # Resuming a finished run with its saved config.gin finishes at once and prints the genotype.
    assert search_main(["--resume", f"--run_dir={run_dir}"], examples_dir=EXAMPLES) == 0
    assert "genotype = " in capsys.readouterr().out
