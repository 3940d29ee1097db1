"""The ops listener: /metrics and /healthz apart from the webhook port, behind a token off loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from crmhub.app import build_hub
from crmhub.cli import app as cli
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from tests.daemons import Daemon, tune_settings, wait_for

with warnings.catch_warnings():  # starlette's notice that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def edit(settings: Path, **ops: Any) -> Path:
    """Set keys of the `ops` section of a settings file."""
    tune_settings(settings, {f"ops.{key}": value for key, value in ops.items()})
    return settings


@pytest.mark.parametrize("webhooks", [True, False])
def test_run_serves_health_and_metrics_on_the_ops_port_only(
        webhooks: bool, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    hooks, ops = free_port(), free_port()
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      webhooks_port=hooks if webhooks else None, ops_port=ops)
    daemon = Daemon(settings, tmp_path / "daemon.log")
    daemon.start()
    try:
        wait_for(lambda: listening(ops), 30, "the ops listener", [daemon])
        health = requests.get(f"http://127.0.0.1:{ops}/healthz", timeout=10)
        metrics = requests.get(f"http://127.0.0.1:{ops}/metrics", timeout=10)
        if webhooks:
            wait_for(lambda: listening(hooks), 30, "the webhook receiver")
            assert [requests.get(f"http://127.0.0.1:{hooks}{path}", timeout=10).status_code
                    for path in ("/healthz", "/metrics")] == [404, 404]
        else:
            assert not listening(hooks)
        assert daemon.stop() == 0
    finally:
        daemon.ensure_dead()

    assert health.status_code == 200 and health.json()["checks"]["store"] == {"ok": True}
    assert metrics.status_code == 200 and "crmhub_store_up 1.0" in metrics.text


def test_with_a_token_only_the_right_bearer_gets_in(salesforce_sandbox: EmulatorServer,
                                                     twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    settings = edit(write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url,
                                                      "twilio": twilio_sandbox.url}), token="env:CRMHUB_OPS_TOKEN")
    with build_hub(load_config(settings, environ={"CRMHUB_OPS_TOKEN": "s3cret-ops"})) as hub:
        client = TestClient(hub.ops_app())
        answers = {name: [client.get(path, headers=headers).status_code for path in ("/healthz", "/metrics")]
                   for name, headers in (("none", {}), ("wrong", {"Authorization": "Bearer s3cret-opz"}),
                                         ("basic", {"Authorization": "Basic s3cret-ops"}),
                                         ("right", {"Authorization": "Bearer s3cret-ops"}))}
        refused = client.get("/metrics")

    assert answers == {"none": [401, 401], "wrong": [401, 401], "basic": [401, 401], "right": [200, 200]}
    assert refused.headers["www-authenticate"] == "Bearer" and "s3cret" not in refused.text


def test_validate_refuses_an_ops_listener_off_loopback_without_a_token(tmp_path: Path) -> None:
    settings = edit(write_sandbox_settings(tmp_path, {}), host="0.0.0.0")
    runner = CliRunner()

    exposed = runner.invoke(cli, ["validate", "--config", str(settings)])
    edit(settings, token="env:CRMHUB_OPS_TOKEN")
    guarded = runner.invoke(cli, ["validate", "--config", str(settings)], env={"CRMHUB_OPS_TOKEN": "t0ken"})

    assert exposed.exit_code == 1
    [problem] = [line for line in exposed.output.splitlines() if "ops" in line]
    assert problem.startswith(f"{settings}:") and "0.0.0.0" in problem and "ops.token" in problem
    assert guarded.exit_code == 0, guarded.output


def test_a_taken_ops_port_is_one_line_naming_ops_port(twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = write_sandbox_settings(tmp_path, {"salesforce": "http://127.0.0.1:9", "twilio": twilio_sandbox.url},
                                          ops_port=port)
        done = subprocess.run([sys.executable, "-m", "crmhub", "run", "--config", str(settings)],
                              capture_output=True, text=True, timeout=60)

    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"127.0.0.1:{port} (ops.port in {settings})" in line
