"""RobustnessDataset on a small synthetic folder in the layout of Jung et al.'s release."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from rnasframe.spaces.nasbench201 import NasBench201Space, RobustnessDataset, parse_architecture

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
B = "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
C = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"  # listed in meta.json, missing from the files
EPSILONS = [0.1, 1.0, 8.0]


def _write(folder: Path, data_set: str, key: str, measure: str, table: Dict[str, Any]) -> None:
    (folder / data_set).mkdir(parents=True, exist_ok=True)
    (folder / data_set / f"{key}_{measure}.json").write_text(json.dumps({data_set: {key: {measure: table}}}))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "robustness-data"
    root.mkdir()
    meta = {
        "ids": {
            "3": {"nb201-string": A, "isomorph": "3"},
            "7": {"nb201-string": B.replace("none~0", "skip_connect~0"), "isomorph": "7"},
            "12": {"nb201-string": B, "isomorph": "7"},
            "20": {"nb201-string": C, "isomorph": "20"},
        },
        "epsilons": {"fgsm@Linf": EPSILONS, "pgd@Linf": EPSILONS},
    }
    (root / "meta.json").write_text(json.dumps(meta))
    _write(root, "cifar10", "clean", "accuracy", {"3": 0.91, "7": 0.85})
    _write(root, "cifar10", "fgsm@Linf", "accuracy", {"3": [0.8, 0.5, 0.1], "7": [0.7, 0.4, 0.05]})
    _write(root, "cifar10", "pgd@Linf", "accuracy", {"3": [0.79, 0.45, 0.01], "7": [0.69, 0.3, 0.0]})
    _write(root, "cifar10", "clean", "confidence", {"3": 0.88, "7": 0.8})
    _write(root, "cifar10", "gaussian_noise", "accuracy", {"3": [0.6, 0.5], "7": [0.5, 0.4]})
    _write(root, "cifar100", "clean", "accuracy", {"3": 0.7, "7": 0.6})
    return root


def test_query_through_string_and_isomorph(folder: Path) -> None:
    data = RobustnessDataset(folder)
    assert data.architecture_id(A) == "3" and data.evaluated_id(parse_architecture(B)) == "7"
    assert data.value(A) == 0.91
    assert data.value(B, "fgsm@Linf") == [0.7, 0.4, 0.05]  # as stored, over the epsilon grid
    assert data.value(A, "clean", "confidence") == 0.88
    assert data.value(A, data_set="cifar100") == 0.7
    assert data.query(B) == {"clean": 0.85, "fgsm@Linf": [0.7, 0.4, 0.05], "pgd@Linf": [0.69, 0.3, 0.0]}
    assert data.summary(A) == {"cifar10/clean": 0.91, "cifar10/fgsm@Linf": 0.1, "cifar10/pgd@Linf": 0.01}
    assert RobustnessDataset(folder, epsilon=1.0).summary(B)["cifar10/pgd@Linf"] == 0.3
    assert data.data_sets() == ["cifar10", "cifar100"]
    assert data.keys() == ["clean", "fgsm@Linf", "gaussian_noise", "pgd@Linf"]
    assert data.measures("clean") == ["accuracy", "confidence"]


def test_files_are_read_lazily(folder: Path) -> None:
    data = RobustnessDataset(folder)
    data.value(A)
    assert set(data._files) == {("cifar10", "clean", "accuracy")}
    (folder / "cifar10" / "clean_accuracy.json").unlink()  # cached: not read again
    assert data.value(A) == 0.91


def test_space_metrics(folder: Path) -> None:
    space = NasBench201Space(robustness_dataset=RobustnessDataset(folder))
    assert space.genotype_metrics(parse_architecture(A)) == {
        "cell_skip_connect": float(A.count("skip_connect")), "cifar10/clean": 0.91, "cifar10/fgsm@Linf": 0.1, "cifar10/pgd@Linf": 0.01
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: d.value(A, "pgd@L2"), r"key 'pgd@L2' is not in cifar10/ .*allowed: clean, fgsm@Linf"),
        (lambda d: d.value(A, "clean", "cm"), r"measure 'cm' of 'clean' .*allowed: accuracy, confidence"),
        (lambda d: d.value(A, data_set="ImageNet16-120"), r"data set 'ImageNet16-120' .*allowed: cifar10, cifar100"),
        (lambda d: d.value(C), r"missing from cifar10/clean_accuracy.json"),
        (lambda d: d.value("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|"), r"is not in .*meta.json"),
        (lambda d: d.at_epsilon("gaussian_noise", [0.6, 0.5]), r"meta.json lists no epsilons"),
        (lambda d: d.at_epsilon("fgsm@Linf", [1, 2, 3], epsilon=4.0), r"epsilon 4 .*allowed: \[0.1, 1.0, 8.0\]"),
    ],
)
def test_bad_queries_are_one_line(folder: Path, call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        call(RobustnessDataset(folder))
    assert "\n" not in str(error.value)


def test_bad_folders(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(ValueError, match="has no meta.json"):
        RobustnessDataset(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"architectures": {}}))
    with pytest.raises(ValueError, match="is not Jung et al.'s meta.json"):
        RobustnessDataset(tmp_path)
    with pytest.raises(ValueError, match="epsilon 5 .*not on the grid"):
        RobustnessDataset(folder, epsilon=5.0)


def _example():
    path = Path(__file__).resolve().parents[1] / "examples" / "query_robustness.py"
    spec = importlib.util.spec_from_file_location("query_robustness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_query_robustness_example(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "genotype.json").write_text(json.dumps(NasBench201Space().genotype_to_dict(parse_architecture(B))))
    example = _example()
    assert example.main(["--genotype", str(run), "--dataset_dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "evaluated as 7" in out
    assert "cifar10          clean                0.8500" in out
    assert "eps 8: 0.0500" in out and "cifar100         clean                0.6000" in out
    assert example.main(["--genotype", A, "--dataset_dir", str(folder), "--keys", "all", "--data_sets", "cifar10"]) == 0
    assert "gaussian_noise" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--genotype", A.replace("skip_connect~2", "skip_connect~5"), "--dataset_dir", str(folder)])
    assert exit_info.value.code == 2
    assert "bad input index '5'" in capsys.readouterr().err


def test_bound_in_gin(folder: Path) -> None:
    import gin

    from rnasframe.config import parse_gin

    parse_gin([], [
        "import rnasframe.spaces.nasbench201",
        "NasBench201Space.robustness_dataset = @RobustnessDataset()",
        f"RobustnessDataset.folder = '{folder}'",
        "RobustnessDataset.epsilon = 1.0",
    ])
    space = NasBench201Space()
    assert space.genotype_metrics(parse_architecture(A)) == {
        "cell_skip_connect": float(A.count("skip_connect")), "cifar10/clean": 0.91, "cifar10/fgsm@Linf": 0.5, "cifar10/pgd@Linf": 0.45
    }
    gin.clear_config()
