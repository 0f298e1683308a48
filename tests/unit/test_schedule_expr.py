"""EventBridge schedule expressions: what the spec accepts and when the local scheduler fires them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from infra.schedule_expr import ScheduleExpression, ScheduleExpressionError

pytestmark = pytest.mark.unit
T0 = datetime(2026, 11, 27, 10, 7, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("rate(5 minutes)", T0, T0 + timedelta(minutes=5)),
        ("rate(5 minutes)", T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)),
        ("rate(1 hour)", T0 + timedelta(minutes=59), T0 + timedelta(hours=1)),
        ("rate(2 days)", T0, T0 + timedelta(days=2)),
        ("cron(0 3 * * ? *)", T0, datetime(2026, 11, 28, 3, 0, tzinfo=UTC)),
        ("cron(15,45 * * * ? *)", T0, datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
        ("cron(0/20 8-9 * * ? *)", T0, datetime(2026, 11, 28, 8, 0, tzinfo=UTC)),
        ("cron(0 9 ? * MON-FRI *)", T0, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # Friday 10:07 -> Monday
        ("cron(0 0 1 JAN ? *)", T0, datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("cron(0 12 ? * 1 2027)", T0, datetime(2027, 1, 3, 12, 0, tzinfo=UTC)),  # 1 = Sunday
    ],
)
def test_next_firing(expression: str, after: datetime, expected: datetime) -> None:
    assert ScheduleExpression.parse(expression).next_after(after, anchor=T0) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("every 5 minutes", "expected 'rate"),
        ("rate(1 minutes)", "singular"),
        ("rate(5 minute)", "singular"),
        ("rate(0 minutes)", "at least 1"),
        ("cron(0 3 * * *)", "6 fields"),
        ("cron(0 3 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 3 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(61 3 * * ? *)", "outside 0-59"),
        ("cron(0 3 L * ? *)", "not supported"),
        ("cron(0 3 * FOO ? *)", "not a valid month"),
        ("cron(? 3 * * ? *)", "only allowed in day-of-month"),
    ],
)
def test_invalid_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=message):
        ScheduleExpression.parse(expression)


def test_a_cron_that_can_never_fire_is_reported() -> None:
    with pytest.raises(ScheduleExpressionError, match="does not fire"):
        ScheduleExpression.parse("cron(0 0 31 2 ? *)").next_after(T0, T0)
