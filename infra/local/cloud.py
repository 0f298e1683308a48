"""The local cloud: the stack spec provisioned into moto and made to run like AWS.

``LocalCloud(spec).in_process()`` works inside ``mock_aws`` (tests, the demo);
``LocalCloud(spec).serving(port)`` runs moto's threaded server on a loopback port so any boto3 client, the AWS
CLI or the ``flywheel`` CLI reaches it through ``AWS_ENDPOINT_URL``. Either way:

- every resource of the spec is created with the same names, policies and settings the Pulumi program uses;
- Step Functions executions run the real definition in moto's interpreter (``execute_state_machine``);
- S3 notifications, ``Invoke`` and state machine tasks run handlers in :class:`LocalRuntime` (the one seam);
- DynamoDB requests are atomic, as in AWS (:mod:`infra.local.atomicity`);
- Firehose evaluates the capture stream's partitioned S3 prefix, as in AWS (:mod:`infra.local.firehose`);
- an ECS task's command runs as a process of its own, reaching this cloud over HTTP (in process, through
  a moto server on loopback sharing the mock's state), and stops as ECS reports it
  (:mod:`infra.local.containers`);
- :class:`LocalScheduler` fires the spec's schedules and :class:`LocalGateway` serves its routes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from infra.capture_config import capture_destination
from infra.config import StackConfig
from infra.image import code_version
from infra.local.atomicity import atomic_dynamodb_requests
from infra.local.containers import LocalContainers
from infra.local.firehose import MetadataQuery, firehose_s3_delivery
from infra.local.gateway import LocalGateway
from infra.local.memory import long_lived_frozen, untracked_dynamodb_models
from infra.local.runtime import LocalRuntime
from infra.local.scheduler import LocalScheduler
from infra.names import StackNames
from infra.policies import (
    ECS_TASKS_SERVICE,
    assume_role_policy,
    delivery_stream_policy,
    function_policy,
    state_machine_policy,
    task_execution_policy,
    task_policy,
)
from infra.spec import TASK_MEMORY_RESERVATION_MB, StackSpec
from shared.observability import logger
from shared.settings import forget_warm_state

ACCOUNT = "123456789012"
MOTO_CONFIG: Any = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": True}}
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
# botocore's default upload checksums use aws-chunked encoding, which it and moto both copy in pure Python:
# 3-4 s for a 75 MiB file locally. Over loopback there is no wire to protect, so ask only where required.
LOCAL_CLIENT_SETTINGS = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}

# moto's interpreter logs every failed state at ERROR, including the ones a Catch handles on purpose; the
# execution history records them all, so keep the console for real problems.
logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component").setLevel(logging.CRITICAL)


class LocalCloud:
    """One stack spec running on moto. Use :meth:`in_process` or :meth:`serving`."""

    def __init__(self, spec: StackSpec, config: StackConfig | None = None, *, stack: str = "local") -> None:
        self.spec = spec
        self.config = config or StackConfig(environment=stack)
        self.stack = stack
        self.region = self.config.region
        self.names = StackNames.for_spec(spec, stack, self.region, ACCOUNT)
        self.environment = self.names.environment(
            spec,
            self.config.environment,
            self.config.log_level,
            code_version(),
            self.config.function_environment(),
        )
        self.runtime = LocalRuntime(s3_versions=self._object_version)
        self.containers = LocalContainers(endpoint=self._task_endpoint)
        self._task_server: ThreadedMotoServer | None = None
        self._task_server_url: str | None = None
        self._task_server_lock = threading.Lock()
        self.scheduler = LocalScheduler(ACCOUNT, self.region, invoke=self.invoke_async)
        self.gateway: LocalGateway | None = None
        self.endpoint_url: str | None = None
        self._clients: dict[str, Any] = {}

    # --- the two modes ------------------------------------------------------------------------------------

    @contextmanager
    def in_process(self) -> Iterator[LocalCloud]:
        """Provision into moto's in-process mock; everything runs in this process."""
        with ExitStack() as stack:
            stack.enter_context(mock_aws(config=MOTO_CONFIG))
            stack.enter_context(
                _environ(
                    {
                        **self.environment,
                        **LOCAL_CLIENT_SETTINGS,
                        "AWS_REGION": self.region,
                        "AWS_DEFAULT_REGION": self.region,
                        **LOCAL_CLIENT_SETTINGS,
                    }
                )
            )
            stack.enter_context(_unset("AWS_ENDPOINT_URL"))
            stack.enter_context(self.runtime.installed())
            stack.enter_context(atomic_dynamodb_requests())
            stack.enter_context(untracked_dynamodb_models())
            stack.enter_context(firehose_s3_delivery())
            stack.enter_context(self.containers.installed())
            stack.callback(self._stop_task_server)
            stack.callback(self._shutdown)
            self._start()
            stack.enter_context(long_lived_frozen())
            yield self

    @contextmanager
    def serving(
        self, port: int = 5000, gateway_port: int = 0, host: str = "127.0.0.1", run_scheduler: bool = True
    ) -> Iterator[LocalCloud]:
        """Serve moto on ``host:port`` and the routes on ``gateway_port``; fire schedules by the clock."""
        endpoint = f"http://{host}:{port}"
        process_env = {
            **self.environment,
            **LOCAL_CREDENTIALS,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": endpoint,
            # moto's Step Functions interpreter calls Lambda at localhost:$MOTO_PORT.
            "MOTO_PORT": str(port),
        }
        with ExitStack() as stack:
            stack.enter_context(_environ(process_env))
            stack.enter_context(mock.patch.dict(default_user_config, MOTO_CONFIG))
            stack.enter_context(self.runtime.installed())
            stack.enter_context(atomic_dynamodb_requests())
            stack.enter_context(untracked_dynamodb_models())
            stack.enter_context(firehose_s3_delivery())
            stack.enter_context(self.containers.installed())
            logging.getLogger("werkzeug").setLevel(
                logging.WARNING
            )  # one line per request drowns the functions' logs
            server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
            server.start()
            stack.callback(server.stop)
            stack.callback(self._shutdown)
            self.endpoint_url = endpoint
            self._start()
            stack.enter_context(long_lived_frozen())
            self.start_gateway(port=gateway_port, host=host)
            if run_scheduler:
                stop = threading.Event()
                threading.Thread(
                    target=self.scheduler.run, args=(stop,), name="local-scheduler", daemon=True
                ).start()
                stack.callback(stop.set)
            yield self

    def _start(self) -> None:
        forget_warm_state()  # a new cloud is a new deployment: no function instance is warm yet
        self._clients.clear()
        self.provision()

    def _shutdown(self) -> None:
        self.stop_running_executions()
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        self._clients.clear()
        forget_warm_state()

    # --- clients ------------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """A boto3 client for this cloud (made on first use, after the mock or server is up)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url
            )
        return self._clients[service]

    # --- provisioning: the spec, as the Pulumi program declares it ---------------------------------------

    def provision(self) -> None:
        self._create_buckets()
        self._create_tables()
        self._create_functions()
        self._create_capture_stream()
        self._create_tasks()
        self._create_state_machine()
        self._wire_notifications()
        self._create_schedules()
        logger.debug(
            "local cloud provisioned", extra={"stack": self.stack, "functions": len(self.spec.functions)}
        )

    def _create_role(self, name: str, service: str, policy: Mapping[str, Any]) -> str:
        iam = self.client("iam")
        arn: str = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(assume_role_policy(service))
        )["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        return arn

    def _create_buckets(self) -> None:
        s3 = self.client("s3")
        for bucket in self.spec.buckets:
            name = self.names.buckets[bucket.name]
            s3.create_bucket(Bucket=name)
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                            "BucketKeyEnabled": True,
                        }
                    ]
                },
            )
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            # No TLS-only bucket policy here: the local cloud speaks plain HTTP on loopback, and moto would
            # (rightly) deny every request under it. The Pulumi program applies it in AWS.
            if bucket.lifecycle:
                s3.put_bucket_lifecycle_configuration(
                    Bucket=name,
                    LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in bucket.lifecycle]},
                )

    def _create_tables(self) -> None:
        dynamodb = self.client("dynamodb")
        for table in self.spec.tables:
            name = self.names.tables[table.name]
            keys = [{"AttributeName": table.partition_key.name, "KeyType": "HASH"}]
            if table.sort_key:
                keys.append({"AttributeName": table.sort_key.name, "KeyType": "RANGE"})
            request: dict[str, Any] = {
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [
                    {"AttributeName": k.name, "AttributeType": k.type} for k in table.attributes()
                ],
                "KeySchema": keys,
                "SSESpecification": {"Enabled": True},
                "DeletionProtectionEnabled": self.config.protect,
            }
            if table.indexes:
                request["GlobalSecondaryIndexes"] = [
                    {
                        "IndexName": index.name,
                        "KeySchema": [{"AttributeName": index.partition_key.name, "KeyType": "HASH"}]
                        + (
                            [{"AttributeName": index.sort_key.name, "KeyType": "RANGE"}]
                            if index.sort_key
                            else []
                        ),
                        "Projection": {"ProjectionType": "ALL"},
                    }
                    for index in table.indexes
                ]
            dynamodb.create_table(**request)
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
            if table.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )

    def _create_functions(self) -> None:
        lambda_ = self.client("lambda")
        code = _placeholder_package()
        for function in self.spec.functions:
            name = self.names.functions[function.name]
            role = self._create_role(
                f"{name}-role", "lambda.amazonaws.com", function_policy(function, self.names)
            )
            lambda_.create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role,
                Handler=function.handler,
                Code={"ZipFile": code},
                Description=function.description,
                Timeout=function.timeout_s,
                MemorySize=function.memory_mb,
                EphemeralStorage={"Size": function.ephemeral_mb},
                Environment={"Variables": self.environment},
                TracingConfig={"Mode": "Active"},
            )
            if function.reserved_concurrency is not None:
                lambda_.put_function_concurrency(
                    FunctionName=name, ReservedConcurrentExecutions=function.reserved_concurrency
                )

    def _create_capture_stream(self) -> None:
        capture = self.spec.capture
        if capture is None or self.names.stream is None:
            return
        destination = capture_destination(capture)  # the Pulumi component declares the same
        if destination.metadata_query is not None:
            # A query the local Firehose could not evaluate fails here, not on the first capture.
            MetadataQuery.parse(destination.metadata_query)
        bucket_arn = self.names.bucket_arn(capture.bucket)
        role = self._create_role(
            f"{self.names.stream}-role",
            "firehose.amazonaws.com",
            delivery_stream_policy(bucket_arn, capture.prefix, capture.error_prefix),
        )
        self.client("firehose").create_delivery_stream(
            DeliveryStreamName=self.names.stream,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration=destination.to_api(bucket_arn, role),
            DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"},
        )

    def _create_state_machine(self) -> None:
        targets = self.names.task_targets(self.spec)
        for machine in self.spec.state_machines:
            is_pipeline = machine is self.spec.state_machine
            physical = self.names.machine_name(None if is_pipeline else machine.name)
            definition, invoked = self.spec.machine_definition(machine, self.names.function_arns(), targets)
            role = self._create_role(
                f"{physical}-role",
                "states.amazonaws.com",
                state_machine_policy(
                    invoked, self.names, machine.permissions, self.spec if is_pipeline else None
                ),
            )
            self.client("stepfunctions").create_state_machine(
                name=physical,
                definition=json.dumps(definition),
                roleArn=role,
                tracingConfiguration={"enabled": True},
            )

    def _create_tasks(self) -> None:
        """The cluster, a network for the tasks (moto gives each an ENI in a subnet), and per step task
        its roles and task definition, as the Pulumi program declares them."""
        if not self.spec.tasks:
            return
        ec2, ecs, logs = self.client("ec2"), self.client("ecs"), self.client("logs")
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        # As a default VPC has it: a task's network interface gets a private DNS name.
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="flywheel-tasks", Description="step tasks", VpcId=vpc)
        self.names = dataclasses.replace(self.names, subnets=(subnet,), security_groups=(group["GroupId"],))
        ecs.create_cluster(clusterName=self.names.cluster)
        for task in self.spec.tasks:
            function = self.spec.function(task.function)
            role = self._create_role(
                self.names.task_role_name(task.function),
                ECS_TASKS_SERVICE,
                task_policy(task, function, self.names),
            )
            log_group = self.names.task_log_group(task.function)
            repository = (
                f"arn:aws:ecr:{self.region}:{ACCOUNT}:repository/{self.spec.project}-{self.stack}-functions"
            )
            execution = self._create_role(
                self.names.task_execution_role_name(task.function),
                ECS_TASKS_SERVICE,
                task_execution_policy(repository, self.names.log_group_arn(log_group)),
            )
            logs.create_log_group(logGroupName=log_group)
            ecs.register_task_definition(
                family=self.names.task_families[task.function],
                requiresCompatibilities=["FARGATE"],
                networkMode="awsvpc",
                cpu=str(task.cpu),
                memory=str(task.memory_mb),
                taskRoleArn=role,
                executionRoleArn=execution,
                containerDefinitions=[
                    {
                        "name": task.function,
                        "image": "flywheel-functions:local",
                        "essential": True,
                        "memoryReservation": TASK_MEMORY_RESERVATION_MB,
                        "command": list(task.command),
                        "environment": [{"name": k, "value": v} for k, v in sorted(self.environment.items())],
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": log_group,
                                "awslogs-region": self.region,
                                "awslogs-stream-prefix": task.function,
                            },
                        },
                    }
                ],
            )

    def _task_endpoint(self) -> dict[str, str]:
        """What a task's process needs to reach this cloud (ECS would give it the task role instead)."""
        endpoint = self.endpoint_url or self._start_task_server()
        return {
            **LOCAL_CREDENTIALS,
            **LOCAL_CLIENT_SETTINGS,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": endpoint,
        }

    def _start_task_server(self) -> str:
        """In process, a task (a process of its own) reaches the mock's state through a moto server on a
        loopback port, which shares it; started with the first task."""
        with self._task_server_lock:
            if self._task_server_url is None:
                port = _free_port()
                self._task_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
                self._task_server.start()
                self._task_server_url = f"http://127.0.0.1:{port}"
            return self._task_server_url

    def _stop_task_server(self) -> None:
        if self._task_server is not None:
            self._task_server.stop()
        self._task_server, self._task_server_url = None, None

    def _wire_notifications(self) -> None:
        s3, lambda_ = self.client("s3"), self.client("lambda")
        for bucket in self.spec.buckets:
            if not bucket.notifications:
                continue
            name = self.names.buckets[bucket.name]
            configurations = []
            for index, note in enumerate(bucket.notifications):
                function_name = self.names.functions[note.function]
                lambda_.add_permission(
                    FunctionName=function_name,
                    StatementId=f"s3-{bucket.name}-{index}",
                    Action="lambda:InvokeFunction",
                    Principal="s3.amazonaws.com",
                    SourceArn=self.names.bucket_arn(bucket.name),
                    SourceAccount=ACCOUNT,
                )
                rules = [{"Name": "prefix", "Value": note.prefix}] + (
                    [{"Name": "suffix", "Value": note.suffix}] if note.suffix else []
                )
                configurations.append(
                    {
                        "Id": f"{note.function}-{index}",
                        "LambdaFunctionArn": self.names.function_arn(note.function),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": rules}},
                    }
                )
            s3.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"LambdaFunctionConfigurations": configurations}
            )

    def _create_schedules(self) -> None:
        events, lambda_ = self.client("events"), self.client("lambda")
        for schedule in self.spec.schedules:
            rule_name = f"{self.spec.project}-{self.stack}-{schedule.name}"
            rule_arn: str = events.put_rule(
                Name=rule_name,
                ScheduleExpression=schedule.expression,
                State="ENABLED" if schedule.enabled else "DISABLED",
            )["RuleArn"]
            target: dict[str, Any] = {
                "Id": schedule.function,
                "Arn": self.names.function_arn(schedule.function),
            }
            if schedule.input is not None:
                target["Input"] = json.dumps(schedule.input)
            events.put_targets(Rule=rule_name, Targets=[target])
            lambda_.add_permission(
                FunctionName=self.names.functions[schedule.function],
                StatementId=f"events-{schedule.name}",
                Action="lambda:InvokeFunction",
                Principal="events.amazonaws.com",
                SourceArn=rule_arn,
            )
            self.scheduler.add(schedule, self.names.functions[schedule.function], rule_arn)

    # --- running things -----------------------------------------------------------------------------------

    def start_gateway(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve the spec's HTTP routes; returns the base URL."""
        if self.gateway is None:
            routes = [(route, self.names.functions[route.function]) for route in self.spec.routes]
            self.gateway = LocalGateway(routes, self.invoke, ACCOUNT, host=host, port=port).start()
        return self.gateway.url

    def invoke(self, function_name: str, event: Mapping[str, Any]) -> tuple[bool, Any]:
        """Invoke a function synchronously through Lambda's API; returns (errored, payload)."""
        response = self.client("lambda").invoke(
            FunctionName=function_name, Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"null")
        return "FunctionError" in response, payload

    def invoke_async(self, function_name: str, event: Mapping[str, Any]) -> None:
        self.client("lambda").invoke(
            FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode()
        )

    def start_execution(self, payload: Mapping[str, Any], name: str) -> str:
        arn: str = self.client("stepfunctions").start_execution(
            stateMachineArn=self.names.state_machine_arn(), name=name, input=json.dumps(payload)
        )["executionArn"]
        return arn

    def wait_for_execution(self, execution_arn: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Poll until the execution ends; returns ``describe_execution``'s answer."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout_s
        while True:
            described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in TERMINAL:
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"execution {execution_arn} still {described['status']} after {timeout_s}s"
                )
            time.sleep(0.05)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.client("stepfunctions").get_execution_history(
            executionArn=execution_arn
        )["events"]
        return events

    def stop_running_executions(self) -> None:
        sfn = self.client("stepfunctions")
        machines = [None] if self.names.state_machine is not None else []
        for machine in [*machines, *self.names.workflows]:
            try:
                running = sfn.list_executions(
                    stateMachineArn=self.names.state_machine_arn(machine), statusFilter="RUNNING"
                )["executions"]
            except ClientError:
                continue
            for execution in running:
                sfn.stop_execution(executionArn=execution["executionArn"], cause="local cloud shutting down")

    def exports(self) -> dict[str, str]:
        """What a shell needs to reach this cloud (``export`` lines for ``make local``)."""
        values = {
            **LOCAL_CREDENTIALS,
            **LOCAL_CLIENT_SETTINGS,
            "AWS_DEFAULT_REGION": self.region,
            "FLYWHEEL_STACK": self.stack,
        }
        if self.endpoint_url:
            values["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.gateway:
            values["FLYWHEEL_API_URL"] = self.gateway.url
        return values

    def _object_version(self, bucket: str, key: str, etag: str) -> str | None:
        try:
            head = self.client("s3").head_object(Bucket=bucket, Key=key)
        except ClientError:
            return None
        return head.get("VersionId") if head.get("ETag", "").strip('"') == etag.strip('"') else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _lifecycle_rule(rule: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ID": f"{rule.prefix.strip('/')}-retention",
        "Filter": {"Prefix": rule.prefix},
        "Status": "Enabled",
    }
    if rule.infrequent_access_days:
        body["Transitions"] = [{"Days": rule.infrequent_access_days, "StorageClass": "STANDARD_IA"}]
    if rule.expire_days:
        body["Expiration"] = {"Days": rule.expire_days}
        body["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule.expire_days}
    return body


def _placeholder_package() -> bytes:
    # moto stores a package per function; the code it would run is imported from this checkout instead.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "README.txt", "Handlers run in-process from the Flywheel checkout (infra/local/runtime.py).\n"
        )
    return buffer.getvalue()


@contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    with mock.patch.dict(os.environ, dict(values)):
        yield


@contextmanager
def _unset(*names: str) -> Iterator[None]:
    saved = {n: os.environ.pop(n) for n in names if n in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
