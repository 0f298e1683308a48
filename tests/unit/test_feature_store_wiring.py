"""The feature store wired into Flywheel, on in-memory services: contracts that list views (their rules and
the effective contract), the pipeline's steps training on joined features, serving filling features from
the online store, the features function's routing, and the demo's feature data.

The store's own rules (views, sources, the point-in-time join, the online store, ingestion) are proven in
``test_feature_store.py``; these tests prove what the wiring adds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from examples.churn import generate
from examples.profiles import COLUMNS as PROFILE_COLUMNS
from examples.profiles import current_profiles, profile_updates
from shared.data.contract import DataContract, Feature, FeatureType, parse_contract
from shared.errors import ContractError
from shared.featurestore.arrivals import ingest_source
from shared.featurestore.catalog import load_view, put_view, view_names
from shared.featurestore.contracts import (
    contract_view_problems,
    join_views,
    load_training_contract,
    put_contract,
    servable_rows,
    training_contract,
    view_signature,
)
from shared.featurestore.ingest import ingest_feature_file
from shared.featurestore.offline import point_in_time_join, read_offline
from shared.featurestore.online import InMemoryOnlineStore, OnlineRow, OnlineStore
from shared.featurestore.sources import validate_feature_file
from shared.featurestore.view import FeatureView, parse_feature_view
from shared.metadata import NodeType, Relation, RunReason, file_id
from shared.ml.training import predict_frame, reference_profile, train
from shared.monitoring.drift import capture_frames, compute_drift
from shared.pipeline.intake import validate_step
from shared.pipeline.state import RunState, SourceFile
from shared.pipeline.steps import evaluate_step, register_step, signature, train_step
from shared.pipeline.verification import verify_step
from shared.services import Services
from shared.serving.lookup import fill_from_store
from shared.serving.runtime import RowProblem, Signature
from shared.storage import ObjectRef
from tests.fixtures.services import churn_contract, in_memory_services, serving_invoker, upload

QUARANTINE_PREFIX = "quarantine/_feature-sources/"  # where a refused feature-source file goes

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROFILE_YAML = (EXAMPLES / "customer_profile.yaml").read_text()
VIEW = parse_feature_view(PROFILE_YAML)
VIEW_FEATURES = ["lifetime_value", "segment"]
FAST_TRAINING = {"estimator": "logistic_regression", "params": {"max_iter": 500}, "window": {"files": 20}}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def profile_contract(**changes: Any) -> DataContract:
    """The demo churn contract with the customer profile view, trained fast."""
    return churn_contract(**{"training": FAST_TRAINING, "feature_views": ["customer_profile"], **changes})


def other_view(**changes: Any) -> FeatureView:
    document = {**VIEW.model_dump(mode="json"), "view": "usage", "features": {"logins": {"type": "numeric"}}}
    return FeatureView.model_validate({**document, **changes})


def problems_of(text: str) -> list[str]:
    with pytest.raises(ContractError) as refused:
        parse_contract(text)
    return [str(p) for p in refused.value.problems]


# --- the contract's own rules -------------------------------------------------------------------------------


def test_a_contract_lists_views_and_a_contract_without_them_reads_and_writes_as_before() -> None:
    churn = (EXAMPLES / "churn.yaml").read_text()

    plain = parse_contract(churn)
    with_views = parse_contract((EXAMPLES / "churn-profile.yaml").read_text())

    assert plain.feature_views == ()
    assert "feature_views" not in plain.to_yaml()
    assert with_views.feature_views == ("customer_profile",)
    assert parse_contract(with_views.to_yaml()).feature_views == ("customer_profile",)


def test_a_contract_with_views_needs_an_id_and_a_timestamp_and_names_each_view_once() -> None:
    document = parse_contract((EXAMPLES / "churn.yaml").read_text()).model_dump(
        mode="json", exclude_none=True
    )
    del document["id_column"], document["timestamp_column"]
    document["training"]["window"] = {"files": 3}
    document["feature_views"] = ["customer_profile", "Bad View", "customer_profile"]

    problems = problems_of(json.dumps(document))

    assert problems == [
        "feature_views: needs an id_column, the entity key the views are joined on (their entity)",
        "feature_views: needs a timestamp_column: each row sees the feature values of its own time",
        "feature_views: 'Bad View' is not a view name (lowercase letters, digits, '-' and '_')",
        "feature_views: 'customer_profile' is listed twice",
    ]


def test_every_way_views_do_not_fit_a_contract_is_listed_at_once() -> None:
    # Given a contract whose id is account_id, listing a view keyed on customer_id that reuses the contract's
    # names, a view whose feature another view has, and a view nobody put
    contract = profile_contract(id_column="account_id", feature_views=["customer_profile", "usage", "ghost"])
    clashing = VIEW.model_copy(
        update={
            "features": {
                **VIEW.features,
                "plan": Feature(type=FeatureType.NUMERIC),
                "churned": VIEW.features["segment"],
            }
        }
    )
    usage = other_view(entity="account_id", features={"lifetime_value": Feature(type=FeatureType.NUMERIC)})

    problems = contract_view_problems(contract, {"customer_profile": clashing, "usage": usage, "ghost": None})

    assert problems == [
        "feature_views.customer_profile: the view's entity 'customer_id' must be the contract's id_column "
        "(which is 'account_id'): rows are joined to the view on their id",
        "feature_views.customer_profile: feature 'plan' is also a feature of the contract",
        "feature_views.customer_profile: feature 'churned' is also the contract's target",
        "feature_views.usage: feature 'lifetime_value' also comes from the view 'customer_profile'",
        "feature_views.ghost: there is no feature view 'ghost'; "
        "put it first with `flywheel features put FILE`",
    ]
    with pytest.raises(ContractError, match=r"\(5 problem\(s\)\)"):
        training_contract(contract, {"customer_profile": clashing, "usage": usage, "ghost": None})


def test_put_contract_refuses_a_view_that_does_not_exist_and_accepts_it_once_the_view_is_put() -> None:
    svc = in_memory_services()
    text = (EXAMPLES / "churn-profile.yaml").read_text()

    with pytest.raises(ContractError) as refused:
        put_contract(svc.objects, svc.settings, text)
    assert refused.value.problems == [
        "feature_views.customer_profile: there is no feature view 'customer_profile'; put it first with "
        "`flywheel features put FILE`"
    ]
    assert svc.objects.list(svc.settings.data_bucket, "contracts/") == []

    put_view(svc.objects, svc.settings.data_bucket, PROFILE_YAML)
    stored, _ = put_contract(svc.objects, svc.settings, text)

    assert stored.model == "churn-profile" and stored.feature_views == ("customer_profile",)
    assert view_names(svc.objects, svc.settings.data_bucket) == ["customer_profile"]
    assert load_view(svc.objects, svc.settings.data_bucket, "customer_profile") == VIEW


def test_the_effective_contract_appends_the_views_features_with_their_specs() -> None:
    contract = profile_contract()

    training = training_contract(contract, {"customer_profile": VIEW})

    assert training.base is contract
    assert list(training.contract.features) == [*contract.features, *VIEW_FEATURES]
    assert training.contract.features["segment"] == VIEW.features["segment"]
    assert training.contract.features["lifetime_value"].min == 0
    assert training.contract.columns[-1] == contract.target
    assert training.view_of_feature == dict.fromkeys(VIEW_FEATURES, "customer_profile")
    assert training.tags() == {"feature_views": "customer_profile"}
    plain = churn_contract()
    assert training_contract(plain, {}).contract is plain


def test_a_view_put_again_with_a_clashing_feature_stops_training_with_the_reason() -> None:
    svc = in_memory_services()
    put_view(svc.objects, svc.settings.data_bucket, PROFILE_YAML)
    put_contract(svc.objects, svc.settings, profile_contract().to_yaml())
    clashing = VIEW.model_copy(
        update={"features": {**VIEW.features, "tenure_months": Feature(type=FeatureType.NUMERIC)}}
    )
    put_view(svc.objects, svc.settings.data_bucket, clashing.to_yaml())

    with pytest.raises(ContractError, match="'tenure_months' is also a feature of the contract"):
        load_training_contract(svc.objects, svc.settings, "churn")


# --- joining views into the training frame ---------------------------------------------------------------


def feature_file(*rows: tuple[str, str, float, str]) -> bytes:
    lines = ["customer_id,updated_at,lifetime_value,segment", *(",".join(map(str, r)) for r in rows)]
    return ("\n".join(lines) + "\n").encode()


def test_join_views_joins_point_in_time_and_names_every_offline_object_read() -> None:
    svc, online = in_memory_services(), InMemoryOnlineStore()
    bucket = svc.settings.data_bucket
    # Given c1's value is 10 from Jan 2, 20 from Jan 10 and 99 from Feb 20 (after every row)
    first = feature_file(("c1", "2026-01-02", 10, "consumer"), ("c2", "2026-01-03", 5, "smb"))
    later = feature_file(("c1", "2026-01-10", 20, "smb"), ("c1", "2026-02-20", 99, "enterprise"))
    for name, body in (("a.csv", first), ("b.csv", later)):
        ingest_feature_file(
            svc.objects, online, VIEW, upload(svc, f"feature-sources/customer_profile/{name}", body)
        )
    rows = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2", "c3"],
            "event_time": pd.to_datetime(
                ["2026-01-05", "2026-01-15", "2026-01-04", "2026-03-01", "2026-01-05"], utc=True
            ),
        }
    )
    training = training_contract(profile_contract(), {"customer_profile": VIEW})

    joined, read = join_views(svc.objects, bucket, rows, training)

    # Then each row sees the latest value at or before its time within 30 days, never Feb 20's
    assert joined["lifetime_value"].tolist()[:3] == [10.0, 20.0, 5.0]
    assert joined["lifetime_value"].isna().tolist()[3:] == [True, True]  # c2 expired; c3 has no history
    assert joined["segment"].tolist()[:3] == ["consumer", "smb", "smb"]
    keys = sorted(ref.key for ref in read)
    assert keys == sorted(o.ref.key for o in svc.objects.list(bucket, "features/customer_profile/"))
    assert all(ref.version_id for ref in read)


def test_rows_a_client_could_send_are_those_with_every_required_feature() -> None:
    training = training_contract(profile_contract(), {"customer_profile": VIEW})
    recorded = signature(training.contract, ["false", "true"], training.views)
    frame = pd.DataFrame(
        {
            "tenure_months": [1.0, 2.0, 3.0],
            "lifetime_value": [1.0, None, 3.0],
            "segment": ["smb", "smb", None],
        }
    )

    assert servable_rows(frame, recorded).index.tolist() == [0]
    assert servable_rows(frame, {"features": {}}).index.tolist() == [0, 1, 2]
    # none could be sent: all of them, for the serving path to refuse with its reasons
    assert servable_rows(frame.iloc[1:], recorded).index.tolist() == [1, 2]


# --- the pipeline on a contract with a view ----------------------------------------------------------------


def test_the_pipeline_trains_on_joined_features_and_records_the_views_lineage_and_signature() -> None:
    # Given the view, a season of profile updates (some after their customer's row), and the contract
    svc, online = in_memory_services(), InMemoryOnlineStore()
    bucket = svc.settings.data_bucket
    put_view(svc.objects, bucket, PROFILE_YAML)
    customers = generate(400, seed=3, start=T0)
    updates = profile_updates(customers, seed=3)
    body = updates.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode()
    source = upload(svc, "feature-sources/customer_profile/season.csv", body)
    assert ingest_feature_file(svc.objects, online, VIEW, source, metadata=svc.metadata).status == "ingested"
    state = start_run(svc, customers)

    # When the pipeline's steps run
    state = run_to_verify(svc, state)

    # Then the version's signature says which features come from the view, with its entity and TTL
    version = svc.registry.get_model_version("churn", 1)
    assert list(version.signature["features"])[-2:] == VIEW_FEATURES
    assert version.signature["feature_views"] == {
        "customer_profile": {"entity": "customer_id", "ttl_days": 30.0, "features": VIEW_FEATURES}
    }
    assert version.tags["feature_views"] == "customer_profile"
    assert Signature.from_dict(version.signature).views[0].ttl_seconds == 30 * 86_400
    # and the run read the offline objects of the dates that could matter (lineage: file -> run): from the
    # first row's time less the TTL to the last row's; each derives from the source file
    stamps = pd.to_datetime(customers["event_time"], utc=True)
    first, last = (stamps.min() - VIEW.ttl).date(), stamps.max().date()
    offline = {o.ref.key for o in svc.objects.list(bucket, "features/customer_profile/")}
    window = {key for key in offline if first.isoformat() <= key.split("date=")[1][:10] <= last.isoformat()}
    inputs = [e.src for e in svc.metadata.upstream(NodeType.RUN, "run-1") if e.relation == Relation.INPUT]
    files = {ObjectRef.parse(n.id.split("#")[0]).key for n in inputs if n.type is NodeType.FILE}
    assert files - window == {"incoming/churn/jan.csv"}  # the data file Validate read, and the views'
    assert window < offline
    derived = svc.metadata.downstream(NodeType.FILE, file_id(source.uri, source.version_id))
    assert {ObjectRef.parse(e.dst.id.split("#")[0]).key for e in derived} == offline
    # and the holdout holds the view's features as the point-in-time join gives them, never a later value
    holdout = pd.read_parquet(_artifact(svc, "run-1/holdout.parquet"))
    expected = point_in_time_join(
        holdout[["customer_id", "event_time"]],
        "customer_id",
        "event_time",
        read_offline(svc.objects, bucket, VIEW),
        VIEW.ttl,
        VIEW_FEATURES,
        event_time="updated_at",
    )
    pd.testing.assert_frame_equal(holdout[VIEW_FEATURES], expected[VIEW_FEATURES], check_dtype=False)
    # and the reference profile the monitor compares traffic with describes the view's features
    profile = json.loads(_artifact(svc, "run-1/profile.json").read())
    assert set(VIEW_FEATURES) <= set(profile["features"])
    # and the serving path answered the verification's rows (only those a client could send)
    assert state.verification is not None and state.verification["passed"], state.verification


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values:UserWarning")
def test_a_model_no_row_of_which_ever_had_a_view_value_fails_verification_saying_why() -> None:
    # Given a view with no feature file yet: every row's profile features are missing, and required
    svc = in_memory_services()
    put_view(svc.objects, svc.settings.data_bucket, PROFILE_YAML)
    state = start_run(svc, generate(300, seed=4, start=T0))

    # When the pipeline's steps run
    state = run_to_verify(svc, state)

    # Then the serving path refuses the holdout's rows, and verification says so (it does not crash)
    assert state.verification is not None and not state.verification["passed"]
    reasons = " ".join(state.verification["reasons"])
    assert "smoke request failed with 422" in reasons and "lifetime_value" in reasons


def start_run(svc: Services, customers: pd.DataFrame) -> RunState:
    """The profile contract put, the customers uploaded, and the run that validates them recorded."""
    contract = profile_contract(serving={"smoke_rows": 8, "load_requests": 4})
    put_contract(svc.objects, svc.settings, contract.to_yaml())
    data = upload(svc, "incoming/churn/jan.csv", customers.to_csv(index=False).encode())
    state = RunState(
        run_id="run-1",
        model="churn",
        reason=RunReason.NEW_DATA,
        source=SourceFile(bucket=svc.settings.data_bucket, key=data.key, version_id=data.version_id),
    )
    svc.metadata.start_run(_run(state))
    return state


def run_to_verify(svc: Services, state: RunState) -> RunState:
    """Validate, Train, Evaluate, Register and Verify, as the state machine calls them."""
    for step in (validate_step, train_step, evaluate_step, register_step):
        state = step(state, svc)
    return verify_step(state, svc, serving_invoker(svc))


def _run(state: RunState) -> Any:
    from shared.metadata import Run

    return Run(run_id=state.run_id, model=state.model, reason=state.reason, started_at=datetime.now(UTC))


def _artifact(svc: Services, artifact_id: str) -> Any:
    import io

    artifact = svc.metadata.get_artifact(artifact_id)
    return io.BytesIO(svc.objects.get(ObjectRef.parse(artifact.uri)).body)


def test_features_from_the_store_are_profiled_and_judged_for_drift_like_any_other() -> None:
    # Given a model trained on the effective contract, and captures holding the filled-in inputs
    customers = generate(300, seed=5, start=T0)
    updates = profile_updates(customers, seed=5)
    training = training_contract(profile_contract(), {"customer_profile": VIEW})
    frame = point_in_time_join(
        customers.assign(
            autopay=customers["autopay"].map({"true": 1.0, "false": 0.0}),
            event_time=pd.to_datetime(customers["event_time"], utc=True),
        ),
        "customer_id",
        "event_time",
        updates,
        VIEW.ttl,
        VIEW_FEATURES,
        event_time="updated_at",
    )
    model = train(frame, training.contract)
    profile = reference_profile(
        model.train_frame, predict_frame(model.pipeline, model.holdout, training.contract), training.contract
    )
    served = [
        {
            "inputs": {**row, "lifetime_value": value * 3, "segment": "enterprise"},
            "outputs": {"prediction": "false"},
        }
        for row, value in zip(
            frame[list(training.base.features)].head(200).to_dict("records"),
            frame["lifetime_value"].fillna(1000),
            strict=False,
        )
    ]

    # When the monitor's drift statistics run over the window
    inputs, predictions = capture_frames(served)
    drift = compute_drift(inputs, predictions, profile, training.contract)

    # Then the store's features are in the profile and judged like the others, and both moved
    assert set(VIEW_FEATURES) <= set(profile["features"])
    judged = {f.name: f for f in drift.features}
    assert set(VIEW_FEATURES) <= set(judged)
    assert judged["segment"].drifted and judged["lifetime_value"].drifted
    assert not drift.notes or "not in the reference profile" not in " ".join(drift.notes)


# --- serving: filling features from the online store -------------------------------------------------------


class CountingStore:
    """An online store that counts its batched reads."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.reads: list[tuple[str, list[str]]] = []

    def materialize(self, view: FeatureView, rows: pd.DataFrame) -> Any:
        return self.store.materialize(view, rows)

    def get_many(self, view: str, entities: Sequence[str]) -> dict[str, OnlineRow]:
        self.reads.append((view, list(entities)))
        return self.store.get_many(view, entities)


NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
BASE_ROW = {
    "tenure_months": 12,
    "monthly_charges": 70.5,
    "plan": "basic",
    "region": "north",
    "autopay": True,
    "support_calls": 3,
}


@pytest.fixture
def served() -> tuple[Signature, CountingStore]:
    """A signature of the churn contract with the profile view, and an online store where c-fresh was
    updated a day ago, c-stale 40 days ago and 7 just now."""
    training = training_contract(profile_contract(), {"customer_profile": VIEW})
    store = InMemoryOnlineStore()
    rows = pd.DataFrame(
        {
            "customer_id": ["c-fresh", "c-stale", "7"],
            "updated_at": pd.to_datetime([NOW - timedelta(days=1), NOW - timedelta(days=40), NOW], utc=True),
            "lifetime_value": [1200.0, 300.0, 7.0],
            "segment": ["smb", "consumer", "enterprise"],
        }
    )
    store.materialize(VIEW, rows)
    return Signature.from_dict(
        signature(training.contract, ["false", "true"], training.views)
    ), CountingStore(store)


def test_an_entity_key_alone_fills_the_views_features_in_one_batched_read(
    served: tuple[Signature, CountingStore],
) -> None:
    sig, store = served
    rows = [
        {**BASE_ROW, "customer_id": "c-fresh"},
        {**BASE_ROW, "customer_id": 7},
        {**BASE_ROW, "customer_id": "c-fresh"},
    ]

    filled = fill_from_store(rows, sig, store, NOW)

    assert store.reads == [("customer_profile", ["c-fresh", "7"])]
    assert filled.rows[0] == {
        **BASE_ROW,
        "customer_id": "c-fresh",
        "lifetime_value": 1200.0,
        "segment": "smb",
    }
    assert filled.rows[1]["segment"] == "enterprise"  # 7 is the entity "7", as a file's 7 or 7.0 stored it
    assert (filled.filled, filled.lookups, filled.unfilled) == (6, 2, {})
    assert rows[0] == {**BASE_ROW, "customer_id": "c-fresh"}  # the request's rows are not changed
    prepared, problems = sig.validate_rows(filled.rows)
    assert problems == [] and prepared[0]["lifetime_value"] == 1200.0


def test_request_values_override_stored_ones_and_a_full_row_asks_the_store_nothing(
    served: tuple[Signature, CountingStore],
) -> None:
    sig, store = served

    partial = fill_from_store(
        [{**BASE_ROW, "customer_id": "c-fresh", "segment": "enterprise"}], sig, store, NOW
    )
    explicit_null = fill_from_store(
        [{**BASE_ROW, "customer_id": "c-fresh", "segment": None}], sig, store, NOW
    )
    full = fill_from_store(
        [{**BASE_ROW, "customer_id": "c-fresh", "segment": "consumer", "lifetime_value": 1.0}],
        sig,
        store,
        NOW,
    )

    assert partial.rows[0]["segment"] == "enterprise" and partial.rows[0]["lifetime_value"] == 1200.0
    assert explicit_null.rows[0]["segment"] is None  # the client said "missing": the signature judges it
    assert full.rows[0]["lifetime_value"] == 1.0
    assert len(store.reads) == 2  # the full row needed no read


def test_stale_unknown_and_keyless_rows_are_refused_saying_why_the_store_could_not_fill_them(
    served: tuple[Signature, CountingStore],
) -> None:
    sig, store = served
    rows = [
        {**BASE_ROW, "customer_id": "c-stale"},
        {**BASE_ROW, "customer_id": "nobody"},
        dict(BASE_ROW),
        {**BASE_ROW, "customer_id": "c-fresh"},
    ]

    filled = fill_from_store(rows, sig, store, NOW)
    _, problems = sig.validate_rows(filled.rows)
    explained = filled.explain(problems)

    assert [(p.row, p.field) for p in explained] == [
        (0, "lifetime_value"),
        (0, "segment"),
        (1, "lifetime_value"),
        (1, "segment"),
        (2, "lifetime_value"),
        (2, "segment"),
    ]
    assert explained[0].problem == (
        "is missing: not in the request, and the feature store (view 'customer_profile') holds a value for "
        f"customer_id 'c-stale' from {(NOW - timedelta(days=40)).isoformat()}, "
        "older than the view's TTL of 30 days; the feature is required"
    )
    assert explained[2].problem == (
        "is missing: not in the request, and the feature store (view 'customer_profile') has no value for "
        "customer_id 'nobody'; the feature is required"
    )
    assert explained[4].problem == (
        "is missing: not in the request, and the row has no customer_id to look it up in the feature store "
        "(view 'customer_profile'); the feature is required"
    )
    assert len(store.reads) == 1


def test_a_stack_without_a_store_and_a_model_without_views(served: tuple[Signature, CountingStore]) -> None:
    sig, _ = served
    no_store = fill_from_store([{**BASE_ROW, "customer_id": "c-fresh"}], sig, None, NOW)
    plain = Signature.from_dict(signature(churn_contract(), ["false", "true"]))
    untouched = fill_from_store([BASE_ROW], plain, None, NOW)

    assert "no online feature store" in no_store.explain([RowProblem(0, "segment", "is missing")])[0].problem
    assert untouched.rows == [BASE_ROW] and untouched.lookups == 0
    assert "feature_views" not in signature(churn_contract(), None)


def test_a_signature_with_a_view_naming_an_unknown_feature_is_refused() -> None:
    training = training_contract(profile_contract(), {"customer_profile": VIEW})
    recorded = signature(training.contract, None, training.views)
    recorded["feature_views"]["customer_profile"]["features"] = ["lifetime_value", "ghost"]

    with pytest.raises(ContractError, match="feature view 'customer_profile'"):
        Signature.from_dict(recorded)
    assert view_signature([]) == {}


def test_filling_from_the_store_loads_neither_pandas_nor_scikit_learn() -> None:
    # the prediction function runs it on every request, and serves ONNX models without either
    code = (
        "import sys, shared.serving.lookup, shared.serving.api; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'sklearn')))"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert answer.stdout.strip() == "[]"


# --- the features function's routing -----------------------------------------------------------------------


def test_a_file_for_a_view_nobody_put_or_outside_any_view_is_quarantined_with_the_reason() -> None:
    svc, online = in_memory_services(), InMemoryOnlineStore()
    bucket = svc.settings.data_bucket
    body = feature_file(("c1", "2026-01-02", 10, "consumer"))

    ghost = ingest_source(svc, online, upload(svc, "feature-sources/ghost/a.csv", body))
    loose = ingest_source(svc, online, upload(svc, "feature-sources/a.csv", body))
    put_view(svc.objects, bucket, PROFILE_YAML)
    good = ingest_source(svc, online, upload(svc, "feature-sources/customer_profile/a.csv", body))

    assert ghost.status == loose.status == "quarantined"
    report = json.loads(svc.objects.get(ObjectRef(bucket, f"{QUARANTINE_PREFIX}ghost/a.csv.error.json")).body)
    assert report["problems"][0]["rule"] == "no_view"
    assert "there is no feature view 'ghost'" in report["problems"][0]["message"]
    assert loose.quarantined_as == f"s3://{bucket}/{QUARANTINE_PREFIX}_unrouted/feature-sources/a.csv"
    assert (
        good.status == "ingested"
        and online.get_many("customer_profile", ["c1"])["c1"].values["segment"] == "consumer"
    )


# --- the demo's feature data -------------------------------------------------------------------------------


def test_the_profile_generator_is_deterministic_valid_and_has_updates_after_each_row_time() -> None:
    customers = generate(300, seed=2, start=T0)

    updates = profile_updates(customers, seed=2)
    again = profile_updates(customers, seed=2)
    today = current_profiles(customers.head(5), "2026-11-26", seed=2)

    pd.testing.assert_frame_equal(updates, again)
    assert list(updates.columns) == list(PROFILE_COLUMNS) == VIEW.columns
    assert updates.groupby("customer_id").size().eq(3).all()
    merged = updates.merge(customers[["customer_id", "event_time", "churned"]], on="customer_id")
    after = merged["updated_at"] > merged["event_time"]
    assert 0.1 < after.mean() < 0.6  # a leaking join would see these
    assert (updates["lifetime_value"] >= 0).all() and set(updates["segment"]) <= {
        "consumer",
        "smb",
        "enterprise",
    }
    # the post-churn collapse is what a leaking join would learn
    late = merged[after].groupby("churned")["lifetime_value"].median()
    assert late["true"] < late["false"] / 3
    assert (today["updated_at"] == pd.Timestamp("2026-11-26", tz="UTC")).all()
    body = updates.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ").encode()
    assert validate_feature_file(body, "profiles.csv", VIEW).rows == len(updates)
