"""Functions read exactly the environment infra writes; names and policies derive from the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import StackConfig
from infra.flywheel import flywheel_stack
from infra.names import StackNames
from infra.policies import function_policy, state_machine_policy
from shared.env_names import EnvVar
from shared.settings import Settings
from tests.fixtures.stack import platform_stack

pytestmark = pytest.mark.unit


def test_settings_read_the_environment_infra_gives_every_function() -> None:
    """Given Flywheel's stack, when infra computes a function's environment, then Settings validates it
    (plus the AWS_REGION Lambda sets) into the physical names: the two sides cannot drift apart."""
    config = StackConfig.from_stack_file("dev")
    spec = flywheel_stack(config)
    names = StackNames.for_spec(spec, "dev", "eu-west-1", "111122223333")
    environment = names.environment(spec, config.environment)

    settings = Settings.model_validate({**environment, "AWS_REGION": "eu-west-1"})

    assert settings.data_bucket == "flywheel-dev-data"
    assert settings.registry_table == "flywheel-dev-registry"
    assert settings.capture_stream == "flywheel-dev-captures"
    assert settings.environment == "dev"
    assert "AWS_REGION" not in environment  # reserved by Lambda


def test_arns_follow_aws_formats() -> None:
    spec = platform_stack()
    names = StackNames.for_spec(spec, "dev", "eu-west-1", "111122223333")
    assert names.bucket_arn("data") == "arn:aws:s3:::plat-dev-data"
    assert names.table_arn("events") == "arn:aws:dynamodb:eu-west-1:111122223333:table/plat-dev-events"
    assert names.function_arn("echo") == "arn:aws:lambda:eu-west-1:111122223333:function:plat-dev-echo"
    assert names.state_machine_arn() == "arn:aws:states:eu-west-1:111122223333:stateMachine:plat-dev-pipeline"
    assert names.stream_arn() == "arn:aws:firehose:eu-west-1:111122223333:deliverystream/plat-dev-captures"


def test_a_function_policy_is_its_permissions_plus_logs_and_tracing() -> None:
    spec = platform_stack()
    names = StackNames.for_spec(spec, "dev", "eu-west-1", "111122223333")

    policy = function_policy(spec.function("on-upload"), names)

    granted = {(tuple(s["Action"]), s["Resource"]) for s in policy["Statement"]}
    assert (("s3:GetObject", "s3:GetObjectVersion"), "arn:aws:s3:::plat-dev-data/incoming/*") in granted
    assert any(r.endswith(":table/plat-dev-events") for _, r in granted)
    logs = next(s for s in policy["Statement"] if s["Sid"] == "OwnLogs")
    assert (
        logs["Resource"] == "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/plat-dev-on-upload:*"
    )
    stars = [s for s in policy["Statement"] if s["Resource"] == "*"]
    assert [s["Sid"] for s in stars] == ["Tracing"]
    assert all("*" not in a for s in policy["Statement"] for a in s["Action"])


def test_the_state_machine_may_invoke_exactly_the_functions_it_names() -> None:
    spec = platform_stack()
    names = StackNames.for_spec(spec, "dev", "eu-west-1", "111122223333")
    _, invoked = spec.state_machine_definition(names.function_arns())

    policy = state_machine_policy(invoked, names)

    resources = policy["Statement"][0]["Resource"]
    assert {r.rsplit(":", 1)[-1] for r in resources if not r.endswith(":*")} == {
        f"plat-dev-{f}" for f in ("echo", "flaky", "broken", "sleepy", "patient")
    }


def test_stack_files_load_and_prod_is_protected() -> None:
    assert StackConfig.from_stack_file("prod").protect is True
    assert StackConfig.from_stack_file("dev").protect is False
    with pytest.raises(ValueError, match="jwtIssuer and jwtAudience"):
        StackConfig.from_values("dev", {"flywheel:apiAuth": "jwt"})
    with pytest.raises(ValueError, match="extra"):
        StackConfig.from_values("dev", {"flywheel:protekt": True})


def test_serving_limits_have_defaults_and_read_their_variables() -> None:
    """The predict function's knobs need not be set by infra; when they are, they are read."""
    required = {
        "FLYWHEEL_ENVIRONMENT": "dev",
        "AWS_REGION": "eu-west-1",
        "FLYWHEEL_DATA_BUCKET": "d",
        "FLYWHEEL_ARTIFACTS_BUCKET": "a",
        "FLYWHEEL_REGISTRY_TABLE": "r",
        "FLYWHEEL_METADATA_TABLE": "m",
        "FLYWHEEL_IDEMPOTENCY_TABLE": "i",
        "FLYWHEEL_CAPTURE_STREAM": "c",
        "FLYWHEEL_STATE_MACHINE_ARN": "s",
        "FLYWHEEL_TRIGGER_FUNCTION": "t",
    }
    defaults = Settings.model_validate(required)
    assert (defaults.alias_refresh_seconds, defaults.max_rows_per_request, defaults.max_request_bytes) == (
        5.0,
        1000,
        6_000_000,
    )
    tuned = Settings.model_validate(
        {
            **required,
            EnvVar.ALIAS_REFRESH_SECONDS.value: "1.5",
            EnvVar.MAX_PREDICT_ROWS.value: "50",
            EnvVar.MAX_REQUEST_BYTES.value: "1000",
        }
    )
    assert (tuned.alias_refresh_seconds, tuned.max_rows_per_request, tuned.max_request_bytes) == (
        1.5,
        50,
        1000,
    )


def test_commands_read_the_stack_files_of_the_team_project_they_run_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team's own repository (Flywheel installed as a package) holds its Pulumi project: the commands run
    there read its stack files, not Flywheel's; elsewhere they read this checkout's."""
    (tmp_path / "Pulumi.yaml").write_text("name: acme-ml\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  aws:region: eu-west-1\n  flywheel:modelsDir: models\n"
    )
    monkeypatch.chdir(tmp_path)
    team = StackConfig.from_stack_file("dev")
    assert (team.region, team.models_dir) == ("eu-west-1", "models")

    monkeypatch.chdir(tmp_path.parent)
    assert StackConfig.from_stack_file("dev").models_dir is None  # this checkout's Pulumi.dev.yaml
