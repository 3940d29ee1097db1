"""The Meta Graph emulator answers as Graph does: paths, fields, paging, windows, errors, usage headers, webhooks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from crmhub.connectors.meta import signature_ok
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.meta import (
    DEFAULT_APP_SECRET,
    DEFAULT_IG_ID,
    DEFAULT_PAGE_ID,
    DEFAULT_PAGE_TOKEN,
    DEFAULT_VERIFY_TOKEN,
    MetaEmulator,
)
from tests.http_receiver import LocalServer, QuietHandler

PAGE = DEFAULT_PAGE_ID
DAY = 86400.0


@pytest.fixture
def meta(meta_sandbox: EmulatorServer) -> MetaEmulator:
    emulator = meta_sandbox.emulator
    assert isinstance(emulator, MetaEmulator)
    return emulator


def graph(server: EmulatorServer, method: str, path: str, token: str | None = DEFAULT_PAGE_TOKEN,
          **kwargs: Any) -> requests.Response:
    params = dict(kwargs.pop("params", {}))
    if token is not None:
        params["access_token"] = token
    return requests.request(method, f"{server.url}/v21.0/{path}", params=params, timeout=5, **kwargs)


def test_conversations_list_with_expanded_messages_and_cursor_paging(meta: MetaEmulator,
                                                                      meta_sandbox: EmulatorServer) -> None:
    people = [meta.add_person("messenger", f"Person {i}") for i in range(3)]
    for i, psid in enumerate(people):
        meta.inbound("messenger", psid, f"hello {i}")
    meta.inbound("instagram", meta.add_person("instagram", "Insta Gram"), "hi from ig")

    first = graph(meta_sandbox, "GET", f"{PAGE}/conversations",
                  params={"platform": "messenger", "limit": 2,
                          "fields": "id,updated_time,participants,messages.limit(5){id,created_time,from,to,message}"})
    assert first.status_code == 200
    body = first.json()
    assert [c["messages"]["data"][0]["message"] for c in body["data"]] == ["hello 2", "hello 1"]
    newest = body["data"][0]
    assert newest["updated_time"].endswith("+0000") and newest["id"].startswith("t_")
    assert {p["id"] for p in newest["participants"]["data"]} == {people[2], PAGE}
    message = newest["messages"]["data"][0]
    assert message["from"] == {"name": "Person 2", "email": f"{people[2]}@facebook.com", "id": people[2]}
    assert message["to"]["data"][0]["id"] == PAGE and message["id"].startswith("m_")
    assert set(body["paging"]["cursors"]) == {"before", "after"}
    rest = requests.get(body["paging"]["next"], timeout=5).json()
    assert [c["messages"]["data"][0]["message"] for c in rest["data"]] == ["hello 0"]
    assert "next" not in rest["paging"]

    ig = graph(meta_sandbox, "GET", f"{PAGE}/conversations", params={"platform": "instagram",
                                                                     "fields": "participants"}).json()
    [conversation] = ig["data"]
    assert DEFAULT_IG_ID in {p["id"] for p in conversation["participants"]["data"]}
    assert "username" in conversation["participants"]["data"][0]


def test_send_api_answers_ids_and_enforces_the_windows(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    psid = meta.add_person("messenger", "Jane Doe")
    meta.inbound("messenger", psid, "my order?")
    sent = graph(meta_sandbox, "POST", f"{PAGE}/messages",
                 json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": "on it"}})
    assert sent.status_code == 200
    assert set(sent.json()) == {"recipient_id", "message_id"} and sent.json()["recipient_id"] == psid

    meta.clock.advance(3 * DAY)
    late = graph(meta_sandbox, "POST", "me/messages",
                 json={"recipient": {"id": psid}, "messaging_type": "RESPONSE", "message": {"text": "late"}})
    assert late.status_code == 400
    error = late.json()["error"]
    assert (error["code"], error["error_subcode"], error["type"]) == (10, 2018278, "OAuthException")
    assert set(error) == {"message", "type", "code", "error_subcode", "fbtrace_id"}
    tagged = graph(meta_sandbox, "POST", "me/messages",
                   json={"recipient": {"id": psid}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                         "message": {"text": "an agent here"}})
    assert tagged.status_code == 200

    meta.clock.advance(5 * DAY)  # 8 days after the customer wrote
    too_late = graph(meta_sandbox, "POST", "me/messages",
                     json={"recipient": {"id": psid}, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                           "message": {"text": "anyone?"}})
    assert too_late.json()["error"]["error_subcode"] == 2018278
    assert [m["text"] for m in meta.messages(psid)] == ["my order?", "on it", "an agent here"]


def test_tokens_versions_fields_and_unknown_paths_get_graph_errors(meta: MetaEmulator,
                                                                  meta_sandbox: EmulatorServer) -> None:
    assert graph(meta_sandbox, "GET", f"{PAGE}/conversations", token=None).json()["error"]["code"] == 2500
    bad = graph(meta_sandbox, "GET", f"{PAGE}/conversations", token="nope")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 190)
    assert "invalid_token" in bad.headers["WWW-Authenticate"]
    bearer = requests.get(f"{meta_sandbox.url}/v21.0/{PAGE}/conversations", timeout=5,
                          headers={"Authorization": f"Bearer {DEFAULT_PAGE_TOKEN}"})
    assert bearer.status_code == 200 and bearer.json() == {"data": []}
    wrong_field = graph(meta_sandbox, "GET", f"{PAGE}/conversations", params={"fields": "id,nonsense"})
    assert "nonexisting field (nonsense)" in wrong_field.json()["error"]["message"]
    unversioned = requests.get(f"{meta_sandbox.url}/latest/{PAGE}/conversations",
                               params={"access_token": DEFAULT_PAGE_TOKEN}, timeout=5)
    assert unversioned.json()["error"]["code"] == 2500
    missing = graph(meta_sandbox, "GET", "t_999")
    assert (missing.json()["error"]["code"], missing.json()["error"]["error_subcode"]) == (100, 33)
    not_emulated = graph(meta_sandbox, "DELETE", f"{PAGE}/conversations")
    assert "does not emulate DELETE" in not_emulated.json()["error"]["message"]


def test_usage_headers_and_the_page_limit(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    meta.set_page_limit(4)
    first = graph(meta_sandbox, "GET", f"{PAGE}/conversations")
    usage = json.loads(first.headers["X-Business-Use-Case-Usage"])[PAGE][0]
    assert (usage["type"], usage["call_count"]) == ("pages", 25)
    assert set(json.loads(first.headers["X-App-Usage"])) == {"call_count", "total_cputime", "total_time"}
    for _ in range(3):
        assert graph(meta_sandbox, "GET", f"{PAGE}/conversations").status_code == 200
    throttled = graph(meta_sandbox, "GET", f"{PAGE}/conversations")
    assert throttled.json()["error"]["code"] == 80001
    assert json.loads(throttled.headers["X-Business-Use-Case-Usage"])[PAGE][0]["estimated_time_to_regain_access"] > 0
    meta.clock.advance(3601)
    assert graph(meta_sandbox, "GET", f"{PAGE}/conversations").status_code == 200


def test_a_lost_answer_still_sent_the_message(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    psid = meta.add_person("messenger", "Jane")
    meta.inbound("messenger", psid, "hello")
    requests.post(f"{meta_sandbox.url}/_sandbox/faults", json={"kind": "reset", "after": True,
                                                                "path": "/messages$"}, timeout=5)
    with pytest.raises(requests.ConnectionError):
        graph(meta_sandbox, "POST", f"{PAGE}/messages", json={"recipient": {"id": psid}, "message": {"text": "x"}})
    assert [m["text"] for m in meta.messages(psid)] == ["hello", "x"]


def test_profiles_one_by_one_and_several_ids_in_one_call(meta: MetaEmulator, meta_sandbox: EmulatorServer) -> None:
    jane, bob = meta.add_person("messenger", "Jane Doe"), meta.add_person("messenger", "Bob Roe")
    one = graph(meta_sandbox, "GET", jane, params={"fields": "first_name,last_name"}).json()
    assert one == {"first_name": "Jane", "last_name": "Doe", "id": jane}
    both = graph(meta_sandbox, "GET", "", params={"ids": f"{jane},{bob}", "fields": "name"}).json()
    assert both == {jane: {"name": "Jane Doe", "id": jane}, bob: {"name": "Bob Roe", "id": bob}}
    unknown = graph(meta_sandbox, "GET", "", params={"ids": f"{jane},999"}).json()
    assert unknown["error"]["code"] == 100


def test_route_table_and_docs_name_every_emulated_endpoint(meta_sandbox: EmulatorServer) -> None:
    routes = requests.get(f"{meta_sandbox.url}/_sandbox/routes", timeout=5).json()
    assert {(r["methods"][0], r["path"]) for r in routes} == {
        ("GET", "/<version>/<page_id>/conversations"), ("POST", "/<version>/<page_id>/messages"),
        ("GET", "/<version>/<node_id>/messages"), ("GET", "/<version>/<node_id>"), ("GET", "/<version>/")}
    page = (Path(__file__).parents[2] / "docs" / "sandbox" / "meta.md").read_text()
    for path in ("/{version}/{page-id}/conversations", "/{version}/{page-id}/messages",
                 "/{version}/{conversation-id}/messages", "/{version}/{message-id}", "/{version}/?ids="):
        assert f"`{path}" in page, path


# ---- webhooks -------------------------------------------------------------------------------


class Receiver:
    """A tiny callback URL: answers the verification request, records events and their signature check."""

    def __init__(self, verify_token: str = DEFAULT_VERIFY_TOKEN) -> None:
        self.events: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        receiver = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # http.server's naming
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                ok = query.get("hub.verify_token") == verify_token
                self.answer(200 if ok else 403, query.get("hub.challenge", "").encode() if ok else b"")

            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.signatures_ok.append(signature_ok(DEFAULT_APP_SECRET, body,
                                                           self.headers["X-Hub-Signature-256"]))
                receiver.events.append(json.loads(body))
                self.answer(200, b"EVENT_RECEIVED")

        self.local = LocalServer(Handler)
        self.url = f"{self.local.base_url}/webhooks/meta"
        self.local.start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.local.stop()


def test_verification_then_signed_message_and_echo_events(meta: MetaEmulator, meta_sandbox: EmulatorServer,
                                                          receiver: Receiver) -> None:
    assert meta.subscribe(receiver.url, "wrong-token") is False
    assert meta.subscribe(receiver.url) is True
    answer = requests.post(f"{meta_sandbox.url}/_sandbox/inbound", timeout=5,
                           json={"platform": "messenger", "from": "Jane Doe", "text": "help",
                                 "attachments": [{"type": "image", "payload": {"url": "https://x.test/a.jpg"}}]})
    assert answer.status_code == 201
    psid, mid = answer.json()["from"], answer.json()["id"]
    graph(meta_sandbox, "POST", f"{PAGE}/messages", json={"recipient": {"id": psid}, "message": {"text": "hi"}})
    assert meta.wait_for_deliveries()
    assert receiver.signatures_ok == [True, True]
    inbound, echo = receiver.events
    assert inbound["object"] == "page"
    [entry] = inbound["entry"]
    [event] = entry["messaging"]
    assert (entry["id"], event["sender"]["id"], event["recipient"]["id"]) == (PAGE, psid, PAGE)
    assert event["message"]["mid"] == mid and event["message"]["text"] == "help"
    assert event["message"]["attachments"] == [{"type": "image", "payload": {"url": "https://x.test/a.jpg"}}]
    assert isinstance(event["timestamp"], int)
    assert echo["entry"][0]["messaging"][0]["message"]["is_echo"] is True
    verify, *deliveries = meta.webhook_attempts()[1:]
    assert verify["kind"] == "verify" and verify["ok"] and all(d["status"] == 200 for d in deliveries)
