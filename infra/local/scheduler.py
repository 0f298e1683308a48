"""The local stand-in for EventBridge's scheduler.

moto stores rules but never fires them, so the local cloud keeps a clock per schedule of the spec and, when
it is due, invokes the target function asynchronously, as EventBridge does: with the scheduled event (or the
schedule's constant input). Tests call :meth:`LocalScheduler.tick` with a time of their choosing; the server
runs :meth:`LocalScheduler.run` against the wall clock. A clock that jumps over several firings fires once
(for the latest), the way a scheduler that was down does not replay what it missed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.schedule_expr import ScheduleExpression
from infra.spec import ScheduleSpec
from shared.observability import logger

Invoke = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Firing:
    schedule: str
    function: str
    time: datetime
    skipped: int
    payload: dict[str, Any]


@dataclass
class _Clock:
    spec: ScheduleSpec
    function_name: str
    rule_arn: str
    expression: ScheduleExpression
    anchor: datetime
    next_due: datetime


class LocalScheduler:
    def __init__(self, account: str, region: str, invoke: Invoke, start: datetime | None = None) -> None:
        self._account = account
        self._region = region
        self._invoke = invoke
        self._start = (start or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)
        self._clocks: list[_Clock] = []
        self._lock = threading.Lock()

    def add(self, schedule: ScheduleSpec, function_name: str, rule_arn: str) -> None:
        expression = ScheduleExpression.parse(schedule.expression)
        self._clocks.append(
            _Clock(
                spec=schedule,
                function_name=function_name,
                rule_arn=rule_arn,
                expression=expression,
                anchor=self._start,
                next_due=expression.next_after(self._start, self._start),
            )
        )

    def next_due(self, schedule: str) -> datetime:
        return next(c.next_due for c in self._clocks if c.spec.name == schedule)

    def tick(self, now: datetime | None = None) -> list[Firing]:
        """Fire every enabled schedule due at or before ``now``; return what fired."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        fired: list[Firing] = []
        with self._lock:
            for clock in self._clocks:
                if clock.next_due > now:
                    continue
                due, skipped = clock.next_due, 0
                following = clock.expression.next_after(due, clock.anchor)
                while following <= now:
                    due, skipped = following, skipped + 1
                    following = clock.expression.next_after(due, clock.anchor)
                clock.next_due = following
                if not clock.spec.enabled:
                    continue
                payload = self._payload(clock, due)
                fired.append(Firing(clock.spec.name, clock.function_name, due, skipped, payload))
        for firing in fired:
            logger.info(
                "schedule fired",
                extra={
                    "schedule": firing.schedule,
                    "function": firing.function,
                    "time": firing.time.isoformat(),
                    "missed": firing.skipped,
                },
            )
            self._invoke(firing.function, firing.payload)
        return fired

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Tick against the wall clock until ``stop`` is set (server mode)."""
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception:  # a failing target must not stop the other schedules
                logger.exception("scheduled invocation failed")

    def _payload(self, clock: _Clock, due: datetime) -> dict[str, Any]:
        if clock.spec.input is not None:
            return dict(json.loads(json.dumps(clock.spec.input)))  # a copy the target may not mutate
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self._account,
            "time": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._region,
            "resources": [clock.rule_arn],
            "detail": {},
        }
