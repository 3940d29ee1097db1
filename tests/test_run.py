"""`crmhub run` as a service: jobs deliver on their own, SIGTERM drains (within run.shutdown_grace) and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from ruamel.yaml import YAML

from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from tests.daemons import pending, wait_for

OURS = "+14155550100"


def start_crmhub(command: str, settings: Path, log: Path) -> subprocess.Popen[bytes]:
    """`crmhub <command> --config <settings>`, its log in a file: a pipe nobody reads fills up and blocks it."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "crmhub", command, "--config", str(settings)],
                                stdout=subprocess.DEVNULL, stderr=out)


def test_run_delivers_then_stops_cleanly_on_sigterm(salesforce_sandbox: EmulatorServer,
                                                    twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    sf.add_queue("Support Queue", "Support_Queue")
    sf.add_queue("Billing Queue", "Billing_Queue")
    sf.add_queue("VIP Queue", "VIP_Queue")
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(minutes=30)
    tw.receive_message("+14155550123", OURS, "Where is my parcel?", at=start)
    tw.receive_message("+14155550124", OURS, "Please refund me", at=start + timedelta(minutes=1))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})
    process_log = tmp_path / "process.log"
    process = start_crmhub("run", settings, process_log)
    try:
        wait_for(lambda: len(sf.records("Task")) == 2, 60, "both messages as Tasks")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process_log.read_text()
    assert "stopped" in stderr
    assert "Where is my parcel" not in stderr and "sandbox-secret" not in stderr  # no bodies, no secrets
    assert {t["Description"] for t in sf.records("Task")} == {"Where is my parcel?", "Please refund me"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_takes_webhooks_and_polls_and_stores_each_message_once(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    port = free_port()
    tw.add_number(OURS, sms_url=f"http://127.0.0.1:{port}/webhooks/twilio/messages")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      webhooks_port=port, every="1s")
    process_log = tmp_path / "process.log"
    process = start_crmhub("run", settings, process_log)
    try:
        wait_for(lambda: _listening(port), 30, "the webhook server")
        tw.receive_message("+14155550123", OURS, "Sent while you listen")  # webhook now, poll within a second
        assert tw.wait_for_webhooks(timeout=10)
        assert [h["status"] for h in tw.webhook_log()] == [200]
        wait_for(lambda: len(sf.records("Task")) == 1, 30, "the message as a Task")
        polled = tw.total_calls
        wait_for(lambda: tw.total_calls >= polled + 2, 30, "two more polls that see it again")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert [t["Description"] for t in sf.records("Task")] == ["Sent while you listen"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_webhooks_command_serves_the_receiver_alone(twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    port, ops_port = free_port(), free_port()
    settings = write_sandbox_settings(tmp_path, {"salesforce": "http://127.0.0.1:9", "twilio": twilio_sandbox.url},
                                      webhooks_port=port, ops_port=ops_port)
    process_log = tmp_path / "process.log"
    process = start_crmhub("webhooks", settings, process_log)
    try:
        wait_for(lambda: _listening(port), 30, "the webhook server")
        forged = requests.post(f"http://127.0.0.1:{port}/webhooks/twilio/messages", data={"MessageSid": "SMx"},
                               headers={"X-Twilio-Signature": "forged"}, timeout=10)
        assert forged.status_code == 403
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 404
        wait_for(lambda: _listening(ops_port), 30, "the ops listener")
        assert requests.get(f"http://127.0.0.1:{ops_port}/healthz", timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_mid_delivery_exits_0_within_the_grace_period_and_a_restart_delivers_each_once(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    senders = [f"+1415555{6000 + n}" for n in range(5)]
    for n, phone in enumerate(senders):  # known senders only: every write is an upsert by crmhub's keys
        sf.insert("Contact", LastName=f"Known{n}", Phone=phone)
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(minutes=30)
    bodies = [f"grace message {n}" for n in range(10)]
    for n, body in enumerate(bodies):
        tw.receive_message(senders[n % 5], OURS, body, at=start + timedelta(seconds=10 * n))
    # The first batch's Task upsert answers only after 6 s: SIGTERM finds it in flight.
    slow = sf.faults.add(Fault(kind="slow", path="/composite$", times=1, delay=6.0))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      every="1s")
    yaml = YAML()
    data = yaml.load(settings.read_text())
    grace = 1.0
    data["run"]["shutdown_grace"] = "1s"
    data["delivery"].update(batch_size=5, lease="2s")
    with settings.open("w") as out:
        yaml.dump(data, out)

    process_log = tmp_path / "process.log"
    process = start_crmhub("run", settings, process_log)
    try:
        wait_for(lambda: slow.hits == 1 or process.poll() is not None, 60, "the first Task upsert in flight")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process_log.read_text()
    print(f"\nSIGTERM to exit: {took:.1f} s (grace {grace:g} s)\n" + "\n".join(stderr.splitlines()[-4:]))
    assert took < grace + 5, f"exited {took:.1f} s after SIGTERM"
    assert "cut short" in stderr and "catch-up" in stderr and "safe to cut" in stderr, stderr[-2000:]
    assert "grace message" not in stderr  # no bodies in the logs

    # The cut request still lands in the CRM: crmhub never recorded it, so the restart writes it again.
    wait_for(lambda: len(sf.records("Task")) == 5, 30, "the in-flight upsert to land")
    restart_log = tmp_path / "restart.log"
    restart = start_crmhub("run", settings, restart_log)
    try:
        wait_for(lambda: len(sf.records("Task")) >= 10 and pending(load_config(settings).database_url()) == 0, 60, "every message delivered")
        restart.send_signal(signal.SIGTERM)
        assert restart.wait(timeout=30) == 0
    finally:
        if restart.poll() is None:
            restart.kill()
    stderr = restart_log.read_text()
    assert "stopped" in stderr and "cut short" not in stderr
    tasks = sf.records("Task")
    assert Counter(t["Description"] for t in tasks) == Counter(bodies)  # each exactly once
    assert len(sf.records("Case")) == 5  # one per conversation, none opened twice
