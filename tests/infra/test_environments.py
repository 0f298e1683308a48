"""Environments are stacks: what each Pulumi.<stack>.yaml changes, and what every stack shares."""

from __future__ import annotations

import pytest

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.spec import BucketSpec, StackSpec
from tests.infra.harness import Deployment, T, run_main, run_program

pytestmark = pytest.mark.infra

# Inputs that hold a resource's physical name, by type; a Stage's "$default" is API Gateway's name.
NAMED = {
    T.BUCKET: "bucketPrefix",
    T.TABLE: "name",
    T.REPOSITORY: "name",
    T.ROLE: "name",
    T.LOG_GROUP: "name",
    T.FUNCTION: "name",
    T.STREAM: "name",
    T.STATE_MACHINE: "name",
    T.RULE: "name",
    T.API: "name",
    T.AUTHORIZER: "name",
}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_program_reads_the_config_its_stack_file_declares(stack: str) -> None:
    """Given Pulumi.<stack>.yaml handed over as the Pulumi CLI does (every value a string)
    When the program reads its configuration
    Then it gets what the stack file declares."""
    deployed = run_program(
        lambda _config: StackSpec(project="plat", buckets=(BucketSpec(name="data"),)), stack
    )
    assert deployed.config == StackConfig.from_stack_file(stack)


def test_prod_protects_every_table_and_bucket_from_deletion(flywheel_prod: Deployment) -> None:
    """Given Pulumi.prod.yaml sets protect
    When the program runs Flywheel's spec for prod
    Then every table has deletion protection, and every table and bucket is protected by Pulumi and
    kept in AWS should the stack ever be destroyed."""
    tables, buckets = flywheel_prod.all(T.TABLE), flywheel_prod.all(T.BUCKET)
    assert {t.name for t in tables} == {t.name for t in flywheel_prod.spec.tables}
    assert {b.name for b in buckets} == {b.name for b in flywheel_prod.spec.buckets}
    for table in tables:
        assert table.inputs["deletionProtectionEnabled"] is True, table.name
    for resource in (*tables, *buckets):
        assert resource.protect and resource.retain_on_delete, resource.name


def test_dev_protects_nothing(flywheel_dev: Deployment) -> None:
    for table in flywheel_dev.all(T.TABLE):
        assert table.inputs["deletionProtectionEnabled"] is False, table.name
    assert not any(r.protect or r.retain_on_delete for r in flywheel_dev.resources)


@pytest.mark.parametrize(("fixture", "days"), [("flywheel_dev", 90), ("flywheel_prod", 400)])
def test_captures_are_kept_as_long_as_the_stack_says(
    request: pytest.FixtureRequest, fixture: str, days: int
) -> None:
    deployed: Deployment = request.getfixturevalue(fixture)
    [rule] = deployed.one(T.LIFECYCLE, "data").inputs["rules"]
    assert rule["filter"] == {"prefix": "captures/"}
    assert rule["expiration"] == {"days": days}
    assert rule["transitions"] == [{"days": 30, "storageClass": "STANDARD_IA"}]


@pytest.mark.parametrize("fixture", ["flywheel_prod", "platform_dev"])
def test_physical_names_carry_the_project_and_the_stack(request: pytest.FixtureRequest, fixture: str) -> None:
    deployed: Deployment = request.getfixturevalue(fixture)
    stem = f"{deployed.spec.project}-{deployed.stack}-"
    named = [r for r in deployed.resources if r.type in NAMED]
    assert len(named) >= len(deployed.spec.buckets) + len(deployed.spec.tables)
    for resource in named:
        assert stem in resource.inputs[NAMED[resource.type]], (resource.type, resource.name)


def test_every_resource_belongs_to_one_capability_component(platform_dev: Deployment) -> None:
    """Components hang off the stack; every AWS resource and the image hang off a component."""
    components = [r for r in platform_dev.resources if r.type.startswith("flywheel:")]
    assert {c.type for c in components} == {
        T.STORAGE,
        T.NOTIFICATIONS,
        T.TABLES,
        T.FUNCTIONS,
        T.CAPTURE,
        T.PIPELINE,
        T.SCHEDULES,
        T.API_COMPONENT,
    }
    assert {Deployment.component_of(c) for c in components} == {"pulumi:pulumi:Stack"}
    for resource in platform_dev.resources:
        if resource not in components:
            assert Deployment.component_of(resource).startswith("flywheel:"), (resource.type, resource.name)


def test_the_stack_exports_what_consumers_need(platform_dev: Deployment) -> None:
    outputs = platform_dev.outputs
    assert outputs["buckets"] == {b.name: b.outputs["bucket"] for b in platform_dev.all(T.BUCKET)}
    assert outputs["tables"] == {"events": "plat-dev-events"}
    assert outputs["functions"] == {f.name: f"plat-dev-{f.name}" for f in platform_dev.spec.functions}
    assert set(outputs) == {
        "buckets",
        "tables",
        "functions",
        "environment",
        "state_machine_arn",
        "stream_name",
        "api_endpoint",
    }


def test_a_stack_without_stream_state_machine_or_routes_exports_none_of_them() -> None:
    spec = StackSpec(project="plat", buckets=(BucketSpec(name="data"),))
    outputs = run_program(lambda _config: spec, "dev").outputs
    assert set(outputs) == {"buckets", "tables", "functions", "environment"}
    assert outputs["environment"]["FLYWHEEL_ENVIRONMENT"] == "dev"


def test_pulumi_up_deploys_flywheel_for_the_selected_stack_and_exports_its_environment() -> None:
    """Given the staging stack selected
    When Pulumi runs infra/__main__.py
    Then Flywheel's own spec is declared under staging names and the stack exports the environment
    its functions receive (what `flywheel` reads with `pulumi stack output environment`)."""
    resources, exported = run_main("staging")
    spec = flywheel_stack(StackConfig.from_stack_file("staging"))
    tables = {r.inputs["name"] for r in resources if r.type == T.TABLE}
    assert tables == {f"flywheel-staging-{t.name}" for t in spec.tables}
    assert {"buckets", "tables", "functions", "environment"} <= set(exported)
    assert exported["environment"]["FLYWHEEL_ENVIRONMENT"] == "staging"
    assert exported["environment"]["FLYWHEEL_REGISTRY_TABLE"] == "flywheel-staging-registry"
