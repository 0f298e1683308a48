"""Each local cloud is a new deployment: no function instance of an earlier cloud in the same process is
warm in it. Two clouds one after the other train the same model name on different data; each must serve,
and verify, its own v1 — not the model the other cloud's predict function loaded and kept.
"""

from __future__ import annotations

import pandas as pd
import pytest

from shared.ml.training import PROBABILITY_PREFIX, predict_frame
from shared.pipeline.steps import load_model
from tests.fixtures.services import churn_contract
from tests.fixtures.serving import MODEL, ROW, TRAINING, served_churn

pytestmark = pytest.mark.integration


def test_a_second_cloud_in_the_same_process_serves_its_own_model() -> None:
    served: list[float] = []
    for seed in (1, 2):
        with served_churn(seed=seed) as churn:
            answer = churn.predict({"instances": [ROW]})
            assert answer.status == 200, answer.body
            assert answer.body["version"] == 1
            version = churn.svc.registry.get_model_version(MODEL, 1)
            assert version.runtime_metrics["verification"]["passed"], version.runtime_metrics
            pipeline = load_model(churn.svc, version.artifact)
            offline = predict_frame(pipeline, pd.DataFrame([ROW]), churn_contract(training=TRAINING))
            label, probability = next(iter(answer.body["probabilities"][0].items()))
            expected = float(offline[f"{PROBABILITY_PREFIX}{label}"].iloc[0])
            assert probability == pytest.approx(expected, abs=1e-4)
            served.append(probability)
    assert served[0] != pytest.approx(served[1], abs=1e-6), "the two clouds' models must tell apart"
