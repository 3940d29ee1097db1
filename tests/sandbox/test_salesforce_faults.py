"""Injected faults and limits, answered in Salesforce's shapes and seen through simple-salesforce."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USERNAME,
    SalesforceEmulator,
)
from tests.sandbox import test_salesforce_conformance as conformance

API = conformance.API
em, sf = conformance.em, conformance.sf  # the same fixtures as the conformance tests


def raw_get(server: EmulatorServer, em: SalesforceEmulator, path: str) -> requests.Response:
    """A plain GET with a fresh session, to look at status and headers directly."""
    return requests.get(f"{server.url}{API}/{path}", headers={"Authorization": f"Bearer {em.issue_token()}"}, timeout=5)


def test_rate_limit_fault_is_a_403_request_limit_exceeded_without_retry_after(
        sf: Salesforce, em: SalesforceEmulator, salesforce_sandbox: EmulatorServer) -> None:
    em.faults.add(Fault("rate_limit", path="/query/?$", times=1))
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.content == [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                                  "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    em.faults.add(Fault("rate_limit", times=1))
    refused = raw_get(salesforce_sandbox, em, "limits")
    assert refused.status_code == 403 and "Retry-After" not in refused.headers
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0  # recovered


@pytest.mark.parametrize(("status", "code"), [(500, "UNKNOWN_EXCEPTION"), (503, "SERVER_UNAVAILABLE")])
def test_server_error_fault(sf: Salesforce, em: SalesforceEmulator, status: int, code: str) -> None:
    em.faults.add(Fault("server_error", status=status, method="POST"))
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.Account.create({"Name": "Lost"})
    assert exc.value.status == status and exc.value.content[0]["errorCode"] == code
    assert em.records("Account") == []
    assert sf.Account.create({"Name": "Kept"})["success"] is True


def test_reset_fault_drops_the_connection_before_any_write(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.faults.add(Fault("reset", path="/composite/sobjects$"))
    with pytest.raises(requests.ConnectionError):
        sf.restful("composite/sobjects", method="POST",
                   json={"records": [{"attributes": {"type": "Account"}, "Name": "Lost"}]})
    assert em.records("Account") == []


def test_slow_fault_delays_the_answer(em: SalesforceEmulator, salesforce_sandbox: EmulatorServer) -> None:
    em.faults.add(Fault("slow", delay=0.05, path="/limits$"))
    answer = raw_get(salesforce_sandbox, em, "limits")
    assert answer.status_code == 200 and answer.elapsed.total_seconds() >= 0.05


def test_expire_token_fault_invalidates_direct_sessions(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.faults.add(Fault("expire_token"))
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert em.state["tokens"] == {}


def test_oauth_clients_log_in_again_after_token_expiry(salesforce_sandbox: EmulatorServer,
                                                       em: SalesforceEmulator) -> None:
    sf = Salesforce(username=INTEGRATION_USERNAME, password=INTEGRATION_PASSWORD, consumer_key=DEFAULT_CLIENT_ID,
                    consumer_secret=DEFAULT_CLIENT_SECRET, session=build_session(base_url=salesforce_sandbox.url))
    first_session = sf.session_id
    em.faults.add(Fault("expire_token"))
    assert sf.query("SELECT Id FROM Contact")["done"] is True  # the SDK re-logs in on INVALID_SESSION_ID
    assert sf.session_id != first_session and list(em.state["tokens"]) == [sf.session_id]


def test_idle_sessions_time_out_after_two_hours_of_sandbox_time(sf: Salesforce, em: SalesforceEmulator) -> None:
    sf.query("SELECT Id FROM Contact")
    em.clock.advance(3600)
    sf.query("SELECT Id FROM Contact")  # activity keeps the session alive
    em.clock.advance(2 * 3600 + 1)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")


def test_missing_or_unknown_token_is_invalid_session(salesforce_sandbox: EmulatorServer) -> None:
    for headers in ({}, {"Authorization": "Bearer 00Dnope!nope"}):
        answer = requests.get(f"{salesforce_sandbox.url}{API}/limits", headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_daily_limit_fault_refuses_with_total_requests_exceeded(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.faults.add(Fault("daily_limit", times=1))
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.limits()
    assert exc.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 14_999  # the refused call was not counted


def test_reaching_max_refuses_until_the_rolling_day_frees_calls(
        sf: Salesforce, em: SalesforceEmulator, salesforce_sandbox: EmulatorServer) -> None:
    em.set_api_limit(3)
    em.spend_api_calls(2)
    sf.query("SELECT Id FROM Contact")
    assert sf.api_usage["api-usage"] == (3, 3)
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Contact")
    assert exc.value.content[0]["message"] == "TotalRequests Limit exceeded."
    em.clock.advance(24 * 3600 + 60)  # the calls leave the rolling 24 hours (and the idle session times out)
    url = salesforce_sandbox.url
    later = Salesforce(instance_url=url, session_id=em.issue_token(), session=build_session(base_url=url))
    assert later.limits()["DailyApiRequests"] == {"Max": 3, "Remaining": 2}


def test_partial_failure_rejects_the_chosen_records(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.faults.add(Fault("partial_failure", reject=[1], path="/composite/sobjects$"))
    records = [{"attributes": {"type": "Contact"}, "LastName": name} for name in ("A", "B", "C")]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert [r["success"] for r in results] == [True, False, True]  # type: ignore[union-attr]
    assert results[1]["errors"][0]["statusCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"  # type: ignore[index]
    assert [c["LastName"] for c in em.records("Contact")] == ["A", "C"]
    em.faults.add(Fault("partial_failure", reject=[0]))
    rolled = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["errors"][0]["statusCode"] for r in rolled] == [  # type: ignore[union-attr]
        "FIELD_CUSTOM_VALIDATION_EXCEPTION", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "ALL_OR_NONE_OPERATION_ROLLED_BACK"]
    assert len(em.records("Contact")) == 2


def test_partial_failure_applies_to_collections_inside_composite(sf: Salesforce, em: SalesforceEmulator) -> None:
    a = em.insert("Contact", LastName="A")
    em.faults.add(Fault("partial_failure", reject=[0], path="/composite/sobjects$", method="PATCH"))
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [{
        "method": "PATCH", "url": f"{API}/composite/sobjects", "referenceId": "upd",
        "body": {"records": [{"attributes": {"type": "Contact"}, "id": a, "Email": "a@b.io"}]}}]})
    result = answer["compositeResponse"][0]["body"][0]  # type: ignore[index]
    assert (result["id"], result["success"]) == (a, False)
    assert em.record(a)["Email"] is None  # type: ignore[index]  # the record exists


def test_call_counter_counts_billable_calls_per_endpoint(salesforce_sandbox: EmulatorServer) -> None:
    sf = Salesforce(username=INTEGRATION_USERNAME, password=INTEGRATION_PASSWORD, consumer_key=DEFAULT_CLIENT_ID,
                    consumer_secret=DEFAULT_CLIENT_SECRET, session=build_session(base_url=salesforce_sandbox.url))
    contact = sf.Contact.create({"LastName": "Count"})["id"]
    sf.Contact.get(contact)
    sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "GET", "url": f"{API}/sobjects/Contact/{contact}", "referenceId": f"r{n}"} for n in range(5)]})
    calls = requests.get(f"{salesforce_sandbox.url}/_sandbox/calls", timeout=5).json()
    assert calls == {"total": 3, "by_endpoint": {f"POST {API}/sobjects/<sobject>": 1,
                                                 f"GET {API}/sobjects/<sobject>/<record_id>": 1,
                                                 f"POST {API}/composite": 1}}
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 15_000 - 4


def test_server_error_aimed_at_a_subrequest_fails_it_alone_inside_the_composite(sf: Salesforce,
                                                                                em: SalesforceEmulator) -> None:
    em.faults.add(Fault("server_error", status=500, path="/sobjects/Account$"))
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "POST", "url": f"{API}/sobjects/Account", "referenceId": "failing", "body": {"Name": "A"}},
        {"method": "POST", "url": f"{API}/sobjects/Contact", "referenceId": "fine", "body": {"LastName": "B"}},
    ]})
    results = answer["compositeResponse"]  # type: ignore[index]
    assert [(r["httpStatusCode"], r["body"][0]["errorCode"] if r["httpStatusCode"] >= 400 else None)
            for r in results] == [(500, "UNKNOWN_EXCEPTION"), (201, None)]
    assert em.records("Account") == [] and len(em.records("Contact")) == 1


def test_a_composite_whose_answer_is_lost_did_its_work(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.faults.add(Fault("reset", path="/composite$", after=True))
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.restful("composite", method="POST", json={"compositeRequest": [
            {"method": "POST", "url": f"{API}/sobjects/Account", "referenceId": "a", "body": {"Name": "A"}}]})
    assert [a["Name"] for a in em.records("Account")] == ["A"]
