"""The conformance kit (rnasframe.testing): it passes every shipped threat model and catches broken ones.

Also the worked custom threat model (examples/custom_threat_model.py, examples/brightness.gin) and
the tutorial that walks through it (docs/tutorials/threat_model.md).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import linecache
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import attrs
import gin
import pytest
import torch
from hypothesis import Phase
from hypothesis import strategies as st
from torch import Tensor, nn

from rnasframe import PerturbationConsistency, SearchEngine
from rnasframe.cli import search_main
from rnasframe.config import parse_gin
from rnasframe.interfaces import NormBall, Perturbation, PerturbationObjective
from rnasframe.perturbations import L2Ball, LinfBall, PGDMaximizer, UniformSampler
from rnasframe.testing import (
    ConformanceError,
    NormBallConformance,
    PerturbationConformance,
    assert_rejects,
    check_norm_ball,
    check_perturbation,
    norm_ball_membership,
)
from rnasframe.testing.strategies import image_shapes, images

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TUTORIAL = ROOT / "docs" / "tutorials" / "threat_model.md"
if str(EXAMPLES) not in sys.path:  # the same folder parse_gin adds for the gin `import` statement
    sys.path.append(str(EXAMPLES))

from custom_threat_model import BrightnessContrast  # noqa: E402

NAN = float("nan")

# ----------------------------------------------------------------------------- the kit on built-ins


class TestLinfBall(NormBallConformance):
    def make_ball(self) -> NormBall:
        return LinfBall(epsilon=0.031)


class TestL2Ball(NormBallConformance):
    def make_ball(self) -> NormBall:
        return L2Ball(epsilon=0.5)


class TestPGDLinf(PerturbationConformance):
    bad_hyperparameters = {"steps": [0, 1.5], "step_size": [0, -0.1, NAN], "random_start": [1], "ball": [0.1]}

    def make_perturbation(self) -> Perturbation:
        return PGDMaximizer(ball=LinfBall(epsilon=0.031), steps=3, step_size=0.01)


class TestPGDL2(PerturbationConformance):
    bad_hyperparameters = {"steps": [-2], "ball": ["l2"]}

    def make_perturbation(self) -> Perturbation:
        return PGDMaximizer(ball=L2Ball(epsilon=0.5), steps=3, step_size=0.125, random_start=False)


class TestUniformLinf(PerturbationConformance):
    bad_hyperparameters = {"ball": ["linf", None]}

    def make_perturbation(self) -> Perturbation:
        return UniformSampler(ball=LinfBall(epsilon=0.031))


class TestUniformL2(PerturbationConformance):
    bad_hyperparameters = {"ball": [L2Ball]}  # the class, not an instance (gin: @L2Ball without "()")
    shapes = [(2, 3, 4, 4)]

    def batches(self) -> Any:
        return images(shapes=image_shapes(max_batch=2, max_side=3), dtypes=st.just(torch.float64))

    def make_perturbation(self) -> Perturbation:
        return UniformSampler(ball=L2Ball(epsilon=0.5))


BALLS = [LinfBall(0.031), LinfBall(0.0), LinfBall(1.5), L2Ball(0.5), L2Ball(0.0), L2Ball(3.0)]


@pytest.mark.parametrize("ball", BALLS, ids=repr)
def test_check_functions_pass_every_builtin_ball_and_sampler(ball: NormBall) -> None:
    check_norm_ball(ball)
    step = max(ball.epsilon / 4, 1e-3)
    for sampler in (
        UniformSampler(ball=ball),
        PGDMaximizer(ball=ball, steps=3, step_size=step),
        PGDMaximizer(ball=ball, steps=2, step_size=step, random_start=False),
    ):
        check_perturbation(sampler)
        check_perturbation(lambda: sampler, shapes=[(3, 2, 4, 4)], dtypes=[torch.float64])


def test_the_kit_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(5)
    random.seed(5)
    expected = torch.rand(3), random.random()
    torch.manual_seed(5)
    random.seed(5)
    check_perturbation(UniformSampler(), shapes=[(2, 1, 2, 2)])
    check_norm_ball(L2Ball(), shapes=[(2, 1, 2, 2)])
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_importing_the_kit_imports_neither_pytest_nor_hypothesis() -> None:
    code = (
        "import sys, rnasframe.testing; "
        "loaded = [m for m in ('pytest', 'hypothesis') if m in sys.modules]; assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# ----------------------------------------------------------------------------- broken perturbations


@attrs.define(frozen=True)
class LeavesTheBall(Perturbation):
    """Forgets to project: steps 2 * epsilon away."""

    ball: NormBall = attrs.field(default=LinfBall(0.031))

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        return x + 2 * self.ball.epsilon


@attrs.define(frozen=True)
class ModifiesX(Perturbation):
    """Writes into the caller's batch."""

    ball: NormBall = attrs.field(default=LinfBall(0.031))

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        return x.mul_(0.99)


@attrs.define(frozen=True)
class LeavesGradients(Perturbation):
    """Overrides __call__ (skipping the base class' guard) and calls backward()."""

    ball: NormBall = attrs.field(default=LinfBall(0.031))

    def __call__(self, x: Tensor, objective: PerturbationObjective, model: Optional[nn.Module] = None) -> Tensor:
        return self.perturb(x, objective)

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        candidate = x.detach().clone().requires_grad_(True)
        objective(candidate).backward()  # fills .grad of x and of every model parameter
        return (x.detach() + self.ball.epsilon * candidate.grad.sign()).clamp(0.0, 1.0)


class SwitchesToEval(PGDMaximizer):
    """Puts the model in eval mode before the (guarded) maximization and never switches it back."""

    def __call__(self, x: Tensor, objective: PerturbationObjective, model: Optional[nn.Module] = None) -> Tensor:
        if model is not None:
            model.eval()
        return super().__call__(x, objective, model)


@attrs.define(frozen=True)
class Unseeded(Perturbation):
    """Draws noise from a generator that nobody seeds."""

    ball: NormBall = attrs.field(default=LinfBall(0.031))

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        generator = torch.Generator().manual_seed(random.SystemRandom().randrange(2**62))
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1
        return self.ball.project(x + self.ball.epsilon * noise, x)


@attrs.define(frozen=True)
class NoSetKnown(Perturbation):
    """A threat set the kit cannot infer (no ``ball``)."""

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        return x.clone()


@pytest.mark.parametrize(
    "perturbation, message",
    [
        (LeavesTheBall(), r"outside its threat set for example\(s\) \[0, 1, 3\].*exceeds epsilon = 0.031"),
        (ModifiesX(), r"modified x in place"),
        (LeavesGradients(), r"left a gradient in model parameter 'alpha'.*never value.backward\(\)"),
        (SwitchesToEval(steps=2), r"switched submodule '<model>' from train to eval mode"),
        (Unseeded(), r"different x' for the same seed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Perturbation) else "",
)
def test_check_perturbation_catches_broken_perturbations(perturbation: Perturbation, message: str) -> None:
    with pytest.raises(ConformanceError, match=message) as error:
        check_perturbation(perturbation)
    assert type(perturbation).__name__ in str(error.value) and "float32 batch of shape (4, 3, 5, 5)" in str(error.value)


def test_a_wrong_set_membership_or_none_at_all_is_reported() -> None:
    with pytest.raises(ConformanceError, match=r"set_membership returned False"):
        check_perturbation(UniformSampler(), set_membership=lambda x, x_adv: (x_adv == x).flatten(1).all(dim=1))
    with pytest.raises(ConformanceError, match=r"bool tensor of shape \(4,\)"):
        check_perturbation(UniformSampler(), set_membership=lambda x, x_adv: x_adv - x)
    with pytest.raises(TypeError, match=r"cannot infer the threat set of NoSetKnown.*pass set_membership="):
        check_perturbation(NoSetKnown())
    check_perturbation(NoSetKnown(), set_membership=norm_ball_membership(LinfBall(0.0)))


def test_the_mixin_reports_broken_perturbations_on_random_batches_too() -> None:
    class Broken(PerturbationConformance):
        max_examples = 3
        hypothesis_settings = {"phases": [Phase.generate]}  # report the first failing batch, unshrunk

        def make_perturbation(self) -> Perturbation:
            return LeavesTheBall()  # fails on every batch, so hypothesis has nothing to shrink

    with pytest.raises(ConformanceError, match="outside its threat set"):
        Broken().test_perturbation_conforms_on_random_batches()


# ----------------------------------------------------------------------------- broken balls


class NoBoxClamp(LinfBall):
    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        return torch.clamp(x_perturbed, min=x - self.epsilon, max=x + self.epsilon)


class Descends(L2Ball):
    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        return super().ascent_step(x_perturbed, -gradient, step_size)


class Overshoots(LinfBall):
    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        return super().ascent_step(x_perturbed, gradient, 2 * step_size)


class ShrinksEverything(L2Ball):
    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        return x + 0.5 * (super().project(x_perturbed, x) - x)


class UnseededSample(LinfBall):
    def sample(self, x: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(random.SystemRandom().randrange(2**62))
        return self.project(x + self.epsilon * torch.rand(x.shape, generator=generator, dtype=x.dtype), x)


@attrs.define(frozen=True)
class UnknownNorm(NormBall):
    epsilon: float = 0.1

    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        return x.clone()

    def sample(self, x: Tensor) -> Tensor:
        return x.clone()

    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        return x_perturbed.clone()


@pytest.mark.parametrize(
    "ball, message",
    [
        (NoBoxClamp(0.1), r"project\(candidate, x\) has pixels in \[-0\.\d+.*clamp to \[0, 1\]"),
        (Descends(0.5), r"does not increase <g, x>"),
        (Overshoots(0.1), r"moved example 1 by 0.2.*more than step_size = 0.1"),
        (ShrinksEverything(0.5), r"not idempotent"),
        (UnseededSample(0.1), r"sample gave different points for the same torch.manual_seed"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, NormBall) else "",
)
def test_check_norm_ball_catches_broken_balls(ball: NormBall, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_norm_ball(ball)


def test_a_ball_of_unknown_norm_needs_a_distance() -> None:
    with pytest.raises(TypeError, match=r"does not know the norm of UnknownNorm.*distance"):
        check_norm_ball(UnknownNorm())
    # With a distance, the kit sees that this ball's ascent step never moves.
    l1 = lambda a, b: (a - b).flatten(1).abs().sum(dim=1)  # noqa: E731
    with pytest.raises(ConformanceError, match="does not increase <g, x>"):
        check_norm_ball(UnknownNorm(), distance=l1)


def test_epsilon_must_be_a_finite_non_negative_number() -> None:
    with pytest.raises(ConformanceError, match=r"UnknownNorm.epsilon must be a finite number >= 0, got -1"):
        check_norm_ball(UnknownNorm(epsilon=-1))


# ----------------------------------------------------------------------------- assert_rejects


@attrs.define(frozen=True)
class Lax:
    steps: int = 1


class Vague:
    def __init__(self, steps: int = 1) -> None:
        raise ValueError("invalid configuration")


class NoValue:
    def __init__(self, steps: int = 1) -> None:
        raise ValueError("steps is out of range")


class WrongType:
    def __init__(self, steps: int = 1) -> None:
        raise RuntimeError(f"steps={steps}")


class Chatty:
    def __init__(self, steps: int = 1) -> None:
        raise ValueError(f"Chatty.steps must be >= 1,\ngot {steps}")


@pytest.mark.parametrize(
    "factory, message",
    [
        (Lax, r"Lax\(steps=0\) was accepted; refuse it"),
        (Vague, r"does not name the field 'steps'"),
        (NoValue, r"does not show the value 0"),
        (WrongType, r"raised RuntimeError \(steps=0\); expected ValueError or TypeError"),
        (Chatty, r"multi-line message"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_assert_rejects_reports_what_is_missing(factory: Callable[..., Any], message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        assert_rejects(factory, "steps", 0)


def test_assert_rejects_accepts_clear_errors_including_through_gin() -> None:
    error = assert_rejects(PGDMaximizer, "steps", 0)
    assert isinstance(error, ValueError) and "PGDMaximizer.steps" in str(error)
    assert isinstance(assert_rejects(LinfBall, "epsilon", "0.1"), TypeError)
    gin.parse_config("PGDMaximizer.steps = 3")  # called through gin, the message gains a second line
    assert_rejects(PGDMaximizer, "step_size", -1.0)


def test_the_mixin_reports_a_hyperparameter_that_is_accepted() -> None:
    class Permissive(PerturbationConformance):
        bad_hyperparameters = {"ball": ["linf"]}

        def make_perturbation(self) -> Perturbation:
            return LeavesTheBall()

    with pytest.raises(ConformanceError, match=r"LeavesTheBall\(ball='linf'\) was accepted"):
        Permissive().test_perturbation_rejects_bad_hyperparameters()


# ----------------------------------------------------------------------------- BrightnessContrast


def transform(x: Tensor, brightness: Tensor, contrast: Tensor) -> Tensor:
    """The threat model's definition, written independently: clip((x - mean) * c + mean + b)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast.view(-1, 1, 1, 1) + mean + brightness.view(-1, 1, 1, 1)).clamp(0, 1)


class TestBrightnessContrast(PerturbationConformance):
    bad_hyperparameters = {
        "max_brightness": [-0.1, 1.5, NAN, "0.1"],
        "max_contrast": [1.5, -0.01],
        "steps": [-1, 2.0],
        "step_size": [0.0, -1],
    }

    def make_perturbation(self) -> Perturbation:
        return BrightnessContrast(max_brightness=0.1, max_contrast=0.2, steps=3)

    def set_membership(self, x: Tensor, x_perturbed: Tensor) -> Tensor:
        return self.make_perturbation().contains(x, x_perturbed)


class TestBrightnessContrastUniform(TestBrightnessContrast):
    def make_perturbation(self) -> Perturbation:
        return BrightnessContrast(max_brightness=0.3, max_contrast=1.0, steps=0)


def test_contains_accepts_every_in_bound_transform_even_heavily_clipped() -> None:
    threat = BrightnessContrast(max_brightness=0.1, max_contrast=0.2)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 4, 4, generator=generator, dtype=torch.float64)
    x[1] = 0.95 + 0.05 * x[1]  # bright: mostly clipped at 1 after a positive shift
    x[2] = 0.5  # constant: contrast is irrelevant
    x[3] = torch.where(x[3] > 0.5, 1.0, 0.0)  # black and white
    brightness = torch.tensor([0.1, 0.1, -0.1, 0.05, 0.0, -0.03], dtype=torch.float64)
    contrast = torch.tensor([1.2, 1.2, 0.8, 1.0, 1.0, 0.93], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        natural = x.to(dtype)
        assert bool(threat.contains(natural, transform(natural, brightness.to(dtype), contrast.to(dtype))).all())
    # BrightnessContrast's own output, with and without ascent steps.
    assert bool(threat.contains(x, BrightnessContrast(steps=4)(x, lambda z: z.square().sum())).all())


def test_contains_rejects_out_of_bound_parameters_and_other_changes() -> None:
    threat = BrightnessContrast(max_brightness=0.1, max_contrast=0.2)
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.6 + 0.2
    brightness = torch.tensor([0.15, 0.0, 0.0, 0.0], dtype=torch.float64)
    contrast = torch.tensor([1.0, 1.3, 0.7, 1.0], dtype=torch.float64)
    changed = transform(x, brightness, contrast)
    changed[3] = (x[3] + 0.01 * torch.randn(x[3].shape, dtype=torch.float64)).clamp(0, 1)  # pixel noise
    assert threat.contains(x, changed).tolist() == [False, False, False, False]
    shifted = torch.roll(x, 1, dims=3)  # a spatial shift is not a brightness or contrast change
    assert not bool(threat.contains(x, shifted).any())
    assert threat.contains(x, x).all()


def test_ascent_beats_the_random_start_it_begins_from() -> None:
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    weights = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(3))

    def objective(z: Tensor) -> Tensor:
        return (z * weights).sum()

    torch.manual_seed(4)
    start = BrightnessContrast(steps=0)(x, objective)
    torch.manual_seed(4)
    ascended = BrightnessContrast(steps=5)(x, objective)
    assert float(objective(ascended)) > float(objective(start))


def test_zero_bounds_give_x_back() -> None:
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64)
    out = BrightnessContrast(max_brightness=0.0, max_contrast=0.0, steps=2)(x, lambda z: z.sum())
    torch.testing.assert_close(out, x, rtol=0.0, atol=1e-12)


# ----------------------------------------------------------------------------- gin files and smoke runs


def _search(tmp_path: Path, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = search_main([*args, "--run_dir", str(tmp_path / "run")], examples_dir=EXAMPLES)
    assert code == 0
    return out.getvalue()


def test_brightness_gin_binds_the_custom_threat_model() -> None:
    parse_gin(["brightness.gin"], [], [EXAMPLES])
    (regularizer,) = SearchEngine().objective.regularizers
    assert isinstance(regularizer, PerturbationConsistency)
    assert regularizer.perturbation == BrightnessContrast(max_brightness=0.1, max_contrast=0.2, steps=5, step_size=0.5)
    assert type(regularizer.perturbation) is BrightnessContrast  # the gin import found the same module
    assert (EXAMPLES / "brightness.gin").read_text().startswith("import custom_threat_model\n")


def test_smoke_search_with_the_custom_threat_model(tmp_path: Path) -> None:
    # One epoch (w-steps with the regularizer) and two ascent steps keep it at a few seconds.
    out = _search(
        tmp_path, "--gin_file=brightness.gin", "--gin_file=smoke.gin",
        "--gin_param=SearchEngine.epochs = 1", "--gin_param=BrightnessContrast.steps = 2",
    )
    assert "genotype = Genotype(" in out
    assert "BrightnessContrast.max_brightness = 0.1" in (tmp_path / "run" / "operative_config.gin").read_text()


# ----------------------------------------------------------------------------- the tutorial


def _fences(text: str) -> list[tuple[str, str, str]]:
    """(language, code, the HTML comment right above the fence or '') for every fenced block."""
    pattern = re.compile(r"(?:<!--\s*(?P<note>[^>]*?)\s*-->\n)?```\{?(?P<lang>[\w-]*)\}?\n(?P<code>.*?)```", re.S)
    return [(m["lang"], m["code"], m["note"] or "") for m in pattern.finditer(text)]


def test_tutorial_code_blocks_run_and_its_excerpts_match_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict[str, Any] = {"__name__": "threat_model_tutorial"}
    ran = excerpts = 0
    for language, code, note in _fences(TUTORIAL.read_text()):
        if note.startswith("verbatim:"):
            source = (ROOT / note.split(":", 1)[1].strip()).read_text()
            assert code in source, f"the tutorial's excerpt of {note} no longer matches the file"
            excerpts += 1
            continue
        if language not in ("python", "testcode", "doctest"):  # MyST's tested blocks
            continue
        if code.lstrip().startswith(">>>"):
            test = doctest.DocTestParser().get_doctest(code, namespace, "tutorial", str(TUTORIAL), 0)
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
            with contextlib.redirect_stdout(io.StringIO()) as report:
                runner.run(test, clear_globs=False)
            assert runner.failures == 0, report.getvalue()
            namespace.update(test.globs)  # DocTest ran on a copy of the namespace
        else:
            # A file name of its own, known to linecache, so that inspect (and hypothesis) find the source.
            name = f"<{TUTORIAL.name}, block {ran + 1}>"
            linecache.cache[name] = (len(code), None, code.splitlines(keepends=True), name)
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, name, "exec"), namespace)
        ran += 1
    assert ran >= 5 and excerpts >= 2
    # The mix-in classes the tutorial defines pass their own tests.
    for name in ("TestL1Ball", "TestBrightnessContrast"):
        case = namespace[name]()
        for method in dir(case):
            if method.startswith("test_"):
                getattr(case, method)()
