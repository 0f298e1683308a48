"""The adapters a function works with, built once per process from the settings.

Handlers call :func:`services` on their first invocation (never at import, so a test's mock is active
first) and pass the result into ``shared``; tests build a :class:`Services` from in-memory fakes instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shared.metadata import DynamoMetadataStore, MetadataStore
from shared.registry import DynamoRegistryStore, ModelRegistry
from shared.settings import Settings, get_settings, warm
from shared.storage import ObjectStore, S3ObjectStore
from shared.workflow import StepFunctionsWorkflow, Workflow


@dataclass(frozen=True)
class Services:
    settings: Settings
    objects: ObjectStore
    registry: ModelRegistry
    metadata: MetadataStore
    workflow: Workflow

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        import boto3  # noqa: PLC0415  (clients are made when a function first runs, after any mock)

        def client(service: str) -> Any:
            return boto3.client(service, region_name=settings.region)

        return cls(
            settings=settings,
            objects=S3ObjectStore(client("s3")),
            registry=ModelRegistry(DynamoRegistryStore(settings.registry_table, client=client("dynamodb"))),
            metadata=DynamoMetadataStore(settings.metadata_table, client=client("dynamodb")),
            workflow=StepFunctionsWorkflow(settings.state_machine_arn, client("stepfunctions")),
        )


def services() -> Services:
    """This process's services, for its current settings."""
    return _services_for(get_settings())


@warm
@lru_cache(maxsize=1)
def _services_for(settings: Settings) -> Services:
    return Services.from_settings(settings)
