"""The one place boto3 clients are made: on first use, one per service (and options), kept while warm.

Every adapter that talks to AWS gets its client from an :class:`AwsClients`, which a function's
:class:`~shared.services.Services` holds. A client is made when an adapter first needs it — never at import,
so a test's (or the local cloud's) mock is active first, and a handler's cold start pays only for the
clients its step uses: making one loads its service's model, tens of milliseconds each.

Clients come from botocore's own session, not boto3's: they are the same clients (boto3's are botocore's,
plus resources and S3's transfer methods, which Flywheel uses neither of), and importing boto3 costs a cold
start about twice what botocore alone does, most of it ``s3transfer``, which boto3 imports eagerly.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

Service = Literal["s3", "dynamodb", "stepfunctions", "lambda", "firehose"]


class AwsClients:
    """boto3 clients for one region (None: the environment's), each made on first use and then shared.

    Clients are thread-safe once made; making them is not (boto3's sessions are not), so each factory has
    its own session and makes clients under a lock."""

    def __init__(self, region: str | None = None) -> None:
        self.region = region
        self._session: Any = None
        self._made: dict[tuple[Service, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: Service, **config: Any) -> Any:
        """The client for ``service``; ``config`` (botocore ``Config`` options such as ``read_timeout``)
        makes and keeps a separate one."""
        key = (service, repr(sorted(config.items())))
        with self._lock:
            if key not in self._made:
                import botocore.session  # noqa: PLC0415  (made on first use, after any mock is active)
                from botocore.config import Config  # noqa: PLC0415

                if self._session is None:
                    self._session = botocore.session.get_session()
                options = {"config": Config(**config)} if config else {}
                self._made[key] = self._session.create_client(service, region_name=self.region, **options)
            return self._made[key]
