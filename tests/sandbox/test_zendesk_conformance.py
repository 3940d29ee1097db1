"""The Zendesk emulator driven through zenpy 2.0.57, endpoint by endpoint.

Each test asserts on what zenpy returns and on what the emulator now holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Identity, Ticket, User
from zenpy.lib.exception import APIException, RecordNotFoundException, TooManyValuesException

from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.zendesk import ZendeskEmulator
from tests.sandbox.test_zendesk_clients import AGENT, TOKEN, Kit, api_url, make_zenpy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def kit(zendesk_sandbox: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kit]:
    with Kit(zendesk_sandbox, monkeypatch) as kit:
        yield kit


def poll(zd: Zenpy, job_id: str, limit: int = 5) -> Any:
    """Read a job status until it completes (each read moves it one step)."""
    for _ in range(limit):
        job = zd.job_status(id=job_id)
        if job.status == "completed":
            return job
    raise AssertionError(f"job {job_id} still {job.status} after {limit} reads")


def error_body(exc: APIException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(str(exc))
    return body


# ---- users and identities -------------------------------------------------------

def test_me_is_the_default_admin_and_the_account_has_the_default_group(kit: Kit) -> None:
    me = kit.zd.users.me()
    assert (me.email, me.role) == ("agent@sandbox.zendesk.test", "admin")
    assert [g.name for g in kit.zd.groups()] == ["Support"]


def test_create_user_stores_primary_identities_and_show_returns_it(kit: Kit) -> None:
    user = kit.zd.users.create(User(name="Ann Lee", email="Ann@Example.test", phone="+15550100", external_id="crm-1"))
    assert (user.email, user.phone, user.role, user.external_id) == ("ann@example.test", "+15550100",
                                                                     "end-user", "crm-1")
    assert user.created_at.endswith("Z") and len(user.created_at) == 20
    shown = kit.zd.users(id=user.id)
    assert (shown.name, shown.tags, shown.user_fields) == ("Ann Lee", [], {})
    identities = {(i.type, i.value, i.primary) for i in kit.zd.users.identities(id=user.id)}
    assert identities == {("email", "ann@example.test", True), ("phone_number", "+15550100", True)}
    stored = [u for u in kit.emu.users() if u["id"] == user.id]
    assert stored[0]["name"] == "Ann Lee"


def test_show_many_users_by_ids(kit: Kit) -> None:
    ids = [kit.emu.add_user(f"U{i}", f"u{i}@example.test") for i in range(3)]
    assert sorted(u.id for u in kit.zd.users(ids=ids[:2])) == ids[:2]


def test_user_search_by_email_phone_and_external_id(kit: Kit) -> None:
    user_id = kit.emu.add_user("Bo", "bo@example.test", phone="+1 (555) 010-0200", external_id="x-9")
    kit.emu.add_user("Other", "other@example.test")
    assert [u.id for u in kit.zd.users.search(query="email:bo@example.test")] == [user_id]
    assert [u.id for u in kit.zd.users.search(query="phone:+15550100200")] == [user_id]
    assert [u.id for u in kit.zd.users.search(external_id="x-9")] == [user_id]
    assert list(kit.zd.users.search(query="email:nobody@example.test")) == []


def test_create_or_update_creates_then_updates_by_email_or_external_id(kit: Kit) -> None:
    body = {"user": {"name": "Cy", "email": "cy@example.test"}}
    first = kit.http.post(kit.url("users/create_or_update.json"), json=body)
    assert first.status_code == 201
    again = kit.zd.users.create_or_update(User(name="Cy Two", email="cy@example.test", external_id="e-3"))
    assert again.id == first.json()["user"]["id"]
    by_external = kit.zd.users.create_or_update(User(name="Cy Three", external_id="e-3"))
    assert by_external.id == again.id
    named = [u["name"] for u in kit.emu.users() if u["id"] == again.id]
    assert named == ["Cy Three"]
    assert kit.http.post(kit.url("users/create_or_update.json"), json=body).status_code == 200


def test_update_user_changes_email_identity(kit: Kit) -> None:
    user_id = kit.emu.add_user("Di", "di@example.test")
    user = kit.zd.users(id=user_id)
    user.email = "di.new@example.test"
    user.tags = ["VIP"]
    updated = kit.zd.users.update(user)
    assert (updated.email, updated.tags) == ("di.new@example.test", ["vip"])
    assert [i.value for i in kit.zd.users.identities(id=user_id)] == ["di.new@example.test"]


def test_create_many_users_is_a_job_whose_results_name_each_user(kit: Kit) -> None:
    job = kit.zd.users.create([User(name=f"Bulk {i}", email=f"bulk{i}@example.test") for i in range(3)])
    assert (job.status, job.total, job.progress, job.results) == ("queued", 3, None, None)
    assert not [u for u in kit.emu.users() if u["name"].startswith("Bulk")]
    assert kit.zd.job_status(id=job.id).status == "working"
    done = kit.zd.job_status(id=job.id)
    assert (done.status, done.progress) == ("completed", 3)
    assert done.message.startswith("Completed at ")
    by_index = {r.index: r for r in done.results}
    assert [by_index[i].email for i in range(3)] == [f"bulk{i}@example.test" for i in range(3)]
    assert {r.status for r in done.results} == {"Created"}
    created = {u["id"] for u in kit.emu.users() if u["name"].startswith("Bulk")}
    assert created == {r.id for r in done.results}


def test_identities_add_and_duplicate_value_is_422(kit: Kit) -> None:
    ann = kit.emu.add_user("Ann", "ann@example.test")
    bob = kit.emu.add_user("Bob")
    phone = kit.zd.users.identities.create(bob, Identity(type="phone_number", value="+15550300"))
    assert (phone.type, phone.primary, phone.user_id) == ("phone_number", True, bob)
    assert kit.zd.users(id=bob).phone == "+15550300"
    second = kit.zd.users.identities.create(ann, Identity(type="email", value="ann.alt@example.test"))
    assert second.primary is False
    with pytest.raises(APIException) as caught:
        kit.zd.users.identities.create(bob, Identity(type="email", value="ann@example.test"))
    assert caught.value.response.status_code == 422
    assert error_body(caught.value) == {
        "error": "RecordInvalid", "description": "Record validation errors",
        "details": {"value": [{"description": "Value: ann@example.test is already being used by another user",
                               "error": "DuplicateValue"}]}}


# ---- tickets and comments -------------------------------------------------------

def test_create_ticket_with_comment_and_requester_object(kit: Kit) -> None:
    group_id = kit.emu.add_group("Billing")
    audit = kit.zd.tickets.create(Ticket(
        subject="Refund", requester=User(name="Eve", email="eve@example.test"), group_id=group_id,
        priority="high", tags=["sms", "Inbound"], external_id="crmhub:sms:SM1",
        custom_fields=[{"id": 42, "value": "x"}], comment=Comment(html_body="<p>Money <b>back</b></p>")))
    ticket = audit.ticket
    eve = kit.zd.users.search(query="email:eve@example.test")
    requester = next(iter(eve))
    assert (ticket.requester_id, requester.role) == (requester.id, "end-user")
    assert (ticket.status, ticket.priority, ticket.group_id) == ("new", "high", group_id)
    assert (ticket.tags, ticket.external_id, ticket.description) == (["sms", "inbound"], "crmhub:sms:SM1",
                                                                     "Money back")
    assert ticket.via.channel == "api"
    assert {e["type"] for e in audit.audit.events} == {"Create", "Comment"}
    comment = kit.emu.comments(ticket.id)[0]
    assert (comment["plain_body"], comment["html_body"], comment["public"]) == (
        "Money back", "<p>Money <b>back</b></p>", True)


def test_update_ticket_adds_public_and_private_comments_and_changes_status(kit: Kit) -> None:
    requester = kit.emu.add_user("Fay", "fay@example.test")
    ticket_id = kit.emu.add_ticket("Help", "first", requester)
    ticket = kit.zd.tickets(id=ticket_id)
    ticket.comment = Comment(body="internal note", public=False)
    ticket.status = "pending"
    audit = kit.zd.tickets.update(ticket)
    assert audit.ticket.status == "pending"
    change = [e for e in audit.audit.events if e["type"] == "Change"]
    assert change == [{"id": change[0]["id"], "type": "Change", "field_name": "status", "value": "pending",
                       "previous_value": "new"}]
    again = kit.zd.tickets(id=ticket_id)
    again.comment = Comment(body="We are on it", public=True, author_id=requester)
    kit.zd.tickets.update(again)
    comments = [(c.body, c.public, c.author_id) for c in kit.zd.tickets.comments(ticket=ticket_id)]
    agent = kit.emu.default_agent_id
    assert comments == [("first", True, agent), ("internal note", False, agent), ("We are on it", True, requester)]


def test_comments_carry_their_fields(kit: Kit) -> None:
    ticket_id = kit.emu.add_ticket("Hi", "line one\nline two")
    kit.emu.add_agent_comment(ticket_id, "reply", public=False)
    first, reply = list(kit.zd.tickets.comments(ticket=ticket_id))
    assert (first.body, first.plain_body) == ("line one\nline two", "line one\nline two")
    assert first.html_body == '<div class="zd-comment" dir="auto">line one<br>line two</div>'
    assert first.via.channel == "api" and first.created_at.endswith("Z")
    assert first.metadata.system.client == "crmhub-sandbox"
    assert (reply.body, reply.public, reply.type) == ("reply", False, "Comment")


def test_ticket_audits_name_who_changed_the_tags_and_page_by_cursor(kit: Kit) -> None:
    """List Audits for a Ticket: one audit per update, its `author_id` the caller, tags as a Change event."""
    alice = kit.emu.add_agent("alice@acme.test", "Alice", token="alice-token")
    ticket_id = kit.emu.add_ticket("Help", "first", tags=["crmhub"])
    answer = requests.put(kit.url(f"tickets/{ticket_id}.json"), auth=("alice@acme.test/token", "alice-token"),
                          json={"ticket": {"additional_tags": ["crmhub_confirm_12"]}}, timeout=10)
    assert answer.status_code == 200, answer.text
    for i in range(3):
        kit.emu.add_agent_comment(ticket_id, f"reply {i}")

    audits = [a.to_dict() for a in kit.zd.tickets.audits(ticket=ticket_id)]  # zenpy: page[size]=100
    assert [a["author_id"] for a in audits] == [kit.emu.default_agent_id, alice, *[kit.emu.default_agent_id] * 3]
    created, tagged = audits[0], audits[1]
    assert {"type": "Create", "field_name": "tags", "value": ["crmhub"]}.items() <= next(
        e for e in created["events"] if e.get("field_name") == "tags").items()
    [change] = tagged["events"]
    assert {k: change[k] for k in ("type", "field_name", "value", "previous_value")} == {
        "type": "Change", "field_name": "tags", "value": ["crmhub", "crmhub_confirm_12"], "previous_value": ["crmhub"]}
    assert tagged["ticket_id"] == ticket_id and tagged["created_at"].endswith("Z")

    first = kit.http.get(kit.url(f"tickets/{ticket_id}/audits.json"), params={"page[size]": 2}).json()
    assert [a["id"] for a in first["audits"]] == [a["id"] for a in audits[:2]]
    assert first["meta"]["has_more"] is True and first["links"]["next"]
    rest = kit.http.get(kit.url(f"tickets/{ticket_id}/audits.json"),
                        params={"page[size]": 2, "page[after]": first["meta"]["after_cursor"]}).json()
    assert [a["id"] for a in rest["audits"]] == [a["id"] for a in audits[2:4]]
    offset = kit.http.get(kit.url(f"tickets/{ticket_id}/audits.json")).json()
    assert (offset["count"], offset["next_page"], len(offset["audits"])) == (5, None, 5)
    missing = kit.http.get(kit.url("tickets/999999/audits.json"))
    assert (missing.status_code, missing.json()["error"]) == (404, "RecordNotFound")


def test_show_and_show_many_tickets(kit: Kit) -> None:
    ids = [kit.emu.add_ticket(f"T{i}", "body") for i in range(3)]
    assert kit.zd.tickets(id=ids[1]).subject == "T1"
    assert [t.id for t in kit.zd.tickets(ids=[ids[0], ids[2]])] == [ids[0], ids[2]]


def test_list_tickets_pages_by_cursor_across_pages(kit: Kit) -> None:
    for i in range(230):
        kit.emu.add_ticket(f"T{i}", "body")
    assert [t.subject for t in kit.zd.tickets()] == [f"T{i}" for i in range(230)]
    assert kit.emu.calls["GET /api/v2/tickets.json"] == 3


def test_list_tickets_offset_paging_and_cursor_envelope(kit: Kit) -> None:
    for i in range(5):
        kit.emu.add_ticket(f"T{i}", "body")
    page = kit.http.get(kit.url("tickets.json"), params={"per_page": 2, "page": 2}).json()
    assert [t["subject"] for t in page["tickets"]] == ["T2", "T3"]
    assert page["count"] == 5 and "page=3" in page["next_page"] and "page=1" in page["previous_page"]
    cursor = kit.http.get(kit.url("tickets.json"), params={"page[size]": 2}).json()
    assert cursor["meta"]["has_more"] is True and cursor["links"]["next"]
    last = kit.http.get(cursor["links"]["next"]).json()
    assert [t["subject"] for t in last["tickets"]] == ["T2", "T3"]
    too_big = kit.http.get(kit.url("tickets.json"), params={"page[size]": 101})
    assert (too_big.status_code, too_big.json()["error"]) == (400, "InvalidPaginationParameter")


def test_create_many_and_update_many_tickets_through_job_statuses(kit: Kit) -> None:
    job = kit.zd.tickets.create(
        [Ticket(subject=f"B{i}", comment=Comment(body="x"), external_id=f"k{i}") for i in range(3)])
    assert job.status == "queued" and kit.emu.tickets() == []
    done = poll(kit.zd, job.id)
    ids = [r.id for r in sorted(done.results, key=lambda r: r.index)]
    assert [t["external_id"] for t in kit.emu.tickets()] == ["k0", "k1", "k2"]
    update = kit.zd.tickets.update([Ticket(id=ids[0], status="solved"), Ticket(id=ids[1], tags=["done"])])
    results = poll(kit.zd, update.id).results
    assert {(r.id, r.action, r.status, r.success) for r in results} == {
        (ids[0], "update", "Updated", True), (ids[1], "update", "Updated", True)}
    stored = {t["id"]: t for t in kit.emu.tickets()}
    assert (stored[ids[0]]["status"], stored[ids[1]]["tags"]) == ("solved", ["done"])


def test_show_many_job_statuses_reads_several_jobs_in_one_call(kit: Kit) -> None:
    first = kit.zd.tickets.create([Ticket(subject="A", comment=Comment(body="x"))])
    second = kit.zd.users.create([User(name="Bulk", email="bulk@example.test")])
    asked = [second.id, "0" * 32, first.id]  # an unknown (expired) id is left out, the order kept
    listed = kit.http.get(kit.url("job_statuses/show_many.json"), params={"ids": ",".join(asked)}).json()
    assert [(j["id"], j["status"], j["total"]) for j in listed["job_statuses"]] == [
        (second.id, "working", 1), (first.id, "working", 1)]  # each read moves a job one step, as a single read
    assert set(listed["job_statuses"][0]) >= {"id", "url", "job_type", "status", "total", "progress", "results"}
    done = kit.zd.job_status(ids=[first.id, second.id])["job_statuses"]  # zenpy's show_many
    assert [(j.id, j.status) for j in done] == [(first.id, "completed"), (second.id, "completed")]
    assert done[0].results[0].index == 0 and done[1].results[0].status == "Created"
    none = kit.http.get(kit.url("job_statuses/show_many.json"))
    assert (none.status_code, none.json()["error"]) == (400, "InvalidValue")
    many = kit.http.get(kit.url("job_statuses/show_many.json"), params={"ids": ",".join(["a"] * 101)})
    assert (many.status_code, many.json()["error"]) == (400, "TooManyValues")


def test_update_many_by_ids_applies_one_change_to_all(kit: Kit) -> None:
    ids = [kit.emu.add_ticket(f"T{i}", "body") for i in range(2)]
    kit.emu.configure(job_reads_per_step=0)
    change = {"ticket": {"status": "open", "additional_tags": ["bulk"]}}
    answer = kit.http.put(kit.url("tickets/update_many.json"), params={"ids": ",".join(map(str, ids))},
                          json=change).json()
    job = kit.http.get(kit.url(f"job_statuses/{answer['job_status']['id']}.json")).json()["job_status"]
    assert job["status"] == "completed"
    assert {(t["status"], tuple(t["tags"])) for t in kit.emu.tickets()} == {("open", ("bulk",))}


def test_closed_ticket_refuses_updates(kit: Kit) -> None:
    ticket_id = kit.emu.add_ticket("Old", "body", status="closed")
    ticket = kit.zd.tickets(id=ticket_id)
    ticket.comment = Comment(body="late")
    with pytest.raises(APIException) as caught:
        kit.zd.tickets.update(ticket)
    assert error_body(caught.value)["details"] == {
        "status": [{"description": "Status: closed prevents ticket update", "error": "InvalidValue"}]}


# ---- groups and search ----------------------------------------------------------

def test_groups_list_and_show(kit: Kit) -> None:
    group_id = kit.emu.add_group("Escalations", description="tier 2")
    assert [g.name for g in kit.zd.groups()] == ["Support", "Escalations"]
    assert kit.zd.groups(id=group_id).description == "tier 2"


def test_search_tickets_by_external_id_status_requester_and_tags(kit: Kit) -> None:
    zdk = kit.emu
    requester = zdk.add_user("Gil", "gil@example.test")
    open_id = zdk.add_ticket("open one", "body", requester, external_id="ext-1", tags=["whatsapp"], status="open")
    zdk.add_ticket("solved one", "body", requester, external_id="ext-2", status="solved")
    zdk.add_ticket("someone else", "body", status="new")
    assert [t.id for t in kit.zd.search(type="ticket", external_id="ext-1")] == [open_id]
    mine = kit.zd.search(f"requester_id:{requester} status<solved", type="ticket")
    assert [t.id for t in mine] == [open_id]
    assert [t.id for t in kit.zd.search("tags:whatsapp")] == [open_id]
    assert kit.zd.search.count("type:ticket requester:gil@example.test") == 2


def test_search_users_by_phone_and_email_with_result_type(kit: Kit) -> None:
    user_id = kit.emu.add_user("Hal", "hal@example.test", phone="+44 20 7946 0000")
    found = kit.http.get(kit.url("search.json"), params={"query": "type:user phone:+442079460000"}).json()
    assert [(r["id"], r["result_type"]) for r in found["results"]] == [(user_id, "user")]
    assert (found["count"], found["next_page"], found["facets"]) == (1, None, None)
    assert [u.id for u in kit.zd.search(type="user", email="hal@example.test")] == [user_id]


def test_search_pages_with_next_page(kit: Kit) -> None:
    for i in range(130):
        kit.emu.add_ticket(f"S{i}", "body", tags=["paged"])
    assert len(list(kit.zd.search("tags:paged", type="ticket"))) == 130
    assert kit.emu.calls["GET /api/v2/search.json"] == 2


# ---- incremental exports --------------------------------------------------------

def test_incremental_ticket_export_pages_by_cursor_and_waits_one_minute(kit: Kit) -> None:
    zdk = kit.emu
    start = int(zdk.clock.time())
    ids = [zdk.add_ticket(f"I{i}", "body") for i in range(5)]
    assert list(kit.zd.tickets.incremental(start_time=start)) == []
    zdk.clock.advance(61)
    exported = [t.id for t in kit.zd.tickets.incremental(start_time=start, per_page=2)]
    assert exported == ids
    assert zdk.calls["GET /api/v2/incremental/tickets/cursor.json"] == 1 + 3


def test_incremental_user_export_resumes_from_the_after_cursor(kit: Kit) -> None:
    zdk = kit.emu
    zdk.add_user("Ivy", "ivy@example.test")
    zdk.clock.advance(61)
    first = kit.http.get(kit.url("incremental/users/cursor.json"), params={"start_time": 0}).json()
    assert [u["name"] for u in first["users"]] == ["Sandbox Agent", "Ivy"]
    assert first["end_of_stream"] is True and first["before_cursor"] is None
    zdk.add_user("Jon", "jon@example.test")
    zdk.clock.advance(61)
    later = kit.http.get(first["after_url"]).json()
    assert [u["name"] for u in later["users"]] == ["Jon"]


def test_incremental_user_export_hides_users_younger_than_the_configured_delay(kit: Kit) -> None:
    """A user made seconds ago is not exported yet (issue 13); `export_delay_seconds` sets the lag."""
    def names() -> list[str]:
        page = kit.http.get(kit.url("incremental/users/cursor.json"), params={"start_time": 0}).json()
        return [u["name"] for u in page["users"]]

    kit.emu.add_user("Lea", "lea@example.test")
    kit.emu.clock.advance(5)
    assert "Lea" not in names()
    kit.emu.configure(export_delay_seconds=0)  # the fixture's reset restores Zendesk's 60
    assert "Lea" in names()


def test_a_user_create_with_a_taken_phone_is_refused_as_zendesk_words_it(kit: Kit) -> None:
    kit.emu.add_user("Max", phone="+14155550999")
    answer = kit.http.post(kit.url("users.json"), json={"user": {"name": "Max 2", "phone": "+14155550999"}})
    assert answer.status_code == 422
    assert answer.json() == {"error": "RecordInvalid", "description": "Record validation errors", "details": {
        "phone": [{"description": "Phone: +14155550999 is already being used by another user",
                   "error": "DuplicateValue"}]}}


def test_incremental_user_export_through_zenpy(kit: Kit) -> None:
    kit.emu.add_user("Kim", "kim@example.test")
    kit.emu.clock.advance(61)
    assert [u.name for u in kit.zd.users.incremental(start_time=0)] == ["Sandbox Agent", "Kim"]


def test_ticket_events_export_pages_by_time_with_comment_events(kit: Kit) -> None:
    zdk = kit.emu
    long_ago = int(time.time()) - 7200  # zenpy stops at pages ending within 5 real minutes
    ids = [zdk.add_ticket(f"E{i}", f"body {i}", created_at=long_ago + i) for i in range(4)]
    zdk.add_agent_comment(ids[0], "agent reply")
    zdk.clock.advance(61)
    events = list(kit.zd.tickets.events(start_time=long_ago, include="comment_events", per_page=2))
    assert {e.ticket_id for e in events} == set(ids)
    bodies = [c["body"] for e in events for c in e.child_events if c["event_type"] == "Comment"]
    assert "agent reply" in bodies and "body 0" in bodies
    assert len(events) > len({e.id for e in events})  # events at a page's end_time come again, as in Zendesk
    assert events[0].event_type == "Audit" and events[0].via == "Web service"


def test_ticket_events_without_sideload_only_flag_comments(kit: Kit) -> None:
    zdk = kit.emu
    zdk.add_ticket("E", "body", created_at=int(zdk.clock.time()) - 600)
    page = kit.http.get(kit.url("incremental/ticket_events.json"), params={"start_time": 0}).json()
    comment = [c for c in page["ticket_events"][0]["child_events"] if c["event_type"] == "Comment"]
    assert comment == [{"id": comment[0]["id"], "via": "Web service", "via_reference_id": None,
                        "comment_present": True, "comment_public": True, "event_type": "Comment"}]
    assert (page["count"], page["end_of_stream"]) == (1, True)
    assert f"start_time={page['end_time']}" in page["next_page"]


# ---- auth and errors ------------------------------------------------------------

def test_not_found_is_record_not_found_with_body(kit: Kit) -> None:
    with pytest.raises(RecordNotFoundException) as caught:
        kit.zd.tickets(id=999999)
    assert error_body(caught.value) == {"error": "RecordNotFound", "description": "Not found"}
    with pytest.raises(RecordNotFoundException):
        kit.zd.groups(id=1)


def test_ticket_without_comment_is_422_blank_description(kit: Kit) -> None:
    with pytest.raises(APIException) as caught:
        kit.zd.tickets.create(Ticket(subject="no body"))
    assert caught.value.response.status_code == 422
    assert error_body(caught.value)["details"] == {
        "base": [{"description": "Description: cannot be blank", "error": "BlankValue"}]}


def test_duplicate_email_on_create_is_422(kit: Kit) -> None:
    kit.emu.add_user("Lou", "lou@example.test")
    with pytest.raises(APIException) as caught:
        kit.zd.users.create(User(name="Lou 2", email="LOU@example.test"))
    assert error_body(caught.value)["details"]["email"][0]["error"] == "DuplicateValue"


def test_bad_credentials_are_401_and_password_access_is_off(kit: Kit) -> None:
    for credentials in ({"email": "agent@sandbox.zendesk.test", "token": "wrong"},
                        {"email": "agent@sandbox.zendesk.test", "password": "sandbox-token"},
                        {"oauth_token": "unknown"}):
        with pytest.raises(APIException) as caught:
            make_zenpy(**credentials).users.me()
        assert caught.value.response.status_code == 401
        assert error_body(caught.value) == {"error": "Couldn't authenticate you"}


def test_oauth_bearer_token_and_extra_agents(kit: Kit) -> None:
    zdk = kit.emu
    zdk.add_oauth_token("oauth-abc")
    assert make_zenpy(oauth_token="oauth-abc").users.me().email == "agent@sandbox.zendesk.test"
    agent_id = zdk.add_agent("second@sandbox.zendesk.test", token="second-token")
    assert make_zenpy(email="second@sandbox.zendesk.test", token="second-token").users.me().id == agent_id


def test_incremental_exports_are_forbidden_to_plain_agents(kit: Kit) -> None:
    kit.emu.add_agent("plain@sandbox.zendesk.test", role="agent")
    with pytest.raises(APIException) as caught:
        list(make_zenpy(email="plain@sandbox.zendesk.test", token="sandbox-token").tickets.incremental(start_time=0))
    assert caught.value.response.status_code == 403
    assert error_body(caught.value)["error"] == "Forbidden"


def test_batch_over_100_is_too_many_values(kit: Kit) -> None:
    with pytest.raises(TooManyValuesException):
        kit.zd.tickets.create([Ticket(subject=str(i), comment=Comment(body="x")) for i in range(101)])


def test_unemulated_endpoint_names_method_and_path(kit: Kit) -> None:
    ticket_id = kit.emu.add_ticket("T", "body")
    with pytest.raises(APIException) as caught:
        kit.zd.tickets.delete(kit.zd.tickets(id=ticket_id))
    body = error_body(caught.value)
    assert (caught.value.response.status_code, body["method"], body["path"]) == (
        501, "DELETE", f"/api/v2/tickets/{ticket_id}.json")


def test_every_call_is_counted_per_endpoint(kit: Kit) -> None:
    ticket_id = kit.emu.add_ticket("T", "body")
    kit.zd.tickets(id=ticket_id)
    kit.zd.tickets(id=ticket_id)
    kit.zd.users.me()
    assert dict(kit.emu.calls) == {"GET /api/v2/tickets/<int:ticket_id>.json": 2, "GET /api/v2/users/me.json": 1}


# ---- route table, docs and persistence ------------------------------------------

def test_docs_list_every_emulated_route(kit: Kit) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "sandbox" / "zendesk.md").read_text()
    routes = requests.get(f"{kit.server.url}/_sandbox/routes").json()
    missing = [r for r in routes if f"| {r['methods'][0]} | `{r['path']}` |" not in docs]
    assert routes and missing == []


def test_state_survives_a_restart_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "zendesk.json"
    with EmulatorServer(ZendeskEmulator(state_file=path)) as server:
        answer = requests.post(api_url(server, "tickets.json"), auth=(f"{AGENT}/token", TOKEN),
                               json={"ticket": {"subject": "kept", "comment": {"body": "x"}}})
        assert answer.status_code == 201
    reloaded = ZendeskEmulator(state_file=path)
    assert [t["subject"] for t in reloaded.tickets()] == ["kept"]
    assert reloaded.add_ticket("next", "x") == answer.json()["ticket"]["id"] + 1
