"""pytest mix-ins that run the conformance kit on a user's threat model.

Subclass one in a test file, fill in the hook, and pytest collects the inherited tests::

    class TestMyPerturbation(PerturbationConformance):
        bad_hyperparameters = {"steps": [0, 1.5]}

        def make_perturbation(self):
            return MyPerturbation(steps=3)

This module imports pytest and hypothesis; :mod:`rnasframe.testing` loads it only when a mix-in is
first used.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Tuple

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from rnasframe.interfaces.perturbation import NormBall, Perturbation
from rnasframe.testing.conformance import DEFAULT_SHAPES, assert_rejects, check_norm_ball, check_perturbation
from rnasframe.testing.strategies import images

__all__ = ["PerturbationConformance", "NormBallConformance"]


def _rebuilder(configured: Any) -> Callable[..., Any]:
    """A factory named after ``configured``'s class that changes some fields and keeps the rest."""

    def rebuild(**fields: Any) -> Any:
        if attrs.has(type(configured)):
            return attrs.evolve(configured, **fields)
        return type(configured)(**fields)

    rebuild.__qualname__ = type(configured).__name__
    return rebuild


def _check_bad_values(configured: Any, bad: Mapping[str, Sequence[Any]]) -> None:
    if not bad:
        pytest.skip(f"no bad_hyperparameters declared for {type(configured).__name__}")
    factory = _rebuilder(configured)
    for field, values in bad.items():
        for value in values:
            assert_rejects(factory, field, value)


def _random_batches(case: Any, check: Callable[[Any], None]) -> None:
    options = {
        "max_examples": case.max_examples,
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow],
        **case.hypothesis_settings,
    }

    @settings(**options)
    @given(x=case.batches())
    def conforms(x: Any) -> None:
        check(x)

    conforms()


class PerturbationConformance:
    """Tests every :class:`~rnasframe.interfaces.Perturbation` must pass; mix into a ``Test*`` class.

    Override :meth:`make_perturbation`; optionally define ``set_membership(self, x, x_perturbed)``
    (needed unless the perturbation has a norm ball in a ``ball`` attribute) and list refused values
    in :attr:`bad_hyperparameters`. See :func:`~rnasframe.testing.check_perturbation` for what is
    checked.

    Attributes:
        bad_hyperparameters: field name -> values the perturbation must refuse with a ValueError or
            TypeError that names the field and the value (:func:`~rnasframe.testing.assert_rejects`).
            The other fields keep their values from :meth:`make_perturbation`.
        set_membership: ``None``, or a method ``(x, x_perturbed) -> bool tensor (batch,)`` telling
            whether each ``x_perturbed`` is in the threat set of ``x``.
        max_examples: how many hypothesis batches the random-batch test draws.
        hypothesis_settings: further keyword arguments of :func:`hypothesis.settings` for that test
            (e.g. ``{"phases": [Phase.generate]}`` to skip shrinking a failing batch).
        shapes: the batch shapes of the edge-batch test (for threat models that need, say, 3
            channels); override :meth:`batches` for the random-batch test.
    """

    bad_hyperparameters: ClassVar[Mapping[str, Sequence[Any]]] = {}
    set_membership: ClassVar[Optional[Callable[..., Any]]] = None
    max_examples: ClassVar[int] = 10
    hypothesis_settings: ClassVar[Mapping[str, Any]] = {}
    shapes: ClassVar[Sequence[Tuple[int, ...]]] = DEFAULT_SHAPES

    def batches(self) -> st.SearchStrategy[Tensor]:
        """The hypothesis strategy of the random-batch test (default: :func:`~rnasframe.testing.strategies.images`)."""
        return images()

    def make_perturbation(self) -> Perturbation:
        """Return the perturbation under test (a fresh one per call)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_perturbation(self) -> Perturbation")

    def test_perturbation_conforms_on_edge_batches(self) -> None:
        """The contract holds on the kit's panel of shapes, dtypes and all-0 / all-1 images."""
        check_perturbation(self.make_perturbation, set_membership=self.set_membership, shapes=self.shapes)

    def test_perturbation_conforms_on_random_batches(self) -> None:
        """The contract holds on batches drawn by hypothesis (any small shape, float32 or float64)."""
        _random_batches(
            self,
            lambda x: check_perturbation(self.make_perturbation, set_membership=self.set_membership, x=x),
        )

    def test_perturbation_rejects_bad_hyperparameters(self) -> None:
        """Each value in ``bad_hyperparameters`` fails at construction with a clear message."""
        _check_bad_values(self.make_perturbation(), self.bad_hyperparameters)


class NormBallConformance:
    """Tests every :class:`~rnasframe.interfaces.NormBall` must pass; mix into a ``Test*`` class.

    Override :meth:`make_ball`; define ``distance(self, x_perturbed, x)`` (per-example distances)
    unless the ball is a built-in or has its own ``distance`` method. See
    :func:`~rnasframe.testing.check_norm_ball` for what is checked.

    Attributes:
        bad_hyperparameters: field name -> values the ball must refuse (default: a negative and a
            NaN ``epsilon``).
        distance: ``None``, or a method ``(x_perturbed, x) -> distances (batch,)`` in the ball's norm.
        max_examples: how many hypothesis batches the random-batch test draws.
        hypothesis_settings: further keyword arguments of :func:`hypothesis.settings` for that test.
        shapes: the batch shapes of the edge-batch test; override :meth:`batches` for the other.
    """

    bad_hyperparameters: ClassVar[Mapping[str, Sequence[Any]]] = {"epsilon": (-0.1, float("nan"))}
    distance: ClassVar[Optional[Callable[..., Any]]] = None
    max_examples: ClassVar[int] = 10
    hypothesis_settings: ClassVar[Mapping[str, Any]] = {}
    shapes: ClassVar[Sequence[Tuple[int, ...]]] = DEFAULT_SHAPES

    def batches(self) -> st.SearchStrategy[Tensor]:
        """The hypothesis strategy of the random-batch test (default: :func:`~rnasframe.testing.strategies.images`)."""
        return images()

    def make_ball(self) -> NormBall:
        """Return the ball under test."""
        raise NotImplementedError(f"{type(self).__name__} must define make_ball(self) -> NormBall")

    def test_ball_conforms_on_edge_batches(self) -> None:
        """The contract holds on the kit's panel of shapes, dtypes and all-0 / all-1 images."""
        check_norm_ball(self.make_ball(), distance=self.distance, shapes=self.shapes)

    def test_ball_conforms_on_random_batches(self) -> None:
        """The contract holds on batches drawn by hypothesis."""
        ball = self.make_ball()
        _random_batches(self, lambda x: check_norm_ball(ball, distance=self.distance, x=x))

    def test_ball_rejects_bad_hyperparameters(self) -> None:
        """Each value in ``bad_hyperparameters`` fails at construction with a clear message."""
        _check_bad_values(self.make_ball(), self.bad_hyperparameters)
