"""Stack-wide configuration: one pydantic-settings model, validated once per process.

Every function receives the same environment (names in :mod:`shared.env_names`, set by `infra/`).
Code asks :func:`get_settings` instead of reading ``os.environ``.

What a warm function keeps between invocations — these settings, boto3 clients, loaded models, aliases —
lives in ``lru_cache`` functions marked :func:`warm`. :func:`forget_warm_state` drops all of it, as a new
deployment's fresh instances would start: the local cloud calls it whenever a cloud starts or stops, so
two clouds one after the other in one process never share a client or a loaded model.
"""

import json
from collections.abc import Callable
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.env_names import EnvVar


class PolicyKind(StrEnum):
    AUTO = "auto"
    APPROVAL = "approval"


class EnvironmentPolicy(BaseModel):
    """How a verified version is promoted in one environment (see :mod:`shared.pipeline.policy`): the
    stack's default for its environment, which a contract's ``promotion:`` block overrides per model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: PolicyKind = PolicyKind.AUTO
    min_staging_successes: int = Field(default=0, ge=0, le=100)
    approval_timeout_hours: float = Field(default=24.0, gt=0, le=24 * 365)

    @property
    def approval_timeout_seconds(self) -> int:
        return max(1, round(self.approval_timeout_hours * 3600))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    environment: str = Field(validation_alias=EnvVar.ENVIRONMENT.value)
    region: str = Field(validation_alias=EnvVar.REGION.value)
    data_bucket: str = Field(validation_alias=EnvVar.DATA_BUCKET.value)
    artifacts_bucket: str = Field(validation_alias=EnvVar.ARTIFACTS_BUCKET.value)
    registry_table: str = Field(validation_alias=EnvVar.REGISTRY_TABLE.value)
    metadata_table: str = Field(validation_alias=EnvVar.METADATA_TABLE.value)
    idempotency_table: str = Field(validation_alias=EnvVar.IDEMPOTENCY_TABLE.value)
    # The feature store's online table: the features function writes it, predict reads it.
    features_table: str | None = Field(default=None, validation_alias=EnvVar.FEATURES_TABLE.value)
    capture_stream: str = Field(validation_alias=EnvVar.CAPTURE_STREAM.value)
    state_machine_arn: str = Field(validation_alias=EnvVar.STATE_MACHINE_ARN.value)
    trigger_function: str = Field(validation_alias=EnvVar.TRIGGER_FUNCTION.value)
    # Batch scoring (optional: a stack without it scores nothing in batch).
    scoring_state_machine_arn: str | None = Field(
        default=None, validation_alias=EnvVar.SCORING_STATE_MACHINE_ARN.value
    )
    score_start_function: str | None = Field(default=None, validation_alias=EnvVar.SCORE_START_FUNCTION.value)
    code_version: str = Field(default="unknown", validation_alias=EnvVar.CODE_VERSION.value)
    code_commit: str | None = Field(default=None, validation_alias=EnvVar.CODE_COMMIT.value)
    # Relative to the working directory: the repository root locally, the task root in Lambda.
    models_dir: str = Field(default="models", validation_alias=EnvVar.MODELS_DIR.value)
    predict_function: str | None = Field(default=None, validation_alias=EnvVar.PREDICT_FUNCTION.value)
    verify_function: str | None = Field(default=None, validation_alias=EnvVar.VERIFY_FUNCTION.value)
    monitor_function: str | None = Field(default=None, validation_alias=EnvVar.MONITOR_FUNCTION.value)
    # The environment's default promotion policy (JSON in the variable); a contract's promotion: block
    # overrides it for its model.
    promotion_policy: EnvironmentPolicy = Field(
        default_factory=EnvironmentPolicy, validation_alias=EnvVar.PROMOTION_POLICY.value
    )
    # Serving. How stale the production alias may be in a warm predict function (a promotion or rollback
    # is served within this many seconds, without a redeploy); and what one request may carry (API
    # Gateway and Lambda cap a synchronous payload at 6 MB).
    alias_refresh_seconds: float = Field(
        default=5.0, ge=0, validation_alias=EnvVar.ALIAS_REFRESH_SECONDS.value
    )
    max_rows_per_request: int = Field(default=1000, ge=1, validation_alias=EnvVar.MAX_PREDICT_ROWS.value)
    max_request_bytes: int = Field(default=6_000_000, ge=1, validation_alias=EnvVar.MAX_REQUEST_BYTES.value)
    # How deep, long and wide a body may be (shared.serving.limits), and how many problems an error lists.
    # A valid request nests four levels; a float32 holds 39 integer digits; categories are short.
    max_json_depth: int = Field(default=16, ge=4, le=256, validation_alias=EnvVar.MAX_JSON_DEPTH.value)
    max_integer_digits: int = Field(
        default=40, ge=1, le=4300, validation_alias=EnvVar.MAX_INTEGER_DIGITS.value
    )
    max_string_chars: int = Field(default=4096, ge=1, validation_alias=EnvVar.MAX_STRING_CHARS.value)
    max_fields_per_object: int = Field(
        default=1000, ge=1, validation_alias=EnvVar.MAX_FIELDS_PER_OBJECT.value
    )
    max_problems_listed: int = Field(default=100, ge=1, validation_alias=EnvVar.MAX_PROBLEMS_LISTED.value)

    @field_validator("promotion_policy", mode="before")
    @classmethod
    def _policy_from_json(cls, value: Any) -> Any:
        # The environment source decodes the JSON itself; a mapping of the variables (the CLI's settings of a
        # deployed or served stack, read from its `environment` output) hands over the string.
        return json.loads(value) if isinstance(value, str) else value


class _Cached(Protocol):
    def cache_clear(self) -> None: ...


_WARM: list[Callable[[], None]] = []


def warm[Cached: _Cached](cached: Cached) -> Cached:
    """Mark ``cached`` (an ``lru_cache`` function) as state a warm instance keeps between invocations."""
    _WARM.append(cached.cache_clear)
    return cached


def forget_warm_state() -> None:
    """Forget every :func:`warm` cache of this process: settings, clients, loaded models, aliases."""
    for clear in _WARM:
        clear()


@warm
@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()  # pydantic-settings fills the fields from the environment
