"""Fixtures of the infrastructure tier: the program run once per stack and spec, shared by the tests
(a run is pure data once it returns), and Pulumi's process-wide settings reset around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.flywheel import flywheel_stack
from tests.fixtures.stack import platform_stack
from tests.infra.harness import Deployment, reset_pulumi, run_program

JWT_CONFIG = {
    "flywheel:apiAuth": "jwt",
    "flywheel:jwtIssuer": "https://issuer.example.com/",
    "flywheel:jwtAudience": ["flywheel-api"],
}


@pytest.fixture(autouse=True)
def _fresh_pulumi() -> Iterator[None]:
    reset_pulumi()
    yield
    reset_pulumi()


@pytest.fixture(scope="session")
def platform_dev() -> Deployment:
    """The platform test spec (one of every resource kind) in the dev stack."""
    return run_program(lambda _config: platform_stack(), "dev")


@pytest.fixture(scope="session")
def platform_jwt() -> Deployment:
    """The platform test spec in the dev stack, with the API authorised by JWT."""
    return run_program(lambda _config: platform_stack(), "dev", JWT_CONFIG)


@pytest.fixture(scope="session")
def flywheel_dev() -> Deployment:
    return run_program(flywheel_stack, "dev")


@pytest.fixture(scope="session")
def flywheel_prod() -> Deployment:
    return run_program(flywheel_stack, "prod")
