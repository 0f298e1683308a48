"""The adapters a function works with, each made from the settings on first use.

Handlers call :func:`services` on their first invocation and pass the result into ``shared``. An adapter —
and the boto3 client under it, from the one factory (:mod:`shared.aws`) — is made the first time a step
asks for it, never at import, so a test's mock is active first and a cold start pays only for the clients
its step uses. Tests build a :class:`Services` from in-memory fakes instead, handing them in by name.
The experiments, workflow and function adapters' modules are imported with them, too: the prediction
function, which imports this module, uses none of them.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from shared.aws import AwsClients
from shared.errors import NotFoundError
from shared.metadata import DynamoMetadataStore, MetadataStore
from shared.registry import DynamoRegistryStore, ModelRegistry
from shared.settings import Settings, get_settings, warm
from shared.storage import ObjectStore, S3ObjectStore

if TYPE_CHECKING:
    from shared.experiments import ExperimentStore
    from shared.invoke import LambdaFunction
    from shared.workflow import Workflow


class Services:
    """The buckets, the registry, the metadata store, the workflow and the stack's other functions."""

    def __init__(
        self,
        settings: Settings,
        *,
        objects: ObjectStore | None = None,
        registry: ModelRegistry | None = None,
        metadata: MetadataStore | None = None,
        workflow: Workflow | None = None,
        experiments: ExperimentStore | None = None,
        scoring: Workflow | None = None,
        clients: AwsClients | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients or AwsClients(settings.region)
        given = {
            "objects": objects,
            "registry": registry,
            "metadata": metadata,
            "workflow": workflow,
            "experiments": experiments,
            "scoring": scoring,
        }
        # A cached_property reads the instance's dict first: what is handed in is never built.
        self.__dict__.update({name: adapter for name, adapter in given.items() if adapter is not None})

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(settings)

    @cached_property
    def objects(self) -> ObjectStore:
        return S3ObjectStore(self.clients.client("s3"))

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(
            DynamoRegistryStore(self.settings.registry_table, client=self.clients.client("dynamodb"))
        )

    @cached_property
    def metadata(self) -> MetadataStore:
        return DynamoMetadataStore(self.settings.metadata_table, client=self.clients.client("dynamodb"))

    @cached_property
    def experiments(self) -> ExperimentStore:
        from shared.experiments import DynamoExperimentStore  # noqa: PLC0415

        # Experiments and their trials live in the metadata table, beside the runs that launched them.
        return DynamoExperimentStore(self.settings.metadata_table, client=self.clients.client("dynamodb"))

    @cached_property
    def workflow(self) -> Workflow:
        from shared.workflow import StepFunctionsWorkflow  # noqa: PLC0415

        return StepFunctionsWorkflow(self.settings.state_machine_arn, self.clients.client("stepfunctions"))

    @cached_property
    def scoring(self) -> Workflow:
        """Batch scoring's state machine (:mod:`shared.scoring`)."""
        arn = self.settings.scoring_state_machine_arn
        if not arn:
            raise NotFoundError("this stack has no batch scoring state machine")
        from shared.workflow import StepFunctionsWorkflow  # noqa: PLC0415

        return StepFunctionsWorkflow(arn, self.clients.client("stepfunctions"))

    def function(self, name: str, **config: Any) -> LambdaFunction:
        """Another function of the stack, to invoke synchronously (``config``: botocore options, such as a
        ``read_timeout`` for a function that runs long)."""
        from shared.invoke import LambdaFunction  # noqa: PLC0415

        return LambdaFunction(name, self.clients.client("lambda", **config))


def services() -> Services:
    """This process's services, for its current settings."""
    return _services_for(get_settings())


@warm
@lru_cache(maxsize=1)
def _services_for(settings: Settings) -> Services:
    return Services(settings)
