"""`crmhub sandbox` as an admin plays with it: real processes, real ports, the README's two terminals.

One process runs `crmhub sandbox --base-port N` (seeded with the demo org);
`crmhub sandbox inbound` plays customers against it over HTTP, and `crmhub sync`
with `sandbox: {enabled: true, base_port: N}` brings their items into the CRMs.
What landed is read from the emulators' state endpoints, over HTTP too.
"""

from __future__ import annotations

import imaplib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from ruamel.yaml import YAML

from crmhub.config import DEFAULT_SETTINGS
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.mail import DEFAULT_ADDRESS, DEFAULT_PASSWORD
from crmhub.sandbox.settings import CHANNELS, CRMS, write_sandbox_settings
from tests.sandbox.test_sandbox_cli import free_base_port

CRMHUB = [sys.executable, "-m", "crmhub"]


def crmhub(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRMHUB, *args], capture_output=True, text=True, timeout=timeout)


class Sandbox:
    """A `crmhub sandbox` subprocess; `urls` once every emulator listens (and is seeded)."""

    def __init__(self, *flags: str) -> None:
        self.base = free_base_port()
        self.process = subprocess.Popen([*CRMHUB, "sandbox", "--json", "--base-port", str(self.base), *flags],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # printed only when the servers listen and the seed is in
        assert line, self.process.stderr.read() if self.process.stderr else "no output"
        self.urls: dict[str, str] = json.loads(line)

    def state(self, api: str) -> dict[str, Any]:
        answer = requests.get(f"{self.urls[api]}/_sandbox/state", timeout=10)
        answer.raise_for_status()
        state: dict[str, Any] = answer.json()
        return state

    def play(self, *args: str) -> str:
        done = crmhub("sandbox", "inbound", *args, "--base-port", str(self.base))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    running = Sandbox()
    yield running
    running.stop()


def test_customers_played_against_a_seeded_sandbox_land_in_salesforce(sandbox: Sandbox, tmp_path: Path) -> None:
    out = [sandbox.play("sms", "--from", "+14155550123", "--text", "Where is my order?"),
           sandbox.play("call", "--from", "+14155550124"),
           sandbox.play("x-mention", "--from", "@NewOnX", "--text", "anyone there?"),
           sandbox.play("x-dm", "--from", "NewOnX", "--text", "order 1234 please"),
           sandbox.play("messenger", "--from", "Mia Rossi", "--text", "hello from Messenger"),
           sandbox.play("email", "--from", "Jane Doe <jane.doe@example.com>", "--subject", "Invoice",
                        "--text", "Could I have the invoice?")]
    assert all(line.strip() for line in out)
    settings = write_sandbox_settings(tmp_path, {}, enabled=(*CRMS, *CHANNELS, "email"), base_port=sandbox.base)
    assert YAML(typ="safe").load(settings.read_text())["sandbox"] == {"enabled": True, "base_port": sandbox.base}
    synced = crmhub("sync", "--config", str(settings))
    assert synced.returncode == 0, synced.stderr

    tasks = sandbox.state("salesforce")["records"]["Task"].values()
    assert sorted(t["Subject"] for t in tasks) == sorted([
        "SMS inbound from +14155550123", "Call inbound from +14155550124",
        "X mention inbound from newonx", "X DM inbound from newonx", "Messenger inbound from Mia Rossi",
        "Email inbound from Jane Doe"])
    jane = next(c for c in sandbox.state("salesforce")["records"]["Contact"].values() if c["FirstName"] == "Jane")
    [sms_task] = [t for t in tasks if t["Subject"].startswith("SMS")]
    assert sms_task["WhoId"] == jane["Id"]  # the seeded Contact, matched on her messy phone format
    [email_task] = [t for t in tasks if t["Subject"].startswith("Email")]
    assert email_task["WhoId"] == jane["Id"]  # and on the address on her Contact (mail ports from base_port)


def test_an_email_played_against_the_sandbox_is_in_the_support_mailbox_over_imap(sandbox: Sandbox) -> None:
    line = sandbox.play("email", "--from", "Ana Ruiz <ana@example.net>", "--subject", "Order 1234",
                        "--text", "Where is my order?")
    assert "email from Ana Ruiz <ana@example.net> to support@crmhub.test: <" in line
    imap = urlsplit(sandbox.urls["mail-imap"])
    with imaplib.IMAP4(imap.hostname or "", imap.port or 0) as client:
        client.login(DEFAULT_ADDRESS, DEFAULT_PASSWORD)
        client.select("INBOX", readonly=True)
        _, [uids] = client.uid("SEARCH", "FROM", "ana@example.net")
        [uid] = uids.split()
        _, fetched = client.uid("FETCH", uid, "(BODY.PEEK[])")
    message = message_from_bytes(fetched[0][1], policy=policy.default)
    assert message["Subject"] == "Order 1234" and message["Message-ID"] in line
    assert message.get_content().strip() == "Where is my order?"


def test_the_seeded_org_matches_the_embedded_settings(sandbox: Sandbox) -> None:
    defaults = YAML(typ="safe").load(DEFAULT_SETTINGS.read_text())
    twilio = defaults["channels"]["twilio"]
    numbers = {n["phone_number"] for n in sandbox.state("twilio")["numbers"].values()}
    assert numbers == {*twilio["numbers"], *twilio["whatsapp_senders"]}
    routing = YAML(typ="safe").load((DEFAULT_SETTINGS.parent / "mappings" / "routing.yaml").read_text())
    queues = {g["DeveloperName"] for g in sandbox.state("salesforce")["records"]["Group"].values()
              if g.get("Type") == "Queue"}
    assert {q["queue"] for q in routing["queues"]["salesforce"].values()} <= queues
    users = {u["username"] for u in sandbox.state("x")["users"].values()}
    assert defaults["channels"]["x"]["account"] in users


def test_empty_starts_bare() -> None:
    bare = Sandbox("--empty")
    try:
        assert bare.state("twilio")["numbers"] == {}
        assert not [g for g in bare.state("salesforce")["records"].get("Group", {}).values() if g.get("Type") == "Queue"]
        refused = crmhub("sandbox", "inbound", "sms", "--from", "+14155550123", "--text", "hi",
                         "--base-port", str(bare.base))
        assert refused.returncode == 1
        assert "+14155550100 is not an IncomingPhoneNumber" in refused.stderr
        added = requests.post(f"{bare.urls['twilio']}/_sandbox/numbers", json={"phone": "+14155550100"}, timeout=10)
        assert added.status_code == 201
        assert bare.play("sms", "--from", "+14155550123", "--text", "hi")
    finally:
        bare.stop()


def test_traffic_replays_a_day_onto_our_numbers() -> None:
    busy = Sandbox("--empty", "--traffic", "7")
    try:
        twilio = busy.state("twilio")
        assert {n["phone_number"] for n in twilio["numbers"].values()} == {"+14155550100", "+14155550199"}
        assert [m for m in twilio["messages"].values() if m["direction"] == "inbound"]
        assert busy.state("x")["tweets"] and busy.state("salesforce")["records"]["Contact"]
    finally:
        busy.stop()
    assert busy.process.stderr is not None and "Replayed traffic seed 7:" in busy.process.stderr.read()


@pytest.mark.parametrize(("args", "message"), [
    (("inbound", "fax", "--from", "+14155550123"), "unknown kind 'fax'; use one of sms, whatsapp, call, x-mention"),
    (("inbound", "sms", "--from", "+14155550123"), "sms needs --text"),
    (("inbound", "email", "--from", "ana@example.net", "--subject", "hi"), "email needs --text"),
    (("inbound", "sms", "--from", "+14155550123", "--text", "hi", "--subject", "hi"), "--subject is for an email"),
    (("inbound", "sms", "--from", "+1415", "--text", "hi", "--base-port", "65532"), "--base-port 65532 does not fit"),
    (("--base-port", "80"), "--base-port 80 does not fit: the 9 sandbox ports 80..88 must lie in 1024..65535"),
])
def test_unknown_kinds_and_bad_ports_are_refused_clearly(args: tuple[str, ...], message: str) -> None:
    done = crmhub("sandbox", *args, timeout=30)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_nothing_listening_says_how_to_start_one() -> None:
    base = free_base_port()
    done = crmhub("sandbox", "inbound", "x-dm", "--from", "jane", "--text", "hi", "--base-port", str(base))
    assert done.returncode == 1
    assert f"start one with `crmhub sandbox --base-port {base}`" in done.stderr


def test_validate_refuses_a_base_port_that_does_not_fit(tmp_path: Path) -> None:
    settings = write_sandbox_settings(tmp_path, {}, base_port=65530)
    done = crmhub("validate", "--config", str(settings), timeout=30)
    assert done.returncode == 1
    assert "sandbox.base_port: 65530 does not fit: the 9 sandbox ports 65530..65538 must lie in 1024..65535" in (
        done.stderr)


def test_every_seed_action_is_documented_and_says_what_is_missing(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer, meta_sandbox: EmulatorServer,
        mail_sandbox: EmulatorServer) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "sandbox"
    for server in (salesforce_sandbox, zendesk_sandbox, hubspot_sandbox, twilio_sandbox, x_sandbox, meta_sandbox,
                   mail_sandbox):
        api = server.emulator.name
        page = (docs / f"{api}.md").read_text()
        for action in server.emulator.control_actions():
            assert f"/_sandbox/{action}" in page, (api, action)
            empty = requests.post(f"{server.url}/_sandbox/{action}", json={}, timeout=10)
            assert empty.status_code == 400 and "is missing" in empty.json()["error"], (api, action, empty.text)
    made = requests.post(f"{x_sandbox.url}/_sandbox/dms", json={"from": "@Brand_New", "text": "hi"}, timeout=10)
    assert made.status_code == 201
    [event] = x_sandbox.emulator.dm_events()  # type: ignore[attr-defined]  # an XEmulator
    assert event["id"] == made.json()["id"] and event["text"] == "hi"
