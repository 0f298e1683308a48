"""The model registry: versions, stages, aliases and the audit trail, in MLflow's vocabulary.

:class:`ModelRegistry` owns the rules: version numbers are allocated atomically and without gaps, a pipeline
run registers at most one version per model, aliases move with conditional writes, and a promotion moves the
``production`` alias, promotes the new version, archives the old one and appends both audit entries in one
atomic commit, so two promotions cannot interleave and the trail always agrees with the alias.

Storage sits behind :class:`RegistryStore`: reads plus :meth:`RegistryStore.commit`, which applies a batch of
typed writes (:data:`RegistryWrite`) all-or-nothing, each guarded by the precondition it carries, and raises
:class:`WriteConflictError` when one does not hold. :class:`DynamoRegistryStore` maps a commit onto
``TransactWriteItems``; :class:`InMemoryRegistryStore` applies it under a lock. The registry retries a lost
race after re-reading, and raises :class:`~shared.errors.ConflictError` only when what the caller expected no
longer holds.

Table layout (single table, string keys ``pk``/``sk``, one index ``gsi1``)::

    MODEL#<name>   MODEL                   counters, created_at     gsi1: MODELS / <name>
    MODEL#<name>   VERSION#<10 digits>     doc (JSON), stage, runtime_metrics, tags, approvals
                                                                    gsi1: STAGE#<stage> / <name>#<10 digits>
    MODEL#<name>   ALIAS#<alias>           the alias (JSON) and its version; a removed alias is a tombstone
                                           (``removed``, no version) that every read treats as absent
    MODEL#<name>   AUDIT#<10 digits>       one transition (JSON), numbered per model: newest sorts last
    RUN#<run_id>   VERSION#<name>          the version this run registered
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Final, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.dynamo import LazyClient, dynamodb_errors, number_value, string_value
from shared.errors import ConflictError, NotFoundError, TransientError
from shared.metadata import TimeRange, UtcDatetime, utcnow
from shared.naming import ALIAS_NAME, MODEL_NAME
from shared.observability import logger

T = TypeVar("T")

PRODUCTION_ALIAS: Final = "production"


class _Any(Enum):
    """The type of :data:`ANY`."""

    ANY = "any"


ANY: Final = _Any.ANY
"""``expected_version=ANY``: accept whatever the alias points to now (the default)."""


# --- records ---------------------------------------------------------------------------------------------


class _Record(BaseModel):
    # defer_build: a model's validators are built when it is first used, not at import, so a function pays
    # only for the records its step reads and writes (a light function imports many it never touches).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Stage(StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"
    REJECTED = "rejected"


class ServingFlavor(StrEnum):
    SKLEARN = "sklearn"
    ONNX = "onnx"


class ArtifactRef(_Record):
    """A stored file the registry vouches for: serving checks ``sha256`` before deserialising it."""

    uri: str
    sha256: str
    size: int | None = None


class TrainingDataset(_Record):
    """One dataset a version was trained on, pinned to the exact object version."""

    dataset_id: str
    uri: str
    version_id: str | None = None
    sha256: str
    rows: int
    time_range: TimeRange | None = None


class GateResult(_Record):
    passed: bool
    reasons: list[str] = Field(default_factory=list)


class Approval(_Record):
    actor: str
    at: UtcDatetime
    comment: str = ""
    run_id: str | None = None


class PendingApproval(_Record):
    """A promotion waiting for a person: the state machine task token, until approved, rejected or expired."""

    run_id: str
    token: str
    environment: str
    requested_at: UtcDatetime
    expires_at: UtcDatetime


class ExperimentRef(_Record):
    """The experiment whose winning trial chose a version's parameters. ``reused``: the run did not search
    but trained the winner of this earlier experiment (a scheduled retrain between experiments)."""

    experiment_id: str
    trial: int
    metric: str
    value: float
    params: dict[str, Any] = Field(default_factory=dict)
    reused: bool = False


class NewModelVersion(_Record):
    """What a caller supplies to register a version; the registry adds name, number, stage and provenance."""

    artifact: ArtifactRef
    description: str = ""
    serving_flavor: ServingFlavor = ServingFlavor.SKLEARN
    onnx_artifact: ArtifactRef | None = None
    flavor_reason: str = ""
    signature: dict[str, Any] = Field(default_factory=dict)
    training_datasets: list[TrainingDataset] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    champion_metrics: dict[str, Any] | None = None
    gate: GateResult | None = None
    runtime_metrics: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    code_version: str = ""
    # A model project's code, as the version was trained (and is unpickled) with it; its sha256 is the
    # version's code digest. None for the built-in estimators.
    code_artifact: ArtifactRef | None = None
    code_commit: str | None = None
    experiment: ExperimentRef | None = None
    reference_profile_uri: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ModelVersion(NewModelVersion):
    """One registered version. The audit trail is kept beside it, not in it (see :class:`Transition`)."""

    name: str
    version: int
    created_at: UtcDatetime
    stage: Stage = Stage.DEVELOPMENT
    run_id: str
    registered_by: str
    approvals: list[Approval] = Field(default_factory=list)
    pending_approval: PendingApproval | None = None

    @property
    def ref(self) -> str:
        """``<name>:<version>``: the model version's id in lineage."""
        return f"{self.name}:{self.version}"


class TransitionKind(StrEnum):
    STAGE = "stage"  # the version's stage changed (from_stage None: it was registered)
    ALIAS = "alias"  # an alias moved to the version
    ALIAS_REMOVED = "alias_removed"
    APPROVED = "approved"  # a person approved a promotion
    REJECTED = "rejected"  # a person rejected it, or the wait for one expired
    UNDELIVERED = "undelivered"  # a decision was claimed, but the run no longer waited for it


class Transition(_Record):
    """One append-only audit entry. A promotion's entry is a stage change that also moved ``alias``."""

    model: str
    version: int
    seq: int  # per model, from 1, without gaps: the trail's order
    kind: TransitionKind = TransitionKind.STAGE
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    alias: str | None = None
    previous_version: int | None = None  # where ``alias`` pointed before
    actor: str
    reason: str
    at: UtcDatetime
    run_id: str | None = None


class Alias(_Record):
    model: str
    alias: str
    version: int
    updated_at: UtcDatetime
    previous_version: int | None = None
    updated_by: str = ""
    reason: str = ""
    run_id: str | None = None


class RegisteredModel(_Record):
    """A model name: its counters (the last version number and the last audit entry's number)."""

    name: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    latest_version: int
    audit_seq: int


class PromotionResult(_Record):
    model: str
    version: int
    previous_version: int | None
    promoted_at: UtcDatetime
    actor: str
    reason: str
    run_id: str | None = None

    @classmethod
    def from_alias(cls, alias: Alias) -> PromotionResult:
        return cls(
            model=alias.model,
            version=alias.version,
            previous_version=alias.previous_version,
            promoted_at=alias.updated_at,
            actor=alias.updated_by,
            reason=alias.reason,
            run_id=alias.run_id,
        )


# --- the writes a commit applies, each with its precondition ------------------------------------------------


@dataclass(frozen=True)
class BumpModel:
    """Set the model's counters, if they still hold the expected values (both 0: the model is new)."""

    name: str
    expected_latest: int
    expected_audit_seq: int
    latest_version: int
    audit_seq: int
    at: datetime


@dataclass(frozen=True)
class PutVersion:
    """Create a version; the number must be free."""

    version: ModelVersion


@dataclass(frozen=True)
class PutRunLookup:
    """Record which version a run registered; the run must not have registered one already."""

    run_id: str
    name: str
    version: int


@dataclass(frozen=True)
class AppendTransition:
    """Append an audit entry; its number must be free."""

    transition: Transition


@dataclass(frozen=True)
class SetStage:
    """Move a version to ``stage``, if it is still in ``expected_stage``."""

    name: str
    version: int
    stage: Stage
    expected_stage: Stage


@dataclass(frozen=True)
class PutAlias:
    """Point an alias at a version, if it still points at ``expected_version`` (None: it must not exist)."""

    alias: Alias
    expected_version: int | None


@dataclass(frozen=True)
class RemoveAlias:
    """Remove an alias, if it still points at ``expected_version``. Stored as a tombstone, never a delete:
    no function's role may delete a registry item (``infra/flywheel.py``)."""

    name: str
    alias: str
    expected_version: int


@dataclass(frozen=True)
class PatchVersion:
    """Merge runtime metrics and tags into an existing version, drop tags, append approvals."""

    name: str
    version: int
    runtime_metrics: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    remove_tags: tuple[str, ...] = ()
    approvals: tuple[Approval, ...] = ()
    pending: PendingApproval | None = None
    clear_pending: bool = False
    # Holds only while the version still waits on this task token: how a decision claims the wait.
    expected_token: str | None = None


RegistryWrite = (
    BumpModel
    | PutVersion
    | PutRunLookup
    | AppendTransition
    | SetStage
    | PutAlias
    | RemoveAlias
    | PatchVersion
)


class WriteConflictError(ConflictError):
    """A commit's precondition did not hold; nothing was written."""


class AlreadyDecidedError(ConflictError):
    """The wait a decision meant to answer is no longer there: someone decided first (``decision``, the
    audit entry of who, what and when, when there is one), or the wait ended."""

    def __init__(self, message: str, decision: Transition | None) -> None:
        super().__init__(message, problems=[decision.model_dump(mode="json")] if decision else [])
        self.decision = decision


class RegistryStore(Protocol):
    """Where the registry keeps its records: consistent reads, and all-or-nothing commits."""

    def get_model(self, name: str) -> RegisteredModel | None: ...

    def list_models(self) -> list[RegisteredModel]: ...

    def get_version(self, name: str, version: int) -> ModelVersion | None: ...

    def list_versions(self, name: str) -> list[ModelVersion]: ...

    def versions_in_stage(self, stage: Stage, name: str | None = None) -> list[ModelVersion]: ...

    def version_for_run(self, run_id: str, name: str) -> int | None: ...

    def get_alias(self, name: str, alias: str) -> Alias | None: ...

    def list_aliases(self, name: str) -> list[Alias]: ...

    def transitions(self, name: str, limit: int | None = None) -> list[Transition]:
        """Newest first."""
        ...

    def commit(self, writes: Sequence[RegistryWrite]) -> None:
        """Apply every write or none; raise :class:`WriteConflictError` if a precondition does not hold."""
        ...


# --- the registry ----------------------------------------------------------------------------------------


class ModelRegistry:
    """MLflow-like registry over a :class:`RegistryStore`. Safe to share between threads."""

    def __init__(
        self,
        store: RegistryStore,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 50,
    ) -> None:
        self.store = store
        self._clock = clock
        self._max_attempts = max_attempts

    # registration

    def create_model_version(
        self,
        name: str,
        spec: NewModelVersion,
        *,
        run_id: str,
        registered_by: str,
        stage: Stage = Stage.DEVELOPMENT,
        reason: str = "registered",
    ) -> ModelVersion:
        """Register the next version of ``name`` (created on first use); one version per run, no gaps.

        Re-running with the same ``run_id`` returns the version that run registered.
        """
        _check_name(name)
        if stage is Stage.PRODUCTION:
            raise ValueError("a version reaches production through promote(), not at registration")

        def attempt() -> ModelVersion:
            existing = self.store.version_for_run(run_id, name)
            if existing is not None:
                return self._require_version(name, existing)
            model = self.store.get_model(name)
            latest, seq = (model.latest_version, model.audit_seq) if model else (0, 0)
            now = self._clock()
            version = ModelVersion(
                **spec.model_dump(),
                name=name,
                version=latest + 1,
                created_at=now,
                stage=stage,
                run_id=run_id,
                registered_by=registered_by,
            )
            # What a read will return: JSON has no NaN, so metrics that are NaN come back as null.
            version = ModelVersion.model_validate_json(version.model_dump_json())
            entry = Transition(
                model=name,
                version=version.version,
                seq=seq + 1,
                to_stage=stage,
                actor=registered_by,
                reason=reason,
                at=now,
                run_id=run_id,
            )
            self.store.commit(
                [
                    BumpModel(name, latest, seq, version.version, seq + 1, now),
                    PutVersion(version),
                    PutRunLookup(run_id, name, version.version),
                    AppendTransition(entry),
                ]
            )
            logger.info(
                "model version registered",
                extra={"model": name, "version": version.version, "stage": stage.value, "run_id": run_id},
            )
            return version

        return self._retrying(attempt, f"register a version of {name}")

    # reads

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return self._require_version(name, version)

    def search_model_versions(
        self, name: str | None = None, stage: Stage | None = None
    ) -> list[ModelVersion]:
        """Versions by name and/or stage, ordered by name then version.

        Stage searches read an index, which DynamoDB updates within about a second of a write.
        """
        if stage is not None:
            found = self.store.versions_in_stage(stage, name)
        elif name is not None:
            found = self.store.list_versions(name)
        else:
            found = [v for m in self.store.list_models() for v in self.store.list_versions(m.name)]
        return sorted(found, key=lambda v: (v.name, v.version))

    def get_latest_versions(self, name: str, stages: Sequence[Stage] | None = None) -> list[ModelVersion]:
        """The newest version in each stage (MLflow's ``get_latest_versions``), in :class:`Stage` order."""
        newest: dict[Stage, ModelVersion] = {}
        for version in self.store.list_versions(name):
            if version.stage not in newest or version.version > newest[version.stage].version:
                newest[version.stage] = version
        wanted = list(stages) if stages is not None else list(Stage)
        return [newest[s] for s in Stage if s in newest and s in wanted]

    def get_registered_model(self, name: str) -> RegisteredModel:
        model = self.store.get_model(name)
        if model is None:
            raise NotFoundError(f"model {name!r} is not registered")
        return model

    def list_models(self) -> list[RegisteredModel]:
        return sorted(self.store.list_models(), key=lambda m: m.name)

    def audit_trail(self, name: str, limit: int | None = None) -> list[Transition]:
        """Every transition of ``name``'s versions and aliases, newest first."""
        return self.store.transitions(name, limit)

    # aliases

    def get_alias(self, name: str, alias: str) -> Alias:
        found = self.store.get_alias(name, alias)
        if found is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        return found

    def list_aliases(self, name: str) -> list[Alias]:
        return sorted(self.store.list_aliases(name), key=lambda a: a.alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._require_version(name, self.get_alias(name, alias).version)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
        expected_version: int | _Any | None = ANY,
    ) -> Alias:
        """Point ``alias`` at ``version``, with an audit entry.

        With ``expected_version`` (None: the alias must not exist yet) the move happens only if the alias
        still points there, else :class:`ConflictError` names both versions. Setting the value the alias
        already has changes nothing. ``production`` moves only through :meth:`promote`.
        """
        _check_alias(alias)
        if alias == PRODUCTION_ALIAS:
            raise ValueError("the production alias moves only through promote()")
        self._require_version(name, version)

        def attempt() -> Alias:
            current = self.store.get_alias(name, alias)
            current_version = current.version if current else None
            if current is not None and current.version == version:
                return current
            if expected_version is not ANY and current_version != expected_version:
                raise _alias_conflict(name, alias, expected_version, current_version)
            model = self._require_model(name)
            now = self._clock()
            moved = Alias(
                model=name,
                alias=alias,
                version=version,
                updated_at=now,
                previous_version=current_version,
                updated_by=actor,
                reason=reason,
                run_id=run_id,
            )
            entry = Transition(
                model=name,
                version=version,
                seq=model.audit_seq + 1,
                kind=TransitionKind.ALIAS,
                alias=alias,
                previous_version=current_version,
                actor=actor,
                reason=reason,
                at=now,
                run_id=run_id,
            )
            self.store.commit(
                [*self._bump_audit(model, 1, now), PutAlias(moved, current_version), AppendTransition(entry)]
            )
            return moved

        return self._retrying(attempt, f"move alias {alias} of {name}")

    def delete_alias(
        self,
        name: str,
        alias: str,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
        expected_version: int | _Any = ANY,
    ) -> None:
        """Remove ``alias`` (a no-op if it does not exist), with an audit entry."""
        if alias == PRODUCTION_ALIAS:
            raise ValueError("the production alias cannot be removed; promote another version instead")

        def attempt() -> None:
            current = self.store.get_alias(name, alias)
            if current is None:
                return
            if expected_version is not ANY and current.version != expected_version:
                raise _alias_conflict(name, alias, expected_version, current.version)
            model = self._require_model(name)
            now = self._clock()
            entry = Transition(
                model=name,
                version=current.version,
                seq=model.audit_seq + 1,
                kind=TransitionKind.ALIAS_REMOVED,
                alias=alias,
                previous_version=current.version,
                actor=actor,
                reason=reason,
                at=now,
                run_id=run_id,
            )
            self.store.commit(
                [
                    *self._bump_audit(model, 1, now),
                    RemoveAlias(name, alias, current.version),
                    AppendTransition(entry),
                ]
            )

        self._retrying(attempt, f"remove alias {alias} of {name}")

    # stages

    def transition_stage(
        self,
        name: str,
        version: int,
        to_stage: Stage,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
        expected_stage: Stage | None = None,
    ) -> ModelVersion:
        """Move a version to ``to_stage`` with an audit entry; a no-op if it is there already.

        With ``expected_stage`` the move happens only from that stage (else :class:`ConflictError`).
        Production is entered and left only through :meth:`promote`.
        """
        if to_stage is Stage.PRODUCTION:
            raise ValueError("a version reaches production through promote()")

        def attempt() -> ModelVersion:
            current = self._require_version(name, version)
            if current.stage is to_stage:
                return current
            if expected_stage is not None and current.stage is not expected_stage:
                raise ConflictError(
                    f"{name} v{version} is {current.stage.value}, not {expected_stage.value}",
                    problems=[{"expected": expected_stage.value, "actual": current.stage.value}],
                )
            if current.stage is Stage.PRODUCTION:
                raise ConflictError(
                    f"{name} v{version} is in production; promote another version to replace it"
                )
            model = self._require_model(name)
            now = self._clock()
            entry = Transition(
                model=name,
                version=version,
                seq=model.audit_seq + 1,
                from_stage=current.stage,
                to_stage=to_stage,
                actor=actor,
                reason=reason,
                at=now,
                run_id=run_id,
            )
            self.store.commit(
                [
                    *self._bump_audit(model, 1, now),
                    SetStage(name, version, to_stage, current.stage),
                    AppendTransition(entry),
                ]
            )
            logger.info(
                "model version transitioned",
                extra={"model": name, "version": version, "from": current.stage.value, "to": to_stage.value},
            )
            return current.model_copy(update={"stage": to_stage})

        return self._retrying(attempt, f"move {name} v{version} to {to_stage.value}")

    def promote(
        self,
        name: str,
        version: int,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
        expected_version: int | _Any | None = ANY,
    ) -> PromotionResult:
        """Make ``version`` the production version, atomically.

        One commit moves the ``production`` alias, sets the version's stage to production, archives the
        version it replaces and appends both audit entries. The alias must still point where it pointed when
        this call first read it (or at ``expected_version``, when given: None means no production version
        yet); if another promotion moved it meanwhile, :class:`ConflictError` names both versions and a retry
        re-reads. Promoting the version already in production returns the same result and writes nothing.
        """
        self._require_version(name, version)
        if expected_version is ANY:
            alias = self.store.get_alias(name, PRODUCTION_ALIAS)
            expected: int | None = alias.version if alias else None
        else:
            expected = expected_version

        def attempt() -> PromotionResult:
            current = self.store.get_alias(name, PRODUCTION_ALIAS)
            candidate = self._require_version(name, version)
            if current is not None and current.version == version and candidate.stage is Stage.PRODUCTION:
                return PromotionResult.from_alias(current)
            current_version = current.version if current else None
            if current_version != expected:
                raise _alias_conflict(name, PRODUCTION_ALIAS, expected, current_version)
            if candidate.stage is Stage.REJECTED:
                raise ConflictError(f"{name} v{version} was rejected and cannot be promoted")
            model = self._require_model(name)
            now = self._clock()
            previous = current_version if current_version != version else None
            writes: list[RegistryWrite] = []
            entries: list[Transition] = []
            seq = model.audit_seq
            if previous is not None:
                replaced = self._require_version(name, previous)
                if replaced.stage is Stage.PRODUCTION:
                    seq += 1
                    writes.append(SetStage(name, previous, Stage.ARCHIVED, Stage.PRODUCTION))
                    entries.append(
                        Transition(
                            model=name,
                            version=previous,
                            seq=seq,
                            from_stage=Stage.PRODUCTION,
                            to_stage=Stage.ARCHIVED,
                            actor=actor,
                            reason=f"replaced by v{version}: {reason}",
                            at=now,
                            run_id=run_id,
                        )
                    )
            seq += 1
            entries.append(
                Transition(
                    model=name,
                    version=version,
                    seq=seq,
                    from_stage=candidate.stage,
                    to_stage=Stage.PRODUCTION,
                    alias=PRODUCTION_ALIAS,
                    previous_version=previous,
                    actor=actor,
                    reason=reason,
                    at=now,
                    run_id=run_id,
                )
            )
            moved = Alias(
                model=name,
                alias=PRODUCTION_ALIAS,
                version=version,
                updated_at=now,
                previous_version=previous,
                updated_by=actor,
                reason=reason,
                run_id=run_id,
            )
            if candidate.stage is not Stage.PRODUCTION:
                writes.append(SetStage(name, version, Stage.PRODUCTION, candidate.stage))
            self.store.commit(
                [
                    *self._bump_audit(model, len(entries), now),
                    PutAlias(moved, current_version),
                    *writes,
                    *(AppendTransition(e) for e in entries),
                ]
            )
            logger.info(
                "model promoted",
                extra={"model": name, "version": version, "previous_version": previous, "run_id": run_id},
            )
            return PromotionResult.from_alias(moved)

        return self._retrying(attempt, f"promote {name} v{version}")

    # annotations that are not transitions

    def update_runtime_metrics(self, name: str, version: int, metrics: dict[str, Any]) -> ModelVersion:
        """Merge ``metrics`` (load time, latency percentiles, ...) into the version's runtime metrics."""
        self._patch(PatchVersion(name, version, runtime_metrics=dict(metrics)))
        return self._require_version(name, version)

    def set_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._patch(PatchVersion(name, version, tags={key: value}))

    def delete_tag(self, name: str, version: int, key: str) -> None:
        self._patch(PatchVersion(name, version, remove_tags=(key,)))

    def add_approval(
        self, name: str, version: int, *, actor: str, comment: str = "", run_id: str | None = None
    ) -> ModelVersion:
        """Record who approved the version (the promotion policy decides whether that is enough)."""
        approval = Approval(actor=actor, at=self._clock(), comment=comment, run_id=run_id)
        self._patch(PatchVersion(name, version, approvals=(approval,)))
        return self._require_version(name, version)

    def record_decision(
        self,
        name: str,
        version: int,
        *,
        approved: bool,
        actor: str,
        reason: str,
        run_id: str | None = None,
    ) -> Transition:
        """Append an approval or a rejection to the audit trail; an approval is also kept on the version."""

        def attempt() -> Transition:
            model, now = self._require_model(name), self._clock()
            kind = TransitionKind.APPROVED if approved else TransitionKind.REJECTED
            entry = self._note(model, self._require_version(name, version), kind, actor, reason, run_id, now)
            writes: list[RegistryWrite] = [*self._bump_audit(model, 1, now), AppendTransition(entry)]
            if approved:
                writes.append(
                    PatchVersion(
                        name,
                        version,
                        approvals=(Approval(actor=actor, at=now, comment=reason, run_id=run_id),),
                    )
                )
            self.store.commit(writes)
            return entry

        return self._retrying(attempt, f"record a decision on {name} v{version}")

    def claim_decision(
        self, name: str, version: int, *, token: str, approved: bool, actor: str, reason: str
    ) -> Transition:
        """Decide the wait on ``token``, once: one commit ends the wait (conditionally on the version still
        waiting on that token) and appends the decision to the audit trail. Of two decisions sent at the
        same instant exactly one commits; the other gets :class:`AlreadyDecidedError` with the winner's
        audit entry. The decision is sent to the run only after it was claimed, by the caller."""

        def attempt() -> Transition:
            current = self._require_version(name, version)
            pending = current.pending_approval
            if pending is None or pending.token != token:
                decided = self.decision_on(name, version)
                raise AlreadyDecidedError(
                    f"{name} v{version} is no longer waiting for this decision", decided
                )
            model, now = self._require_model(name), self._clock()
            kind = TransitionKind.APPROVED if approved else TransitionKind.REJECTED
            entry = self._note(model, current, kind, actor, reason, pending.run_id, now)
            self.store.commit(
                [
                    *self._bump_audit(model, 1, now),
                    AppendTransition(entry),
                    PatchVersion(name, version, clear_pending=True, expected_token=token),
                ]
            )
            return entry

        return self._retrying(attempt, f"decide on {name} v{version}")

    def decision_on(self, name: str, version: int) -> Transition | None:
        """The newest approval, rejection or undelivered decision on ``version`` in the audit trail."""
        kinds = (TransitionKind.APPROVED, TransitionKind.REJECTED, TransitionKind.UNDELIVERED)
        for entry in self.audit_trail(name):
            if entry.version == version and entry.kind in kinds:
                return entry
        return None

    def record_undelivered(self, name: str, version: int, *, claimed: Transition, error: str) -> Transition:
        """The run never took ``claimed`` (its wait had expired, or the token was gone): say so in the trail,
        so it does not read as a decision that moved anything."""

        def attempt() -> Transition:
            model, now = self._require_model(name), self._clock()
            reason = (
                f"the {claimed.kind.value} decision (audit #{claimed.seq}) did not reach the run: {error}"
            )
            current = self._require_version(name, version)
            entry = self._note(
                model, current, TransitionKind.UNDELIVERED, claimed.actor, reason, claimed.run_id, now
            )
            self.store.commit([*self._bump_audit(model, 1, now), AppendTransition(entry)])
            return entry

        return self._retrying(attempt, f"record an undelivered decision on {name} v{version}")

    def request_approval(self, name: str, version: int, pending: PendingApproval) -> ModelVersion:
        """Keep the promotion that waits for a person (the state machine's task token) on the version."""
        self._patch(PatchVersion(name, version, pending=pending))
        return self._require_version(name, version)

    def clear_pending_approval(self, name: str, version: int) -> ModelVersion:
        """The wait is over (approved, rejected or expired): forget the token."""
        self._patch(PatchVersion(name, version, clear_pending=True))
        return self._require_version(name, version)

    # helpers

    @staticmethod
    def _note(
        model: RegisteredModel,
        current: ModelVersion,
        kind: TransitionKind,
        actor: str,
        reason: str,
        run_id: str | None,
        now: datetime,
    ) -> Transition:
        """The next audit entry of ``model``: a note on ``current`` that leaves its stage as it is."""
        return Transition(
            model=model.name,
            version=current.version,
            seq=model.audit_seq + 1,
            kind=kind,
            from_stage=current.stage,
            to_stage=current.stage,
            actor=actor,
            reason=reason,
            at=now,
            run_id=run_id,
        )

    def _patch(self, patch: PatchVersion) -> None:
        self._require_version(patch.name, patch.version)
        if not (
            patch.runtime_metrics
            or patch.tags
            or patch.remove_tags
            or patch.approvals
            or patch.pending
            or patch.clear_pending
        ):
            return
        try:
            self.store.commit([patch])
        except WriteConflictError as error:  # versions are never deleted: only a typo'd name gets here
            raise NotFoundError(f"{patch.name} v{patch.version} does not exist") from error

    def _require_version(self, name: str, version: int) -> ModelVersion:
        found = self.store.get_version(name, version)
        if found is None:
            raise NotFoundError(f"{name} v{version} does not exist")
        return found

    def _require_model(self, name: str) -> RegisteredModel:
        return self.get_registered_model(name)

    @staticmethod
    def _bump_audit(model: RegisteredModel, entries: int, at: datetime) -> list[RegistryWrite]:
        return [
            BumpModel(
                model.name,
                model.latest_version,
                model.audit_seq,
                model.latest_version,
                model.audit_seq + entries,
                at,
            )
        ]

    def _retrying(self, attempt: Callable[[], T], what: str) -> T:
        for number in range(self._max_attempts):
            try:
                return attempt()
            except WriteConflictError:
                # Someone else wrote in between: back off with jitter, re-read, decide again.
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2**number)))
        raise TransientError(f"could not {what}: {self._max_attempts} attempts lost a race")


def _alias_conflict(name: str, alias: str, expected: int | _Any | None, actual: int | None) -> ConflictError:
    def show(v: int | _Any | None) -> str:
        return "absent" if v is None else f"v{v}"

    return ConflictError(
        f"alias {alias} of {name} points at {show(actual)}, expected {show(expected)}",
        problems=[{"alias": alias, "expected": expected, "actual": actual}],
    )


def _check_name(name: str) -> None:
    if not re.match(MODEL_NAME, name):
        raise ValueError(f"invalid model name {name!r}: lower-case letters, digits and '-' only")


def _check_alias(alias: str) -> None:
    if not re.match(ALIAS_NAME, alias):
        raise ValueError(f"invalid alias {alias!r}: lower-case letters, digits, '_' and '-' only")


# --- in memory -------------------------------------------------------------------------------------------


class InMemoryRegistryStore:
    """The registry store in a process's memory, for the domain's tests. Thread-safe; same semantics."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, RegisteredModel] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._runs: dict[tuple[str, str], int] = {}
        self._aliases: dict[tuple[str, str], Alias] = {}
        self._audit: dict[str, dict[int, Transition]] = {}

    def get_model(self, name: str) -> RegisteredModel | None:
        with self._lock:
            return self._models.get(name)

    def list_models(self) -> list[RegisteredModel]:
        with self._lock:
            return sorted(self._models.values(), key=lambda m: m.name)

    def get_version(self, name: str, version: int) -> ModelVersion | None:
        with self._lock:
            found = self._versions.get((name, version))
            return _copy(found) if found else None

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            return [_copy(v) for (n, _), v in sorted(self._versions.items()) if n == name]

    def versions_in_stage(self, stage: Stage, name: str | None = None) -> list[ModelVersion]:
        with self._lock:
            return [
                _copy(v)
                for (n, _), v in sorted(self._versions.items())
                if v.stage is stage and (name is None or n == name)
            ]

    def version_for_run(self, run_id: str, name: str) -> int | None:
        with self._lock:
            return self._runs.get((run_id, name))

    def get_alias(self, name: str, alias: str) -> Alias | None:
        with self._lock:
            return self._aliases.get((name, alias))

    def list_aliases(self, name: str) -> list[Alias]:
        with self._lock:
            return [a for (n, _), a in sorted(self._aliases.items()) if n == name]

    def transitions(self, name: str, limit: int | None = None) -> list[Transition]:
        with self._lock:
            entries = [e for _, e in sorted(self._audit.get(name, {}).items(), reverse=True)]
        return entries if limit is None else entries[:limit]

    def commit(self, writes: Sequence[RegistryWrite]) -> None:
        with self._lock:
            if not all(self._holds(w) for w in writes):
                raise WriteConflictError("a precondition of the commit did not hold")
            for write in writes:
                self._apply(write)

    def _holds(self, write: RegistryWrite) -> bool:
        match write:
            case BumpModel():
                model = self._models.get(write.name)
                if model is None:
                    return write.expected_latest == 0 and write.expected_audit_seq == 0
                return (model.latest_version, model.audit_seq) == (
                    write.expected_latest,
                    write.expected_audit_seq,
                )
            case PutVersion(version=v):
                return (v.name, v.version) not in self._versions
            case PutRunLookup():
                return (write.run_id, write.name) not in self._runs
            case AppendTransition(transition=t):
                return t.seq not in self._audit.get(t.model, {})
            case SetStage():
                found = self._versions.get((write.name, write.version))
                return found is not None and found.stage is write.expected_stage
            case PutAlias(alias=a):
                current = self._aliases.get((a.model, a.alias))
                return (current.version if current else None) == write.expected_version
            case RemoveAlias():
                current = self._aliases.get((write.name, write.alias))
                return current is not None and current.version == write.expected_version
            case PatchVersion():
                found = self._versions.get((write.name, write.version))
                if found is None:
                    return False
                if write.expected_token is None:
                    return True
                return (
                    found.pending_approval is not None
                    and found.pending_approval.token == write.expected_token
                )

    def _apply(self, write: RegistryWrite) -> None:
        match write:
            case BumpModel():
                model = self._models.get(write.name)
                self._models[write.name] = RegisteredModel(
                    name=write.name,
                    created_at=model.created_at if model else write.at,
                    updated_at=write.at,
                    latest_version=write.latest_version,
                    audit_seq=write.audit_seq,
                )
            case PutVersion(version=v):
                self._versions[(v.name, v.version)] = _copy(v)
            case PutRunLookup():
                self._runs[(write.run_id, write.name)] = write.version
            case AppendTransition(transition=t):
                self._audit.setdefault(t.model, {})[t.seq] = t
            case SetStage():
                key = (write.name, write.version)
                self._versions[key] = self._versions[key].model_copy(update={"stage": write.stage})
            case PutAlias(alias=a):
                self._aliases[(a.model, a.alias)] = a
            case RemoveAlias():
                del self._aliases[(write.name, write.alias)]
            case PatchVersion():
                key = (write.name, write.version)
                current = self._versions[key]
                tags = {**current.tags, **write.tags}
                for removed in write.remove_tags:
                    tags.pop(removed, None)
                self._versions[key] = _copy(
                    current.model_copy(
                        update={
                            "runtime_metrics": {**current.runtime_metrics, **write.runtime_metrics},
                            "tags": tags,
                            "approvals": [*current.approvals, *write.approvals],
                            "pending_approval": None
                            if write.clear_pending
                            else (write.pending or current.pending_approval),
                        }
                    )
                )


def _copy(version: ModelVersion) -> ModelVersion:
    # A JSON round trip, as DynamoDB would: callers never share mutable dicts with the store.
    return ModelVersion.model_validate_json(version.model_dump_json())


# --- DynamoDB --------------------------------------------------------------------------------------------

_MUTABLE = {"stage", "runtime_metrics", "tags", "approvals", "pending_approval"}
# A removed alias's item: the key and this flag, no version and no document.
_REMOVED = "removed"


def _model_pk(name: str) -> str:
    return f"MODEL#{name}"


def _version_sk(version: int) -> str:
    return f"VERSION#{version:010d}"


class DynamoRegistryStore:
    """The registry store on one DynamoDB table (layout in the module docstring)."""

    def __init__(self, table_name: str, *, client: Any = None) -> None:
        self.table_name = table_name
        self._client = LazyClient(client)

    @property
    def client(self) -> Any:
        return self._client.get()

    # reads

    def get_model(self, name: str) -> RegisteredModel | None:
        item = self._get(_model_pk(name), "MODEL")
        return _model_from_item(item) if item else None

    def list_models(self) -> list[RegisteredModel]:
        items = self._query("gsi1pk = :p", {":p": string_value("MODELS")}, index="gsi1")
        return [_model_from_item(i) for i in items]

    def get_version(self, name: str, version: int) -> ModelVersion | None:
        item = self._get(_model_pk(name), _version_sk(version))
        return _version_from_item(item) if item else None

    def list_versions(self, name: str) -> list[ModelVersion]:
        return [_version_from_item(i) for i in self._in_model(name, "VERSION#")]

    def versions_in_stage(self, stage: Stage, name: str | None = None) -> list[ModelVersion]:
        condition, values = "gsi1pk = :p", {":p": string_value(f"STAGE#{stage.value}")}
        if name is not None:
            condition += " AND begins_with(gsi1sk, :n)"
            values[":n"] = string_value(f"{name}#")
        items = self._query(condition, values, index="gsi1")
        # The index lags the table a little: trust the item's own stage.
        return [v for v in map(_version_from_item, items) if v.stage is stage]

    def version_for_run(self, run_id: str, name: str) -> int | None:
        item = self._get(f"RUN#{run_id}", f"VERSION#{name}")
        return int(item["version"]["N"]) if item else None

    def get_alias(self, name: str, alias: str) -> Alias | None:
        item = self._get(_model_pk(name), f"ALIAS#{alias}")
        return _alias_from_item(item) if item else None

    def list_aliases(self, name: str) -> list[Alias]:
        found = (_alias_from_item(i) for i in self._in_model(name, "ALIAS#"))
        return [a for a in found if a is not None]

    def transitions(self, name: str, limit: int | None = None) -> list[Transition]:
        items = self._in_model(name, "AUDIT#", newest_first=True, limit=limit)
        return [Transition.model_validate_json(i["doc"]["S"]) for i in items]

    # writes

    def commit(self, writes: Sequence[RegistryWrite]) -> None:
        operations = [self._operation(w) for w in writes]
        if len(operations) == 1:
            ((kind, params),) = (next(iter(o.items())) for o in operations)
            call = {"Put": "put_item", "Update": "update_item"}[kind]
            with dynamodb_errors(call, WriteConflictError):
                getattr(self.client, call)(**params)
            return
        with dynamodb_errors("transact_write_items", WriteConflictError):
            self.client.transact_write_items(TransactItems=operations)

    def _operation(self, write: RegistryWrite) -> dict[str, dict[str, Any]]:
        table = self.table_name
        match write:
            case BumpModel():
                at = string_value(_iso(write.at))
                if write.expected_latest == 0 and write.expected_audit_seq == 0:
                    item = {
                        "pk": string_value(_model_pk(write.name)),
                        "sk": string_value("MODEL"),
                        "gsi1pk": string_value("MODELS"),
                        "gsi1sk": string_value(write.name),
                        "created_at": at,
                        "updated_at": at,
                        "latest_version": number_value(write.latest_version),
                        "audit_seq": number_value(write.audit_seq),
                    }
                    return {"Put": _put(table, item, "attribute_not_exists(pk)")}
                return {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": string_value(_model_pk(write.name)), "sk": string_value("MODEL")},
                        "UpdateExpression": "SET latest_version = :l, audit_seq = :a, updated_at = :at",
                        "ConditionExpression": "latest_version = :el AND audit_seq = :ea",
                        "ExpressionAttributeValues": {
                            ":l": number_value(write.latest_version),
                            ":a": number_value(write.audit_seq),
                            ":el": number_value(write.expected_latest),
                            ":ea": number_value(write.expected_audit_seq),
                            ":at": at,
                        },
                    }
                }
            case PutVersion(version=v):
                return {"Put": _put(table, _version_item(v), "attribute_not_exists(pk)")}
            case PutRunLookup():
                item = {
                    "pk": string_value(f"RUN#{write.run_id}"),
                    "sk": string_value(f"VERSION#{write.name}"),
                    "version": number_value(write.version),
                }
                return {"Put": _put(table, item, "attribute_not_exists(pk)")}
            case AppendTransition(transition=t):
                item = {
                    "pk": string_value(_model_pk(t.model)),
                    "sk": string_value(f"AUDIT#{t.seq:010d}"),
                    "doc": string_value(t.model_dump_json()),
                }
                return {"Put": _put(table, item, "attribute_not_exists(pk)")}
            case SetStage():
                return {
                    "Update": {
                        "TableName": table,
                        "Key": {
                            "pk": string_value(_model_pk(write.name)),
                            "sk": string_value(_version_sk(write.version)),
                        },
                        "UpdateExpression": "SET #stage = :to, gsi1pk = :g",
                        "ConditionExpression": "#stage = :from",
                        "ExpressionAttributeNames": {"#stage": "stage"},
                        "ExpressionAttributeValues": {
                            ":to": string_value(write.stage.value),
                            ":from": string_value(write.expected_stage.value),
                            ":g": string_value(f"STAGE#{write.stage.value}"),
                        },
                    }
                }
            case PutAlias(alias=a):
                item = {
                    "pk": string_value(_model_pk(a.model)),
                    "sk": string_value(f"ALIAS#{a.alias}"),
                    "doc": string_value(a.model_dump_json()),
                }
                item["version"] = number_value(a.version)
                if write.expected_version is None:
                    # Never set, or removed: a tombstone carries no version.
                    return {"Put": _put(table, item, "attribute_not_exists(version)")}
                return {
                    "Put": _put(table, item, "version = :e", {":e": number_value(write.expected_version)})
                }
            case RemoveAlias():
                tombstone = {
                    "pk": string_value(_model_pk(write.name)),
                    "sk": string_value(f"ALIAS#{write.alias}"),
                    _REMOVED: {"BOOL": True},
                }
                return {
                    "Put": _put(
                        table, tombstone, "version = :e", {":e": number_value(write.expected_version)}
                    )
                }
            case PatchVersion():
                return {"Update": _patch_update(table, write)}

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        with dynamodb_errors("get_item", WriteConflictError):
            response = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": string_value(pk), "sk": string_value(sk)},
                ConsistentRead=True,
            )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def _in_model(
        self, name: str, prefix: str, *, newest_first: bool = False, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return self._query(
            "pk = :p AND begins_with(sk, :s)",
            {":p": string_value(_model_pk(name)), ":s": string_value(prefix)},
            newest_first=newest_first,
            limit=limit,
        )

    def _query(
        self,
        condition: str,
        values: dict[str, Any],
        *,
        index: str | None = None,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
        }
        if index is None:
            request["ConsistentRead"] = True
        else:
            request["IndexName"] = index
        items: list[dict[str, Any]] = []
        with dynamodb_errors("query", WriteConflictError):
            while True:
                response = self.client.query(**request)
                items.extend(response.get("Items", []))
                start = response.get("LastEvaluatedKey")
                if not start or (limit is not None and len(items) >= limit):
                    break
                request["ExclusiveStartKey"] = start
        return items if limit is None else items[:limit]


def _put(
    table: str, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"TableName": table, "Item": item, "ConditionExpression": condition}
    if values:
        params["ExpressionAttributeValues"] = values
    return params


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _alias_from_item(item: dict[str, Any]) -> Alias | None:
    """The alias an item holds; None for a removed alias's tombstone."""
    if item.get(_REMOVED, {}).get("BOOL"):
        return None
    return Alias.model_validate_json(item["doc"]["S"])


def _model_from_item(item: dict[str, Any]) -> RegisteredModel:
    return RegisteredModel(
        name=item["gsi1sk"]["S"],
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
        latest_version=int(item["latest_version"]["N"]),
        audit_seq=int(item["audit_seq"]["N"]),
    )


def _version_item(version: ModelVersion) -> dict[str, Any]:
    return {
        "pk": string_value(_model_pk(version.name)),
        "sk": string_value(_version_sk(version.version)),
        "gsi1pk": string_value(f"STAGE#{version.stage.value}"),
        "gsi1sk": string_value(f"{version.name}#{version.version:010d}"),
        # The immutable part as one JSON document (no Decimal or NaN trouble); the rest as attributes that
        # updates change in place, so tagging never races a stage change.
        "doc": string_value(version.model_dump_json(exclude=_MUTABLE)),
        "stage": string_value(version.stage.value),
        "runtime_metrics": {
            "M": {k: string_value(json.dumps(v)) for k, v in version.runtime_metrics.items()}
        },
        "tags": {"M": {k: string_value(v) for k, v in version.tags.items()}},
        "approvals": {"L": [string_value(a.model_dump_json()) for a in version.approvals]},
    } | (
        {"pending_approval": string_value(version.pending_approval.model_dump_json())}
        if version.pending_approval
        else {}
    )


def _version_from_item(item: dict[str, Any]) -> ModelVersion:
    fields = json.loads(item["doc"]["S"])
    fields["stage"] = item["stage"]["S"]
    fields["runtime_metrics"] = {k: json.loads(v["S"]) for k, v in item["runtime_metrics"]["M"].items()}
    fields["tags"] = {k: v["S"] for k, v in item["tags"]["M"].items()}
    fields["approvals"] = [json.loads(a["S"]) for a in item["approvals"]["L"]]
    if "pending_approval" in item:
        fields["pending_approval"] = json.loads(item["pending_approval"]["S"])
    return ModelVersion.model_validate(fields)


def _patch_update(table: str, patch: PatchVersion) -> dict[str, Any]:
    sets: list[str] = []
    removes: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for i, (key, value) in enumerate(patch.runtime_metrics.items()):
        names[f"#m{i}"] = key
        values[f":m{i}"] = string_value(json.dumps(value))
        sets.append(f"runtime_metrics.#m{i} = :m{i}")
    for i, (key, tag) in enumerate(patch.tags.items()):
        names[f"#t{i}"] = key
        values[f":t{i}"] = string_value(tag)
        sets.append(f"tags.#t{i} = :t{i}")
    for i, key in enumerate(k for k in patch.remove_tags if k not in patch.tags):
        names[f"#r{i}"] = key
        removes.append(f"tags.#r{i}")
    if patch.approvals:
        values[":a"] = {"L": [string_value(a.model_dump_json()) for a in patch.approvals]}
        sets.append("approvals = list_append(approvals, :a)")
    if patch.clear_pending:
        removes.append("pending_approval")
    elif patch.pending is not None:
        values[":p"] = string_value(patch.pending.model_dump_json())
        sets.append("pending_approval = :p")
    clauses = [f"SET {', '.join(sets)}"] if sets else []
    clauses += [f"REMOVE {', '.join(removes)}"] if removes else []
    params: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": string_value(_model_pk(patch.name)), "sk": string_value(_version_sk(patch.version))},
        "UpdateExpression": " ".join(clauses),
        "ConditionExpression": "attribute_exists(pk)",
    }
    if patch.expected_token is not None:
        # The pending approval is stored as its JSON; a task token is unique, so containing it is being it.
        values[":token"] = string_value(patch.expected_token)
        params["ConditionExpression"] = "attribute_exists(pk) AND contains(pending_approval, :token)"
    if names:
        params["ExpressionAttributeNames"] = names
    if values:
        params["ExpressionAttributeValues"] = values
    return params
