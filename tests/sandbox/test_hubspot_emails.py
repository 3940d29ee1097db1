"""hubspot-api-client against the emulator's email engagements (`/crm/v3/objects/emails`, type 0-49).

As HubSpot's emails guide documents them: `hs_timestamp` required,
`hs_email_direction` (EMAIL, INCOMING_EMAIL, FORWARDED_EMAIL) and
`hs_email_status` (BOUNCED, FAILED, SCHEDULED, SENDING, SENT) enumerations,
`hs_email_headers` filling the read-only from/to properties, and the v4
association types email->contact 198 and email->ticket 224 (inverses 197
and 223), as the SDK's own `AssociationType` lists them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm import objects as hs_objects
from hubspot.crm.association_type import AssociationType
from hubspot.crm.associations import v4 as hs_assoc

from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.hubspot import HubSpotEmulator
from crmhub.sandbox.hubspot.catalog import default_association
from tests.sandbox.test_hubspot_conformance import emulator_of, error_body, linked_to, make_client

HEADERS = json.dumps({"from": {"email": "jane@customers.test", "firstName": "Jane", "lastName": "Doe"},
                      "to": [{"email": "support@acme.test", "firstName": "Acme", "lastName": "Support"},
                             {"email": "sales@acme.test"}], "cc": [], "bcc": []})
EMAIL = {"hs_timestamp": "2026-01-05T09:00:00Z", "hs_email_direction": "INCOMING_EMAIL", "hs_email_status": "SENT",
         "hs_email_subject": "Parcel", "hs_email_text": "My parcel is late", "hs_email_headers": HEADERS}


@pytest.fixture
def emu(hubspot_sandbox: EmulatorServer) -> HubSpotEmulator:
    return emulator_of(hubspot_sandbox)


@pytest.fixture
def client(hubspot_sandbox: EmulatorServer) -> HubSpot:
    return make_client(hubspot_sandbox.url)


def test_the_sdks_association_types_are_the_emulators() -> None:
    pairs = {("emails", "contacts"): AssociationType.EMAIL_TO_CONTACT,
             ("contacts", "emails"): AssociationType.CONTACT_TO_EMAIL,
             ("emails", "tickets"): AssociationType.EMAIL_TO_TICKET,
             ("tickets", "emails"): AssociationType.TICKET_TO_EMAIL}
    assert {pair: getattr(default_association(*pair), "type_id", None) for pair in pairs} == pairs


def test_an_email_is_created_with_its_associations_and_headers_fill_from_and_to(
        client: HubSpot, emu: HubSpotEmulator) -> None:
    contact, ticket = emu.add("contacts", email="jane@customers.test"), emu.add("tickets", subject="t")
    created = client.crm.objects.emails.basic_api.create(hs_objects.SimplePublicObjectInputForCreate(
        properties=EMAIL, associations=[*linked_to(contact, 198), *linked_to(ticket, 224)]))
    assert created.properties["hs_timestamp"] == "2026-01-05T09:00:00.000Z"
    assert {k: created.properties.get(k) for k in ("hs_email_from_email", "hs_email_from_firstname",
                                                   "hs_email_from_lastname", "hs_email_to_email",
                                                   "hs_email_to_firstname", "hs_email_to_lastname")} == {
        "hs_email_from_email": "jane@customers.test", "hs_email_from_firstname": "Jane",
        "hs_email_from_lastname": "Doe", "hs_email_to_email": "support@acme.test;sales@acme.test",
        "hs_email_to_firstname": "Acme", "hs_email_to_lastname": "Support"}
    assert emu.associated("contacts", contact, "emails") == {created.id: [197]}
    assert emu.associated("tickets", ticket, "emails") == {created.id: [223]}
    read = client.crm.objects.basic_api.get_by_id("0-49", created.id, properties=["hs_email_subject"],
                                                  associations=["contacts", "tickets"])
    assert read.properties["hs_email_subject"] == "Parcel"
    assert [(a.id, a.type) for a in read.associations["contacts"].results] == [(contact, "email_to_contact")]
    assert [(a.id, a.type) for a in read.associations["tickets"].results] == [(ticket, "email_to_ticket")]


def test_emails_batch_create_read_by_key_search_and_association_reads(client: HubSpot, emu: HubSpotEmulator) -> None:
    """The calls crmhub makes: batch create under `crmhub_key`, batch read by it, v4 batch association read and
    archive."""
    client.crm.properties.core_api.create("emails", {"name": "crmhub_key", "label": "crmhub key", "type": "string",
                                                     "fieldType": "text", "groupName": "email",
                                                     "hasUniqueValue": True})
    contact = emu.add("contacts", email="jane@customers.test")
    batch = client.crm.objects.batch_api
    made = batch.create("emails", hs_objects.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        {"properties": {**EMAIL, "crmhub_key": f"email:m{i}"}, "objectWriteTraceId": f"email:m{i}",
         "associations": linked_to(contact, 198)} for i in range(2)]))
    assert sorted(r.properties["crmhub_key"] for r in made.results) == ["email:m0", "email:m1"]
    read = batch.read("emails", hs_objects.BatchReadInputSimplePublicObjectId(
        id_property="crmhub_key", properties=["crmhub_key"], inputs=[{"id": "email:m1"}, {"id": "email:nope"}]))
    assert [r.properties["crmhub_key"] for r in read.results] == ["email:m1"] and read.num_errors == 1
    found = client.crm.objects.emails.search_api.do_search({"filterGroups": [{"filters": [
        {"propertyName": "hs_email_direction", "operator": "EQ", "value": "INCOMING_EMAIL"}]}],
        "properties": ["crmhub_key"]})
    assert found.total == 2
    associations = client.crm.associations.v4.batch_api
    page = associations.get_page("emails", "contacts", hs_assoc.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[{"id": r.id} for r in made.results]))
    assert {(r._from.id, r.to[0].to_object_id, r.to[0].association_types[0].type_id) for r in page.results} == {
        (r.id, contact, 198) for r in made.results}
    associations.archive("emails", "contacts", hs_assoc.BatchInputPublicAssociationMultiArchive(
        inputs=[{"from": {"id": made.results[0].id}, "to": [{"id": contact}]}]))
    assert emu.associated("contacts", contact, "emails") == {made.results[1].id: [197]}


@pytest.mark.parametrize(("properties", "code"), [
    ({**EMAIL, "hs_email_direction": "OUTGOING"}, "INVALID_OPTION"),
    ({**EMAIL, "hs_email_status": "DELIVERED"}, "INVALID_OPTION"),
    ({**EMAIL, "hs_email_from_email": "x@example.com"}, "READ_ONLY_VALUE"),
    ({k: v for k, v in EMAIL.items() if k != "hs_timestamp"}, "REQUIRED_FIELD"),
])
def test_bad_email_values_are_refused(client: HubSpot, emu: HubSpotEmulator, properties: dict[str, str],
                                      code: str) -> None:
    with pytest.raises(hs_objects.ApiException) as exc:
        client.crm.objects.basic_api.create("emails", {"properties": properties})
    assert exc.value.status == 400 and error_body(exc)["errors"][0]["code"] == code
    assert emu.objects("emails") == []


def test_reading_emails_takes_a_contacts_scope_or_sales_email_read(hubspot_sandbox: EmulatorServer,
                                                                   emu: HubSpotEmulator) -> None:
    def token(name: str, scopes: list[str]) -> Any:
        requests.post(f"{hubspot_sandbox.url}/_sandbox/tokens", json={"token": name, "scopes": scopes},
                      timeout=10).raise_for_status()
        return make_client(hubspot_sandbox.url, token=name).crm.objects.basic_api

    emu.add("emails", **EMAIL)
    assert len(token("email-reader", ["sales-email-read"]).get_page("emails").results) == 1
    with pytest.raises(hs_objects.ApiException) as exc:
        token("email-reader", ["sales-email-read"]).create("emails", {"properties": EMAIL})
    assert exc.value.status == 403 and error_body(exc)["category"] == "MISSING_SCOPES"
    with pytest.raises(hs_objects.ApiException) as exc:
        token("tickets-only", ["tickets"]).get_page("emails")
    assert error_body(exc)["errors"][0]["context"]["requiredGranularScopes"] == [
        "crm.objects.contacts.read", "sales-email-read"]
