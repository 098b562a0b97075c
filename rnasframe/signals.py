"""Per-epoch signals of a differentiable search's health: alpha entropy and the Hessian's top eigenvalue.

DARTS-style searches fail in known ways: the architecture weights sharpen onto parameter-free
operations (``skip_connect``) and the validation loss lands in a sharp region of alpha-space.
Two cheap, space-neutral measurements follow that drift during a search:

* the mean entropy of ``softmax(alpha)`` over the edges of each alpha group (nats; ``log(#ops)``
  for uniform weights, 0 for a one-hot choice);
* the dominant eigenvalue of the Hessian of the validation objective with respect to alpha,
  by power iteration with exact Hessian-vector products (double backward), as in Zela et al.,
  "Understanding and Robustifying Differentiable Architecture Search" (ICLR 2020), where its
  growth predicts the collapse of the derived architecture.

Counts of ``skip_connect`` in the derived cells are the space's business
(:meth:`~rnasframe.interfaces.SearchSpace.genotype_metrics`).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import attrs
import gin
import torch
from torch import Tensor

from rnasframe import validation
from rnasframe.interfaces.bilevel import Batch, call_objective
from rnasframe.interfaces.perturbation import read_only_stores
from rnasframe.interfaces.search_space import Supernet
from rnasframe.model_state import preserved_buffers

__all__ = ["CollapseSignals", "alpha_entropy", "dominant_hessian_eigenvalue"]


def alpha_entropy(supernet: Supernet) -> Dict[str, float]:
    """Mean entropy (nats) of ``softmax(alpha)`` over the edges of each alpha group, and over all.

    Keys ``"alpha_entropy/<group>"`` per group (:attr:`~rnasframe.interfaces.Supernet.arch_parameter_names`)
    and ``"alpha_entropy"`` for the mean over every edge of every group.
    """
    result: Dict[str, float] = {}
    total, edges = 0.0, 0
    for name, alpha in zip(supernet.arch_parameter_names, supernet.arch_parameters()):
        logits = alpha.detach().double().reshape(-1, alpha.shape[-1])
        entropy = -(torch.softmax(logits, dim=-1) * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
        result[f"alpha_entropy/{name}"] = float(entropy.mean())
        total += float(entropy.sum())
        edges += entropy.numel()
    result["alpha_entropy"] = total / max(edges, 1)
    return result


def _dot(left: Sequence[Tensor], right: Sequence[Tensor]) -> Tensor:
    return sum((a * b).sum() for a, b in zip(left, right))  # type: ignore[return-value]


def dominant_hessian_eigenvalue(
    loss: Tensor,
    parameters: Sequence[Tensor],
    iterations: int = 20,
    tolerance: float = 1e-3,
    generator: Optional[torch.Generator] = None,
) -> Tuple[float, int]:
    """The eigenvalue of largest magnitude of ``d²loss/dparameters²`` by power iteration.

    Each iteration is one exact Hessian-vector product (double backward through ``loss``'s graph,
    which is kept until the end). Iteration stops when the Rayleigh quotient changes by less than
    ``tolerance`` relative to its size, or after ``iterations`` products.

    Args:
        loss: a scalar whose graph reaches ``parameters`` (twice differentiable).
        parameters: the tensors to differentiate with respect to (alpha).
        iterations: the most Hessian-vector products, ``>= 1``.
        tolerance: relative change of the estimate that ends the iteration, ``> 0``.
        generator: draws the random start (a CPU generator; for reproducibility).

    Returns:
        ``(eigenvalue, products used)``.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    gradients = torch.autograd.grad(loss, parameters, create_graph=True)
    vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in parameters]
    norm = _dot(vector, vector).sqrt()
    vector = [v / norm for v in vector]
    estimate = 0.0
    for used in range(1, iterations + 1):
        product = torch.autograd.grad(_dot(gradients, vector), parameters, retain_graph=True)
        value = float(_dot(product, vector))  # one read per product, outside the search steps
        norm = _dot(product, product).sqrt()
        if float(norm) == 0.0:
            return 0.0, used
        vector = [p.detach() / norm for p in product]
        if used > 1 and abs(value - estimate) <= tolerance * max(abs(value), 1e-12):
            return value, used
        estimate = value
    return estimate, iterations


@gin.configurable
@attrs.define(frozen=True)
class CollapseSignals:
    """Which health signals a search measures after each epoch, and how often.

    All are logged to ``log.txt``, tensorboardX (prefix ``signals/``) and the checkpointed metrics;
    the last epoch's values reach ``results.json``. The entropy costs nothing; the Hessian costs
    one forward pass of the validation objective and ``hessian_iterations`` double-backward
    passes on ``hessian_batches`` batches, so it runs every ``hessian_every`` search epochs (after
    warm-up) and always at the last epoch. The measurement runs under its own random state and
    leaves the supernet's buffers, gradients and the run's random generators as they were.

    Args:
        entropy: log the mean entropy of softmax(alpha) per group (:func:`alpha_entropy`).
        hessian_every: measure the dominant Hessian eigenvalue every this many epochs (counted
            from the end of warm-up); ``None`` never.
        hessian_batches: validation batches (the alpha half, in a fixed order) in the measured loss.
        hessian_iterations: the most power-iteration steps.
        hessian_tolerance: relative change of the estimate that ends the power iteration.
    """

    entropy: bool = attrs.field(default=True, validator=validation.boolean)
    hessian_every: Optional[int] = attrs.field(
        default=5,
        # attrs' stubs type the field by its int default, not as Optional[int]
        validator=attrs.validators.optional(validation.positive_int),  # type: ignore[arg-type]
    )
    hessian_batches: int = attrs.field(default=1, validator=validation.positive_int)
    hessian_iterations: int = attrs.field(default=20, validator=validation.positive_int)
    hessian_tolerance: float = attrs.field(default=1e-3, validator=validation.greater_than(0.0, "tolerance"))

    def hessian_due(self, epoch: int, epochs: int, warmup_epochs: int) -> bool:
        """Whether the Hessian is measured after 0-based ``epoch`` (never during warm-up)."""
        if self.hessian_every is None or epoch < warmup_epochs:
            return False
        return epoch == epochs - 1 or (epoch - warmup_epochs + 1) % self.hessian_every == 0

    def measure(
        self,
        supernet: Supernet,
        objective: Any,
        batches: Iterable[Batch],
        hessian: bool,
        seed: int = 0,
    ) -> Dict[str, float]:
        """Return the signals of ``supernet`` now: the entropy, and the Hessian's when ``hessian``.

        Args:
            supernet: the supernet, in the mode the alpha step uses (train mode during a search).
            objective: the search objective (``objective(model, x, y).loss``), so RNAS' term is
                included; its perturbation draws come from a forked random state, and
                per-example stores are read, never written (:func:`~rnasframe.interfaces.read_only_stores`).
            batches: validation batches, ``(x, y)`` or ``(x, y, index)``; the first
                :attr:`hessian_batches` are used.
            hessian: measure the Hessian eigenvalue now (see :meth:`hessian_due`).
            seed: seeds the random start of the power iteration and the forked random state.
        """
        signals: Dict[str, float] = alpha_entropy(supernet) if self.entropy else {}
        if hessian:
            value, used = self._hessian(supernet, objective, batches, seed)
            signals["hessian_eigenvalue"] = value
            signals["hessian_products"] = float(used)
        return signals

    def _hessian(
        self, supernet: Supernet, objective: Any, batches: Iterable[Batch], seed: int
    ) -> Tuple[float, int]:
        parameters = list(supernet.arch_parameters())
        device = parameters[0].device
        devices: List[int] = []
        if device.type == "cuda":  # fork the generator of the GPU the supernet is on, not GPU 0's
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices), preserved_buffers(supernet), read_only_stores():
            torch.manual_seed(seed)
            losses = []
            for count, batch in enumerate(batches):
                if count == self.hessian_batches:
                    break
                losses.append(call_objective(objective, supernet, batch).loss)
            if not losses:
                return math.nan, 0
            loss = torch.stack(losses).mean()
            generator = torch.Generator().manual_seed(seed)
            iterations, tolerance = self.hessian_iterations, self.hessian_tolerance
            return dominant_hessian_eigenvalue(loss, parameters, iterations, tolerance, generator)
