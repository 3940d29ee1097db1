"""Fault injection on the Twilio emulator, seen through the twilio SDK.

Twilio-shaped answers: 429 code 20429 with Retry-After, 5xx codes 20500 /
20503, a dropped connection, a slow answer, a rotated auth token (Twilio's
credentials do not expire), and `daily_limit` as a storm of 429s (Twilio has
no daily quota). Twilio has no batch endpoints, so `partial_failure` never
applies. Also the per-endpoint call counter.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioEmulator
from tests.sandbox.test_twilio_conformance import OUR_SMS, Receiver, sdk_client, send

MESSAGES = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
MESSAGES_RULE = "/2010-04-01/Accounts/<account_sid>/Messages.json"


@pytest.fixture
def emulator(twilio_sandbox: EmulatorServer) -> TwilioEmulator:
    em: TwilioEmulator = twilio_sandbox.emulator  # type: ignore[assignment]  # the twilio fixture
    em.add_number(OUR_SMS)
    return em


@pytest.fixture
def client(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> Client:
    return sdk_client(twilio_sandbox.url)


def raw_get(url: str) -> requests.Response:
    return requests.get(f"{url}{MESSAGES}", auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN))


def test_rate_limit_is_429_20429_with_retry_after_then_recovers(
    twilio_sandbox: EmulatorServer, client: Client, emulator: TwilioEmulator,
) -> None:
    emulator.faults.add(Fault("rate_limit", path="/Messages.json$", retry_after=2.5, times=2))
    with pytest.raises(TwilioRestException) as caught:
        send(client)
    assert (caught.value.status, caught.value.code, caught.value.msg) == (
        429, 20429, "Unable to create record: Too Many Requests")
    limited = raw_get(twilio_sandbox.url)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert limited.json()["more_info"] == "https://www.twilio.com/docs/errors/20429"
    assert limited.headers["Twilio-Request-Id"].startswith("RQ")
    assert send(client).status == "queued"
    assert len(emulator.state["messages"]) == 1


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20503)])
def test_server_errors_carry_twilio_codes(client: Client, emulator: TwilioEmulator, status: int, code: int) -> None:
    emulator.faults.add(Fault("server_error", status=status))
    with pytest.raises(TwilioRestException) as caught:
        send(client)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert emulator.state["messages"] == {}


def test_reset_drops_the_connection_before_anything_is_stored(client: Client, emulator: TwilioEmulator) -> None:
    emulator.faults.add(Fault("reset", method="POST"))
    with pytest.raises(requests.ConnectionError):
        send(client)
    assert emulator.state["messages"] == {}
    assert send(client).status == "queued"


def test_slow_answer_times_out_a_short_client_timeout(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> None:
    emulator.faults.add(Fault("slow", delay=0.2))
    http = TwilioHttpClient(timeout=0.05)
    http.session = build_session(base_url=twilio_sandbox.url)
    with pytest.raises(requests.Timeout):
        # a read: the abandoned request still finishes on the server, and must change nothing then
        Client(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, http_client=http).messages.list()
    emulator.faults.add(Fault("slow", delay=0.05))
    slow = raw_get(twilio_sandbox.url)
    assert slow.status_code == 200 and float(slow.headers["Twilio-Request-Duration"]) >= 0.05


def test_expire_token_rotates_auth_token_and_signing_key(
    twilio_sandbox: EmulatorServer, client: Client, emulator: TwilioEmulator,
) -> None:
    emulator.faults.add(Fault("expire_token"))
    with pytest.raises(TwilioRestException) as caught:
        send(client)
    assert (caught.value.status, caught.value.code) == (401, 20003)
    rotated = emulator.auth_token()
    assert rotated != DEFAULT_AUTH_TOKEN
    fresh = sdk_client(twilio_sandbox.url, password=rotated)
    with Receiver() as receiver:
        send(fresh, status_callback=receiver.url("/status"))
        hook = receiver.next()
    assert hook.signed_with(rotated) and not hook.signed_with(DEFAULT_AUTH_TOKEN)


def test_daily_limit_is_a_storm_of_429s_until_sandbox_time_passes(client: Client, emulator: TwilioEmulator) -> None:
    sid = send(client).sid
    emulator.faults.add(Fault("daily_limit", times=None, until=emulator.clock.time() + 3600, retry_after=60))
    attempts: list[Callable[[], object]] = [lambda: send(client), lambda: client.messages(sid).fetch()]
    for call in attempts:
        with pytest.raises(TwilioRestException) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (429, 20429)
    with pytest.raises(TwilioException) as listed:
        client.messages.list()
    assert listed.value.args[1].status_code == 429 and listed.value.args[1].headers["Retry-After"] == "60"
    emulator.clock.advance(3601)
    assert client.messages(sid).fetch().sid == sid


def test_partial_failure_never_applies_to_twilio(client: Client, emulator: TwilioEmulator) -> None:
    fault = emulator.faults.add(Fault("partial_failure", reject=[0], times=None))
    send(client)
    client.messages.list()
    assert fault.hits == 0 and len(emulator.state["messages"]) == 1


def test_call_counter_counts_every_request_per_endpoint(
    twilio_sandbox: EmulatorServer, client: Client, emulator: TwilioEmulator,
) -> None:
    emulator.faults.add(Fault("rate_limit", path="/Calls.json$"))
    sids = [send(client).sid for _ in range(3)]
    assert len(client.messages.list(page_size=2)) == 3
    client.messages(sids[0]).fetch()
    with pytest.raises(TwilioException):
        client.calls.list()
    assert dict(emulator.calls) == {
        f"POST {MESSAGES_RULE}": 3, f"GET {MESSAGES_RULE}": 2,
        "GET /2010-04-01/Accounts/<account_sid>/Messages/<sid>.json": 1,
        "GET /2010-04-01/Accounts/<account_sid>/Calls.json": 1,
    }
    assert requests.get(f"{twilio_sandbox.url}/_sandbox/calls").json()["total"] == 7
