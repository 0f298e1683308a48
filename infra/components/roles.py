"""Service roles: each function, the state machine and the delivery stream get a role of their own,
trusted by one AWS service, with one inline policy built from the spec."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi import ResourceOptions

from infra.policies import assume_role_policy
from infra.spec import SpecError

MAX_ROLE_NAME = 64


def role_name(physical: str, kind: str) -> str:
    """``<physical name>-<kind>``, checked against IAM's limit so the error names the resource."""
    name = f"{physical}-{kind}"
    if len(name) > MAX_ROLE_NAME:
        raise SpecError(
            f"role name {name!r} is longer than IAM's {MAX_ROLE_NAME} characters; shorten {physical!r}"
        )
    return name


def service_role(
    logical: str,
    *,
    physical: str,
    kind: str,
    service: str,
    policy: pulumi.Input[str],
    parent: pulumi.Resource,
) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """A role ``service`` may assume, and its inline ``policy`` (a JSON document)."""
    role = aws.iam.Role(
        logical,
        name=role_name(physical, kind),
        assume_role_policy=json.dumps(assume_role_policy(service)),
        opts=ResourceOptions(parent=parent),
    )
    inline = aws.iam.RolePolicy(logical, role=role.id, policy=policy, opts=ResourceOptions(parent=parent))
    return role, inline
