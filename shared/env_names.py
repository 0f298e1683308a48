"""The names of the environment variables that configure every function.

`infra/` sets these on each function and the local cloud sets them in its process; `shared.settings`
reads them. Both sides import this one module, so a renamed variable cannot leave the two apart.
"""

from enum import StrEnum


class EnvVar(StrEnum):
    ENVIRONMENT = "FLYWHEEL_ENVIRONMENT"
    REGION = "AWS_REGION"
    DATA_BUCKET = "FLYWHEEL_DATA_BUCKET"
    ARTIFACTS_BUCKET = "FLYWHEEL_ARTIFACTS_BUCKET"
    REGISTRY_TABLE = "FLYWHEEL_REGISTRY_TABLE"
    METADATA_TABLE = "FLYWHEEL_METADATA_TABLE"
    IDEMPOTENCY_TABLE = "FLYWHEEL_IDEMPOTENCY_TABLE"
    # The feature store's online table (optional in shared.settings: a stack without one serves no views).
    FEATURES_TABLE = "FLYWHEEL_FEATURES_TABLE"
    CAPTURE_STREAM = "FLYWHEEL_CAPTURE_STREAM"
    STATE_MACHINE_ARN = "FLYWHEEL_STATE_MACHINE_ARN"
    # Batch scoring's state machine, and the function that starts its jobs (the CLI invokes it).
    SCORING_STATE_MACHINE_ARN = "FLYWHEEL_SCORING_STATE_MACHINE_ARN"
    SCORE_START_FUNCTION = "FLYWHEEL_SCORE_START_FUNCTION"
    TRIGGER_FUNCTION = "FLYWHEEL_TRIGGER_FUNCTION"
    CODE_VERSION = "FLYWHEEL_CODE_VERSION"
    # Where model projects live (``<dir>/<model>/``): the image's ``models/``, or the checkout's.
    MODELS_DIR = "FLYWHEEL_MODELS_DIR"
    # The git commit deployed (the deploy workflow sets it at `pulumi up`), when the deployment knows it.
    CODE_COMMIT = "FLYWHEEL_CODE_COMMIT"
    PREDICT_FUNCTION = "FLYWHEEL_PREDICT_FUNCTION"
    VERIFY_FUNCTION = "FLYWHEEL_VERIFY_FUNCTION"
    MONITOR_FUNCTION = "FLYWHEEL_MONITOR_FUNCTION"
    PROMOTION_POLICY = "FLYWHEEL_PROMOTION_POLICY"
    # Serving limits and the alias refresh: optional, with defaults in shared.settings.
    ALIAS_REFRESH_SECONDS = "FLYWHEEL_ALIAS_REFRESH_SECONDS"
    MAX_PREDICT_ROWS = "FLYWHEEL_MAX_PREDICT_ROWS"
    MAX_REQUEST_BYTES = "FLYWHEEL_MAX_REQUEST_BYTES"
    MAX_JSON_DEPTH = "FLYWHEEL_MAX_JSON_DEPTH"
    MAX_INTEGER_DIGITS = "FLYWHEEL_MAX_INTEGER_DIGITS"
    MAX_STRING_CHARS = "FLYWHEEL_MAX_STRING_CHARS"
    MAX_FIELDS_PER_OBJECT = "FLYWHEEL_MAX_FIELDS_PER_OBJECT"
    MAX_PROBLEMS_LISTED = "FLYWHEEL_MAX_PROBLEMS_LISTED"
    # A step run as a container task: where its input state is and where it writes its output state.
    TASK_INPUT = "FLYWHEEL_TASK_INPUT"
    TASK_OUTPUT = "FLYWHEEL_TASK_OUTPUT"
    POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
