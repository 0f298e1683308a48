"""Every IAM document the stack declares, linted by parliament (duo-labs' IAM policy linter).

Parliament knows each service's actions, resource types and condition keys (its own copy of AWS's Service
Authorization Reference), so it finds an unknown action, an action on a resource type it does not apply to
(``s3:ListBucket`` on an object ARN), a malformed ARN or condition. It reads identity policies, which is what
a role's inline policies and a bucket policy's statements are; trust policies (no ``Resource``) are held to
their own rule: one service or federated principal may assume the role, nothing else.

A finding that AWS itself asks for is accepted here by name, with the page that asks for it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from infra.policies import MAP_RUN_CHILDREN_SID
from infra.preflight.mocks import Registered
from infra.preflight.rules import Finding

IDENTITY_DOCUMENTS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
}
TRUST_ACTIONS = {"sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"}


@dataclass(frozen=True)
class Accepted:
    """A parliament finding on one statement that the statement exists for, and why that is sound."""

    issue: str
    sid: str
    why: str


ACCEPTED = (
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "LogDelivery",
        "Step Functions delivers its logs with the caller's right to write the log group's resource policy "
        "(https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html)",
    ),
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "PassTaskRoles",
        "ecs:runTask.sync passes the step task's task and execution roles to ECS, conditioned on "
        "ecs-tasks.amazonaws.com (https://docs.aws.amazon.com/step-functions/latest/dg/ecs-iam.html)",
    ),
    Accepted(
        "CREDENTIALS_EXPOSURE",
        "RegistryToken",
        "a task's execution role logs in to ECR to pull the image; GetAuthorizationToken takes no resource "
        "(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html)",
    ),
    # The GitHub deploy role (infra/bootstrap/github-oidc.yaml) creates what `pulumi up` declares: roles with
    # their inline policies, buckets with their policies, an image pushed to ECR. Each right is limited to
    # resources named after the project.
    Accepted("PERMISSIONS_MANAGEMENT_ACTIONS", "ManageStackRoles", "it creates the functions' roles"),
    Accepted("PRIVILEGE_ESCALATION", "ManageStackRoles", "it writes the functions' inline policies"),
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS", "ManageStackBuckets", "it writes the TLS-only bucket policies"
    ),
    Accepted(
        "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
        "ManageStackBuckets",
        "it writes bucket policies and lifecycles",
    ),
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "ManageStackFunctions",
        "it lets S3, EventBridge and API Gateway invoke",
    ),
    Accepted("PRIVILEGE_ESCALATION", "ManageStackFunctions", "it creates functions with the stack's roles"),
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS",
        "PassRolesToTheStacksServices",
        "only the stack's roles, to 3 services",
    ),
    Accepted(
        "PERMISSIONS_MANAGEMENT_ACTIONS", "EncryptionGrantsForTheServices", "only through ECR and DynamoDB"
    ),
    Accepted("CREDENTIALS_EXPOSURE", "RegistryLogin", "docker-build logs in to ECR to push the image"),
    # A Distributed Map describes and stops its child executions, whose ARNs carry the map's label
    # (execution:<machine>/<label>:<id>, the "labelled execution" resource type); parliament's copy of the
    # Service Authorization Reference predates it and knows only execution:<machine>:<id> for these actions
    # (https://docs.aws.amazon.com/step-functions/latest/dg/iam-policies-eg-dist-map.html).
    Accepted(
        "RESOURCE_MISMATCH",
        MAP_RUN_CHILDREN_SID,
        "a Distributed Map's child executions are labelled executions, which parliament does not know",
    ),
)


def documents(resources: Sequence[Registered]) -> Iterator[tuple[str, str, str]]:
    """(where, kind, JSON) of every IAM document: identity policies and trust policies."""
    for resource in resources:
        where = f"{resource.type.rsplit(':', 1)[-1]} {resource.name!r}"
        if resource.type in IDENTITY_DOCUMENTS:
            yield where, "identity", resource.inputs[IDENTITY_DOCUMENTS[resource.type]]
        elif resource.type == "aws:iam/role:Role":
            yield where, "trust", resource.inputs["assumeRolePolicy"]


def _parliament(text: str) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament still imports pkg_resources
        from parliament import analyze_policy_string  # noqa: PLC0415 (a lint-time dependency)

        return list(analyze_policy_string(text, include_community_auditors=True).findings)


def lint_identity_policy(text: str, where: str) -> list[Finding]:
    """Parliament's findings on one identity policy. A statement with an accepted finding is linted on its
    own, less that finding; the rest of the policy as a whole."""
    document = json.loads(text)
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    accepted: dict[str, set[str]] = {}
    for entry in ACCEPTED:
        accepted.setdefault(entry.sid, set()).add(entry.issue)
    special = [s for s in statements if s.get("Sid") in accepted]
    rest = [s for s in statements if s.get("Sid") not in accepted]
    findings = _parliament(json.dumps({**document, "Statement": rest})) if rest or not special else []
    for statement in special:
        alone = json.dumps({**document, "Statement": [statement]})
        findings += [f for f in _parliament(alone) if f.issue not in accepted[statement["Sid"]]]
    return [
        Finding(where, "policy", f"{f.issue} ({f.severity}) {_detail(f.detail)}".strip(), "parliament")
        for f in findings
    ]


def _detail(detail: Any) -> str:
    return detail if isinstance(detail, str) else json.dumps(detail, default=str)


def lint_trust_policy(text: str, where: str) -> list[Finding]:
    """A trust policy lets one service or OIDC provider assume the role, and says nothing else."""
    found: list[Finding] = []
    document = json.loads(text)
    if document.get("Version") != "2012-10-17":
        found.append(Finding(where, "assumeRolePolicy", "Version is not 2012-10-17", "trust"))
    for statement in document.get("Statement", []):
        principal = statement.get("Principal")
        actions = statement.get("Action")
        actions = {actions} if isinstance(actions, str) else set(actions or ())
        if statement.get("Effect") != "Allow" or not actions or not actions <= TRUST_ACTIONS:
            found.append(Finding(where, "assumeRolePolicy", f"statement allows {sorted(actions)}", "trust"))
        if (
            not isinstance(principal, dict)
            or not set(principal) <= {"Service", "Federated"}
            or "*" in str(principal)
        ):
            found.append(
                Finding(
                    where,
                    "assumeRolePolicy",
                    f"principal {principal!r} is not one service or provider",
                    "trust",
                )
            )
        if "Resource" in statement:
            found.append(Finding(where, "assumeRolePolicy", "a trust policy takes no Resource", "trust"))
    return found


def lint(resources: Sequence[Registered]) -> list[Finding]:
    """Every IAM document of the deployment, linted."""
    found: list[Finding] = []
    for where, kind, text in documents(resources):
        found += lint_identity_policy(text, where) if kind == "identity" else lint_trust_policy(text, where)
    return found
