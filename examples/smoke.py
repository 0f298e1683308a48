"""End-to-end smoke test of a deployed stack (what the deploy workflow runs after `pulumi up`).

``python -m examples.smoke --stack dev``: puts the demo contract, pushes a small generated file and waits
for its run, then asks the production model for a prediction through the stack's API. Exits non-zero, with
the reason, if any of it fails.

The demo contract is stored under a model of the smoke test's own (``smoke``, or ``--model``): ``churn`` is
also a model project (``models/churn/``) that ``flywheel deliver`` delivers next, and the smoke test must
neither replace that project's contract nor train a version of it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cli import actions
from cli.api import predict
from cli.stack import settings_for
from examples.churn import generate, write
from shared.data.contract import parse_contract
from shared.featurestore.contracts import put_contract
from shared.metadata import RunStatus
from shared.services import Services

EXAMPLES = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--model", default="smoke", help="The model the smoke test trains and asks.")
    args = parser.parse_args(argv)

    svc = Services.from_settings(settings_for(args.stack))
    demo = parse_contract((EXAMPLES / "churn.yaml").read_text())
    contract, _ = put_contract(
        svc.objects, svc.settings, demo.model_copy(update={"model": args.model}).to_yaml()
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "smoke.csv"
        write(generate(args.rows, seed=7), path)
        pushed = actions.push(svc, path, contract.model, name=f"smoke-{path.stat().st_mtime_ns}.csv")
        view = actions.wait_for_run(svc, pushed.run_id, print, timeout_s=1200)
    if view.run.status not in (RunStatus.SUCCEEDED, RunStatus.REJECTED):
        print(f"smoke: run {pushed.run_id} ended {view.run.status.value}: {view.run.error}", file=sys.stderr)
        return 1
    row = {
        "tenure_months": 12,
        "monthly_charges": 70.0,
        "plan": "basic",
        "region": "north",
        "autopay": True,
        "support_calls": 1,
    }
    answer = predict(args.stack, contract.model, {"instances": [row]})
    if len(answer.get("predictions", [])) != 1 or not answer.get("request_ids"):
        print(f"smoke: unexpected answer from the API: {answer}", file=sys.stderr)
        return 1
    version, predictions = answer["version"], answer["predictions"]
    print(f"smoke: ok — run {view.run.status.value}; {contract.model} v{version} answered {predictions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
