"""The local cloud runs a spec the way AWS would: state machines, notifications, schedules, HTTP routes.

Every test runs twice: inside moto's in-process mock, and against moto's server through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

import pytest

from infra.local import LocalCloud

pytestmark = pytest.mark.integration


def run(cloud: LocalCloud, **payload: Any) -> dict[str, Any]:
    arn = cloud.start_execution(payload, name=f"t-{uuid.uuid4().hex[:12]}")
    described = cloud.wait_for_execution(arn, timeout_s=60)
    described["history"] = cloud.history(arn)
    return described


def event_types(described: dict[str, Any]) -> list[str]:
    return [e["type"] for e in described["history"]]


def events_table(cloud: LocalCloud) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cloud.client("dynamodb").scan(TableName=cloud.names.tables["events"])[
        "Items"
    ]
    return items


def test_choice_routes_to_a_task_whose_context_looks_like_lambdas(platform: LocalCloud) -> None:
    described = run(platform, mode="echo", n=1)

    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["n"] == 1
    assert output["function"] == "plat-local-echo"
    assert output["memory_mb"] == 256
    assert 0 < output["remaining_ms"] <= 5000
    uuid.UUID(output["request_id"])
    assert "ChoiceStateEntered" in event_types(described)


def test_a_named_exception_is_retried_and_the_second_attempt_succeeds(platform: LocalCloud) -> None:
    key = uuid.uuid4().hex
    described = run(platform, mode="retry", key=key)

    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["attempts"] == 2
    failed = [e for e in described["history"] if e["type"] == "LambdaFunctionFailed"]
    assert [e["lambdaFunctionFailedEventDetails"]["error"] for e in failed] == ["TransientError"]
    assert event_types(described).count("LambdaFunctionScheduled") == 2


def test_an_error_not_retried_is_caught_and_ends_in_the_failure_state(platform: LocalCloud) -> None:
    described = run(platform, mode="fail")

    assert described["status"] == "FAILED"
    assert described["error"] == "PipelineFailed"
    failed = [e for e in described["history"] if e["type"] == "LambdaFunctionFailed"]
    assert len(failed) == 1  # Retry names TransientError only: BrokenInputError is not retried
    details = failed[0]["lambdaFunctionFailedEventDetails"]
    assert details["error"] == "BrokenInputError"
    cause = json.loads(details["cause"])
    assert cause["errorMessage"] == "cannot handle 'fail'"
    assert any("broken" in line for line in cause["stackTrace"])
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in described["history"] if "stateEnteredEventDetails" in e
    ]
    assert entered[-2:] == ["RecordFailure", "Failed"]


def test_a_function_past_its_timeout_fails_as_sandbox_timedout(platform: LocalCloud) -> None:
    described = run(platform, mode="slow", seconds=3)

    assert described["status"] == "FAILED"
    assert described["error"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in described["cause"]


def test_a_task_past_its_state_timeout_fails_as_states_timeout(platform: LocalCloud) -> None:
    described = run(platform, mode="late", seconds=3)

    assert described["status"] == "FAILED"
    assert described["error"] == "States.Timeout"


def test_a_put_under_a_notified_prefix_invokes_the_function_once_with_an_aws_shaped_event(
    platform: LocalCloud,
) -> None:
    s3 = platform.client("s3")
    bucket = platform.names.buckets["data"]
    name = f"incoming/{uuid.uuid4().hex[:6]} new+file.csv"
    before = {i["sk"]["S"] for i in events_table(platform) if i["pk"]["S"] == "upload"}

    put = s3.put_object(Bucket=bucket, Key=name, Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key=f"other/{uuid.uuid4().hex}.csv", Body=b"a\n")

    uploads = [i for i in events_table(platform) if i["pk"]["S"] == "upload" and i["sk"]["S"] not in before]
    assert len(uploads) == 1
    # AWS encodes keys like a form value and keeps '/': Powertools parsed the event and kept that encoding.
    assert uploads[0]["key"]["S"] == name.replace("+", "%2B").replace(" ", "+")
    assert uploads[0]["version_id"]["S"] == put["VersionId"]


def test_schedules_fire_on_tick_with_the_scheduled_event_or_their_constant_input(
    platform: LocalCloud,
) -> None:
    due = platform.scheduler.next_due("nightly")

    early = platform.scheduler.tick(due - timedelta(seconds=1))
    fired = platform.scheduler.tick(due)

    assert [f.schedule for f in early if f.schedule == "nightly"] == []
    nightly = next(f for f in fired if f.schedule == "nightly")
    assert nightly.payload["detail-type"] == "Scheduled Event"
    assert nightly.payload["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/plat-local-nightly"]
    recorded = {i["sk"]["S"] for i in events_table(platform) if i["pk"]["S"] == "schedule"}
    assert nightly.payload["time"] in recorded
    rate = next(f for f in early + fired if f.schedule == "every-5-min")
    assert rate.payload == {"fired": "rate"}
    assert platform.scheduler.next_due("nightly") == due + timedelta(days=1)


def test_an_http_route_answers_through_the_gateway(platform: LocalCloud) -> None:
    assert platform.gateway is not None
    base = platform.gateway.url

    with urllib.request.urlopen(f"{base}/hello/world?lang=en&lang=fr") as response:
        body = json.loads(response.read())
    request = urllib.request.Request(
        f"{base}/echo", data=b'{"x": [1, 2]}', method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        echoed = json.loads(response.read())

    assert body == {"hello": "world", "query": {"lang": "en,fr"}, "route": "GET /hello/{name}"}
    assert echoed == {"body": {"x": [1, 2]}}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/nowhere")
    assert missing.value.code == 404
    assert json.loads(missing.value.read()) == {"message": "Not Found"}


def test_functions_hold_the_least_privilege_policy_from_the_spec(platform: LocalCloud) -> None:
    iam = platform.client("iam")
    document = iam.get_role_policy(
        RoleName="plat-local-on-upload-role", PolicyName="plat-local-on-upload-role-policy"
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    resources = {s["Resource"] for s in document["Statement"]}
    assert "arn:aws:s3:::plat-local-data/incoming/*" in resources
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/plat-local-events" in resources
