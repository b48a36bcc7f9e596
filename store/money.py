"""Billing arithmetic, mirrored exactly by the generated columns of ``track_usage``.

Billing is per participant track: each track's audio seconds round *up* to whole minutes, and a
report's total is the sum of its rows' billed minutes and costs (never ``ceil`` of a summed
duration). Money is ``Decimal`` end to end; a float never touches it.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

__all__ = [
    "DEFAULT_COST_PER_MINUTE",
    "DEFAULT_CURRENCY",
    "SECONDS_QUANTUM",
    "billed_minutes",
    "quantize_seconds",
    "track_cost",
]

DEFAULT_COST_PER_MINUTE = Decimal("0.01")
DEFAULT_CURRENCY = "USD"
# track_usage stores seconds as NUMERIC(14, 3): millisecond resolution
SECONDS_QUANTUM = Decimal("0.001")
_SIXTY = Decimal(60)


def quantize_seconds(seconds: Decimal | int) -> Decimal:
    """Round to the stored resolution (milliseconds), half away from zero like PostgreSQL."""
    return Decimal(seconds).quantize(SECONDS_QUANTUM, rounding=ROUND_HALF_UP)


def billed_minutes(seconds: Decimal | int) -> int:
    """``ceil(seconds / 60)`` on the stored (millisecond) value: 0 -> 0, 60 -> 1, 60.001 -> 2."""
    if seconds < 0:
        raise ValueError("seconds must not be negative")
    return int((quantize_seconds(seconds) / _SIXTY).to_integral_value(rounding=ROUND_CEILING))


def track_cost(seconds: Decimal | int, cost_per_minute: Decimal) -> Decimal:
    """``billed_minutes(seconds) x cost_per_minute``, exact."""
    if cost_per_minute < 0:
        raise ValueError("cost_per_minute must not be negative")
    return billed_minutes(seconds) * cost_per_minute
