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


class ArtifactPrefix(StrEnum):
    MODELS = "models/"
    REPORTS = "reports/"
