"""Flywheel's own stack: what `pulumi up` deploys and `flywheel local` runs.

Each capability adds its functions here in the change that builds it; the spec checks every reference.
"""

from __future__ import annotations

from infra.config import StackConfig
from infra.spec import (
    BucketSpec,
    CaptureStreamSpec,
    IndexSpec,
    Key,
    LifecycleRule,
    StackSpec,
    TableSpec,
    with_overrides,
)
from shared.env_names import EnvVar
from shared.layout import ArtifactPrefix, DataPrefix

PROJECT = "flywheel"

# Registry and metadata share one single-table shape: entity items under pk/sk, one inverted index.
_SINGLE_TABLE = {
    "partition_key": Key(name="pk"),
    "sort_key": Key(name="sk"),
    "indexes": (IndexSpec(name="gsi1", partition_key=Key(name="gsi1pk"), sort_key=Key(name="gsi1sk")),),
}


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
        ),
        capture=CaptureStreamSpec(
            name="captures",
            bucket="data",
            prefix=DataPrefix.CAPTURES.value,
            error_prefix=DataPrefix.CAPTURE_ERRORS.value,
            env_var=EnvVar.CAPTURE_STREAM,
        ),
    )
    return with_overrides(spec, config.memory_mb, config.timeout_s, config.schedules)
