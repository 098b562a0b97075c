"""The L2 search configurations (examples/max_l2.gin, examples/uniform_l2.gin) build and run."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from rnasframe import SearchEngine
from rnasframe.cli import search_main
from rnasframe.config import parse_gin
from rnasframe.perturbations import L2Ball, PGDMaximizer, UniformSampler

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_max_l2_binds_pgd_in_the_l2_ball_with_the_usual_step_size() -> None:
    parse_gin(["max_l2.gin"], [], [EXAMPLES])
    engine = SearchEngine()
    (regularizer,) = engine.objective.regularizers
    pgd = regularizer.perturbation
    assert pgd == PGDMaximizer(ball=L2Ball(epsilon=0.5), steps=10, step_size=0.125, random_start=True)
    assert pgd.step_size == pytest.approx(2.5 * pgd.ball.epsilon / pgd.steps)
    assert (engine.epochs, engine.batch_size, regularizer.weight) == (50, 64, 1.0)  # the paper's, from max.gin


def test_uniform_l2_binds_the_uniform_sampler_in_the_l2_ball() -> None:
    parse_gin(["uniform_l2.gin"], [], [EXAMPLES])
    (regularizer,) = SearchEngine().objective.regularizers
    assert regularizer.perturbation == UniformSampler(ball=L2Ball(epsilon=0.5))


@pytest.mark.parametrize(
    "name, bindings",
    [
        # One epoch and two PGD steps keep the smoke run at a few seconds on one CPU thread.
        ("max_l2.gin", ["SearchEngine.epochs = 1", "PGDMaximizer.steps = 2"]),
        ("uniform_l2.gin", ["SearchEngine.epochs = 1"]),
    ],
)
def test_l2_configs_run_a_tiny_search(tmp_path: Path, name: str, bindings: list[str]) -> None:
    args = [f"--gin_file={name}", "--gin_file=smoke.gin", *(f"--gin_param={b}" for b in bindings)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = search_main([*args, "--run_dir", str(tmp_path / "run")], examples_dir=EXAMPLES)
    assert code == 0
    assert "genotype = Genotype(" in out.getvalue()
    assert "L2Ball.epsilon = 0.5" in (tmp_path / "run" / "operative_config.gin").read_text()
