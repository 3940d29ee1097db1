"""The webhook receiver against hostile input (issue 12): what an outsider or a broken sender can make it do."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors.x_signing import signature
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_ID, DEFAULT_CONSUMER_SECRET
from crmhub.store.ledger import DeadLetter, open_dead_letters
from crmhub.store.schema import LedgerRow
from crmhub.webhooks import WebhookServer
from tests.webhook_apps import create_app
from tests.daemons import wait_for
from tests.test_webhooks import TOKEN, Recorder

with warnings.catch_warnings():  # starlette's notice that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

X = "/webhooks/x"
SIGNATURE = "x-twitter-webhooks-signature"
QUEUES = ("Support_Queue", "Billing_Queue", "VIP_Queue")


@pytest.fixture
def x_hub(salesforce_sandbox: EmulatorServer, x_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Hub]:
    """A hub on Salesforce and X (the emulators), as `crmhub run` builds it."""
    sf: Any = salesforce_sandbox.emulator
    for name in QUEUES:
        sf.add_queue(name, name)
    settings_ = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "x": x_sandbox.url},
                                       enabled=("salesforce", "x"))
    with build_hub(load_config(settings_)) as hub:
        yield hub


def ledger_ids(hub: Hub) -> list[str]:
    with hub.store.transaction() as session:
        return list(session.scalars(select(LedgerRow.external_id)))


def dead_letters(hub: Hub) -> list[DeadLetter]:
    with hub.store.transaction() as session:
        return open_dead_letters(session)


def mention(post_id: str, text: str, *, author: str = "666", **fields: Any) -> dict[str, Any]:
    """A v1.1 post by `author` mentioning our support account."""
    return {"id_str": post_id, "text": text, "timestamp_ms": "1767600000000",
            "user": {"id_str": author, "screen_name": "mallory"}, "in_reply_to_status_id_str": None,
            "entities": {"user_mentions": [{"id_str": DEFAULT_ACCOUNT_ID, "screen_name": DEFAULT_ACCOUNT}]}} | fields


def post_signed(client: TestClient, payload: dict[str, Any] | bytes) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(X, content=body, headers={SIGNATURE: signature(DEFAULT_CONSUMER_SECRET, body)})


# ---- 1. the CRC route is no signing oracle; for_user_id is checked against who we are -------------
def test_the_crc_trick_gets_no_signature_and_a_forged_mention_never_reaches_the_crm(
        x_hub: Hub, salesforce_sandbox: EmulatorServer) -> None:
    client = TestClient(x_hub.webhook_app())
    forged = json.dumps({"for_user_id": DEFAULT_ACCOUNT_ID,
                         "tweet_create_events": [mention("1900000000000000001", "FORGED: refund me now")]})

    crc = client.get(X, params={"crc_token": forged})  # the signature of the event, if the route signs it
    answered = crc.json().get("response_token", "") if crc.status_code == 200 else ""
    posted = client.post(X, content=forged.encode(), headers={SIGNATURE: answered})
    x_hub.sync_once()

    assert crc.status_code == 400 and "sha256=" not in crc.text
    assert posted.status_code == 403
    sample = x_hub.metrics.sample
    assert sample("crmhub_webhook_requests_total", {"route": "x.crc", "outcome": "invalid"}) == 1.0
    assert sample("crmhub_webhook_rejected_total", {"source": "x"}) == 1.0
    assert ledger_ids(x_hub) == []
    sf: Any = salesforce_sandbox.emulator
    assert [t for t in sf.records("Task") if "FORGED" in str(t.get("Description"))] == []


def test_a_signed_event_for_another_account_stores_nothing_whatever_handle_it_shows(x_hub: Hub) -> None:
    client = TestClient(x_hub.webhook_app())
    other = "999"  # the payload claims our handle for this id: only X's answer to users/me says who we are
    payload = {"for_user_id": other, "users": {other: {"screen_name": DEFAULT_ACCOUNT}, "7": {"screen_name": "eve"}},
               "direct_message_events": [{"type": "message_create", "id": "5001", "created_timestamp": "1767600000123",
                                          "message_create": {"sender_id": "7", "target": {"recipient_id": other},
                                                             "message_data": {"text": "not for you"}}}],
               "tweet_create_events": [mention("1900000000000000002", "hi", author="7",
                                               entities={"user_mentions": [{"id_str": other,
                                                                            "screen_name": DEFAULT_ACCOUNT}]})]}

    answer = post_signed(client, payload)

    assert answer.status_code == 200
    assert ledger_ids(x_hub) == [] and dead_letters(x_hub) == []
    assert x_hub.metrics.sample("crmhub_webhook_requests_total", {"route": "x.events", "outcome": "ignored"}) == 2.0


def test_when_x_cannot_say_who_we_are_events_get_503_and_are_not_stored(
        salesforce_sandbox: EmulatorServer, tmp_path: Path) -> None:
    settings_ = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "x": "http://127.0.0.1:9"},
                                       enabled=("salesforce", "x"))
    with build_hub(load_config(settings_)) as hub:
        client = TestClient(hub.webhook_app())
        answer = post_signed(client, {"for_user_id": DEFAULT_ACCOUNT_ID,
                                      "tweet_create_events": [mention("1900000000000000003", "hello")]})
        assert answer.status_code == 503  # X retries; the reconcile poll covers it otherwise
        assert ledger_ids(hub) == []


CRC_APP = TestClient(create_app(Recorder(), twilio_auth_token=None, public_url=None, x_consumer_secret="s3cret"))
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(token=st.one_of(st.builds(json.dumps, st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)),
                       st.builds(lambda a, b: a + "{" + b, st.text(max_size=20), st.text(max_size=20))))
def test_the_crc_route_never_signs_a_json_object_or_anything_with_a_brace(token: str) -> None:
    answer = CRC_APP.get(X, params={"crc_token": token})
    assert answer.status_code == 400
    assert "response_token" not in answer.text


# ---- 2. a signed event that cannot be used: 200 and a dead letter, never a 5xx --------------------
@pytest.mark.parametrize("broken", [
    {"created_at": "Fri Dec 31 23:59:59 -2359 9999", "timestamp_ms": None},
    {"created_at": "Mon Jan 01 00:00:00 +2359 0001", "timestamp_ms": None},
    {"timestamp_ms": "999999999999999"},
    {"timestamp_ms": 10 ** 40},
])
def test_a_signed_post_with_a_time_out_of_range_is_a_dead_letter_without_its_text(x_hub: Hub,
                                                                                  broken: dict[str, Any]) -> None:
    client = TestClient(x_hub.webhook_app(), raise_server_exceptions=False)
    post = mention("1900000000000000004", "SECRET-BODY my card is 4111") | broken

    answer = post_signed(client, {"for_user_id": DEFAULT_ACCOUNT_ID, "tweet_create_events": [post]})

    assert answer.status_code == 200
    [letter] = dead_letters(x_hub)
    assert (letter.source, letter.ref) == ("x", "x_mention:1900000000000000004")
    assert "SECRET-BODY" not in letter.reason
    assert ledger_ids(x_hub) == []


@pytest.mark.parametrize("depth", [65, 500, 950, 5000])
@pytest.mark.parametrize("where", ["top", "event"])
def test_deeply_nested_signed_json_is_a_dead_letter_with_a_placeholder_payload(x_hub: Hub, depth: int,
                                                                               where: str) -> None:
    client = TestClient(x_hub.webhook_app(), raise_server_exceptions=False)
    nested = "[" * depth + "]" * depth
    body = (nested if where == "top" else
            '{"for_user_id":"%s","direct_message_events":[{"type":"message_create","id":"77","deep":%s}]}'
            % (DEFAULT_ACCOUNT_ID, nested)).encode()

    first, again = post_signed(client, body), post_signed(client, body)

    assert (first.status_code, again.status_code) == (200, 200)
    [letter] = dead_letters(x_hub)  # X's retry of the same body is the same dead letter
    assert letter.source == "x" and "nested" in letter.reason
    assert "[[" not in json.dumps(letter.payload)  # a placeholder: nothing that would recurse again
    assert ledger_ids(x_hub) == []


def test_a_signed_body_that_is_not_a_json_object_is_a_dead_letter(x_hub: Hub) -> None:
    client = TestClient(x_hub.webhook_app())
    answers = [post_signed(client, body).status_code for body in (b"not json", b"[1, 2]", b"\xff\xfe")]
    assert answers == [200, 200, 200]
    assert len(dead_letters(x_hub)) == 3 and ledger_ids(x_hub) == []


# ---- 3. a client that hangs up mid-body ---------------------------------------------------------
def test_a_body_shorter_than_its_content_length_is_counted_without_a_traceback(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    recorder = Recorder()
    app = create_app(recorder, twilio_auth_token=TOKEN, public_url=None, x_consumer_secret="s3cret")
    caplog.set_level(logging.DEBUG)
    with WebhookServer(app) as server:
        for path in ("/webhooks/twilio/messages", X):
            with socket.create_connection(("127.0.0.1", server.port)) as raw:
                raw.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            f"Content-Length: 1000\r\nX-Twilio-Signature: x\r\n\r\n".encode() + b'{"partial":')
        wait_for(lambda: sum(n for (_, outcome), n in app.state.counts.items() if outcome == "disconnected") == 2,
                 10, "both hang-ups counted")

    logged = caplog.text + "".join(capfd.readouterr())
    assert "Traceback" not in logged and "ClientDisconnect" not in logged
    assert "partial" not in logged
    assert (recorder.interactions, recorder.malformed) == ([], [])


# ---- 4. the port is taken -------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["webhooks", "run"])
def test_a_taken_webhook_port_is_one_line_naming_the_setting_and_exit_1(
        command: str, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings_ = write_sandbox_settings(tmp_path, {"salesforce": "http://127.0.0.1:9",
                                                      "twilio": twilio_sandbox.url}, webhooks_port=port)
        done = subprocess.run([sys.executable, "-m", "crmhub", command, "--config", str(settings_)],
                              capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"127.0.0.1:{port}" in line and f"webhooks.port in {settings_}" in line
    assert "in use" in line
