"""Validation enforces a data contract on an upload and produces the canonical frame training reads."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.data.contract import DataContract, parse_contract
from shared.data.streaming import validate_file
from shared.data.validation import (
    ROW_ID_COLUMN,
    Problem,
    ValidatedData,
    read_table,
    validate_frame,
)
from shared.errors import DataValidationError
from tests.fixtures.bad_files import bad_files
from tests.fixtures.contracts import (
    SMALL_CONTRACT_YAML,
    small_contract,
    to_csv_bytes,
    to_parquet_bytes,
    valid_frame,
)

pytestmark = pytest.mark.unit

CONTRACT = small_contract()
CANONICAL_DTYPES = {
    "customer_id": "str",
    "event_time": "datetime64[ns, UTC]",
    "tenure_months": "float64",
    "monthly_charges": "float64",
    "plan": "str",
    "region": "str",
    "autopay": "float64",
    "churned": "str",
}
# Where each case of the corpus breaks its rule: (column, rows affected).
WHERE = {
    "empty": (None, 1),
    "blank_lines": (None, 1),
    "header_only": (None, 1),
    "wrong_delimiter": (None, 1),
    "tab_delimited": (None, 1),
    "missing_target": ("churned", 1),
    "empty_target": ("churned", 1),
    "invalid_target": ("churned", 1),
    "missing_column": ("plan", 1),
    "unexpected_column": ("notes", 1),
    "unknown_category": ("plan", 1),
    "null_in_required": ("plan", 1),
    "text_in_numeric": ("tenure_months", 1),
    "out_of_range": ("tenure_months", 1),
    "above_max": ("tenure_months", 1),
    "all_null_feature": ("monthly_charges", 100),
    "duplicate_ids": ("customer_id", 2),
    "too_few_rows": (None, 1),
    "bad_timestamp": ("event_time", 1),
    "binary_garbage": (None, 1),
    "excel_workbook": (None, 1),
    "broken_parquet": (None, 1),
    "truncated_parquet": (None, 1),
    "latin1": (None, 1),
    "ragged_row": (None, 1),
    "unknown_format": (None, 1),
    "corrupt_gzip": (None, 1),
}
CORPUS = bad_files(CONTRACT)


def contract_with(**changes: Any) -> DataContract:
    """The small contract with top-level fields replaced (re-parsed, so the result is checked)."""
    document = {**CONTRACT.model_dump(mode="json", exclude_none=True), **changes}
    return DataContract.model_validate({k: v for k, v in document.items() if v is not None})


def rejection(body: bytes, filename: str = "upload.csv", contract: DataContract = CONTRACT) -> list[Problem]:
    with pytest.raises(DataValidationError) as caught:
        validate_file(body, filename, contract)
    return [Problem.model_validate(p) for p in caught.value.problems]


def rules_of(problems: list[Problem]) -> list[str]:
    return [p.rule for p in problems]


# --- the corpus: every bad file breaks exactly its rule -----------------------------------------------------


def test_the_corpus_covers_every_case_the_brief_names() -> None:
    named = {
        "empty",
        "header_only",
        "wrong_delimiter",
        "missing_target",
        "unknown_category",
        "text_in_numeric",
        "all_null_feature",
        "duplicate_ids",
        "too_few_rows",
        "binary_garbage",
        "bad_timestamp",
        "out_of_range",
    }
    assert named <= set(CORPUS)
    assert set(CORPUS) == set(WHERE)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_each_bad_file_is_rejected_for_exactly_its_rule(case: str) -> None:
    """Given a valid file broken in one way, when it is validated, then exactly that rule is reported, on the
    right column, with the right count and a sentence that names the column."""
    filename, body, rule = CORPUS[case]
    column, count = WHERE[case]

    problems = rejection(body, filename)

    assert rules_of(problems) == [rule]
    (problem,) = problems
    assert problem.column == column
    assert problem.count == count
    assert len(problem.examples) <= 5
    assert problem.message.endswith((".", ").")) and problem.message[0].isupper()
    if column is not None:
        assert f"'{column}'" in problem.message


def test_the_error_lists_every_problem_as_dicts_with_a_readable_summary() -> None:
    filename, body, _ = CORPUS["text_in_numeric"]
    with pytest.raises(DataValidationError) as caught:
        validate_file(body, filename, CONTRACT)
    error = caught.value
    assert type(error).__name__ == "DataValidationError"
    assert isinstance(error.problems[0], dict)
    assert set(error.problems[0]) == {"column", "rule", "count", "examples", "message"}
    assert "twelve.csv" in str(error) and "small-churn" in str(error) and "'twelve'" in str(error)
    json.dumps(error.problems)


# --- several problems at once -------------------------------------------------------------------------------


def test_a_file_with_several_problems_reports_all_of_them() -> None:
    frame = valid_frame(120, seed=3).drop(columns=["region"]).assign(Plan_notes="x")
    frame.loc[0, "tenure_months"] = "ten"
    frame.loc[1, "tenure_months"] = "-1"
    frame.loc[[2, 3, 4], "plan"] = "gold"
    frame.loc[5, "autopay"] = "maybe"
    frame.loc[6, "event_time"] = "31/12/2024"
    frame.loc[7, "customer_id"] = frame.loc[8, "customer_id"]
    frame.loc[9, "churned"] = ""

    problems = rejection(to_csv_bytes(frame))

    found = {(p.rule, p.column): p for p in problems}
    assert set(found) == {
        ("missing_column", "region"),
        ("unexpected_column", "Plan_notes"),
        ("wrong_type", "tenure_months"),
        ("below_min", "tenure_months"),
        ("not_allowed", "plan"),
        ("wrong_type", "autopay"),
        ("bad_timestamp", "event_time"),
        ("duplicate_id", "customer_id"),
        ("missing_target", "churned"),
    }
    assert found["not_allowed", "plan"].count == 3
    assert found["not_allowed", "plan"].examples == ["gold"]
    assert found["missing_target", "churned"].examples == ["row 10"]
    assert found["bad_timestamp", "event_time"].examples == ["31/12/2024"]


def test_examples_are_capped_at_five_and_rows_count_from_one() -> None:
    frame = valid_frame(100)
    frame.loc[[3, 10, 20, 30, 40, 50, 60], "plan"] = ""

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.count) == ("null_not_allowed", 7)
    assert problem.examples == ["row 4", "row 11", "row 21", "row 31", "row 41"]
    assert "row 4, row 11, row 21, row 31, row 41, …" in problem.message


def test_a_misspelt_column_gets_a_hint() -> None:
    frame = valid_frame(60).rename(columns={"tenure_months": "tenure_month"})

    problems = rejection(to_csv_bytes(frame))

    assert rules_of(problems) == ["missing_column", "unexpected_column"]
    assert "did you mean 'tenure_months'?" in problems[1].message


def test_a_repeated_header_name_is_reported_once() -> None:
    body = to_csv_bytes(valid_frame(60)).replace(b"region,", b"plan,", 1)

    problems = rejection(body)

    assert ("duplicate_column", "plan") in {(p.rule, p.column) for p in problems}
    assert ("missing_column", "region") in {(p.rule, p.column) for p in problems}


# --- reading ------------------------------------------------------------------------------------------------


def test_read_table_keeps_every_cell_as_text_and_missing_tokens_as_nan() -> None:
    body = b"a, b ,c\n007, 1.50 ,NA\nnull,None, \nNaN,,x\n"

    frame = read_table(body, "raw.csv", CONTRACT)

    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].iloc[0] == "007"
    assert frame["b"].iloc[0] == "1.50"
    assert frame.isna().sum().to_dict() == {"a": 2, "b": 2, "c": 2}
    assert all(str(dtype) == "str" for dtype in frame.dtypes)


def test_an_empty_trailing_column_is_dropped_but_an_unnamed_one_with_values_is_not() -> None:
    lines = to_csv_bytes(valid_frame(60)).splitlines()
    trailing = b"\n".join(line + b"," for line in lines) + b"\n"
    labelled = b"\n".join([lines[0] + b","] + [line + b",x" for line in lines[1:]]) + b"\n"

    data = validate_file(trailing, "export.csv", CONTRACT)
    (problem,) = rejection(labelled)

    assert list(data.frame.columns) == CONTRACT.columns
    assert (problem.rule, problem.column) == ("unexpected_column", "")
    assert "without a name (column 9)" in problem.message


def test_an_oversized_file_is_refused_before_it_is_parsed() -> None:
    body = to_csv_bytes(valid_frame(200))
    tiny = CONTRACT.model_copy(update={"max_file_mb": len(body) / 2 / 1024 / 1024})

    (problem,) = rejection(body, contract=tiny)

    assert problem.rule == "too_large"
    assert "MiB" in problem.message


def test_a_gzip_bomb_is_refused_by_its_decompressed_size() -> None:
    body = gzip.compress(b"a,b\n" + b"1,2\n" * 200_000)
    tiny = CONTRACT.model_copy(update={"max_file_mb": 0.5})

    (problem,) = rejection(body, "bomb.csv.gz", contract=tiny)

    assert problem.rule == "too_large"
    assert len(body) < 0.5 * 1024 * 1024


def test_gzip_csv_with_a_bom_and_crlf_reads_like_plain_csv() -> None:
    raw = to_csv_bytes(valid_frame(80))
    windows = b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n")

    plain = validate_file(raw, "plain.csv", CONTRACT).frame
    zipped = validate_file(gzip.compress(windows), "zipped.csv.gz", CONTRACT).frame

    pd.testing.assert_frame_equal(plain, zipped)


def test_an_unclosed_quote_is_malformed_csv() -> None:
    body = to_csv_bytes(valid_frame(60)).replace(b"basic", b'"basic', 1)

    (problem,) = rejection(body)

    assert problem.rule == "malformed_csv"
    assert "quote" in problem.message


# --- the canonical frame ------------------------------------------------------------------------------------


def test_a_valid_file_becomes_the_canonical_typed_frame() -> None:
    raw = valid_frame(200)

    data = validate_file(to_csv_bytes(raw), "good.csv", CONTRACT)

    assert isinstance(data, ValidatedData)
    assert data.rows == 200
    assert list(data.frame.columns) == CONTRACT.columns
    assert data.schema == CANONICAL_DTYPES
    assert {c: str(t) for c, t in data.frame.dtypes.items()} == CANONICAL_DTYPES
    assert set(data.frame["autopay"].unique()) == {0.0, 1.0}
    assert set(data.frame["churned"].unique()) == {"true", "false"}
    assert data.frame["region"].isna().sum() == (raw["region"] == "").sum()
    assert data.frame["monthly_charges"].isna().sum() == (raw["monthly_charges"] == "").sum()
    stamps = data.frame["event_time"]
    assert data.time_range == (
        stamps.min().strftime("%Y-%m-%dT%H:%M:%SZ"),
        stamps.max().strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def test_csv_and_parquet_of_the_same_rows_give_the_same_frame() -> None:
    raw = valid_frame(150, seed=4)

    from_csv = validate_file(to_csv_bytes(raw), "rows.csv", CONTRACT)
    from_parquet = validate_file(to_parquet_bytes(raw), "rows.parquet", CONTRACT)

    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame)
    assert from_csv.profile == from_parquet.profile


def test_a_typed_parquet_file_gives_the_same_frame_as_its_csv() -> None:
    """Given the rows as a typed Parquet (ints, bools, real timestamps, a bool target), then validation
    lands on the same canonical frame as for the text CSV."""
    raw = valid_frame(150, seed=5)
    canonical = validate_file(to_csv_bytes(raw), "rows.csv", CONTRACT).frame
    typed = pd.DataFrame(
        {
            "customer_id": canonical["customer_id"],
            "event_time": canonical["event_time"].dt.tz_localize(None).dt.as_unit("ms"),  # naive: UTC
            "tenure_months": canonical["tenure_months"].astype("int64"),
            "monthly_charges": canonical["monthly_charges"],
            "plan": canonical["plan"].astype("category"),
            "region": canonical["region"],
            "autopay": canonical["autopay"].astype(bool),
            "churned": canonical["churned"] == "true",
        }
    )

    again = validate_file(to_parquet_bytes(typed), "typed.parquet", CONTRACT).frame

    pd.testing.assert_frame_equal(again, canonical)


@pytest.mark.parametrize("backend", ["object", "numpy_nullable", "pyarrow"])
def test_frames_in_any_dtype_backend_land_on_the_same_canonical_frame(backend: str) -> None:
    """Given a canonical frame held as object columns, pandas' nullable dtypes or Arrow-backed dtypes,
    then validate_frame types it back to exactly the canonical frame."""
    canonical = validate_file(to_csv_bytes(valid_frame(90)), "rows.csv", CONTRACT).frame
    if backend == "object":
        held = canonical.astype(object)
    else:
        held = canonical.convert_dtypes(dtype_backend=backend)

    data, problems = validate_frame(held, CONTRACT)

    assert problems == []
    assert data is not None
    pd.testing.assert_frame_equal(data.frame, canonical)


def test_the_canonical_frame_validates_to_itself() -> None:
    data = validate_file(to_csv_bytes(valid_frame(120)), "rows.csv", CONTRACT)

    again = validate_file(to_parquet_bytes(data.frame), "dataset.parquet", CONTRACT)

    pd.testing.assert_frame_equal(again.frame, data.frame)


def test_the_profile_is_json_and_summarises_each_column() -> None:
    data = validate_file(to_csv_bytes(valid_frame(200)), "rows.csv", CONTRACT)

    profile = json.loads(json.dumps(data.profile))

    assert profile["rows"] == 200
    assert set(profile["columns"]) == set(CONTRACT.columns)
    tenure = profile["columns"]["tenure_months"]
    assert tenure["min"] >= 0 and tenure["max"] <= 600 and tenure["nulls"] == 0
    assert set(profile["columns"]["plan"]["top"]) == {"basic", "plus", "pro"}
    assert profile["columns"]["region"]["nulls"] == int(data.frame["region"].isna().sum())
    classes = profile["target"]["classes"]
    assert set(classes) == {"true", "false"} and sum(classes.values()) == 200


# --- normalisation ------------------------------------------------------------------------------------------


def test_booleans_accept_common_spellings_and_real_bools() -> None:
    contract = contract_with(
        features={
            **CONTRACT.model_dump(mode="json", exclude_none=True)["features"],
            "autopay": {"type": "boolean", "nullable": True},
        }
    )
    frame = valid_frame(60).astype(object)
    spellings = ["TRUE", "False", "yes", "No", "1", "0", "1.0", "0.0", True, False, 1, 0, "", None, "NA"]
    expected = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, np.nan, np.nan, np.nan]
    frame.loc[: len(spellings) - 1, "autopay"] = spellings

    data, problems = validate_frame(frame, contract)

    assert problems == []
    assert data is not None
    got = data.frame["autopay"].head(len(spellings))
    np.testing.assert_array_equal(got.to_numpy(), np.array(expected))
    assert str(got.dtype) == "float64"


@pytest.mark.parametrize(
    ("values", "target_values", "expected"),
    [
        ([True, False], None, ["true", "false"]),
        (["TRUE", "false"], ["true", "false"], ["true", "false"]),
        ([1, 0], ["1", "0"], ["1", "0"]),
        ([1.0, 0.0], [1, 0], ["1", "0"]),
        (["1.0", "0"], None, ["1", "0"]),
        (["yes", "no"], ["yes", "no"], ["yes", "no"]),
        (["cat", "dog"], None, ["cat", "dog"]),
    ],
)
def test_classification_targets_become_canonical_text(
    values: list[Any], target_values: list[Any] | None, expected: list[str]
) -> None:
    contract = contract_with(target_values=target_values)
    frame = valid_frame(60).astype(object)
    frame["churned"] = [values[i % 2] for i in range(60)]

    data, problems = validate_frame(frame, contract)

    assert problems == []
    assert data is not None
    assert data.frame["churned"].head(2).tolist() == expected
    assert str(data.frame["churned"].dtype) == "str"


def test_yaml_booleans_in_target_values_match_boolean_labels() -> None:
    """`target_values: [true, false]` reaches the contract as "True"/"False"; it still matches "true"."""
    contract = parse_contract(SMALL_CONTRACT_YAML.replace('["true", "false"]', "[true, false]"))
    assert contract.target_values == ("True", "False")

    data = validate_file(to_csv_bytes(valid_frame(60)), "rows.csv", contract)

    assert set(data.frame["churned"]) == {"true", "false"}


def test_categories_compare_as_text() -> None:
    contract = contract_with(
        features={
            **CONTRACT.model_dump(mode="json", exclude_none=True)["features"],
            "plan": {"type": "categorical", "allowed": [1, 2, 3]},
        }
    )
    frame = valid_frame(60).astype(object)
    frame["plan"] = [[1, "2", 3.0, " 1 "][i % 4] for i in range(60)]

    data, problems = validate_frame(frame, contract)

    assert problems == []
    assert data is not None
    assert data.frame["plan"].head(4).tolist() == ["1", "2", "3", "1"]


def test_timestamps_become_utc_nanoseconds() -> None:
    frame = valid_frame(60)
    frame.loc[0, "event_time"] = "2024-03-01T12:00:00+02:00"
    frame.loc[1, "event_time"] = "2024-03-01 12:00:00"
    frame.loc[2, "event_time"] = "2024-03-01"

    data = validate_file(to_csv_bytes(frame), "rows.csv", CONTRACT)

    assert data.frame["event_time"].head(3).tolist() == [
        pd.Timestamp("2024-03-01T10:00:00Z"),
        pd.Timestamp("2024-03-01T12:00:00Z"),
        pd.Timestamp("2024-03-01T00:00:00Z"),
    ]


def test_timestamps_nanoseconds_cannot_hold_are_bad_timestamps() -> None:
    frame = valid_frame(60)
    frame.loc[4, "event_time"] = "2999-01-01"

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.column, problem.examples) == ("bad_timestamp", "event_time", ["2999-01-01"])


def test_an_empty_timestamp_or_id_is_not_allowed() -> None:
    frame = valid_frame(60)
    frame.loc[4, "event_time"] = ""
    frame.loc[5, "customer_id"] = " "

    problems = rejection(to_csv_bytes(frame))

    assert {(p.rule, p.column, p.count) for p in problems} == {
        ("null_not_allowed", "event_time", 1),
        ("null_not_allowed", "customer_id", 1),
    }


def test_a_required_feature_that_is_entirely_empty_is_null_not_allowed() -> None:
    frame = valid_frame(60).assign(plan="")

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.column, problem.count) == ("null_not_allowed", "plan", 60)


def test_infinite_numbers_are_the_wrong_type() -> None:
    frame = valid_frame(60)
    frame.loc[0, "monthly_charges"] = "inf"

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.column, problem.examples) == ("wrong_type", "monthly_charges", ["inf"])


def test_a_single_class_target_is_invalid() -> None:
    frame = valid_frame(60).assign(churned="false")

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.column, problem.count) == ("invalid_target", "churned", 60)
    assert "single class" in problem.message


def test_a_regression_target_must_be_numeric() -> None:
    contract = contract_with(task="regression", target="monthly_spend", target_values=None)
    frame = valid_frame(60).drop(columns="churned").assign(monthly_spend=[f"{i * 1.5}" for i in range(60)])
    frame.loc[7, "monthly_spend"] = "a lot"

    (problem,) = rejection(to_csv_bytes(frame), contract=contract)
    frame.loc[7, "monthly_spend"] = "12"
    data = validate_file(to_csv_bytes(frame), "rows.csv", contract)

    assert (problem.rule, problem.column, problem.examples) == ("invalid_target", "monthly_spend", ["a lot"])
    assert str(data.frame["monthly_spend"].dtype) == "float64"
    assert data.profile["target"]["task"] == "regression"
    assert data.profile["target"]["quantiles"]["p50"] == pytest.approx(data.frame["monthly_spend"].median())


# --- generated ids ------------------------------------------------------------------------------------------


def test_rows_get_deterministic_ids_when_the_contract_has_none() -> None:
    contract = contract_with(id_column=None)
    body = to_csv_bytes(valid_frame(60).drop(columns="customer_id"))
    prefix = hashlib.sha256(body).hexdigest()[:16]

    first = validate_file(body, "rows.csv", contract)
    second = validate_file(body, "copy.csv", contract)

    assert list(first.frame.columns) == [ROW_ID_COLUMN, *contract.columns]
    assert first.frame[ROW_ID_COLUMN].head(2).tolist() == [f"{prefix}-0", f"{prefix}-1"]
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.schema[ROW_ID_COLUMN] == "str"


def test_generated_ids_survive_a_round_trip_through_the_dataset() -> None:
    contract = contract_with(id_column=None)
    data = validate_file(to_csv_bytes(valid_frame(60).drop(columns="customer_id")), "rows.csv", contract)

    again = validate_file(to_parquet_bytes(data.frame), "dataset.parquet", contract)

    pd.testing.assert_frame_equal(again.frame, data.frame)


def test_a_frame_without_ids_gets_a_digest_of_its_content() -> None:
    contract = contract_with(id_column=None)
    frame = valid_frame(60).drop(columns="customer_id")

    first, _ = validate_frame(frame, contract)
    second, _ = validate_frame(frame.copy(), contract)
    named, _ = validate_frame(frame, contract, source_id="upload-7")

    assert first is not None and second is not None and named is not None
    assert first.frame[ROW_ID_COLUMN].tolist() == second.frame[ROW_ID_COLUMN].tolist()
    assert named.frame[ROW_ID_COLUMN].iloc[3] == "upload-7-3"


# --- properties ---------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(min_value=50, max_value=400), seed=st.integers(min_value=0, max_value=10_000))
def test_valid_rows_never_produce_problems(rows: int, seed: int) -> None:
    data, problems = validate_frame(valid_frame(rows, seed), CONTRACT)

    assert problems == []
    assert data is not None and data.rows == rows


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    order=st.randoms(use_true_random=False),
)
def test_row_order_does_not_change_what_a_file_validates_to(seed: int, order: Any) -> None:
    raw = valid_frame(80, seed)
    positions = list(range(len(raw)))
    order.shuffle(positions)
    shuffled = raw.iloc[positions].reset_index(drop=True)

    original = validate_file(to_csv_bytes(raw), "a.csv", CONTRACT).frame
    reordered = validate_file(to_csv_bytes(shuffled), "b.csv", CONTRACT).frame

    assert set(reordered["customer_id"]) == set(original["customer_id"])
    pd.testing.assert_frame_equal(
        reordered.sort_values("customer_id", ignore_index=True),
        original.sort_values("customer_id", ignore_index=True),
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    broken=st.dictionaries(
        st.integers(min_value=0, max_value=79),
        st.text(alphabet="abcxyz!?#", min_size=1, max_size=8),
        min_size=1,
        max_size=12,
    ),
)
def test_every_non_number_in_a_numeric_column_is_counted(seed: int, broken: dict[int, str]) -> None:
    frame = valid_frame(80, seed)
    for row, text in broken.items():
        frame.loc[row, "tenure_months"] = text

    (problem,) = rejection(to_csv_bytes(frame))

    assert (problem.rule, problem.column, problem.count) == ("wrong_type", "tenure_months", len(broken))
    assert problem.examples == list(dict.fromkeys(broken[r] for r in sorted(broken)))[:5]
