"""Where the emulators follow the real services more closely (issue 15, item 4), over real HTTP.

Each case is what the vendor's public reference says (docs/sandbox/<vendor>.md):
Zendesk takes `description` as the first comment, its 429 resets when the wait
ends, Salesforce's token endpoint answers faults in the OAuth error shape, and
HubSpot's search index can lag behind writes.
"""

from __future__ import annotations

from typing import Any

import requests

from crmhub.sandbox import EmulatorServer, Fault, SandboxClock
from crmhub.sandbox.hubspot import HubSpotEmulator
from crmhub.sandbox.zendesk import ZendeskEmulator

ZENDESK_AUTH = ("agent@sandbox.zendesk.test/token", "sandbox-token")
HUBSPOT_AUTH = {"Authorization": "Bearer sandbox-token"}
TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "crmhub-sandbox", "client_secret": "sandbox-secret"}


def zendesk(server: EmulatorServer, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v2/{path}", json=body, auth=ZENDESK_AUTH, timeout=10)


def test_zendesk_takes_description_as_the_first_comment(zendesk_sandbox: EmulatorServer) -> None:
    emu = zendesk_sandbox.emulator
    assert isinstance(emu, ZendeskEmulator)
    made = zendesk(zendesk_sandbox, "POST", "tickets.json", {"ticket": {"subject": "Hi", "description": "It broke"}})
    assert made.status_code == 201, made.text
    ticket = made.json()["ticket"]
    assert ticket["description"] == "It broke"
    [comment] = emu.comments(ticket["id"])
    assert (comment["body"], comment["public"]) == ("It broke", True)
    both = zendesk(zendesk_sandbox, "POST", "tickets.json",
                   {"ticket": {"description": "ignored", "comment": {"body": "the comment wins"}}})
    assert both.json()["ticket"]["description"] == "the comment wins"
    neither = zendesk(zendesk_sandbox, "POST", "tickets.json", {"ticket": {"subject": "nothing to say"}})
    assert neither.status_code == 422 and "Description: cannot be blank" in neither.text


def test_zendesk_create_many_takes_description_too(zendesk_sandbox: EmulatorServer) -> None:
    emu = zendesk_sandbox.emulator
    assert isinstance(emu, ZendeskEmulator)
    job = zendesk(zendesk_sandbox, "POST", "tickets/create_many.json",
                  {"tickets": [{"subject": "a", "description": "first"}, {"subject": "b", "description": " "}]})
    assert job.status_code == 200, job.text
    emu.finish_jobs()
    status = zendesk(zendesk_sandbox, "GET", f"job_statuses/{job.json()['job_status']['id']}.json").json()
    results = status["job_status"]["results"]
    assert "id" in results[0] and results[1].get("error"), results  # a blank description is still blank
    [ticket] = emu.tickets()
    assert [c["body"] for c in emu.comments(ticket["id"])] == ["first"]


def test_zendesk_429_fault_resets_when_its_wait_ends(zendesk_sandbox: EmulatorServer) -> None:
    zendesk_sandbox.emulator.faults.add(Fault("rate_limit", path="/tickets", retry_after=7))
    answer = zendesk(zendesk_sandbox, "GET", "tickets.json")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == answer.headers["ratelimit-reset"] == "7"
    assert answer.headers["ratelimit-remaining"] == "0"
    calm = zendesk(zendesk_sandbox, "GET", "tickets.json")
    assert calm.status_code == 200 and int(calm.headers["ratelimit-reset"]) <= 60


def test_salesforce_token_endpoint_faults_answer_in_the_oauth_shape(salesforce_sandbox: EmulatorServer) -> None:
    url = f"{salesforce_sandbox.url}/services/oauth2/token"
    faults = salesforce_sandbox.emulator.faults
    faults.add(Fault("rate_limit", path="/services/oauth2/token"))
    faults.add(Fault("server_error", path="/services/oauth2/token", status=503))
    faults.add(Fault("server_error", path="/services/oauth2/token", status=500))
    answers = [requests.post(url, data=TOKEN_FORM, timeout=10) for _ in range(4)]
    assert [(a.status_code, a.json().get("error")) for a in answers[:3]] == [
        (400, "rate_limit_exceeded"), (503, "temporarily_unavailable"), (500, "server_error")]
    assert all(set(a.json()) == {"error", "error_description"} for a in answers[:3])
    assert answers[3].status_code == 200 and answers[3].json()["access_token"]
    faults.add(Fault("server_error", path="/services/data", status=503))  # the REST API keeps its own shape
    rest = requests.get(f"{salesforce_sandbox.url}/services/data/v59.0/limits",
                        headers={"Authorization": f"Bearer {answers[3].json()['access_token']}"}, timeout=10)
    assert rest.status_code == 503 and rest.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"


def _search(server: EmulatorServer, phone: str) -> list[dict[str, Any]]:
    body = {"filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": phone}]}]}
    answer = requests.post(f"{server.url}/crm/v3/objects/contacts/search", json=body, headers=HUBSPOT_AUTH,
                           timeout=10)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def test_hubspot_search_lags_behind_writes_when_told(hubspot_sandbox: EmulatorServer,
                                                     sandbox_clock: SandboxClock) -> None:
    emu = hubspot_sandbox.emulator
    assert isinstance(emu, HubSpotEmulator)
    emu.add("contacts", firstname="Now", phone="+14155550101")
    assert len(_search(hubspot_sandbox, "+14155550101")) == 1  # default: no lag, as tests always had
    answer = requests.post(f"{hubspot_sandbox.url}/_sandbox/search_lag", json={"seconds": 30}, timeout=10)
    assert answer.status_code == 201
    made = requests.post(f"{hubspot_sandbox.url}/crm/v3/objects/contacts", headers=HUBSPOT_AUTH, timeout=10,
                         json={"properties": {"firstname": "Later", "phone": "+14155550102"}})
    assert made.status_code == 201
    assert _search(hubspot_sandbox, "+14155550102") == []  # written, readable by id, not yet searchable
    got = requests.get(f"{hubspot_sandbox.url}/crm/v3/objects/contacts/{made.json()['id']}", headers=HUBSPOT_AUTH,
                       timeout=10)
    assert got.status_code == 200
    sandbox_clock.advance(31)
    assert [r["id"] for r in _search(hubspot_sandbox, "+14155550102")] == [made.json()["id"]]
