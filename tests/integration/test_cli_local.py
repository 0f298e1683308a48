"""`make local` (``flywheel local``) serves Flywheel's stack; an ordinary boto3 client reaches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_flywheel_local_serves_the_stack_to_any_boto3_client() -> None:
    port, gateway_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYWHEEL_", "AWS_ENDPOINT"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "local", "--port", str(port), "--gateway-port", str(gateway_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        exports: dict[str, str] = {}
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip().startswith("export "):
                name, _, value = line.strip().removeprefix("export ").partition("=")
                exports[name] = value
            if "FLYWHEEL_API_URL" in exports or time.monotonic() > deadline:
                break

        curl = ""
        for line in process.stdout:
            if line.strip().startswith("curl ") or time.monotonic() > deadline:
                curl = line.strip()
                break

        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert curl.startswith("curl -s -X POST $FLYWHEEL_API_URL/models/churn/predict ")
        body = json.loads(curl.split(" -d ", 1)[1].strip("'"))
        assert set(body["instances"][0]) >= {"tenure_months", "plan", "autopay"}
        assert exports["FLYWHEEL_API_URL"] == f"http://127.0.0.1:{gateway_port}"
        session = boto3.session.Session(
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            region_name=exports["AWS_DEFAULT_REGION"],
        )
        buckets = session.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"]).list_buckets()["Buckets"]
        tables = session.client("dynamodb", endpoint_url=exports["AWS_ENDPOINT_URL"]).list_tables()[
            "TableNames"
        ]

        assert {b["Name"] for b in buckets} == {"flywheel-local-data", "flywheel-local-artifacts"}
        assert {"flywheel-local-registry", "flywheel-local-metadata", "flywheel-local-idempotency"} <= set(
            tables
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
