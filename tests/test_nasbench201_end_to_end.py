"""NAS-Bench-201 through the unchanged core: search, resume, tabulated robustness, training.

Offline on the bundled digits with a tiny supernet and network. The tabulated robustness in a
search's logs needs the engine to log the space's ``genotype_metrics``; that test skips while the
engine does not call it.
"""

from __future__ import annotations

import inspect
import itertools
import json
from pathlib import Path
from typing import Dict

import gin
import pytest
import torch

import rnasframe.engine
from rnasframe.config import parse_gin
from rnasframe.spaces.nasbench201 import OPERATIONS

pytestmark = pytest.mark.slow


needs_metrics_logging = pytest.mark.skipif(
    "genotype_metrics" not in inspect.getsource(rnasframe.engine),
    reason="the search engine does not log SearchSpace.genotype_metrics yet",
)

TINY = [
    "SearchEngine.epochs = 2",
    "SearchEngine.warmup_epochs = 1",
    "SearchEngine.max_steps_per_epoch = 3",
    "SearchEngine.eval_batches = 2",
    "NasBench201Space.channels = 2",
]


def _every_architecture_folder(root: Path) -> Path:
    """A synthetic release listing all 15,625 cells, each its own isomorph, with made-up accuracies."""
    ids: Dict[str, Dict[str, str]] = {}
    clean, fgsm, pgd = {}, {}, {}
    for index, ops in enumerate(itertools.product(OPERATIONS, repeat=6)):
        text = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
        ids[str(index)] = {"nb201-string": text, "isomorph": str(index)}
        clean[str(index)] = 0.5 + index / 1e5
        fgsm[str(index)] = [0.4, 0.2 + index / 1e6]
        pgd[str(index)] = [0.3, 0.1 + index / 1e6]
    root.mkdir()
    (root / "meta.json").write_text(json.dumps({"ids": ids, "epsilons": {"fgsm@Linf": [1.0, 8.0],
                                                                          "pgd@Linf": [1.0, 8.0]}}))
    (root / "cifar10").mkdir()
    for key, table in (("clean", clean), ("fgsm@Linf", fgsm), ("pgd@Linf", pgd)):
        (root / "cifar10" / f"{key}_accuracy.json").write_text(json.dumps({"cifar10": {key: {"accuracy": table}}}))
    return root


def test_search_resume_pictures_and_training(tmp_path: Path) -> None:
    parse_gin(["nb201_quickstart.gin"], TINY)
    full = rnasframe.engine.SearchEngine().run(tmp_path / "full")
    assert rnasframe.engine.SearchEngine().run(tmp_path / "split", stop_after_epoch=1) is None
    split = rnasframe.engine.SearchEngine().run(tmp_path / "split", resume=True)
    assert full is not None and split is not None and str(full.genotype) == str(split.genotype)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)  # resumes bit-identically
    assert json.loads((tmp_path / "full" / "genotype.json").read_text()) == {"arch_str": str(full.genotype)}
    assert (tmp_path / "full" / "cell.png").is_file() and (tmp_path / "full" / "alpha_cell.png").is_file()

    gin.clear_config()
    parse_gin(["train_nb201_quickstart.gin"], ["Trainer.epochs = 1", "Trainer.max_steps_per_epoch = 3"])
    from rnasframe.training import Trainer

    assert Trainer(genotype=str(tmp_path / "full")).run(tmp_path / "train") is not None
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert {"clean", "fgsm"} <= set(results["evaluation"]["accuracy"])


@needs_metrics_logging
def test_tabulated_robustness_in_the_search_logs(tmp_path: Path) -> None:
    data = _every_architecture_folder(tmp_path / "robustness-data")
    bindings = [*TINY, "NasBench201Space.robustness_dataset = @RobustnessDataset()",
                f"RobustnessDataset.folder = '{data}'"]
    parse_gin(["nb201_quickstart.gin"], bindings)
    result = rnasframe.engine.SearchEngine().run(tmp_path / "run")
    assert result is not None
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    expected = rnasframe.engine.SearchEngine().space.genotype_metrics(result.genotype)
    assert results["genotype_metrics"] == pytest.approx(expected)
    assert set(expected) == {"cell_skip_connect", "cifar10/clean", "cifar10/fgsm@Linf", "cifar10/pgd@Linf"}
    assert "cifar10/clean" in (tmp_path / "run" / "log.txt").read_text()  # logged after every epoch
