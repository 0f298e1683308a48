"""Validate and Train as ECS Fargate tasks on the local cloud: Flywheel's real stack (dev's automatic
policy), the contract's ``compute`` block, the Choice before each step, ``ecs:runTask.sync`` in moto's
interpreter and each task's container command run as a process of its own (infra/local/containers.py).

Given a contract that asks for Fargate, or ``compute: auto`` whose estimate exceeds a deliberately small
function, a file's run validates and trains on tasks and reaches production, and the run says where each
step ran and why. Given a task whose container exits non-zero, the run fails with the step's own error and
production stays where it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.local import LocalCloud
from shared.metadata import RunStatus, StepStatus
from shared.services import services
from shared.storage import ObjectRef
from tests.integration.test_delivery import ENVIRONMENT, MODEL, Delivery, Finished

pytestmark = pytest.mark.integration

FARGATE = {"engine": "fargate", "cpu": 4096, "memory": 30720}
PLACED = ["PlanValidate", "ValidateEngine", "ValidateOnFargate", "CollectValidate"]
TRAINED = ["PlanTrain", "TrainEngine", "TrainOnFargate", "CollectTrain"]


def cloud(memory_mb: dict[str, int] | None = None, **contract: object) -> Iterator[Delivery]:
    config = StackConfig.from_stack_file("dev")
    if memory_mb:
        config = config.model_copy(update={"memory_mb": memory_mb})
    local = LocalCloud(flywheel_stack(config), config)
    local.environment.update(ENVIRONMENT)
    with local.in_process():
        delivery = Delivery(local, services())
        delivery.put_contract(**contract)
        yield delivery


def placed(done: Finished) -> dict[str, tuple[str | None, str | None]]:
    return {s.name: (s.engine, s.engine_reason) for s in done.steps if s.name in ("validate", "train")}


@pytest.fixture(scope="class")
def fargate() -> Iterator[Delivery]:
    yield from cloud(compute=FARGATE)


@pytest.fixture(scope="class")
def first(fargate: Delivery) -> Finished:
    return fargate.finish(fargate.upload("incoming/churn/2026-01.csv"))


class TestFargateByContract:
    def test_a_contract_asking_for_fargate_validates_and_trains_on_tasks_to_production(
        self, fargate: Delivery, first: Finished
    ) -> None:
        """Given compute: {engine: fargate}, when a file arrives, then Validate and Train each run as a task
        (a process of its own, not this one), the state comes back through Collect, and the candidate is
        promoted; each step records that it ran on fargate because the contract asked."""
        assert first.status == "SUCCEEDED", first.run.error
        entered = first.entered()
        assert entered[1:9] == PLACED + TRAINED
        assert "Validate" not in entered and "Train" not in entered
        assert first.run.status is RunStatus.SUCCEEDED
        assert fargate.production() == first.version == 1
        reason = "the contract asks for fargate (4096 cpu, 30720 MiB)"
        assert placed(first) == {"validate": ("fargate", reason), "train": ("fargate", reason)}
        assert all(s.status is StepStatus.SUCCEEDED for s in first.steps)

        runs = fargate.cloud.containers.runs
        assert [r.command[-1] for r in runs] == ["validate", "train"]
        assert all(r.exit_code == 0 and r.process.pid != os.getpid() for r in runs)
        # The task got its state by reference, and the task size the plan chose as its overrides.
        assert all(
            r.environment["FLYWHEEL_TASK_INPUT"].endswith(f"/{r.command[-1]}/input.json") for r in runs
        )
        ecs = fargate.cloud.client("ecs")
        cluster = fargate.cloud.names.cluster_arn()
        (task,) = ecs.describe_tasks(cluster=cluster, tasks=[runs[1].task_arn])["tasks"]
        assert (task["lastStatus"], task["stoppedReason"], task["containers"][0]["exitCode"]) == (
            "STOPPED",
            "Essential container in task exited",
            0,
        )
        assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("4096", "30720")

    def test_flywheel_runs_show_says_where_each_step_ran_and_why(
        self, fargate: Delivery, first: Finished
    ) -> None:
        shown = fargate.flywheel("runs", "show", first.run.run_id)
        assert shown.exit_code == 0, shown.output
        assert "RAN ON" in shown.output
        assert any(
            line.split()[:3] == ["train", "succeeded", first.steps[1].started_at.strftime("%Y-%m-%d")]
            and "fargate" in line
            for line in shown.output.splitlines()
        )
        assert "validate on fargate: the contract asks for fargate" in shown.output
        assert "train on fargate: the contract asks for fargate" in shown.output

    def test_a_task_that_exits_non_zero_fails_the_run_with_its_error_and_leaves_production(
        self, fargate: Delivery, first: Finished
    ) -> None:
        """Given production at v1, when Train's task fails inside its container (the one dataset it trains
        on is gone: its object version was deleted behind Flywheel's back, which only the task reads), then
        the container exits 1, Step Functions fails the state (States.TaskFailed), RecordFailure records the
        step's own error with the exit code, and production stays at v1."""
        (dataset,) = fargate.svc.metadata.list_datasets(MODEL)
        ref = ObjectRef.parse(dataset.uri)
        fargate.cloud.client("s3").delete_object(Bucket=ref.bucket, Key=ref.key, VersionId=dataset.version_id)
        done = fargate.finish(fargate.start())

        assert done.status == "FAILED"
        assert done.entered()[-4:] == ["TrainOnFargate", "TrainFailed", "RecordFailure", "Failed"]
        assert done.run.status is RunStatus.FAILED
        error = done.run.error
        assert error is not None and error.step == "train"
        assert error.type == "NotFoundError"
        assert ref.key in error.message
        assert "fargate task stopped: Essential container in task exited, exit code 1" in error.message
        (train,) = [s for s in done.steps if s.name == "train"]
        assert (train.status, train.engine) == (StepStatus.FAILED, "fargate")
        assert fargate.cloud.containers.runs[-1].exit_code == 1
        assert fargate.production() == 1


def test_auto_sends_a_step_whose_estimate_exceeds_its_function_to_a_task() -> None:
    """Given compute: auto and functions of 256 MiB (under the interpreter's own baseline), when a file
    arrives, then the plan's estimate exceeds the functions and both steps run as tasks sized from it; the
    run records the estimate as the reason."""
    for delivery in cloud(memory_mb={"validate": 256, "train": 256}, compute="auto"):
        done = delivery.finish(delivery.upload("incoming/churn/2026-02.csv"))
        assert done.status == "SUCCEEDED", done.run.error
        assert done.entered()[1:9] == PLACED + TRAINED
        assert delivery.production() == done.version
        for step, (engine, reason) in placed(done).items():
            assert engine == "fargate"
            assert reason and reason.startswith("auto: ")
            assert "over 80% of the function's 256 MiB" in reason, (step, reason)


def test_without_a_compute_block_the_steps_run_on_their_functions_and_say_so() -> None:
    for delivery in cloud():
        done = delivery.finish(delivery.upload("incoming/churn/2026-03.csv"))
        assert done.status == "SUCCEEDED", done.run.error
        entered = done.entered()
        assert entered[1:4] == ["PlanValidate", "ValidateEngine", "Validate"]
        assert "TrainOnFargate" not in entered and "Train" in entered
        assert placed(done) == {
            "validate": ("lambda", "no compute block: the validate function"),
            "train": ("lambda", "no compute block: the train function"),
        }
        assert delivery.cloud.containers.runs == []
