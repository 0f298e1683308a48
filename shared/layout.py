"""Where things live in the two buckets: `infra/` declares the prefixes, the domain uses them."""

from enum import StrEnum


class DataPrefix(StrEnum):
    INCOMING = "incoming/"
    FEATURE_SOURCES = "feature-sources/"
    FEATURES = "features/"
    # Feature views (YAML), one per view: feature-views/<view>.yaml (shared.featurestore.catalog).
    FEATURE_VIEWS = "feature-views/"
    DATASETS = "datasets/"
    QUARANTINE = "quarantine/"
    LABELS = "labels/"
    # Label files the labels function accepted, as Parquet (shared.monitoring.labels); the monitor reads them.
    LABELS_ACCEPTED = "labels-accepted/"
    CAPTURES = "captures/"
    CAPTURE_ERRORS = "captures-errors/"
    CONTRACTS = "contracts/"
    # Batch scoring: the files to score, the requests that start a job, and each job's outputs
    # (scores/<model>/<job>/: a Parquet file per source file, items/ per-file outcomes, manifest.json).
    SCORE_INPUTS = "score-inputs/"
    SCORE_REQUESTS = "score-requests/"
    SCORES = "scores/"


class ArtifactPrefix(StrEnum):
    MODELS = "models/"
    REPORTS = "reports/"
    # A step run as a container task hands its state over here (TaskFile): tasks/<model>/<run id>/<step>/.
    TASKS = "tasks/"


# Feedback datasets (the monitor's labelled captures) sit in their own folder under the model's datasets:
# datasets/<model>/feedback/<id>.parquet, beside the uploads Validate writes as datasets/<model>/<id>.parquet.
# Model names and dataset ids hold no '/', so the monitor's grant (datasets/*/feedback/*) covers no upload.
FEEDBACK_DATASETS = "feedback/"


class RunArtifact(StrEnum):
    """What a pipeline run stores beside itself, as ``models/<model>/<run id>/<name>``.

    Train writes the model, its holdout, its reference profile and (when conversion passes) its ONNX form;
    Evaluate writes the evaluation. Each function's grant names only its own files, so Evaluate cannot
    replace a model a version was registered with, and Train cannot rewrite an evaluation that gated one.
    """

    MODEL = "model.pkl"
    HOLDOUT = "holdout.parquet"
    PROFILE = "profile.json"
    ONNX = "model.onnx"
    CODE = "code.zip"  # a model project's code (shared.ml.projects), when the contract names one
    EVALUATION = "evaluation.json"


TRAIN_ARTIFACTS = (
    RunArtifact.MODEL,
    RunArtifact.HOLDOUT,
    RunArtifact.PROFILE,
    RunArtifact.ONNX,
    RunArtifact.CODE,
)


class TaskFile(StrEnum):
    """A container task's handover files, as ``tasks/<model>/<run id>/<step>/<name>``: the plan writes the
    state the task starts from, the task writes the state it produced."""

    INPUT = "input.json"
    OUTPUT = "output.json"
