"""The run's state: the payload every state of the pipeline receives and returns.

This is an API. Step Functions passes it between states (references only — ids and URIs, never data: a
payload is capped at 256 KiB), the trigger starts an execution with it, and every step reads what it
needs and returns it with its own references added. Light on purpose: pydantic and the stores' types,
so the functions that only record or route a run (trigger, finish, record-failure, approval, promote)
load no data or ML library.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import FlywheelError
from shared.metadata import RunReason
from shared.registry import ArtifactRef, ExperimentRef, ServingFlavor
from shared.storage import ObjectRef

PIPELINE_ACTOR = "pipeline"
GIT_COMMIT = r"^[0-9a-f]{7,64}$"  # a git commit id, abbreviated or whole (SHA-1 or SHA-256)


class _State(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class SourceFile(_State):
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.bucket, self.key, self.version_id)

    @property
    def uri(self) -> str:
        return self.ref.uri


class CodeChange(BaseModel):
    """Which code a ``code_change`` run was asked for: the model project's code digest (the sha256 of its
    packed code, :func:`shared.ml.projects.read_project`) and, when the caller knows it, the git commit."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    commit: str | None = Field(default=None, pattern=GIT_COMMIT)


class Candidate(_State):
    """What Train produced: the model and what it needs to be judged and served.

    ``serving_flavor`` is ONNX when the converted model matched scikit-learn on the holdout (``onnx`` is
    then its artifact); ``flavor_reason`` says why either way and ``parity`` holds the measured figures.
    """

    artifact: ArtifactRef
    holdout_uri: str
    holdout_sha256: str
    profile_uri: str
    datasets: list[str]
    train_rows: int
    holdout_rows: int
    params: dict[str, Any] = Field(default_factory=dict)
    classes: list[str] | None = None
    fit_seconds: float = 0.0
    serving_flavor: ServingFlavor = ServingFlavor.SKLEARN
    onnx: ArtifactRef | None = None
    flavor_reason: str = ""
    parity: dict[str, Any] = Field(default_factory=dict)
    code: ArtifactRef | None = None  # the model project's code archive (its sha256 is the code digest)
    params_from: ExperimentRef | None = None  # the experiment trial whose parameters were trained


class ExperimentState(_State):
    """An experiment run's search, between its Experiment step and the Map state that runs a batch.

    ``batch`` is what the Map fans out (each item a trial's number and parameters), ``results`` what it
    gathered (each item the trial's outcome, or the Catch's error when its function failed), ``best`` the
    winner once ``done``."""

    experiment_id: str
    parallel: int = Field(default=1, ge=1)
    timeout_seconds: int = 600
    round: int = 0
    batch: list[dict[str, Any]] = Field(default_factory=list)
    results: list[dict[str, Any]] | None = None
    done: bool = False
    best: ExperimentRef | None = None

    def require_best(self, run_id: str) -> ExperimentRef:
        if self.best is None:
            raise FlywheelError(f"run {run_id}: the experiment has no winner; the pipeline is out of order")
        return self.best


class EvaluationSummary(_State):
    """Evaluate's verdict, small enough to travel in the state; the full record is at ``uri``."""

    uri: str
    passed: bool
    reasons: list[str]
    metrics: dict[str, float]
    champion_version: int | None = None
    champion_metrics: dict[str, float] | None = None
    # Set when the candidate may reach production only through a person, whatever the environment's policy.
    held: str | None = None


class StepPlacement(_State):
    """Where one step runs (``lambda`` or ``fargate``) and why, as the plan step decided. A task's step
    reads its input state from ``input_uri`` and writes its output state to ``output_uri`` (the ECS result
    carries no container output); ``cpu``/``memory`` are strings, as ECS's task overrides take them."""

    engine: str
    reason: str
    cpu: str | None = None
    memory: str | None = None
    input_uri: str | None = None
    output_uri: str | None = None
    task: dict[str, Any] | None = None  # the stopped task's ARN and reason, once it ran


class RunState(_State):
    """The pipeline's payload: references only, never data (Step Functions caps payloads at 256 KiB)."""

    run_id: str
    model: str
    reason: RunReason
    requested_by: str = PIPELINE_ACTOR
    source: SourceFile | None = None
    evidence_uri: str | None = None
    # A code_change run: the code it must train (Train refuses any other) and the commit, when known.
    code_change: CodeChange | None = None
    # An experiment run: the search in progress, then its winner (what Train trains).
    experiment: ExperimentState | None = None
    # Where Validate and Train run, by step name (shared.pipeline.compute): set just before each.
    compute: dict[str, StepPlacement] | None = None
    dataset_id: str | None = None
    candidate: Candidate | None = None
    evaluation: EvaluationSummary | None = None
    version: int | None = None
    # Continuous delivery (shared.pipeline.delivery): the verification verdict, the environment's policy,
    # the approval (SendTaskSuccess output) or the decline (the Catch's error), what promotion did.
    verification: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None
    declined: dict[str, Any] | None = None
    staged: bool | None = None
    promoted: bool | None = None
    previous_version: int | None = None
    promotion_refusals: list[str] | None = None
    post_deploy: dict[str, Any] | None = None
    failed_step: str | None = None
    error: dict[str, Any] | None = None

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def require(self, field: str) -> Any:
        value = getattr(self, field)
        if value is None:
            raise FlywheelError(
                f"run {self.run_id}: the state has no {field!r}; the pipeline is out of order"
            )
        return value
