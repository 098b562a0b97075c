"""Conformance checks for threat models: does a ``Perturbation`` or ``NormBall`` keep its contract?

Plain functions that raise :class:`ConformanceError` (an :class:`AssertionError`) with a message
that says what the implementation did wrong and how to fix it. They need torch only (no pytest,
no hypothesis), so they run in any test framework or in a notebook::

    from rnasframe.perturbations import LinfBall, PGDMaximizer
    from rnasframe.testing import check_norm_ball, check_perturbation

    check_norm_ball(LinfBall(epsilon=0.031))
    check_perturbation(PGDMaximizer(ball=LinfBall(epsilon=0.031), steps=3, step_size=0.01))

Each check runs a small panel of batches (several shapes, float32 and float64, images that are
all 0, all 1, or hold both extremes) unless given one batch ``x``; the pytest mix-ins in
:mod:`rnasframe.testing.mixins` add batches drawn by hypothesis.
"""

from __future__ import annotations

import contextlib
import math
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnasframe.interfaces.perturbation import NormBall, Perturbation
from rnasframe.seeding import seed_everything

__all__ = [
    "ConformanceError",
    "Distance",
    "Membership",
    "DEFAULT_SHAPES",
    "DEFAULT_DTYPES",
    "norm_distance",
    "norm_ball_membership",
    "check_perturbation",
    "check_norm_ball",
    "assert_rejects",
]

#: ``distance(x_perturbed, x)``: the per-example distance (shape ``(batch,)``) in a ball's norm.
Distance = Callable[[Tensor, Tensor], Tensor]
#: ``set_membership(x, x_perturbed)``: per example, whether ``x_perturbed`` lies in the threat set
#: of ``x``; a bool tensor of shape ``(batch,)`` or one bool for the whole batch.
Membership = Callable[[Tensor, Tensor], Union[bool, Tensor]]

#: Batch shapes every check runs on by default: (batch, channels, height, width).
DEFAULT_SHAPES: Tuple[Tuple[int, ...], ...] = ((4, 3, 5, 5), (1, 1, 1, 1), (2, 2, 3, 1))
#: Floating-point types every check runs on by default.
DEFAULT_DTYPES: Tuple[torch.dtype, ...] = (torch.float32, torch.float64)


class ConformanceError(AssertionError):
    """A threat model broke the contract of its interface; the message says what and how to fix it."""


# ----------------------------------------------------------------------------- distances


def _flat(t: Tensor) -> Tensor:
    return t.detach().reshape(t.shape[0], -1).double()


def norm_distance(ball: NormBall) -> Distance:
    """Return the distance function of ``ball``'s norm, per example, computed in float64.

    Known for :class:`~rnasframe.perturbations.LinfBall` and
    :class:`~rnasframe.perturbations.L2Ball` (and their subclasses); any other ball must define
    a ``distance(x_perturbed, x)`` method, or the caller passes ``distance=`` to the checks.

    Raises:
        TypeError: the norm of ``ball`` is unknown.
    """
    from rnasframe.perturbations import L2Ball, LinfBall

    if isinstance(ball, LinfBall):
        return lambda a, b: (_flat(a) - _flat(b)).abs().amax(dim=1)
    if isinstance(ball, L2Ball):
        return lambda a, b: torch.linalg.vector_norm(_flat(a) - _flat(b), ord=2, dim=1)
    own = getattr(ball, "distance", None)
    if callable(own):
        return lambda a, b: own(a, b).detach().double()
    raise TypeError(
        f"the conformance kit does not know the norm of {type(ball).__name__}: give the ball a "
        f"method distance(x_perturbed, x) -> per-example distances, or pass distance=... "
        f"(e.g. lambda a, b: (a - b).flatten(1).abs().sum(1) for an L1 ball)"
    )


def _tolerance(x: Tensor) -> float:
    """Rounding slack for a distance of tensors like ``x``: a few ulps per element, summed in norm."""
    per_example = max(1, x[0].numel()) if x.dim() > 0 and x.shape[0] > 0 else 1
    return 16 * torch.finfo(x.dtype).eps * math.sqrt(per_example)


class _NormBallMembership:
    """``x_perturbed`` is within ``ball.epsilon`` of ``x`` in the ball's norm (plus rounding slack)."""

    def __init__(self, ball: NormBall, distance: Optional[Distance], tolerance: Optional[float]) -> None:
        self.ball = ball
        self.distance = distance if distance is not None else norm_distance(ball)
        self.tolerance = tolerance

    def _slack(self, x: Tensor) -> float:
        return self.tolerance if self.tolerance is not None else _tolerance(x)

    def __call__(self, x: Tensor, x_perturbed: Tensor) -> Tensor:
        return self.distance(x_perturbed, x) <= self.ball.epsilon + self._slack(x)

    def explain(self, x: Tensor, x_perturbed: Tensor, bad: List[int]) -> str:
        distances = self.distance(x_perturbed, x)
        worst = max(bad, key=lambda i: float(distances[i]))
        return (
            f"distance {float(distances[worst]):.6g} from x exceeds epsilon = {self.ball.epsilon:g} "
            f"(+ {self._slack(x):.2g} rounding slack) in {type(self.ball).__name__}'s norm"
        )


def norm_ball_membership(
    ball: NormBall, distance: Optional[Distance] = None, tolerance: Optional[float] = None
) -> Membership:
    """Return ``set_membership(x, x_perturbed)`` for the threat set ``{x' : ||x' - x|| <= epsilon}``.

    Args:
        ball: the threat model.
        distance: the per-example distance of the ball's norm (default: :func:`norm_distance`).
        tolerance: slack added to ``epsilon`` (default: a few ulps of the dtype per element).

    Returns:
        A function returning a bool tensor of shape ``(batch,)``.
    """
    return _NormBallMembership(ball, distance, tolerance)


# ----------------------------------------------------------------------------- batches


@contextlib.contextmanager
def _restored_global_rngs() -> Iterator[None]:
    """Give the caller back the states of Python's, NumPy's and torch's global generators."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _panel(
    x: Optional[Tensor], shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[torch.dtype], seed: int
) -> List[Tensor]:
    """The batches a check runs on: ``x`` alone, or one edge-heavy batch per shape and dtype.

    Example 0 of a default batch is uniform noise, 1 is all zeros, 2 all ones, 3 noise with about
    a third of its pixels snapped to 0 or 1.
    """
    if x is not None:
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
            raise TypeError(f"x must be a floating-point tensor with a batch dimension, got {x!r}")
        return [x.detach()]
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for shape in shapes:
        for dtype in dtypes:
            batch = torch.rand(shape, generator=generator, dtype=torch.float64)
            if shape[0] > 1:
                batch[1] = 0.0
            if shape[0] > 2:
                batch[2] = 1.0
            if shape[0] > 3:
                snap = torch.rand(batch[3].shape, generator=generator, dtype=torch.float64)
                batch[3] = torch.where(snap < 0.15, 0.0, torch.where(snap > 0.85, 1.0, batch[3]))
            batches.append(batch.to(dtype))
    return batches


def _case(x: Tensor) -> str:
    return f"a {str(x.dtype).replace('torch.', '')} batch of shape {tuple(x.shape)}"


def _failing_examples(result: Union[bool, Tensor], batch: int, where: str) -> List[int]:
    """Indices of the examples a membership hook rejected."""
    if isinstance(result, Tensor):
        if result.dtype != torch.bool or result.shape not in ((), (batch,)):
            raise ConformanceError(
                f"{where} must return a bool or a bool tensor of shape ({batch},), got a "
                f"{result.dtype} tensor of shape {tuple(result.shape)}"
            )
        result = result.cpu()
        if result.dim() == 0:
            return [] if bool(result) else list(range(batch))
        return [i for i in range(batch) if not bool(result[i])]
    if isinstance(result, bool):
        return [] if result else list(range(batch))
    raise ConformanceError(f"{where} must return a bool or a bool tensor, got {result!r}")


# ----------------------------------------------------------------------------- the probe model


class _ProbeNet(nn.Module):
    """A tiny model for any input shape, built to expose every way a perturbation can disturb a model.

    It has BatchNorm (running statistics), a parameter frozen beforehand, a submodule in eval mode
    inside a model in train mode, an architecture-like parameter ``alpha`` and one parameter that
    already holds a gradient (as during gradient accumulation).
    """

    def __init__(self, features: int, classes: int = 3) -> None:
        super().__init__()
        self.pixel = nn.Conv1d(1, 4, kernel_size=1)
        self.norm = nn.BatchNorm1d(4)
        self.pooled_head = nn.Linear(4, classes)
        self.linear_head = nn.Linear(features, classes)
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.pooled_head.bias.requires_grad_(False)  # frozen by the user: must stay frozen
        self.linear_head.eval()  # a mixed-mode model: every submodule's mode must come back

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], 1, -1)
        pixels = x.reshape(x.shape[0], -1)
        # Zero padding keeps > 1 value per channel, so train-mode BatchNorm accepts a 1-pixel batch.
        hidden = F.relu(self.norm(F.pad(self.pixel(flat), (1, 1))))
        weights = torch.softmax(self.alpha, dim=0)
        return weights[0] * self.pooled_head(hidden.mean(dim=2)) + weights[1] * self.linear_head(pixels)


def _probe(x: Tensor, seed: int) -> Tuple[_ProbeNet, Callable[[Tensor], Tensor], List[bool]]:
    """A probe model for ``x``, a cross-entropy objective on it and a log of frozen-ness per call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _ProbeNet(max(1, x[0].numel())).to(device=x.device, dtype=x.dtype).train()
    model.linear_head.eval()
    model.linear_head.weight.grad = torch.full_like(model.linear_head.weight, 0.5)
    labels = torch.arange(x.shape[0], device=x.device) % 3
    any_trainable: List[bool] = []

    def objective(candidate: Tensor) -> Tensor:
        any_trainable.append(any(p.requires_grad for p in model.parameters()))
        return F.cross_entropy(model(candidate), labels)

    return model, objective, any_trainable


def _snapshot(model: nn.Module) -> Dict[str, Any]:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n or "<model>": m.training for n, m in model.named_modules()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
    }


def _model_damage(model: nn.Module, before: Dict[str, Any]) -> Optional[str]:
    """Describe the first way ``model`` differs from the snapshot ``before``, or ``None``."""
    after = _snapshot(model)
    for name, grad in after["grads"].items():
        old = before["grads"][name]
        if old is None and grad is not None:
            return (
                f"left a gradient in model parameter {name!r} (its .grad was None before): take "
                f"gradients with respect to the input only (torch.autograd.grad(value, x_candidate)), "
                f"never value.backward(), and let Perturbation.__call__ freeze the model"
            )
        if old is not None and (grad is None or not torch.equal(grad, old)):
            return (
                f"changed the existing .grad of model parameter {name!r} (cleared or accumulated "
                f"into it): do not call backward() or zero_grad() on the model"
            )
    for name, flag in after["flags"].items():
        if flag != before["flags"][name]:
            return (
                f"changed requires_grad of model parameter {name!r} from {before['flags'][name]} to "
                f"{flag}: do not override Perturbation.__call__, whose guard restores the flags"
            )
    for name, training in after["modes"].items():
        if training != before["modes"][name]:
            was, now = ("train", "eval") if before["modes"][name] else ("eval", "train")
            return (
                f"switched submodule {name!r} from {was} to {now} mode and did not switch it back: "
                f"never call model.train()/model.eval() in a perturbation"
            )
    for name, buffer in after["buffers"].items():
        if not torch.equal(buffer, before["buffers"][name]):
            return (
                f"changed model buffer {name!r} (BatchNorm running statistics): forward passes must run "
                f"inside Perturbation.__call__'s guard (do not override __call__)"
            )
    for name, value in after["params"].items():
        if not torch.equal(value, before["params"][name]):
            return f"changed the value of model parameter {name!r}: a perturbation must never update the model"
    return None


# ----------------------------------------------------------------------------- perturbations


def _resolve_membership(perturbation: Perturbation, set_membership: Optional[Membership]) -> Membership:
    if set_membership is not None:
        if not callable(set_membership):
            raise TypeError(
                f"set_membership must be a function (x, x_perturbed) -> bool tensor, got {set_membership!r}"
            )
        return set_membership
    ball = getattr(perturbation, "ball", None)
    if isinstance(ball, NormBall):
        try:
            return norm_ball_membership(ball)
        except TypeError as error:
            raise TypeError(f"cannot infer the threat set of {type(perturbation).__name__}: {error}; "
                            f"or pass set_membership=norm_ball_membership(ball, distance=...)") from None
    raise TypeError(
        f"cannot infer the threat set of {type(perturbation).__name__} (it has no NormBall attribute "
        f"'ball'): pass set_membership=f, where f(x, x_perturbed) returns per example whether "
        f"x_perturbed is an allowed perturbation of x"
    )


def _call(perturbation: Perturbation, x: Tensor, objective: Callable[[Tensor], Tensor],
          model: Optional[nn.Module], prefix: str) -> Tensor:
    try:
        return perturbation(x, objective, model) if model is not None else perturbation(x, objective)
    except Exception as error:
        raise ConformanceError(f"{prefix}raised {type(error).__name__}: {error}") from error


def _check_output(out: Any, x: Tensor, prefix: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise ConformanceError(f"{prefix}returned {type(out).__name__}, expected a torch.Tensor")
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ConformanceError(
            f"{prefix}returned a {out.dtype} tensor of shape {tuple(out.shape)} on {out.device}; "
            f"x' must have x's shape {tuple(x.shape)}, dtype {x.dtype} and device {x.device}"
        )
    if out.requires_grad or out.grad_fn is not None:
        raise ConformanceError(f"{prefix}returned a tensor attached to an autograd graph; return x'.detach()")
    if not bool(torch.isfinite(out).all()):
        raise ConformanceError(f"{prefix}returned NaN or infinite pixels (a division by a zero norm?)")
    low, high = float(out.min()), float(out.max())
    if low < 0.0 or high > 1.0:
        raise ConformanceError(f"{prefix}returned pixels in [{low:.6g}, {high:.6g}]; x' must stay in [0, 1]")
    return out


def _check_membership(membership: Membership, x: Tensor, out: Tensor, prefix: str) -> None:
    where = "set_membership" if not isinstance(membership, _NormBallMembership) else "the norm-ball membership"
    try:
        result = membership(x, out)
    except ConformanceError:
        raise
    except AssertionError as error:
        raise ConformanceError(f"{prefix}produced an x' outside its threat set: {error}") from error
    bad = _failing_examples(result, x.shape[0], where)
    if bad:
        detail = membership.explain(x, out, bad) if isinstance(membership, _NormBallMembership) else (
            f"{where} returned False")
        raise ConformanceError(
            f"{prefix}produced an x' outside its threat set for example(s) {bad}: {detail}; keep every "
            f"result inside the threat model (project after each step, clip last)"
        )


def check_perturbation(
    perturbation: Union[Perturbation, Callable[[], Perturbation]],
    *,
    set_membership: Optional[Membership] = None,
    x: Optional[Tensor] = None,
    shapes: Sequence[Tuple[int, ...]] = DEFAULT_SHAPES,
    dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES,
    seed: int = 0,
) -> None:
    """Check that a :class:`~rnasframe.interfaces.Perturbation` keeps the interface's contract.

    On every batch (``x``, or the default panel built from ``shapes`` and ``dtypes``) it calls the
    perturbation with a probe model and a cross-entropy objective, twice from the same seed, and
    once without a model on a linear objective, and checks that:

    * ``x'`` is a detached tensor of ``x``'s shape, dtype and device, finite, in [0, 1], and in
      the threat set (``set_membership``, or the ``ball`` attribute's norm ball);
    * ``x`` is not modified in place and gets no ``.grad``;
    * the model is left as found: no new gradient in any parameter (an existing ``.grad`` kept as
      is), ``requires_grad`` flags (including a parameter frozen beforehand), every submodule's
      train/eval mode, BatchNorm running statistics and the parameter values; the parameters are
      frozen while the objective runs;
    * the same seed (:func:`~rnasframe.seeding.seed_everything`) gives the same ``x'``.

    Args:
        perturbation: the perturbation, or a function of no arguments that builds one (called
            once per batch).
        set_membership: ``f(x, x_perturbed)`` returning, per example, whether ``x_perturbed`` is an
            allowed perturbation of ``x`` (a bool tensor of shape ``(batch,)``). Default: the
            norm ball in the perturbation's ``ball`` attribute (see :func:`norm_ball_membership`).
        x: check this batch (pixels in [0, 1]) only, instead of the default panel.
        shapes: batch shapes of the default panel.
        dtypes: floating-point types of the default panel.
        seed: the seed of the batches, the probe model and the perturbation's randomness.

    Raises:
        ConformanceError: the perturbation broke the contract; the message says how.
        TypeError: the arguments are not what is described here.
    """
    for batch in _panel(x, shapes, dtypes, seed):
        if isinstance(perturbation, Perturbation):
            instance = perturbation
        elif callable(perturbation):
            instance = perturbation()
        else:
            raise TypeError(f"expected a Perturbation or a function building one, got {perturbation!r}")
        if not isinstance(instance, Perturbation):
            raise TypeError(f"the factory returned {instance!r}, which is not a rnasframe Perturbation")
        membership = _resolve_membership(instance, set_membership)
        with _restored_global_rngs():
            _check_one_batch(instance, membership, batch, seed)


def _check_one_batch(perturbation: Perturbation, membership: Membership, x: Tensor, seed: int) -> None:
    label = repr(perturbation)
    label = label if len(label) <= 160 else label[:157] + "..."
    prefix = f"{label} on {_case(x)}: "
    model, objective, any_trainable = _probe(x, seed)
    with torch.no_grad():
        model(x)  # a train-mode pass beforehand, as in the search: running statistics are non-trivial
    x_given = x.clone().requires_grad_(True)
    before = _snapshot(model)

    seed_everything(seed)
    first = _check_output(_call(perturbation, x_given, objective, model, prefix), x, prefix)
    if not torch.equal(x_given.detach(), x):
        raise ConformanceError(
            f"{prefix}modified x in place; work on a copy (x.clone(), or out-of-place operations)"
        )
    if x_given.grad is not None:
        raise ConformanceError(f"{prefix}left a gradient in x.grad; differentiate a detached copy of x")
    damage = _model_damage(model, before)
    if damage is not None:
        raise ConformanceError(prefix + damage)
    if any(any_trainable):
        raise ConformanceError(
            f"{prefix}ran the objective while model parameters required gradients: call the "
            f"objective inside Perturbation.__call__'s guard (implement perturb, do not override __call__)"
        )
    _check_membership(membership, x, first, prefix)

    seed_everything(seed)
    second = _check_output(_call(perturbation, x_given, objective, model, prefix), x, prefix)
    if not torch.equal(first, second):
        raise ConformanceError(
            f"{prefix}gave different x' for the same seed: draw randomness only from torch's, NumPy's "
            f"or Python's global generators (seeded by seed_everything), or from a seeded torch.Generator"
        )

    weights = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    weights = weights.to(device=x.device, dtype=x.dtype)
    prefix_free = f"{label} on {_case(x)} without a model (linear objective): "
    seed_everything(seed)
    free = _call(perturbation, x.clone(), lambda z: (z * weights).sum(), None, prefix_free)
    free = _check_output(free, x, prefix_free)
    _check_membership(membership, x, free, prefix_free)


# ----------------------------------------------------------------------------- norm balls


def check_norm_ball(
    ball: NormBall,
    *,
    distance: Optional[Distance] = None,
    x: Optional[Tensor] = None,
    shapes: Sequence[Tuple[int, ...]] = DEFAULT_SHAPES,
    dtypes: Sequence[torch.dtype] = DEFAULT_DTYPES,
    seed: int = 0,
    tolerance: Optional[float] = None,
) -> None:
    """Check that a :class:`~rnasframe.interfaces.NormBall` keeps the interface's contract.

    On every batch ``x`` (with candidates far from, near and equal to ``x``) it checks that:

    * ``epsilon`` is a finite number >= 0;
    * ``project`` lands in ball ∩ [0, 1], is idempotent, leaves points already inside unchanged
      (``x`` included) and modifies neither argument;
    * ``sample`` lands in ball ∩ [0, 1], does not modify ``x`` and repeats itself from the same seed;
    * ``ascent_step`` increases the linear objective ``<g, x>`` for every example whose gradient
      ``g`` is non-zero, moves at most ``step_size`` in the ball's norm, stays finite for a zero
      gradient and modifies none of its arguments.

    Args:
        ball: the threat model.
        distance: the per-example distance of the ball's norm (default: :func:`norm_distance`).
        x: check this batch (pixels in [0, 1]) only, instead of the default panel.
        shapes: batch shapes of the default panel.
        dtypes: floating-point types of the default panel.
        seed: the seed of the batches and of the ball's sampling.
        tolerance: slack for distances and equalities (default: a few ulps of the dtype per element).

    Raises:
        ConformanceError: the ball broke the contract; the message says how.
    """
    if not isinstance(ball, NormBall):
        raise TypeError(f"expected a rnasframe NormBall, got {ball!r}")
    epsilon = getattr(ball, "epsilon", None)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon < 0:
        raise ConformanceError(f"{type(ball).__name__}.epsilon must be a finite number >= 0, got {epsilon!r}")
    distance = distance if distance is not None else norm_distance(ball)
    for batch in _panel(x, shapes, dtypes, seed):
        _check_ball_on(ball, distance, batch, seed, tolerance)


def _check_ball_on(ball: NormBall, distance: Distance, x: Tensor, seed: int, tolerance: Optional[float]) -> None:
    prefix = f"{ball!r} on {_case(x)}: "
    slack = tolerance if tolerance is not None else _tolerance(x)
    membership = norm_ball_membership(ball, distance, slack)
    generator = torch.Generator().manual_seed(seed + 1)
    batch = x.shape[0]
    shape = (batch,) + (1,) * (x.dim() - 1)
    # Candidates per example: far (anywhere in [-1, 2]), near (noise of about epsilon) and x itself.
    scale = torch.tensor([3.0, ball.epsilon, 0.0], dtype=torch.float64)[torch.arange(batch) % 3].reshape(shape)
    far = torch.rand(x.shape, generator=generator, dtype=torch.float64) * 3 - 1
    near = x.detach().double().cpu() + torch.randn(x.shape, generator=generator, dtype=torch.float64) * scale
    candidate = torch.where(scale > 1, far, near).to(dtype=x.dtype, device=x.device)

    def called(method: str, *args: Any) -> Tensor:
        copies = [a.clone() for a in args if isinstance(a, Tensor)]
        try:
            out = getattr(ball, method)(*args)
        except Exception as error:
            raise ConformanceError(f"{prefix}{method} raised {type(error).__name__}: {error}") from error
        for original, copy in zip([a for a in args if isinstance(a, Tensor)], copies):
            if not torch.equal(original, copy):
                raise ConformanceError(f"{prefix}{method} modified its argument in place; return a new tensor")
        if not isinstance(out, Tensor) or out.shape != x.shape or out.dtype != x.dtype:
            got = f"a {out.dtype} tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else repr(out)
            raise ConformanceError(
                f"{prefix}{method} returned {got}, expected x's shape {tuple(x.shape)} and dtype {x.dtype}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ConformanceError(f"{prefix}{method} returned NaN or infinite values (a division by a zero norm?)")
        return out

    def inside(out: Tensor, what: str) -> None:
        low, high = float(out.min()), float(out.max())
        if low < 0.0 or high > 1.0:
            raise ConformanceError(f"{prefix}{what} has pixels in [{low:.6g}, {high:.6g}]; clamp to [0, 1]")
        bad = _failing_examples(membership(x, out), batch, "membership")
        if bad:
            raise ConformanceError(f"{prefix}{what} leaves the ball for example(s) {bad}: "
                                   f"{membership.explain(x, out, bad)}")  # type: ignore[attr-defined]

    projected = called("project", candidate, x)
    inside(projected, "project(candidate, x)")
    again = called("project", projected, x)
    if not torch.allclose(again, projected, rtol=0.0, atol=slack):
        gap = float((again - projected).abs().max())
        raise ConformanceError(
            f"{prefix}project is not idempotent: projecting its own result moves it by up to {gap:.3g}"
        )
    for shrink in (0.0, 0.5, 0.999):
        interior = (x + shrink * (projected - x)).to(x.dtype)
        kept = called("project", interior, x)
        if not torch.allclose(kept, interior, rtol=0.0, atol=slack):
            gap = float((kept - interior).abs().max())
            raise ConformanceError(
                f"{prefix}project moved a point that was already inside ball ∩ [0, 1] (x + {shrink:g} * "
                f"(project(candidate) - x)) by up to {gap:.3g}; points inside must be returned unchanged"
            )

    with _restored_global_rngs():
        torch.manual_seed(seed)
        sample = called("sample", x)
        torch.manual_seed(seed)
        repeat = called("sample", x)
    inside(sample, "sample(x)")
    if not torch.equal(sample, repeat):
        raise ConformanceError(f"{prefix}sample gave different points for the same torch.manual_seed; "
                               f"draw from torch's global generator (torch.rand_like, torch.randn_like)")

    gradient = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(dtype=x.dtype, device=x.device)
    gradient[0] = 0.0  # one example with a zero gradient
    step = 0.1
    stepped = called("ascent_step", projected, gradient, step)
    gain = (_flat(gradient) * (_flat(stepped) - _flat(projected))).sum(dim=1)
    moving = _flat(gradient).abs().amax(dim=1) > 0
    bad = [i for i in range(batch) if bool(moving[i]) and not float(gain[i]) > 0.0]
    if bad:
        raise ConformanceError(
            f"{prefix}ascent_step(x, g, step_size) does not increase <g, x> for example(s) {bad} "
            f"(change {float(gain[bad[0]]):.3g}); it must move along the steepest-ascent direction of "
            f"the norm (e.g. sign(g) for L-inf, g / ||g||_2 for L2), not against it"
        )
    lengths = distance(stepped, projected)
    too_far = [i for i in range(batch) if float(lengths[i]) > step + slack]
    if too_far:
        raise ConformanceError(
            f"{prefix}ascent_step moved example {too_far[0]} by {float(lengths[too_far[0]]):.6g} in the "
            f"ball's norm, more than step_size = {step:g}; a step must have length at most step_size"
        )


# ----------------------------------------------------------------------------- hyperparameters


def assert_rejects(
    factory: Callable[..., Any],
    field: str,
    bad_value: Any,
    errors: Tuple[Type[BaseException], ...] = (ValueError, TypeError),
) -> BaseException:
    """Check that ``factory(**{field: bad_value})`` fails with a clear, one-line error.

    The error must be one of ``errors`` and its message must name the field and the value (its
    ``repr`` or ``str``), on one line, as rnasframe's validators (:mod:`rnasframe.validation`) do::

        assert_rejects(PGDMaximizer, "steps", 0)   # "PGDMaximizer.steps must be an integer >= 1, got 0"

    Args:
        factory: builds the object from keyword arguments: the class itself, or e.g.
            ``lambda **kw: attrs.evolve(configured, **kw)`` to keep the other fields.
        field: the keyword argument (hyperparameter) to set.
        bad_value: a value the object must refuse.
        errors: the exception types accepted.

    Returns:
        The exception raised, for further checks.

    Raises:
        ConformanceError: the value was accepted, or refused with another exception type or with a
            message that does not name the field and the value.
    """
    name = getattr(factory, "__qualname__", None) or repr(factory)
    call = f"{name}({field}={bad_value!r})"
    try:
        factory(**{field: bad_value})
    except errors as error:
        caught = error
    except Exception as error:
        allowed = " or ".join(e.__name__ for e in errors)
        raise ConformanceError(f"{call} raised {type(error).__name__} ({error}); expected {allowed}") from error
    else:
        raise ConformanceError(
            f"{call} was accepted; refuse it when the object is made, e.g. with an attrs validator "
            f"from rnasframe.validation, so that a bad gin binding fails before any work starts"
        )
    # gin appends "\n  In call to configurable ..." to errors raised through a configurable: not ours.
    message, kind = str(caught).split("\n  In call to configurable")[0].strip(), type(caught).__name__
    if field not in message:
        raise ConformanceError(
            f"{call} raised {kind}({message!r}), whose message does not name the field {field!r}"
        )
    if repr(bad_value) not in message and str(bad_value) not in message:
        raise ConformanceError(
            f"{call} raised {kind}({message!r}), whose message does not show the value {bad_value!r}"
        )
    if "\n" in message:
        raise ConformanceError(f"{call} raised a multi-line message {message!r}; keep it to one line")
    return caught
