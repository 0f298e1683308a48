"""The container seam: an ECS task's command run as a separate OS process, stopping as ECS reports it.

moto's Step Functions interpreter runs ``arn:aws:states:::ecs:runTask.sync`` as AWS does: it calls ECS's
``RunTask`` and polls ``DescribeTasks`` until the task's ``lastStatus`` is ``STOPPED``. moto's ECS backend
runs no containers (its tasks go from RUNNING to STOPPED on the next describe), so
:class:`LocalContainers` replaces exactly ``EC2ContainerServiceBackend.run_task``: moto creates the task as
ever, and each task's container command then runs as a child process of its own (its own memory), with
the task definition's environment, the container overrides' environment and command, ``PYTHONPATH`` to
this checkout, and the local cloud's endpoint and credentials where ECS would give the task role. The task
reports ``RUNNING`` while the process runs and ``STOPPED`` after, with the container's real ``exitCode``
and ECS's ``stoppedReason`` ("Essential container in task exited") and ``stopCode``.

Two things of Step Functions' ECS integration moto 5.2.5 leaves out are mended in its interpreter
(:func:`ecs_integration_as_in_aws`): the casing (its base class stubs the request and response
normalisation out, so ``Cluster``/``LaunchType`` never become ECS's ``cluster``/``launchType`` and the
resolver's ``Tasks`` is never found), and what a stopped task means: one whose essential container exited
non-zero fails the state with ``States.TaskFailed``, the stopped task's description as the cause, so a
Catch sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from moto.ecs.models import EC2ContainerServiceBackend, Task
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_ecs import (
    StateTaskServiceEcs,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.utils import camel_to_snake_case

SEAM = "run_task"
SYNC_RESOLVER = "_build_sync_resolver"
NORMALISERS = ("_normalise_parameters", "_normalise_response")
REPO_ROOT = Path(__file__).resolve().parents[2]
ESSENTIAL_EXITED = "Essential container in task exited"
TASK_FAILED = "States.TaskFailed"
# What a task inherits from this process: enough to find Python and its libraries, nothing of the test's.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


@dataclass
class ContainerRun:
    """One task's container, as a process: its command, environment and what it printed."""

    task_arn: str
    command: list[str]
    environment: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    exit_code: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class _ProcessTask(Task):
    """A moto task whose status follows its container's process (set on tasks the seam started)."""

    _run: ContainerRun

    def advance(self) -> None:
        """DescribeTasks advances a task before describing it: the moment to see whether the process
        ended, so the task is described whole (its containers are serialised before its status)."""
        run = self._run
        with run.lock:
            if run.exit_code is None:
                code = run.process.poll()
                if code is not None:
                    _stopped(self, run, code)

    @property
    def status(self) -> str | None:
        return "RUNNING" if self._run.exit_code is None else "STOPPED"

    @status.setter
    def status(self, value: str) -> None:
        # StopTask: ECS stops the container (SIGTERM) and the task reports STOPPED with the given reason.
        if value == "STOPPED" and self._run.process.poll() is None:
            self._run.process.terminate()


def _stopped(task: Task, run: ContainerRun, code: int) -> None:
    run.exit_code = code
    container = task.containers[0]
    container.exitCode = code
    container.last_status = "STOPPED"
    container.reason = None if code == 0 else f"exit code {code}"  # type: ignore[attr-defined]
    task.desired_status = "STOPPED"
    task.stopped_reason = task.stopped_reason or ESSENTIAL_EXITED
    task.stop_code = "EssentialContainerExited"  # type: ignore[attr-defined]


class LocalContainers:
    """Runs ECS tasks' commands as processes; ``endpoint()`` is where they reach the local cloud."""

    def __init__(self, endpoint: Callable[[], Mapping[str, str]]) -> None:
        self._endpoint = endpoint
        self.runs: list[ContainerRun] = []

    @contextmanager
    def installed(self) -> Iterator[LocalContainers]:
        original = getattr(EC2ContainerServiceBackend, SEAM, None)
        if original is None:
            raise RuntimeError(
                f"moto's EC2ContainerServiceBackend has no {SEAM!r}: the seam moved; "
                "pin moto or update infra/local/containers.py"
            )
        containers = self

        def run_task_as_processes(
            backend: EC2ContainerServiceBackend, *args: Any, **kwargs: Any
        ) -> list[Task]:
            tasks: list[Task] = original(backend, *args, **kwargs)
            for task in tasks:
                containers.start(backend, task)
            return tasks

        setattr(EC2ContainerServiceBackend, SEAM, run_task_as_processes)
        try:
            with ecs_integration_as_in_aws():
                yield self
        finally:
            setattr(EC2ContainerServiceBackend, SEAM, original)
            self.stop_all()

    def start(self, backend: EC2ContainerServiceBackend, task: Task) -> ContainerRun:
        """Start ``task``'s container command as a process and make the task follow it."""
        definition = backend.describe_task_definition(task.task_definition_arn)
        container: dict[str, Any] = definition.container_definitions[0]
        override: dict[str, Any] = next(
            (
                o
                for o in task.overrides.get("containerOverrides", [])
                if o.get("name") in (None, container.get("name"))
            ),
            {},
        )
        command = list(override.get("command") or container.get("command") or [])
        if not command:
            raise RuntimeError(f"task {task.task_arn}: its container has no command to run")
        if command[0] in ("python", "python3"):
            command[0] = sys.executable  # the image's python: here, the one running the local cloud
        environment = {k: os.environ[k] for k in INHERITED if k in os.environ}
        for pair in (*(container.get("environment") or []), *(override.get("environment") or [])):
            environment[pair["name"]] = pair["value"]
        environment.update(self._endpoint())
        environment["PYTHONPATH"] = str(REPO_ROOT)
        log = tempfile.NamedTemporaryFile(prefix="flywheel-task-", suffix=".log", delete=False)  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603 (the task definition's own command)
            command, env=environment, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        run = ContainerRun(task.task_arn, command, environment, process, Path(log.name))
        task.__class__ = _ProcessTask
        task._run = run  # type: ignore[attr-defined]
        # ECS reports no exit code while the container runs.
        task.containers[0].exitCode = None  # type: ignore[assignment]
        task.containers[0].last_status = "RUNNING"
        self.runs.append(run)
        return run

    def stop_all(self) -> None:
        for run in self.runs:
            if run.process.poll() is None:
                run.process.terminate()
                run.process.wait(timeout=10)


@contextmanager
def ecs_integration_as_in_aws() -> Iterator[None]:
    """The interpreter's ECS integration, cased as AWS cases it and failing a task that exited non-zero."""
    missing = [
        name for name in (SYNC_RESOLVER, *NORMALISERS) if getattr(StateTaskServiceEcs, name, None) is None
    ]
    if missing:
        raise RuntimeError(f"moto's StateTaskServiceEcs has no {missing}: the seam moved")
    # What the class defines itself (the normalisers it inherits are put back by removing ours).
    saved = {name: vars(StateTaskServiceEcs).get(name) for name in (SYNC_RESOLVER, *NORMALISERS)}
    original_resolver = getattr(StateTaskServiceEcs, SYNC_RESOLVER)

    def normalise_parameters(service: StateTaskServiceEcs, parameters: dict[str, Any], *_: Any) -> None:
        shape = _operation(service, service._get_boto_service_action()).input_shape
        if shape is not None:
            service._to_boto_request(parameters, shape)

    def normalise_response(
        service: StateTaskServiceEcs,
        response: Any,
        boto_service_name: str | None = None,
        service_action_name: str | None = None,
    ) -> None:
        shape = _operation(service, service._get_boto_service_action(service_action_name)).output_shape
        if shape is not None:
            service._from_boto_response(response, shape)

    def build(service: StateTaskServiceEcs, env: Any, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        resolve = original_resolver(service, env, *args, **kwargs)

        def resolve_failing_nonzero() -> Any:
            stopped = resolve()
            if stopped and any(c.get("ExitCode") not in (0, None) for c in stopped.get("Containers", [])):
                details = TaskFailedEventDetails(
                    resourceType=service._get_sfn_resource_type(),
                    resource=service._get_sfn_resource(),
                    error=TASK_FAILED,
                    cause=json.dumps(stopped, default=str),
                )
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(taskFailedEventDetails=details),  # type: ignore[typeddict-item]
                    )
                )
            return stopped

        return resolve_failing_nonzero

    setattr(StateTaskServiceEcs, SYNC_RESOLVER, build)
    setattr(StateTaskServiceEcs, NORMALISERS[0], normalise_parameters)
    setattr(StateTaskServiceEcs, NORMALISERS[1], normalise_response)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(StateTaskServiceEcs, name)
            else:
                setattr(StateTaskServiceEcs, name, value)


def _operation(service: StateTaskServiceEcs, snake_action: str) -> Any:
    model = botocore.session.get_session().get_service_model("ecs")
    name = next(op for op in model.operation_names if camel_to_snake_case(op) == snake_action)
    return model.operation_model(name)
