"""hubspot-api-client 12, unchanged, against the HubSpot emulator: every emulated endpoint.

The SDK is pointed only through its public knobs (`host` for the generated
APIs, `base_url` for `api_request`); assertions look at both the answers and
the state HubSpot would hold.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm import contacts as hs_contacts
from hubspot.crm import objects as hs_objects
from hubspot.crm import owners as hs_owners
from hubspot.crm import pipelines as hs_pipelines
from hubspot.crm import properties as hs_properties
from hubspot.crm import tickets as hs_tickets
from hubspot.crm.associations import v4 as hs_assoc

from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.hubspot import HubSpotEmulator

TOKEN = "sandbox-token"


def emulator_of(server: EmulatorServer) -> HubSpotEmulator:
    emulator = server.emulator
    assert isinstance(emulator, HubSpotEmulator)
    return emulator


@pytest.fixture
def emu(hubspot_sandbox: EmulatorServer) -> HubSpotEmulator:
    return emulator_of(hubspot_sandbox)


def make_client(url: str, token: str = TOKEN, **config: Any) -> HubSpot:
    """The SDK pointed at the sandbox through its public knobs only."""
    return HubSpot(access_token=token, host=url, base_url=url, **config)


@pytest.fixture
def client(hubspot_sandbox: EmulatorServer) -> HubSpot:
    return make_client(hubspot_sandbox.url)


def error_body(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    """The JSON body of an SDK ApiException."""
    body: dict[str, Any] = json.loads(exc.value.body)
    return body


def contact_input(**props: str) -> hs_contacts.SimplePublicObjectInputForCreate:
    return hs_contacts.SimplePublicObjectInputForCreate(properties=props)


def linked_to(to_id: str, type_id: int) -> list[dict[str, Any]]:
    """A v3 create's inline `associations` to one record."""
    return [{"to": {"id": to_id}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]


def flt(name: str, operator: str, **value: Any) -> dict[str, Any]:
    """One search filter."""
    return {"propertyName": name, "operator": operator, **value}


# ---- basic API -------------------------------------------------------------------
def test_contact_create_get_update_archive(client: HubSpot, emu: HubSpotEmulator) -> None:
    api = client.crm.contacts.basic_api
    created = api.create(contact_input(email="Ana@Example.com", firstname="Ana", phone="+15550001"))
    assert created.id.isdigit() and created.properties["email"] == "ana@example.com"
    assert created.properties["hs_object_id"] == created.id and created.archived is False

    by_email = api.get_by_id("ana@example.com", id_property="email", properties=["phone", "nosuchprop"])
    assert by_email.id == created.id
    assert set(by_email.properties) == {"createdate", "hs_object_id", "lastmodifieddate", "phone"}

    api.update(created.id, hs_contacts.SimplePublicObjectInput(properties={"lastname": "Lima", "phone": ""}))
    [stored] = emu.objects("contacts")
    assert stored["properties"]["lastname"] == "Lima" and "phone" not in stored["properties"]

    api.archive(created.id)
    with pytest.raises(hs_contacts.ApiException) as exc:
        api.get_by_id(created.id)
    assert exc.value.status == 404 and error_body(exc)["category"] == "OBJECT_NOT_FOUND"
    assert api.get_by_id(created.id, archived=True).archived is True
    assert [r["id"] for r in emu.objects("contacts", archived=True)] == [created.id]
    api.archive("999999")  # HubSpot answers 204 for unknown ids too


def test_timestamps_are_iso_with_millis_and_defaults_come_back(client: HubSpot, emu: HubSpotEmulator) -> None:
    contact_id = emu.add("contacts", email="b@example.com")
    raw = client.api_request({"method": "GET", "path": f"/crm/v3/objects/contacts/{contact_id}"}).json()
    assert raw["createdAt"].endswith("Z") and len(raw["createdAt"]) == len("2024-01-01T12:00:00.000Z")
    assert set(raw["properties"]) == {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate",
                                      "lastname"}
    assert raw["properties"]["firstname"] is None and raw["archived"] is False


def test_engagements_with_inline_associations(client: HubSpot, emu: HubSpotEmulator) -> None:
    contact_id = emu.add("contacts", email="c@example.com")
    sms = client.crm.objects.communications.basic_api.create(hs_objects.SimplePublicObjectInputForCreate(
        properties={"hs_communication_channel_type": "SMS", "hs_communication_logged_from": "CRM",
                    "hs_communication_body": "hello", "hs_timestamp": "1704110400000"},
        associations=linked_to(contact_id, 81)))
    call = client.crm.objects.calls.basic_api.create(hs_objects.SimplePublicObjectInputForCreate(
        properties={"hs_call_direction": "INBOUND", "hs_call_duration": 42000, "hs_call_status": "COMPLETED",
                    "hs_timestamp": "2024-01-01T12:00:00Z"}, associations=linked_to(contact_id, 194)))
    note = client.crm.objects.basic_api.create("notes", hs_objects.SimplePublicObjectInputForCreate(
        properties={"hs_note_body": "n", "hs_timestamp": "2024-01-01T12:00:00.000Z"},
        associations=linked_to(contact_id, 202)))

    assert sms.properties["hs_timestamp"] == "2024-01-01T12:00:00.000Z"
    assert call.properties["hs_call_duration"] == "42000"
    assert emu.associated("contacts", contact_id, "communications") == {sms.id: [82]}
    assert emu.associated("calls", call.id, "contacts") == {contact_id: [194]}
    read = client.crm.objects.notes.basic_api.get_by_id(note.id, associations=["contacts"])
    assert [(a.id, a.type) for a in read.associations["contacts"].results] == [(contact_id, "note_to_contact")]


def test_batch_create_with_inline_associations(client: HubSpot, emu: HubSpotEmulator) -> None:
    """A ticket and a communication batch-created already linked: no association call needed."""
    contact_id = emu.add("contacts", email="c@example.com")
    batch = client.crm.objects.batch_api
    [ticket] = batch.create("tickets", hs_objects.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": {"subject": "t", "hs_pipeline_stage": "1"}, "objectWriteTraceId": "t1",
         "associations": linked_to(contact_id, 16)}])).results
    [sms] = batch.create("communications", hs_objects.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": {"hs_communication_channel_type": "SMS", "hs_communication_body": "hi",
                        "hs_timestamp": "2024-01-01T12:00:00.000Z", "hs_communication_logged_from": "CRM"},
         "associations": [*linked_to(contact_id, 81), *linked_to(ticket.id, 83)]}])).results
    assert emu.associated("tickets", ticket.id, "contacts") == {contact_id: [16]}
    assert emu.associated("contacts", contact_id, "tickets") == {ticket.id: [15]}
    assert emu.associated("communications", sms.id, "contacts") == {contact_id: [81]}
    assert emu.associated("tickets", ticket.id, "communications") == {sms.id: [84]}
    assert emu.calls.get("POST /crm/v4/associations/<from_type>/<to_type>/batch/associate/default") is None


SMS = {"hs_communication_channel_type": "SMS", "hs_communication_body": "hi",
       "hs_timestamp": "2024-01-01T12:00:00.000Z", "hs_communication_logged_from": "CRM"}


@pytest.mark.parametrize(("associations", "fragment"), [
    ([{"types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 81}]}], "to.id is required"),
    ([{"to": {"id": "CONTACT"}, "types": []}], "types must be a non-empty list"),
    ([{"to": {"id": "CONTACT"}, "types": [{"associationTypeId": 81}]}], "associationCategory must be one of"),
    ([{"to": {"id": "CONTACT"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": "x"}]}],
     "associationTypeId must be an integer"),
    ([{"to": {"id": "CONTACT"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 82}]}],
     "Invalid association types [82] for a communication"),  # contact->communication: the wrong direction
    ([{"to": {"id": "CONTACT"}, "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 81}]}],
     "custom association labels are not emulated"),
    ([{"to": {"id": "424242"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 81}]}],
     "object with id 424242 does not exist"),
    ({"to": {"id": "CONTACT"}}, "associations must be a list"),
])
def test_malformed_inline_associations_are_refused(client: HubSpot, emu: HubSpotEmulator, associations: Any,
                                                   fragment: str) -> None:
    contact_id = emu.add("contacts", email="c@example.com")
    associations = json.loads(json.dumps(associations).replace("CONTACT", contact_id))
    with pytest.raises(hs_objects.ApiException) as exc:
        client.crm.objects.batch_api.create("communications", hs_objects.BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[{"properties": SMS, "associations": associations}]))
    body = error_body(exc)
    assert exc.value.status == 400 and body["category"] == "VALIDATION_ERROR" and body["status"] == "error"
    assert fragment in body["message"] and body["correlationId"]
    assert emu.objects("communications") == []


def test_a_bad_inline_association_fails_only_its_input_when_traced(client: HubSpot, emu: HubSpotEmulator) -> None:
    contact_id = emu.add("contacts", email="c@example.com")
    answer = client.crm.objects.batch_api.create("communications",
                                                 hs_objects.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": SMS, "objectWriteTraceId": "good", "associations": linked_to(contact_id, 81)},
        {"properties": SMS, "objectWriteTraceId": "bad", "associations": linked_to("424242", 81)}]))
    assert len(answer.results) == 1 and answer.num_errors == 1
    assert answer.errors[0].category == "VALIDATION_ERROR" and answer.errors[0].context == {"objectWriteTraceId": ["bad"]}
    [sms] = emu.objects("communications")
    assert emu.associated("communications", sms["id"], "contacts") == {contact_id: [81]}


def test_list_pages_across_several_pages(client: HubSpot, emu: HubSpotEmulator) -> None:
    ids = [emu.add("contacts", email=f"p{i}@example.com") for i in range(23)]
    api = client.crm.objects.basic_api
    seen, after, pages = [], None, 0
    while True:
        page = api.get_page("contacts", limit=10, after=after, properties=["email"])
        seen += [r.id for r in page.results]
        pages += 1
        if page.paging is None:
            break
        after = page.paging.next.after
        assert f"after={after}" in page.paging.next.link
    assert (seen, pages) == (ids, 3)
    assert [c.id for c in client.crm.contacts.get_all()] == ids


# ---- batch API -------------------------------------------------------------------
def test_batch_create_read_update(client: HubSpot, emu: HubSpotEmulator) -> None:
    batch = client.crm.contacts.batch_api
    created = batch.create(hs_contacts.BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[{"properties": {"email": f"b{i}@example.com"}} for i in range(3)]))
    assert created.status == "COMPLETE" and len(created.results) == 3 and created.started_at
    ids = sorted(r.id for r in created.results)

    read = batch.read(hs_contacts.BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ids[0]}, {"id": "424242"}], properties=["email"], properties_with_history=[]))
    assert [r.id for r in read.results] == [ids[0]]
    assert read.num_errors == 1 and read.errors[0].category == "OBJECT_NOT_FOUND"
    assert read.errors[0].context == {"ids": ["424242"]}

    by_email = batch.read(hs_contacts.BatchReadInputSimplePublicObjectId(
        inputs=[{"id": "b2@example.com"}], id_property="email", properties=[], properties_with_history=[]))
    assert [r.id for r in by_email.results] == [ids[2]]

    batch.update(hs_contacts.BatchInputSimplePublicObjectBatchInput(
        inputs=[{"id": i, "properties": {"lastname": "Batch"}} for i in ids]))
    assert {r["properties"]["lastname"] for r in emu.objects("contacts")} == {"Batch"}


def test_batch_upsert_by_custom_unique_property(client: HubSpot, emu: HubSpotEmulator) -> None:
    client.crm.properties.core_api.create("communications", hs_properties.PropertyCreate(
        name="crmhub_key", label="crmhub key", type="string", field_type="text", group_name="communication",
        has_unique_value=True))
    common = {"hs_communication_channel_type": "WHATS_APP", "hs_communication_logged_from": "CRM",
              "hs_timestamp": "1704110400000"}
    existing = emu.add("communications", crmhub_key="k1", hs_communication_body="old", **common)
    answer = client.crm.objects.communications.batch_api.upsert(
        hs_objects.BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
            {"idProperty": "crmhub_key", "id": "k1", "properties": {"hs_communication_body": "new"}},
            {"idProperty": "crmhub_key", "id": "k2", "properties": {"hs_communication_body": "b", **common}},
        ]))
    by_key = {r.properties["crmhub_key"]: r for r in answer.results}
    assert (by_key["k1"].id, by_key["k1"].new, by_key["k2"].new) == (existing, False, True)
    bodies = {r["properties"]["crmhub_key"]: r["properties"]["hs_communication_body"]
              for r in emu.objects("communications")}
    assert bodies == {"k1": "new", "k2": "b"}


def test_upsert_by_a_non_unique_property_is_refused(client: HubSpot) -> None:
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.batch_api.upsert(hs_contacts.BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[{"idProperty": "firstname", "id": "Ana", "properties": {}}]))
    assert exc.value.status == 400
    assert "non-unique 0-1 property firstname" in error_body(exc)["message"]


def test_batch_create_is_atomic_unless_inputs_carry_trace_ids(client: HubSpot, emu: HubSpotEmulator) -> None:
    batch = client.crm.contacts.batch_api
    bad = [{"properties": {"email": "ok@example.com"}}, {"properties": {"favourite_food": "x"}}]
    with pytest.raises(hs_contacts.ApiException) as exc:
        batch.create(hs_contacts.BatchInputSimplePublicObjectBatchInputForCreate(inputs=bad))
    assert exc.value.status == 400 and emu.objects("contacts") == []

    traced = [{**item, "objectWriteTraceId": f"t{i}"} for i, item in enumerate(bad)]
    answer = batch.create(hs_contacts.BatchInputSimplePublicObjectBatchInputForCreate(inputs=traced))
    assert [r.properties["email"] for r in answer.results] == ["ok@example.com"]
    assert answer.num_errors == 1 and answer.errors[0].context == {"objectWriteTraceId": ["t1"]}
    assert "PROPERTY_DOESNT_EXIST" in answer.errors[0].message


def test_batch_archive_and_the_100_input_limit(client: HubSpot, emu: HubSpotEmulator) -> None:
    ids = [emu.add("contacts", email=f"a{i}@example.com") for i in range(2)]
    client.crm.contacts.batch_api.archive(hs_contacts.BatchInputSimplePublicObjectId(
        inputs=[{"id": ids[0]}, {"id": "31337"}]))
    assert [r["id"] for r in emu.objects("contacts")] == [ids[1]]
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.batch_api.archive(hs_contacts.BatchInputSimplePublicObjectId(
            inputs=[{"id": str(i)} for i in range(101)]))
    assert exc.value.status == 400 and error_body(exc)["category"] == "VALIDATION_ERROR"


# ---- search ------------------------------------------------------------------------
@pytest.fixture
def people(emu: HubSpotEmulator) -> dict[str, str]:
    emu.set_limits(search_per_second=50)  # these tests search faster than HubSpot's 5 per second
    return {
        "ana": emu.add("contacts", email="ana@acme.com", firstname="Ana", lastname="Alves", phone="+1555"),
        "bob": emu.add("contacts", email="bob@acme.com", firstname="Bob", lastname="Brown"),
        "cid": emu.add("contacts", email="cid@other.org", firstname="Cid", lastname="Costa", phone="+1666"),
        "dee": emu.add("contacts", email="dee@other.org", firstname="Dee", lastname="Dias"),
    }


def _search(client: HubSpot, **request: Any) -> Any:
    return client.crm.contacts.search_api.do_search(hs_contacts.PublicObjectSearchRequest(**request))


def _ids(answer: Any) -> list[str]:
    return [r.id for r in answer.results]


def test_search_filters_and_or_groups(client: HubSpot, people: dict[str, str]) -> None:
    acme = _search(client, filter_groups=[{"filters": [flt("email", "CONTAINS_TOKEN", value="*@acme.com")]}])
    assert (_ids(acme), acme.total) == ([people["ana"], people["bob"]], 2)
    both = _search(client, filter_groups=[
        {"filters": [flt("email", "CONTAINS_TOKEN", value="*@acme.com"), flt("phone", "HAS_PROPERTY")]},
        {"filters": [flt("firstname", "EQ", value="dee")]},
    ])
    assert _ids(both) == [people["ana"], people["dee"]]
    assert _ids(_search(client, filter_groups=[{"filters": [flt("lastname", "IN", values=["brown", "dias"])]}])) \
        == [people["bob"], people["dee"]]
    assert _ids(_search(client, filter_groups=[{"filters": [flt("phone", "NOT_HAS_PROPERTY"),
                                                            flt("firstname", "NEQ", value="Bob")]}])) == [people["dee"]]
    assert _ids(_search(client, filter_groups=[{"filters": [flt("hs_object_id", "GT", value=people["bob"])]}])) \
        == [people["cid"], people["dee"]]
    assert _ids(_search(client, query="costa")) == [people["cid"]]


def test_search_sorts_pages_and_returns_asked_properties(client: HubSpot, people: dict[str, str]) -> None:
    first = _search(client, sorts=["-lastname"], limit=3, properties=["lastname"])
    assert _ids(first) == [people["dee"], people["cid"], people["bob"]] and first.total == 4
    assert set(first.results[0].properties) == {"createdate", "hs_object_id", "lastmodifieddate", "lastname"}
    assert first.paging.next.after == "3"
    rest = _search(client, sorts=[{"propertyName": "lastname", "direction": "DESCENDING"}], limit=3, after="3")
    assert _ids(rest) == [people["ana"]] and rest.paging is None


def test_search_by_association_pseudo_property(client: HubSpot, emu: HubSpotEmulator) -> None:
    contact = emu.add("contacts", email="x@example.com")
    mine, other = emu.add("tickets", subject="mine"), emu.add("tickets", subject="other")
    emu.associate("contacts", contact, "tickets", mine)
    found = client.crm.tickets.search_api.do_search(hs_objects.PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "associations.contact", "operator": "EQ", "value": contact}]}]))
    assert _ids(found) == [mine] and other != mine


@pytest.mark.parametrize(("request_body", "fragment"), [
    ({"after": "10000"}, "10000"),
    ({"limit": 201}, "limit"),
    ({"filterGroups": [{"filters": []}] * 6}, "filter groups"),
    ({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]}, "nope"),
])
def test_search_limits_answer_400(client: HubSpot, request_body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.search_api.do_search(request_body)
    assert exc.value.status == 400 and fragment in error_body(exc)["message"]


# ---- properties ------------------------------------------------------------------
def test_properties_list_get_and_create(client: HubSpot) -> None:
    core = client.crm.properties.core_api
    email = next(p for p in core.get_all("contacts").results if p.name == "email")
    assert email.has_unique_value is True and email.type == "string"
    assert core.get_by_name("calls", "hs_call_direction").options[1].value == "OUTBOUND"
    created = core.create("tickets", hs_properties.PropertyCreate(
        name="crmhub_conversation", label="Conversation", type="string", field_type="text",
        group_name="ticketinformation", has_unique_value=True))
    assert created.name == "crmhub_conversation" and created.hubspot_defined is False
    with pytest.raises(hs_properties.ApiException) as exc:
        core.create("tickets", {"name": "crmhub_conversation", "label": "x", "type": "string",
                                "fieldType": "text", "groupName": "ticketinformation"})
    assert exc.value.status == 409 and error_body(exc)["category"] == "OBJECT_ALREADY_EXISTS"
    with pytest.raises(hs_properties.ApiException) as exc:
        core.get_by_name("tickets", "nope")
    assert exc.value.status == 404


# ---- associations v4 -----------------------------------------------------------------
def test_associations_v4_basic(client: HubSpot, emu: HubSpotEmulator) -> None:
    contact, ticket = emu.add("contacts", email="v4@example.com"), emu.add("tickets", subject="t")
    company = emu.add("companies", name="Acme")
    basic = client.crm.associations.v4.basic_api
    default = basic.create_default("contact", contact, "ticket", ticket)
    assert {(r._from.id, r.to.id, r.association_spec.association_type_id) for r in default.results} == \
        {(contact, ticket, 15), (ticket, contact, 16)}
    labeled = basic.create("contacts", contact, "companies", company,
                           [hs_assoc.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)])
    assert (labeled.labels, labeled.from_object_type_id, labeled.to_object_type_id) == (["Primary"], "0-1", "0-2")
    assert emu.associated("companies", company, "contacts") == {contact: [2]}

    page = basic.get_page("0-5", ticket, "contacts")
    assert [(r.to_object_id, [t.type_id for t in r.association_types]) for r in page.results] == [(contact, [16])]
    basic.archive("contacts", contact, "tickets", ticket)
    assert emu.associated("tickets", ticket, "contacts") == {}
    with pytest.raises(hs_assoc.ApiException) as exc:
        basic.create("contacts", contact, "tickets", ticket,
                     [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}])
    assert exc.value.status == 400


def test_associations_v4_batch(client: HubSpot, emu: HubSpotEmulator) -> None:
    contacts = [emu.add("contacts", email=f"v{i}@example.com") for i in range(2)]
    sms = emu.add("communications", hs_communication_channel_type="SMS")
    batch = client.crm.associations.v4.batch_api
    made = batch.create("communications", "contacts", hs_assoc.BatchInputPublicAssociationMultiPost(inputs=[
        {"from": {"id": sms}, "to": {"id": c}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                          "associationTypeId": 81}]} for c in contacts]))
    assert [r.to_object_id for r in made.results] == contacts
    batch.create_default("contacts", "tickets", hs_assoc.BatchInputPublicDefaultAssociationMultiPost(
        inputs=[{"from": {"id": contacts[0]}, "to": {"id": emu.add("tickets", subject="s")}}]))

    read = batch.get_page("contacts", "communications", hs_assoc.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[{"id": contacts[0]}, {"id": "5555"}]))
    assert [(r._from.id, [t.to_object_id for t in r.to]) for r in read.results] == [(contacts[0], [sms])]
    assert read.num_errors == 1 and read.errors[0].context == {"fromObjectId": ["5555"]}

    batch.archive("communications", "contacts", hs_assoc.BatchInputPublicAssociationMultiArchive(
        inputs=[{"from": {"id": sms}, "to": [{"id": contacts[0]}]}]))
    assert list(emu.associated("communications", sms, "contacts")) == [contacts[1]]


# ---- pipelines and owners ------------------------------------------------------------
def test_ticket_pipelines_and_stages(client: HubSpot, emu: HubSpotEmulator) -> None:
    custom = emu.add_pipeline("Escalations", [("Open", "OPEN"), ("Done", "CLOSED")])
    api = client.crm.pipelines.pipelines_api
    support, extra = api.get_all("tickets").results
    assert (support.id, support.label, extra.id) == ("0", "Support Pipeline", custom)
    assert [(s.id, s.label, s.metadata["ticketState"]) for s in support.stages] == [
        ("1", "New", "OPEN"), ("2", "Waiting on contact", "OPEN"), ("3", "Waiting on us", "OPEN"),
        ("4", "Closed", "CLOSED")]
    assert api.get_by_id("tickets", custom).label == "Escalations"
    stages = client.crm.pipelines.pipeline_stages_api.get_all("tickets", custom).results
    assert [s.metadata["ticketState"] for s in stages] == ["OPEN", "CLOSED"]
    assert client.crm.pipelines.pipeline_stages_api.get_by_id("tickets", "0", "4").label == "Closed"
    with pytest.raises(hs_pipelines.ApiException) as exc:
        api.get_by_id("tickets", "77")
    assert exc.value.status == 404
    ticket = client.crm.tickets.basic_api.create(hs_objects.SimplePublicObjectInputForCreate(
        properties={"subject": "s", "hs_pipeline": custom, "hs_pipeline_stage": stages[1].id}))
    assert ticket.properties["hs_pipeline"] == custom
    with pytest.raises(hs_tickets.ApiException) as exc:  # a custom pipeline's stage, in the default pipeline
        client.crm.tickets.basic_api.create({"properties": {"subject": "s", "hs_pipeline_stage": stages[1].id}})
    assert exc.value.status == 400 and error_body(exc)["errors"][0]["code"] == "INVALID_OPTION"


def test_closed_date_follows_the_ticket_stage(client: HubSpot, emu: HubSpotEmulator) -> None:
    api = client.crm.tickets.basic_api
    ticket = api.create(hs_objects.SimplePublicObjectInputForCreate(properties={"subject": "s",
                                                                                "hs_pipeline_stage": "1"}))

    def closed_date() -> Any:
        return api.get_by_id(ticket.id, properties=["closed_date"]).properties["closed_date"]

    assert closed_date() is None
    emu.clock.advance(5)
    closing = api.update(ticket.id, hs_objects.SimplePublicObjectInput(properties={"hs_pipeline_stage": "4"}))
    assert closed_date() == closing.properties["hs_lastmodifieddate"]  # entering a CLOSED stage sets it
    emu.clock.advance(5)
    api.update(ticket.id, hs_objects.SimplePublicObjectInput(properties={"subject": "renamed"}))
    assert closed_date() == closing.properties["hs_lastmodifieddate"]  # other changes keep it
    api.update(ticket.id, hs_objects.SimplePublicObjectInput(properties={"hs_pipeline_stage": "2"}))
    assert closed_date() is None  # back to an OPEN stage: cleared
    given = "2026-01-05T09:00:00.000Z"
    api.update(ticket.id, hs_objects.SimplePublicObjectInput(properties={"hs_pipeline_stage": "4",
                                                                         "closed_date": given}))
    assert closed_date() == given  # a value the request gives wins
    assert emu.add("tickets", subject="born closed", hs_pipeline_stage="4")
    assert emu.objects("tickets")[1]["properties"]["closed_date"] is not None


def test_property_history_names_the_user_or_the_app_that_set_each_value(hubspot_sandbox: EmulatorServer,
                                                                         client: HubSpot, emu: HubSpotEmulator) -> None:
    """`propertiesWithHistory` on GET by id and batch read: every version, newest first, with its source."""
    emu.define_property("tickets", "crmhub_link")
    user_id = emu.add_agent("alice@acme.test", "Alice", "Agent", token="alice-token")
    agent = make_client(hubspot_sandbox.url, token="alice-token")
    api = client.crm.tickets.basic_api
    ticket = api.create(hs_objects.SimplePublicObjectInputForCreate(properties={"subject": "s", "hs_pipeline_stage": "1",
                                                                                "crmhub_link": "reject 3"}))
    emu.clock.advance(5)
    agent.crm.tickets.basic_api.update(ticket.id, hs_objects.SimplePublicObjectInput(
        properties={"crmhub_link": "confirm 12"}))
    emu.clock.advance(5)
    agent.crm.tickets.basic_api.update(ticket.id, hs_objects.SimplePublicObjectInput(
        properties={"crmhub_link": "confirm 12", "subject": "t"}))  # the same value again: no new version

    one = api.get_by_id(ticket.id, properties=["crmhub_link"], properties_with_history=["crmhub_link", "nosuch"])
    versions = one.properties_with_history["crmhub_link"]
    assert set(one.properties_with_history) == {"crmhub_link"}  # unknown names are ignored
    assert [(v.value, v.source_type, v.updated_by_user_id) for v in versions] == [
        ("confirm 12", "CRM_UI", user_id), ("reject 3", "INTEGRATION", None)]
    assert versions[0].source_id == f"userId:{user_id}" and versions[0].timestamp > versions[1].timestamp

    read = client.crm.tickets.batch_api.read(hs_tickets.BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ticket.id}], properties=["subject"], properties_with_history=["crmhub_link"]))
    assert [v.value for v in read.results[0].properties_with_history["crmhub_link"]] == ["confirm 12", "reject 3"]
    plain = client.crm.tickets.batch_api.read(hs_tickets.BatchReadInputSimplePublicObjectId(
        inputs=[{"id": ticket.id}], properties=["subject"], properties_with_history=[]))
    assert not plain.results[0].properties_with_history  # asked for none: none given
    assert emu.history_reads() == 2

    with pytest.raises(hs_tickets.ApiException):  # an atomic batch that fails leaves no version behind
        client.crm.tickets.batch_api.update(hs_tickets.BatchInputSimplePublicObjectBatchInput(
            inputs=[{"id": ticket.id, "properties": {"crmhub_link": "reject 12"}},
                    {"id": ticket.id, "properties": {"hs_ticket_priority": "NOT_A_PRIORITY"}}]))
    again = api.get_by_id(ticket.id, properties_with_history=["crmhub_link"])
    assert [v.value for v in again.properties_with_history["crmhub_link"]] == ["confirm 12", "reject 3"]


def test_owners_paging_and_ticket_assignment(client: HubSpot, emu: HubSpotEmulator) -> None:
    ids = [emu.add_owner(f"agent{i}@example.com", "Agent", str(i)) for i in range(3)]
    api = client.crm.owners.owners_api
    first = api.get_page(limit=2)
    assert [o.id for o in first.results] == ids[:2] and first.results[0].type == "PERSON"
    second = api.get_page(limit=2, after=first.paging.next.after)
    assert [o.id for o in second.results] == ids[2:] and second.paging is None
    assert [o.id for o in api.get_page(email="AGENT1@example.com").results] == [ids[1]]
    owner = api.get_by_id(int(ids[0]))
    assert owner.email == "agent0@example.com"
    assert api.get_by_id(owner.user_id, id_property="userId").id == ids[0]
    with pytest.raises(hs_owners.ApiException):
        api.get_by_id(1)
    ticket = emu.add("tickets", subject="s", hubspot_owner_id=ids[2])
    assert emu.objects("tickets")[0]["properties"]["hubspot_owner_id"] == ids[2] and ticket


# ---- api_request, errors, counter ----------------------------------------------------
def test_api_request_uses_base_url(client: HubSpot, emu: HubSpotEmulator) -> None:
    made = client.api_request({"method": "POST", "path": "/crm/v3/objects/contacts",
                               "body": {"properties": {"email": "raw@example.com"}}})
    assert made.status_code == 201 and made.headers["X-HubSpot-RateLimit-Max"] == "190"
    assert emu.objects("contacts")[0]["properties"]["email"] == "raw@example.com"


def test_unknown_property_is_a_validation_error(client: HubSpot) -> None:
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.basic_api.create(contact_input(email="e@example.com", favourite_food="x"))
    body = error_body(exc)
    assert (exc.value.status, body["category"]) == (400, "VALIDATION_ERROR")
    assert body["message"].startswith("Property values were not valid: [{\"isValid\":false")
    assert body["errors"] == [{"message": 'Property "favourite_food" does not exist', "code": "PROPERTY_DOESNT_EXIST",
                               "context": {"propertyName": ["favourite_food"]}}]
    assert body["correlationId"] and exc.value.headers["X-HubSpot-Correlation-Id"]


@pytest.mark.parametrize(("object_type", "properties", "code"), [
    ("calls", {"hs_call_direction": "SIDEWAYS", "hs_timestamp": "1704110400000"}, "INVALID_OPTION"),
    ("calls", {"hs_call_duration": "long", "hs_timestamp": "1704110400000"}, "INVALID_INTEGER"),
    ("notes", {"hs_note_body": "no time"}, "REQUIRED_FIELD"),
    ("contacts", {"email": "not-an-email"}, "INVALID_EMAIL"),
    ("contacts", {"hs_object_id": "5"}, "READ_ONLY_VALUE"),
    ("tickets", {"hs_pipeline_stage": "1", "hubspot_owner_id": "404"}, "INVALID_OPTION"),
])
def test_bad_values_name_the_property_and_code(client: HubSpot, object_type: str, properties: dict[str, str],
                                               code: str) -> None:
    with pytest.raises(hs_objects.ApiException) as exc:
        client.crm.objects.basic_api.create(object_type, {"properties": properties})
    assert exc.value.status == 400 and error_body(exc)["errors"][0]["code"] == code


def test_duplicate_email_is_a_conflict(client: HubSpot, emu: HubSpotEmulator) -> None:
    existing = emu.add("contacts", email="dup@example.com")
    with pytest.raises(hs_contacts.ApiException) as exc:
        client.crm.contacts.basic_api.create(contact_input(email="DUP@example.com"))
    body = error_body(exc)
    assert (exc.value.status, body["category"]) == (409, "CONFLICT")
    assert body["message"] == f"Contact already exists. Existing ID: {existing}"


def test_bad_token_and_missing_token_are_401(hubspot_sandbox: EmulatorServer) -> None:
    with pytest.raises(hs_contacts.ApiException) as exc:
        make_client(hubspot_sandbox.url, token="pat-wrong").crm.contacts.basic_api.get_page()
    body = error_body(exc)
    assert (exc.value.status, body["category"]) == (401, "INVALID_AUTHENTICATION")
    assert body["message"].startswith("Authentication credentials not found")
    assert requests.get(f"{hubspot_sandbox.url}/crm/v3/objects/contacts").status_code == 401


def test_malformed_json_is_a_validation_error(hubspot_sandbox: EmulatorServer) -> None:
    answer = requests.post(f"{hubspot_sandbox.url}/crm/v3/objects/contacts", data="{nope",
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"


def test_unemulated_objects_and_paths_say_so(client: HubSpot, hubspot_sandbox: EmulatorServer) -> None:
    deals = client.api_request({"method": "GET", "path": "/crm/v3/objects/deals"})
    assert deals.status_code == 501 and deals.json()["path"] == "/crm/v3/objects/deals"
    gdpr = requests.post(f"{hubspot_sandbox.url}/crm/v3/objects/contacts/gdpr-delete", json={},
                         headers={"Authorization": f"Bearer {TOKEN}"})
    assert (gdpr.status_code, gdpr.json()["method"]) == (501, "POST")
    routes = requests.get(f"{hubspot_sandbox.url}/_sandbox/routes").json()
    assert {"methods": ["POST"], "path": "/crm/v3/objects/<object_type>/search", "billable": True} in routes


def test_calls_are_counted_per_endpoint(client: HubSpot, emu: HubSpotEmulator,
                                        hubspot_sandbox: EmulatorServer) -> None:
    contact = client.crm.contacts.basic_api.create(contact_input(email="n@example.com"))
    client.crm.contacts.basic_api.get_by_id(contact.id)
    client.crm.contacts.basic_api.get_by_id(contact.id)
    calls = requests.get(f"{hubspot_sandbox.url}/_sandbox/calls").json()
    assert calls == {"total": 3, "by_endpoint": {"POST /crm/v3/objects/<object_type>": 1,
                                                 "GET /crm/v3/objects/<object_type>/<object_id>": 2}}
    assert emu.total_calls == 3
