"""The tutorial's third search space, in examples/tiny_space.py: search, train and evaluate end to end.

Nothing in the library knows the space: examples/tiny_space.gin imports it and binds it to the
search engine and the trainer, on top of the shipped smoke configurations.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import gin
import pytest

from rnasframe.cli import evaluate_main, search_main, train_main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
if str(EXAMPLES) not in sys.path:  # the same folder parse_gin adds for the gin `import` statement
    sys.path.append(str(EXAMPLES))

from tiny_space import ChainGenotype, TinySpace  # noqa: E402

TINY = str(EXAMPLES / "tiny_space.gin")


def _run(main: object, *args: str) -> str:
    out = io.StringIO()
    gin.clear_config()
    with contextlib.redirect_stdout(out):
        code = main(list(args), examples_dir=EXAMPLES)  # type: ignore[operator]
    assert code == 0, out.getvalue()
    return out.getvalue()


def test_tiny_space_notation() -> None:
    space = TinySpace(edges=3)
    genotype = ChainGenotype(["conv_3x3", "skip", "pool"])
    assert str(genotype) == "conv_3x3-skip-pool"
    assert space.resolve_genotype("conv_3x3-skip-pool") == genotype
    assert space.resolve_genotype(json.dumps(space.genotype_to_dict(genotype))) == genotype
    with pytest.raises(ValueError, match="ChainGenotype.ops must be a non-empty list of conv_3x3, pool, skip"):
        space.resolve_genotype("conv_5x5-skip-pool")
    with pytest.raises(ValueError, match="TinySpace needs a ChainGenotype of 3 operations"):
        space.resolve_genotype("skip")
    with pytest.raises(ValueError, match="TinySpace.edges must be an integer >= 1, got 0"):
        TinySpace(edges=0)


@pytest.mark.slow
def test_tiny_space_searches_trains_and_evaluates(tmp_path: Path) -> None:
    search, train = tmp_path / "search", tmp_path / "train"
    printed = _run(search_main, "--gin_file=uniform.gin", "--gin_file=smoke.gin", f"--gin_file={TINY}",
                   "--run_dir", str(search))
    genotype = TinySpace().genotype_from_dict(json.loads((search / "genotype.json").read_text()))
    assert f"genotype = {genotype}" in printed
    assert (search / "chain.png").stat().st_size > 0
    printed = _run(train_main, "--gin_file=train.gin", "--gin_file=train_smoke.gin", f"--gin_file={TINY}",
                   "--genotype", str(search), "--run_dir", str(train))
    assert "| Model | Params (M) | Clean |" in printed
    results = json.loads((train / "results.json").read_text())
    assert results["genotype"] == {"ops": list(genotype.ops)}
    assert "Clean" in _run(evaluate_main, "--run_dir", str(train))
