"""Batch scoring as an Amazon States Language document, built from Python dicts.

``ScoreFiles → Finish``. ``ScoreFiles`` is a Distributed Map: its ItemReader lists the job's prefix
(``s3:listObjectsV2``), and each object is one child execution running the score function. A Catch inside
the iteration turns a function's failure (a crash, Lambda's timeout) into that file's failed outcome, so one
bad file never fails the job and the other files are still scored; the function itself reports a file it
cannot read, or rows it cannot score, as a failed file or failed rows with reasons. ``Finish`` writes the
manifest from the outcomes and records the job in lineage. The iterations return references (the outcome
file's URI), never rows: Step Functions caps the Map's results with the rest of the state at 256 KiB.
"""

from __future__ import annotations

from typing import Any

from infra.pipeline import RETRY_TRANSIENT
from infra.spec import FunctionArns

SCORE_MAP_LABEL = "ScoreFiles"
# Files scored at once: each child is one function instance holding the model once.
MAX_CONCURRENT_FILES = 10
SCORE_TASK_TIMEOUT_S = 900


def scoring_definition(arns: FunctionArns) -> dict[str, Any]:
    """The scoring state machine for these function ARNs."""
    return {
        "Comment": "Flywheel batch scoring: every object under a prefix scored with one model version",
        "StartAt": SCORE_MAP_LABEL,
        "States": {
            SCORE_MAP_LABEL: {
                "Type": "Map",
                "Comment": "one child execution per object under the job's prefix",
                "Label": SCORE_MAP_LABEL,
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket.$": "$.job.bucket", "Prefix.$": "$.job.prefix"},
                },
                "ItemSelector": {
                    "job_id.$": "$.job.job_id",
                    "model.$": "$.job.model",
                    "version.$": "$.job.version",
                    "bucket.$": "$.job.bucket",
                    "prefix.$": "$.job.prefix",
                    "key.$": "$$.Map.Item.Value.Key",
                    "etag.$": "$$.Map.Item.Value.ETag",
                    "index.$": "$$.Map.Item.Index",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "ScoreFile",
                    "States": {
                        "ScoreFile": {
                            "Type": "Task",
                            "Resource": arns["score"],
                            "TimeoutSeconds": SCORE_TASK_TIMEOUT_S,
                            "Retry": [RETRY_TRANSIENT],
                            "Catch": [
                                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FileLost"}
                            ],
                            "End": True,
                        },
                        "FileLost": {
                            "Type": "Pass",
                            "Comment": "the file's outcome is the error: the job goes on with the others",
                            "Parameters": {"source.$": "$.key", "status": "failed", "error.$": "$.error"},
                            "End": True,
                        },
                    },
                },
                "MaxConcurrency": MAX_CONCURRENT_FILES,
                "ResultPath": "$.items",
                "Next": "Finish",
            },
            "Finish": {
                "Type": "Task",
                "Resource": arns["score-finish"],
                "Comment": "writes the manifest and links the outputs to the version in lineage",
                "Parameters": {"job.$": "$.job", "items.$": "$.items"},
                "Retry": [RETRY_TRANSIENT],
                "End": True,
            },
        },
    }
