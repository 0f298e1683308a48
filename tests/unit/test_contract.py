"""A contract is refused when it is put, with every problem listed at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.data.contract import FeatureType, Task, parse_contract
from shared.errors import ContractError

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn.yaml"

VALID = """
model: churn
task: classification
target: churned
id_column: customer_id
timestamp_column: event_time
features:
  tenure_months: {type: numeric, min: 0, max: 600}
  monthly_charges: {type: numeric, nullable: true}
  plan: {type: categorical, allowed: [basic, plus, pro]}
  region: {type: categorical, nullable: true}
  autopay: {type: boolean}
min_rows: 200
training:
  estimator: hist_gradient_boosting
  params: {max_iter: 200}
  holdout_fraction: 0.2
  window: {files: 20}
gates:
  min: {roc_auc: 0.70}
  max_regression: {roc_auc: 0.01}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ContractError) as refused:
        parse_contract(text)
    assert refused.value.problems
    return [str(p) for p in refused.value.problems]


def test_the_readme_contract_parses() -> None:
    contract = parse_contract(VALID)

    assert contract.task is Task.CLASSIFICATION
    assert contract.columns == [
        "customer_id",
        "event_time",
        "tenure_months",
        "monthly_charges",
        "plan",
        "region",
        "autopay",
        "churned",
    ]
    assert contract.features_of(FeatureType.CATEGORICAL) == ["plan", "region"]
    assert not contract.higher_is_better("log_loss")
    assert parse_contract(contract.to_yaml()) == contract


def test_the_demo_contract_parses() -> None:
    assert parse_contract(EXAMPLE.read_text()).model == "churn"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("model: churn", "model: Churn_Model"), "model: use lowercase letters"),
        (("task: classification", "task: ranking"), "task: Input should be 'classification' or 'regression'"),
        (("target: churned\n", ""), "target: required"),
        (
            ("{type: numeric, min: 0, max: 600}", "{type: numeric, min: 600, max: 0}"),
            "features.tenure_months: min (600.0) is greater than max (0.0)",
        ),
        (
            ("allowed: [basic, plus, pro]", "allowed: []"),
            "features.plan: allowed must list at least one value",
        ),
        (
            ("allowed: [basic, plus, pro]", "allowed: [basic, basic]"),
            "features.plan: allowed lists a value twice",
        ),
        (
            ("{type: boolean}", "{type: boolean, min: 0}"),
            "features.autopay: min/max apply to numeric features",
        ),
        (("{type: boolean}", "{type: text}"), "features.autopay.type: Input should be"),
        (
            (
                "region: {type: categorical, nullable: true}",
                "region: {type: categorical, nullable: true, colour: red}",
            ),
            "features.region.colour: unknown field",
        ),
        (
            ("autopay: {type: boolean}", "churned: {type: boolean}"),
            "target: 'churned' is also listed as a feature",
        ),
        (("id_column: customer_id", "id_column: plan"), "id_column: 'plan' is also listed as a feature"),
        (
            ("estimator: hist_gradient_boosting", "estimator: ridge"),
            "training.estimator: 'ridge' is not a classification estimator",
        ),
        (("estimator: hist_gradient_boosting", "estimator: xgboost"), "training.estimator: 'xgboost'"),
        (
            ("holdout_fraction: 0.2", "holdout_fraction: 1.5"),
            "training.holdout_fraction: Input should be less than 0.9",
        ),
        (("window: {files: 20}", "window: {files: 20, days: 3}"), "training.window: a window is either"),
        (("min: {roc_auc: 0.70}", "min: {rmse: 0.70}"), "gates.min.rmse: not a classification metric"),
        (
            ("max_regression: {roc_auc: 0.01}", "max_regression: {roc_auc: -0.01}"),
            "allowed regression must be >= 0",
        ),
        (("min_rows: 200", "min_rows: 0"), "min_rows: Input should be greater than or equal to 1"),
        (("min_rows: 200", "min_rowz: 200"), "min_rowz: unknown field"),
    ],
)
def test_each_invalid_case_is_named(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in VALID
    problems = problems_of(VALID.replace(old, new))

    assert any(expected in p for p in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    broken = (
        VALID.replace("model: churn", "model: Churn")
        .replace("estimator: hist_gradient_boosting", "estimator: ridge")
        .replace("min: {roc_auc: 0.70}", "min: {rmse: 0.70}")
        .replace("allowed: [basic, plus, pro]", "allowed: []")
    )
    assert len(problems_of(broken)) == 4


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "model: [unclosed\n"])
def test_text_that_is_not_a_yaml_mapping_is_refused(text: str) -> None:
    assert problems_of(text)


def test_days_windows_need_a_timestamp_and_regression_has_no_target_values() -> None:
    text = VALID.replace("timestamp_column: event_time\n", "").replace("{files: 20}", "{days: 30}")
    assert any("needs a timestamp_column" in p for p in problems_of(text))
    regression = VALID.replace("task: classification", "task: regression").replace("roc_auc", "r2")
    assert any("target_values" in p for p in problems_of(regression + 'target_values: ["a"]\n'))
