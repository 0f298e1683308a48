"""EventBridge schedule expressions: ``rate(5 minutes)`` and ``cron(0 3 * * ? *)``.

The spec validates expressions with this module before anything is deployed, and the local scheduler
uses it to decide when a schedule is due. Cron follows EventBridge's six fields (minutes, hours,
day-of-month, month, day-of-week with 1 = Sunday, year), with ``* , - /`` and ``?``; the ``L``, ``W`` and
``#`` forms are refused with a message rather than evaluated wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
# (name, low, high, names) for the six fields, in order.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)
_SEARCH_DAYS = 366 * 5


class ScheduleExpressionError(ValueError):
    """The expression is not one EventBridge (or the local scheduler) accepts; the message says why."""


@dataclass(frozen=True)
class ScheduleExpression:
    text: str
    period: timedelta | None = None
    fields: tuple[frozenset[int] | None, ...] = ()  # None: '?' (no constraint from this field)

    @classmethod
    def parse(cls, text: str) -> ScheduleExpression:
        rate = _RATE.match(text)
        if rate:
            value, unit = int(rate.group(1)), rate.group(2)
            if value < 1:
                raise ScheduleExpressionError(f"{text!r}: a rate must be at least 1")
            if (value == 1) != (not unit.endswith("s")):
                raise ScheduleExpressionError(
                    f"{text!r}: EventBridge wants the singular unit for 1 and the plural otherwise"
                )
            return cls(text=text, period=timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")]))
        cron = _CRON.match(text)
        if not cron:
            raise ScheduleExpressionError(f"{text!r}: expected 'rate(N unit)' or 'cron(6 fields)'")
        parts = cron.group(1).split()
        if len(parts) != 6:
            raise ScheduleExpressionError(
                f"{text!r}: cron needs 6 fields (min hour dom month dow year), got {len(parts)}"
            )
        fields = tuple(_parse_field(text, part, *spec) for part, spec in zip(parts, _FIELDS, strict=True))
        if (fields[2] is None) == (fields[4] is None):
            raise ScheduleExpressionError(
                f"{text!r}: exactly one of day-of-month and day-of-week must be '?'"
            )
        return cls(text=text, fields=fields)

    def next_after(self, after: datetime, anchor: datetime) -> datetime:
        """The first firing strictly after ``after``. Rates count from ``anchor`` (when the rule was made)."""
        after = after.astimezone(UTC)
        if self.period is not None:
            anchor = anchor.astimezone(UTC)
            if after < anchor:
                return anchor + self.period
            elapsed = (after - anchor) // self.period
            return anchor + (elapsed + 1) * self.period
        return self._next_cron(after)

    def _next_cron(self, after: datetime) -> datetime:
        minutes, hours, dom, months, dow, years = self.fields
        start = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if _day_matches(day, dom, months, dow, years):
                for hour in sorted(hours or ()):
                    for minute in sorted(minutes or ()):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ScheduleExpressionError(
            f"{self.text!r} does not fire within {_SEARCH_DAYS} days of {after.isoformat()}"
        )


def _day_matches(
    day: datetime,
    dom: frozenset[int] | None,
    months: frozenset[int] | None,
    dow: frozenset[int] | None,
    years: frozenset[int] | None,
) -> bool:
    weekday = (day.isoweekday() % 7) + 1  # EventBridge: 1 = Sunday ... 7 = Saturday
    return (
        (months is None or day.month in months)
        and (years is None or day.year in years)
        and (dom is None or day.day in dom)
        and (dow is None or weekday in dow)
    )


def _parse_field(
    text: str, part: str, name: str, low: int, high: int, names: dict[str, int]
) -> frozenset[int] | None:
    if part == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise ScheduleExpressionError(f"{text!r}: '?' is only allowed in day-of-month or day-of-week")
        return None
    if any(c in part for c in "LW#"):
        raise ScheduleExpressionError(
            f"{text!r}: the {name} form {part!r} (L, W or #) is not supported; use explicit values"
        )
    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = _number(text, step_text, name, {}) if step_text else 1
        if step < 1:
            raise ScheduleExpressionError(f"{text!r}: step in {name} must be at least 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(text, a, name, names), _number(text, b, name, names)
        else:
            first = _number(text, base, name, names)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise ScheduleExpressionError(f"{text!r}: {name} value {item!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _number(text: str, token: str, name: str, names: dict[str, int]) -> int:
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ScheduleExpressionError(f"{text!r}: {token!r} is not a valid {name} value")
    return int(token)
