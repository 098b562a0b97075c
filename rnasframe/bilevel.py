"""DARTS' bi-level optimizers: first-order (default) and second-order (unrolled) alternation."""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, cast

import attrs
import gin
import torch
from torch import Tensor, nn

from rnasframe import validation
from rnasframe.distributed import average_gradients, average_tensors
from rnasframe.interfaces.bilevel import Batch, BilevelOptimizer, call_objective
from rnasframe.interfaces.perturbation import read_only_stores
from rnasframe.interfaces.search_space import Supernet
from rnasframe.model_state import preserved_buffers

__all__ = [
    "WeightOptimizerSettings",
    "ArchOptimizerSettings",
    "FirstOrderDarts",
    "SecondOrderDarts",
    "SharedDraw",
    "clip_gradients",
]


def _check_betas(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if len(value) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be two numbers in [0, 1), got {value!r}"
        )


@gin.configurable
@attrs.define(frozen=True)
class WeightOptimizerSettings:
    """SGD for the weights ``w`` with a cosine-annealed learning rate (DARTS' settings).

    Args:
        learning_rate: initial learning rate (0.025).
        min_learning_rate: the cosine schedule's final value (0.001), reached after the last epoch.
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay (3e-4).
        grad_clip: maximum global gradient norm of ``w`` (5); ``None`` disables clipping.
        nesterov: Nesterov momentum instead of heavy-ball momentum (DARTS: no; NAS-Bench-201's
            training protocol: yes); needs ``momentum > 0``.
    """

    learning_rate: float = attrs.field(default=0.025, validator=validation.greater_than(0.0))
    min_learning_rate: float = attrs.field(default=0.001, validator=validation.at_least(0.0))
    momentum: float = attrs.field(default=0.9, validator=validation.in_closed_range(0.0, 1.0))
    weight_decay: float = attrs.field(default=3e-4, validator=validation.at_least(0.0))
    grad_clip: Optional[float] = attrs.field(
        default=5.0,
        # attrs' stubs type the field by its float default, not as Optional[float]
        validator=attrs.validators.optional(validation.greater_than(0.0)),  # type: ignore[arg-type]
    )
    nesterov: bool = attrs.field(default=False, validator=validation.boolean)

    def __attrs_post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ValueError("WeightOptimizerSettings.nesterov = True needs momentum > 0, got momentum = 0")
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"WeightOptimizerSettings.min_learning_rate ({self.min_learning_rate}) must not exceed "
                f"learning_rate ({self.learning_rate})"
            )


@gin.configurable
@attrs.define(frozen=True)
class ArchOptimizerSettings:
    """Adam for the architecture parameters ``alpha`` (DARTS' settings).

    Args:
        learning_rate: 3e-4.
        betas: Adam's ``(beta1, beta2)``, ``(0.5, 0.999)``.
        weight_decay: 1e-3.
    """

    learning_rate: float = attrs.field(default=3e-4, validator=validation.greater_than(0.0))
    betas: Tuple[float, float] = attrs.field(default=(0.5, 0.999), converter=tuple, validator=_check_betas)
    weight_decay: float = attrs.field(default=1e-3, validator=validation.at_least(0.0))


@attrs.define(eq=False)
class _DartsBase(BilevelOptimizer):
    """Shared state and the weight step of both DARTS variants."""

    weights: WeightOptimizerSettings = attrs.field(
        factory=WeightOptimizerSettings, validator=attrs.validators.instance_of(WeightOptimizerSettings)
    )
    arch: ArchOptimizerSettings = attrs.field(
        factory=ArchOptimizerSettings, validator=attrs.validators.instance_of(ArchOptimizerSettings)
    )
    _weight_params: List[nn.Parameter] = attrs.field(init=False, factory=list)
    _arch_params: List[nn.Parameter] = attrs.field(init=False, factory=list)
    _weight_optimizer: Optional[torch.optim.SGD] = attrs.field(init=False, default=None)
    _arch_optimizer: Optional[torch.optim.Adam] = attrs.field(init=False, default=None)
    _scheduler: Optional[torch.optim.lr_scheduler.CosineAnnealingLR] = attrs.field(init=False, default=None)

    def setup(self, supernet: Supernet, epochs: int) -> None:
        """Create SGD for ``w``, Adam for ``alpha`` and the cosine schedule over ``epochs`` epochs."""
        self._weight_params = list(supernet.weight_parameters())
        self._arch_params = list(supernet.arch_parameters())
        if not self._weight_params or not self._arch_params:
            raise ValueError(
                f"{type(supernet).__name__} must expose weight and architecture parameters, got "
                f"{len(self._weight_params)} weight and {len(self._arch_params)} architecture tensors"
            )
        weight_ids = {id(p) for p in self._weight_params}
        if any(id(p) in weight_ids for p in self._arch_params):
            raise ValueError(
                f"{type(supernet).__name__}.weight_parameters() must not yield architecture parameters"
            )
        self._weight_optimizer = torch.optim.SGD(
            self._weight_params,
            lr=self.weights.learning_rate,
            momentum=self.weights.momentum,
            weight_decay=self.weights.weight_decay,
            nesterov=self.weights.nesterov,
            foreach=True,  # a few multi-tensor operators per step, not several per parameter
        )
        self._arch_optimizer = torch.optim.Adam(
            self._arch_params,
            lr=self.arch.learning_rate,
            betas=self.arch.betas,
            weight_decay=self.arch.weight_decay,
            foreach=True,
        )
        self._scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self._weight_optimizer, T_max=max(1, epochs), eta_min=self.weights.min_learning_rate
        )

    def _require_setup(self) -> None:
        if self._weight_optimizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup(supernet, epochs) must be called first")

    @property
    def weight_learning_rate(self) -> float:
        """The current learning rate of ``w``."""
        self._require_setup()
        assert self._weight_optimizer is not None
        return float(self._weight_optimizer.param_groups[0]["lr"])

    def end_epoch(self) -> None:
        """Advance the cosine schedule of ``w`` by one epoch."""
        self._require_setup()
        assert self._scheduler is not None
        self._scheduler.step()

    def state_dict(self) -> Dict[str, Any]:
        """Both optimizers' and the scheduler's state."""
        self._require_setup()
        assert self._weight_optimizer is not None
        assert self._arch_optimizer is not None
        assert self._scheduler is not None
        return {
            "weight_optimizer": self._weight_optimizer.state_dict(),
            "arch_optimizer": self._arch_optimizer.state_dict(),
            "scheduler": self._scheduler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self._require_setup()
        assert self._weight_optimizer is not None
        assert self._arch_optimizer is not None
        assert self._scheduler is not None
        self._weight_optimizer.load_state_dict(state["weight_optimizer"])
        self._arch_optimizer.load_state_dict(state["arch_optimizer"])
        self._scheduler.load_state_dict(state["scheduler"])

    def _weight_step(self, supernet: Supernet, objective: Any, batch: Batch) -> Dict[str, Tensor]:
        """One SGD step of ``w`` on the training objective (gradients of ``w`` only, clipped)."""
        assert self._weight_optimizer is not None
        self._weight_optimizer.zero_grad(set_to_none=True)
        output = call_objective(objective, supernet, batch)
        output.loss.backward(inputs=self._weight_params)
        average_gradients(self._weight_params)  # data-parallel runs: the mean over ranks
        if self.weights.grad_clip is not None:
            clip_gradients(self._weight_params, self.weights.grad_clip)
        self._weight_optimizer.step()
        return output.metrics

    def step(
        self,
        supernet: Supernet,
        objective: Any,
        train_batch: Batch,
        valid_batch: Batch,
        update_arch: bool,
    ) -> Dict[str, Tensor]:
        """An ``alpha`` step on ``valid_batch`` (unless warming up), then a ``w`` step on ``train_batch``.

        Returns the metrics of both, prefixed ``train/`` and ``valid/``.
        """
        self._require_setup()
        metrics: Dict[str, Tensor] = {}
        if update_arch:
            for key, value in self._arch_step(supernet, objective, train_batch, valid_batch).items():
                metrics[f"valid/{key}"] = value
        for key, value in self._weight_step(supernet, objective, train_batch).items():
            metrics[f"train/{key}"] = value
        return metrics

    def _arch_step(
        self, supernet: Supernet, objective: Any, train_batch: Batch, valid_batch: Batch
    ) -> Dict[str, Tensor]:
        raise NotImplementedError


@gin.configurable
@attrs.define(eq=False)
class FirstOrderDarts(_DartsBase):
    """First-order DARTS: ``alpha`` follows ``grad_alpha L_val(w, alpha)`` at the current ``w``.

    Each step: one Adam step of ``alpha`` on the validation objective (skipped during warm-up),
    then one SGD step of ``w`` on the training objective. Each backward pass computes gradients
    for the parameters being updated only.

    Args:
        weights: SGD settings for ``w``.
        arch: Adam settings for ``alpha``.
    """

    def _arch_step(
        self, supernet: Supernet, objective: Any, train_batch: Batch, valid_batch: Batch
    ) -> Dict[str, Tensor]:
        assert self._arch_optimizer is not None
        self._arch_optimizer.zero_grad(set_to_none=True)
        output = call_objective(objective, supernet, valid_batch)
        output.loss.backward(inputs=self._arch_params)
        average_gradients(self._arch_params)
        self._arch_optimizer.step()
        return output.metrics


@gin.configurable
@attrs.define(eq=False)
class SecondOrderDarts(_DartsBase):
    """Second-order DARTS (Liu et al., 2019, Eq. 7-8): ``alpha`` follows the unrolled gradient.

    With ``xi`` the current learning rate of ``w`` and ``w' = w - xi * (momentum * v + grad_w L_train
    + weight_decay * w)`` (one step of the actual SGD optimizer), the architecture gradient is::

        grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)) / (2 r)

    with ``w+- = w +- r * grad_w' L_val(w', alpha)`` and ``r = finite_difference_scale / ||grad_w' L_val||``
    (the finite-difference Hessian-vector product). ``w`` is restored exactly afterwards, and the
    temporary passes leave no trace in buffers (BatchNorm running statistics). With a robust
    objective every ``L`` includes the regularizer, so RNAS-max runs its inner maximization at
    each of the four evaluations.

    One draw per step: the four evaluations start from the same state of torch's random
    generators (:class:`SharedDraw`), so a random perturbation (uniform noise, PGD's random start)
    is the same at ``w+`` and ``w-`` and the finite difference differentiates the objective, not
    the difference of two draws. The generators then continue from where the first evaluation
    left them, as after one evaluation of a first-order step.

    Per-example stores (a warm-started perturbation): the three evaluations on the training
    batch run inside :func:`~rnasframe.interfaces.read_only_stores`, so they start from the same
    stored state and leave it unchanged; the validation evaluation writes its examples' entries
    and the weight step its own, once each per step, as in first-order DARTS.

    Args:
        weights: SGD settings for ``w``.
        arch: Adam settings for ``alpha``.
        finite_difference_scale: the numerator of ``r`` (DARTS: 0.01).
    """

    finite_difference_scale: float = attrs.field(default=0.01, validator=validation.greater_than(0.0))

    def _arch_step(
        self, supernet: Supernet, objective: Any, train_batch: Batch, valid_batch: Batch
    ) -> Dict[str, Tensor]:
        assert self._weight_optimizer is not None
        assert self._arch_optimizer is not None
        weights, alphas = self._weight_params, self._arch_params
        xi = self.weight_learning_rate
        momentum = self.weights.momentum
        decay = self.weights.weight_decay
        saved = [w.detach().clone() for w in weights]
        draw = SharedDraw.capture(train_batch[0], valid_batch[0])
        try:
            with preserved_buffers(supernet):
                with read_only_stores():
                    train_loss = call_objective(objective, supernet, train_batch).loss  # advances the generators once
                train_grads = [
                    _zero_if_none(g, w)
                    for g, w in zip(torch.autograd.grad(train_loss, weights, allow_unused=True), weights)
                ]
                average_tensors(train_grads)
                with torch.no_grad():
                    for w, g in zip(weights, train_grads):
                        direction = g + decay * w
                        buffer = self._weight_optimizer.state.get(w, {}).get("momentum_buffer")
                        if buffer is not None:
                            direction = direction + momentum * buffer
                        w.sub_(xi * direction)
                with draw.replay():
                    valid_output = call_objective(objective, supernet, valid_batch)
                grads = torch.autograd.grad(valid_output.loss, list(alphas) + weights, allow_unused=True)
                alpha_grads = [_zero_if_none(g, a) for g, a in zip(grads[: len(alphas)], alphas)]
                vector = [_zero_if_none(g, w) for g, w in zip(grads[len(alphas) :], weights)]
                average_tensors(alpha_grads + vector)
                hessian = self._hessian_vector_product(supernet, objective, train_batch, saved, vector, draw)
        finally:
            with torch.no_grad():
                for w, original in zip(weights, saved):
                    w.copy_(original)
        self._arch_optimizer.zero_grad(set_to_none=True)
        for alpha, grad, h in zip(alphas, alpha_grads, hessian):
            alpha.grad = grad - xi * h
        self._arch_optimizer.step()
        return valid_output.metrics

    def _hessian_vector_product(
        self,
        supernet: Supernet,
        objective: Any,
        batch: Batch,
        saved: Sequence[Tensor],
        vector: Sequence[Tensor],
        draw: "SharedDraw",
    ) -> List[Tensor]:
        """``(grad_alpha L_train(w + r v) - grad_alpha L_train(w - r v)) / (2 r)``, ``w`` restored by the caller."""
        weights, alphas = self._weight_params, self._arch_params
        norm = torch.sqrt(cast(Tensor, sum((v * v).sum() for v in vector)))  # vector is never empty
        r = self.finite_difference_scale / norm.clamp_min(1e-12)
        gradients = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, original, v in zip(weights, saved, vector):
                    w.copy_(original + sign * r * v)
            with draw.replay(), read_only_stores():
                loss = call_objective(objective, supernet, batch).loss
            grads = [_zero_if_none(g, a) for g, a in zip(torch.autograd.grad(loss, alphas, allow_unused=True), alphas)]
            average_tensors(grads)
            gradients.append(grads)
        return [(gp - gn) / (2 * r) for gp, gn in zip(*gradients)]


class SharedDraw:
    """One state of torch's random generators, replayed for several evaluations of an objective.

    :meth:`capture` records the state of the CPU generator and of the CUDA generators of the given
    tensors' devices; every ``with draw.replay():`` block then starts from exactly that state and
    leaves the generators as they were outside it (``torch.random.fork_rng``). Perturbations
    draw from these global generators, so evaluations inside ``replay`` blocks see the same noise
    and the same PGD random start (for inputs of the same shape).

    Args:
        cpu_state: the CPU generator's state.
        cuda_states: ``{device index: state}`` of the CUDA generators.
    """

    __slots__ = ("_cpu_state", "_cuda_states")

    def __init__(self, cpu_state: Tensor, cuda_states: Mapping[int, Tensor]) -> None:
        self._cpu_state = cpu_state
        self._cuda_states = dict(cuda_states)

    @classmethod
    def capture(cls, *tensors: Tensor) -> "SharedDraw":
        """The generators' current state (CPU, and CUDA for the devices ``tensors`` live on)."""
        devices = sorted(
            {
                t.device.index if t.device.index is not None else torch.cuda.current_device()
                for t in tensors
                if t.device.type == "cuda"
            }
        )
        return cls(torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices})

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from the captured state; restore the generators' state on exit."""
        with torch.random.fork_rng(devices=list(self._cuda_states)):
            torch.set_rng_state(self._cpu_state)
            for device, state in self._cuda_states.items():
                torch.cuda.set_rng_state(state, device)
            yield


def clip_gradients(parameters: Sequence[Tensor], max_norm: float) -> None:
    """Scale the gradients so that their global L2 norm is at most ``max_norm``, in place.

    The same numbers as ``torch.nn.utils.clip_grad_norm_`` (scale
    ``min(1, max_norm / (norm + 1e-6))``), with multi-tensor operators on every device (torch's
    version loops over the parameters on the CPU), and no host synchronization.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _zero_if_none(gradient: Optional[Tensor], like: Tensor) -> Tensor:
    return gradient if gradient is not None else torch.zeros_like(like)
