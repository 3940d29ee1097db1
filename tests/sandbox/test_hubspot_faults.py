"""HubSpot emulator faults and limits, as hubspot-api-client 12 sees them.

Covers the injected faults (429, 5xx, reset, slow, token expiry, daily limit,
partial batch failure) and the allowances the emulator enforces by itself
(10-second window, search per second, daily), with HubSpot's headers and
bodies. Sandbox time is moved with the shared clock, never slept through.
"""

from __future__ import annotations

import time

import pytest
import urllib3
from hubspot import HubSpot
from hubspot.crm import contacts as hs_contacts
from hubspot.crm import objects as hs_objects
from urllib3.util.retry import Retry

from crmhub.sandbox import EmulatorServer, Fault, SandboxClock
from crmhub.sandbox.hubspot import HubSpotEmulator
from tests.sandbox.test_hubspot_conformance import emulator_of, error_body, make_client

SEARCH = hs_contacts.PublicObjectSearchRequest(limit=1)


@pytest.fixture
def emu(hubspot_sandbox: EmulatorServer) -> HubSpotEmulator:
    return emulator_of(hubspot_sandbox)


@pytest.fixture
def client(hubspot_sandbox: EmulatorServer) -> HubSpot:
    """The SDK as crmhub configures it: urllib3's own retries off (crmhub retries in one layer)."""
    return make_client(hubspot_sandbox.url, retry=Retry(total=0))


def _list(client: HubSpot) -> object:
    return client.crm.contacts.basic_api.get_page(limit=1)


# ---- 429s --------------------------------------------------------------------------
def test_rate_limit_fault_is_hubspots_ten_second_429(client: HubSpot, emu: HubSpotEmulator) -> None:
    emu.faults.add(Fault("rate_limit", path="/crm/v3/objects/contacts", retry_after=2.5))
    with pytest.raises(hs_contacts.ApiException) as exc:
        _list(client)
    body = error_body(exc)
    assert exc.value.status == 429
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "TEN_SECONDLY_ROLLING")
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert exc.value.headers["Retry-After"] == "3"
    assert exc.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert exc.value.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert _list(client) is not None


def test_sdk_default_retries_hide_a_429_with_retry_after(hubspot_sandbox: EmulatorServer,
                                                         emu: HubSpotEmulator) -> None:
    """Left at its default, urllib3 sleeps Retry-After and repeats a GET: a second retry layer."""
    emu.faults.add(Fault("rate_limit", retry_after=0))
    assert _list(make_client(hubspot_sandbox.url)) is not None
    assert emu.total_calls == 2


def test_ten_second_window_is_enforced_and_rolls(client: HubSpot, emu: HubSpotEmulator,
                                                 sandbox_clock: SandboxClock) -> None:
    emu.set_limits(ten_second_max=3)
    remaining = [client.api_request({"path": "/crm/v3/objects/contacts"}).headers["X-HubSpot-RateLimit-Remaining"]
                 for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(hs_contacts.ApiException) as exc:
        _list(client)
    assert (exc.value.status, error_body(exc)["policyName"]) == (429, "TEN_SECONDLY_ROLLING")
    assert "Retry-After" not in exc.value.headers  # HubSpot's own 429s carry no Retry-After
    sandbox_clock.advance(10.5)
    assert _list(client) is not None


def test_search_has_its_own_per_second_limit(client: HubSpot, sandbox_clock: SandboxClock) -> None:
    for _ in range(5):
        client.crm.contacts.search_api.do_search(SEARCH)
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.search_api.do_search(SEARCH)
    assert (exc.value.status, error_body(exc)["policyName"]) == (429, "SECONDLY")
    assert _list(client) is not None  # other endpoints are not limited by it
    sandbox_clock.advance(1.1)
    assert client.crm.contacts.search_api.do_search(SEARCH).total == 0


def test_daily_allowance_runs_out_and_comes_back_next_day(client: HubSpot, emu: HubSpotEmulator,
                                                          sandbox_clock: SandboxClock) -> None:
    emu.set_limits(daily_max=2)
    first = client.api_request({"path": "/crm/v3/objects/contacts"})
    assert (first.headers["X-HubSpot-RateLimit-Daily"], first.headers["X-HubSpot-RateLimit-Daily-Remaining"]) == \
        ("2", "1")
    _list(client)
    with pytest.raises(hs_contacts.ApiException) as exc:
        _list(client)
    assert error_body(exc)["policyName"] == "DAILY" and exc.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    sandbox_clock.advance(86_400)
    assert _list(client) is not None


def test_daily_limit_fault(client: HubSpot, emu: HubSpotEmulator) -> None:
    emu.faults.add(Fault("daily_limit", times=2))
    for _ in range(2):
        with pytest.raises(hs_contacts.ApiException) as exc:
            _list(client)
        assert error_body(exc)["message"] == "You have reached your daily limit."
        assert exc.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert _list(client) is not None


# ---- 5xx, reset, slow ----------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_fault(client: HubSpot, emu: HubSpotEmulator, status: int) -> None:
    emu.faults.add(Fault("server_error", status=status))
    with pytest.raises(hs_contacts.ApiException) as exc:
        _list(client)
    assert exc.value.status == status and error_body(exc)["status"] == "error"
    assert _list(client) is not None


def test_reset_drops_the_connection_and_writes_nothing(client: HubSpot, emu: HubSpotEmulator) -> None:
    emu.faults.add(Fault("reset", method="POST"))
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.crm.contacts.basic_api.create(hs_contacts.SimplePublicObjectInputForCreate(
            properties={"email": "r@example.com"}))
    assert emu.objects("contacts") == []


def test_sdk_default_retries_hide_a_reset_get_unless_turned_off(hubspot_sandbox: EmulatorServer,
                                                                emu: HubSpotEmulator) -> None:
    """urllib3's default Retry(3) silently repeats idempotent calls: crmhub passes retry=Retry(0)."""
    emu.faults.add(Fault("reset", method="GET"))
    assert _list(make_client(hubspot_sandbox.url)) is not None
    assert emu.total_calls == 2
    emu.faults.add(Fault("reset", method="GET"))
    with pytest.raises(urllib3.exceptions.HTTPError):
        _list(make_client(hubspot_sandbox.url, retry=Retry(total=0)))


def test_slow_answers(client: HubSpot, emu: HubSpotEmulator) -> None:
    emu.faults.add(Fault("slow", delay=0.05))
    started = time.monotonic()
    assert _list(client) is not None
    assert time.monotonic() - started >= 0.05
    emu.faults.add(Fault("slow", delay=0.6))
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.crm.contacts.basic_api.get_page(limit=1, _request_timeout=0.1)


# ---- tokens --------------------------------------------------------------------------
def test_expired_token_is_401_until_a_new_token_is_used(client: HubSpot, emu: HubSpotEmulator,
                                                        hubspot_sandbox: EmulatorServer) -> None:
    emu.faults.add(Fault("expire_token"))
    for _ in range(2):
        with pytest.raises(hs_contacts.ApiException) as exc:
            _list(client)
        assert (exc.value.status, error_body(exc)["category"]) == (401, "EXPIRED_AUTHENTICATION")
    emu.add_token("pat-rotated")
    assert _list(make_client(hubspot_sandbox.url, token="pat-rotated")) is not None


# ---- partial batch failure -----------------------------------------------------------
def test_partial_failure_on_batch_create(client: HubSpot, emu: HubSpotEmulator) -> None:
    emu.faults.add(Fault("partial_failure", path="batch/create", reject=[1, 2]))
    answer = client.crm.contacts.batch_api.create(hs_contacts.BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[{"properties": {"email": f"pf{i}@example.com"}} for i in range(3)]
        + [{"properties": {"email": "traced@example.com"}, "objectWriteTraceId": "trace-3"}]))
    assert [r.properties["email"] for r in answer.results] == ["pf0@example.com", "traced@example.com"]
    assert answer.num_errors == 2
    assert [e.context for e in answer.errors] == [{"inputIndex": ["1"]}, {"inputIndex": ["2"]}]
    assert sorted(r["properties"]["email"] for r in emu.objects("contacts")) == ["pf0@example.com",
                                                                                  "traced@example.com"]


def test_partial_failure_on_batch_update_names_the_ids(client: HubSpot, emu: HubSpotEmulator) -> None:
    ids = [emu.add("notes", hs_note_body=f"n{i}") for i in range(3)]
    emu.faults.add(Fault("partial_failure", reject=[0]))
    answer = client.crm.objects.notes.batch_api.update(hs_objects.BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": i, "properties": {"hs_note_body": "edited"}} for i in ids]))
    assert [e.context for e in answer.errors] == [{"ids": [ids[0]]}]
    assert [r["properties"]["hs_note_body"] for r in emu.objects("notes")] == ["n0", "edited", "edited"]
    client.crm.objects.notes.batch_api.update({"inputs": [{"id": ids[0], "properties": {"hs_note_body": "x"}}]})
    assert emu.objects("notes")[0]["properties"]["hs_note_body"] == "x"  # the fault was for one call only
