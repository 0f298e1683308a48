"""The one seam between moto and the local runtime, pinned, with the other hooks the local cloud installs.

The local cloud replaces ``moto.awslambda.models.LambdaFunction._invoke_lambda`` (moto's Docker runner).
If a moto upgrade renames it, changes its signature, or stops routing Invoke, S3 notifications or Step
Functions tasks through it, these tests fail and say so, instead of functions silently not running. The
same goes for DynamoDB's request handler (:mod:`infra.local.atomicity`), moto's instance tracking and
the collector's reach (:mod:`infra.local.memory`), and Firehose's S3 delivery (:mod:`infra.local.firehose`).
"""

from __future__ import annotations

import inspect
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import moto
import pytest
from moto.awslambda.models import LambdaFunction

from infra.local import LocalCloud
from infra.local.runtime import SEAM
from tests.conftest import free_port
from tests.fixtures.stack import platform_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_installed_moto_is_the_pinned_version() -> None:
    pinned = re.search(r"^moto\[server\]==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert pinned, "requirements-dev.txt must pin moto with =="
    assert moto.__version__ == pinned.group(1), (
        f"moto {moto.__version__} is installed but {pinned.group(1)} is pinned: "
        "re-check the seam in infra/local/runtime.py"
    )


def test_the_seam_is_motos_docker_runner_with_the_expected_signature() -> None:
    original = getattr(LambdaFunction, SEAM)
    assert list(inspect.signature(original).parameters) == ["self", "event"]
    assert "docker" in inspect.getsource(original), (
        "moto no longer runs Lambda code in Docker here: the seam moved"
    )


def test_invoke_notifications_and_state_machine_tasks_all_cross_the_seam() -> None:
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        assert getattr(LambdaFunction, SEAM).__name__ == "invoke_in_process"
        errored, payload = cloud.invoke("plat-local-echo", {"via": "invoke"})
        cloud.client("s3").put_object(Bucket=cloud.names.buckets["data"], Key="incoming/seam.csv", Body=b"x")
        execution = cloud.start_execution({"mode": "echo"}, name="seam")
        described = cloud.wait_for_execution(execution)

        reached = [i.function_name for i in cloud.runtime.invocations]
        assert not errored
        assert payload["via"] == "invoke"
        assert described["status"] == "SUCCEEDED", described
        assert json.loads(described["output"])["function"] == "plat-local-echo"
        assert reached == ["plat-local-echo", "plat-local-on-upload", "plat-local-echo"]
    assert getattr(LambdaFunction, SEAM).__name__ == "_invoke_lambda", "the seam must be restored on exit"


def test_dynamodb_requests_are_atomic_while_the_cloud_runs() -> None:
    from moto.dynamodb.responses import DynamoHandler

    from infra.local.atomicity import HOOK

    original = getattr(DynamoHandler, HOOK)
    assert list(inspect.signature(original).parameters) == ["self"]
    with LocalCloud(platform_stack()).in_process():
        assert getattr(DynamoHandler, HOOK) is not original
        assert getattr(DynamoHandler, HOOK).__wrapped__ is original
    assert getattr(DynamoHandler, HOOK) is original


def test_dynamodb_objects_are_not_kept_while_the_cloud_runs() -> None:
    from moto.core.common_models import BaseModel

    from infra.local.memory import TRACKED, dynamodb_models

    assert f"cls.{TRACKED}.append(instance)" in inspect.getsource(BaseModel.__new__), (
        "moto no longer tracks model instances the way infra/local/memory.py expects"
    )
    models = {model.__name__: model for model in dynamodb_models()}
    assert {"Item", "Table", "GlobalSecondaryIndex"} <= set(models)
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        dynamodb = cloud.client("dynamodb")
        table = cloud.names.tables["events"]
        key = {"pk": {"S": "run-1"}, "sk": {"S": "step"}}
        for n in range(100):
            dynamodb.put_item(TableName=table, Item={**key, "n": {"N": str(n)}})
            # A transaction deep-copies the table it writes to, to restore it if it fails.
            dynamodb.transact_write_items(
                TransactItems=[{"Put": {"TableName": table, "Item": {**key, "n": {"N": str(n)}}}}]
            )
        assert dynamodb.get_item(TableName=table, Key=key)["Item"]["n"] == {"N": "99"}
        kept = {name: len(getattr(model, TRACKED)) for name, model in models.items()}
        assert set(kept.values()) == {0}, f"moto still references every object it made: {kept}"
    assert all(type(getattr(m, TRACKED)) is list for m in models.values()), "moto's tracking is back after"


def test_long_lived_objects_are_frozen_while_the_cloud_runs_and_given_back_after() -> None:
    import gc

    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        provisioned = gc.get_freeze_count()
        assert provisioned > 0, "what is alive once the cloud is provisioned stays out of the collector"
        cloud.client("lambda").invoke(FunctionName="plat-local-echo", Payload=b"{}")
        assert gc.get_freeze_count() >= provisioned
    assert gc.get_freeze_count() == 0, "the frozen objects must be collectable again once the cloud stops"


def test_firehose_evaluates_s3_prefixes_while_the_cloud_runs() -> None:
    from moto.firehose.models import FirehoseBackend

    from infra.local.firehose import HOOK

    original = getattr(FirehoseBackend, HOOK)
    assert list(inspect.signature(original).parameters) == [
        "self",
        "delivery_stream_name",
        "version_id",
        "s3_destination",
        "records",
    ]
    assert "put_s3_records" in inspect.getsource(FirehoseBackend.put_record_batch), (
        "moto's PutRecordBatch no longer delivers to S3 through the hook"
    )
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        assert getattr(FirehoseBackend, HOOK) is not original
        assert getattr(FirehoseBackend, HOOK).__wrapped__ is original
    assert getattr(FirehoseBackend, HOOK) is original
    with cloud.serving(port=free_port(), run_scheduler=False):
        assert getattr(FirehoseBackend, HOOK).__wrapped__ is original
    assert getattr(FirehoseBackend, HOOK) is original


def test_handler_failures_come_back_in_lambdas_shape() -> None:
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        lambda_ = cloud.client("lambda")
        lambda_.update_function_configuration(
            FunctionName="plat-local-echo", Handler="tests.fixtures.nowhere.handler"
        )
        missing = lambda_.invoke(FunctionName="plat-local-echo", Payload=b"{}")
        errored, broken = cloud.invoke("plat-local-broken", {"mode": "x"})

        assert "FunctionError" in missing
        body = json.loads(missing["Payload"].read())
        assert body["errorType"] == "Runtime.ImportModuleError"
        assert "tests.fixtures.nowhere" in body["errorMessage"]
        assert errored
        assert set(broken) == {"errorType", "errorMessage", "requestId", "stackTrace"}
        assert broken["errorType"] == "BrokenInputError"


def test_an_execution_environment_serves_one_request_at_a_time() -> None:
    """Concurrent invocations of one function never run its handler at once: they share its module state
    (Powertools' resolver keeps the current route on the app), which in Lambda no two requests do."""
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        cloud.client("lambda").update_function_configuration(
            FunctionName="plat-local-echo", Handler="tests.fixtures.functions.exclusive"
        )
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(lambda _: cloud.invoke("plat-local-echo", {}), range(12)))

    assert [errored for errored, _ in answers] == [False] * 12
    assert [payload["overlapped"] for _, payload in answers] == [False] * 12


# --- the container seam (infra/local/containers.py) ------------------------------------------------------


def test_the_container_seam_is_motos_ecs_run_task_with_the_expected_signature() -> None:
    """moto's ECS backend creates tasks in ``run_task`` and runs nothing; the Step Functions interpreter's
    ECS integration reaches it through RunTask and polls DescribeTasks, whose ``advance`` the seam's task
    follows its process by."""
    from moto.ecs.models import EC2ContainerServiceBackend, Task
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service as base,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
        StateTaskServiceEcs,
    )

    from infra.local import containers

    run_task = getattr(EC2ContainerServiceBackend, containers.SEAM)
    assert list(inspect.signature(run_task).parameters) == [
        "self",
        "cluster_str",
        "task_definition_str",
        "count",
        "overrides",
        "started_by",
        "tags",
        "launch_type",
        "networking_configuration",
        "group",
        "platform_version",
        "capacity_provider_strategy",
    ]
    assert "docker" not in inspect.getsource(run_task).lower(), (
        "moto's ECS now runs containers: drop the seam"
    )
    assert "task.advance()" in inspect.getsource(EC2ContainerServiceBackend.describe_tasks)
    assert list(inspect.signature(Task.advance).parameters) == ["self"]
    resolver = inspect.getsource(getattr(StateTaskServiceEcs, containers.SYNC_RESOLVER))
    assert 'last_status == "STOPPED"' in resolver and "ExitCode" not in resolver, (
        "moto's ECS .sync resolver changed: re-check how it treats a non-zero exit"
    )
    # The casing the integration leaves out: moto's base stubs it (pass), so the seam supplies it.
    for name in containers.NORMALISERS:
        assert name not in vars(StateTaskServiceEcs)
        assert inspect.getsource(getattr(base.StateTaskService, name)).rstrip().endswith("pass")


def test_a_task_runs_as_a_process_and_stops_with_its_exit_code_as_ecs_reports_it() -> None:
    """Given the platform stack on the local cloud with the container seam installed, when RunTask
    starts a task whose command exits 3, then it ran in another process with the overrides' environment,
    DescribeTasks reports it RUNNING until the process ends and then STOPPED with the exit code and ECS's
    reason, and the seam is gone after the cloud."""
    from moto.ecs.models import EC2ContainerServiceBackend

    from infra.local import containers

    original = getattr(EC2ContainerServiceBackend, containers.SEAM)
    cloud = LocalCloud(platform_stack())
    with cloud.in_process():
        assert getattr(EC2ContainerServiceBackend, containers.SEAM).__name__ == "run_task_as_processes"
        ec2, ecs = cloud.client("ec2"), cloud.client("ecs")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
        ecs.create_cluster(clusterName="seam")
        ecs.register_task_definition(
            family="seam",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[
                {"name": "step", "image": "x", "memoryReservation": 256, "command": ["python", "-c", "pass"]}
            ],
        )
        script = "import os, sys, time; time.sleep(0.5); sys.exit(int(os.environ['CODE']))"
        started = ecs.run_task(
            cluster="seam",
            taskDefinition="seam",
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}},
            overrides={
                "containerOverrides": [
                    {
                        "name": "step",
                        "command": ["python", "-c", script],
                        "environment": [{"name": "CODE", "value": "3"}],
                    }
                ]
            },
        )["tasks"][0]
        (run,) = cloud.containers.runs
        assert run.process.pid != os.getpid() and run.environment["CODE"] == "3"
        assert (
            ecs.describe_tasks(cluster="seam", tasks=[started["taskArn"]])["tasks"][0]["lastStatus"]
            == "RUNNING"
        )
        run.process.wait(timeout=30)
        (stopped,) = ecs.describe_tasks(cluster="seam", tasks=[started["taskArn"]])["tasks"]
        assert (stopped["lastStatus"], stopped["stopCode"], stopped["stoppedReason"]) == (
            "STOPPED",
            "EssentialContainerExited",
            "Essential container in task exited",
        )
        assert stopped["containers"][0]["exitCode"] == 3
    assert getattr(EC2ContainerServiceBackend, containers.SEAM) is original
