"""Mix-in configs are pure overlays: no ``include``, they keep the base's data, epochs and widths,
and given alone they fail in one line."""

from __future__ import annotations

from typing import Any, Tuple

import gin
import pytest

from rnasframe import SearchEngine
from rnasframe.bilevel import SecondOrderDarts
from rnasframe.cli import search_main, train_main
from rnasframe.config import ConfigError, is_mixin, packaged_configs, parse_gin
from rnasframe.perturbations import L2Ball
from rnasframe.training import Trainer

CONFIGS = packaged_configs()
MIXINS = sorted(p.name for p in CONFIGS.glob("*.gin") if is_mixin(p))
#: The quickstart each mix-in overlays: the search's or the training's.
QUICKSTART = {
    "darts_second_order.gin": "quickstart.gin",
    "max_l2.gin": "quickstart.gin",
    "smoke.gin": "quickstart.gin",
    "uniform_l2.gin": "quickstart.gin",
    "adv_train_l2.gin": "train_quickstart.gin",
    "eval_autoattack.gin": "train_quickstart.gin",
    "eval_l2.gin": "train_quickstart.gin",
    "train_smoke.gin": "train_quickstart.gin",
}
#: Smoke mix-ins exist to shrink the run: they change the epochs and widths on purpose.
SHRINKING = {"smoke.gin", "train_smoke.gin"}


def _shape(base: str, *overlays: str) -> Tuple[Any, ...]:
    """The data, epochs and widths of the object that ``base`` (then ``overlays``) configures."""
    gin.clear_config()
    parse_gin([base, *overlays], ["Trainer.genotype = 'DARTS_V2'"] if base.startswith("train") else [])
    if base.startswith("train"):
        trainer = Trainer()
        widths = (getattr(trainer, "channels", None), getattr(trainer, "layers", None))
        return (trainer.data, trainer.epochs, trainer.batch_size, trainer.space, widths)
    engine = SearchEngine()
    return (engine.data, engine.epochs, engine.warmup_epochs, engine.batch_size, engine.space)


def test_every_mixin_is_known_and_no_mixin_includes_another_file() -> None:
    assert sorted(QUICKSTART) == MIXINS, "a new mix-in: add it to QUICKSTART"
    for name in MIXINS:
        lines = (CONFIGS / name).read_text().splitlines()
        assert not [line for line in lines if line.lstrip().startswith("include")], name


@pytest.mark.parametrize("name", [m for m in MIXINS if m not in SHRINKING])
def test_a_mixin_over_the_quickstart_keeps_its_data_epochs_and_widths(name: str) -> None:
    base = QUICKSTART[name]
    assert _shape(base, name) == _shape(base)


def test_second_order_over_the_quickstart_stays_on_the_digits() -> None:
    parse_gin(["quickstart.gin", "darts_second_order.gin"])
    engine = SearchEngine()
    assert isinstance(engine.optimizer, SecondOrderDarts)
    assert (type(engine.data).__name__, engine.epochs, engine.space.channels) == ("DigitsSource", 4, 4)


def test_the_l2_mixin_switches_the_ball_of_the_quickstart() -> None:
    parse_gin(["quickstart.gin", "max_l2.gin"])
    (regularizer,) = SearchEngine().objective.regularizers
    assert regularizer.perturbation.ball == L2Ball(0.5) and regularizer.perturbation.steps == 3


@pytest.mark.parametrize("name", ["smoke.gin", "train_smoke.gin"])
def test_smoke_mixins_compose_with_their_quickstart(name: str) -> None:
    assert _shape(QUICKSTART[name], name)[1] == 2  # two tiny epochs


def test_a_mixin_given_alone_fails_in_one_line_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"eval_l2.gin is a mix-in and cannot run alone: apply after"):
        parse_gin(["eval_l2.gin"])
    assert search_main(["--gin_file=smoke.gin", "--run_dir=never"]) == 2
    err = capsys.readouterr().err
    assert "smoke.gin is a mix-in and cannot run alone" in err and "quickstart.gin" in err and err.count("\n") == 1
    assert train_main(["--gin_file=train_smoke.gin", "--genotype=DARTS_V2", "--run_dir=never"]) == 2
    assert "train_smoke.gin is a mix-in" in capsys.readouterr().err


def test_a_bare_name_found_nowhere_fails_in_one_line_listing_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert search_main(["--gin_file=maxx.gin", "--run_dir=never"]) == 2
    err = capsys.readouterr().err
    assert "gin file 'maxx.gin' not found" in err and "available: " in err and "max.gin" in err
    assert err.count("\n") == 1
