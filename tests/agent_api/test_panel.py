"""What an agent's panel does through the API: find the customer behind their CRM record, read the timeline on
every channel, confirm an identity suggestion, and send a reply that reaches the channel once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from crmhub.sandbox import Fault
from crmhub.store.schema import LinkSuggestionRow
from tests.agent_api.conftest import CUSTOMER, OURS, STRANGER, Panel
from tests.crm_views import zendesk_messages


def _sent(panel: Panel) -> list[dict[str, Any]]:
    messages = [m for m in panel.tw.snapshot()["messages"].values() if m["direction"] == "outbound-api"]
    return sorted(messages, key=lambda m: m["_seq"])


def test_every_crm_record_leads_to_the_customer_and_their_timeline_newest_first_in_pages(panel: Panel) -> None:
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?", at=datetime.now(UTC) - timedelta(minutes=2))
    panel.tw.receive_message(CUSTOMER, OURS, "Order 777, by the way", at=datetime.now(UTC) - timedelta(minutes=1))
    panel.hub.sync_once()
    [ticket] = panel.zd.tickets()
    [case] = panel.sf.records("Case")
    [contact] = panel.hs.objects("contacts")
    found = {panel.client.get(f"/agent/api/v1/records/{crm}/{record}", headers=panel.ops()).json()["id"]
             for crm, record in (("zendesk", ticket["id"]), ("salesforce", case["Id"]), ("hubspot", contact["id"]))}
    assert len(found) == 1
    [person] = found
    shown = panel.client.get(f"/agent/api/v1/persons/{person}", headers=panel.session()).json()
    assert {"kind": "phone", "value": CUSTOMER} in [{k: i[k] for k in ("kind", "value")} for i in shown["identities"]]
    assert {r["crm"] for r in shown["records"]} == {"salesforce", "zendesk", "hubspot"}
    assert {(c["crm"], c["open"]) for c in shown["conversations"]} == {
        ("salesforce", True), ("zendesk", True), ("hubspot", True)}

    first = panel.client.get(f"/agent/api/v1/persons/{person}/timeline?limit=1", headers=panel.ops()).json()
    assert [(i["text"], i["direction"], i["status"]) for i in first["items"]] == [
        ("Order 777, by the way", "inbound", "received")]
    second = panel.client.get(f"/agent/api/v1/persons/{person}/timeline?limit=1&before={first['next']}",
                              headers=panel.ops()).json()
    assert [i["text"] for i in second["items"]] == ["Where is my parcel?"] and second["next"] is None
    assert panel.client.get(f"/agent/api/v1/persons/{person}/timeline?before=bm90LWEtY3Vyc29y",
                            headers=panel.ops()).status_code == 422
    unknown = panel.client.get("/agent/api/v1/records/zendesk/999999", headers=panel.ops())
    assert unknown.status_code == 404 and "no customer" in unknown.json()["detail"]


def test_an_agent_confirms_a_suggestion_from_the_panel_and_it_is_recorded_as_theirs(panel: Panel) -> None:
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?", at=datetime.now(UTC) - timedelta(minutes=2))
    panel.tw.receive_message(STRANGER, OURS, "hi, I'm +1 415 555 0123 on my other phone",
                             at=datetime.now(UTC) - timedelta(minutes=1))
    panel.hub.sync_once()
    [ticket] = [t for t in panel.zd.tickets() if t["requester_id"] != 0][-1:]
    person = panel.client.get(f"/agent/api/v1/records/zendesk/{ticket['id']}", headers=panel.ops()).json()["id"]
    zendesk = panel.session("zendesk")
    pending = panel.client.get(f"/agent/api/v1/persons/{person}/suggestions", headers=zendesk).json()["suggestions"]
    assert pending, "a claim should be suggested"
    suggestion = pending[0]["id"]
    done = panel.client.post(f"/agent/api/v1/suggestions/{suggestion}/confirm", headers=zendesk)
    assert done.status_code == 200 and "confirmed" in done.json()["result"]
    again = panel.client.post(f"/agent/api/v1/suggestions/{suggestion}/confirm", headers=zendesk)
    assert again.status_code == 409 and "confirmed already" in again.json()["detail"]
    with panel.hub.store.transaction() as session:
        row = session.scalar(select(LinkSuggestionRow).where(LinkSuggestionRow.id == suggestion))
        assert row is not None and (row.status, row.decided_by) == ("confirmed", "agent 361 in zendesk")
    assert panel.client.get(f"/agent/api/v1/persons/{person}/suggestions",
                            headers=zendesk).json()["suggestions"] == []


def test_a_reply_from_the_panel_reaches_the_customer_once_even_when_the_answer_is_lost(panel: Panel) -> None:
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?")
    panel.hub.sync_once()
    [ticket] = panel.zd.tickets()
    shown = panel.client.get(f"/agent/api/v1/records/zendesk/{ticket['id']}", headers=panel.ops()).json()
    person, [conversation] = shown["id"], {c["key"] for c in shown["conversations"]}
    zendesk = panel.session("zendesk")
    body = {"conversation": conversation, "text": "It leaves the warehouse today."}
    key = {"Idempotency-Key": "reply-0001-abcdef"}
    queued = panel.client.post(f"/agent/api/v1/persons/{person}/replies", json=body, headers={**zendesk, **key})
    assert queued.status_code == 202 and queued.json()["channel"] == "sms"
    repeat = panel.client.post(f"/agent/api/v1/persons/{person}/replies", json=body, headers={**zendesk, **key})
    assert repeat.status_code == 202 and repeat.json()["id"] == queued.json()["id"]
    misuse = panel.client.post(f"/agent/api/v1/persons/{person}/replies", json={**body, "text": "other"},
                               headers={**zendesk, **key})
    assert misuse.status_code == 409
    elsewhere = panel.client.post(f"/agent/api/v1/persons/{person}/replies",
                                  json={**body, "conversation": "sms:+1:+2"},
                                  headers={**zendesk, "Idempotency-Key": "reply-0002-abcdef"})
    assert elsewhere.status_code == 404

    # Twilio takes the message but the answer is lost: the next try finds it instead of texting twice.
    panel.tw.faults.add(Fault("reset", method="POST", path=r"/Messages\.json", after=True))
    panel.hub.sync_once()
    panel.hub.sync_once()
    panel.hub.sync_once()
    assert [f["hits"] for f in panel.tw.faults.list()] == [1]
    [sent] = _sent(panel)
    assert (sent["from"], sent["to"], sent["body"]) == (OURS, CUSTOMER, "It leaves the warehouse today.")

    # The reply was written outside the CRMs, so every CRM's history gets it, the agent's Zendesk included, once.
    bodies = [text for c in panel.zd.comments(ticket["id"]) for text, _ in zendesk_messages(c)]
    assert bodies.count("It leaves the warehouse today.") == 1
    assert sum("It leaves the warehouse today." in (t.get("Description") or "") for t in panel.sf.records("Task")) == 1
    timeline = panel.client.get(f"/agent/api/v1/persons/{person}/timeline", headers=zendesk).json()["items"]
    [out] = [i for i in timeline if i["direction"] == "outbound"]
    assert (out["kind"], out["text"], out["status"]) == ("message", "It leaves the warehouse today.", "delivered")
    assert out["author"] == "agent 361 in zendesk"


def test_a_hubspot_card_replies_with_its_key_in_the_body_once_and_a_reply_without_a_key_is_refused(
        panel: Panel) -> None:
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?")
    panel.hub.sync_once()
    [contact] = panel.hs.objects("contacts")
    lookup = f"/agent/api/v1/records/hubspot/{contact['id']}?userId=77&userEmail=alice%40acme.test&portalId=123"
    shown = panel.client.get(lookup, headers=panel.hubspot_headers("GET", lookup))
    assert shown.status_code == 200, shown.text
    person, conversation = shown.json()["id"], shown.json()["conversations"][0]["key"]
    path = f"/agent/api/v1/persons/{person}/replies?userId=77&userEmail=alice%40acme.test&portalId=123"
    for attempt in range(2):  # HubSpot retries a request once on a 5xx: the key in the body keeps it one reply
        body = json.dumps({"conversation": conversation, "text": "On its way.",
                           "idempotency_key": "card-7f1c2a9e"}).encode()
        answer = panel.client.post(path, content=body, headers={**panel.hubspot_headers("POST", path, body),
                                                                "Content-Type": "application/json"})
        assert answer.status_code == 202, (attempt, answer.text)
    keyless = json.dumps({"conversation": conversation, "text": "again"}).encode()
    refused = panel.client.post(path, content=keyless, headers={**panel.hubspot_headers("POST", path, keyless),
                                                                "Content-Type": "application/json"})
    assert refused.status_code == 422 and "Idempotency-Key" in refused.text
    panel.hub.sync_once()
    assert [m["body"] for m in _sent(panel)] == ["On its way."]
    [row] = [r for r in panel.client.get(f"/agent/api/v1/persons/{person}/timeline", headers=panel.ops()).json()[
        "items"] if r["direction"] == "outbound"]
    assert row["author"] == "agent 77 in hubspot (alice@acme.test)"
