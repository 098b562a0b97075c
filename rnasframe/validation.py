"""attrs validators whose error messages name the field, the bad value and what is allowed.

Every hyperparameter class in rnasframe is a frozen attrs class that uses these validators, so a bad
value fails when the object is made, in one line, before any work starts::

    >>> from rnasframe.perturbations import LinfBall
    >>> LinfBall(epsilon=-0.1)
    Traceback (most recent call last):
    ...
    ValueError: LinfBall.epsilon must be >= 0 (a radius in pixel units of [0, 1] images), got -0.1
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs

__all__ = [
    "at_least",
    "greater_than",
    "in_closed_range",
    "one_of",
    "positive_int",
    "non_negative_int",
    "probability",
    "finite",
    "boolean",
    "Validator",
]

#: The type of what every function here returns, an attrs validator called as ``validator(instance, attribute, value)``.
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _owner(instance: Any) -> str:
    return type(instance).__name__


def _check_number(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{_owner(instance)}.{attribute.name} must be a number, got {value!r} "
            f"of type {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{_owner(instance)}.{attribute.name} must be finite, got {value!r}")
    return float(value)


def finite(hint: str = "") -> Validator:
    """Accept any finite real number."""

    def validate(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        _check_number(instance, attribute, value)

    return validate


def at_least(bound: float, hint: str = "") -> Validator:
    """Accept finite numbers ``>= bound``; ``hint`` explains the unit or meaning in the message."""

    def validate(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        number = _check_number(instance, attribute, value)
        if number < bound:
            extra = f" ({hint})" if hint else ""
            raise ValueError(
                f"{_owner(instance)}.{attribute.name} must be >= {bound:g}{extra}, got {value!r}"
            )

    return validate


def greater_than(bound: float, hint: str = "") -> Validator:
    """Accept finite numbers ``> bound``."""

    def validate(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        number = _check_number(instance, attribute, value)
        if number <= bound:
            extra = f" ({hint})" if hint else ""
            raise ValueError(
                f"{_owner(instance)}.{attribute.name} must be > {bound:g}{extra}, got {value!r}"
            )

    return validate


def in_closed_range(low: float, high: float, hint: str = "") -> Validator:
    """Accept finite numbers in ``[low, high]``."""

    def validate(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        number = _check_number(instance, attribute, value)
        if not low <= number <= high:
            extra = f" ({hint})" if hint else ""
            raise ValueError(
                f"{_owner(instance)}.{attribute.name} must be in [{low:g}, {high:g}]{extra}, "
                f"got {value!r}"
            )

    return validate


def probability(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """Accept numbers in ``[0, 1]``."""
    in_closed_range(0.0, 1.0, "a probability")(instance, attribute, value)


def _check_int(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{_owner(instance)}.{attribute.name} must be an integer, got {value!r} "
            f"of type {type(value).__name__}"
        )
    return value


def positive_int(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """Accept integers ``>= 1``."""
    if _check_int(instance, attribute, value) < 1:
        raise ValueError(f"{_owner(instance)}.{attribute.name} must be an integer >= 1, got {value!r}")


def non_negative_int(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """Accept integers ``>= 0``."""
    if _check_int(instance, attribute, value) < 0:
        raise ValueError(f"{_owner(instance)}.{attribute.name} must be an integer >= 0, got {value!r}")


def boolean(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    """Accept only ``True`` or ``False`` (not 0, 1 or strings)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{_owner(instance)}.{attribute.name} must be True or False, got {value!r} "
            f"of type {type(value).__name__}"
        )


def one_of(*allowed: Any) -> Validator:
    """Accept only the listed values."""

    def validate(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
        if value not in allowed:
            raise ValueError(
                f"{_owner(instance)}.{attribute.name} must be one of "
                f"{', '.join(repr(a) for a in allowed)}; got {value!r}"
            )

    return validate
