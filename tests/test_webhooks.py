"""The webhook receiver against the real emulators' signed webhooks, and junk that must never be a 500."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from crmhub.connectors._http import build_session
from crmhub.connectors.twilio import TwilioChannel
from crmhub.connectors.twilio_hooks import status_advances
from crmhub.model import Channel, Interaction, Malformed
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from crmhub.sandbox.x import DEFAULT_CONSUMER_SECRET
from crmhub.store import StateStore
from crmhub.store.ledger import IngestResult, open_dead_letters, to_interaction
from crmhub.store.schema import LedgerRow
from crmhub.sync.ingest import poll_stream
from crmhub.connectors.x_signing import signature as x_signature
from crmhub.webhooks import MAX_BODY, MessageStatuses, WebhookServer, ledger_ingest
from tests.webhook_apps import create_app

with warnings.catch_warnings():  # starlette's notice that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

OURS = "+14155550100"
TOKEN = DEFAULT_AUTH_TOKEN
SECRET = DEFAULT_CONSUMER_SECRET
MESSAGES, STATUS, CALLS = "/webhooks/twilio/messages", "/webhooks/twilio/status", "/webhooks/twilio/calls"
X = "/webhooks/x"
SID = "SM" + "0123456789abcdef" * 2
ACCOUNT = DEFAULT_ACCOUNT_SID


class Recorder:
    """An ingest callable that keeps what it was given, for tests without a store."""

    def __init__(self) -> None:
        self.interactions: list[Interaction] = []
        self.malformed: list[Malformed] = []

    def __call__(self, interactions: list[Interaction], malformed: list[Malformed]) -> IngestResult:
        self.interactions += interactions
        self.malformed += malformed
        return IngestResult(stored=len(interactions), repeats=0, dead_lettered=len(malformed))


def app_for(ingest: Any, **options: Any) -> FastAPI:
    settings_ = {"twilio_auth_token": TOKEN, "public_url": None, "x_consumer_secret": SECRET} | options
    return create_app(ingest, **settings_)


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    with WebhookServer(app) as server:
        yield server.url


def signed(params: dict[str, str], url: str, token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def ledger(store: StateStore) -> list[Interaction]:
    with store.transaction() as session:
        return [to_interaction(row) for row in session.scalars(select(LedgerRow).order_by(LedgerRow.id))]


def twilio_channel(server: EmulatorServer) -> TwilioChannel:
    return TwilioChannel(account_sid=ACCOUNT, auth_token=TOKEN, base_url=server.url)


def inbound(**changes: str) -> dict[str, str]:
    params = {"MessageSid": SID, "AccountSid": ACCOUNT, "From": "+14155550123", "To": OURS, "Body": "Hi",
              "NumMedia": "0", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
    return {k: v for k, v in (params | changes).items() if v != "<absent>"}


# ---- inbound messages, end to end --------------------------------------------------------------
def test_signed_inbound_messages_reach_the_ledger_once_even_when_polled_again(
        twilio_sandbox: EmulatorServer, store: StateStore) -> None:
    twilio: Any = twilio_sandbox.emulator
    app = app_for(ledger_ingest(store, lambda: datetime.now(UTC)))
    with serving(app) as url:
        twilio.add_number(OURS, sms_url=url + MESSAGES)
        sms = twilio.receive_message("+14155550123", OURS, "Where is my order?")
        whatsapp = twilio.receive_message("whatsapp:+14155550130", f"whatsapp:{OURS}", "",
                                          media_urls=["https://example.com/a.jpg"], profile_name="Ana")
        assert twilio.wait_for_webhooks(timeout=5)

    assert [hook["status"] for hook in twilio.webhook_log()] == [200, 200]
    hooked = {item.external_id: item for item in ledger(store)}
    assert set(hooked) == {sms, whatsapp}
    assert hooked[whatsapp].channel is Channel.WHATSAPP and len(hooked[whatsapp].media) == 1

    report = poll_stream(store, source="twilio", stream="messages", partition=ACCOUNT,
                         pages=twilio_channel(twilio_sandbox).message_pages, now=datetime.now(UTC))

    assert (report.stored, report.repeats) == (0, 2)
    assert len(ledger(store)) == 2
    polled = {i.external_id: i for page in twilio_channel(twilio_sandbox).message_pages(None)
              for i in page.interactions}
    for sid, item in polled.items():  # the same Interaction both ways; only the poller knows the send time
        assert replace(hooked[sid], occurred_at=item.occurred_at) == item


def test_a_forged_signature_is_refused_counted_and_not_stored(
        twilio_sandbox: EmulatorServer, store: StateStore) -> None:
    twilio: Any = twilio_sandbox.emulator
    other = twilio.add_account(auth_token="someone-elses-token")
    app = app_for(ledger_ingest(store, lambda: datetime.now(UTC)))
    with serving(app) as url:
        twilio.add_number(OURS, sms_url=url + MESSAGES, account_sid=other)  # signed, but not with our token
        twilio.receive_message("+14155550123", OURS, "hello")
        assert twilio.wait_for_webhooks(timeout=5)
        unsigned = requests.post(url + MESSAGES, data=inbound(), timeout=5)

    assert [hook["status"] for hook in twilio.webhook_log()] == [403]
    assert unsigned.status_code == 403
    assert app.state.rejected["twilio"] == 2
    assert ledger(store) == []


def test_signed_but_unusable_messages_are_dead_lettered_and_acknowledged(store: StateStore) -> None:
    app = app_for(ledger_ingest(store, lambda: datetime.now(UTC)))
    client = TestClient(app)
    url = "http://testserver" + MESSAGES
    no_sender = inbound(From="<absent>")
    nul = inbound(MessageSid="SM" + "f" * 32, Body="a\x00b")  # stored as the poll would store it, NUL replaced

    answers = [client.post(MESSAGES, data=params, headers=signed(params, url)) for params in (no_sender, nul)]

    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.text.endswith("<Response/>") and a.headers["content-type"].startswith("text/xml") for a in answers)
    with store.transaction() as session:
        letters = open_dead_letters(session)
    assert [(d.source, d.ref) for d in letters] == [("twilio", SID)]
    assert "no sender address" in letters[0].reason
    assert [(i.external_id, i.text) for i in ledger(store)] == [("SM" + "f" * 32, "a\ufffdb")]


def test_the_signature_covers_the_public_url_when_one_is_configured() -> None:
    recorder = Recorder()
    client = TestClient(app_for(recorder, public_url="https://hooks.example.com/"))
    params = inbound()

    public = client.post(MESSAGES + "?tenant=1", data=params,
                         headers=signed(params, "https://hooks.example.com" + MESSAGES + "?tenant=1"))
    local = client.post(MESSAGES + "?tenant=1", data=params,
                        headers=signed(params, "http://testserver" + MESSAGES + "?tenant=1"))

    assert (public.status_code, local.status_code) == (200, 403)
    assert [i.external_id for i in recorder.interactions] == [SID]


def test_a_host_header_that_breaks_url_parsing_is_a_403_not_a_500() -> None:
    client = TestClient(app_for(Recorder()))
    for host in ("testserver:port", "[::1", "exa mple"):
        answer = client.post(MESSAGES, data=inbound(), headers={"host": host, "X-Twilio-Signature": "x"})
        assert answer.status_code == 403


# ---- status callbacks ----------------------------------------------------------------------------
def test_status_callbacks_are_deduplicated_and_never_move_backwards(twilio_sandbox: EmulatorServer) -> None:
    twilio: Any = twilio_sandbox.emulator
    twilio.add_number(OURS)
    statuses = MessageStatuses(advances=status_advances)
    app = app_for(Recorder(), on_status=statuses)
    http = TwilioHttpClient()
    http.session = build_session(base_url=twilio_sandbox.url)
    sdk = Client(ACCOUNT, TOKEN, http_client=http)
    with serving(app) as url:
        sid = sdk.messages.create(to="+14155550123", from_=OURS, body="Your order shipped",
                                  status_callback=url + STATUS).sid
        assert twilio.wait_for_webhooks(timeout=5)
        callbacks = twilio.webhook_log()
        # Twilio may deliver late and twice: replay every signed callback as it was sent
        replays = [requests.post(hook["url"], data=hook["params"], timeout=5,
                                 headers={"X-Twilio-Signature": hook["signature"]}) for hook in callbacks]

    assert [hook["params"]["MessageStatus"] for hook in callbacks] == ["sending", "sent", "delivered"]
    assert [hook["status"] for hook in callbacks] == [200, 200, 200]
    assert [r.status_code for r in replays] == [200, 200, 200]
    assert statuses.get(sid) == "delivered"
    assert (app.state.counts[("twilio.status", "recorded")], app.state.counts[("twilio.status", "repeat")]) == (3, 3)


@pytest.mark.parametrize(("current", "new", "moves"), [
    (None, "sent", True), ("queued", "sending", True), ("sending", "delivered", True),
    ("delivered", "sent", False), ("delivered", "delivered", False), ("sent", "undelivered", True),
    ("failed", "delivered", False), ("undelivered", "sent", False), ("delivered", "failed", False),
    ("delivered", "read", True), ("sent", "bogus", False),
])
def test_status_order(current: str | None, new: str, moves: bool) -> None:
    assert status_advances(current, new) is moves


# ---- X ---------------------------------------------------------------------------------------------
def test_x_crc_and_signed_events_from_the_emulator(x_sandbox: EmulatorServer) -> None:
    x: Any = x_sandbox.emulator
    payloads: list[dict[str, Any]] = []
    app = app_for(Recorder(), on_x_event=payloads.append)
    with serving(app) as url:
        assert x.set_webhook(url + X, consumer_secret=SECRET) is True
        author = x.add_user("jane_doe")
        post = x.post_mention(author, "my order is late")
        assert x.wait_for_deliveries(timeout=5)
        assert x.set_webhook(url + X, consumer_secret="not-our-secret") is False

    assert [p["tweet_create_events"][0]["id_str"] for p in payloads] == [post]
    assert app.state.counts[("x.events", "accepted")] == 1


def test_x_events_with_a_bad_signature_are_refused_and_counted() -> None:
    payloads: list[dict[str, Any]] = []
    app = app_for(Recorder(), on_x_event=payloads.append)
    client = TestClient(app)
    body = json.dumps({"for_user_id": "1", "direct_message_events": []}).encode()

    forged = client.post(X, content=body, headers={"x-twitter-webhooks-signature": x_signature("guess", body)})
    missing = client.post(X, content=body)
    crc = client.get(X, params={"crc_token": "challenge-token_1"})

    assert (forged.status_code, missing.status_code) == (403, 403)
    assert app.state.rejected["x"] == 2 and payloads == []
    assert crc.json() == {"response_token": x_signature(SECRET, b"challenge-token_1")}


def test_unconfigured_sources_no_ops_routes_and_limits() -> None:
    client = TestClient(create_app(Recorder(), twilio_auth_token=None, public_url=None, x_consumer_secret=None))
    assert client.get("/healthz").status_code == 404  # served by the ops listener only
    assert client.get("/metrics").status_code == 404
    assert client.post(MESSAGES, data=inbound()).status_code == 404
    assert client.get(X, params={"crc_token": "a" * 32}).status_code == 404
    configured = TestClient(app_for(Recorder()))
    assert configured.post(MESSAGES, content=b"a" * (MAX_BODY + 1)).status_code == 413


# ---- junk never gets a 500 -----------------------------------------------------------------------
JUNK_APP = app_for(Recorder())
JUNK = TestClient(JUNK_APP)
ROUTES = [("POST", MESSAGES), ("POST", STATUS), ("POST", CALLS), ("POST", X), ("GET", X)]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
HEADERS = st.dictionaries(
    st.sampled_from(["content-type", "x-twilio-signature", "x-twitter-webhooks-signature", "host", "x-other"]),
    st.one_of(HEADER_VALUE, st.sampled_from(["application/x-www-form-urlencoded", "application/json"])),
    max_size=4)
FIELDS = st.sampled_from(["MessageSid", "SmsSid", "AccountSid", "From", "To", "Body", "NumMedia", "MessageStatus",
                          "CallSid", "CallStatus", "CallDuration", "Direction", "Timestamp", "RecordingUrl"])
VALUES = st.one_of(TEXT, st.sampled_from([SID, "CA" + "a" * 32, ACCOUNT, "+14155550123", "whatsapp:+14155550123",
                                          "completed", "delivered", "inbound", "3", "-1", "99999999999",
                                          "Mon, 05 Jan 2026 08:00:00 +0000", "Mon, 05 Jan 0001 00:00:00 +0000"]))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OK = {200, 400, 403, 404, 405, 413}


@FAST
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=2048), headers=HEADERS,
       query=st.dictionaries(TEXT, TEXT, max_size=3))
def test_arbitrary_requests_get_a_4xx_or_200_never_a_500(route: tuple[str, str], body: bytes,
                                                         headers: dict[str, str], query: dict[str, str]) -> None:
    method, path = route
    answer = JUNK.request(method, path, content=body, headers=headers, params=query)
    assert answer.status_code in OK


BASES = [(MESSAGES, inbound()), (MESSAGES, inbound(NumMedia="1", From="whatsapp:+14155550123", To=f"whatsapp:{OURS}")),
         (STATUS, {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": ACCOUNT}),
         (CALLS, {"CallSid": "CA" + "a" * 32, "CallStatus": "completed", "CallDuration": "7", "Direction": "inbound",
                  "From": "+14155550123", "To": OURS, "Timestamp": "Mon, 05 Jan 2026 08:00:00 +0000"})]
SIGNED_FORMS = st.one_of(  # anything at all, and Twilio's own forms with a few fields changed or dropped
    st.tuples(st.sampled_from([MESSAGES, STATUS, CALLS]),
              st.dictionaries(st.one_of(FIELDS, TEXT), VALUES, max_size=10)),
    st.builds(lambda base, changes, drop: (base[0], {k: v for k, v in (base[1] | changes).items() if k not in drop}),
              st.sampled_from(BASES), st.dictionaries(FIELDS, VALUES, max_size=3), st.sets(FIELDS, max_size=2)))


@FAST
@given(request=SIGNED_FORMS)
def test_any_signed_twilio_form_is_acknowledged(request: tuple[str, dict[str, str]]) -> None:
    path, form = request
    answer = JUNK.post(path, data=form, headers=signed(form, "http://testserver" + path))
    assert answer.status_code == 200


@FAST
@given(body=st.one_of(st.binary(max_size=1024), st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT, lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner)))))
def test_any_signed_x_body_is_acknowledged_or_refused_as_invalid(body: bytes) -> None:
    answer = JUNK.post(X, content=body, headers={"x-twitter-webhooks-signature": x_signature(SECRET, body)})
    assert answer.status_code in {200, 400}
