"""Range checks of the numbers in a settings dataclass, so the Python API refuses what the CLI refuses: one line
before any work, never a NaN budget that passes ``> 0`` and fails an hour later."""

from __future__ import annotations

import math
import operator

from factory.core.errors import FactoryError

_OPS = {">": (operator.gt, "above"), ">=": (operator.ge, "at least"), "<=": (operator.le, "at most"),
        "<": (operator.lt, "below")}


def check_number(value, name: str, *bounds: str) -> None:
    """Refuse ``value`` unless it is a finite number meeting every bound, written like ``">0"`` or ``"<=1"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FactoryError(f"{name} must be a finite number, got {value!r}")
    for bound in bounds:
        symbol = bound.rstrip("-.0123456789e")
        op, words = _OPS[symbol]
        limit = float(bound[len(symbol):])
        if not op(value, limit):
            raise FactoryError(f"{name} must be {words} {limit:g}, got {value!r}")


def check_fields(config, bounds: dict[str, tuple[str, ...]], optional: tuple[str, ...] = ()) -> None:
    """:func:`check_number` on each named field of ``config`` (those in ``optional`` may also be None)."""
    for field, limits in bounds.items():
        value = getattr(config, field)
        if value is None and field in optional:
            continue
        check_number(value, f"{type(config).__name__}.{field}", *limits)
