"""A custom threat model that is not a norm ball: per-image brightness and contrast changes.

The tutorial ``docs/tutorials/threat_model.md`` walks through this file. Each image ``x`` of a
batch may become::

    x' = clip((x - mean(x)) * c + mean(x) + b, 0, 1),   b in [-max_brightness, max_brightness],
                                                       c in [1 - max_contrast, 1 + max_contrast]

with its own ``(b, c)``. Use it from gin (``examples/brightness.gin``) with a gin ``import``::

    import custom_threat_model
    PerturbationConsistency.perturbation = @BrightnessContrast()
"""

from __future__ import annotations

import attrs
import gin
import torch
from torch import Tensor

from rnasframe.interfaces import Perturbation, PerturbationObjective
from rnasframe.validation import greater_than, in_closed_range, non_negative_int

__all__ = ["BrightnessContrast"]


@gin.configurable
@attrs.define(frozen=True)
class BrightnessContrast(Perturbation):
    """Find the per-image brightness shift ``b`` and contrast factor ``c`` that maximize the objective.

    ``(b, c)`` starts at a uniformly random point of its box and takes ``steps`` signed-gradient
    ascent steps, each clipped back into the box (PGD in the two parameters instead of the pixels).
    With ``steps=0`` it is the random point alone: the analogue of RNAS-uniform.

    Attributes:
        max_brightness: the largest shift ``|b|``, in pixel units of [0, 1] images.
        max_contrast: the largest relative contrast change ``|c - 1|``, in [0, 1] (``c`` stays >= 0).
        steps: ascent steps on ``(b, c)``; 0 samples ``(b, c)`` uniformly.
        step_size: the length of a step, as a fraction of each bound (``2.5 / steps`` is usual).

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> weights = torch.randn(3, 8, 8)
        >>> x_adv = BrightnessContrast(steps=3)(x, lambda z: (z * weights).sum())
        >>> bool(BrightnessContrast().contains(x, x_adv).all())
        True
    """

    max_brightness: float = attrs.field(default=0.1, validator=in_closed_range(0.0, 1.0, "pixel units"))
    max_contrast: float = attrs.field(default=0.2, validator=in_closed_range(0.0, 1.0, "a relative change"))
    steps: int = attrs.field(default=5, validator=non_negative_int)
    step_size: float = attrs.field(default=0.5, validator=greater_than(0.0, "a fraction of each bound"))

    def perturb(self, x: Tensor, objective: PerturbationObjective) -> Tensor:
        """Return ``x'`` for the batch ``x`` (called by :meth:`Perturbation.__call__`, which guards the model).

        Args:
            x: the natural batch ``(N, ...)``, pixels in [0, 1]; not modified.
            objective: maps a candidate batch to a scalar tensor to maximize.
        """
        # (b, c) in units of their bounds: u in [-1, 1]^2 per image, broadcastable against x.
        u = torch.rand((2, x.shape[0]) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device) * 2 - 1
        for _ in range(self.steps):
            u = u.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(objective(self._transform(x, u)), u)
            u = (u.detach() + self.step_size * gradient.sign()).clamp(-1.0, 1.0)
        return self._transform(x, u.detach())

    def _transform(self, x: Tensor, u: Tensor) -> Tensor:
        mean = x.reshape(x.shape[0], -1).mean(dim=1).reshape(u[0].shape)
        brightness, contrast = u[0] * self.max_brightness, 1 + u[1] * self.max_contrast
        return ((x - mean) * contrast + mean + brightness).clamp(0.0, 1.0)

    def contains(self, x: Tensor, x_perturbed: Tensor, tolerance: float = 1e-5) -> Tensor:
        """Return, per image, whether ``x_perturbed`` is ``x`` transformed by some in-bound ``(b, c)``.

        For a fixed ``c`` each pixel bounds ``b``: an unclipped pixel fixes it, a pixel clipped to 0
        bounds it from above, one clipped to 1 from below. So the allowed ``b`` form an interval
        whose width is a concave function of ``c``; a ternary search over ``c`` finds its maximum.

        Args:
            x: the natural batch.
            x_perturbed: the candidate batch, same shape.
            tolerance: slack for rounding, in pixel units.

        Returns:
            A bool tensor of shape ``(N,)``.
        """
        natural = x.detach().reshape(x.shape[0], -1).double()
        target = x_perturbed.detach().reshape(x.shape[0], -1).double()
        mean = natural.mean(dim=1, keepdim=True)

        def width(c: Tensor) -> Tensor:  # high(c) - low(c) of the interval of allowed b
            shift = target - mean - (natural - mean) * c  # the b each pixel asks for
            low = torch.where(target <= 0, -torch.inf, shift - tolerance).amax(dim=1, keepdim=True)
            high = torch.where(target >= 1, torch.inf, shift + tolerance).amin(dim=1, keepdim=True)
            bound = self.max_brightness + tolerance
            return high.clamp(max=bound) - low.clamp(min=-bound)

        low_c = torch.full_like(mean, 1 - self.max_contrast)
        high_c = torch.full_like(mean, 1 + self.max_contrast)
        for _ in range(60):
            left, right = (2 * low_c + high_c) / 3, (low_c + 2 * high_c) / 3
            better_right = width(right) > width(left)
            low_c, high_c = torch.where(better_right, left, low_c), torch.where(better_right, high_c, right)
        return (width((low_c + high_c) / 2) >= 0).squeeze(1)
