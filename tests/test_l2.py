"""The L2 mix-ins build and run: search (max_l2.gin, uniform_l2.gin), adversarial training
(adv_train_l2.gin) and evaluation (eval_l2.gin), each over its base config."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import gin
import pytest

from rnasframe import SearchEngine
from rnasframe.cli import evaluate_main, search_main, train_main
from rnasframe.config import parse_gin
from rnasframe.perturbations import FGSM, PGD, L2Ball, PGDMaximizer, UniformSampler
from rnasframe.training import AdversarialTraining, Trainer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_max_l2_binds_pgd_in_the_l2_ball_with_the_usual_step_size() -> None:
    parse_gin(["max.gin", "max_l2.gin"], [], [EXAMPLES])
    engine = SearchEngine()
    (regularizer,) = engine.objective.regularizers
    pgd = regularizer.perturbation
    assert pgd == PGDMaximizer(ball=L2Ball(epsilon=0.5), steps=10, step_size=0.125, random_start=True)
    assert pgd.step_size == pytest.approx(2.5 * pgd.ball.epsilon / pgd.steps)
    assert (engine.epochs, engine.batch_size, regularizer.weight) == (50, 64, 1.0)  # the paper's, from max.gin


def test_uniform_l2_binds_the_uniform_sampler_in_the_l2_ball() -> None:
    parse_gin(["uniform.gin", "uniform_l2.gin"], [], [EXAMPLES])
    (regularizer,) = SearchEngine().objective.regularizers
    assert regularizer.perturbation == UniformSampler(ball=L2Ball(epsilon=0.5))


@pytest.mark.parametrize(
    "name, bindings",
    [
        # One epoch and two PGD steps keep the smoke run at a few seconds on one CPU thread.
        ("max", ["SearchEngine.epochs = 1", "PGDMaximizer.steps = 2"]),
        ("uniform", ["SearchEngine.epochs = 1"]),
    ],
)
def test_l2_configs_run_a_tiny_search(tmp_path: Path, name: str, bindings: list[str]) -> None:
    files = [f"{name}.gin", f"{name}_l2.gin", "smoke.gin"]
    args = [*(f"--gin_file={f}" for f in files), *(f"--gin_param={b}" for b in bindings)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = search_main([*args, "--run_dir", str(tmp_path / "run")], examples_dir=EXAMPLES)
    assert code == 0
    assert "genotype = Genotype(" in out.getvalue()
    operative = (tmp_path / "run" / "operative_config.gin").read_text()
    assert "EPSILON = 0.5" in operative and "L2Ball.epsilon = %EPSILON" in operative


def test_eval_l2_and_adv_train_l2_bind_the_l2_ball_everywhere() -> None:
    parse_gin(["train.gin", "eval_l2.gin"], [], [EXAMPLES])
    evaluation = Trainer().evaluation
    ball = L2Ball(epsilon=0.5)
    assert evaluation.epsilon == 0.5
    assert evaluation.attacks == (FGSM(ball), PGD(ball, steps=20, step_size=0.0625))
    gin.clear_config()
    parse_gin(["adv_train.gin", "adv_train_l2.gin"], ["Trainer.genotype = 'DARTS'"], [EXAMPLES])
    trainer = Trainer()
    assert isinstance(trainer.objective, AdversarialTraining)
    assert trainer.objective.perturbation == PGDMaximizer(ball=ball, steps=7, step_size=0.18, random_start=True)
    assert trainer.evaluation.epsilon == 0.5 and trainer.evaluation.sweep_attack.ball == ball
    assert trainer.selection == PGD(ball, steps=10, step_size=0.125)


def _results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_l2_adversarial_training_and_l2_evaluation_run_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    adversarial = tmp_path / "adv_l2"
    with contextlib.redirect_stdout(out):
        code = train_main(
            ["--gin_file=adv_train.gin", "--gin_file=adv_train_l2.gin", "--gin_file=train_smoke.gin", "--genotype=DARTS",
             f"--run_dir={adversarial}"],
            examples_dir=EXAMPLES,
        )
    assert code == 0
    results = _results(adversarial)
    assert {(a["norm"], a["epsilon"]) for a in results["evaluation"]["attacks"]} == {("L2", 0.5)}
    assert "norm=L2" in results["training"]["selection"]
    assert results["training"]["objective"]["perturbation"].startswith("PGDMaximizer(ball=L2Ball(epsilon=0.5), steps=7")
    checks = {c["name"]: c["passed"] for c in results["evaluation"]["sanity"]["checks"]}
    assert checks["adversarial_examples_in_ball"] and checks["epsilon_zero_is_clean"]
    assert "norm=L2" in (adversarial / "results.md").read_text()

    # A standard (L-inf evaluated) run, evaluated again under L2 with eval_l2.gin.
    standard = tmp_path / "standard"
    gin.clear_config()
    with contextlib.redirect_stdout(out):
        assert train_main(
            ["--gin_file=train.gin", "--gin_file=train_smoke.gin", "--genotype=DARTS", f"--run_dir={standard}",
             "--gin_param=Trainer.epochs = 1"],
            examples_dir=EXAMPLES,
        ) == 0
    assert {a["norm"] for a in _results(standard)["evaluation"]["attacks"]} == {"Linf"}
    gin.clear_config()
    with contextlib.redirect_stdout(out):
        assert evaluate_main([f"--run_dir={standard}", "--gin_file=eval_l2.gin"], examples_dir=EXAMPLES) == 0
    again = _results(standard)["evaluation"]
    assert {(a["norm"], a["epsilon"]) for a in again["attacks"]} == {("L2", 0.5)}
    assert again["sweep"]["epsilons"] == pytest.approx([0.0, 0.125, 0.25, 0.5])
    assert set(again["accuracy"]) == {"clean", "fgsm", "pgd20"}
