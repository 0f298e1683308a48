"""Feature views: the YAML definition of a set of shared features, and its parser.

A view names an entity key, an event-time column, a TTL and typed features (the same :class:`Feature`
specs as a data contract's)::

    view: customer_profile
    entity: customer_id
    event_time: updated_at
    ttl_days: 30
    features:
      tenure_months: {type: numeric, min: 0}
      plan: {type: categorical, allowed: [basic, plus, pro]}
      support_calls_30d: {type: numeric, min: 0, nullable: true}

:func:`parse_feature_view` turns text into a :class:`FeatureView` or raises
:class:`~shared.errors.ContractError` listing every problem at once. Imports neither pandas nor boto3.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.data.contract import Feature, parse_document
from shared.naming import VIEW_NAME

SEQUENCE_COLUMN: Final = "__sequence__"
"""The tiebreak column of stored feature rows (see :mod:`shared.featurestore`)."""

# Columns the feature store adds to stored rows; a view may not use these names.
RESERVED_COLUMNS: Final = frozenset({SEQUENCE_COLUMN, "__row_id__"})


class FeatureView(BaseModel):
    """A feature view: which entity the features describe, when each value holds from, and for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    view: str
    entity: str = Field(min_length=1)
    event_time: str = Field(min_length=1)
    ttl_days: float = Field(gt=0)
    features: dict[str, Feature]
    max_file_mb: float = Field(default=512.0, gt=0)
    description: str = ""

    @field_validator("view")
    @classmethod
    def _view_name(cls, value: str) -> str:
        if not re.match(VIEW_NAME, value):
            raise ValueError(f"use lowercase letters, digits, '-' and '_' (at most 64), got {value!r}")
        return value

    @field_validator("ttl_days")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of days")
        return value

    @property
    def ttl(self) -> timedelta:
        return timedelta(days=self.ttl_days)

    @property
    def feature_names(self) -> list[str]:
        return list(self.features)

    @property
    def columns(self) -> list[str]:
        """Every column a feature-source file must have, in a stable order."""
        return [self.entity, self.event_time, *self.features]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def view_problems(document: dict[str, Any]) -> list[str]:
    """Cross-field problems, read leniently from the raw document so they are reported together with
    field-level ones (a malformed part is skipped here; pydantic reports it)."""
    problems: list[str] = []
    raw = document.get("features")
    features = raw if isinstance(raw, dict) else {}
    if "features" in document and not features:
        problems.append("features: declare at least one feature")
    entity, event_time = document.get("entity"), document.get("event_time")
    for role, column in (("entity", entity), ("event_time", event_time)):
        if isinstance(column, str) and column in features:
            problems.append(f"{role}: {column!r} is also listed as a feature")
    if isinstance(entity, str) and entity and entity == event_time:
        problems.append("entity and event_time name the same column")
    for role, column in (("entity", entity), ("event_time", event_time)):
        if column in RESERVED_COLUMNS:
            problems.append(f"{role}: {column!r} is reserved for the feature store")
    problems.extend(
        f"features.{name}: {name!r} is reserved for the feature store"
        for name in features
        if name in RESERVED_COLUMNS
    )
    if any(not str(name).strip() for name in features):
        problems.append("features: a feature needs a name")
    return problems


def parse_feature_view(text: str | bytes) -> FeatureView:
    """Parse and check a YAML feature view; :class:`ContractError` lists every problem found."""
    return parse_document(
        text,
        FeatureView,
        what="feature view",
        cross_field=view_problems,
        describe=_describe,
        summary=_summary,
    )


def _summary(document: dict[str, Any], problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"feature view {document.get('view', '?')!r} has {len(problems)} problem(s):\n{lines}"


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        fields = FeatureView.model_fields if len(error["loc"]) == 1 else Feature.model_fields
        message = f"unknown field (expected one of {', '.join(fields)})"
    if error["type"] == "missing":
        message = "required"
    return f"{location}: {message}"
