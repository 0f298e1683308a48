"""A data contract that lists feature views: its rules, the effective contract, and the training frame.

A contract may name views (``feature_views: [customer_profile]``). Their features are not columns of the
model's data files; they are joined to every row, point in time, on the row's id:

* **the join key**: each view's entity must be the contract's ``id_column`` (a row's id names the entity it
  describes, e.g. ``customer_id``), and the contract needs a ``timestamp_column``: each row gets the latest
  values at or before its own time, within the view's TTL (older ones count as missing);
* **names**: a view's features may not be named like a feature, the target, the id or the timestamp of the
  contract, nor like another listed view's features;
* **the effective contract** (:class:`TrainingContract`): the contract with the views' features appended,
  in the contract's view order, each with its view's spec (type, range, allowed values, nullability). It
  is what the pipeline, the reference profile, the ONNX packaging, evaluation, verification and the
  signature use, so training and serving agree on one feature list; data files are still validated
  against the contract as written (:attr:`TrainingContract.base`).

:func:`contract_view_problems` lists every broken rule at once; :func:`training_contract` raises them as
a :class:`~shared.errors.ContractError`. :func:`join_views` builds the training frame and says which offline
objects it read; :func:`view_signature` is what the registry records for serving to fill the features from
the online store by entity key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from shared.data.catalog import CONTRACTS, load_contract
from shared.data.contract import DataContract, Feature, parse_contract
from shared.errors import ContractError
from shared.featurestore.catalog import load_views
from shared.featurestore.offline import join_view_with_sources
from shared.featurestore.view import FeatureView
from shared.settings import Settings
from shared.storage import ObjectRef, ObjectStore

__all__ = [
    "TrainingContract",
    "contract_view_problems",
    "join_views",
    "servable_rows",
    "training_contract",
    "view_signature",
]


@dataclass(frozen=True)
class TrainingContract:
    """A model's contract as training and serving read it.

    ``contract`` is the effective contract (the views' features appended); ``base`` the contract as stored
    (what a data file must hold); ``views`` the views it lists, in its order. Without views, ``contract``
    is ``base``."""

    base: DataContract
    contract: DataContract
    views: tuple[FeatureView, ...] = ()

    @property
    def view_of_feature(self) -> dict[str, str]:
        """Which view each feature from the store comes from."""
        return {name: view.view for view in self.views for name in view.features}

    def tags(self) -> dict[str, str]:
        """What a model version records about its views (empty without views)."""
        if not self.views:
            return {}
        return {"feature_views": ",".join(view.view for view in self.views)}


def contract_view_problems(contract: DataContract, views: Mapping[str, FeatureView | None]) -> list[str]:
    """Every way the views a contract lists do not fit it (``views`` maps each listed name to its stored
    view, or None when there is none)."""
    problems: list[str] = []
    own = dict.fromkeys(contract.features, "a feature of the contract")
    own[contract.target] = "the contract's target"
    for role in ("id_column", "timestamp_column"):
        column = getattr(contract, role)
        if column:
            own[column] = f"the contract's {role}"
    claimed: dict[str, str] = {}
    for name in contract.feature_views:
        view = views.get(name)
        where = f"feature_views.{name}"
        if view is None:
            problems.append(
                f"{where}: there is no feature view {name!r}; put it first with `flywheel features put FILE`"
            )
            continue
        if view.entity != contract.id_column:
            problems.append(
                f"{where}: the view's entity {view.entity!r} must be the contract's id_column "
                f"(which is {contract.id_column!r}): rows are joined to the view on their id"
            )
        for feature in view.features:
            if feature in own:
                problems.append(f"{where}: feature {feature!r} is also {own[feature]}")
            elif feature in claimed:
                problems.append(f"{where}: feature {feature!r} also comes from the view {claimed[feature]!r}")
            else:
                claimed[feature] = name
    return problems


def training_contract(contract: DataContract, views: Mapping[str, FeatureView | None]) -> TrainingContract:
    """The effective contract of ``contract`` over its ``views`` (see the module docstring);
    :class:`ContractError` lists every problem when they do not fit."""
    problems = contract_view_problems(contract, views)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ContractError(
            f"the feature views of model {contract.model!r} do not fit its contract "
            f"({len(problems)} problem(s)):\n{lines}",
            problems=problems,
        )
    listed = tuple(view for name in contract.feature_views if (view := views.get(name)) is not None)
    if not listed:
        return TrainingContract(base=contract, contract=contract)
    features: dict[str, Feature] = dict(contract.features)
    for view in listed:
        features.update(view.features)
    effective = contract.model_copy(update={"features": features})
    return TrainingContract(base=contract, contract=effective, views=listed)


def join_views(
    objects: ObjectStore, bucket: str, frame: pd.DataFrame, training: TrainingContract
) -> tuple[pd.DataFrame, list[ObjectRef]]:
    """``frame`` (rows of the base contract) with every view's features joined point in time on the id
    column at the timestamp column; and the offline objects read, each once, in reading order."""
    if not training.views:
        return frame, []
    row_time = training.base.timestamp_column
    if row_time is None:  # contract rules require one; a contract built in code might not have been checked
        raise ContractError(f"model {training.base.model!r} lists feature views but has no timestamp_column")
    read: dict[tuple[str, str, str | None], ObjectRef] = {}
    for view in training.views:
        frame, refs = join_view_with_sources(objects, bucket, view, frame, row_time)
        read.update(((r.bucket, r.key, r.version_id), r) for r in refs)
    return frame, list(read.values())


def view_signature(views: Sequence[FeatureView]) -> dict[str, Any]:
    """The registry signature's ``feature_views``: per view its entity (the model's id column), its TTL and
    the features it provides (:class:`shared.serving.runtime.ViewSpec` reads it back)."""
    return {
        view.view: {"entity": view.entity, "ttl_days": view.ttl_days, "features": list(view.features)}
        for view in views
    }


def servable_rows(frame: pd.DataFrame, signature: Mapping[str, Any]) -> pd.DataFrame:
    """The rows a client could send as they are, by a version's registry ``signature``: every feature that
    is not nullable has a value. A view's required feature can be missing in a training row (no history yet,
    or only older than the TTL) although serving refuses a request without it; a smoke test of the serving
    path sends the other rows. When no row could be sent, every row: the serving path then refuses them
    with its reasons, which is what the smoke test should report."""
    features: Mapping[str, Any] = signature.get("features") or {}
    required = [
        name for name, spec in features.items() if not spec.get("nullable", False) and name in frame.columns
    ]
    if not required:
        return frame
    servable = frame[frame[required].notna().all(axis=1)]
    return servable if len(servable) else frame


def put_contract(
    objects: ObjectStore, settings: Settings, text: str | bytes
) -> tuple[DataContract, ObjectRef]:
    """Check a contract completely (format, cross-field rules, estimator parameters and the experiment's
    search space against the estimator, the feature views it lists: stored, and fitting it) and store it."""
    # scikit-learn checks the estimator's parameters: only putting a contract pays for importing it.
    from shared.ml.experiments import experiment_problems  # noqa: PLC0415
    from shared.ml.training import check_training_params  # noqa: PLC0415

    contract = parse_contract(text)
    if contract.training.pipeline is None:  # a project's parameters are its own code's to check
        check_training_params(contract)
    searched = experiment_problems(contract)
    if searched:
        lines = "\n".join(f"  - {p}" for p in searched)
        raise ContractError(
            f"contract for model {contract.model!r} has {len(searched)} problem(s):\n{lines}",
            problems=searched,
        )
    if contract.feature_views:
        views = load_views(objects, settings.data_bucket, contract.feature_views)
        problems = contract_view_problems(contract, views)
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise ContractError(
                f"contract for model {contract.model!r} has {len(problems)} problem(s):\n{lines}",
                problems=problems,
            )
    return contract, CONTRACTS.put(objects, settings.data_bucket, contract)


def load_training_contract(objects: ObjectStore, settings: Settings, model: str) -> TrainingContract:
    """The model's contract with the feature views it lists, as Train, Evaluate, Register and Verify read
    it: :attr:`TrainingContract.contract` is the effective contract. :class:`ContractError` when a view is
    gone or no longer fits (a view put again with other features, say)."""
    contract = load_contract(objects, settings, model)
    if not contract.feature_views:
        return TrainingContract(base=contract, contract=contract)
    return training_contract(contract, load_views(objects, settings.data_bucket, contract.feature_views))
