"""The whole loop on the local cloud, with every AWS call a function makes checked against its spec grants.

moto does not evaluate IAM, so a grant narrower than what a step really sends would pass every other test
and fail only in AWS. Here each call a function's code makes (through any botocore client, in the Lambda
thread the local runtime runs it on or in a pool that thread starts) is recorded with the function it
belongs to, turned into the IAM actions and resources AWS would authorise it by (``TransactWriteItems``
item by item, ``CopyObject`` as a read of the source and a put of the destination), and matched against
that function's permissions in the spec, object keys against the grant's pattern as IAM does. The loop:
a model's first file through the pipeline to production, a file refused into quarantine, traffic through
the predict route, labels for it, the monitor retraining on the feedback it writes, and a feature file
ingested (and a bad one refused) by the features function; and, on staging's policy, a promotion a person
approves and one a person rejects, whose staging alias the approval function removes (a tombstone).
"""

from __future__ import annotations

import fnmatch
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.client import BaseClient
from click.testing import CliRunner

from cli.main import main as flywheel
from examples.churn import generate
from examples.profiles import profile_updates
from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from infra.spec import (
    BucketRef,
    FunctionRef,
    FunctionSpec,
    ResourceRef,
    StackSpec,
    StateMachineRef,
    StreamRef,
    TableRef,
)
from shared.env_names import EnvVar
from shared.errors import NotFoundError
from shared.featurestore.catalog import put_view
from shared.featurestore.contracts import put_contract
from shared.metadata import DatasetKind, Run, StepStatus
from shared.monitoring.monitor import MonitorOutcome
from shared.pipeline.delivery import STAGING_ALIAS
from shared.registry import PRODUCTION_ALIAS
from shared.services import Services
from tests.fixtures.monitoring import label_csv, monitoring_contract, request_rows
from tests.fixtures.serving import predict_rows

pytestmark = pytest.mark.integration

MODEL = "churn-iam"
VIEW = "customer_profile"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERVING = {"smoke_rows": 8, "load_requests": 10, "load_concurrency": 2}
# Staging's candidates all pass the gate: what its scenario is about comes after Register.
GATES = {"min": {"roc_auc": 0.6}, "max_regression": {"roc_auc": 1.0}}
# predict re-reads the production alias this often, so the post-deploy check sees a promotion quickly.
ENVIRONMENT = {EnvVar.ALIAS_REFRESH_SECONDS.value: "0.5"}
TIMEOUT_S = 180
# The local runtime names the thread a handler runs on lambda-<function name>-<request id prefix>.
THREAD_PREFIX = "lambda-"


@dataclass(frozen=True)
class Call:
    """One API call a function made: its operation and parameters, as the client was asked."""

    function: str
    service: str
    operation: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Need:
    """What IAM authorises a call by: an action on a resource (kind and names, as the spec refers to it)."""

    action: str
    kind: str
    name: str = ""
    detail: str | None = None  # an object's key; a table's index


class Recorder:
    """Every call made on behalf of a function, attributed by the thread it runs on."""

    def __init__(self, functions: dict[str, str]) -> None:
        self._logical = {deployed: logical for logical, deployed in functions.items()}
        self._owner = threading.local()
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def function(self) -> str | None:
        """The function the current thread works for: its own Lambda thread, else the one that started
        the pool it runs in; None for the test itself and the local cloud."""
        name = threading.current_thread().name
        if name.startswith(THREAD_PREFIX):
            deployed = name.removeprefix(THREAD_PREFIX).rsplit("-", 1)[0]
            return self._logical.get(deployed)
        owner: str | None = getattr(self._owner, "function", None)
        return owner

    def record(self, client: Any, operation: str, params: dict[str, Any]) -> None:
        function = self.function()
        if function is not None:
            service = client.meta.service_model.service_name
            with self._lock:
                self.calls.append(Call(function, service, operation, dict(params)))

    def attributed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` run for the function the submitting thread works for."""
        owner = self.function()

        def run(*args: Any, **kwargs: Any) -> Any:
            self._owner.function = owner
            try:
                return fn(*args, **kwargs)
            finally:
                self._owner.function = None

        return run


def needs(call: Call, names: Names) -> list[Need]:
    """The actions and resources AWS authorises ``call`` by."""
    p = call.params
    match call.service, call.operation:
        case "s3", _:
            return _s3_needs(call, names)
        case "dynamodb", _:
            return _dynamodb_needs(call, names)
        case "lambda", "Invoke":
            return [Need("lambda:InvokeFunction", "function", names.function(p["FunctionName"]))]
        case "firehose", "PutRecord" | "PutRecordBatch":
            return [Need(f"firehose:{call.operation}", "stream", names.stream(p["DeliveryStreamName"]))]
        case "stepfunctions", "StartExecution":
            return [Need("states:StartExecution", "state_machine")]
        case "stepfunctions", "DescribeExecution" | "StopExecution":
            return [Need(f"states:{call.operation}", "state_machine", detail="executions")]
    raise AssertionError(
        f"{call.function} called {call.service}:{call.operation}, which this test cannot map"
    )


def _s3_needs(call: Call, names: Names) -> list[Need]:
    p = call.params
    match call.operation:
        case "PutObject":
            return [Need("s3:PutObject", "object", names.bucket(p["Bucket"]), p["Key"])]
        case "GetObject" | "HeadObject":
            return [_object_read(names.bucket(p["Bucket"]), p["Key"], p.get("VersionId"))]
        case "CopyObject":
            source = p["CopySource"]
            return [
                _object_read(names.bucket(source["Bucket"]), source["Key"], source.get("VersionId")),
                Need("s3:PutObject", "object", names.bucket(p["Bucket"]), p["Key"]),
            ]
        case "DeleteObject":
            action = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
            return [Need(action, "object", names.bucket(p["Bucket"]), p["Key"])]
        case "ListObjectsV2" | "ListObjects":
            return [Need("s3:ListBucket", "bucket", names.bucket(p["Bucket"]))]
        case "ListObjectVersions":
            return [Need("s3:ListBucketVersions", "bucket", names.bucket(p["Bucket"]))]
    raise AssertionError(f"{call.function} called s3:{call.operation}, which this test cannot map")


def _dynamodb_needs(call: Call, names: Names) -> list[Need]:
    p = call.params
    match call.operation:
        case "TransactWriteItems":
            # AWS authorises a transaction item by item, each by its own action.
            actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            actions["ConditionCheck"] = "ConditionCheckItem"
            return [
                Need(f"dynamodb:{actions[kind]}", "table", names.table(entry["TableName"]))
                for item in p["TransactItems"]
                for kind, entry in item.items()
            ]
        case "BatchGetItem" | "BatchWriteItem":
            return [Need(f"dynamodb:{call.operation}", "table", names.table(t)) for t in p["RequestItems"]]
    return [Need(f"dynamodb:{call.operation}", "table", names.table(p["TableName"]), p.get("IndexName"))]


def _object_read(bucket: str, key: str, version_id: str | None) -> Need:
    return Need("s3:GetObjectVersion" if version_id else "s3:GetObject", "object", bucket, key)


@dataclass(frozen=True)
class Names:
    """Deployed names back to the spec's logical ones."""

    cloud: LocalCloud
    spec: StackSpec

    def bucket(self, deployed: str) -> str:
        return _logical(self.cloud.names.buckets, deployed)

    def table(self, deployed: str) -> str:
        return _logical(self.cloud.names.tables, deployed)

    def stream(self, deployed: str) -> str:
        assert self.spec.capture is not None and deployed == self.cloud.names.stream
        return self.spec.capture.name

    def function(self, deployed: str) -> str:
        return _logical(self.cloud.names.functions, deployed.rsplit(":function:", 1)[-1].split(":", 1)[0])


def _logical(names: Mapping[str, str], deployed: str) -> str:
    return next(logical for logical, physical in names.items() if physical == deployed)


def allowed(function: FunctionSpec, need: Need) -> bool:
    """Whether one of the function's permissions grants ``need``."""
    return any(need.action in p.actions and _covers(p.resource, need) for p in function.permissions)


def _covers(resource: ResourceRef, need: Need) -> bool:
    """Whether a permission's resource covers what ``need`` is on, matching keys as IAM matches ARNs."""
    match resource:
        case BucketRef(bucket=bucket, objects=None):
            return need.kind == "bucket" and bucket == need.name
        case BucketRef(bucket=bucket, objects=str(pattern)):
            # IAM's '*' matches any run of characters, '/' included, as fnmatch's does.
            matched = fnmatch.fnmatchcase(str(need.detail), pattern)
            return need.kind == "object" and bucket == need.name and matched
        case TableRef(table=table, index=index):
            return need.kind == "table" and (table, index) == (need.name, need.detail)
        case FunctionRef(function=name) | StreamRef(stream=name):
            return need.kind == resource.kind and name == need.name
        case StateMachineRef(executions=executions):
            return need.kind == "state_machine" and executions == (need.detail == "executions")
    return False


@dataclass
class Loop:
    cloud: LocalCloud
    svc: Services
    url: str
    recorder: Recorder

    def runs(self) -> list[Run]:
        return self.svc.metadata.list_runs(MODEL, limit=100)

    def finish(self, run: Run) -> None:
        assert run.execution_arn
        described = self.cloud.wait_for_execution(run.execution_arn, timeout_s=TIMEOUT_S)
        assert described["status"] == "SUCCEEDED", described

    def put(self, key: str, body: bytes) -> None:
        self.cloud.client("s3").put_object(Bucket=self.svc.settings.data_bucket, Key=key, Body=body)

    def put_contract(self, **blocks: Any) -> None:
        contract = monitoring_contract(MODEL)
        document = {**contract.model_dump(mode="json", exclude_none=True), "serving": SERVING, **blocks}
        put_contract(self.svc.objects, self.svc.settings, json.dumps(document))

    def predict(self, rows: list[dict[str, Any]]) -> list[str]:
        return predict_rows(self.url, MODEL, rows)

    def monitor(self) -> MonitorOutcome:
        errored, answer = self.cloud.invoke(self.cloud.names.functions["monitor"], {"model": MODEL})
        assert not errored, answer
        return MonitorOutcome.model_validate(answer["models"][0])

    def start(self) -> Run:
        """A manual run (`flywheel run`): trains on the datasets there are."""
        errored, answer = self.cloud.invoke(
            self.cloud.names.functions["trigger"], {"model": MODEL, "requested_by": "test"}
        )
        assert not errored, answer
        return self.svc.metadata.get_run(answer["runs"][0]["run_id"])

    def awaiting_approval(self, run: Run) -> int:
        """The version the run staged, once the approval function keeps its task token."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            steps = self.svc.metadata.list_steps(run.run_id)
            if steps and (steps[-1].name, steps[-1].status) == ("approval", StepStatus.RUNNING):
                for version in self.svc.registry.search_model_versions(MODEL):
                    pending = version.pending_approval
                    if pending is not None and pending.run_id == run.run_id:
                        return version.version
            assert time.monotonic() < deadline, "no approval was requested"
            time.sleep(0.05)

    def decide(self, *args: str) -> None:
        """`flywheel approve|reject ...` as a person types it (their credentials: not recorded)."""
        result = CliRunner().invoke(flywheel, list(args), env=self.cloud.exports(), catch_exceptions=False)
        assert result.exit_code == 0, result.output


def automatic_loop(loop: Loop) -> None:
    """Dev: a first file to production, a refused file, traffic whose world changed, its labels, the
    monitor's retraining on the feedback, a feature file and a bad one."""
    loop.put_contract()
    loop.put(f"incoming/{MODEL}/2026-01.csv", generate(1000, 1).to_csv(index=False).encode())
    [first] = loop.runs()
    loop.finish(first)
    assert loop.svc.registry.get_alias(MODEL, PRODUCTION_ALIAS).version == 1
    assert loop.monitor().action == "insufficient_data"  # verification's own traffic, read and set aside

    loop.put(f"incoming/{MODEL}/broken.csv", b"not,a,churn,file\n1,2,3,4\n")

    frame = generate(300, seed=51, concept_drift=1.0)
    ids = loop.predict(request_rows(frame))
    loop.put(f"labels/{MODEL}/2026-02-labels.csv", label_csv(frame, ids))
    outcome = loop.monitor()
    assert (outcome.action, outcome.reason) == ("retrain", "degradation"), outcome
    loop.finish(loop.svc.metadata.get_run(str(outcome.run_id)))
    assert loop.svc.metadata.list_datasets(MODEL, DatasetKind.FEEDBACK)

    put_view(loop.svc.objects, loop.svc.settings.data_bucket, (EXAMPLES / f"{VIEW}.yaml").read_text())
    updates = profile_updates(generate(200, seed=11), seed=11)
    text: str = updates.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    loop.put(f"feature-sources/{VIEW}/updates.csv", text.encode())
    loop.put(f"feature-sources/{VIEW}/bad.csv", b"customer_id,segment\nc-1,gold\n")


def approval_loop(loop: Loop) -> None:
    """Staging: a first version approved into production, then a second one rejected; the approval
    function removes the staging alias that pointed at it."""
    loop.put_contract(gates=GATES)
    loop.put(f"incoming/{MODEL}/2026-01.csv", generate(1000, 1).to_csv(index=False).encode())
    [first] = loop.runs()
    version = loop.awaiting_approval(first)
    loop.decide("approve", f"{MODEL}:{version}", "--by", "alice", "--comment", "looks right")
    loop.finish(first)
    assert loop.svc.registry.get_alias(MODEL, PRODUCTION_ALIAS).version == version

    second = loop.start()
    version = loop.awaiting_approval(second)
    assert loop.svc.registry.get_alias(MODEL, STAGING_ALIAS).version == version
    loop.decide("reject", f"{MODEL}:{version}", "--by", "bob", "--comment", "not before the launch")
    loop.finish(second)
    with pytest.raises(NotFoundError):
        loop.svc.registry.get_alias(MODEL, STAGING_ALIAS)


SCENARIOS: dict[str, Callable[[Loop], None]] = {"dev": automatic_loop, "staging": approval_loop}
# What each scenario must have exercised for the check to mean something: the functions that ran.
EXERCISED = {
    "dev": {
        "trigger",
        "validate",
        "train",
        "evaluate",
        "register",
        "verify",
        "promote",
        "post-deploy-check",
        "finish",
        "record-failure",
        "predict",
        "labels",
        "monitor",
        "features",
    },
    "staging": {"trigger", "register", "verify", "promote", "approval", "post-deploy-check", "finish"},
}


@contextmanager
def recording(cloud: LocalCloud) -> Iterator[Recorder]:
    """The cloud in this process, with every botocore call recorded for the function that made it."""
    recorder = Recorder(dict(cloud.names.functions))
    make_api_call = BaseClient._make_api_call
    submit = ThreadPoolExecutor.submit

    def recorded_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recorder.record(client, operation, params)
        return make_api_call(client, operation, params)

    def attributed_submit(pool: ThreadPoolExecutor, fn: Callable[..., Any], /, *a: Any, **k: Any) -> Any:
        return submit(pool, recorder.attributed(fn), *a, **k)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recorded_call)
        patch.setattr(ThreadPoolExecutor, "submit", attributed_submit)
        with cloud.in_process():
            yield recorder


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def recorded(request: pytest.FixtureRequest) -> Iterator[tuple[str, Loop]]:
    """One scenario run on its stack's config, every function's calls recorded: (stack, loop)."""
    stack: str = request.param
    config = StackConfig.from_stack_file(stack)
    cloud = LocalCloud(flywheel_stack(config), config)
    cloud.environment.update(ENVIRONMENT)
    with recording(cloud) as recorder:
        from shared.services import services  # after the cloud set the environment

        loop = Loop(cloud, services(), cloud.start_gateway(), recorder)
        SCENARIOS[stack](loop)
        yield stack, loop


def test_every_call_of_every_function_is_allowed_by_its_spec_permissions(recorded: tuple[str, Loop]) -> None:
    """Given a scenario ran, each function's calls recorded
    When each call is turned into the actions and resources IAM would check
    Then every one is granted by that function's permissions in the spec: the narrowed grants (a run's
    own files, feedback datasets only, no registry deletes) are enough for the real loop."""
    _, loop = recorded
    spec = loop.cloud.spec
    names = Names(loop.cloud, spec)
    refused = sorted(
        {
            (call.function, need)
            for call in loop.recorder.calls
            for need in needs(call, names)
            if not allowed(spec.function(call.function), need)
        },
        key=repr,
    )
    assert not refused, "\n".join(f"{function}: {need}" for function, need in refused)


def test_the_scenario_exercised_its_functions_and_the_writes_the_grants_are_about(
    recorded: tuple[str, Loop],
) -> None:
    """The check above is worth what the scenario covered: its functions ran, and the writes the narrowed
    grants are about were made (a run's model and evaluation, a feedback dataset, quarantined files,
    feature files; registry transactions; on staging, the staging alias's tombstone)."""
    stack, loop = recorded
    calls = loop.recorder.calls
    assert {c.function for c in calls} >= EXERCISED[stack]
    registry = loop.cloud.names.tables["registry"]
    writers = {c.function for c in calls if c.operation == "TransactWriteItems"}
    assert writers >= ({"register", "promote"} if stack == "dev" else {"register", "approval"})
    assert not [c for c in calls if c.operation in {"DeleteItem", "BatchWriteItem"}]
    if stack == "staging":
        return
    puts: dict[str, set[str]] = {}
    for c in calls:
        if c.operation == "PutObject":
            puts.setdefault(c.function, set()).add(c.params["Key"])
    assert [k for k in puts["train"] if k.endswith("/model.pkl")]
    assert [k for k in puts["evaluate"] if k.endswith("/evaluation.json")]
    assert [k for k in puts["monitor"] if k.startswith(f"datasets/{MODEL}/feedback/")]
    assert [k for k in puts["validate"] if k.startswith(f"quarantine/{MODEL}/")]
    assert [k for k in puts["features"] if k.startswith(f"features/{VIEW}/")]
    assert [k for k in puts["features"] if k.startswith(f"quarantine/_feature-sources/{VIEW}/")]
    assert {c.function for c in calls if c.operation == "PutItem" and c.params["TableName"] != registry} >= {
        "features"
    }
