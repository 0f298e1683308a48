"""The local cloud: the stack spec on moto, with Lambda run in-process (see ``cloud.py``)."""

from infra.local.cloud import LocalCloud

__all__ = ["LocalCloud"]
