"""Steps whose effects go beyond their own records run at most once per run.

Register and Promote are wrapped with Powertools' idempotency on the stack's DynamoDB table, keyed on the
run id: a retried or re-delivered invocation returns the first result instead of acting again. (The
registry is idempotent per run on its own too; this is the guard the field's tooling provides, and it also
covers a duplicate arriving while the first is still in flight.) The persistence layer is built on first
use from the settings, never at import.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import AwsClients
from shared.pipeline.state import RunState
from shared.services import Services
from shared.settings import warm

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

Step = Callable[[RunState, Services], RunState]
GuardedStep = Callable[[RunState, Services, LambdaContext], RunState]
RETAIN_SECONDS = 7 * 24 * 3600


def once_per_run(step: Step, key: str = "run_id") -> GuardedStep:
    """``step``, answered from the idempotency table when the same run already went through it.

    ``key`` is the JMESPath of what makes two calls the same: the run id, or more when a step runs twice
    in one run for different reasons (Promote: to staging before an approval, to production after it).
    """

    def run(state: RunState, svc: Services, context: LambdaContext) -> RunState:
        guarded, config = _guarded(step, key, svc.settings.idempotency_table, svc.clients)
        # With the context, an in-progress record expires with the invocation instead of blocking retries.
        config.register_lambda_context(context)
        result: RunState = guarded(state=state, svc=svc)
        return result

    run.__name__ = step.__name__
    run.__doc__ = step.__doc__
    return run


@warm
@lru_cache(maxsize=16)
def _guarded(
    step: Step, key: str, table: str, clients: AwsClients
) -> tuple[Callable[..., RunState], IdempotencyConfig]:
    # Powertools' idempotency imports boto3 with its DynamoDB layer: like every adapter's, that happens when
    # the first client is made (at the first invocation), not when the handler module is imported.
    from aws_lambda_powertools.utilities.idempotency import (  # noqa: PLC0415
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (  # noqa: PLC0415
        PydanticSerializer,
    )

    persistence = DynamoDBPersistenceLayer(table_name=table, boto3_client=clients.client("dynamodb"))
    config = IdempotencyConfig(
        event_key_jmespath=key, raise_on_no_idempotency_key=True, expires_after_seconds=RETAIN_SECONDS
    )

    def keyed(state: RunState, svc: Services) -> RunState:
        return step(state, svc)

    decorated: Callable[..., RunState] = idempotent_function(
        data_keyword_argument="state",
        persistence_store=persistence,
        config=config,
        output_serializer=PydanticSerializer(model=RunState),
        key_prefix=f"flywheel.{step.__name__}",
    )(keyed)
    return decorated, config
