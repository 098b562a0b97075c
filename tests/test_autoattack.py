"""AutoAttack (the ``autoattack`` extra, part of the ``test`` extra) on a small trained network.

A stronger attack finds at least the errors a weaker one finds: on the same images, at the same
radius, AutoAttack (standard, L-inf) <= PGD-20 <= FGSM <= clean accuracy. The radius is chosen
so that the ordering is not trivial (FGSM already costs accuracy, AutoAttack does not reach 0).
The L2 version runs and stays in its ball.
"""

from __future__ import annotations

from typing import Tuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnasframe.data import DigitsSource, LabeledImages
from rnasframe.perturbations import FGSM, PGD, L2Ball, LinfBall
from rnasframe.robustness import AutoAttack, RobustnessEvaluation, cross_entropy_objective

pytest.importorskip("pyautoattack", reason="the optional extra rnasframe[autoattack] is not installed")

EXAMPLES = 48


@pytest.fixture(scope="module")
def trained() -> Tuple[nn.Module, LabeledImages]:
    """A small convolutional network trained on the handwritten digits for about a second."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the per-test fixture of conftest.py
    torch.manual_seed(0)
    source = DigitsSource()
    train, test = source.load_train(), source.load_test()
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = train.pixels(torch.arange(len(train))), train.labels
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return model.eval(), test


@pytest.mark.slow
def test_linf_autoattack_is_the_strongest(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    ball = LinfBall(0.15)  # on these digits: clean 0.98, FGSM 0.29, PGD-20 0.23, AutoAttack 0.21
    pgd = PGD(ball, steps=20, step_size=2.5 * 0.15 / 20)
    evaluation = RobustnessEvaluation(
        epsilon=0.15,
        attacks=(FGSM(ball), pgd, AutoAttack(ball)),
        sweep_attack=pgd,
        max_examples=EXAMPLES,
        sweep_fractions=(),
    )
    report = evaluation.evaluate(model, test)
    accuracies = report.attacks
    assert report.clean > 0.8, report.clean  # the network did learn
    assert accuracies["autoattack"] <= accuracies["pgd20"] <= accuracies["fgsm"] <= report.clean
    assert accuracies["fgsm"] < report.clean, accuracies  # the radius matters ...
    assert accuracies["autoattack"] < accuracies["fgsm"], accuracies  # ... and so does the attack
    assert report.sane, report.warnings()


@pytest.mark.slow
def test_l2_autoattack_runs_inside_its_ball(trained: Tuple[nn.Module, LabeledImages]) -> None:
    model, test = trained
    x = test.pixels(torch.arange(8))  # few images: the points AutoAttack cannot break cost most
    y = test.labels[:8]
    attack = AutoAttack(L2Ball(0.5))
    adversarial = attack(x, cross_entropy_objective(model, y), model)
    assert adversarial.shape == x.shape
    distances = (adversarial - x).flatten(1).norm(dim=1)
    assert bool((distances <= 0.5 + 1e-4).all()), distances.max()
    assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(adversarial).argmax(1) == y).float().mean()
    assert robust <= clean
