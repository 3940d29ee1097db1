"""One bad item never stops the rest: text the store cannot hold, and items that still cannot be stored.

JSON may carry a lone UTF-16 surrogate as an escape (`"\\ud800"`); Python
decodes it into a string that no UTF-8 store can encode. Such items are
stored with U+FFFD in its place, by the poll and the webhook alike, and an
item that still cannot be stored becomes a dead letter while its page's
other items are stored and the cursor moves on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.identities import x_account
from crmhub.model import Channel, Direction, Identity, IdentityKind, Interaction, Malformed
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.twilio import DEFAULT_AUTH_TOKEN
from crmhub.sandbox.x import DEFAULT_ACCOUNT, DEFAULT_ACCOUNT_ID, DEFAULT_CONSUMER_SECRET
from crmhub.store import StateStore, open_store
from crmhub.store.ledger import ingest_page, load_cursor, open_dead_letters, to_interaction
from crmhub.store.schema import LedgerRow
from crmhub.webhooks import WebhookServer, ledger_ingest
from tests.webhook_apps import create_app

with warnings.catch_warnings():  # starlette's notice that its TestClient will move from httpx to httpx2
    from starlette.exceptions import StarletteDeprecationWarning
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

OURS = "+14155550100"
LONE = "\ud800"  # what json.loads makes of the escape "\ud800"
START = datetime.now(UTC) - timedelta(hours=1)


def stored(store: StateStore) -> list[Interaction]:
    with store.transaction() as session:
        return [to_interaction(row) for row in session.scalars(select(LedgerRow).order_by(LedgerRow.id))]


@pytest.fixture
def queues(salesforce_sandbox: EmulatorServer) -> None:
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        salesforce_sandbox.emulator.add_queue(name, name)  # type: ignore[attr-defined]


def sync(settings: Path) -> Any:
    """`crmhub sync`, as an admin runs it."""
    return CliRunner().invoke(app, ["sync", "--config", str(settings)])


def sync_store(settings: Path) -> Iterator[StateStore]:
    """The state store `crmhub sync` used (the sandbox settings' SQLite file)."""
    store = open_store(f"sqlite:///{settings.parent / 'crmhub.db'}")
    try:
        yield store
    finally:
        store.close()


def test_a_polled_sms_with_a_lone_surrogate_is_stored_and_the_rest_is_delivered(
        queues: None, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.receive_message("+14155550123", OURS, "my parcel is late", at=START)
    poisoned = tw.receive_message("+14155550124", OURS, f"broken {LONE} emoji", at=START + timedelta(minutes=1))
    tw.receive_message("+14155550125", OURS, "any news?", at=START + timedelta(minutes=2))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})

    result = sync(settings)

    assert result.exit_code == 0, result.output
    assert "failed" not in result.output and "3 new" in result.output
    sf: Any = salesforce_sandbox.emulator
    tasks = {t["Crmhub_Key__c"]: t["Description"] for t in sf.records("Task")}
    assert sorted(tasks.values()) == ["any news?", "broken \ufffd emoji", "my parcel is late"]
    assert tasks[f"sms:{poisoned}"] == "broken \ufffd emoji"
    for store in sync_store(settings):
        [item] = [i for i in stored(store) if i.external_id == poisoned]
        assert item.raw["body"] == "broken \ufffd emoji"  # the audit copy too


def test_a_polled_x_mention_and_dm_with_lone_surrogates_are_stored_and_the_rest_is_delivered(
        queues: None, salesforce_sandbox: EmulatorServer, x_sandbox: EmulatorServer, tmp_path: Path) -> None:
    x: Any = x_sandbox.emulator
    jane = x.add_user("janedoe", f"Jane {LONE}\udc00 Doe")  # a name, a broken pair and a lone half
    bob = x.add_user("bob_lee", "Bob")
    x.post_mention(jane, f"where is my order? {LONE}", at=START)
    dm = x.send_dm(jane, DEFAULT_ACCOUNT_ID, f"\udc00 order 1234", at=START + timedelta(minutes=1))
    x.post_mention(bob, "fine thanks", at=START + timedelta(minutes=2))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "x": x_sandbox.url},
                                      enabled=("salesforce", "x"))

    result = sync(settings)

    assert result.exit_code == 0, result.output
    assert "failed" not in result.output
    sf: Any = salesforce_sandbox.emulator
    tasks = {t["Crmhub_Key__c"]: t["Description"] for t in sf.records("Task")}
    assert len(tasks) == 3
    assert tasks[f"x_dm:{dm}"] == "\ufffd order 1234"
    assert sorted(d for k, d in tasks.items() if k.startswith("x_mention:")) == [
        "@crmhub_support fine thanks", "@crmhub_support where is my order? \ufffd"]


def test_a_signed_x_event_with_a_lone_surrogate_is_stored_and_acknowledged(
        x_sandbox: EmulatorServer, store: StateStore) -> None:
    x: Any = x_sandbox.emulator
    app_ = create_app(ledger_ingest(store, lambda: datetime.now(UTC)), twilio_auth_token=None, public_url=None,
                      x_consumer_secret=DEFAULT_CONSUMER_SECRET,
                      x_account=lambda: x_account(DEFAULT_ACCOUNT_ID, DEFAULT_ACCOUNT))
    with WebhookServer(app_) as server:
        assert x.set_webhook(server.url + "/webhooks/x", DEFAULT_CONSUMER_SECRET) is True
        jane = x.add_user("janedoe", "Jane")
        x.send_dm(jane, DEFAULT_ACCOUNT_ID, f"hello {LONE}")
        assert x.wait_for_deliveries(timeout=5)

    assert {attempt["status"] for attempt in x.webhook_attempts()} == {200}
    assert [i.text for i in stored(store)] == ["hello \ufffd"]


def test_a_signed_twilio_message_with_a_lone_surrogate_is_stored_and_acknowledged(store: StateStore) -> None:
    """A form body carries text as percent-encoded UTF-8; a sender that encodes a lone surrogate anyway
    (`surrogatepass`, %ED%A0%80) is acknowledged and stored with U+FFFD, like the poll would store it."""
    client = TestClient(create_app(ledger_ingest(store, lambda: datetime.now(UTC)),
                                   twilio_auth_token=DEFAULT_AUTH_TOKEN, public_url=None, x_consumer_secret=None))
    sid = "SM" + "a" * 32
    params = {"MessageSid": sid, "AccountSid": "AC" + "b" * 32, "From": "+14155550123", "To": OURS,
              "Body": f"hi {LONE}", "NumMedia": "0", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
    body = "&".join(f"{k}={v.encode('utf-8', 'surrogatepass').hex('%').join(('%', '')) if k == 'Body' else v}"
                    for k, v in params.items()).replace("+", "%2B")
    as_received = params | {"Body": "hi \ufffd\ufffd\ufffd"}  # what a UTF-8 form parser reads
    url = "http://testserver/webhooks/twilio/messages"
    signature = RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, as_received)

    answer = client.post("/webhooks/twilio/messages", content=body.encode(),
                         headers={"X-Twilio-Signature": signature,
                                  "Content-Type": "application/x-www-form-urlencoded"})

    assert answer.status_code == 200, answer.text
    [item] = stored(store)
    assert item.external_id == sid and LONE not in item.text and item.text.startswith("hi \ufffd")


# ---- an item the store still refuses -------------------------------------------------------------------
def _sms(sid: str, text: str, **raw: Any) -> Interaction:
    customer = Identity(IdentityKind.PHONE, "+14155550123")
    return Interaction(Channel.SMS, Direction.INBOUND, sid, f"sms:{OURS}:+14155550123", customer,
                       Identity(IdentityKind.PHONE, OURS), text, START, raw={"body": text, **raw})


def test_an_item_the_store_refuses_is_dead_lettered_and_its_page_is_stored_with_its_cursor(
        store: StateStore) -> None:
    """E.g. a connector that put an SDK object into `raw`: that item, not its page, fails."""
    good, bad, last = _sms("SM1", "first"), _sms("SM2", "secret words", sdk=object()), _sms("SM3", "third")
    oops = Malformed("twilio", "SM4", "message SM4: no sender address", {"body": "more words", "sdk": object()})

    with store.transaction() as session:
        result = ingest_page(session, [good, bad, last], [oops], now=datetime.now(UTC),
                             cursor=("twilio", "messages", "AC1", "2026-01-01T00:00:00+00:00"))

    assert (result.stored, result.repeats, result.dead_lettered) == (2, 0, 2)
    assert [i.external_id for i in stored(store)] == ["SM1", "SM3"]
    with store.transaction() as session:
        assert load_cursor(session, "twilio", "messages", "AC1") == "2026-01-01T00:00:00+00:00"
        letters = {d.ref: d for d in open_dead_letters(session)}
    assert set(letters) == {"sms:SM2", "SM4"}
    assert letters["sms:SM2"].source == "twilio"
    assert "could not be stored" in letters["sms:SM2"].reason and "TypeError" in letters["sms:SM2"].reason
    assert letters["SM4"].reason.startswith("message SM4: no sender address")
    assert all("words" not in d.reason and "words" not in str(d.payload) for d in letters.values())


@pytest.mark.parametrize("odd", [LONE, "\x00"], ids=["lone-surrogate", "nul"])
def test_a_crm_record_with_text_the_store_cannot_hold_does_not_stop_the_mirror(
        odd: str, queues: None, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    """Text from a CRM (a contact's name, a routing field) goes through the same cleaning as a channel's."""
    sf: Any = salesforce_sandbox.emulator
    sf.insert("Contact", FirstName="Jane", LastName=f"Doe {odd}", Phone="(415) 555-0123", Tier__c=f"Gold{odd}",
              Email=f"jane{odd}@example.com", X_Handle__c=f"jane{odd}")  # identity values are text columns
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.receive_message("+14155550123", OURS, "where is my parcel?", at=START)
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})

    first, again = sync(settings), sync(settings)

    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    assert "failed" not in first.output + again.output
    [contact] = sf.records("Contact")
    [task] = sf.records("Task")
    assert (task["WhoId"], task["Description"]) == (contact["Id"], "where is my parcel?")
