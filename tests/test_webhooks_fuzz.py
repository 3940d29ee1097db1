"""Fuzzing the webhook receiver and the payload translators (issue 12), bounded and derandomized for CI.

Properties:
- no request, signed or not, gets a 5xx;
- nothing reaches the ledger or the dead letters unless validly signed;
- a signed Twilio message, or ended call, answered 2xx is in the ledger or a dead letter; a signed X
  payload answered 2xx has its stored events in the ledger and its broken ones as dead letters;
- the translators never raise, and no dead letter's reason holds the message text.

Message texts carry a marker (`MARK`) that nothing else generated here contains, so "the reason holds no
message text" is checked as "the reason holds no marker".
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from crmhub.connectors.twilio_hooks import call_from_params, message_from_params, status_from_params
from crmhub.connectors.x_hooks import XAccountActivity
from crmhub.connectors.x_signing import CRC_TOKEN, signature
from crmhub.identities import x_account
from crmhub.model import Malformed
from crmhub.store import StateStore, open_store
from crmhub.store.schema import DeadLetterRow, LedgerRow
from crmhub.webhooks import ledger_ingest
from tests.webhook_apps import create_app
from tests.test_webhooks import ACCOUNT, OURS, SID, TOKEN, signed

with warnings.catch_warnings():  # starlette's notice that its TestClient will move from httpx to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SECRET = "fuzz-consumer-secret"
ME = x_account("4242", "acme")
MARK = "\u27e6"  # starts every generated message text; no other generated value holds it
MESSAGES, STATUS, CALLS, X = "/webhooks/twilio/messages", "/webhooks/twilio/status", "/webhooks/twilio/calls", "/webhooks/x"
BOUNDED = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- strategies -----------------------------------------------------------------------------------
PLAIN = st.text(st.characters(blacklist_characters=MARK), max_size=24)  # surrogates are excluded by default
MESSAGE_TEXT = st.builds(lambda text: MARK + text, PLAIN)
JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | PLAIN,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PLAIN, inner, max_size=3),
                          max_leaves=10)
X_ID = st.one_of(st.sampled_from(["100", "101", "7", ME.value]), st.integers(-5, 2 ** 70).map(str),
                 st.integers(-5, 2 ** 70), PLAIN)
MILLIS = st.one_of(st.none(), st.integers(-10, 10 ** 20), st.integers(0, 10 ** 16).map(str), PLAIN)
V1_TIME = st.one_of(st.none(), PLAIN, st.sampled_from([
    "Mon Jan 05 08:00:00 +0000 2026", "Fri Dec 31 23:59:59 -2359 9999", "Mon Jan 01 00:00:00 +2359 0001"]))


def some_of(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dictionaries with each of `fields` present or dropped."""
    return st.fixed_dictionaries({}, optional=dict(fields))


def near(valid: st.SearchStrategy[dict[str, Any]], fields: Mapping[str, st.SearchStrategy[Any]]
         ) -> st.SearchStrategy[dict[str, Any]]:
    """A valid object as it is, or with one or two of `fields` changed and maybe one dropped."""
    change = st.one_of(*(st.tuples(st.just(name), values) for name, values in fields.items()))
    return st.one_of(valid, st.builds(lambda base, changes, dropped: {k: v for k, v in (base | dict(changes)).items()
                                                                      if k not in dropped},
                                      valid, st.lists(change, min_size=1, max_size=2),
                                      st.sets(st.sampled_from(sorted(fields)), max_size=1)))


MENTION_FIELDS = {
    "id_str": X_ID, "text": MESSAGE_TEXT, "timestamp_ms": MILLIS, "created_at": V1_TIME, "truncated": st.booleans(),
    "extended_tweet": st.one_of(st.fixed_dictionaries({"full_text": MESSAGE_TEXT}), JSON_VALUE),
    "user": st.one_of(some_of({"id_str": X_ID, "screen_name": PLAIN}), JSON_VALUE),
    "in_reply_to_status_id_str": st.one_of(st.none(), X_ID), "in_reply_to_user_id_str": st.one_of(st.none(), X_ID),
    "in_reply_to_screen_name": PLAIN,
    "entities": st.one_of(st.just({"user_mentions": [{"id_str": ME.value, "screen_name": "acme"}]}),
                          st.fixed_dictionaries({"user_mentions": st.lists(some_of({"id_str": X_ID,
                                                                                     "screen_name": PLAIN}))}),
                          JSON_VALUE),
}
SNOWFLAKE = st.integers(1, 10 ** 19).map(str)
AUTHOR = st.fixed_dictionaries({"id_str": st.sampled_from(["7", "8", ME.value]), "screen_name": st.just("jane")})
POST_TIME = st.one_of(st.fixed_dictionaries({"timestamp_ms": st.integers(0, 4 * 10 ** 12).map(str)}),
                      st.fixed_dictionaries({"created_at": V1_TIME}))  # v1.1 posts may carry either
MENTION = near(st.builds(lambda fields, when: fields | when, st.fixed_dictionaries({
    "id_str": SNOWFLAKE, "text": MESSAGE_TEXT, "user": AUTHOR,
    "in_reply_to_status_id_str": st.none(), "in_reply_to_user_id_str": st.sampled_from([None, "7"]),
    "entities": st.just({"user_mentions": [{"id_str": ME.value, "screen_name": "acme"}]})}), POST_TIME),
    MENTION_FIELDS)
DM_FIELDS = {
    "type": st.one_of(st.just("message_create"), PLAIN), "id": X_ID, "created_timestamp": MILLIS,
    "message_create": st.one_of(some_of({
        "sender_id": X_ID, "target": st.one_of(some_of({"recipient_id": X_ID}), JSON_VALUE),
        "message_data": st.one_of(some_of({"text": MESSAGE_TEXT, "attachment": st.one_of(
            st.fixed_dictionaries({"type": st.just("media"), "media": some_of({
                "id_str": X_ID, "type": st.one_of(st.sampled_from(["photo", "video", "animated_gif"]), PLAIN),
                "media_key": PLAIN})}), JSON_VALUE)}), JSON_VALUE)}), JSON_VALUE),
}
DM = near(st.builds(lambda event_id, ends, at, text: {
    "type": "message_create", "id": event_id, "created_timestamp": at,
    "message_create": {"sender_id": ends[0], "target": {"recipient_id": ends[1]}, "message_data": {"text": text}}},
    SNOWFLAKE, st.sampled_from([("7", ME.value), (ME.value, "7")]), st.integers(0, 4 * 10 ** 12).map(str),
    MESSAGE_TEXT), DM_FIELDS)
X_PAYLOAD = st.fixed_dictionaries(
    {"for_user_id": st.one_of(st.just(ME.value), st.just(ME.value), st.just(int(ME.value)), X_ID)},
    optional={"tweet_create_events": st.one_of(st.lists(st.one_of(MENTION, JSON_VALUE), max_size=3), JSON_VALUE),
              "direct_message_events": st.one_of(st.lists(st.one_of(DM, JSON_VALUE), max_size=3), JSON_VALUE),
              "users": st.one_of(st.dictionaries(X_ID.map(str), some_of({"screen_name": PLAIN}), max_size=3),
                                 JSON_VALUE),
              "favorite_events": JSON_VALUE, "user_has_blocked": st.booleans()})

TWILIO_FIELDS = {
    "MessageSid": st.one_of(st.just(SID), st.just("SM" + "a" * 32), PLAIN),
    "SmsSid": st.one_of(st.just(SID), PLAIN), "AccountSid": st.one_of(st.just(ACCOUNT), PLAIN),
    "From": st.one_of(st.sampled_from(["+14155550123", "whatsapp:+14155550123", "4155550123", "client:bob"]), PLAIN),
    "To": st.one_of(st.sampled_from([OURS, f"whatsapp:{OURS}"]), PLAIN), "Body": MESSAGE_TEXT,
    "NumMedia": st.one_of(st.sampled_from(["0", "1", "10", "-1", "99999999999"]), PLAIN),
    "MessageStatus": st.one_of(st.sampled_from(["sent", "delivered", "failed", "read"]), PLAIN),
    "CallSid": st.one_of(st.just("CA" + "b" * 32), PLAIN),
    "CallStatus": st.one_of(st.sampled_from(["completed", "busy", "no-answer", "ringing", "in-progress"]), PLAIN),
    "CallDuration": st.one_of(st.sampled_from(["0", "7", "99999999999"]), PLAIN),
    "Direction": st.one_of(st.sampled_from(["inbound", "outbound-api", "outbound-dial"]), PLAIN),
    "Timestamp": st.one_of(st.sampled_from(["Mon, 05 Jan 2026 08:00:00 +0000", "Mon, 01 Jan 0001 00:00:00 +2359"]),
                           PLAIN),
    "RecordingUrl": PLAIN,
}
VALID_FORMS = st.sampled_from([
    {"MessageSid": SID, "AccountSid": ACCOUNT, "From": "+14155550123", "To": OURS, "Body": MARK + "hi",
     "NumMedia": "0"},
    {"MessageSid": SID, "AccountSid": ACCOUNT, "From": "whatsapp:+14155550123", "To": f"whatsapp:{OURS}",
     "Body": "", "NumMedia": "1"},
    {"MessageSid": SID, "MessageStatus": "delivered", "AccountSid": ACCOUNT},
    {"CallSid": "CA" + "b" * 32, "AccountSid": ACCOUNT, "CallStatus": "completed", "CallDuration": "7",
     "Direction": "inbound", "From": "+14155550123", "To": OURS, "Timestamp": "Mon, 05 Jan 2026 08:00:00 +0000"}])
TWILIO_FORM = st.one_of(near(VALID_FORMS, TWILIO_FIELDS),
                        st.builds(lambda known, other: known | other, some_of(TWILIO_FIELDS),
                                  st.dictionaries(PLAIN, PLAIN, max_size=2)))
FORM_TYPE = st.sampled_from(["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=utf-8",
                             "APPLICATION/X-WWW-FORM-URLENCODED", "text/plain", "application/json",
                             "multipart/form-data; boundary=x", ""])
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
ODD_HEADERS = st.dictionaries(st.sampled_from(["x-other", "host", "content-encoding", "transfer-encoding-ish",
                                               "x-forwarded-for", "x-twitter-webhooks-signature",
                                               "x-twilio-signature"]), HEADER_VALUE, max_size=3)


# ---- the receiver over an in-test SQLite store ---------------------------------------------------
@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[TestClient, StateStore, Any]]:
    with tempfile.TemporaryDirectory() as directory:
        store = open_store(f"sqlite:///{Path(directory) / 'state.db'}")
        app = create_app(ledger_ingest(store, lambda: datetime.now(UTC)), twilio_auth_token=TOKEN, public_url=None,
                         x_consumer_secret=SECRET, x_account=lambda: ME)
        yield TestClient(app), store, app
        store.close()


def emptied(store: StateStore) -> None:
    with store.transaction() as session:
        session.execute(delete(LedgerRow))
        session.execute(delete(DeadLetterRow))


def held(store: StateStore) -> tuple[int, int]:
    """(ledger rows, dead letters)."""
    with store.transaction() as session:
        return (session.scalar(select(func.count()).select_from(LedgerRow)) or 0,
                session.scalar(select(func.count()).select_from(DeadLetterRow)) or 0)


def send(receiver: tuple[TestClient, StateStore, Any], request: Callable[[TestClient], Any]
         ) -> tuple[int, tuple[int, int], Counter[tuple[str, str]]]:
    """Run a request on an empty store: its status, what the store holds after, the outcomes it counted."""
    client, store, app = receiver
    emptied(store)
    before = Counter(app.state.counts)
    status = request(client).status_code
    assert status < 500
    return status, held(store), Counter(app.state.counts) - before


@BOUNDED
@given(path=st.sampled_from([MESSAGES, STATUS, CALLS]), form=TWILIO_FORM, content_type=FORM_TYPE,
       headers=ODD_HEADERS, sign=st.sampled_from(["right", "wrong", "none"]))
def test_twilio_routes_store_only_what_is_signed_and_every_signed_item(
        receiver: tuple[TestClient, StateStore, Any], path: str, form: dict[str, str], content_type: str,
        headers: dict[str, str], sign: str) -> None:
    headers = {k: v for k, v in headers.items() if k not in ("host", "x-twilio-signature")}
    if content_type:
        headers["content-type"] = content_type
    if sign != "none":
        token = TOKEN if sign == "right" else "not-the-token"
        headers |= signed(form, "http://testserver" + path, token)
    body = urlencode(form).encode()

    status, (stored, dead), _ = send(receiver, lambda client: client.post(path, content=body, headers=headers))

    is_form = content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded" or not body
    if sign != "right" or status >= 300:
        assert (stored, dead) == (0, 0)
    if sign != "right":
        assert status == 403 or (status == 400 and not is_form)
        return
    assert status == (200 if is_form else 400)
    if status != 200 or path == STATUS:
        assert (stored, dead) == (0, 0)  # statuses are no items; they go to on_status
        return
    is_item = path == MESSAGES or form.get("CallStatus") in {"completed", "busy", "no-answer", "failed", "canceled"}
    assert stored + dead == (1 if is_item else 0)


@BOUNDED
@given(payload=st.one_of(X_PAYLOAD, JSON_VALUE), raw=st.one_of(st.none(), st.binary(max_size=64)),
       headers=ODD_HEADERS, sign=st.sampled_from(["right", "right", "wrong", "none"]),
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
def test_the_x_route_stores_only_what_is_signed_and_accounts_for_every_signed_event(
        receiver: tuple[TestClient, StateStore, Any], payload: Any, raw: bytes | None, headers: dict[str, str],
        sign: str, content_type: str) -> None:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {k: v for k, v in headers.items() if k not in ("host", "x-twitter-webhooks-signature")}
    if content_type:
        headers["content-type"] = content_type
    if sign != "none":
        headers["x-twitter-webhooks-signature"] = signature(SECRET if sign == "right" else "guess", body)

    status, (stored, dead), counted = send(receiver, lambda client: client.post(X, content=body, headers=headers))

    if sign != "right":
        assert (status, stored, dead) == (403, 0, 0)
        return
    assert status == 200
    outcomes = {outcome: n for (route, outcome), n in counted.items() if route == "x.events"}
    assert stored == outcomes.get("stored", 0)
    assert (dead > 0) == (outcomes.get("dead_lettered", 0) > 0)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        assert (stored, dead) == (0, 1)  # signed, unusable: one dead letter
    elif any(not isinstance(events, list) or events for kind, events in parsed.items() if kind.endswith("_events")):
        assert outcomes, "signed events that nothing was decided about"


@BOUNDED
@given(token=st.one_of(PLAIN, st.text(st.sampled_from("abcXYZ019_-+/={}\"%"), max_size=140)),
       headers=ODD_HEADERS)
def test_the_crc_route_answers_only_x_shaped_tokens(receiver: tuple[TestClient, StateStore, Any], token: str,
                                                    headers: dict[str, str]) -> None:
    headers.pop("host", None)
    status, held_after, _ = send(receiver, lambda client: client.get(X, params={"crc_token": token},
                                                                     headers=headers))
    assert held_after == (0, 0)
    if CRC_TOKEN.fullmatch(token):
        assert status == 200
    else:
        assert status == 400


@BOUNDED
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.sampled_from([MESSAGES, STATUS, CALLS, X, "/healthz", "/metrics", "/", "/webhooks/x/../x"]),
       body=st.binary(max_size=512), headers=ODD_HEADERS, query=st.dictionaries(PLAIN, PLAIN, max_size=3))
def test_unsigned_junk_on_any_route_is_a_4xx_and_stores_nothing(
        receiver: tuple[TestClient, StateStore, Any], method: str, path: str, body: bytes, headers: dict[str, str],
        query: dict[str, str]) -> None:
    headers.pop("host", None)
    status, held_after, _ = send(receiver, lambda client: client.request(method, path, content=body,
                                                                         headers=headers, params=query))
    assert held_after == (0, 0)
    assert status < 500 and (status >= 400 or (method, path) == ("GET", X))


# ---- the translators on their own -------------------------------------------------------------------
def reasons(items: list[Malformed]) -> list[str]:
    return [item.reason for item in items]


def overflowing(**when: Any) -> dict[str, Any]:
    """A mention of us whose time is out of range (issue 12: these raised OverflowError)."""
    return {"for_user_id": ME.value, "tweet_create_events": [{
        "id_str": "100", "text": MARK + "hi", "user": {"id_str": "7", "screen_name": "jane"},
        "entities": {"user_mentions": [{"id_str": ME.value}]}, **when}]}


@settings(BOUNDED, max_examples=150)
@example(payload=overflowing(created_at="Fri Dec 31 23:59:59 -2359 9999"))
@example(payload=overflowing(created_at="Mon Jan 01 00:00:00 +2359 0001"))
@example(payload=overflowing(timestamp_ms="999999999999999"))
@given(payload=st.one_of(X_PAYLOAD, st.dictionaries(PLAIN, JSON_VALUE, max_size=3)))
def test_the_x_translator_never_raises_and_reasons_hold_no_text(payload: dict[str, Any]) -> None:
    batch = XAccountActivity().translate(payload, ME)
    assert all(MARK not in reason for reason in reasons(batch.malformed)), reasons(batch.malformed)
    assert all(item.source == "x" for item in batch.malformed)


@settings(BOUNDED, max_examples=150)
@given(form=TWILIO_FORM)
def test_the_twilio_translators_never_raise_and_reasons_hold_no_text(form: dict[str, str]) -> None:
    now = datetime.now(UTC)
    message = message_from_params(form, received_at=now)
    call = call_from_params(form, received_at=now)
    status_from_params(form)
    for item in (message, call):
        if isinstance(item, Malformed):
            assert MARK not in item.reason, item.reason
            assert item.source == "twilio"
