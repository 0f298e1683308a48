"""Batch scoring in Flywheel's stack under the mocks: the scoring state machine is a Distributed Map over
the job's prefix whose role can do exactly what a Distributed Map needs, and the three scoring functions
read the inputs and the registry's artifacts and write under scores/ only, deleting nothing.

Expected values are written out here, not read back from the spec under test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.preflight.asl import VALIDATOR, validate_definition
from tests.infra.harness import Deployment, T, document

pytestmark = pytest.mark.infra

SCORING = ("score-start", "score", "score-finish")
DELETES = {"s3:DeleteObject", "s3:DeleteObjectVersion", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}


def scoring_definition(deployed: Deployment) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(deployed.one(T.STATE_MACHINE, "scoring").inputs["definition"])
    return parsed


def arn_of(deployed: Deployment, type_token: str, name: str) -> str:
    arn: str = deployed.one(type_token, name).outputs["arn"]
    return arn


def grants(deployed: Deployment, function: str) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for statement in document(deployed.one(T.ROLE_POLICY, function, T.FUNCTIONS))["Statement"]:
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            pairs.update((action, resource) for action in statement["Action"])
    return {g for g in pairs if not g[0].startswith(("logs:", "xray:"))}


def test_scoring_is_a_distributed_map_over_the_jobs_prefix_then_the_manifest(
    flywheel_dev: Deployment,
) -> None:
    """Given a job's input names its bucket and prefix
    When the program runs
    Then the scoring machine lists that prefix with the S3 ItemReader, runs each object as a STANDARD
    child execution of the score function, turns a child's failure into that file's outcome, and ends
    with score-finish over the jobs's results."""
    states = scoring_definition(flywheel_dev)["States"]
    score_map = states["ScoreFiles"]
    assert score_map["Type"] == "Map"
    assert score_map["ItemReader"] == {
        "Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket.$": "$.job.bucket", "Prefix.$": "$.job.prefix"},
    }
    assert score_map["ItemSelector"]["key.$"] == "$$.Map.Item.Value.Key"
    processor = score_map["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    task = processor["States"][processor["StartAt"]]
    assert task["Resource"] == arn_of(flywheel_dev, T.FUNCTION, "score")
    (catch,) = task["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    lost = processor["States"][catch["Next"]]
    assert lost["Type"] == "Pass" and lost.get("End") is True
    assert score_map["Next"] == "Finish"
    assert states["Finish"]["Resource"] == arn_of(flywheel_dev, T.FUNCTION, "score-finish")
    assert states["Finish"]["Parameters"] == {"job.$": "$.job", "items.$": "$.items"}


@pytest.mark.skipif(not VALIDATOR.exists(), reason="asl-validator is not installed (make lint installs it)")
def test_the_scoring_definition_passes_the_asl_validator(flywheel_dev: Deployment) -> None:
    text = flywheel_dev.one(T.STATE_MACHINE, "scoring").inputs["definition"]
    assert validate_definition(text, "scoring") == []


def test_the_scoring_role_can_do_exactly_what_its_distributed_map_needs(flywheel_dev: Deployment) -> None:
    """The role invokes score and score-finish (any version), lists the data bucket for the ItemReader,
    starts its own machine's executions and describes and stops its own map-run children; nothing else
    but tracing and log delivery."""
    machine = arn_of(flywheel_dev, T.STATE_MACHINE, "scoring")
    name = machine.rsplit(":", 1)[-1]
    account_region = machine.split(":stateMachine:")[0]
    functions = {arn_of(flywheel_dev, T.FUNCTION, f) for f in ("score", "score-finish")}
    data = arn_of(flywheel_dev, T.BUCKET, "data")
    statements = document(flywheel_dev.one(T.ROLE_POLICY, "scoring", T.PIPELINE))["Statement"]
    granted = {
        (action, resource)
        for s in statements
        for action in s["Action"]
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        if not action.startswith(("xray:", "logs:"))
    }
    assert granted == {
        *{("lambda:InvokeFunction", f) for f in functions},
        *{("lambda:InvokeFunction", f"{f}:*") for f in functions},
        ("s3:ListBucket", data),
        ("states:StartExecution", machine),
        ("states:DescribeExecution", f"{account_region}:execution:{name}/*:*"),
        ("states:StopExecution", f"{account_region}:execution:{name}/*:*"),
    }
    role = flywheel_dev.one(T.ROLE, "scoring", T.PIPELINE)
    assert document(role, "assumeRolePolicy")["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"
    }
    assert flywheel_dev.one(T.STATE_MACHINE, "scoring").inputs["roleArn"] == role.outputs["arn"]


def test_the_scoring_functions_write_under_scores_only_and_delete_nothing(flywheel_dev: Deployment) -> None:
    data = arn_of(flywheel_dev, T.BUCKET, "data")
    artifacts = arn_of(flywheel_dev, T.BUCKET, "artifacts")
    puts = {name: {r for a, r in grants(flywheel_dev, name) if a == "s3:PutObject"} for name in SCORING}
    assert puts == {
        "score-start": {f"{data}/scores/*/refused/*"},
        "score": {f"{data}/scores/*"},
        "score-finish": {f"{data}/scores/*"},
    }
    for name in SCORING:
        assert not {a for a, _ in grants(flywheel_dev, name)} & DELETES, name
    reads = {r for a, r in grants(flywheel_dev, "score") if a == "s3:GetObject"}
    assert reads == {f"{data}/score-inputs/*", f"{data}/scores/*", f"{artifacts}/models/*"}
    # score-start reads the request files only, never the inputs it hands the map.
    assert {r for a, r in grants(flywheel_dev, "score-start") if a == "s3:GetObject"} == {
        f"{data}/score-requests/*"
    }
