"""Behaviour preservation: a short search and a short training give the recorded numbers.

``tests/data/reference_run.json`` holds fingerprints of runs computed by an earlier version of
the code (before the run lifecycle and the network configuration moved). Each test repeats the
run with the same seed and compares:

* **search** (DARTS, RNAS-uniform and RNAS-max, first and second order): the final alpha and every
  supernet weight, **bit-identical** (SHA-256 of the bytes of every tensor). Nothing in the
  search's arithmetic is meant to change.
* **training from scratch** (standard with auxiliary head and drop path, TRADES): the trained
  weights to **float tolerance** (rtol 1e-3, atol 1e-5 on per-tensor sums, absolute sums and
  first values; measured: at most 1.6e-4 relative after 6 SGD steps): drop path is now
  :func:`torchvision.ops.stochastic_depth`, which scales the mask before multiplying
  (``x * (mask / keep)``) where the earlier code divided the product (``x * mask / keep``), so
  the last bit of dropped-path outputs differs and the difference grows a little with every
  step. The random draws are the same ones. The robustness table (clean, FGSM and PGD-20
  accuracy on 24 test images) must be equal.

Second-order RNAS-uniform and RNAS-max were recorded again when :class:`SecondOrderDarts` started
evaluating all four objectives of one architecture step with one draw of ``x'``
(:class:`~rnasframe.bilevel.SharedDraw`): a deliberate change of which noise those evaluations
see. The other four searches still give the numbers of the earlier code, bit for bit.

The recorded numbers come from one CPU kind (``cpu_capability`` in the file, one thread). On a
CPU whose vector instruction set differs, convolutions may round differently: there the search
test compares alpha to 1e-5 and the sum of all weights to a relative 1e-5 instead of bit for bit.

Regenerate the file only for a deliberate change of behaviour:
``python tests/test_reference_run.py --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, Mapping

import pytest
import torch
from torch import Tensor

from rnasframe import FirstOrderDarts, PerturbationConsistency, RobustObjective, SearchEngine, SecondOrderDarts
from rnasframe.data import Augmentation, DigitsSource
from rnasframe.perturbations import LinfBall, PGDMaximizer, UniformSampler
from rnasframe.robustness import RobustnessEvaluation
from rnasframe.similarity import KLSimilarity
from rnasframe.spaces.darts import DartsNetworkConfig, DartsSpace
from rnasframe.spaces.darts.supernet import SupernetOptions
from rnasframe.training import StandardTraining, TradesTraining, Trainer

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_run.json"

#: Tolerance of the training weights (see the module docstring for why they are not bit-exact).
TRAINING_RTOL = 1e-3
TRAINING_ATOL = 1e-5


def _objective(kind: str) -> RobustObjective:
    if kind == "darts":
        return RobustObjective()
    if kind == "uniform":
        perturbation: Any = UniformSampler(ball=LinfBall(0.031))
    else:
        perturbation = PGDMaximizer(ball=LinfBall(0.031), steps=2, step_size=0.01, random_start=True)
    return RobustObjective([PerturbationConsistency(perturbation, similarity=KLSimilarity(), weight=1.0)])


def _search(kind: str, order: str, run_dir: Path) -> Dict[str, Tensor]:
    engine = SearchEngine(
        space=DartsSpace(channels=2, layers=3, options=SupernetOptions.plain()),
        data=DigitsSource(),
        objective=_objective(kind),
        optimizer=FirstOrderDarts() if order == "first" else SecondOrderDarts(),
        epochs=2,
        warmup_epochs=1,
        batch_size=16,
        augmentation=Augmentation(crop_padding=1, horizontal_flip=True),
        seed=7,
        device="cpu",
        max_steps_per_epoch=2,
        eval_batches=1,
    )
    assert engine.run(run_dir) is not None
    return _model_state(run_dir / "checkpoint.pt")


def _trainer(objective: str) -> Trainer:
    """A tiny DARTS_V2 network (C=2, 3 cells, auxiliary head, drop path 0.3) on the digits.

    (Recorded when these settings were ``Trainer(channels=2, layers=3, auxiliary_weight=0.4,
    drop_path_prob=0.3)``; the same network and loss.)
    """
    network = DartsNetworkConfig(channels=2, layers=3, auxiliary=True, drop_path_prob=0.3)
    return Trainer(
        genotype="DARTS_V2",
        space=DartsSpace(network_config=network),
        data=DigitsSource(),
        objective=StandardTraining(auxiliary_weight=0.4) if objective == "standard" else TradesTraining(
            beta=6.0,
            perturbation=PGDMaximizer(ball=LinfBall(0.031), steps=2, step_size=0.01, random_start=True),
            auxiliary_weight=0.4,
        ),
        epochs=2,
        batch_size=16,
        augmentation=Augmentation(crop_padding=1, horizontal_flip=False, cutout=2),
        max_steps_per_epoch=3,
        selection=None,
        selection_max_examples=24,
        evaluation=RobustnessEvaluation(max_examples=24),
        seed=5,
        device="cpu",
    )


def _train(objective: str, run_dir: Path) -> Dict[str, Any]:
    result = _trainer(objective).run(run_dir)
    assert result is not None
    return {  # the table in the evaluation's order: clean, FGSM, PGD-20
        "state": _model_state(run_dir / "checkpoint.pt"),
        "table": [result.report.clean, *result.report.attacks.values()],
    }


def _model_state(path: Path) -> Dict[str, Tensor]:
    stored = torch.load(path, map_location="cpu", weights_only=True)
    return {name: tensor for name, tensor in stored["model"].items() if tensor.is_floating_point()}


def fingerprint(state: Mapping[str, Tensor], per_tensor: bool = True) -> Dict[str, Any]:
    """SHA-256 of all tensors' bytes (sorted names); per tensor its sum, absolute sum and first values.

    Without ``per_tensor`` (the supernets, hundreds of tensors) only the architecture parameters
    are listed, in full, beside the total sum of all weights.
    """
    digest = hashlib.sha256()
    tensors: Dict[str, Any] = {}
    total = 0.0
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
        flat = tensor.double().flatten()
        total += float(flat.sum())
        if per_tensor:
            tensors[name] = [float(flat.sum()), float(flat.abs().sum()), *[float(v) for v in flat[:3]]]
        elif name.startswith("alpha"):
            tensors[name] = [float(v) for v in flat]
    return {"sha256": digest.hexdigest(), "tensors": tensors, "sum": total}


SEARCH_CASES = [(kind, order) for kind in ("darts", "uniform", "max") for order in ("first", "second")]
TRAINING_CASES = ["standard", "trades"]


def _reference() -> Dict[str, Any]:
    return json.loads(REFERENCE.read_text())


def _differences(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    lines = []
    for name, values in expected["tensors"].items():
        other = found["tensors"].get(name)
        if other != values:
            lines.append(f"{name}: expected {values}, found {other}")
    lines.append(f"sum of all weights: expected {expected['sum']!r}, found {found['sum']!r}")
    return "\n".join(lines[:10])


@pytest.mark.slow
@pytest.mark.parametrize("kind, order", SEARCH_CASES)
def test_search_gives_the_recorded_alpha_and_weights_bit_for_bit(tmp_path: Path, kind: str, order: str) -> None:
    reference = _reference()
    expected = reference["search"][f"{kind}/{order}"]
    found = fingerprint(_search(kind, order, tmp_path / "run"), per_tensor=False)
    if torch.backends.cpu.get_cpu_capability() == reference["cpu_capability"]:
        assert found["sha256"] == expected["sha256"], _differences(expected, found)
        return
    for name, values in expected["tensors"].items():  # another instruction set: float tolerance
        torch.testing.assert_close(torch.tensor(found["tensors"][name]), torch.tensor(values), rtol=0, atol=1e-5)
    assert found["sum"] == pytest.approx(expected["sum"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("objective", TRAINING_CASES)
def test_training_gives_the_recorded_weights_and_robustness_table(tmp_path: Path, objective: str) -> None:
    expected = _reference()["training"][objective]
    found = _train(objective, tmp_path / "run")
    assert found["table"] == expected["table"]
    values = fingerprint(found["state"])["tensors"]
    assert set(values) == set(expected["tensors"])
    for name, reference in expected["tensors"].items():
        torch.testing.assert_close(
            torch.tensor(values[name], dtype=torch.float64),
            torch.tensor(reference, dtype=torch.float64),
            rtol=TRAINING_RTOL,
            atol=TRAINING_ATOL,
            msg=lambda text, name=name: f"{name}: {text}",
        )


def _write(folder: Path) -> None:  # pragma: no cover - regenerates the reference file
    torch.set_num_threads(1)
    payload: Dict[str, Any] = {"search": {}, "training": {}, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for kind, order in SEARCH_CASES:
        torch.manual_seed(0)
        payload["search"][f"{kind}/{order}"] = fingerprint(
            _search(kind, order, folder / f"{kind}-{order}"), per_tensor=False
        )
    for objective in TRAINING_CASES:
        torch.manual_seed(0)
        trained = _train(objective, folder / objective)
        payload["training"][objective] = {**fingerprint(trained["state"]), "table": trained["table"]}
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(payload, sort_keys=True) + "\n")


if __name__ == "__main__":  # pragma: no cover
    import tempfile

    if "--write" not in sys.argv:
        raise SystemExit("usage: python tests/test_reference_run.py --write")
    with tempfile.TemporaryDirectory() as directory:
        _write(Path(directory))
