"""The stack spec refuses contradictions at construction, naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.spec import (
    BucketRef,
    BucketSpec,
    FunctionArns,
    FunctionSpec,
    Key,
    LifecycleRule,
    Notification,
    Permission,
    RouteSpec,
    ScheduleSpec,
    SpecError,
    StackSpec,
    StateMachineSpec,
    TableRef,
    TableSpec,
    with_overrides,
)
from tests.fixtures.stack import platform_stack

pytestmark = pytest.mark.unit

ECHO = FunctionSpec(name="echo", handler="tests.fixtures.functions.echo")


def stack(**parts: Any) -> StackSpec:
    return StackSpec(project="t", **{"functions": (ECHO,), **parts})


def test_the_platform_and_flywheel_stacks_are_valid() -> None:
    assert platform_stack().function("on-upload").reserved_concurrency == 2
    assert {t.name for t in flywheel_stack(StackConfig(environment="dev")).tables} == {
        "registry",
        "metadata",
        "idempotency",
        "features",
    }


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            {
                "buckets": (
                    BucketSpec(name="data", notifications=(Notification(prefix="in/", function="ghost"),)),
                )
            },
            "bucket 'data' notification on 'in/' names function 'ghost'",
        ),
        (
            {"schedules": (ScheduleSpec(name="nightly", expression="rate(1 day)", function="ghost"),)},
            "schedule 'nightly' names function 'ghost'",
        ),
        (
            {"routes": (RouteSpec(method="GET", path="/x", function="ghost"),)},
            "route 'GET /x' names function 'ghost'",
        ),
        (
            {
                "state_machine": StateMachineSpec(
                    name="p",
                    definition=lambda arns: {
                        "StartAt": "A",
                        "States": {"A": {"Type": "Task", "Resource": arns["ghost"], "End": True}},
                    },
                )
            },
            "the state machine refers to function 'ghost'",
        ),
    ],
)
def test_a_reference_to_an_undeclared_function_is_refused_with_its_name(
    parts: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        stack(**parts)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(SpecError, match="duplicate function name"):
        stack(functions=(ECHO, ECHO))
    with pytest.raises(SpecError, match=r"duplicate bucket name.*data"):
        stack(buckets=(BucketSpec(name="data"), BucketSpec(name="data")))
    with pytest.raises(SpecError, match=r"duplicate route name.*GET /x"):
        stack(routes=(RouteSpec(method="GET", path="/x", function="echo"),) * 2)


@pytest.mark.parametrize("action", ["*", "s3:*", "s3:Get*", "dynamodb:*Item", "GetObject"])
def test_wildcard_or_unnamed_actions_are_refused(action: str) -> None:
    with pytest.raises(ValidationError, match="without wildcards"):
        Permission(actions=(action,), resource=BucketRef(bucket="data"))


def test_permissions_must_point_at_declared_resources() -> None:
    bucket_read = Permission(actions=("s3:GetObject",), resource=BucketRef(bucket="nowhere", objects="x/*"))
    with pytest.raises(SpecError, match="names bucket 'nowhere'"):
        stack(functions=(ECHO.model_copy(update={"permissions": (bucket_read,)}),))
    table = TableSpec(name="registry", partition_key=Key(name="pk"))
    by_index = Permission(actions=("dynamodb:Query",), resource=TableRef(table="registry", index="gsi9"))
    with pytest.raises(SpecError, match="index 'gsi9' of table 'registry'"):
        stack(tables=(table,), functions=(ECHO.model_copy(update={"permissions": (by_index,)}),))


def test_resource_patterns_cannot_be_empty_or_rooted() -> None:
    with pytest.raises(ValidationError, match="key prefix"):
        BucketRef(bucket="data", objects="")


def test_handlers_schedules_and_lifecycles_are_checked_where_declared() -> None:
    with pytest.raises(ValidationError, match="dotted path"):
        FunctionSpec(name="x", handler="handler")
    with pytest.raises(ValidationError, match="cron needs 6 fields"):
        ScheduleSpec(name="s", expression="cron(0 3 * * *)", function="echo")
    with pytest.raises(ValidationError, match=r"expiry .* must come after"):
        LifecycleRule(prefix="captures/", infrequent_access_days=30, expire_days=10)
    with pytest.raises(ValidationError, match="overlap"):
        BucketSpec(
            name="data",
            notifications=(
                Notification(prefix="in/", function="a"),
                Notification(prefix="in/x/", function="b"),
            ),
        )


def test_one_environment_variable_cannot_name_two_resources() -> None:
    from shared.env_names import EnvVar

    with pytest.raises(SpecError, match="FLYWHEEL_DATA_BUCKET"):
        stack(
            buckets=(
                BucketSpec(name="a", env_var=EnvVar.DATA_BUCKET),
                BucketSpec(name="b", env_var=EnvVar.DATA_BUCKET),
            )
        )


def test_overrides_resize_functions_and_refuse_unknown_names() -> None:
    spec = platform_stack()
    resized = with_overrides(spec, {"echo": 2048}, {"echo": 60}, {"nightly": "cron(30 1 * * ? *)"})
    assert resized.function("echo").memory_mb == 2048
    assert resized.function("echo").timeout_s == 60
    assert next(s for s in resized.schedules if s.name == "nightly").expression == "cron(30 1 * * ? *)"
    with pytest.raises(SpecError, match=r"sizes function\(s\) \['ehco'\]"):
        with_overrides(spec, {"ehco": 2048}, {}, {})
    with pytest.raises(SpecError, match=r"sets schedule\(s\) \['weekly'\]"):
        with_overrides(spec, {}, {}, {"weekly": "rate(7 days)"})


def test_overrides_reserve_concurrency_for_named_functions_only() -> None:
    spec = platform_stack()
    reserved = with_overrides(spec, {}, {}, {}, {"echo": 7})
    assert reserved.function("echo").reserved_concurrency == 7
    assert reserved.function("flaky").reserved_concurrency == spec.function("flaky").reserved_concurrency
    with pytest.raises(SpecError, match=r"\['predcit'\]"):
        with_overrides(spec, {}, {}, {}, {"predcit": 7})


def test_the_state_machine_builder_sees_only_declared_arns() -> None:
    arns = FunctionArns({"echo": "arn:echo"})
    assert arns["echo"] == "arn:echo"
    assert arns.used == {"echo"}
    with pytest.raises(SpecError, match="declared: \\['echo'\\]"):
        arns["other"]
