"""Promotion policy: which way a verified version may move in this environment, and why not when it may not.

Each environment (dev, staging, prod — the stack's ``environment``) has a policy: ``auto`` promotes to
production as soon as verification passes; ``approval`` moves the version to the ``staging`` alias and waits
for a person (``flywheel approve`` / ``flywheel reject``; a timeout rejects). ``min_staging_successes``
holds production back until the version has passed that many verifications while in staging. The contract's
``promotion:`` block sets a policy per environment; the stack config sets the environment's default; the
built-in default is ``auto``. Pure logic: the pipeline steps and the CLI both ask :func:`refusals`.
"""

from __future__ import annotations

from typing import Any

from shared.registry import ModelVersion, Stage
from shared.settings import EnvironmentPolicy

VERIFICATION_KEY = "verification"
STAGING_PASSES_KEY = "staging_verifications_passed"


def policy_for(
    environment: str,
    contract_policies: dict[str, EnvironmentPolicy],
    stack_default: EnvironmentPolicy | None = None,
) -> EnvironmentPolicy:
    """The contract's policy for this environment, else the stack's default, else ``auto``."""
    return contract_policies.get(environment) or stack_default or EnvironmentPolicy()


def staging_passes(version: ModelVersion) -> int:
    return int(version.runtime_metrics.get(STAGING_PASSES_KEY, 0))


def last_verification(version: ModelVersion) -> dict[str, Any] | None:
    found = version.runtime_metrics.get(VERIFICATION_KEY)
    return found if isinstance(found, dict) else None


def refusals(version: ModelVersion, target: Stage, policy: EnvironmentPolicy) -> list[str]:
    """Why ``version`` may not move to ``target`` under ``policy`` (empty: it may)."""
    problems: list[str] = []
    name = f"{version.name} v{version.version}"
    if target not in (Stage.STAGING, Stage.PRODUCTION):
        problems.append(f"versions are promoted to staging or production, not {target.value}")
        return problems
    if version.stage is Stage.REJECTED:
        problems.append(f"{name} was rejected; register a new version instead")
    if version.stage is Stage.ARCHIVED and target is Stage.STAGING:
        problems.append(f"{name} is archived; roll back to it with `flywheel rollback` instead")
    verification = last_verification(version)
    if verification is None:
        problems.append(f"{name} has not been verified on the serving path")
    elif not verification.get("passed"):
        reasons = "; ".join(verification.get("reasons", [])) or "no reason recorded"
        problems.append(f"{name} failed its last verification ({reasons})")
    if target is Stage.PRODUCTION and policy.min_staging_successes:
        passes = staging_passes(version)
        if passes < policy.min_staging_successes:
            problems.append(
                f"{name} has passed {passes} of the {policy.min_staging_successes} staging verifications "
                "this environment requires before production"
            )
    return problems
