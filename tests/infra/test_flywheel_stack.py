"""Flywheel's own stack under the mocks: its functions (the pipeline's, ``predict`` for serving, ``labels``
and ``monitor`` for monitoring; ``verify``, ``approval`` and ``post-deploy-check`` deliver), their
least-privilege roles, what invokes the trigger (the data bucket's
incoming/ uploads, the retrain schedule, the monitor) and the monitoring functions (labels/ uploads, the
monitor schedule), the HTTP API's routes to ``predict``, and the pipeline state machine.

The platform tests prove the program maps any spec faithfully; these prove Flywheel's spec says what a
reviewer expects of it. Expected values are written out here, not read back from the spec under test.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from infra.config import StackConfig
from infra.flywheel import DEFAULT_MONITOR_SCHEDULE, DEFAULT_RETRAIN_SCHEDULE, flywheel_stack
from infra.policies import function_policy
from infra.spec import SpecError
from tests.infra.harness import ACCOUNT, Deployment, T, document, run_program

pytestmark = pytest.mark.infra

STACKS = ["flywheel_dev", "flywheel_prod"]

# name: (handler module folder, memory MB, timeout s), as infra/flywheel.py declares them.
FUNCTIONS: dict[str, tuple[str, int, int]] = {
    "trigger": ("trigger", 256, 60),
    "validate": ("validate", 2048, 300),
    "compute": ("compute", 512, 60),
    "train": ("train", 3008, 900),
    "experiment": ("experiment", 1024, 120),
    "trial": ("trial", 3008, 900),
    "evaluate": ("evaluate", 2048, 300),
    "register": ("register", 512, 60),
    "promote": ("promote", 256, 60),
    "verify": ("verify", 2048, 300),
    "approval": ("approval", 256, 30),
    "post-deploy-check": ("post_deploy_check", 512, 120),
    "finish": ("finish", 256, 30),
    "record-failure": ("record_failure", 256, 30),
    "predict": ("predict", 1024, 15),
    "labels": ("labels", 1024, 120),
    "monitor": ("monitor", 2048, 900),
    "features": ("features", 2048, 300),
    "score-start": ("score_start", 256, 60),
    "score": ("score", 2048, 900),
    "score-finish": ("score_finish", 512, 300),
}
SERVING = {"predict"}
# Continuous delivery: prove a version through predict, wait for a person, ask the live route after promotion.
DELIVERY = {"verify", "approval", "post-deploy-check"}
# Outside the pipeline: label files in, the monitor's reports, feedback data and retraining requests out.
MONITORING = {"labels", "monitor"}
# Outside the pipeline: feature files in, the offline store and the online table out.
FEATURE_STORE = {"features"}
# Batch scoring, with its own state machine: start a job, score one file, write the manifest.
SCORING = {"score-start", "score", "score-finish"}
# The API's routes, as infra/flywheel.py declares them: route key -> authorised (IAM on dev and prod).
ROUTES = {
    "POST /models/{model}/predict": True,
    "GET /models/{model}": True,
    "GET /health": False,
    "GET /openapi.json": False,
}

S3_WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:RestoreObject"}
TABLE_WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
TABLE_READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}
# What a function that records in the registry or the metadata table may do there: read, add and change,
# each write conditional in the code; never remove (an alias is removed by a tombstone).
TABLE_APPENDS = TABLE_READS | {"dynamodb:PutItem", "dynamodb:UpdateItem"}
# The files of a run (models/<model>/<run id>/<name>) Train writes; Evaluate writes evaluation.json.
TRAIN_FILES = ("model.pkl", "holdout.parquet", "profile.json", "model.onnx", "code.zip")
# Every object each function may put, as (bucket, key pattern): exactly the keys its step writes. Functions
# not named here put no object at all.
S3_PUTS: dict[str, set[tuple[str, str]]] = {
    # The state a step task starts from; the task writes its output with its own role.
    "compute": {("artifacts", "tasks/*/*/*/input.json")},
    "trigger": {("data", "quarantine/*")},
    "validate": {("data", "datasets/*"), ("data", "quarantine/*")},
    "train": {("artifacts", f"models/*/*/{name}") for name in TRAIN_FILES},
    "evaluate": {("artifacts", "models/*/*/evaluation.json")},
    "labels": {("data", "labels-accepted/*"), ("data", "quarantine/*/labels/*")},
    "monitor": {("data", "datasets/*/feedback/*"), ("artifacts", "reports/*")},
    "features": {("data", "features/*"), ("data", "quarantine/_feature-sources/*")},
    # Batch scoring writes under scores/ only: predictions, outcomes and manifests; refused requests.
    "score-start": {("data", "scores/*/refused/*")},
    "score": {("data", "scores/*")},
    "score-finish": {("data", "scores/*")},
}

# The pipeline's states as the README and infra/pipeline.py document them.
DOCUMENTED_STATES = {
    "HasNewFile",
    "Validate",
    "Train",
    "Evaluate",
    "Gate",
    "Register",
    "RegisterRejected",
    "Verify",
    "Verified",
    "Policy",
    "StageCandidate",
    "AwaitApproval",
    "Declined",
    "Promote",
    "Promoted",
    "PostDeployCheck",
    "Finish",
    "RecordFailure",
    "Failed",
    # Validate and Train are placed first: their function, or a Fargate task and the state read back.
    "PlanValidate",
    "ValidateEngine",
    "ValidateOnFargate",
    "CollectValidate",
    "PlanTrain",
    "TrainEngine",
    "TrainOnFargate",
    "CollectTrain",
    # An experiment run's search: ask a batch, fan it out, ask again until the budget is spent.
    "Experiment",
    "MoreTrials",
    "Trials",
    "TrialsFailed",
}
# Task state -> the function it invokes (and the step name a failure is recorded under).
TASKS = {
    "PlanValidate": "compute",
    "CollectValidate": "compute",
    "PlanTrain": "compute",
    "CollectTrain": "compute",
    "Validate": "validate",
    "Experiment": "experiment",
    "Train": "train",
    "Evaluate": "evaluate",
    "Register": "register",
    "RegisterRejected": "register",
    "Verify": "verify",
    "StageCandidate": "promote",
    "Declined": "approval",
    "Promote": "promote",
    "PostDeployCheck": "post-deploy-check",
    "Finish": "finish",
    "RecordFailure": "record-failure",
}
# The one task that waits: Step Functions invokes the approval function with a task token, then waits for
# SendTaskSuccess/SendTaskFailure (flywheel approve/reject) or the timeout.
WAITING_TASK = "AwaitApproval"
WAIT_FOR_TOKEN = "arn:aws:states:::lambda:invoke.waitForTaskToken"
# The container tasks: Step Functions runs them in ECS and waits until they stop.
RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
CONTAINER_TASKS = {"ValidateOnFargate": "validate", "TrainOnFargate": "train"}
LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
# Never retried: the same input fails the same way. A catch-all in a Retry would retry them too.
NEVER_RETRIED = {"DataValidationError", "ContractError", "IntegrityError", "States.ALL", "States.TaskFailed"}


# --- helpers ---------------------------------------------------------------------------------------------


def grants(deployed: Deployment, function: str) -> set[tuple[str, str]]:
    """Every (action, resource) pair the function's role policy allows."""
    pairs: set[tuple[str, str]] = set()
    for statement in document(deployed.one(T.ROLE_POLICY, function, T.FUNCTIONS))["Statement"]:
        assert statement["Effect"] == "Allow", statement
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            pairs.update((action, resource) for action in statement["Action"])
    return pairs


def bucket_arn(deployed: Deployment, bucket: str) -> str:
    arn: str = deployed.one(T.BUCKET, bucket).outputs["arn"]
    return arn


def table_arn(deployed: Deployment, table: str) -> str:
    arn: str = deployed.one(T.TABLE, table).outputs["arn"]
    return arn


def function_arn(deployed: Deployment, function: str) -> str:
    arn: str = deployed.one(T.FUNCTION, function).outputs["arn"]
    return arn


def state_machine_arn(deployed: Deployment, name: str = "pipeline") -> str:
    arn: str = deployed.one(T.STATE_MACHINE, name).outputs["arn"]
    return arn


def on_bucket(resource: str, arn: str) -> bool:
    """The bucket itself or any of its objects."""
    return resource == arn or resource.startswith(f"{arn}/")


def on_table(resource: str, arn: str) -> bool:
    """The table itself or any of its indexes."""
    return resource == arn or resource.startswith(f"{arn}/")


def definition(deployed: Deployment) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(deployed.one(T.STATE_MACHINE, "pipeline").inputs["definition"])
    return parsed


@pytest.fixture(scope="module")
def flywheel_daily() -> Deployment:
    """Flywheel on dev with the retrain schedule overridden in the stack config."""
    return run_program(flywheel_stack, "dev", {"flywheel:schedules": {"retrain": "rate(1 day)"}})


# --- functions -------------------------------------------------------------------------------------------


def test_the_stack_declares_exactly_the_pipeline_functions_and_predict(flywheel_dev: Deployment) -> None:
    assert {f.name for f in flywheel_dev.all(T.FUNCTION)} == set(FUNCTIONS)
    assert {r.name for r in flywheel_dev.all(T.ROLE, T.FUNCTIONS)} == set(FUNCTIONS)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_runs_the_image_with_its_handler_and_sizes(
    request: pytest.FixtureRequest, stack: str, name: str
) -> None:
    """Given a function of Flywheel's spec
    When the program runs for dev or prod
    Then it is an Image function of the one pushed image, its command is
    functions.<module>.handler.handler (a module that exists in this checkout), with the memory and
    timeout the spec gives it, its own role, and X-Ray on."""
    deployed: Deployment = request.getfixturevalue(stack)
    module, memory, timeout = FUNCTIONS[name]
    function = deployed.one(T.FUNCTION, name).inputs
    assert function["name"] == f"flywheel-{deployed.stack}-{name}"
    assert function["packageType"] == "Image"
    # By digest: Lambda refuses docker-build's `ref` (`repository:tag@sha256:…`).
    repository_url = deployed.one(T.REPOSITORY, "functions").outputs["repositoryUrl"]
    assert function["imageUri"] == f"{repository_url}@{deployed.one(T.IMAGE, 'functions').outputs['digest']}"
    assert function["imageConfig"] == {"commands": [f"functions.{module}.handler.handler"]}
    assert importlib.util.find_spec(f"functions.{module}.handler") is not None
    assert function["memorySize"] == memory
    assert function["timeout"] == timeout
    assert function["tracingConfig"] == {"mode": "Active"}
    assert function["role"] == deployed.one(T.ROLE, name, T.FUNCTIONS).outputs["arn"]


def test_every_function_is_told_the_trigger_function_and_the_state_machine(flywheel_dev: Deployment) -> None:
    """Given the trigger, predict, verify and monitor functions and the state machine are bound to
    environment variables, and Pulumi.dev.yaml sets the automatic promotion policy
    When the program runs
    Then every function receives the same environment, naming the deployed trigger, predict (what verify
    and the post-deploy check call), verify (what `flywheel verify` calls), the monitor and the state
    machine, and carrying dev's promotion policy."""
    environments = [f.inputs["environment"]["variables"] for f in flywheel_dev.all(T.FUNCTION)]
    assert len(environments) == len(FUNCTIONS)
    for variables in environments:
        assert variables == environments[0]
        assert variables["FLYWHEEL_TRIGGER_FUNCTION"] == "flywheel-dev-trigger"
        assert variables["FLYWHEEL_PREDICT_FUNCTION"] == "flywheel-dev-predict"
        assert variables["FLYWHEEL_VERIFY_FUNCTION"] == "flywheel-dev-verify"
        assert variables["FLYWHEEL_MONITOR_FUNCTION"] == "flywheel-dev-monitor"
        assert variables["FLYWHEEL_STATE_MACHINE_ARN"] == state_machine_arn(flywheel_dev)
        assert variables["FLYWHEEL_SCORING_STATE_MACHINE_ARN"] == state_machine_arn(flywheel_dev, "scoring")
        assert variables["FLYWHEEL_SCORE_START_FUNCTION"] == "flywheel-dev-score-start"
        assert json.loads(variables["FLYWHEEL_PROMOTION_POLICY"]) == {
            "policy": "auto",
            "min_staging_successes": 0,
            "approval_timeout_hours": 24.0,
        }
    assert flywheel_dev.outputs["environment"] == environments[0]


# --- least privilege -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_role_allows_exactly_the_spec_permissions(
    request: pytest.FixtureRequest, stack: str, name: str
) -> None:
    """Given Flywheel's spec built here for the stack's own config
    When the program runs
    Then the function's role, trusted by Lambda alone, has one inline policy equal to
    infra.policies.function_policy of that spec over the deployed names."""
    deployed: Deployment = request.getfixturevalue(stack)
    spec = flywheel_stack(StackConfig.from_stack_file(deployed.stack))
    role = deployed.one(T.ROLE, name, T.FUNCTIONS)
    assert document(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert [p.name for p in deployed.all(T.ROLE_POLICY, T.FUNCTIONS) if p.inputs["role"] == role.id] == [name]
    assert document(deployed.one(T.ROLE_POLICY, name, T.FUNCTIONS)) == function_policy(
        spec.function(name), deployed.names()
    )


def test_no_policy_uses_a_wildcard_action_or_a_whole_bucket_of_objects(flywheel_dev: Deployment) -> None:
    """No action is a wildcard (s3:*, dynamodb:*, *); "*" as a resource only for X-Ray's two actions;
    every object grant is under a named prefix, never a bucket's every object."""
    buckets = [bucket_arn(flywheel_dev, b) for b in ("data", "artifacts")]
    for name in FUNCTIONS:
        for action, resource in grants(flywheel_dev, name):
            assert "*" not in action, (name, action)
            if resource == "*":
                assert action in {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, (name, action)
            assert resource not in {f"{arn}/*" for arn in buckets}, (name, action, resource)


def test_validate_never_touches_artifacts_and_writes_only_datasets_and_quarantine(
    flywheel_dev: Deployment,
) -> None:
    """Given validate turns an incoming file into a dataset or a quarantined file
    When the program runs
    Then it has no action at all on the artifacts bucket; in the data bucket it puts objects only under
    datasets/ and quarantine/, and deletes (the move out of incoming/) only under incoming/."""
    data, artifacts = bucket_arn(flywheel_dev, "data"), bucket_arn(flywheel_dev, "artifacts")
    granted = grants(flywheel_dev, "validate")
    assert not [g for g in granted if on_bucket(g[1], artifacts)]
    puts = {resource for action, resource in granted if action == "s3:PutObject"}
    assert puts == {f"{data}/datasets/*", f"{data}/quarantine/*"}
    deletes = {(action, resource) for action, resource in granted if action in S3_WRITES - {"s3:PutObject"}}
    assert deletes == {("s3:DeleteObject", f"{data}/incoming/*")}


def test_train_cannot_read_incoming_files_and_writes_only_models(flywheel_dev: Deployment) -> None:
    """Given train reads validated datasets, never raw uploads
    When the program runs
    Then nothing it is granted covers data's incoming/, it reads only contracts/ and datasets/ there
    (and, for feature views, the views and their offline store under features/, which it lists by date),
    and its S3 writes are putting a run's model, holdout, profile and ONNX files under artifacts' models/
    (never an evaluation, a report or anything in the data bucket)."""
    data, artifacts = bucket_arn(flywheel_dev, "data"), bucket_arn(flywheel_dev, "artifacts")
    granted = grants(flywheel_dev, "train")
    assert not [g for g in granted if g[1].startswith(f"{data}/incoming")]
    assert {r for a, r in granted if a.startswith("s3:") and on_bucket(r, data)} == {
        f"{data}/contracts/*",
        f"{data}/datasets/*",
        f"{data}/feature-views/*",
        f"{data}/features/*",
        data,
    }
    assert {(a, r) for a, r in granted if a in S3_WRITES} == {
        ("s3:PutObject", f"{artifacts}/models/*/*/{name}") for name in TRAIN_FILES
    }


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_may_put_exactly_the_objects_its_step_writes(
    flywheel_dev: Deployment, name: str
) -> None:
    """Given each step writes keys of a known shape (shared/layout.py)
    When the program runs
    Then the function may put objects under exactly those shapes, none broader: Evaluate cannot replace
    the model a version was registered with, Train cannot rewrite an evaluation, the monitor cannot write
    an upload's dataset (only feedback ones), and the serving and delivery functions put nothing."""
    arns = {bucket: bucket_arn(flywheel_dev, bucket) for bucket in ("data", "artifacts")}
    puts = {r for a, r in grants(flywheel_dev, name) if a == "s3:PutObject"}
    assert puts == {f"{arns[bucket]}/{pattern}" for bucket, pattern in S3_PUTS.get(name, set())}


@pytest.mark.parametrize("stack", STACKS)
def test_no_function_may_delete_or_batch_write_a_registry_or_metadata_item(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the registry's audit trail and the metadata store's runs and lineage are append-only records
    When the program runs for dev or prod
    Then no function holds DeleteItem or BatchWriteItem (whose puts carry no condition) on either table or
    its index; ConditionCheckItem neither, as no code sends one. TransactWriteItems needs the action of each
    item it holds, so no transaction can delete either. The one DeleteItem of the stack is on the
    idempotency table, where Powertools clears a failed attempt's record."""
    deployed: Deployment = request.getfixturevalue(stack)
    records = [table_arn(deployed, t) for t in ("registry", "metadata")]
    idempotency = table_arn(deployed, "idempotency")
    forbidden = {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"}
    for name in FUNCTIONS:
        granted = grants(deployed, name)
        assert not [(a, r) for a, r in granted if a in forbidden and any(on_table(r, t) for t in records)], (
            name
        )
        assert {r for a, r in granted if a == "dynamodb:DeleteItem"} <= {idempotency}, name
        for table in records:
            assert {a for a, r in granted if r == table} <= TABLE_APPENDS, (name, table)


@pytest.mark.parametrize("stack", STACKS)
def test_trigger_may_only_start_this_stacks_state_machine(request: pytest.FixtureRequest, stack: str) -> None:
    """Given the trigger starts runs
    When the program runs for dev or prod
    Then its only Step Functions action is StartExecution on exactly that stack's state machine (not
    its executions, not another stack's machine), and no other function may start executions."""
    deployed: Deployment = request.getfixturevalue(stack)
    arn = state_machine_arn(deployed)
    assert arn.endswith(f":stateMachine:flywheel-{deployed.stack}-pipeline")
    states = {(a, r) for a, r in grants(deployed, "trigger") if a.startswith("states:")}
    assert states == {("states:StartExecution", arn)}
    for name in set(FUNCTIONS) - {"trigger", "score-start"}:
        assert not [g for g in grants(deployed, name) if g[0].startswith("states:")], name
    # Batch scoring starts its own machine, never the pipeline.
    scoring = {(a, r) for a, r in grants(deployed, "score-start") if a.startswith("states:")}
    assert scoring == {("states:StartExecution", state_machine_arn(deployed, "scoring"))}


def test_only_register_promote_and_the_delivery_steps_write_the_registry_and_evaluate_only_reads_it(
    flywheel_dev: Deployment,
) -> None:
    """Given the registry is the record of every model version and the production alias
    When the program runs
    Then only register, promote and the delivery steps hold write actions on the registry table (verify
    records its figures and rejects a failed candidate, approval keeps and clears the pending approval,
    post-deploy-check puts the previous version back); evaluate, predict and the monitor hold only reads
    (of the table and its index); the rest have nothing on it."""
    registry = table_arn(flywheel_dev, "registry")
    on_registry = {
        name: {action for action, resource in grants(flywheel_dev, name) if on_table(resource, registry)}
        for name in FUNCTIONS
    }
    writers = {name for name, actions in on_registry.items() if actions & TABLE_WRITES}
    assert writers == {"register", "promote", *DELIVERY}
    for reader in ("evaluate", "predict", "monitor", "score-start", "score"):
        assert on_registry[reader]
        assert on_registry[reader] <= TABLE_READS
    assert {name for name, actions in on_registry.items() if actions} == {
        "register",
        "promote",
        *DELIVERY,
        "evaluate",
        "predict",
        "monitor",
        "score-start",
        "score",
    }


@pytest.mark.parametrize("stack", STACKS)
def test_verify_and_the_post_deploy_check_may_invoke_only_predict(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given verify scores a candidate through the predict function and the post-deploy check asks the
    live route
    When the program runs for dev or prod
    Then each may invoke exactly the predict function (no other function, no qualifier wildcard); they
    read models (and verify the contracts and feature views) but write nothing in either bucket; they read
    and write the registry and the metadata table; and they are the only functions allowed to invoke
    predict."""
    deployed: Deployment = request.getfixturevalue(stack)
    data, artifacts = bucket_arn(deployed, "data"), bucket_arn(deployed, "artifacts")
    predict = function_arn(deployed, "predict")
    registry, metadata = table_arn(deployed, "registry"), table_arn(deployed, "metadata")
    tables = {
        *((a, t) for a in TABLE_APPENDS for t in (registry, metadata)),
        ("dynamodb:Query", f"{registry}/index/gsi1"),
        ("dynamodb:Query", f"{metadata}/index/gsi1"),
    }
    models = {(a, f"{artifacts}/models/*") for a in ("s3:GetObject", "s3:GetObjectVersion")}
    contracts = {(a, f"{data}/contracts/*") for a in ("s3:GetObject", "s3:GetObjectVersion")}
    views = {(a, f"{data}/feature-views/*") for a in ("s3:GetObject", "s3:GetObjectVersion")}
    invoke = {("lambda:InvokeFunction", predict)}
    assert s3_and_tables(deployed, "verify") == contracts | views | models | tables | invoke
    assert s3_and_tables(deployed, "post-deploy-check") == models | tables | invoke
    invokers = {
        name for name in FUNCTIONS if [g for g in grants(deployed, name) if g[0].startswith("lambda:")]
    }
    assert invokers == {"verify", "post-deploy-check", "monitor"}
    predict_invokers = {
        name
        for name in FUNCTIONS
        if [g for g in grants(deployed, name) if g[0] == "lambda:InvokeFunction" and g[1].startswith(predict)]
    }
    assert predict_invokers == {"verify", "post-deploy-check"}


@pytest.mark.parametrize("stack", STACKS)
def test_approval_touches_only_the_registry_and_the_metadata_table(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the approval function keeps the task token on the version and records a declined promotion
    When the program runs for dev or prod
    Then its grants (besides its logs and X-Ray) are on the registry and metadata tables (and their
    indexes) only: no bucket, no function, no state machine, no stream. Answering the token is the CLI's
    (the person's credentials), never a function's."""
    deployed: Deployment = request.getfixturevalue(stack)
    registry, metadata = table_arn(deployed, "registry"), table_arn(deployed, "metadata")
    granted = s3_and_tables(deployed, "approval")
    assert granted
    assert {resource for _, resource in granted} == {
        registry,
        f"{registry}/index/gsi1",
        metadata,
        f"{metadata}/index/gsi1",
    }
    assert {action for action, _ in granted} <= TABLE_APPENDS
    assert {action for action, resource in granted if resource == registry} & TABLE_WRITES


@pytest.mark.parametrize("stack", STACKS)
def test_predict_reads_the_registry_and_models_and_sends_only_captures(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given predict serves the production version and captures what it answered
    When the program runs for dev or prod
    Then, besides its own logs and X-Ray, its role may read the registry table (GetItem, Query,
    BatchGetItem: no write), read objects under artifacts' models/ (nothing else of either bucket),
    batch-get from the features table (a view's features by entity key), and put records on exactly the
    capture stream; no other function may put records on it."""
    deployed: Deployment = request.getfixturevalue(stack)
    registry = table_arn(deployed, "registry")
    models = f"{bucket_arn(deployed, 'artifacts')}/models/*"
    stream = deployed.one(T.STREAM, "captures").outputs["arn"]
    granted = {g for g in grants(deployed, "predict") if not g[0].startswith(("logs:", "xray:"))}
    assert granted == {
        ("dynamodb:GetItem", registry),
        ("dynamodb:Query", registry),
        ("dynamodb:BatchGetItem", registry),
        ("s3:GetObject", models),
        ("s3:GetObjectVersion", models),
        ("firehose:PutRecord", stream),
        ("firehose:PutRecordBatch", stream),
        ("dynamodb:BatchGetItem", table_arn(deployed, "features")),
    }
    # Batch scoring captures its rows too (source "batch"), with the same two actions on the same stream.
    score = {g for g in grants(deployed, "score") if g[0].startswith("firehose:")}
    assert score == {("firehose:PutRecord", stream), ("firehose:PutRecordBatch", stream)}
    for name in set(FUNCTIONS) - SERVING - {"score"}:
        assert not [g for g in grants(deployed, name) if g[0].startswith("firehose:")], name


# --- what invokes the trigger ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_uploads_under_incoming_invoke_the_trigger_and_nothing_else_is_notified(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given data files are dropped under incoming/<model>/
    When the program runs
    Then the data bucket's one notification sends s3:ObjectCreated:* under incoming/ (no suffix) to
    the trigger; S3 may invoke the trigger for that bucket and account only, the permission exists
    before the notification; the artifacts bucket notifies nobody."""
    deployed: Deployment = request.getfixturevalue(stack)
    data = deployed.one(T.BUCKET, "data")
    notification = deployed.one(T.NOTIFICATION, "data")
    assert [n.name for n in deployed.all(T.NOTIFICATION)] == ["data"]
    assert notification.inputs["bucket"] == data.id
    assert notification.inputs["lambdaFunctions"] == [
        {
            "lambdaFunctionArn": function_arn(deployed, "trigger"),
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "incoming/",
        },
        {
            "lambdaFunctionArn": function_arn(deployed, "labels"),
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "labels/",
        },
        {
            "lambdaFunctionArn": function_arn(deployed, "features"),
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "feature-sources/",
        },
        {
            "lambdaFunctionArn": function_arn(deployed, "score-start"),
            "events": ["s3:ObjectCreated:*"],
            "filterPrefix": "score-requests/",
        },
    ]
    assert not notification.inputs.get("queues") and not notification.inputs.get("topics")

    permission = deployed.one(T.PERMISSION, "data-invokes-trigger", T.NOTIFICATIONS)
    declared = dict(permission.inputs)
    assert declared.pop("statementId").startswith("data-invokes-trigger-")  # named by the provider
    assert declared == {
        "action": "lambda:InvokeFunction",
        "principal": "s3.amazonaws.com",
        "function": f"flywheel-{deployed.stack}-trigger",
        "sourceArn": data.outputs["arn"],
        "sourceAccount": ACCOUNT,
    }
    assert permission.urn in notification.dependencies
    labels = deployed.one(T.PERMISSION, "data-invokes-labels", T.NOTIFICATIONS)
    assert labels.inputs["function"] == f"flywheel-{deployed.stack}-labels"
    assert (labels.inputs["principal"], labels.inputs["sourceArn"]) == (
        "s3.amazonaws.com",
        data.outputs["arn"],
    )
    assert labels.urn in notification.dependencies


def test_only_the_bucket_the_schedule_and_the_api_may_invoke_functions(flywheel_dev: Deployment) -> None:
    """The stack's resource-based invoke permissions: S3 from the data bucket and EventBridge from the
    retrain rule, both on the trigger; API Gateway from this API's four routes, on predict only; no
    other principal, no other function."""
    execution_arn = flywheel_dev.one(T.API, "api").outputs["executionArn"]
    permissions = {
        (p.inputs["principal"], p.inputs["function"], p.inputs["sourceArn"])
        for p in flywheel_dev.all(T.PERMISSION)
    }
    assert permissions == {
        ("s3.amazonaws.com", "flywheel-dev-trigger", bucket_arn(flywheel_dev, "data")),
        (
            "events.amazonaws.com",
            "flywheel-dev-trigger",
            flywheel_dev.one(T.RULE, "retrain").outputs["arn"],
        ),
        ("apigateway.amazonaws.com", "flywheel-dev-predict", f"{execution_arn}/*/POST/models/*/predict"),
        ("apigateway.amazonaws.com", "flywheel-dev-predict", f"{execution_arn}/*/GET/models/*"),
        ("apigateway.amazonaws.com", "flywheel-dev-predict", f"{execution_arn}/*/GET/health"),
        ("apigateway.amazonaws.com", "flywheel-dev-predict", f"{execution_arn}/*/GET/openapi.json"),
        ("s3.amazonaws.com", "flywheel-dev-labels", bucket_arn(flywheel_dev, "data")),
        ("s3.amazonaws.com", "flywheel-dev-features", bucket_arn(flywheel_dev, "data")),
        ("s3.amazonaws.com", "flywheel-dev-score-start", bucket_arn(flywheel_dev, "data")),
        (
            "events.amazonaws.com",
            "flywheel-dev-monitor",
            flywheel_dev.one(T.RULE, "monitor").outputs["arn"],
        ),
    }


# --- labels and the monitor ------------------------------------------------------------------------------


def s3_and_tables(deployed: Deployment, function: str) -> set[tuple[str, str]]:
    """A function's grants besides its own logs and X-Ray."""
    return {g for g in grants(deployed, function) if not g[0].startswith(("logs:", "xray:"))}


def test_labels_moves_label_files_and_writes_only_accepted_labels_and_their_quarantine(
    flywheel_dev: Deployment,
) -> None:
    """Given the labels function checks files under labels/ and stores what it accepts
    When the program runs
    Then it reads contracts, lists the data bucket, moves files out of labels/ (read and delete there
    only), reads and puts accepted label sets under labels-accepted/, reads and puts quarantined label
    files under quarantine/*/labels/, and has nothing on the artifacts bucket, any table or function."""
    data = bucket_arn(flywheel_dev, "data")
    assert s3_and_tables(flywheel_dev, "labels") == {
        ("s3:GetObject", f"{data}/contracts/*"),
        ("s3:GetObjectVersion", f"{data}/contracts/*"),
        ("s3:ListBucket", data),
        ("s3:ListBucketVersions", data),
        ("s3:GetObject", f"{data}/labels/*"),
        ("s3:GetObjectVersion", f"{data}/labels/*"),
        ("s3:DeleteObject", f"{data}/labels/*"),
        ("s3:GetObject", f"{data}/labels-accepted/*"),
        ("s3:GetObjectVersion", f"{data}/labels-accepted/*"),
        ("s3:PutObject", f"{data}/labels-accepted/*"),
        ("s3:GetObject", f"{data}/quarantine/*/labels/*"),
        ("s3:GetObjectVersion", f"{data}/quarantine/*/labels/*"),
        ("s3:PutObject", f"{data}/quarantine/*/labels/*"),
    }


@pytest.mark.parametrize("stack", STACKS)
def test_the_monitor_reads_traffic_labels_models_and_the_registry_and_invokes_only_the_trigger(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the monitor judges captures and labels against the production version
    When the program runs for dev or prod
    Then it may read contracts, captures and accepted labels and list the data bucket; put feedback
    datasets under datasets/<model>/feedback/ (nothing else of the data bucket, no upload's dataset);
    read models and put reports (nothing else of the artifacts bucket); read the registry (no write);
    record its runs, lineage and datasets in the metadata table; and invoke exactly the trigger
    function — no state machine, no stream."""
    deployed: Deployment = request.getfixturevalue(stack)
    data, artifacts = bucket_arn(deployed, "data"), bucket_arn(deployed, "artifacts")
    registry, metadata = table_arn(deployed, "registry"), table_arn(deployed, "metadata")
    reads = ("s3:GetObject", "s3:GetObjectVersion")
    assert s3_and_tables(deployed, "monitor") == {
        *(
            (a, f"{data}/{prefix}/*")
            for a in reads
            for prefix in ("contracts", "captures", "labels-accepted")
        ),
        ("s3:ListBucket", data),
        ("s3:ListBucketVersions", data),
        ("s3:PutObject", f"{data}/datasets/*/feedback/*"),
        *((a, f"{artifacts}/models/*") for a in reads),
        ("s3:PutObject", f"{artifacts}/reports/*"),
        *((a, registry) for a in TABLE_READS),
        ("dynamodb:Query", f"{registry}/index/gsi1"),
        *((a, metadata) for a in TABLE_APPENDS),
        ("dynamodb:Query", f"{metadata}/index/gsi1"),
        ("lambda:InvokeFunction", function_arn(deployed, "trigger")),
    }


def test_only_the_monitor_may_invoke_the_trigger_function(flywheel_dev: Deployment) -> None:
    trigger = function_arn(flywheel_dev, "trigger")
    invokers = {
        name
        for name in FUNCTIONS
        if [g for g in grants(flywheel_dev, name) if g[0] == "lambda:InvokeFunction" and g[1] == trigger]
    }
    assert invokers == {"monitor"}


@pytest.mark.parametrize("stack", STACKS)
def test_the_monitor_schedule_invokes_the_monitor_hourly_with_the_scheduled_event(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given no schedule override
    When the program runs
    Then an enabled monitor rule fires every hour, targets the monitor with EventBridge's event (which
    it reads as 'every model in production'), and EventBridge may invoke the monitor from that rule only."""
    deployed: Deployment = request.getfixturevalue(stack)
    rule = deployed.one(T.RULE, "monitor")
    assert rule.inputs["name"] == f"flywheel-{deployed.stack}-monitor"
    assert rule.inputs["scheduleExpression"] == DEFAULT_MONITOR_SCHEDULE == "rate(1 hour)"
    assert rule.inputs["state"] == "ENABLED"
    target = deployed.one(T.TARGET, "monitor").inputs
    assert target["arn"] == function_arn(deployed, "monitor") and "input" not in target
    permission = deployed.one(T.PERMISSION, "monitor", T.SCHEDULES).inputs
    assert (permission["principal"], permission["function"], permission["sourceArn"]) == (
        "events.amazonaws.com",
        f"flywheel-{deployed.stack}-monitor",
        rule.outputs["arn"],
    )


def test_the_stack_config_overrides_the_monitor_schedule() -> None:
    deployed = run_program(flywheel_stack, "dev", {"flywheel:schedules": {"monitor": "rate(15 minutes)"}})
    assert deployed.one(T.RULE, "monitor").inputs["scheduleExpression"] == "rate(15 minutes)"
    assert deployed.one(T.RULE, "retrain").inputs["scheduleExpression"] == DEFAULT_RETRAIN_SCHEDULE
    assert deployed.one(T.TARGET, "monitor").inputs["arn"] == function_arn(deployed, "monitor")


# --- the HTTP API ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_the_predict_routes_are_iam_authorised_except_health_and_the_document(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given apiAuth iam on dev and prod
    When the program runs
    Then the API has exactly predict's four routes, each a payload-v2 proxy to predict (through its live
    alias where the stack provisions instances for it, prod); predicting and describing a model require
    IAM, /health and /openapi.json are open, and there is no JWT authorizer."""
    deployed: Deployment = request.getfixturevalue(stack)
    [integration] = deployed.all(T.INTEGRATION)
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    provisioned = deployed.config.predict_provisioned_concurrency > 0
    suffix = ":live" if provisioned else ""
    assert integration.inputs["integrationUri"] == function_arn(deployed, "predict") + suffix
    routes = {r.inputs["routeKey"]: r.inputs for r in deployed.all(T.ROUTE)}
    assert set(routes) == set(ROUTES)
    for key, authorised in ROUTES.items():
        assert routes[key]["authorizationType"] == ("AWS_IAM" if authorised else "NONE"), key
        assert routes[key]["target"] == f"integrations/{integration.id}", key
    assert deployed.all(T.AUTHORIZER) == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_retrain_schedule_invokes_the_trigger_with_the_scheduled_event(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given no schedule override in Pulumi.<stack>.yaml
    When the program runs
    Then an enabled retrain rule fires at 03:00 UTC daily, targets the trigger with EventBridge's own
    scheduled event (no constant input: the trigger names the run from rule and time), and EventBridge
    may invoke the trigger from that rule only."""
    deployed: Deployment = request.getfixturevalue(stack)
    assert sorted(r.name for r in deployed.all(T.RULE)) == ["monitor", "retrain"]
    rule = deployed.one(T.RULE, "retrain")
    assert rule.inputs["name"] == f"flywheel-{deployed.stack}-retrain"
    assert rule.inputs["scheduleExpression"] == DEFAULT_RETRAIN_SCHEDULE == "cron(0 3 * * ? *)"
    assert rule.inputs["state"] == "ENABLED"

    target = deployed.one(T.TARGET, "retrain").inputs
    assert target["rule"] == rule.inputs["name"]
    assert target["arn"] == function_arn(deployed, "trigger")
    assert "input" not in target

    permission = deployed.one(T.PERMISSION, "retrain", T.SCHEDULES).inputs
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["function"] == f"flywheel-{deployed.stack}-trigger"
    assert permission["sourceArn"] == rule.outputs["arn"]


def test_the_stack_config_overrides_the_retrain_schedule(flywheel_daily: Deployment) -> None:
    """Given flywheel:schedules {retrain: rate(1 day)} in the stack config
    When the program runs
    Then the rule fires on that expression, still targeting the trigger."""
    assert flywheel_daily.config.schedules == {"retrain": "rate(1 day)"}
    rule = flywheel_daily.one(T.RULE, "retrain")
    assert rule.inputs["scheduleExpression"] == "rate(1 day)"
    assert flywheel_daily.one(T.TARGET, "retrain").inputs["arn"] == function_arn(flywheel_daily, "trigger")


def test_a_schedule_override_naming_no_schedule_stops_the_program() -> None:
    """A typo in flywheel:schedules would otherwise be ignored silently."""
    with pytest.raises(SpecError, match="nightly"):
        run_program(flywheel_stack, "dev", {"flywheel:schedules": {"nightly": "rate(1 day)"}})


# --- the pipeline ----------------------------------------------------------------------------------------


def test_the_pipeline_has_the_documented_states_and_transitions(flywheel_dev: Deployment) -> None:
    """Given the documented flow HasNewFile → Validate → Train → Evaluate → Gate → Register → Verify →
    Verified? → Policy → [StageCandidate → AwaitApproval] → Promote → Promoted? → PostDeployCheck → Finish,
    a failed gate through RegisterRejected, a failed verification straight to Finish, a declined or
    expired approval through Declined, failures through RecordFailure into Failed
    When the program runs
    Then the deployed definition has those states (plus one <State>Failed Pass per task), each task
    invokes its deployed function, and the transitions are the documented ones."""
    asl = definition(flywheel_dev)
    states = asl["States"]
    assert asl["StartAt"] == "HasNewFile"
    step_failures = {
        f"{state}Failed"
        for state in [*TASKS, WAITING_TASK]
        if state != "RecordFailure" and not state.startswith(("Plan", "Collect"))
    }
    assert set(states) == DOCUMENTED_STATES | step_failures

    for state, function in TASKS.items():
        assert states[state]["Type"] == "Task", state
        assert states[state]["Resource"] == function_arn(flywheel_dev, function), state

    def choice(name: str) -> tuple[list[dict[str, Any]], str]:
        assert states[name]["Type"] == "Choice", name
        return states[name]["Choices"], states[name]["Default"]

    assert choice("HasNewFile") == (
        [
            {"Variable": "$.source", "IsPresent": True, "Next": "PlanValidate"},
            {"Variable": "$.reason", "StringEquals": "experiment", "Next": "Experiment"},
        ],
        "PlanTrain",
    )
    assert states["Experiment"]["Next"] == "MoreTrials"
    assert choice("MoreTrials") == (
        [{"Variable": "$.experiment.done", "BooleanEquals": True, "Next": "PlanTrain"}],
        "Trials",
    )
    for step in ("Validate", "Train"):
        path = f"$.compute.{step.lower()}.engine"
        assert choice(f"{step}Engine") == (
            [{"Variable": path, "StringEquals": "fargate", "Next": f"{step}OnFargate"}],
            step,
        )
    for state in CONTAINER_TASKS:
        assert states[state]["Resource"] == RUN_TASK_SYNC
    trials = states["Trials"]
    assert (trials["Type"], trials["ItemsPath"], trials["MaxConcurrencyPath"], trials["Next"]) == (
        "Map",
        "$.experiment.batch",
        "$.experiment.parallel",
        "Experiment",
    )
    processor = trials["ItemProcessor"]["States"]
    assert processor["Trial"]["Resource"] == function_arn(flywheel_dev, "trial")
    # A trial's failure is its result, never the Map's: the Experiment step records it.
    assert processor["Trial"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "TrialLost"}
    ]
    assert choice("Gate") == (
        [{"Variable": "$.evaluation.passed", "BooleanEquals": True, "Next": "Register"}],
        "RegisterRejected",
    )
    assert choice("Verified") == (
        [{"Variable": "$.verification.passed", "BooleanEquals": True, "Next": "Policy"}],
        "Finish",
    )
    assert choice("Policy") == (
        [{"Variable": "$.policy.policy", "StringEquals": "approval", "Next": "StageCandidate"}],
        "Promote",
    )
    assert choice("Promoted") == (
        [{"Variable": "$.promoted", "BooleanEquals": True, "Next": "PostDeployCheck"}],
        "Finish",
    )

    following = {name: state.get("Next") for name, state in states.items() if state["Type"] == "Task"}
    assert following == {
        "PlanValidate": "ValidateEngine",
        "ValidateOnFargate": "CollectValidate",
        "CollectValidate": "PlanTrain",
        "PlanTrain": "TrainEngine",
        "TrainOnFargate": "CollectTrain",
        "CollectTrain": "Evaluate",
        "Validate": "PlanTrain",
        "Experiment": "MoreTrials",
        "Train": "Evaluate",
        "Evaluate": "Gate",
        "Register": "Verify",
        "RegisterRejected": "Finish",
        "Verify": "Verified",
        "StageCandidate": "AwaitApproval",
        "AwaitApproval": "Promote",
        "Declined": "Finish",
        "Promote": "Promoted",
        "PostDeployCheck": "Finish",
        "Finish": None,
        "RecordFailure": "Failed",
    }
    assert states["Finish"]["End"] is True
    assert states["Failed"]["Type"] == "Fail"


def test_await_approval_waits_on_a_task_token_for_the_policy_timeout(flywheel_dev: Deployment) -> None:
    """Given the approval policy
    When the pipeline reaches AwaitApproval
    Then Step Functions invokes the approval function (invoke.waitForTaskToken) with the run's state and
    the task token, waits at most the policy's timeout (read from the state, so the contract can set it
    per model), keeps a person's answer in $.approval, and sends a rejection (ApprovalRejected, which
    flywheel reject sends) or an expired wait (States.Timeout) to Declined with the error in $.declined;
    anything else is a failure of the approval step."""
    state = definition(flywheel_dev)["States"][WAITING_TASK]
    assert state["Type"] == "Task"
    assert state["Resource"] == WAIT_FOR_TOKEN
    assert state["Parameters"] == {
        "FunctionName": function_arn(flywheel_dev, "approval"),
        "Payload": {"state.$": "$", "task_token.$": "$$.Task.Token"},
    }
    assert state["TimeoutSecondsPath"] == "$.policy.approval_timeout_seconds"
    assert "TimeoutSeconds" not in state and "HeartbeatSeconds" not in state
    assert state["ResultPath"] == "$.approval"
    declined, failed = state["Catch"]
    assert declined == {
        "ErrorEquals": ["ApprovalRejected", "States.Timeout"],
        "ResultPath": "$.declined",
        "Next": "Declined",
    }
    assert failed == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "AwaitApprovalFailed"}
    assert definition(flywheel_dev)["States"]["AwaitApprovalFailed"] == {
        "Type": "Pass",
        "Result": "approval",
        "ResultPath": "$.failed_step",
        "Next": "RecordFailure",
    }


@pytest.mark.parametrize("state", [*TASKS, WAITING_TASK])
def test_every_task_retries_transient_errors_with_backoff_and_never_validation_errors(
    flywheel_dev: Deployment, state: str
) -> None:
    """Given a task of the pipeline
    When the program runs
    Then it retries TransientError and Lambda's transient errors, at least a second apart with a
    growing interval, and no Retry lists DataValidationError, ContractError or a catch-all that would
    cover them."""
    retries = definition(flywheel_dev)["States"][state]["Retry"]
    retried = {error for retry in retries for error in retry["ErrorEquals"]}
    assert {"TransientError", *LAMBDA_TRANSIENT} <= retried
    assert not retried & NEVER_RETRIED
    assert not retried & {"ApprovalRejected", "States.Timeout"}  # a person's "no" is final
    for retry in retries:
        assert retry["IntervalSeconds"] >= 1
        assert retry["MaxAttempts"] >= 2
        assert retry["BackoffRate"] > 1


@pytest.mark.parametrize("state", [s for s in TASKS if s != "RecordFailure"])
def test_every_step_catches_any_error_into_a_pass_naming_the_step_then_record_failure(
    flywheel_dev: Deployment, state: str
) -> None:
    """Given a step task
    When any error escapes its retries
    Then it is caught (States.ALL) into $.error, keeping the run's input, and a Pass state records the
    step's name in $.failed_step before RecordFailure."""
    states = definition(flywheel_dev)["States"]
    [catch] = states[state]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    assert catch["ResultPath"] == "$.error"
    # Placing a step or reading its task's state back is part of that step: its failure is the step's.
    step = state.removeprefix("Plan").removeprefix("Collect")
    assert catch["Next"] == f"{step}Failed"
    named = states[catch["Next"]]
    assert named == {
        "Type": "Pass",
        "Result": TASKS[step],
        "ResultPath": "$.failed_step",
        "Next": "RecordFailure",
    }


def test_record_failure_is_not_caught_so_its_own_failure_fails_the_execution(
    flywheel_dev: Deployment,
) -> None:
    assert "Catch" not in definition(flywheel_dev)["States"]["RecordFailure"]


def invoked_functions(deployed: Deployment) -> set[str]:
    """The function ARNs the definition's tasks invoke: a task's Resource, or the FunctionName of a
    lambda:invoke.waitForTaskToken task (Step Functions invokes it with the person-facing task token)."""
    invoked = set()
    states = list(definition(deployed)["States"].values())
    while states:
        state = states.pop()
        if state["Type"] == "Map":  # the trials' fan-out: its iterations' states invoke too
            states += state["ItemProcessor"]["States"].values()
        if state["Type"] != "Task":
            continue
        if state["Resource"] == WAIT_FOR_TOKEN:
            invoked.add(state["Parameters"]["FunctionName"])
        elif state["Resource"] == RUN_TASK_SYNC:
            continue  # a container task: no function (tests/infra/test_step_tasks.py)
        else:
            assert state["Resource"].startswith("arn:aws:lambda:"), state["Resource"]
            invoked.add(state["Resource"])
    return invoked


@pytest.mark.parametrize("stack", STACKS)
def test_the_pipeline_role_invokes_exactly_the_functions_its_definition_names(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """Given the definition invokes every pipeline function but the trigger (approval through the
    waitForTaskToken integration)
    When the program runs
    Then the state machine's role, trusted by Step Functions, may invoke exactly those thirteen (any
    version), never the trigger, predict, the monitoring functions or features, and the machine runs as
    that role. (Its rights to run the step tasks: tests/infra/test_step_tasks.py.)"""
    deployed: Deployment = request.getfixturevalue(stack)
    outside = {"trigger"} | SERVING | MONITORING | FEATURE_STORE | SCORING
    expected = {function_arn(deployed, f) for f in set(FUNCTIONS) - outside}
    assert len(expected) == 13
    assert function_arn(deployed, "approval") in expected
    assert invoked_functions(deployed) == expected

    role = deployed.one(T.ROLE, "pipeline", T.PIPELINE)
    assert document(role, "assumeRolePolicy")["Statement"][0]["Principal"] == {
        "Service": "states.amazonaws.com"
    }
    assert deployed.one(T.STATE_MACHINE, "pipeline").inputs["roleArn"] == role.outputs["arn"]
    statements = document(deployed.one(T.ROLE_POLICY, "pipeline", T.PIPELINE))["Statement"]
    [invoke] = [s for s in statements if "lambda:InvokeFunction" in s["Action"]]
    assert invoke["Action"] == ["lambda:InvokeFunction"]
    assert set(invoke["Resource"]) == expected | {f"{arn}:*" for arn in expected}
    for outside in ("trigger", *SERVING, *MONITORING):
        assert not [r for r in invoke["Resource"] if r.startswith(function_arn(deployed, outside))]
    # Nothing but invoking: answering a task token is the CLI's, with a person's credentials.
    assert not [s for s in statements if any(a.startswith("states:") for a in s["Action"])]
