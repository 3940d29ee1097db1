"""simple-salesforce, unchanged, against the Salesforce emulator: every emulated endpoint.

The SDK is pointed at the emulator only through its public knobs: `session=`
(a build_session adapter), `instance_url=`/`session_id=`, and the login
arguments; assertions look at both the SDK's answers and the emulator state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USERNAME,
    SalesforceEmulator,
)
from crmhub.sandbox.salesforce.ids import make_id
from crmhub.sandbox.salesforce.models import sf_datetime
from crmhub.sandbox.salesforce.urls import ENDPOINTS

API = "/services/data/v59.0"
MISSING_CONTACT = make_id("003", 10**6)  # well formed, never created


def emulator_of(server: EmulatorServer) -> SalesforceEmulator:
    emulator = server.emulator
    assert isinstance(emulator, SalesforceEmulator)
    return emulator


@pytest.fixture
def em(salesforce_sandbox: EmulatorServer) -> SalesforceEmulator:
    return emulator_of(salesforce_sandbox)


@pytest.fixture
def sf(salesforce_sandbox: EmulatorServer, em: SalesforceEmulator) -> Salesforce:
    """A direct-session client: instance_url + session_id, the SDK's no-login flow."""
    url = salesforce_sandbox.url
    return Salesforce(instance_url=url, session_id=em.issue_token(), session=build_session(base_url=url))


def error_of(exc: pytest.ExceptionInfo[Any]) -> dict[str, Any]:
    """The first error item of a simple-salesforce exception's JSON body."""
    content = exc.value.content
    assert isinstance(content, list), content
    first: dict[str, Any] = content[0]
    return first


# ---- versions and logins -----------------------------------------------------------
def test_versions_list_is_public_and_not_billed(salesforce_sandbox: EmulatorServer, em: SalesforceEmulator) -> None:
    answer = requests.get(f"{salesforce_sandbox.url}/services/data/", timeout=5)
    assert answer.json() == [{"label": "Winter '24", "url": API, "version": "59.0"}]
    assert "Sforce-Limit-Info" not in answer.headers
    assert em.total_calls == 0


def test_oauth_password_flow_logs_in_and_token_calls_are_free(salesforce_sandbox: EmulatorServer,
                                                              em: SalesforceEmulator) -> None:
    sf = Salesforce(username=INTEGRATION_USERNAME, password=INTEGRATION_PASSWORD, consumer_key=DEFAULT_CLIENT_ID,
                    consumer_secret=DEFAULT_CLIENT_SECRET, session=build_session(base_url=salesforce_sandbox.url))
    assert sf.sf_instance == f"127.0.0.1:{salesforce_sandbox.port}"
    assert sf.session_id in em.state["tokens"]
    assert em.total_calls == 0  # POST /services/oauth2/token is not billable
    assert sf.query("SELECT Id FROM User")["totalSize"] == 1
    assert dict(em.calls) == {f"GET {API}/query": 1}


def test_client_credentials_flow_runs_as_the_clients_user(salesforce_sandbox: EmulatorServer,
                                                          em: SalesforceEmulator) -> None:
    agent = em.add_user("agent@sandbox.crmhub.test", "pw", name="Agent Smith")
    em.add_oauth_client("other-app", "other-secret", run_as="agent@sandbox.crmhub.test")
    sf = Salesforce(consumer_key="other-app", consumer_secret="other-secret", domain="sandbox.my",
                    session=build_session(base_url=salesforce_sandbox.url))
    created = sf.Account.create({"Name": "Acme"})
    assert em.record(created["id"])["OwnerId"] == agent  # type: ignore[index]  # the record exists


def test_soap_login_with_security_token(salesforce_sandbox: EmulatorServer, em: SalesforceEmulator) -> None:
    user_id = em.add_user("soap@sandbox.crmhub.test", "secret&<pw>", security_token="TOKEN1")
    sf = Salesforce(username="soap@sandbox.crmhub.test", password="secret&<pw>", security_token="TOKEN1",
                    session=build_session(base_url=salesforce_sandbox.url))
    assert sf.sf_instance == f"127.0.0.1:{salesforce_sandbox.port}"
    assert em.state["tokens"][sf.session_id]["user_id"] == user_id
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(username="soap@sandbox.crmhub.test", password="secret&<pw>", security_token="WRONG",
                   session=build_session(base_url=salesforce_sandbox.url))
    assert exc.value.code == "INVALID_LOGIN"


@pytest.mark.parametrize(("login", "code", "description"), [
    ({"password": "nope"}, "invalid_grant", "authentication failure"),
    ({"consumer_key": "unknown-app"}, "invalid_client_id", "client identifier invalid"),
    ({"consumer_secret": "wrong"}, "invalid_client", "invalid client credentials"),
])
def test_oauth_errors_surface_as_authentication_failed(salesforce_sandbox: EmulatorServer, login: dict[str, str],
                                                       code: str, description: str) -> None:
    arguments = {"username": INTEGRATION_USERNAME, "password": INTEGRATION_PASSWORD,
                 "consumer_key": DEFAULT_CLIENT_ID, "consumer_secret": DEFAULT_CLIENT_SECRET, **login}
    with pytest.raises(SalesforceAuthenticationFailed) as exc:
        Salesforce(**arguments, session=build_session(base_url=salesforce_sandbox.url))
    assert (exc.value.code, exc.value.auth_message) == (code, description)


def test_token_answer_has_salesforce_fields_and_a_valid_signature(salesforce_sandbox: EmulatorServer,
                                                                  em: SalesforceEmulator) -> None:
    answer = requests.post(f"{salesforce_sandbox.url}/services/oauth2/token", timeout=5, data={
        "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET})
    body = answer.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"}
    assert body["instance_url"] == salesforce_sandbox.url
    assert body["id"] == f"{salesforce_sandbox.url}/id/{em.state['org_id']}/{em.integration_user_id}"
    assert body["token_type"] == "Bearer" and body["issued_at"].isdigit()
    digest = hmac.new(DEFAULT_CLIENT_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256)
    assert body["signature"] == base64.b64encode(digest.digest()).decode()
    unsupported = requests.post(f"{salesforce_sandbox.url}/services/oauth2/token", timeout=5,
                                data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"})
    assert (unsupported.status_code, unsupported.json()["error"]) == (400, "unsupported_grant_type")


# ---- describe ----------------------------------------------------------------------------
def test_describe_global_lists_every_object_with_its_key_prefix(sf: Salesforce) -> None:
    prefixes = {o["name"]: o["keyPrefix"] for o in sf.describe()["sobjects"]}  # type: ignore[index]
    assert prefixes == {"Account": "001", "Contact": "003", "Lead": "00Q", "Case": "500", "Task": "00T",
                        "CaseComment": "00a", "Group": "00G", "User": "005"}
    assert sf.Contact.metadata()["objectDescribe"]["urls"]["describe"] == f"{API}/sobjects/Contact/describe"


def test_describe_fields_carry_metadata_and_custom_fields_join_them(sf: Salesforce, em: SalesforceEmulator) -> None:
    task = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert (task["Crmhub_Key__c"]["externalId"], task["Crmhub_Key__c"]["unique"], task["Crmhub_Key__c"]["custom"]) \
        == (True, True, True)
    assert task["Status"]["defaultValue"] == "Not Started" and task["Status"]["type"] == "picklist"
    assert task["ActivityDate"]["type"] == "date" and task["WhoId"]["referenceTo"] == ["Contact", "Lead"]
    contact = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    assert contact["LastName"]["nillable"] is False and contact["Name"]["createable"] is False
    assert contact["X_Handle__c"]["custom"] is True and contact["Id"]["type"] == "id"
    em.define_field("Contact", "WhatsApp__c", "phone", external_id=True)
    assert "WhatsApp__c" in [f["name"] for f in sf.Contact.describe()["fields"]]
    created = sf.Contact.create({"LastName": "Wa", "WhatsApp__c": "+15550001"})
    assert sf.query("SELECT Id FROM Contact WHERE WhatsApp__c = '+15550001'")["records"][0]["Id"] == created["id"]


def test_unknown_object_is_not_found(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Widget__c.describe()
    assert error_of(exc) == {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}


# ---- sObject rows ------------------------------------------------------------------------------
def test_create_get_update_delete_round_trip(sf: Salesforce, em: SalesforceEmulator) -> None:
    created = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com",
                                 "X_Handle__c": "@ada", "Tier__c": "Gold"})
    assert created["success"] is True and created["errors"] == []
    contact_id = created["id"]
    assert re.fullmatch(r"0038d[0-9A-Za-z]{13}", contact_id)
    record = sf.Contact.get(contact_id)
    assert record["attributes"] == {"type": "Contact", "url": f"{API}/sobjects/Contact/{contact_id}"}
    assert (record["Name"], record["OwnerId"], record["IsDeleted"]) == ("Ada Lovelace", em.integration_user_id, False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", record["CreatedDate"])
    assert list(sf.Contact.get(contact_id, params={"fields": "Email,id"})) == ["attributes", "Email", "Id"]
    em.clock.advance(5)
    assert sf.Contact.update(contact_id, {"Phone": "+1 555 0100"}) == 204
    stored = em.record(contact_id)
    assert stored is not None and stored["Phone"] == "+1 555 0100"
    assert stored["LastModifiedDate"] > stored["CreatedDate"] and stored["SystemModstamp"] == stored["LastModifiedDate"]
    assert sf.Contact.get(contact_id[:15])["Id"] == contact_id  # 15-character ids work too
    assert sf.Contact.delete(contact_id) == 204
    assert em.record(contact_id)["IsDeleted"] is True  # type: ignore[index]  # still in the recycle bin
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Contact.get(contact_id)
    assert error_of(exc) == {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.delete(contact_id)


def test_get_of_a_missing_record_and_unknown_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Contact.get("003000000000000AAA")
    assert error_of(exc)["errorCode"] == "NOT_FOUND"
    contact_id = sf.Contact.create({"LastName": "X"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as bad:
        sf.Contact.get(contact_id, params={"fields": "Nope"})
    assert error_of(bad)["errorCode"] == "INVALID_FIELD"


@pytest.mark.parametrize(("sobject", "body", "code", "fields"), [
    ("Contact", {"FirstName": "No last name"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
    ("Lead", {"LastName": "L"}, "REQUIRED_FIELD_MISSING", ["Company"]),
    ("CaseComment", {"CommentBody": "orphan"}, "REQUIRED_FIELD_MISSING", ["ParentId"]),
    ("Case", {"CaseNumber": "1"}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["CaseNumber"]),
    ("Contact", {"LastName": "X", "Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
    ("Contact", {"LastName": "X" * 81}, "STRING_TOO_LONG", ["LastName"]),
    ("Task", {"WhoId": "garbage"}, "MALFORMED_ID", ["WhoId"]),
    ("Task", {"WhoId": "0018d0000000001AAA"}, "FIELD_INTEGRITY_EXCEPTION", ["WhoId"]),
    ("Task", {"WhoId": MISSING_CONTACT}, "INVALID_CROSS_REFERENCE_KEY", ["WhoId"]),
    ("Task", {"CallDurationInSeconds": "long"}, "INVALID_TYPE_ON_FIELD_IN_RECORD", ["CallDurationInSeconds"]),
    ("User", {"Name": "x"}, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", None),
])
def test_create_validation_errors(sf: Salesforce, em: SalesforceEmulator, sobject: str, body: dict[str, Any],
                                  code: str, fields: list[str] | None) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        getattr(sf, sobject).create(body)
    assert error_of(exc)["errorCode"] == code
    assert error_of(exc).get("fields") == fields
    assert len(em.records(sobject)) == (1 if sobject == "User" else 0)  # nothing written (User: the default one)


def test_unknown_field_on_create_is_invalid_field(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create({"LastName": "X", "GenderIdentity": "x"})
    assert error_of(exc) == {"message": "No such column 'GenderIdentity' on sobject of type Contact",
                             "errorCode": "INVALID_FIELD"}


def test_case_numbering_closing_and_queue_ownership(sf: Salesforce, em: SalesforceEmulator) -> None:
    queue = em.add_queue("Support SMS", "Support_SMS")
    first = sf.Case.create({"Subject": "Help", "Origin": "SMS", "OwnerId": queue})["id"]
    second = sf.Case.create({"Subject": "Again"})["id"]
    case = sf.Case.get(first)
    assert (case["CaseNumber"], case["Status"], case["Priority"], case["IsClosed"], case["ClosedDate"]) \
        == ("00001001", "New", "Medium", False, None)
    assert case["OwnerId"] == queue and sf.Case.get(second)["CaseNumber"] == "00001002"
    sf.Case.update(first, {"Status": "Closed"})
    closed = em.record(first)
    assert closed is not None and closed["IsClosed"] is True and closed["ClosedDate"] == closed["LastModifiedDate"]
    sf.Case.update(first, {"Status": "Working"})
    assert em.record(first)["ClosedDate"] is None  # type: ignore[index]  # reopened
    group = sf.query(f"SELECT Name, DeveloperName, Type FROM Group WHERE Id = '{queue}'")["records"][0]
    assert (group["Name"], group["DeveloperName"], group["Type"]) == ("Support SMS", "Support_SMS", "Queue")


def test_task_defaults_and_activity_fields(sf: Salesforce, em: SalesforceEmulator) -> None:
    contact = em.insert("Contact", LastName="Caller", MobilePhone="+15550100")
    task_id = sf.Task.create({"Subject": "Call", "TaskSubtype": "Call", "WhoId": contact, "ActivityDate": "2024-03-01",
                              "CallDurationInSeconds": 42, "CallType": "Inbound"})["id"]
    task = sf.Task.get(task_id)
    assert (task["Status"], task["Priority"], task["IsClosed"], task["ActivityDate"]) \
        == ("Not Started", "Normal", False, "2024-03-01")
    sf.Task.update(task_id, {"Status": "Completed"})
    assert em.record(task_id)["IsClosed"] is True  # type: ignore[index]  # the task exists
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.update(task_id, {"TaskSubtype": "Email"})
    assert error_of(exc)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_case_comment_by_an_agent_keeps_its_audit_fields(sf: Salesforce, em: SalesforceEmulator) -> None:
    agent = em.add_user("agent@sandbox.crmhub.test", "pw")
    case = em.insert("Case", Subject="Q")
    comment = em.insert("CaseComment", ParentId=case, CommentBody="We are on it", IsPublished=True, CreatedById=agent)
    rows = sf.query(f"SELECT Id, CommentBody, CreatedById FROM CaseComment WHERE ParentId = '{case}' "
                    "AND IsPublished = TRUE")["records"]
    assert [(r["Id"], r["CreatedById"]) for r in rows] == [(comment, agent)]


# ---- external ids ----------------------------------------------------------------------------
def test_upsert_creates_then_updates_by_external_id(sf: Salesforce, em: SalesforceEmulator) -> None:
    created = sf.Task.upsert("Crmhub_Key__c/sms:SM1", {"Subject": "SMS in"}, raw_response=True)
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "success": True, "errors": [], "created": True}
    updated = sf.Task.upsert("Crmhub_Key__c/sms:SM1", {"Subject": "SMS in (edited)"}, raw_response=True)
    assert updated.status_code == 200 and updated.json()["created"] is False
    assert updated.json()["id"] == created.json()["id"]
    assert [t["Subject"] for t in em.records("Task")] == ["SMS in (edited)"]
    assert sf.Task.get_by_custom_id("Crmhub_Key__c", "sms:SM1")["Subject"] == "SMS in (edited)"


def test_collection_upsert_of_an_existing_record_refuses_a_create_only_field(
        sf: Salesforce, em: SalesforceEmulator) -> None:
    """TaskSubtype is createable, not updateable: an upsert that finds the record refuses it, that record only."""
    def upsert(*records: dict[str, Any]) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "records": [{"attributes": {"type": "Task"}, **r} for r in records]}
        answer: list[dict[str, Any]] = sf.restful("composite/sobjects/Task/Crmhub_Key__c", method="PATCH",
                                                  json=body)
        return answer

    [first] = upsert({"Crmhub_Key__c": "sms:SM1", "Subject": "in", "TaskSubtype": "Task"})
    assert first["success"] is True and first["created"] is True
    refused, other = upsert({"Crmhub_Key__c": "sms:SM1", "Subject": "again", "TaskSubtype": "Task"},
                            {"Crmhub_Key__c": "sms:SM2", "Subject": "new", "TaskSubtype": "Call"})
    assert refused["success"] is False and refused["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert refused["errors"][0]["fields"] == ["TaskSubtype"]
    assert other["success"] is True and other["created"] is True
    assert em.record(first["id"])["Subject"] == "in"  # type: ignore[index]  # the refused update changed nothing
    [updated] = upsert({"Crmhub_Key__c": "sms:SM1", "Subject": "again"})
    assert updated["success"] is True and updated["created"] is False and updated["id"] == first["id"]


def test_unique_external_id_clash_is_duplicate_value(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.insert("Task", Subject="a", Crmhub_Key__c="k1")
    other = em.insert("Task", Subject="b", Crmhub_Key__c="k2")
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.update(other, {"Crmhub_Key__c": "K1"})
    assert error_of(exc)["errorCode"] == "DUPLICATE_VALUE"
    assert "Crmhub_Key__c duplicates value on record with id" in error_of(exc)["message"]


def test_upsert_errors_not_external_and_several_matches(sf: Salesforce, em: SalesforceEmulator) -> None:
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Contact.upsert("Email/a@b.co", {"LastName": "x"})
    assert error_of(exc)["message"] == "Provided external ID field does not exist or is not accessible: Email"
    first = em.insert("Case", Crmhub_Conversation__c="conv-1")
    second = em.insert("Case", Crmhub_Conversation__c="conv-1")  # external id, but not unique
    with pytest.raises(SalesforceMoreThanOneRecord) as many:
        sf.Case.upsert("Crmhub_Conversation__c/conv-1", {"Subject": "x"})
    assert many.value.content == [f"{API}/sobjects/Case/{first}", f"{API}/sobjects/Case/{second}"]
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Case.get_by_custom_id("Crmhub_Conversation__c", "conv-1")
    with pytest.raises(SalesforceResourceNotFound):
        sf.Case.get_by_custom_id("Crmhub_Conversation__c", "conv-2")


# ---- SOQL ---------------------------------------------------------------------------------------
@pytest.fixture
def people(em: SalesforceEmulator) -> dict[str, str]:
    """Five contacts created one sandbox second apart (CreatedDate 0..4 s after `start`)."""
    specs = [("Ann", "Lee", "ann@a.com", "Gold", None), ("Bob", "Kay", "bob@b.com", None, "@bob"),
             ("Cid", "O'Hara", None, "Gold", "@cid"), ("Dee", "Lee", "dee@a.com", "Platinum", None),
             (None, "Zed", "zed@z.com", None, "@zed")]
    ids = {}
    for first, last, email, tier, handle in specs:
        ids[last if first is None else first] = em.insert(
            "Contact", FirstName=first, LastName=last, Email=email, Tier__c=tier, X_Handle__c=handle)
        em.clock.advance(1)
    return ids


def names(result: dict[str, Any]) -> list[str]:
    return [r["Name"] for r in result["records"]]


@pytest.mark.parametrize(("where", "expected"), [
    ("LastName = 'lee'", ["Ann Lee", "Dee Lee"]),  # text compares case-insensitively
    ("LastName != 'Lee' AND Email != null", ["Bob Kay", "Zed"]),
    ("Email = NULL", ["Cid O'Hara"]),
    ("LastName = 'O\\'Hara'", ["Cid O'Hara"]),
    ("Tier__c IN ('Gold', 'Platinum')", ["Ann Lee", "Cid O'Hara", "Dee Lee"]),
    ("Tier__c NOT IN ('Gold')", ["Bob Kay", "Dee Lee", "Zed"]),
    ("Email LIKE '%@a.com'", ["Ann Lee", "Dee Lee"]),
    ("X_Handle__c LIKE '@_o%'", ["Bob Kay"]),
    ("NOT (LastName = 'Lee' OR Tier__c = 'Gold')", ["Bob Kay", "Zed"]),
    ("(FirstName = 'Ann' OR FirstName = 'Bob') AND (Email LIKE 'b%')", ["Bob Kay"]),
    ("IsDeleted = FALSE AND LastName < 'L'", ["Bob Kay"]),
    ("LastName >= 'Lee' AND LastName <= 'OZ'", ["Ann Lee", "Cid O'Hara", "Dee Lee"]),
])
@pytest.mark.usefixtures("people")
def test_soql_where_operators(sf: Salesforce, where: str, expected: list[str]) -> None:
    assert names(sf.query(f"SELECT Name FROM Contact WHERE {where} ORDER BY Name")) == expected


def test_soql_datetime_and_id_comparisons(sf: Salesforce, em: SalesforceEmulator, people: dict[str, str]) -> None:
    third = em.record(people["Cid"])
    assert third is not None
    stamp = third["SystemModstamp"].replace(".000+0000", "Z")[:19] + "Z"
    later = sf.query(f"SELECT Name FROM Contact WHERE SystemModstamp >= {stamp} ORDER BY SystemModstamp")
    assert names(later) == ["Cid O'Hara", "Dee Lee", "Zed"]
    earlier = sf.query(f"SELECT Name FROM Contact WHERE CreatedDate < {stamp[:19]}+00:00 ORDER BY CreatedDate DESC")
    assert names(earlier) == ["Bob Kay", "Ann Lee"]
    by_id = sf.query(f"SELECT Name FROM Contact WHERE Id IN ('{people['Ann'][:15]}', '{people['Zed']}')")
    assert sorted(names(by_id)) == ["Ann Lee", "Zed"]


@pytest.mark.usefixtures("people")
def test_soql_order_limit_offset_and_count(sf: Salesforce) -> None:
    ordered = sf.query("select name from contact order by Tier__c desc nulls last, FirstName asc limit 4")
    assert names(ordered) == ["Dee Lee", "Ann Lee", "Cid O'Hara", "Zed"]  # nulls sort first unless told
    assert names(sf.query("SELECT Name FROM Contact ORDER BY Email NULLS FIRST LIMIT 2 OFFSET 1")) \
        == ["Ann Lee", "Bob Kay"]
    counted = sf.query("SELECT COUNT() FROM Contact WHERE LastName = 'Lee'")
    assert (counted["totalSize"], counted["records"]) == (2, [])
    record = sf.query("SELECT Id, Email FROM Contact WHERE FirstName = 'Ann'")["records"][0]
    assert list(record) == ["attributes", "Id", "Email"]


@pytest.mark.parametrize(("soql", "code", "detail"), [
    ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "ERROR at Row:1:Column:29\nunexpected token: <EOF>"),
    ("SELECT Id Contact", "MALFORMED_QUERY", "unexpected token: 'Contact'"),
    ("SELECT Naem FROM Contact", "INVALID_FIELD", "ERROR at Row:1:Column:8\nNo such column 'Naem' on entity 'Contact'"),
    ("SELECT Id FROM Contact123", "INVALID_TYPE", "sObject type 'Contact123' is not supported."),
    ("SELECT Id FROM Contact WHERE CreatedDate > '2024-01-01'", "INVALID_QUERY_FILTER_OPERATOR",
     "must be of type dateTime and should not be enclosed in quotes"),
    ("SELECT Id FROM Contact WHERE Id = 'xyz'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: xyz"),
    ("SELECT Owner.Name FROM Contact", "INVALID_FIELD", "Didn't understand relationship 'Owner'"),
])
def test_soql_errors_have_salesforce_codes(sf: Salesforce, soql: str, code: str, detail: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query(soql)
    assert error_of(exc)["errorCode"] == code
    assert detail in error_of(exc)["message"]


def test_query_all_pages_with_batch_size_header(sf: Salesforce, em: SalesforceEmulator) -> None:
    for n in range(450):
        em.insert("Contact", LastName=f"P{n:03d}")
    first = sf.query("SELECT Id, LastName FROM Contact ORDER BY LastName",
                     headers={"Sforce-Query-Options": "batchSize=200"})
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert re.fullmatch(rf"{API}/query/01g8d[0-9A-Za-z]{{13}}-200", first["nextRecordsUrl"])
    everything = sf.query_all("SELECT Id, LastName FROM Contact ORDER BY LastName",
                              headers={"Sforce-Query-Options": "batchSize=200"})
    assert [r["LastName"] for r in everything["records"]] == [f"P{n:03d}" for n in range(450)]
    assert em.calls[f"GET {API}/query/<locator>"] == 2  # pages 2 and 3 of the query_all
    assert em.state["cursors"] == {k: v for k, v in em.state["cursors"].items() if k in first["nextRecordsUrl"]}


def test_default_batch_is_2000_and_small_batch_sizes_are_raised_to_200(sf: Salesforce, em: SalesforceEmulator) -> None:
    for n in range(2001):
        em.insert("Account", Name=f"A{n}")
    page = sf.query("SELECT Id FROM Account")
    assert (len(page["records"]), page["nextRecordsUrl"].endswith("-2000")) == (2000, True)
    rest = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    assert (len(rest["records"]), rest["done"], rest["totalSize"]) == (1, True, 2001)
    small = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=5"})
    assert len(small["records"]) == 200
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)  # that cursor is used up
    assert error_of(exc)["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_sees_deleted_records(sf: Salesforce, em: SalesforceEmulator) -> None:
    kept, gone = em.insert("Lead", LastName="Kept", Company="C"), em.insert("Lead", LastName="Gone", Company="C")
    em.delete("Lead", gone)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Lead")["records"]] == [kept]
    every = sf.query("SELECT Id, IsDeleted FROM Lead", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in every["records"]] == [(kept, False), (gone, True)]
    assert em.calls[f"GET {API}/queryAll"] == 1


def test_updated_and_deleted_replication_resources(sf: Salesforce, em: SalesforceEmulator) -> None:
    start = em.clock.now() - timedelta(minutes=1)
    kept, gone = em.insert("Contact", LastName="Kept"), em.insert("Contact", LastName="Gone")
    em.delete("Contact", gone)
    em.clock.advance(120)
    end = em.clock.now()
    updated = sf.Contact.updated(start, end)
    assert updated == {"ids": [kept], "latestDateCovered": sf_datetime(end.replace(second=0, microsecond=0))}
    deleted = sf.Contact.deleted(start, end)
    assert deleted["deletedRecords"] == [{"id": gone, "deletedDate": em.record(gone)["SystemModstamp"]}]  # type: ignore[index]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.updated(end - timedelta(days=31), end)
    assert error_of(exc)["errorCode"] == "INVALID_REPLICATION_DATE"


# ---- sObject Collections ------------------------------------------------------------------------
def collection(*records: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"attributes": {"type": r.pop("type")}, **r} for r in records]


def test_collection_create_mixed_types_with_one_failure(sf: Salesforce, em: SalesforceEmulator) -> None:
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": collection(
        {"type": "Account", "Name": "Acme"}, {"type": "Contact", "FirstName": "NoLast"},
        {"type": "Contact", "LastName": "Ok"})})
    assert [r["success"] for r in results] == [True, False, True]  # type: ignore[union-attr]
    assert results[1] == {"success": False, "errors": [{  # type: ignore[index]
        "statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]",
        "fields": ["LastName"]}]}
    assert [c["LastName"] for c in em.records("Contact")] == ["Ok"] and len(em.records("Account")) == 1
    assert em.calls[f"POST {API}/composite/sobjects"] == 1


def test_collection_all_or_none_rolls_everything_back(sf: Salesforce, em: SalesforceEmulator) -> None:
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": collection(
        {"type": "Task", "Subject": "a", "Crmhub_Key__c": "dup"},
        {"type": "Task", "Subject": "b", "Crmhub_Key__c": "dup"})})
    assert [(r["success"], r["errors"][0]["statusCode"]) for r in results] == [  # type: ignore[union-attr]
        (False, "ALL_OR_NONE_OPERATION_ROLLED_BACK"), (False, "DUPLICATE_VALUE")]
    assert em.records("Task") == []


def test_collection_update_retrieve_and_delete(sf: Salesforce, em: SalesforceEmulator) -> None:
    a, b = em.insert("Contact", LastName="A"), em.insert("Contact", LastName="B")
    updated = sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Contact"}, "id": a, "Email": "a@x.io"},
        {"attributes": {"type": "Contact"}, "id": MISSING_CONTACT, "Email": "z@x.io"}]})
    outcome = [(r["id"], r["success"]) for r in updated]  # type: ignore[union-attr]
    assert outcome == [(a, True), (MISSING_CONTACT, False)]
    fetched = sf.restful("composite/sobjects/Contact", params={"ids": f"{a},{b},{MISSING_CONTACT}",
                                                               "fields": "Email,LastName"})
    assert [(r or {}).get("Email") for r in fetched] == ["a@x.io", None, None]  # type: ignore[union-attr]
    assert fetched[2] is None  # type: ignore[index]
    posted = sf.restful("composite/sobjects/Contact", method="POST", json={"ids": [b], "fields": ["LastName"]})
    assert posted == [{"attributes": {"type": "Contact", "url": f"{API}/sobjects/Contact/{b}"}, "LastName": "B"}]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{a},{b}", "allOrNone": "false"})
    assert deleted == [{"id": a, "success": True, "errors": []}, {"id": b, "success": True, "errors": []}]
    assert em.records("Contact") == []


def test_collection_upsert_by_external_id(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.insert("Task", Subject="old", Crmhub_Key__c="k1")
    results = sf.restful("composite/sobjects/Task/Crmhub_Key__c", method="PATCH", json={"records": collection(
        {"type": "Task", "Crmhub_Key__c": "k1", "Subject": "new"}, {"type": "Task", "Crmhub_Key__c": "k2"})})
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True)]  # type: ignore[union-attr]
    assert sorted((t["Crmhub_Key__c"], t["Subject"]) for t in em.records("Task")) == [("k1", "new"), ("k2", None)]


def test_collection_over_200_records_is_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite/sobjects", method="POST",
                   json={"records": collection(*({"type": "Account", "Name": f"{n}"} for n in range(201)))})
    assert error_of(exc)["errorCode"] == "EXCEEDED_ID_LIMIT"


# ---- Composite ---------------------------------------------------------------------------------------
def sub(reference: str, method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"referenceId": reference, "method": method, "url": f"{API}/{url}", **({"body": body} if body else {})}


def test_composite_chains_references_and_counts_as_one_call(sf: Salesforce, em: SalesforceEmulator) -> None:
    answer = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        sub("contact", "POST", "sobjects/Contact", {"LastName": "Ref"}),
        sub("case", "POST", "sobjects/Case", {"Subject": "S", "ContactId": "@{contact.id}"}),
        sub("read", "GET", "query?q=SELECT+Id,ContactId+FROM+Case"),
        sub("task", "POST", "sobjects/Task", {"WhatId": "@{read.records[0].Id}", "WhoId": "@{contact.id}"}),
    ]})
    results = answer["compositeResponse"]  # type: ignore[index]
    assert [r["httpStatusCode"] for r in results] == [201, 201, 200, 201]
    assert results[0]["httpHeaders"]["Location"] == f"{API}/sobjects/Contact/{results[0]['body']['id']}"
    case = em.records("Case")[0]
    assert case["ContactId"] == results[0]["body"]["id"]
    assert em.records("Task")[0]["WhatId"] == case["Id"]
    assert dict(em.calls) == {f"POST {API}/composite": 1}


def test_composite_all_or_none_halts_and_rolls_back(sf: Salesforce, em: SalesforceEmulator) -> None:
    answer = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        sub("ok", "POST", "sobjects/Account", {"Name": "Kept?"}),
        sub("bad", "POST", "sobjects/Contact", {"Email": "x@y.zz"}),
        sub("after", "POST", "sobjects/Account", {"Name": "Never"}),
    ]})
    results = answer["compositeResponse"]  # type: ignore[index]
    assert [(r["referenceId"], r["httpStatusCode"], r["body"][0]["errorCode"]) for r in results] == [
        ("ok", 400, "PROCESSING_HALTED"), ("bad", 400, "REQUIRED_FIELD_MISSING"), ("after", 400, "PROCESSING_HALTED")]
    assert em.records("Account") == [] and em.records("Contact") == []


def test_composite_without_all_or_none_skips_only_dependents(sf: Salesforce, em: SalesforceEmulator) -> None:
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [
        sub("bad", "POST", "sobjects/Contact", {"FirstName": "x"}),
        sub("dependent", "POST", "sobjects/Task", {"WhoId": "@{bad.id}"}),
        sub("independent", "POST", "sobjects/Account", {"Name": "Fine"}),
        sub("elsewhere", "GET", "search?q=FIND+{x}"),
    ]})
    results = answer["compositeResponse"]  # type: ignore[index]
    assert [r["httpStatusCode"] for r in results] == [400, 400, 201, 501]
    assert results[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert "No value for bad.id found in bad" in results[1]["body"][0]["message"]
    assert [a["Name"] for a in em.records("Account")] == ["Fine"] and em.records("Task") == []


def test_composite_subrequest_limits(sf: Salesforce, em: SalesforceEmulator) -> None:
    upsert = "composite/sobjects/Task/Crmhub_Key__c"
    heavy = [sub(f"r{n}", "PATCH", upsert, {"records": []}) for n in range(5)]
    for extra in (sub("q", "GET", "query?q=SELECT+Id+FROM+Task"), sub("c", "PATCH", "composite/sobjects",
                                                                      {"records": []})):
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.restful("composite", method="POST", json={"compositeRequest": [*heavy, extra]})
        assert error_of(exc)["errorCode"] == "LIMIT_EXCEEDED"
    many = [sub(f"a{n}", "POST", "sobjects/Account", {"Name": f"{n}"}) for n in range(26)]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.restful("composite", method="POST", json={"compositeRequest": many})
    assert error_of(exc)["errorCode"] == "LIMIT_EXCEEDED"
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [*heavy, *many[:20]],
                                                          "collateSubrequests": False})
    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [200] * 5 + [201] * 20  # type: ignore[index]
    assert em.calls[f"POST {API}/composite"] == 4 and em.total_calls == 4  # subrequests are not calls


def test_composite_references_use_dots_and_brackets_into_collection_answers(sf: Salesforce,
                                                                            em: SalesforceEmulator) -> None:
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [
        sub("people", "PATCH", "composite/sobjects/Contact/Crmhub_Person__c", {"records": collection(
            {"type": "Contact", "Crmhub_Person__c": "p1", "LastName": "One"},
            {"type": "Contact", "Crmhub_Person__c": "p2", "LastName": "Two"})}),
        sub("task", "POST", "sobjects/Task", {"WhoId": "@{people[1].id}", "Subject": "to two"}),
        sub("missing", "POST", "sobjects/Task", {"WhoId": "@{people[2].id}"}),
    ]})
    results = answer["compositeResponse"]  # type: ignore[index]
    assert [(r["referenceId"], r["httpStatusCode"]) for r in results] == [
        ("people", 200), ("task", 201), ("missing", 400)]
    assert [r["created"] for r in results[0]["body"]] == [True, True]
    assert em.records("Task")[0]["WhoId"] == results[0]["body"][1]["id"]
    halted = results[2]["body"][0]
    assert halted["errorCode"] == "PROCESSING_HALTED"
    assert halted["message"].startswith("Invalid reference specified. No value for people[2].id found in people.")


def test_relationship_references_by_external_id_fail_per_record(sf: Salesforce, em: SalesforceEmulator) -> None:
    contact = em.insert("Contact", LastName="Known", Crmhub_Person__c="p1")
    lead = em.insert("Lead", LastName="Lead", Company="X", Crmhub_Person__c="p2")
    case = em.insert("Case", Subject="open", Crmhub_Conversation__c="conv#1")
    results = sf.restful("composite/sobjects/Task/Crmhub_Key__c", method="PATCH", json={"records": collection(
        {"type": "Task", "Crmhub_Key__c": "t1", "Who": {"attributes": {"type": "Contact"}, "Crmhub_Person__c": "p1"},
         "What": {"attributes": {"type": "Case"}, "Crmhub_Conversation__c": "CONV#1"}},
        {"type": "Task", "Crmhub_Key__c": "t2", "Who": {"attributes": {"type": "Lead"}, "Crmhub_Person__c": "p2"}},
        {"type": "Task", "Crmhub_Key__c": "t3", "Who": {"attributes": {"type": "Contact"}, "Crmhub_Person__c": "p9"}},
        {"type": "Task", "Crmhub_Key__c": "t4", "WhoId": contact,
         "Who": {"attributes": {"type": "Contact"}, "Crmhub_Person__c": "p1"}},
        {"type": "Task", "Crmhub_Key__c": "t5", "Who": {"attributes": {"type": "Case"}, "Crmhub_Conversation__c": "x"}},
    )})
    assert [r["success"] for r in results] == [True, True, False, False, False]  # type: ignore[index]
    assert results[2]["errors"] == [{"statusCode": "INVALID_FIELD", "fields": [],  # type: ignore[index]
                                     "message": "Foreign key external ID: p9 not found for field Crmhub_Person__c "
                                                "in entity Contact"}]
    assert results[3]["errors"][0]["message"] == (  # type: ignore[index]
        "Cannot specify both an external ID reference Who and a salesforce id, WhoId")
    assert results[4]["errors"][0]["statusCode"] == "INVALID_FIELD"  # type: ignore[index]
    tasks = {t["Crmhub_Key__c"]: t for t in em.records("Task")}
    assert (tasks["t1"]["WhoId"], tasks["t1"]["WhatId"], tasks["t2"]["WhoId"]) == (contact, case, lead)
    cased = sf.restful("composite/sobjects/Case/Crmhub_Conversation__c", method="PATCH", json={"records": [
        {"attributes": {"type": "Case"}, "Crmhub_Conversation__c": "conv#2",
         "Contact": {"Crmhub_Person__c": "p1"}}]})  # one possible parent: the type may be left out
    assert cased[0]["success"] is True  # type: ignore[index]
    assert em.record(cased[0]["id"])["ContactId"] == contact  # type: ignore[index]


# ---- limits and the unemulated ------------------------------------------------------------------------
def test_limits_and_limit_info_header_track_billable_calls(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.set_api_limit(500)
    em.spend_api_calls(100)  # the customer's other integrations
    sf.query("SELECT Id FROM Contact")
    assert sf.api_usage["api-usage"] == (101, 500)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 500, "Remaining": 398}


def test_unemulated_endpoints_say_so(sf: Salesforce, salesforce_sandbox: EmulatorServer) -> None:
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.restful("search", params={"q": "FIND {x}"})
    assert (exc.value.status, error_of(exc)["errorCode"]) == (501, "NOT_EMULATED")
    bulk = requests.post(f"{salesforce_sandbox.url}/services/async/59.0/job", timeout=5)
    assert bulk.status_code == 501 and bulk.json()[0]["path"] == "/services/async/59.0/job"
    other_version = requests.get(f"{salesforce_sandbox.url}/services/data/v58.0/limits", timeout=5)
    assert other_version.status_code == 501


def test_state_is_plain_json_and_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "salesforce.json"
    with EmulatorServer(SalesforceEmulator(state_file=state_file)) as server:
        emulator = emulator_of(server)
        sf = Salesforce(instance_url=server.url, session_id=emulator.issue_token(),
                        session=build_session(base_url=server.url))
        sf.Task.upsert("Crmhub_Key__c/k1", {"Subject": "before restart"})
        assert requests.get(f"{server.url}/_sandbox/state", timeout=5).json()["records"]["Task"]
    restarted = SalesforceEmulator(state_file=state_file)
    assert [t["Subject"] for t in restarted.records("Task")] == ["before restart"]
    with pytest.raises(ValueError, match="DUPLICATE_VALUE"):
        restarted.insert("Task", Crmhub_Key__c="K1")  # the external-id index is rebuilt from the file


def test_docs_list_every_route() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "sandbox" / "salesforce.md").read_text().replace("{P}", API)
    missing = [e.rule for e in ENDPOINTS if f"| {', '.join(e.methods)} | `{e.rule}` |" not in doc]
    assert missing == []


def test_chatter_users_me_is_the_sessions_own_user(salesforce_sandbox: EmulatorServer, em: SalesforceEmulator,
                                                   sf: Salesforce) -> None:
    alice = em.add_user("alice@acme.test", "pw", name="Alice Agent")
    url = salesforce_sandbox.url
    as_alice = Salesforce(instance_url=url, session_id=em.issue_token("alice@acme.test"),
                          session=build_session(base_url=url))
    me = as_alice.restful("chatter/users/me")
    assert (me["id"], me["username"], me["name"], me["type"]) == (alice, "alice@acme.test", "Alice Agent", "User")
    assert me["url"] == f"/services/data/v59.0/chatter/users/{alice}"
    assert sf.restful("chatter/users/me")["id"] == em.integration_user_id
