"""Per-environment settings of a stack, read from ``Pulumi.<stack>.yaml``.

The same model is filled from the Pulumi config when ``pulumi up`` runs, from the stack file in tests and
by the local cloud, so what a test checks is what a deployment reads. Keys live under the ``flywheel:``
namespace in camelCase (``flywheel:apiAuth``); ``aws:region`` gives the region.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from shared.env_names import EnvVar
from shared.pipeline.state import GIT_COMMIT
from shared.settings import EnvironmentPolicy

NAMESPACE = "flywheel"
ROOT = Path(__file__).resolve().parents[1]


def project_root() -> Path:
    """The Pulumi project whose stack files the commands read: the working directory when it holds a
    ``Pulumi.yaml`` (a team's own repository, with Flywheel installed as a package), else this checkout."""
    here = Path.cwd()
    return here if (here / "Pulumi.yaml").is_file() else ROOT


class ApiThrottle(BaseModel):
    """API Gateway's stage throttling (token bucket): ``rate`` requests per second, ``burst`` at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rate: float = Field(default=100.0, gt=0, le=10_000)
    burst: int = Field(default=200, ge=1, le=5_000)


class StackConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    environment: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    region: str = "us-east-1"
    protect: bool = False
    api_auth: Literal["iam", "jwt"] = "iam"
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    memory_mb: dict[str, int] = Field(default_factory=dict)
    timeout_s: dict[str, int] = Field(default_factory=dict)
    # Concurrency held for (and capping) a function, e.g. {predict: 100}: a flood of requests costs at
    # most that many instances, and the rest of the account cannot starve it.
    reserved_concurrency: dict[str, int] = Field(default_factory=dict)
    # Instances of predict kept initialised, so that many requests at once never wait for a cold start.
    # Billed whether used or not (README, Performance); 0 serves from on-demand instances only.
    predict_provisioned_concurrency: int = Field(default=0, ge=0, le=10_000)
    # The HTTP API stage's throttle: steady requests per second and burst, over all routes; past it API
    # Gateway answers 429 without invoking anything.
    api_throttle: ApiThrottle = Field(default_factory=ApiThrottle)
    schedules: dict[str, str] = Field(default_factory=dict)
    capture_retention_days: int = Field(default=400, ge=1)
    log_retention_days: int = Field(default=30, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The environment's default promotion policy ({policy, min_staging_successes, approval_timeout_hours});
    # a contract's promotion: block overrides it for its model.
    promotion: EnvironmentPolicy = Field(default_factory=EnvironmentPolicy)
    # The git commit being deployed: a fact of one `pulumi up`, not of the stack, so it comes from the
    # deploying process's FLYWHEEL_CODE_COMMIT (the deploy workflow sets it). Functions receive it and each
    # version trained from a model project records it. Never part of the image: the tag hashes the code only.
    code_commit: str | None = Field(default=None, pattern=GIT_COMMIT)
    # The folder of model projects the image ships, relative to the Pulumi project's directory (the one
    # holding Pulumi.yaml): a team's own repository sets it; unset, this checkout's models/
    # (infra.image.image_context checks that it holds projects).
    models_dir: str | None = Field(default=None, min_length=1)
    # Where the step tasks (Validate and Train on Fargate) run: private subnets with a route to S3,
    # DynamoDB and ECR (a NAT gateway or VPC endpoints), and security groups allowing their egress.
    # Unset, the account's default VPC's subnets and a security group of the stack's own (egress only,
    # HTTPS), with a public IP so the tasks reach the AWS APIs without a NAT gateway.
    task_subnets: tuple[str, ...] = ()
    task_security_groups: tuple[str, ...] = ()

    def function_environment(self) -> dict[str, str]:
        """Settings of this environment that every function reads (beside the resource names)."""
        env = {EnvVar.PROMOTION_POLICY.value: self.promotion.model_dump_json()}
        if self.code_commit:
            env[EnvVar.CODE_COMMIT.value] = self.code_commit
        return env

    @model_validator(mode="after")
    def _provisioned_within_reserved(self) -> StackConfig:
        # Lambda refuses to provision more instances than the function may ever run.
        reserved = self.reserved_concurrency.get("predict")
        if reserved is not None and self.predict_provisioned_concurrency > reserved:
            raise ValueError(
                f"predictProvisionedConcurrency ({self.predict_provisioned_concurrency}) exceeds "
                f"reservedConcurrency.predict ({reserved})"
            )
        return self

    @model_validator(mode="after")
    def _jwt_needs_issuer(self) -> StackConfig:
        if self.api_auth == "jwt" and (not self.jwt_issuer or not self.jwt_audience):
            raise ValueError("apiAuth 'jwt' needs jwtIssuer and jwtAudience")
        return self

    @classmethod
    def from_values(cls, environment: str, values: dict[str, Any]) -> StackConfig:
        """From Pulumi-style keys (``flywheel:protect``, ``aws:region``); other namespaces are ignored."""
        fields: dict[str, Any] = {"environment": environment}
        for key, value in values.items():
            namespace, _, name = key.partition(":")
            if namespace == NAMESPACE:
                fields[name] = value
            elif key == "aws:region":
                fields["region"] = value
        return cls.model_validate(fields)

    @classmethod
    def from_stack_file(cls, stack: str, root: Path | None = None) -> StackConfig:
        """Read ``Pulumi.<stack>.yaml`` beside ``Pulumi.yaml`` (of :func:`project_root` unless ``root``)."""
        path = (root or project_root()) / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text()) or {}
        return cls.from_values(stack, document.get("config") or {})

    @classmethod
    def from_pulumi(cls) -> StackConfig:
        """Inside a Pulumi program: the current stack's configuration."""
        import pulumi  # noqa: PLC0415  (only a Pulumi program needs it; functions never import infra)

        flywheel = pulumi.Config(NAMESPACE)
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            if name == "environment":
                continue
            alias = field.alias or name
            raw = flywheel.get(alias)
            if raw is not None:
                values[f"{NAMESPACE}:{alias}"] = _config_value(raw)
        region = pulumi.Config("aws").get("region")
        if region:
            values["aws:region"] = region
        commit = os.environ.get(EnvVar.CODE_COMMIT.value)
        if commit:
            values[f"{NAMESPACE}:codeCommit"] = commit
        return cls.from_values(pulumi.get_stack(), values)


def _config_value(raw: str) -> Any:
    """Pulumi hands every value over as a string: maps, lists, numbers and booleans as JSON, plain
    strings (``apiAuth: iam``) as themselves."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
