"""The Twilio emulator, driven through the official twilio SDK (9.x), unchanged.

The SDK is pointed at the sandbox only through its public knobs: an
`http_client=` whose `requests` session comes from `build_session`, or the
domain's `base_url`. Assertions look at what the SDK returns and at the
emulator's state; webhooks are caught by a tiny local HTTP server and
verified with the SDK's own `RequestValidator`.
"""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioEmulator
from tests.http_receiver import LocalServer, QuietHandler

OUR_SMS = "+14155550100"
OUR_WHATSAPP = "+14155550199"
CUSTOMER = "+14155550123"
OTHER_CUSTOMER = "+442079460018"
RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
BASE_DAY = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


# ---- helpers shared with test_twilio_faults.py ------------------------------
def sdk_client(url: str, username: str = DEFAULT_ACCOUNT_SID, password: str = DEFAULT_AUTH_TOKEN,
               account_sid: str | None = None) -> Client:
    """The SDK as crmhub builds it: a TwilioHttpClient whose session goes to the sandbox."""
    http = TwilioHttpClient()
    http.session = build_session(base_url=url)
    return Client(username, password, account_sid=account_sid, http_client=http)


@dataclass(frozen=True)
class Received:
    url: str
    params: dict[str, str]
    headers: dict[str, str]

    def signed_with(self, auth_token: str) -> bool:
        return bool(RequestValidator(auth_token).validate(self.url, self.params, self.headers["X-Twilio-Signature"]))


class Receiver:
    """A local HTTP server on port 0 that records each webhook POSTed to it.

    With `gate`, each POST is recorded at once but answered only when the gate opens.
    """

    def __init__(self, gate: threading.Event | None = None) -> None:
        inbox: queue.Queue[Received] = queue.Queue()
        self.inbox = inbox

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                url = f"http://{self.headers['Host']}{self.path}"  # the URL the sender signed
                inbox.put(Received(url, dict(parse_qsl(body, keep_blank_values=True)), dict(self.headers)))
                if gate is not None:
                    gate.wait(5)
                self.send_response(204)
                self.end_headers()

        self._gate = gate
        self._local = LocalServer(Handler)

    def url(self, path: str) -> str:
        return f"{self._local.base_url}{path}"

    def next(self) -> Received:
        """The next webhook; waits on the queue (not a sleep), failing after 5 s."""
        return self.inbox.get(timeout=5)

    def __enter__(self) -> Receiver:
        self._local.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if gate := self._gate:
            gate.set()
        self._local.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


@pytest.fixture
def emulator(twilio_sandbox: EmulatorServer) -> TwilioEmulator:
    em: TwilioEmulator = twilio_sandbox.emulator  # type: ignore[assignment]  # the twilio fixture
    em.add_number(OUR_SMS)
    em.add_number(OUR_WHATSAPP)
    return em


@pytest.fixture
def client(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> Client:
    return sdk_client(twilio_sandbox.url)


def send(client: Client, body: str = "Your refund is on its way", **kwargs: Any) -> Any:
    return client.messages.create(**({"to": CUSTOMER, "from_": OUR_SMS, "body": body} | kwargs))


# ---- messages: create -------------------------------------------------------
def test_sms_create_answers_queued_message_in_twilio_shape(client: Client, emulator: TwilioEmulator) -> None:
    message = send(client)
    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.status, message.direction, message.from_, message.to) == (
        "queued", "outbound-api", OUR_SMS, CUSTOMER)
    assert (message.num_segments, message.num_media, message.api_version) == ("1", "0", "2010-04-01")
    assert (message.account_sid, message.price, message.error_code, message.date_sent) == (
        DEFAULT_ACCOUNT_SID, None, None, None)
    assert message.uri == f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages/{message.sid}.json"
    assert message.subresource_uris["media"].endswith(f"/Messages/{message.sid}/Media.json")
    stored = emulator.state["messages"][message.sid]
    assert RFC2822.match(stored["date_created"])
    assert (stored["status"], stored["price"]) == ("delivered", "-0.00790")  # immediate transitions by default


def test_whatsapp_and_media_messages(client: Client, emulator: TwilioEmulator) -> None:
    emulator.receive_message(f"whatsapp:{CUSTOMER}", f"whatsapp:{OUR_WHATSAPP}", "Hola")  # opens the 24 h window
    whatsapp = send(client, to=f"whatsapp:{CUSTOMER}", from_=f"whatsapp:{OUR_WHATSAPP}", body="Hola")
    assert (whatsapp.to, whatsapp.from_) == (f"whatsapp:{CUSTOMER}", f"whatsapp:{OUR_WHATSAPP}")
    mms = send(client, body="", media_url=["https://example.com/a.png", "https://example.com/b.pdf"])
    assert re.fullmatch(r"MM[0-9a-f]{32}", mms.sid) and mms.num_media == "2"
    media = client.messages(mms.sid).media.list()
    assert sorted(m.content_type for m in media) == ["application/pdf", "image/png"]
    assert all(m.parent_sid == mms.sid and re.fullmatch(r"ME[0-9a-f]{32}", m.sid) for m in media)
    fetched = client.messages(mms.sid).media(media[0].sid).fetch()
    assert (fetched.sid, fetched.content_type) == (media[0].sid, media[0].content_type)


def test_segments_follow_gsm7_and_ucs2_limits(client: Client) -> None:
    assert send(client, body="a" * 160).num_segments == "1"
    assert send(client, body="a" * 161).num_segments == "2"
    assert send(client, body="é" * 71).num_segments == "1"  # é is in GSM-7
    assert send(client, body="ж" * 71).num_segments == "2"  # Cyrillic needs UCS-2: 70 a segment


def test_messaging_service_picks_sender_and_starts_accepted(client: Client, emulator: TwilioEmulator) -> None:
    service = emulator.add_messaging_service([OUR_SMS])
    message = client.messages.create(to=CUSTOMER, messaging_service_sid=service, body="hi")
    assert (message.status, message.from_, message.messaging_service_sid) == ("accepted", OUR_SMS, service)


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"to": ""}, 21604),
    ({"from_": None}, 21603),
    ({"body": None}, 21602),
    ({"body": "x" * 1601}, 21617),
    ({"to": "555-0123"}, 21211),
    ({"from_": "not a number"}, 21606),
    ({"from_": "+14155550777"}, 21659),
    ({"to": f"whatsapp:{CUSTOMER}", "from_": "whatsapp:+14155550777"}, 63007),
    ({"to": CUSTOMER, "from_": f"whatsapp:{OUR_WHATSAPP}"}, 21910),
    ({"from_": None, "messaging_service_sid": "MG" + "0" * 32}, 21705),
])
def test_create_validation_errors_are_400_with_twilio_codes(client: Client, kwargs: dict[str, Any], code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        send(client, **kwargs)
    assert (caught.value.status, caught.value.code, caught.value.method) == (400, code, "POST")


def test_error_body_is_exactly_twilios(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> None:
    response = requests.post(
        f"{twilio_sandbox.url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
        data={"To": "12", "From": OUR_SMS, "Body": "x"}, auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
    )
    assert response.json() == {"code": 21211, "message": "The 'To' number 12 is not a valid phone number.",
                               "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}
    assert re.fullmatch(r"RQ[0-9a-f]{32}", response.headers["Twilio-Request-Id"])


# ---- messages: read ---------------------------------------------------------
def test_fetch_and_404(client: Client) -> None:
    message = send(client)
    assert client.messages(message.sid).fetch().body == "Your refund is on its way"
    missing = "SM" + "f" * 32
    with pytest.raises(TwilioRestException) as caught:
        client.messages(missing).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
    assert f"/Messages/{missing}.json was not found" in caught.value.msg


def _seed_inbound(emulator: TwilioEmulator, count: int, sender: str = CUSTOMER) -> list[str]:
    """`count` inbound messages one hour apart from BASE_DAY; returns SIDs oldest first."""
    hours = [BASE_DAY + timedelta(hours=i) for i in range(count)]
    return [emulator.receive_message(sender, OUR_SMS, f"msg {i}", at=at) for i, at in enumerate(hours)]


def test_list_pages_through_list_stream_and_page(client: Client, emulator: TwilioEmulator) -> None:
    sids = _seed_inbound(emulator, 7)
    newest_first = sids[::-1]
    assert [m.sid for m in client.messages.list(page_size=3)] == newest_first
    assert emulator.calls["GET /2010-04-01/Accounts/<account_sid>/Messages.json"] == 3
    assert [m.sid for m in client.messages.stream(page_size=2, limit=5)] == newest_first[:5]
    first = client.messages.page(page_size=3)
    second = first.next_page()
    third = second.next_page()
    pages = [[m.sid for m in p] for p in (first, second, third)]
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert third.next_page() is None and first.previous_page() is None
    assert [m.sid for m in second.previous_page()] == newest_first[:3]
    meta = second._payload  # the raw page body: Twilio's paging fields
    assert (meta["page"], meta["page_size"], meta["start"], meta["end"]) == (1, 3, 3, 5)
    assert meta["first_page_uri"].endswith("Messages.json?PageSize=3&Page=0")
    assert meta["next_page_uri"].endswith(f"PageSize=3&Page=2&PageToken=PA{newest_first[5]}")


def test_new_messages_between_pages_are_neither_skipped_nor_repeated(client: Client, emulator: TwilioEmulator) -> None:
    sids = _seed_inbound(emulator, 4)
    first = client.messages.page(page_size=2)
    emulator.receive_message(CUSTOMER, OUR_SMS, "newest", at=BASE_DAY + timedelta(days=1))
    assert [m.sid for m in first.next_page()] == sids[1::-1]


def test_list_filters_by_to_from_and_date_sent(client: Client, emulator: TwilioEmulator) -> None:
    sids = _seed_inbound(emulator, 3)
    other = emulator.receive_message(OTHER_CUSTOMER, OUR_SMS, "hello", at=BASE_DAY + timedelta(days=2))
    reply = send(client, to=OTHER_CUSTOMER)
    assert [m.sid for m in client.messages.list(from_=OTHER_CUSTOMER)] == [other]
    assert [m.sid for m in client.messages.list(to=OTHER_CUSTOMER)] == [reply.sid]
    second = BASE_DAY + timedelta(hours=1)
    assert [m.sid for m in client.messages.list(date_sent=second)] == [sids[1]]
    assert [m.sid for m in client.messages.list(date_sent_before=second)] == sids[1::-1]
    between = client.messages.list(date_sent_after=second, date_sent_before=BASE_DAY + timedelta(days=1))
    assert [m.sid for m in between] == sids[:0:-1]
    assert {m.sid for m in client.messages.list(date_sent="2026-01-05")} == set(sids)  # a whole UTC day
    page = client.messages.page(from_=CUSTOMER, date_sent_after=BASE_DAY, page_size=1)
    assert "From=%2B14155550123&DateSent%3E=2026-01-05T08%3A00%3A00Z&PageSize=1" in page._payload["next_page_uri"]
    assert len(list(client.messages.stream(from_=CUSTOMER, date_sent_after=BASE_DAY, page_size=1))) == 3


def test_list_rejects_bad_parameters(client: Client) -> None:
    with pytest.raises(TwilioException) as caught:
        client.messages.list(date_sent="yesterday")
    response = caught.value.args[1]  # list/page errors: TwilioException("Unable to fetch page", response)
    assert (response.status_code, json.loads(response.text)["code"]) == (400, 20001)
    with pytest.raises(TwilioException):
        client.messages.list(page_size=1001)


# ---- status progression and webhooks ----------------------------------------
def test_manual_transitions_post_signed_status_callbacks(
    client: Client, emulator: TwilioEmulator, receiver: Receiver,
) -> None:
    emulator.set_transitions("manual")
    message = send(client, status_callback=receiver.url("/twilio/status?tenant=acme"))
    assert client.messages(message.sid).fetch().status == "queued"
    assert emulator.advance_message(message.sid) == "sending"
    assert emulator.advance_message(message.sid, "delivered") == "delivered"
    seen = [receiver.next() for _ in range(3)]
    assert [r.params["MessageStatus"] for r in seen] == ["sending", "sent", "delivered"]
    assert all(r.signed_with(DEFAULT_AUTH_TOKEN) and r.url.endswith("?tenant=acme") for r in seen)
    assert seen[-1].params == {
        "AccountSid": DEFAULT_ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": OUR_SMS, "To": CUSTOMER,
        "MessageSid": message.sid, "MessageStatus": "delivered", "SmsSid": message.sid, "SmsStatus": "delivered"}
    assert not seen[-1].signed_with("some-other-token")
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.price) == ("delivered", "-0.00790") and RFC2822.match(
        emulator.state["messages"][message.sid]["date_sent"])
    with pytest.raises(ValueError, match="cannot become sent"):
        emulator.advance_message(message.sid, "sent")  # a status never moves backwards


def test_reads_transitions_advance_one_step_every_n_reads(client: Client, emulator: TwilioEmulator) -> None:
    emulator.set_transitions("reads", reads=2)
    sid = send(client).sid
    statuses = [client.messages(sid).fetch().status for _ in range(6)]
    assert statuses == ["queued", "sending", "sending", "sent", "sent", "delivered"]


def test_undeliverable_number_ends_undelivered_with_error_code(
    client: Client, emulator: TwilioEmulator, receiver: Receiver,
) -> None:
    emulator.mark_undeliverable(CUSTOMER)
    message = send(client, status_callback=receiver.url("/status"))
    last = [receiver.next() for _ in range(3)][-1]
    assert (last.params["MessageStatus"], last.params["ErrorCode"]) == ("undelivered", "30003")
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code, fetched.error_message) == (
        "undelivered", 30003, "Unreachable destination handset")


def test_sms_stop_opts_the_customer_out_of_that_number_until_start(client: Client, emulator: TwilioEmulator) -> None:
    emulator.receive_message(CUSTOMER, OUR_SMS, " stop ")
    with pytest.raises(TwilioRestException) as refused:
        send(client)
    assert (refused.value.status, refused.value.code) == (400, 21610)
    assert "unsubscribed recipient" in refused.value.msg
    assert send(client, to=OTHER_CUSTOMER).status == "queued"  # only that customer opted out
    emulator.receive_message(CUSTOMER, OUR_SMS, "START")
    assert send(client).status == "queued"


def test_whatsapp_outside_the_24_hour_window_is_accepted_then_fails_63016(
    client: Client, emulator: TwilioEmulator, receiver: Receiver,
) -> None:
    whatsapp = {"to": f"whatsapp:{CUSTOMER}", "from_": f"whatsapp:{OUR_WHATSAPP}", "body": "Hola"}
    cold = send(client, status_callback=receiver.url("/status"), **whatsapp)
    assert cold.status == "queued"  # accepted: the window is checked on the way to WhatsApp
    last = [receiver.next() for _ in range(1)][-1]
    assert (last.params["MessageStatus"], last.params["ErrorCode"]) == ("failed", "63016")
    fetched = client.messages(cold.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("failed", 63016)
    assert fetched.error_message.startswith("Failed to send freeform message because you are outside the allowed window")
    emulator.receive_message(f"whatsapp:{CUSTOMER}", f"whatsapp:{OUR_WHATSAPP}", "¿Hola?")
    assert client.messages(send(client, **whatsapp).sid).fetch().status == "delivered"  # the customer wrote: open
    emulator.clock.advance(24 * 3600 + 1)
    assert client.messages(send(client, **whatsapp).sid).fetch().status == "failed"  # 24 h later: closed again


def test_manual_failure_and_unreachable_callback_is_logged_not_blocking(
    client: Client, emulator: TwilioEmulator,
) -> None:
    emulator.set_transitions("manual")
    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    message = send(client, status_callback=f"http://127.0.0.1:{closed}/closed")
    assert emulator.advance_message(message.sid, "failed") == "failed"
    assert emulator.wait_for_webhooks()
    (attempt,) = emulator.webhook_log()
    assert (attempt["kind"], attempt["sid"], attempt["status"]) == ("message-status", message.sid, None)
    assert attempt["params"]["ErrorCode"] == "30008" and "ConnectionError" in attempt["error"]


def test_inbound_sms_with_media_posts_signed_webhook(
    client: Client, emulator: TwilioEmulator, receiver: Receiver,
) -> None:
    emulator.add_number("+14155550142", sms_url=receiver.url("/twilio/sms"))
    sid = emulator.receive_message(CUSTOMER, "+14155550142", "photo of the damage",
                                   media_urls=["https://example.com/damage.jpg"])
    hook = receiver.next()
    assert hook.signed_with(DEFAULT_AUTH_TOKEN)
    assert {k: hook.params[k] for k in ("MessageSid", "SmsSid", "From", "To", "Body", "NumMedia", "SmsStatus")} == {
        "MessageSid": sid, "SmsSid": sid, "From": CUSTOMER, "To": "+14155550142", "Body": "photo of the damage",
        "NumMedia": "1", "SmsStatus": "received"}
    media = client.messages(sid).media.list()[0]
    assert hook.params["MediaUrl0"] == f"https://api.twilio.com{media.uri[:-5]}"
    assert (hook.params["MediaContentType0"], hook.params["FromCountry"]) == ("image/jpeg", "US")
    message = client.messages(sid).fetch()
    assert (message.direction, message.status, message.to) == ("inbound", "received", "+14155550142")


def test_inbound_whatsapp_carries_profile_name_and_wa_id(emulator: TwilioEmulator, receiver: Receiver) -> None:
    emulator.add_number("+14155550143", sms_url=receiver.url("/twilio/wa"))
    emulator.receive_message(f"whatsapp:{OTHER_CUSTOMER}", "whatsapp:+14155550143", "hi", profile_name="Jane")
    hook = receiver.next()
    assert (hook.params["ProfileName"], hook.params["WaId"], hook.params["To"]) == (
        "Jane", OTHER_CUSTOMER[1:], "whatsapp:+14155550143")
    assert "FromCity" not in hook.params and hook.signed_with(DEFAULT_AUTH_TOKEN)


def test_webhooks_are_signed_with_the_owning_accounts_token(twilio_sandbox: EmulatorServer, receiver: Receiver) -> None:
    em: TwilioEmulator = twilio_sandbox.emulator  # type: ignore[assignment]
    account = em.add_account(auth_token="second-account-token")
    em.add_number("+14155550150", sms_url=receiver.url("/sms"), account_sid=account)
    em.receive_message(CUSTOMER, "+14155550150", "hello")
    hook = receiver.next()
    assert hook.params["AccountSid"] == account and hook.signed_with("second-account-token")
    assert not hook.signed_with(DEFAULT_AUTH_TOKEN)


def test_a_full_webhook_queue_drops_and_logs_the_webhook_the_rest_go_out_in_order() -> None:
    gate = threading.Event()
    with Receiver(gate) as held:
        em = TwilioEmulator(webhook_queue=1)
        em.add_number(OUR_SMS, sms_url=held.url("/sms"))
        first = em.receive_message(CUSTOMER, OUR_SMS, "one")
        assert held.next().params["MessageSid"] == first  # in flight, held by the receiver
        second = em.receive_message(CUSTOMER, OUR_SMS, "two")  # fills the queue
        third = em.receive_message(CUSTOMER, OUR_SMS, "three")
        gate.set()
        assert em.wait_for_webhooks()
        assert held.next().params["MessageSid"] == second and held.inbox.empty()
    assert [(a["sid"], a["status"], a["error"]) for a in em.webhook_log()] == [
        (third, None, "dropped: webhook queue full"), (first, 204, None), (second, 204, None)]


def test_reset_forgets_queued_webhooks_and_waiting_covers_the_one_in_flight() -> None:
    gate = threading.Event()
    with Receiver(gate) as held:
        em = TwilioEmulator()
        em.add_number(OUR_SMS, sms_url=held.url("/sms"))
        first = em.receive_message(CUSTOMER, OUR_SMS, "one")
        assert held.next().params["MessageSid"] == first
        em.receive_message(CUSTOMER, OUR_SMS, "two")
        em.reset()
        assert not em.wait_for_webhooks(timeout=0.2)  # the held POST has not been answered yet
        gate.set()
        assert em.wait_for_webhooks()
        assert held.inbox.empty() and em.webhook_log() == []


# ---- numbers and account ----------------------------------------------------
def test_incoming_phone_numbers_list_filter_and_fetch(client: Client, emulator: TwilioEmulator) -> None:
    sid = emulator.add_number("+442079460018", sms_url="https://crmhub.example/sms",
                              voice_status_url="https://crmhub.example/voice")
    assert [n.phone_number for n in client.incoming_phone_numbers.list()] == [OUR_SMS, OUR_WHATSAPP, "+442079460018"]
    assert [n.sid for n in client.incoming_phone_numbers.list(phone_number="+44207946****")] == [sid]
    number = client.incoming_phone_numbers(sid).fetch()
    assert (number.sms_url, number.status_callback, number.capabilities["sms"]) == (
        "https://crmhub.example/sms", "https://crmhub.example/voice", True)
    assert client.incoming_phone_numbers.list(friendly_name="(415) 555-0100")[0].phone_number == OUR_SMS


def test_state_is_plain_json_and_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    state_file = tmp_path / "twilio.json"
    first = TwilioEmulator(state_file=state_file)
    first.add_number(OUR_SMS, sms_url=receiver.url("/sms"))
    sid = first.receive_message(CUSTOMER, OUR_SMS, "hi", media_urls=["https://example.com/x.png"])
    first.add_call(CUSTOMER, OUR_SMS, recording=True)
    receiver.next()
    assert first.wait_for_webhooks()
    assert json.loads(json.dumps(first.snapshot())) == first.snapshot()
    second = TwilioEmulator(state_file=state_file)
    assert second.snapshot()["messages"][sid]["body"] == "hi"
    assert second.backend.get_message(DEFAULT_ACCOUNT_SID, sid) is not None


def test_account_fetch(client: Client) -> None:
    account = client.api.accounts(DEFAULT_ACCOUNT_SID).fetch()
    assert (account.sid, account.status, account.auth_token) == (DEFAULT_ACCOUNT_SID, "active", DEFAULT_AUTH_TOKEN)


# ---- calls and recordings ---------------------------------------------------
def test_calls_list_filters_fetch_and_recordings(client: Client, emulator: TwilioEmulator) -> None:
    early = emulator.add_call(CUSTOMER, OUR_SMS, "inbound", "completed", 125, BASE_DAY, recording=True)
    busy = emulator.add_call(OUR_SMS, OTHER_CUSTOMER, "outbound-api", "busy", 0, BASE_DAY + timedelta(hours=2))
    late = emulator.add_call(OTHER_CUSTOMER, OUR_SMS, "inbound", "no-answer", 0, BASE_DAY + timedelta(days=1))
    assert [c.sid for c in client.calls.list(page_size=2)] == [late, busy, early]
    assert [c.sid for c in client.calls.list(to=OUR_SMS)] == [late, early]
    assert [c.sid for c in client.calls.list(from_=OUR_SMS, status="busy")] == [busy]
    assert [c.sid for c in client.calls.list(start_time_after=BASE_DAY + timedelta(hours=1))] == [late, busy]
    assert [c.sid for c in client.calls.list(start_time_before=BASE_DAY + timedelta(hours=2))] == [busy, early]
    assert [c.sid for c in client.calls.list(start_time="2026-01-05")] == [busy, early]
    assert [c.sid for c in client.calls.list(end_time_after=BASE_DAY)] == [early]  # only finished calls have one
    call = client.calls(early).fetch()
    assert (call.direction, call.status, call.duration, call.to_formatted) == (
        "inbound", "completed", "125", "(415) 555-0100")
    assert (call.start_time, call.end_time) == (BASE_DAY, BASE_DAY + timedelta(seconds=125))
    assert (call.price, client.calls(busy).fetch().duration) == ("-0.02550", None)
    (recording,) = client.calls(early).recordings.list()
    assert (recording.call_sid, recording.duration, recording.status) == (early, "125", "completed")
    assert [r.sid for r in client.recordings.list(call_sid=early)] == [recording.sid]
    assert client.recordings(recording.sid).fetch().media_url.endswith(f"/Recordings/{recording.sid}")
    assert client.calls(early).recordings(recording.sid).fetch().sid == recording.sid
    assert client.recordings.list(call_sid=busy) == []
    with pytest.raises(TwilioRestException) as caught:
        client.calls("CA" + "0" * 32).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_call_status_callback_is_signed_and_carries_recording(emulator: TwilioEmulator, receiver: Receiver) -> None:
    emulator.add_number("+14155550160", voice_status_url=receiver.url("/voice/status"))
    sid = emulator.add_call(CUSTOMER, "+14155550160", duration=42, recording=True)
    hook = receiver.next()
    assert hook.signed_with(DEFAULT_AUTH_TOKEN)
    assert {k: hook.params[k] for k in ("CallSid", "CallStatus", "CallDuration", "From", "To", "Direction")} == {
        "CallSid": sid, "CallStatus": "completed", "CallDuration": "42", "From": CUSTOMER, "To": "+14155550160",
        "Direction": "inbound"}
    recording = next(iter(emulator.state["recordings"].values()))
    assert hook.params["RecordingUrl"] == recording["media_url"]


# ---- auth -------------------------------------------------------------------
def test_wrong_credentials_get_401_authenticate(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> None:
    wrong = sdk_client(twilio_sandbox.url, password="wrong-token")
    with pytest.raises(TwilioRestException) as caught:
        send(wrong)
    assert (caught.value.status, caught.value.code, caught.value.msg) == (
        401, 20003, "Unable to create record: Authenticate")
    with pytest.raises(TwilioException) as listed:
        wrong.messages.list()
    assert listed.value.args[0] == "Unable to fetch page" and listed.value.args[1].status_code == 401
    assert emulator.state["messages"] == {}


def test_api_key_authenticates_for_its_own_account_only(
    twilio_sandbox: EmulatorServer, emulator: TwilioEmulator,
) -> None:
    key = emulator.add_api_key()
    keyed = sdk_client(twilio_sandbox.url, key, "sandbox-api-secret", account_sid=DEFAULT_ACCOUNT_SID)
    assert send(keyed).account_sid == DEFAULT_ACCOUNT_SID
    elsewhere = sdk_client(twilio_sandbox.url, key, "sandbox-api-secret", account_sid=emulator.add_account())
    with pytest.raises(TwilioRestException) as caught:
        send(elsewhere)
    assert caught.value.code == 20003


# ---- pointing, routes, control endpoints ------------------------------------
def test_domain_base_url_knob_also_works(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> None:
    client = Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)
    client.api.base_url = twilio_sandbox.url
    _seed_inbound(emulator, 3)
    assert len(client.messages.list(page_size=2)) == 3


def test_not_emulated_endpoint_names_method_and_path(twilio_sandbox: EmulatorServer, client: Client) -> None:
    sid = send(client).sid
    with pytest.raises(TwilioRestException) as caught:
        client.messages(sid).delete()
    assert caught.value.status == 501
    body = requests.get(f"{twilio_sandbox.url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Queues.json").json()
    assert (body["method"], body["path"]) == ("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Queues.json")


def test_routes_and_control_endpoints(twilio_sandbox: EmulatorServer, client: Client, emulator: TwilioEmulator) -> None:
    routes = requests.get(f"{twilio_sandbox.url}/_sandbox/routes").json()
    assert {"methods": ["POST"], "path": "/2010-04-01/Accounts/<account_sid>/Messages.json", "billable": True} in routes
    control = f"{twilio_sandbox.url}/_sandbox"
    assert requests.post(f"{control}/transitions", json={"mode": "manual"}).json() == {
        "transitions": {"mode": "manual", "reads": 1}}
    sid = send(client).sid
    assert requests.post(f"{control}/messages/{sid}/advance", json={"status": "sent"}).json() == {
        "sid": sid, "status": "sent"}
    inbound = requests.post(f"{control}/inbound", json={"from": CUSTOMER, "to": OUR_SMS, "body": "hi"}).json()["sid"]
    assert client.messages(inbound).fetch().direction == "inbound"
    assert requests.post(f"{control}/transitions", json={"mode": "sometimes"}).status_code == 400
