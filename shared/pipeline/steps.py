"""Train, Evaluate and Register: the steps that fit, judge and record a model.

A step receives the run's :class:`~shared.pipeline.state.RunState` (references only: ids and URIs), reads
what those point at through the services, calls the pure functions (training, evaluation, packaging),
writes its results beside the run, records the step and the lineage, and returns the state with its own
references added. Every step can be re-run with the same input without doing its work twice: datasets are
found by their source version and versions by their run id. The other states' steps: Validate in
:mod:`~shared.pipeline.intake`, Verify and PostDeployCheck in :mod:`~shared.pipeline.verification`, Promote
and approvals in :mod:`~shared.pipeline.delivery`, Finish and RecordFailure in :mod:`~shared.pipeline.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from aws_lambda_powertools.metrics import MetricUnit

from shared.data.contract import DataContract
from shared.data.datasets import frame_to_parquet, read_parquet
from shared.data.validation import ROW_ID_COLUMN
from shared.errors import DataValidationError, FlywheelError, NotFoundError, TransientError
from shared.experiments import latest_completed
from shared.featurestore.contracts import join_views, load_training_contract, view_signature
from shared.featurestore.view import FeatureView
from shared.hashing import sha256_hex
from shared.layout import ArtifactPrefix, RunArtifact
from shared.metadata import (
    Artifact,
    ArtifactKind,
    Dataset,
    NodeType,
    Relation,
    file_id,
    model_version_id,
)
from shared.ml.evaluation import Evaluation, decide_gate, score
from shared.ml.projects import ModelCode, code_from_archive, onnx_converters, read_project
from shared.ml.training import (
    library_versions,
    model_from_bytes,
    model_to_bytes,
    predict_frame,
    reference_profile,
    train,
    with_params,
)
from shared.ml.training_window import combine, training_window
from shared.observability import logger, metrics
from shared.pipeline.runs import recorded_step
from shared.pipeline.state import PIPELINE_ACTOR, Candidate, EvaluationSummary, RunState
from shared.registry import (
    ArtifactRef,
    ExperimentRef,
    GateResult,
    ModelVersion,
    NewModelVersion,
    ServingFlavor,
    Stage,
    TrainingDataset,
)
from shared.services import Services
from shared.serving.packaging import package_for_serving, serving_signature
from shared.storage import ObjectRef

# --- artifacts --------------------------------------------------------------------------------------------


def _artifact_key(state: RunState, name: RunArtifact) -> str:
    return f"{ArtifactPrefix.MODELS}{state.model}/{state.run_id}/{name}"


def _put_artifact(
    svc: Services, state: RunState, name: RunArtifact, body: bytes, kind: ArtifactKind
) -> ArtifactRef:
    ref = svc.objects.put(ObjectRef(svc.settings.artifacts_bucket, _artifact_key(state, name)), body)
    digest = sha256_hex(body)
    artifact_id = f"{state.run_id}/{name}"
    svc.metadata.put_artifact(
        Artifact(artifact_id=artifact_id, kind=kind, uri=ref.uri, sha256=digest, created_at=datetime.now(UTC))
    )
    svc.metadata.link(NodeType.RUN, state.run_id, NodeType.ARTIFACT, artifact_id, Relation.OUTPUT)
    return ArtifactRef(uri=ref.uri, sha256=digest, size=len(body))


def _json(value: Any) -> bytes:
    # Plain json on purpose: profiles hold ±inf bin edges, which pydantic's JSON would turn into null.
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode()


# --- Train ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingInputs:
    """What Train and an experiment's trials read: the effective contract, the training window's datasets
    (each sha256-checked as it is read), their rows with the feature views joined, and the project code."""

    contract: DataContract
    datasets: list[Dataset]
    frame: pd.DataFrame
    feature_files: list[ObjectRef]
    code: ModelCode | None


def training_inputs(svc: Services, model: str) -> TrainingInputs:
    training = load_training_contract(svc.objects, svc.settings, model)
    contract = training.contract
    datasets = training_window(svc.metadata.list_datasets(model), contract)
    if not datasets:
        raise DataValidationError(
            f"model {model!r} has no validated datasets yet: push a file under incoming/{model}/"
        )
    # Only the columns the base contract's rows are made of: features, target, id and timestamp.
    columns = ([] if training.base.id_column else [ROW_ID_COLUMN]) + training.base.columns
    frames = [read_parquet(svc.objects, d.uri, d.sha256, d.version_id, columns=columns) for d in datasets]
    frame = combine(frames, contract, contract.id_column or ROW_ID_COLUMN)
    frame, feature_files = join_views(svc.objects, svc.settings.data_bucket, frame, training)
    code = (
        read_project(Path(svc.settings.models_dir) / model, model)
        if contract.training.pipeline is not None
        else None
    )
    return TrainingInputs(contract, datasets, frame, list(feature_files), code)


def train_step(state: RunState, svc: Services) -> RunState:
    """Fit the contract's pipeline on the training window; store the model, holdout and reference profile,
    and the ONNX form of the model when it matches scikit-learn on the holdout (its serving flavour).

    A contract that lists feature views trains on its effective contract: each row gets the views'
    features joined point in time, and the offline objects read are inputs of the run in lineage."""
    with recorded_step(svc, state, "train"):
        inputs = training_inputs(svc, state.model)
        contract, datasets, frame, code = inputs.contract, inputs.datasets, inputs.frame, inputs.code
        feature_files = inputs.feature_files
        _check_asked_code(state, code)
        chosen = chosen_params(svc, state, contract, code)
        if chosen is not None:
            contract = with_params(contract, chosen.params)
        code_ref = (
            _put_artifact(svc, state, RunArtifact.CODE, code.archive, ArtifactKind.CODE) if code else None
        )
        trained = train(frame, contract, code)
        predictions = predict_frame(trained.pipeline, trained.holdout, contract)
        profile = reference_profile(trained.train_frame, predictions, contract)

        model = _put_artifact(
            svc, state, RunArtifact.MODEL, model_to_bytes(trained.pipeline), ArtifactKind.MODEL
        )
        holdout_body = frame_to_parquet(trained.holdout)
        holdout = _put_artifact(svc, state, RunArtifact.HOLDOUT, holdout_body, ArtifactKind.HOLDOUT)
        profile_ref = _put_artifact(svc, state, RunArtifact.PROFILE, _json(profile), ArtifactKind.PROFILE)
        converters = (
            onnx_converters(code, contract.training.pipeline) if code and contract.training.pipeline else None
        )
        package = package_for_serving(
            trained.pipeline, trained.holdout, contract, reference=predictions, converters=converters
        )
        onnx = (
            _put_artifact(svc, state, RunArtifact.ONNX, package.onnx, ArtifactKind.ONNX)
            if package.flavor is ServingFlavor.ONNX and package.onnx is not None
            else None
        )
        flavor = ServingFlavor.ONNX if onnx else ServingFlavor.SKLEARN
        for dataset in datasets:
            svc.metadata.link(
                NodeType.DATASET, dataset.dataset_id, NodeType.RUN, state.run_id, Relation.INPUT
            )
        for ref in feature_files:
            svc.metadata.link(
                NodeType.FILE, file_id(ref.uri, ref.version_id), NodeType.RUN, state.run_id, Relation.INPUT
            )
        if chosen is not None:
            svc.metadata.link(
                NodeType.EXPERIMENT, chosen.experiment_id, NodeType.RUN, state.run_id, Relation.PARAMETERS
            )
        metrics.add_metric(name="ModelTrained", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="FitSeconds", unit=MetricUnit.Seconds, value=trained.fit_seconds)
        metrics.add_metric(name="OnnxPackaged" if onnx else "SklearnFallback", unit=MetricUnit.Count, value=1)
        logger.info(
            "model trained",
            extra={
                "rows": trained.train_rows,
                "holdout": len(trained.holdout),
                "datasets": len(datasets),
                "feature_views": list(contract.feature_views),
                "feature_files": len(feature_files),
                "serving_flavor": flavor.value,
                "flavor_reason": package.reason,
            },
        )
        candidate = Candidate(
            artifact=model,
            holdout_uri=holdout.uri,
            holdout_sha256=holdout.sha256,
            profile_uri=profile_ref.uri,
            datasets=[d.dataset_id for d in datasets],
            train_rows=trained.train_rows,
            holdout_rows=len(trained.holdout),
            params=trained.params,
            classes=trained.classes,
            fit_seconds=trained.fit_seconds,
            serving_flavor=flavor,
            onnx=onnx,
            flavor_reason=package.reason,
            parity=package.parity,
            code=code_ref,
            params_from=chosen,
        )
        return state.model_copy(update={"candidate": candidate})


def chosen_params(
    svc: Services, state: RunState, contract: DataContract, code: ModelCode | None
) -> ExperimentRef | None:
    """The parameters an experiment chose for this run: the winner of the run's own search; else, when
    the contract has an experiment block, the winner of the model's latest completed experiment that
    searched the same space with the same builder (so a scheduled retrain between experiments keeps the
    winning parameters); else None (the contract's own ``training.params``)."""
    if state.experiment is not None:
        return state.experiment.require_best(state.run_id)
    policy = contract.experiment
    if policy is None:
        return None
    last = latest_completed(svc.experiments, state.model)
    if last is None or last.best_params is None or last.best_trial is None or last.best_value is None:
        return None
    same_space = set(last.policy.get("space", {})) == set(policy.space)
    if last.builder != contract.training.builder or not same_space:
        logger.info(
            "the last experiment searched another space or builder; training the contract's parameters",
            extra={"experiment": last.experiment_id, "builder": last.builder},
        )
        return None
    return ExperimentRef(
        experiment_id=last.experiment_id,
        trial=last.best_trial,
        metric=last.metric,
        value=last.best_value,
        params=last.best_params,
        reused=True,
    )


class CodeMismatchError(FlywheelError):
    """A code_change run was asked for code the stack does not hold: the image was not deployed with it
    (or the contract no longer names model code). Training other code would record a change nobody made."""


def _check_asked_code(state: RunState, code: ModelCode | None) -> None:
    asked = state.code_change
    if asked is None or (code is not None and code.digest == asked.digest):
        return
    found = f"code {code.digest[:16]}" if code else "no model code (training.estimator)"
    raise CodeMismatchError(
        f"run {state.run_id} was asked to train {state.model}'s code {asked.digest[:16]}"
        + (f" (commit {asked.commit})" if asked.commit else "")
        + f", but this stack holds {found}; deploy that code first (`pulumi up`), then deliver it again",
        problems=[f"asked {asked.digest}", f"found {code.digest if code else None}"],
    )


def load_model(
    svc: Services, artifact: ArtifactRef, code: ArtifactRef | None = None, *, model: str = "the model"
) -> Any:
    """A model's pipeline, after checking its bytes against the sha256 recorded for them; a model project's
    with the code it was trained with (``code``, checked the same way)."""
    return model_from_bytes(
        svc.objects.get(ObjectRef.parse(artifact.uri)).body, artifact.sha256, model_code(svc, code, model)
    )


def model_code(svc: Services, code: ArtifactRef | None, model: str) -> ModelCode | None:
    """A version's code archive (``code``), after checking its bytes against the recorded sha256."""
    if code is None:
        return None
    return code_from_archive(model, svc.objects.get(ObjectRef.parse(code.uri)).body, code.sha256)


# --- Evaluate ---------------------------------------------------------------------------------------------


def evaluate_step(state: RunState, svc: Services) -> RunState:
    """Score the candidate and the production model on the same holdout, and decide the gate."""
    candidate: Candidate = state.require("candidate")
    with recorded_step(svc, state, "evaluate"):
        # The holdout holds the views' features as Train joined them: both models read the effective contract.
        contract = load_training_contract(svc.objects, svc.settings, state.model).contract
        holdout = read_parquet(svc.objects, candidate.holdout_uri, candidate.holdout_sha256)
        evaluation = score(
            load_model(svc, candidate.artifact, candidate.code, model=state.model), holdout, contract
        )
        champion, champion_evaluation, notes = _champion_on(svc, state.model, holdout, contract)
        decision = decide_gate(
            evaluation,
            champion_evaluation,
            contract,
            champion_name=f"production v{champion.version}" if champion else "the production model",
        )
        record = {
            "run_id": state.run_id,
            "model": state.model,
            "holdout_rows": len(holdout),
            "candidate": evaluation.model_dump(),
            "champion": {"version": champion.version, **champion_evaluation.model_dump()}
            if champion and champion_evaluation
            else None,
            "notes": notes,
            "gate": decision.model_dump(),
        }
        stored = _put_artifact(svc, state, RunArtifact.EVALUATION, _json(record), ArtifactKind.EVALUATION)
        metrics.add_metric(
            name="GatePassed" if decision.passed else "GateFailed", unit=MetricUnit.Count, value=1
        )
        logger.info("candidate evaluated", extra={"passed": decision.passed, "reasons": decision.reasons})
        summary = EvaluationSummary(
            uri=stored.uri,
            passed=decision.passed,
            reasons=decision.reasons + notes,
            metrics=evaluation.metrics,
            champion_version=champion.version if champion else None,
            champion_metrics=champion_evaluation.metrics if champion_evaluation else None,
            held=_held_for_a_person(champion, champion_evaluation),
        )
        return state.model_copy(update={"evaluation": summary})


class UntrustedChampionError(FlywheelError):
    """Production's model cannot be loaded as it was registered (its bytes changed, are gone, or do not
    unpickle): the bar a candidate must clear is unknown, so the run stops and production stays as it is."""


def _champion_on(
    svc: Services, model: str, holdout: pd.DataFrame, contract: DataContract
) -> tuple[ModelVersion | None, Evaluation | None, list[str]]:
    """Production's version, its scores on the candidate's holdout, and notes on what could not be compared.

    A champion that cannot be loaded is never read as "no champion": that would wave the candidate past the
    regression gate on the strength of a tampered or lost artifact (:class:`UntrustedChampionError`). A
    champion that loads but cannot read today's columns (the contract changed) is noted, and the candidate
    is held for a person (:func:`_held_for_a_person`).
    """
    try:
        champion = svc.registry.get_model_version_by_alias(model, "production")
    except NotFoundError:
        return None, None, []
    try:
        loaded = load_model(svc, champion.artifact, champion.code_artifact, model=model)
    except TransientError:
        raise
    except Exception as exc:  # whatever stops the champion loading, the run must not go on
        metrics.add_metric(name="ChampionUntrusted", unit=MetricUnit.Count, value=1)
        logger.error(
            "production cannot be loaded; the run stops",
            extra={"version": champion.version, "artifact": champion.artifact.uri, "error": str(exc)},
        )
        raise UntrustedChampionError(
            f"production v{champion.version} cannot be loaded to judge the candidate "
            f"({type(exc).__name__}: {exc}); the run stops and production stays as it is. Restore "
            f"{champion.artifact.uri} as registered, or roll back to a version you trust "
            f"(`flywheel rollback {model} --to N`)",
            problems=[f"{type(exc).__name__}: {exc}"],
        ) from exc
    evaluation, notes = score_or_note(loaded, holdout, contract, f"production v{champion.version}")
    return champion, evaluation, notes


def score_or_note(
    pipeline: Any, holdout: pd.DataFrame, contract: DataContract, who: str
) -> tuple[Evaluation | None, list[str]]:
    """``pipeline``'s scores on ``holdout``, or none and a note saying why ``who`` could not be scored."""
    try:
        return score(pipeline, holdout, contract), []
    except (FlywheelError, KeyError, ValueError) as exc:
        # A contract change can leave an older model unable to read today's columns: say so, compare nothing.
        return None, [f"{who} could not score this holdout ({type(exc).__name__}: {exc})"]


def _held_for_a_person(champion: ModelVersion | None, champion_evaluation: Evaluation | None) -> str | None:
    """Why the candidate may not replace production without a person, whatever the policy: the regression
    gate could not compare it with the production model it would replace."""
    if champion is None or champion_evaluation is not None:
        return None
    return (
        f"production v{champion.version} could not be scored on the candidate's holdout, so the regression "
        "gate could not compare them; a person decides"
    )


# --- Register ---------------------------------------------------------------------------------------------


def register_step(state: RunState, svc: Services) -> RunState:
    """Register the candidate: in development when it passed the gate, rejected (with the reasons) if not."""
    candidate: Candidate = state.require("candidate")
    evaluation: EvaluationSummary = state.require("evaluation")
    with recorded_step(svc, state, "register"):
        training = load_training_contract(svc.objects, svc.settings, state.model)
        contract = training.contract
        datasets = [svc.metadata.get_dataset(d) for d in candidate.datasets]
        stage = Stage.DEVELOPMENT if evaluation.passed else Stage.REJECTED
        reason = ("passed the gates: " if evaluation.passed else "rejected by the gates: ") + "; ".join(
            evaluation.reasons
        )
        version = svc.registry.create_model_version(
            state.model,
            NewModelVersion(
                artifact=candidate.artifact,
                description=f"trained by run {state.run_id} ({state.reason.value})",
                serving_flavor=candidate.serving_flavor,
                onnx_artifact=candidate.onnx,
                flavor_reason=candidate.flavor_reason,
                signature=signature(contract, candidate.classes, training.views),
                training_datasets=[
                    TrainingDataset(
                        dataset_id=d.dataset_id,
                        uri=d.uri,
                        version_id=d.version_id,
                        sha256=d.sha256,
                        rows=d.rows,
                        time_range=d.time_range,
                    )
                    for d in datasets
                ],
                params={"estimator": contract.training.builder, **candidate.params},
                metrics=evaluation.metrics,
                champion_metrics=evaluation.champion_metrics,
                gate=GateResult(passed=evaluation.passed, reasons=evaluation.reasons),
                library_versions=library_versions(),
                code_version=svc.settings.code_version,
                code_artifact=candidate.code,
                code_commit=svc.settings.code_commit if candidate.code else None,
                experiment=candidate.params_from,
                reference_profile_uri=candidate.profile_uri,
                tags={
                    "reason": state.reason.value,
                    "holdout_rows": str(candidate.holdout_rows),
                    **training.tags(),
                    **parity_tags(candidate.parity),
                },
            ),
            run_id=state.run_id,
            registered_by=PIPELINE_ACTOR,
            stage=stage,
            reason=reason,
        )
        node = model_version_id(version.name, version.version)
        svc.metadata.link(NodeType.RUN, state.run_id, NodeType.MODEL_VERSION, node, Relation.OUTPUT)
        svc.metadata.link(
            NodeType.ARTIFACT,
            f"{state.run_id}/{RunArtifact.MODEL}",
            NodeType.MODEL_VERSION,
            node,
            Relation.DERIVED,
        )
        if candidate.onnx is not None:
            svc.metadata.link(
                NodeType.ARTIFACT,
                f"{state.run_id}/{RunArtifact.ONNX}",
                NodeType.MODEL_VERSION,
                node,
                Relation.DERIVED,
            )
        metrics.add_metric(
            name="ModelRegistered" if evaluation.passed else "CandidateRejected",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info("version registered", extra={"version": version.version, "stage": version.stage.value})
        return state.model_copy(update={"version": version.version})


def signature(
    contract: DataContract, classes: list[str] | None, views: Sequence[FeatureView] = ()
) -> dict[str, Any]:
    """What a request must carry, from the (effective) contract: served with the model and checked on every
    request. With ``views``, also which features serving may fill from the online store by entity key."""
    recorded = serving_signature(contract, classes)
    if views:
        recorded["feature_views"] = view_signature(views)
    return recorded


def parity_tags(parity: dict[str, Any]) -> dict[str, str]:
    """The ONNX parity figures as registry tags (``parity_rows``, ``parity_label_mismatches``, ...)."""
    tags = {}
    for key in (
        "rows",
        "label_mismatches",
        "value_mismatches",
        "max_probability_difference",
        "max_value_difference",
        "tolerance",
        "opsets",
    ):
        if key in parity:
            value = parity[key]
            tags[f"parity_{key}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return tags
