"""Webhooks as Meta sends them: the verification request, then signed event POSTs.

Subscribing a callback URL makes Meta GET it with `hub.mode=subscribe`,
`hub.verify_token` (the token the developer typed) and `hub.challenge`; the
URL must answer 200 with the challenge as its body. Events then arrive as
POSTs of `{"object": "page"|"instagram", "entry": [{"id", "time",
"messaging": [{"sender": {"id"}, "recipient": {"id"}, "timestamp",
"message": {"mid", "text", "attachments", "is_echo", "app_id", "metadata"}}]}]}`,
signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body
keyed with the app secret>`. Meta retries a delivery that does not get a
200. Reference: developers.facebook.com/docs/graph-api/webhooks/getting-started
and .../messenger-platform/webhooks, .../reference/webhook-events/messages.

Delivery never blocks a handler: one background thread drains a bounded
queue; each attempt is logged in `state["webhook_attempts"]`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import requests

from crmhub.sandbox._deliveries import QueuedDeliveries, loopback_session
from crmhub.sandbox._hosted import Host
from crmhub.sandbox.meta.models import graph_time

LOG_SIZE = 500
TIMEOUT = 5.0
SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(app_secret: str, body: bytes) -> str:
    """Meta's event signature: 'sha256=' + hex HMAC-SHA256 of the raw body with the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class _Delivery:
    generation: int
    mid: str
    body: bytes


class MetaWebhooks(QueuedDeliveries[_Delivery]):
    """The app's webhook subscription and its delivery thread."""

    thread_name = "sandbox-meta-webhooks"

    def __init__(self, host: Host) -> None:
        super().__init__()
        self._host = host

    def subscribe(self, url: str, verify_token: str, fields: list[str], max_attempts: int = 3) -> bool:
        """Set the callback URL and run Meta's verification request at once; True if it answered right."""
        challenge = str(secrets.randbelow(10**9))
        with self._host.lock:
            self._host.state["webhook"] = {"url": url, "verify_token": verify_token, "verified": False,
                                           "fields": fields, "max_attempts": max_attempts}
        try:
            answer = loopback_session().get(url, params={"hub.mode": "subscribe", "hub.verify_token": verify_token,
                                               "hub.challenge": challenge}, timeout=TIMEOUT)
            status: int | None = answer.status_code
            ok = answer.status_code == 200 and answer.text == challenge
        except requests.RequestException:
            status, ok = None, False
        with self._host.lock:
            self._host.state["webhook"]["verified"] = ok
            self._log("verify", "", 1, status, None if ok else "the callback did not echo hub.challenge")
        return ok

    def notify(self, kind: str, message: dict[str, Any]) -> None:
        """Queue the event for a message (called under the host's lock); never blocks."""
        hook = self._host.state["webhook"]
        if not hook:
            return
        if kind == "echo" and "message_echoes" not in hook["fields"]:
            return
        if not hook["verified"]:
            self._log(kind, message["id"], 0, None, "the callback URL has not been verified")
            return
        body = json.dumps(self.payload(message), separators=(",", ":")).encode()
        self._enqueue(_Delivery(self._generation, message["id"], body),
                      lambda: self._log(kind, message["id"], 0, None, "queue full: event dropped"))

    def payload(self, message: dict[str, Any]) -> dict[str, Any]:
        """The `messages` / `message_echoes` event of one message, in Meta's shape."""
        millis = int(message["created_time"] * 1000)
        body: dict[str, Any] = {"mid": message["id"]}
        if message["text"]:
            body["text"] = message["text"]
        if message["attachments"]:
            body["attachments"] = message["attachments"]
        if message["is_echo"]:
            body = {"is_echo": True, "app_id": int(self._host.state["app"]["id"]), **body}
            if "metadata" in message:
                body["metadata"] = message["metadata"]
        our_id = message["from"] if message["is_echo"] else message["to"]
        return {"object": "instagram" if message["platform"] == "instagram" else "page",
                "entry": [{"id": our_id, "time": millis,
                           "messaging": [{"sender": {"id": message["from"]}, "recipient": {"id": message["to"]},
                                          "timestamp": millis, "message": body}]}]}

    def _deliver(self, delivery: _Delivery) -> None:
        with self._host.lock:
            hook = dict(self._host.state["webhook"] or {})
            secret = str(self._host.state["app"]["secret"])
        if delivery.generation != self._generation or not hook:
            return
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, delivery.body)}
        for attempt in range(1, hook["max_attempts"] + 1):
            try:
                status: int | None = self._session.post(hook["url"], data=delivery.body, headers=headers,
                                                   timeout=TIMEOUT).status_code
            except requests.RequestException:
                status = None
            error = None if status == 200 else "the callback did not answer 200"
            with self._host.lock:
                if delivery.generation != self._generation:
                    return
                self._log("event", delivery.mid, attempt, status, error)
            if error is None:
                return

    def _log(self, kind: str, mid: str, attempt: int, status: int | None, error: str | None) -> None:
        log = self._host.state["webhook_attempts"]
        log.append({"kind": kind, "mid": mid, "attempt": attempt, "status": status, "ok": error is None,
                    "error": error, "at": graph_time(self._host.clock.time())})
        del log[:-LOG_SIZE]
