"""The platform test stack on the local cloud, in both modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local import LocalCloud
from tests.conftest import free_port
from tests.fixtures.stack import platform_stack


@pytest.fixture(scope="module", params=["in-process", "server"])
def platform(request: pytest.FixtureRequest) -> Iterator[LocalCloud]:
    """The platform stack, provisioned once per module and mode."""
    cloud = LocalCloud(platform_stack())
    if request.param == "in-process":
        with cloud.in_process():
            cloud.start_gateway()
            yield cloud
    else:
        with cloud.serving(port=free_port(), run_scheduler=False):
            yield cloud
