"""Threat models: the L∞ and L2 balls around each image of a batch, intersected with [0, 1].

Both balls measure their radius ``epsilon`` in pixel units of [0, 1] images and take norms per
example, over every dimension except the first (the batch dimension).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import gin
import torch
from torch import Tensor

from rnasframe.interfaces.perturbation import NormBall
from rnasframe.validation import at_least

__all__ = ["LinfBall", "L2Ball"]

_RADIUS_HINT = "a radius in pixel units of [0, 1] images"


def is_norm_ball(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """attrs validator: accept only :class:`~rnasframe.interfaces.NormBall` instances."""
    if not isinstance(value, NormBall):
        raise TypeError(
            f"{type(instance).__name__}.{attribute.name} must be a NormBall (e.g. LinfBall() or "
            f"L2Ball()), got {value!r} of type {type(value).__name__}"
        )


def _per_example_l2_norm(t: Tensor) -> Tensor:
    """Return the L2 norm of each example of ``t``, shaped to broadcast against ``t``."""
    batch = t.shape[0]
    flat = t.reshape(batch, math.prod(t.shape[1:]))
    norms = torch.linalg.vector_norm(flat, ord=2, dim=1)
    return norms.reshape((batch,) + (1,) * (t.dim() - 1))


@gin.configurable
@attrs.define(frozen=True)
class LinfBall(NormBall):
    """The L∞ ball ``{x' : max_i |x'_i - x_i| <= epsilon}`` around each image.

    Attributes:
        epsilon: the radius, in pixel units of [0, 1] images (``8/255 ≈ 0.031`` is the usual
            CIFAR-10 budget). ``0`` makes every perturbation return ``x`` itself.

    Example:
        >>> ball = LinfBall(epsilon=0.031)
        >>> x = torch.full((2, 3, 4, 4), 0.5)
        >>> bool(((ball.sample(x) - x).abs() <= 0.031 + 1e-6).all())
        True
    """

    epsilon: float = attrs.field(default=0.031, validator=at_least(0.0, _RADIUS_HINT))

    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        """Project ``x_perturbed`` onto the ball around ``x`` intersected with [0, 1].

        Clamps each element to ``[x - epsilon, x + epsilon]`` and then to ``[0, 1]``. Both sets are
        boxes and ``x`` lies in [0, 1], so this is the exact Euclidean projection onto their
        intersection. Points already inside are returned unchanged.

        Args:
            x_perturbed: the candidate batch, same shape as ``x``.
            x: the natural batch (the ball centres), pixels in [0, 1].

        Returns:
            A new tensor; neither argument is modified.
        """
        eps = self.epsilon
        return torch.clamp(x_perturbed, min=x - eps, max=x + eps).clamp_(0.0, 1.0)

    def sample(self, x: Tensor) -> Tensor:
        """Return ``x + delta`` with every element of ``delta`` drawn from U(-epsilon, epsilon).

        This is uniform in the L∞ ball; the result is then clipped to [0, 1], so it is uniform on
        ball ∩ [0, 1] only up to that clip (clipped coordinates pile up on the faces of the pixel
        range). Uses torch's global random generator on ``x``'s device, in ``x``'s dtype.

        Args:
            x: the natural batch, pixels in [0, 1].

        Returns:
            A new tensor of ``x``'s shape, device and dtype; ``x`` itself for ``epsilon == 0``
            (up to a copy).
        """
        noise = torch.rand_like(x).mul_(2.0).sub_(1.0).mul_(self.epsilon)
        return noise.add_(x).clamp_(0.0, 1.0)

    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        """Return ``x_perturbed + step_size * sign(gradient)`` (steepest ascent for L∞).

        Elements with a zero gradient do not move. The result is not projected.
        """
        return torch.add(x_perturbed, torch.sign(gradient), alpha=step_size)


@gin.configurable
@attrs.define(frozen=True)
class L2Ball(NormBall):
    """The L2 ball ``{x' : ||x' - x||_2 <= epsilon}`` around each image (norm over all pixels).

    Attributes:
        epsilon: the radius, in pixel units of [0, 1] images (``0.5`` is the usual CIFAR-10 L2
            budget). ``0`` makes every perturbation return ``x`` itself.
    """

    epsilon: float = attrs.field(default=0.5, validator=at_least(0.0, _RADIUS_HINT))

    def project(self, x_perturbed: Tensor, x: Tensor) -> Tensor:
        """Bring ``x_perturbed`` into the ball around ``x`` intersected with [0, 1].

        Rescales each example's ``delta = x_perturbed - x`` to norm ``epsilon`` when it is longer,
        then clamps to [0, 1]. This is the standard approximate projection used by PGD
        implementations: the result always lies in ball ∩ [0, 1] (clamping towards ``x``, which is
        inside the box, only shortens ``delta``), but it is not always the *nearest* such point,
        which would need an iterative solver. Examples already inside the ball (and the box) are
        returned unchanged.

        Args:
            x_perturbed: the candidate batch, same shape as ``x``.
            x: the natural batch (the ball centres), pixels in [0, 1].

        Returns:
            A new tensor; neither argument is modified.
        """
        delta = x_perturbed - x
        norms = _per_example_l2_norm(delta)
        tiny = torch.finfo(delta.dtype).tiny
        scale = (self.epsilon / norms.clamp_min(tiny)).clamp_(max=1.0)
        shrunk = torch.addcmul(x, delta, scale)
        return torch.where(norms > self.epsilon, shrunk, x_perturbed).clamp_(0.0, 1.0)

    def sample(self, x: Tensor) -> Tensor:
        """Return a point drawn uniformly from the *volume* of the L2 ball around each example.

        The direction is a normalized standard Gaussian (uniform on the sphere) and the radius is
        ``epsilon * U ** (1 / d)`` with ``U ~ U(0, 1)`` and ``d`` the number of elements per
        example, which makes the point uniform in the ball (not on its surface). The result is
        then clipped to [0, 1], so it is uniform on ball ∩ [0, 1] only up to that clip. Uses
        torch's global random generator on ``x``'s device, in ``x``'s dtype.

        Args:
            x: the natural batch, pixels in [0, 1].

        Returns:
            A new tensor of ``x``'s shape, device and dtype.
        """
        batch = x.shape[0]
        dims = math.prod(x.shape[1:])
        direction = torch.randn_like(x)
        norms = _per_example_l2_norm(direction).clamp_min_(torch.finfo(x.dtype).tiny)
        radius = torch.rand(batch, device=x.device, dtype=x.dtype).pow_(1.0 / max(dims, 1))
        radius = radius.mul_(self.epsilon).reshape(norms.shape)
        return direction.mul_(radius / norms).add_(x).clamp_(0.0, 1.0)

    def ascent_step(self, x_perturbed: Tensor, gradient: Tensor, step_size: float) -> Tensor:
        """Return ``x_perturbed + step_size * gradient / ||gradient||_2`` (per example).

        Examples whose gradient is zero do not move. The result is not projected.
        """
        norms = _per_example_l2_norm(gradient).clamp_min_(torch.finfo(gradient.dtype).tiny)
        return torch.addcdiv(x_perturbed, gradient, norms, value=step_size)
