"""Functions: one container image for all of them, and per function its own role, log group and command.

The scientific stack is larger than a zip may be, so every function runs the same image built from
Flywheel's ``Dockerfile``, in the context ``infra.image`` decides (this checkout, or one staged from a team's
repository), and differs only by its handler (the image command), its sizes and its role.
A role allows exactly the function's spec permissions (``infra.policies.function_policy``).

With ``flywheel:predictProvisionedConcurrency`` above 0, predict publishes a version on every change, a
``live`` alias follows the newest one, and the alias holds that many instances initialised (provisioned
concurrency is set on a version or an alias, never on ``$LATEST``). The API then invokes the alias
(:attr:`Functions.entry_points`), so client requests meet the warm instances; the pipeline's direct
invocations of predict (verification) stay on ``$LATEST``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
from pulumi import Output, ResourceOptions

from infra.components.roles import service_role
from infra.config import StackConfig
from infra.image import ARCHITECTURE, DOCKER_PLATFORMS, ImageContext
from infra.names import StackNames, physical_name
from infra.policies import function_policy
from infra.spec import FunctionSpec, StackSpec

PREDICT_FUNCTION = "predict"
LIVE_ALIAS = "live"


@dataclass(frozen=True)
class EntryPoint:
    """How a caller outside the stack's own steps invokes a function: its (alias) ARN, and the function's
    name and qualifier for the permission that lets it."""

    arn: Output[str]
    name: Output[str]
    qualifier: Output[str] | None


class Functions(pulumi.ComponentResource):
    """Every function of the spec, by logical name, sharing one image pushed to one ECR repository."""

    def __init__(
        self,
        name: str,
        spec: StackSpec,
        *,
        names: Output[StackNames],
        stack: str,
        config: StackConfig,
        image: ImageContext,
        opts: ResourceOptions | None = None,
    ) -> None:
        super().__init__("flywheel:functions:Functions", name, None, opts)
        self._project, self._stack, self._config, self._context = spec.project, stack, config, image
        # Hashed once: every function and the tag name the same code version.
        self._tag = image.tag
        self.environment: Output[dict[str, str]] = names.apply(
            lambda n: n.environment(
                spec, config.environment, config.log_level, self._tag, config.function_environment()
            )
        )
        self.functions: dict[str, aws.lambda_.Function] = {}
        # The image and its repository, for the step tasks that run the same image.
        self.image_uri: Output[str] | None = None
        self.repository_arn: Output[str] | None = None
        # No function, no image to build.
        if spec.functions:
            image_uri = self.image_uri = self._image()
            self.functions = {fn.name: self._function(fn, image_uri, names) for fn in spec.functions}
        self.names: dict[str, Output[str]] = {n: f.name for n, f in self.functions.items()}
        self.arns: dict[str, Output[str]] = {n: f.arn for n, f in self.functions.items()}
        # What the API invokes, by function: the function itself, or the alias holding warm instances.
        self.entry_points: dict[str, EntryPoint] = {
            n: EntryPoint(arn=f.arn, name=f.name, qualifier=None) for n, f in self.functions.items()
        }
        if PREDICT_FUNCTION in self.functions and config.predict_provisioned_concurrency:
            self.entry_points[PREDICT_FUNCTION] = self._provisioned(
                self.functions[PREDICT_FUNCTION], config.predict_provisioned_concurrency
            )
        self.register_outputs({"names": self.names})

    def _provisioned(self, function: aws.lambda_.Function, instances: int) -> EntryPoint:
        """The ``live`` alias on the newest published version, with ``instances`` kept initialised."""
        alias = aws.lambda_.Alias(
            f"{PREDICT_FUNCTION}-{LIVE_ALIAS}",
            name=LIVE_ALIAS,
            function_name=function.name,
            function_version=function.version,
            opts=ResourceOptions(parent=self),
        )
        aws.lambda_.ProvisionedConcurrencyConfig(
            PREDICT_FUNCTION,
            function_name=function.name,
            qualifier=alias.name,
            provisioned_concurrent_executions=instances,
            opts=ResourceOptions(parent=self),
        )
        return EntryPoint(arn=alias.arn, name=function.name, qualifier=alias.name)

    def _image(self) -> Output[str]:
        """The repository, the image built and pushed into it, and the URI Lambda runs it by."""
        repository = aws.ecr.Repository(
            "functions",
            name=physical_name(self._project, self._stack, "functions"),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            # A protected stack keeps its images; any other may be destroyed with them.
            force_delete=not self._config.protect,
            opts=ResourceOptions(parent=self),
        )
        self.repository_arn = repository.arn
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        # The repository's tags are immutable: the tag is the build context's hash (infra/image.py), so
        # exactly the edits that make docker-build rebuild make a new tag.
        tag = self._tag
        image = docker_build.Image(
            "functions",
            context={"location": str(self._context.location)},
            dockerfile={"location": str(self._context.dockerfile)},
            # One platform, pushed with the registry exporter's Docker media types: Lambda refuses an
            # OCI index.
            platforms=[docker_build.Platform(DOCKER_PLATFORMS[ARCHITECTURE])],
            tags=[repository.repository_url.apply(lambda url: f"{url}:{tag}")],
            push=True,
            registries=[
                {
                    "address": repository.repository_url,
                    "username": token.user_name,
                    "password": token.password,
                }
            ],
            opts=ResourceOptions(parent=self),
        )
        # Lambda takes `repository:tag` or `repository@sha256:…`, not docker-build's `ref`
        # (`repository:tag@sha256:…`); the digest pins exactly the image pushed.
        return Output.concat(repository.repository_url, "@", image.digest)

    def _function(
        self, fn: FunctionSpec, image_uri: Output[str], names: Output[StackNames]
    ) -> aws.lambda_.Function:
        physical = physical_name(self._project, self._stack, fn.name)
        # The document needs resolved names (bucket names are generated): JSON in apply, resources here.
        role, policy = service_role(
            fn.name,
            physical=physical,
            kind="function",
            service="lambda.amazonaws.com",
            policy=names.apply(lambda n: json.dumps(function_policy(fn, n))),
            parent=self,
        )
        # Declared rather than left to Lambda, so it has a retention and goes with the stack.
        log_group = aws.cloudwatch.LogGroup(
            fn.name,
            name=f"/aws/lambda/{physical}",
            retention_in_days=self._config.log_retention_days,
            opts=ResourceOptions(parent=self),
        )
        return aws.lambda_.Function(
            fn.name,
            name=physical,
            description=fn.description or None,
            role=role.arn,
            package_type="Image",
            image_uri=image_uri,
            image_config={"commands": [fn.handler]},
            architectures=[ARCHITECTURE],
            memory_size=fn.memory_mb,
            timeout=fn.timeout_s,
            ephemeral_storage={"size": fn.ephemeral_mb},
            reserved_concurrent_executions=fn.reserved_concurrency,
            # A published version is what provisioned concurrency holds warm.
            publish=fn.name == PREDICT_FUNCTION and self._config.predict_provisioned_concurrency > 0,
            tracing_config={"mode": "Active"},
            environment={"variables": self.environment},
            # The first invocation must find its permissions and its log group in place.
            opts=ResourceOptions(parent=self, depends_on=[policy, log_group]),
        )
