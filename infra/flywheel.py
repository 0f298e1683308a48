"""Flywheel's own stack: what `pulumi up` deploys and `flywheel local` runs.

Each capability adds its functions here in the change that builds it; the spec checks every reference.
"""

from __future__ import annotations

from infra.config import StackConfig
from infra.pipeline import pipeline_definition
from infra.scoring import scoring_definition
from infra.spec import (
    BucketRef,
    BucketSpec,
    CaptureStreamSpec,
    FunctionRef,
    FunctionSpec,
    IndexSpec,
    Key,
    LifecycleRule,
    Notification,
    Permission,
    RouteSpec,
    ScheduleSpec,
    StackSpec,
    StateMachineRef,
    StateMachineSpec,
    StreamRef,
    TableRef,
    TableSpec,
    TaskSpec,
    append_table,
    list_bucket,
    read_objects,
    read_table,
    with_overrides,
    write_objects,
)
from shared.data.compute import TASK_STEPS
from shared.env_names import EnvVar
from shared.featurestore.online import ONLINE_TABLE_KEYS
from shared.layout import (
    FEEDBACK_DATASETS,
    TRAIN_ARTIFACTS,
    ArtifactPrefix,
    DataPrefix,
    RunArtifact,
    TaskFile,
)

PROJECT = "flywheel"

# Registry and metadata share one single-table shape: entity items under pk/sk, one inverted index.
_SINGLE_TABLE = {
    "partition_key": Key(name="pk"),
    "sort_key": Key(name="sk"),
    "indexes": (IndexSpec(name="gsi1", partition_key=Key(name="gsi1pk"), sort_key=Key(name="gsi1sk")),),
}


HANDLERS = "functions.{}.handler.handler"
DEFAULT_RETRAIN_SCHEDULE = "cron(0 3 * * ? *)"
DEFAULT_MONITOR_SCHEDULE = "rate(1 hour)"


def _metadata() -> tuple[Permission, ...]:
    return (append_table("metadata"), read_table("metadata", index="gsi1"))


def _registry(write: bool) -> tuple[Permission, ...]:
    """The registry, read or appended to: no function may delete a version, an alias or an audit entry."""
    table = append_table("registry") if write else read_table("registry")
    return (table, read_table("registry", index="gsi1"))


def _run_artifacts(*names: RunArtifact) -> tuple[Permission, ...]:
    """Putting exactly these files of any run (``models/<model>/<run id>/<name>``): IAM cannot know the
    model or the run at deploy time, but it can hold each step to the files it writes."""
    return tuple(write_objects("artifacts", f"{ArtifactPrefix.MODELS}*/*/{name}") for name in names)


def _move_objects(bucket: str, pattern: str) -> Permission:
    """Reading and deleting (a delete marker: buckets are versioned) what a move takes away."""
    return Permission(
        actions=("s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject"),
        resource=BucketRef(bucket=bucket, objects=pattern),
    )


def _feature_views() -> Permission:
    """Reading the stored feature views: what the steps that build a contract's effective contract need."""
    return read_objects("data", f"{DataPrefix.FEATURE_VIEWS}*")


def _idempotency() -> Permission:
    return Permission(
        actions=("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
        resource=TableRef(table="idempotency"),
    )


def _functions() -> tuple[FunctionSpec, ...]:
    contracts = read_objects("data", f"{DataPrefix.CONTRACTS}*")
    models = f"{ArtifactPrefix.MODELS}*"
    return (
        FunctionSpec(
            name="trigger",
            handler=HANDLERS.format("trigger"),
            description="Starts a run for a new file, the schedule, a person or the monitor",
            memory_mb=256,
            timeout_s=60,
            env_var=EnvVar.TRIGGER_FUNCTION,
            permissions=(
                contracts,
                list_bucket("data"),
                _move_objects("data", f"{DataPrefix.INCOMING}*"),
                write_objects("data", f"{DataPrefix.QUARANTINE}*"),
                *_metadata(),
                Permission(actions=("states:StartExecution",), resource=StateMachineRef()),
            ),
        ),
        FunctionSpec(
            name="validate",
            handler=HANDLERS.format("validate"),
            description="Checks a file against its contract; a typed dataset, or quarantine with reasons",
            memory_mb=2048,
            timeout_s=300,
            # The upload (up to a contract's max_file_mb, 512 MiB by default), its inflated text when
            # gzip-compressed, and the dataset written from it, all on disk while memory stays flat.
            ephemeral_mb=2048,
            permissions=(
                contracts,
                _move_objects("data", f"{DataPrefix.INCOMING}*"),
                write_objects("data", f"{DataPrefix.DATASETS}*"),
                write_objects("data", f"{DataPrefix.QUARANTINE}*"),
                *_metadata(),
            ),
        ),
        FunctionSpec(
            name="compute",
            handler=HANDLERS.format("compute"),
            description="Places Validate and Train on a function or a Fargate task; reads a task's output",
            memory_mb=512,
            timeout_s=60,
            permissions=(
                contracts,
                _feature_views(),
                # The new file's size, for the estimate (HeadObject needs GetObject).
                read_objects("data", f"{DataPrefix.INCOMING}*"),
                read_table("metadata"),
                read_table("metadata", index="gsi1"),
                write_objects("artifacts", f"{ArtifactPrefix.TASKS}*/*/*/{TaskFile.INPUT}"),
                read_objects("artifacts", f"{ArtifactPrefix.TASKS}*/*/*/{TaskFile.OUTPUT}"),
            ),
        ),
        FunctionSpec(
            name="experiment",
            handler=HANDLERS.format("experiment"),
            description="Tells Optuna how a batch of trials scored and asks the next, or picks the winner",
            memory_mb=1024,
            timeout_s=120,
            permissions=(contracts, _feature_views(), *_metadata()),
        ),
        FunctionSpec(
            name="trial",
            handler=HANDLERS.format("trial"),
            description="Scores one experiment trial by cross-validation, stopped at its time budget",
            memory_mb=3008,
            timeout_s=900,
            permissions=(
                contracts,
                read_objects("data", f"{DataPrefix.DATASETS}*"),
                _feature_views(),
                list_bucket("data"),
                read_objects("data", f"{DataPrefix.FEATURES}*"),
                *_metadata(),
            ),
        ),
        FunctionSpec(
            name="train",
            handler=HANDLERS.format("train"),
            description="Fits the contract's pipeline on the training window",
            memory_mb=3008,
            timeout_s=900,
            permissions=(
                contracts,
                read_objects("data", f"{DataPrefix.DATASETS}*"),
                # Feature views: the views, and their offline store, listed by date and read for the join.
                _feature_views(),
                list_bucket("data"),
                read_objects("data", f"{DataPrefix.FEATURES}*"),
                *_run_artifacts(*TRAIN_ARTIFACTS),
                *_metadata(),
            ),
        ),
        FunctionSpec(
            name="evaluate",
            handler=HANDLERS.format("evaluate"),
            description="Scores candidate and production model on one holdout; decides the gate",
            memory_mb=2048,
            timeout_s=300,
            permissions=(
                contracts,
                _feature_views(),
                read_objects("artifacts", models),
                *_run_artifacts(RunArtifact.EVALUATION),
                *_registry(write=False),
                *_metadata(),
            ),
        ),
        FunctionSpec(
            name="register",
            handler=HANDLERS.format("register"),
            description="Registers the candidate (or the rejected candidate) with its lineage",
            memory_mb=512,
            timeout_s=60,
            permissions=(contracts, _feature_views(), *_registry(write=True), *_metadata(), _idempotency()),
        ),
        FunctionSpec(
            name="promote",
            handler=HANDLERS.format("promote"),
            description="Moves a verified version to staging or production under the environment's policy",
            memory_mb=256,
            timeout_s=60,
            permissions=(*_registry(write=True), *_metadata(), _idempotency()),
        ),
        *_delivery_functions(),
        FunctionSpec(
            name="finish",
            handler=HANDLERS.format("finish"),
            description="Closes the run with its outcome",
            memory_mb=256,
            timeout_s=30,
            permissions=_metadata(),
        ),
        FunctionSpec(
            name="record-failure",
            handler=HANDLERS.format("record_failure"),
            description="Marks the run failed with the step, error type and message",
            memory_mb=256,
            timeout_s=30,
            permissions=_metadata(),
        ),
    )


# Validate and Train may run as Fargate tasks: the same image, their step code through functions.task.
TASK_COMMAND = ("python", "-m", "functions.task")


def _tasks() -> tuple[TaskSpec, ...]:
    return tuple(
        TaskSpec(
            function=step,
            command=(*TASK_COMMAND, step),
            handover_bucket="artifacts",
            handover_prefix=ArtifactPrefix.TASKS.value,
        )
        for step in TASK_STEPS
    )


def _delivery_functions() -> tuple[FunctionSpec, ...]:
    """Verify, approval and the post-deploy check: each may call the predict function, nothing else."""
    invoke_predict = Permission(actions=("lambda:InvokeFunction",), resource=FunctionRef(function="predict"))
    models = read_objects("artifacts", f"{ArtifactPrefix.MODELS}*")
    contracts = read_objects("data", f"{DataPrefix.CONTRACTS}*")
    return (
        FunctionSpec(
            name="verify",
            handler=HANDLERS.format("verify"),
            description="Proves a version on the serving path: load, smoke and a bounded load test",
            memory_mb=2048,
            timeout_s=300,
            env_var=EnvVar.VERIFY_FUNCTION,
            permissions=(
                contracts,
                _feature_views(),
                models,
                *_registry(write=True),
                *_metadata(),
                invoke_predict,
            ),
        ),
        FunctionSpec(
            name="approval",
            handler=HANDLERS.format("approval"),
            description="Keeps a waiting promotion's task token; records rejections and expired waits",
            memory_mb=256,
            timeout_s=30,
            permissions=(*_registry(write=True), *_metadata()),
        ),
        FunctionSpec(
            name="post-deploy-check",
            handler=HANDLERS.format("post_deploy_check"),
            description="Smoke request through the live route after a promotion; rolls back on failure",
            memory_mb=512,
            timeout_s=120,
            permissions=(models, *_registry(write=True), *_metadata(), invoke_predict),
        ),
    )


def _serving_functions() -> tuple[FunctionSpec, ...]:
    return (
        FunctionSpec(
            name="predict",
            handler=HANDLERS.format("predict"),
            description="Answers prediction requests with the production version; captures what it saw",
            memory_mb=1024,
            timeout_s=15,
            env_var=EnvVar.PREDICT_FUNCTION,
            permissions=(
                read_table("registry"),
                read_objects("artifacts", f"{ArtifactPrefix.MODELS}*"),
                Permission(
                    actions=("firehose:PutRecord", "firehose:PutRecordBatch"),
                    resource=StreamRef(stream="captures"),
                ),
                # A view's features by entity key: one BatchGetItem per view and request, nothing else.
                Permission(actions=("dynamodb:BatchGetItem",), resource=TableRef(table="features")),
            ),
        ),
    )


def _monitoring_functions() -> tuple[FunctionSpec, ...]:
    """Labels (checks label files) and the monitor (judges traffic, writes reports and feedback, asks the
    trigger for a retraining): neither touches the registry's writes, the pipeline or the capture stream."""
    contracts = read_objects("data", f"{DataPrefix.CONTRACTS}*")
    accepted = f"{DataPrefix.LABELS_ACCEPTED}*"
    return (
        FunctionSpec(
            name="labels",
            handler=HANDLERS.format("labels"),
            description="Checks a label file; stores its usable rows for the monitor, or quarantines it",
            memory_mb=1024,
            timeout_s=120,
            permissions=(
                contracts,
                # Without ListBucket, S3 answers 403 rather than 404 for a label set not written yet.
                list_bucket("data"),
                _move_objects("data", f"{DataPrefix.LABELS}*"),
                read_objects("data", accepted),
                write_objects("data", accepted),
                read_objects("data", f"{DataPrefix.QUARANTINE}*/labels/*"),
                write_objects("data", f"{DataPrefix.QUARANTINE}*/labels/*"),
            ),
        ),
        FunctionSpec(
            name="monitor",
            handler=HANDLERS.format("monitor"),
            description="Drift and live performance of production models; reports, feedback data, retraining",
            memory_mb=2048,
            timeout_s=900,
            env_var=EnvVar.MONITOR_FUNCTION,
            permissions=(
                contracts,
                list_bucket("data"),
                read_objects("data", f"{DataPrefix.CAPTURES}*"),
                read_objects("data", accepted),
                # Feedback datasets only: an upload's dataset (Validate's) is outside this pattern.
                write_objects("data", f"{DataPrefix.DATASETS}*/{FEEDBACK_DATASETS}*"),
                read_objects("artifacts", f"{ArtifactPrefix.MODELS}*"),
                write_objects("artifacts", f"{ArtifactPrefix.REPORTS}*"),
                *_registry(write=False),
                *_metadata(),
                Permission(actions=("lambda:InvokeFunction",), resource=FunctionRef(function="trigger")),
            ),
        ),
    )


def _scoring_functions() -> tuple[FunctionSpec, ...]:
    """Batch scoring: score-start (a request file or a person), score (one file), score-finish (the
    manifest and lineage). They read the score inputs and the registry's artifacts, write under scores/
    only, and delete nothing."""
    inputs = f"{DataPrefix.SCORE_INPUTS}*"
    scores = f"{DataPrefix.SCORES}*"
    return (
        FunctionSpec(
            name="score-start",
            handler=HANDLERS.format("score_start"),
            description="Starts a batch scoring job for a request file or a person, its version fixed",
            memory_mb=256,
            timeout_s=60,
            env_var=EnvVar.SCORE_START_FUNCTION,
            permissions=(
                read_objects("data", f"{DataPrefix.SCORE_REQUESTS}*"),
                # Listing the prefix: a job over nothing is refused before it starts.
                list_bucket("data"),
                write_objects("data", f"{DataPrefix.SCORES}*/refused/*"),
                *_registry(write=False),
                Permission(actions=("states:StartExecution",), resource=StateMachineRef(machine="scoring")),
            ),
        ),
        FunctionSpec(
            name="score",
            handler=HANDLERS.format("score"),
            description="Scores one file of a job through the serving runtime; predictions and captures",
            memory_mb=2048,
            timeout_s=900,
            permissions=(
                read_objects("data", inputs),
                # Without ListBucket, S3 answers 403 rather than 404 for a file outcome not written yet.
                list_bucket("data"),
                read_objects("data", scores),
                write_objects("data", scores),
                read_table("registry"),
                read_objects("artifacts", f"{ArtifactPrefix.MODELS}*"),
                Permission(
                    actions=("firehose:PutRecord", "firehose:PutRecordBatch"),
                    resource=StreamRef(stream="captures"),
                ),
            ),
        ),
        FunctionSpec(
            name="score-finish",
            handler=HANDLERS.format("score_finish"),
            description="Writes a scoring job's manifest and records its lineage",
            memory_mb=512,
            timeout_s=300,
            permissions=(
                read_objects("data", scores),
                write_objects("data", scores),
                append_table("metadata"),
            ),
        ),
    )


def _scoring_workflow() -> StateMachineSpec:
    """The scoring state machine's role: its Distributed Map lists the job's prefix and starts, follows and
    stops its own child executions (the IAM a Distributed Map needs besides invoking its functions)."""
    return StateMachineSpec(
        name="scoring",
        definition=scoring_definition,
        env_var=EnvVar.SCORING_STATE_MACHINE_ARN,
        permissions=(
            Permission(actions=("s3:ListBucket",), resource=BucketRef(bucket="data")),
            Permission(actions=("states:StartExecution",), resource=StateMachineRef(machine="scoring")),
            Permission(
                actions=("states:DescribeExecution", "states:StopExecution"),
                resource=StateMachineRef(machine="scoring", map_runs=True),
            ),
        ),
    )


# Where refused feature-source files go (shared.featurestore.ingest.QUARANTINE_PREFIX, under quarantine/).
FEATURE_QUARANTINE = "_feature-sources/"


def _feature_store_functions() -> tuple[FunctionSpec, ...]:
    """The features function: feature-source files in, the offline store and the online table out. It moves
    only feature-source files (into quarantine), and touches no model, registry, contract or pipeline."""
    return (
        FunctionSpec(
            name="features",
            handler=HANDLERS.format("features"),
            description="Ingests a feature file: validated against its view, offline Parquet, online latest",
            memory_mb=2048,
            timeout_s=300,
            permissions=(
                _feature_views(),
                # Without ListBucket, S3 answers 403 rather than 404 for an offline object not written yet.
                list_bucket("data"),
                _move_objects("data", f"{DataPrefix.FEATURE_SOURCES}*"),
                read_objects("data", f"{DataPrefix.FEATURES}*"),
                write_objects("data", f"{DataPrefix.FEATURES}*"),
                write_objects("data", f"{DataPrefix.QUARANTINE}{FEATURE_QUARANTINE}*"),
                # The conditional write that keeps the newest row per entity; nothing reads the table here.
                Permission(actions=("dynamodb:PutItem",), resource=TableRef(table="features")),
                # Lineage: each source file version to the offline objects it became.
                append_table("metadata"),
            ),
        ),
    )


FEATURE_NOTIFICATIONS = (Notification(prefix=DataPrefix.FEATURE_SOURCES.value, function="features"),)
MONITORING_NOTIFICATIONS = (Notification(prefix=DataPrefix.LABELS.value, function="labels"),)
MONITORING_SCHEDULES = (
    ScheduleSpec(name="monitor", expression=DEFAULT_MONITOR_SCHEDULE, function="monitor"),
)


PREDICT_ROUTES = (
    RouteSpec(method="POST", path="/models/{model}/predict", function="predict"),
    RouteSpec(method="GET", path="/models/{model}", function="predict"),
    RouteSpec(method="GET", path="/health", function="predict", authorized=False),
    RouteSpec(method="GET", path="/openapi.json", function="predict", authorized=False),
)


def flywheel_stack(config: StackConfig) -> StackSpec:
    """The stack for one environment; ``config`` carries its sizes, schedules and retention."""
    spec = StackSpec(
        project=PROJECT,
        buckets=(
            BucketSpec(
                name="data",
                prefixes=tuple(p.value for p in DataPrefix),
                lifecycle=(
                    LifecycleRule(
                        prefix=DataPrefix.CAPTURES.value,
                        infrequent_access_days=30 if config.capture_retention_days > 30 else None,
                        expire_days=config.capture_retention_days,
                    ),
                ),
                notifications=(
                    Notification(prefix=DataPrefix.INCOMING.value, function="trigger"),
                    *MONITORING_NOTIFICATIONS,
                    *FEATURE_NOTIFICATIONS,
                    Notification(prefix=DataPrefix.SCORE_REQUESTS.value, function="score-start"),
                ),
                env_var=EnvVar.DATA_BUCKET,
            ),
            BucketSpec(
                name="artifacts",
                prefixes=tuple(p.value for p in ArtifactPrefix),
                env_var=EnvVar.ARTIFACTS_BUCKET,
            ),
        ),
        tables=(
            TableSpec(name="registry", env_var=EnvVar.REGISTRY_TABLE, **_SINGLE_TABLE),
            TableSpec(name="metadata", env_var=EnvVar.METADATA_TABLE, **_SINGLE_TABLE),
            # Powertools idempotency: key 'id', records expire through 'expiration'.
            TableSpec(
                name="idempotency",
                partition_key=Key(name="id"),
                ttl_attribute="expiration",
                env_var=EnvVar.IDEMPOTENCY_TABLE,
            ),
            # The feature store's online table: one item per (view, entity), the latest values.
            TableSpec(
                name="features",
                partition_key=Key(**ONLINE_TABLE_KEYS["partition_key"]),
                env_var=EnvVar.FEATURES_TABLE,
            ),
        ),
        functions=(
            *_functions(),
            *_serving_functions(),
            *_monitoring_functions(),
            *_feature_store_functions(),
            *_scoring_functions(),
        ),
        routes=PREDICT_ROUTES,
        schedules=(
            ScheduleSpec(name="retrain", expression=DEFAULT_RETRAIN_SCHEDULE, function="trigger"),
            *MONITORING_SCHEDULES,
        ),
        tasks=_tasks(),
        state_machine=StateMachineSpec(
            name="pipeline", definition=pipeline_definition, env_var=EnvVar.STATE_MACHINE_ARN
        ),
        workflows=(_scoring_workflow(),),
        capture=CaptureStreamSpec(
            name="captures",
            bucket="data",
            prefix=DataPrefix.CAPTURES.value,
            error_prefix=DataPrefix.CAPTURE_ERRORS.value,
            env_var=EnvVar.CAPTURE_STREAM,
        ),
    )
    return with_overrides(
        spec, config.memory_mb, config.timeout_s, config.schedules, config.reserved_concurrency
    )
