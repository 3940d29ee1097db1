"""Account Activity style webhooks: CRC checks and signed event delivery.

X proves a webhook URL with a Challenge-Response Check: a GET with
`crc_token` (and `nonce`) that must answer 200
`{"response_token": "sha256=<base64 HMAC-SHA256(consumer secret, crc_token)>"}`.
It then POSTs events for each subscribed user (`for_user_id`):
`tweet_create_events` (with `user_has_blocked` when the post is an
@mention) and `direct_message_events`, in the v1.1 object shapes, signed with
`x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer secret, body)>`.
Reference: developer.x.com .../account-activity-api/guides/account-activity-data-objects.

Delivery never blocks a handler: events go to a bounded queue that one
background thread drains, retrying each event a few times; every attempt is
logged in `state["webhook_attempts"]`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from crmhub.sandbox._deliveries import QueuedDeliveries, loopback_session
from crmhub.sandbox._hosted import Host
from crmhub.sandbox.x.models import conversation_members, iso, parse_iso

LOG_SIZE = 500
TIMEOUT = 3.0  # X expects webhooks to answer within a few seconds
V1_TIME = "%a %b %d %H:%M:%S +0000 %Y"


def sign(secret: str, message: bytes) -> str:
    """X's webhook signature: 'sha256=' + base64 HMAC-SHA256 with the consumer secret."""
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class _Delivery:
    generation: int
    delivery_id: str
    kind: str
    for_user_id: str
    body: bytes


class WebhookDispatcher(QueuedDeliveries[_Delivery]):
    """Queues and delivers events to the configured webhook on a background thread."""

    thread_name = "sandbox-x-webhooks"

    def __init__(self, host: Host) -> None:
        super().__init__()
        self._host = host

    # ---- configuration (called under host.lock by the emulator) -----------------
    def configure(self, url: str, consumer_secret: str, subscriptions: list[str], max_attempts: int) -> None:
        self._host.state["webhook"] = {"url": url, "consumer_secret": consumer_secret, "valid": False,
                                       "subscriptions": subscriptions, "max_attempts": max_attempts}

    def crc_check(self) -> bool:
        """Send a CRC GET to the webhook now; it is valid (gets events) only if it answers right."""
        hook = self._hook()
        if not hook:
            raise RuntimeError("no webhook configured: call set_webhook first")
        token = secrets.token_urlsafe(24)
        expected = sign(hook["consumer_secret"], token.encode())
        status, error = _attempt(
            lambda: loopback_session().get(hook["url"], params={"crc_token": token, "nonce": secrets.token_hex(8)},
                                 timeout=TIMEOUT),
            lambda answer: answer.status_code == 200 and _response_token(answer) == expected,
            "wrong or missing response_token")
        with self._host.lock:
            if self._host.state["webhook"] is not None:
                self._host.state["webhook"]["valid"] = error is None
            self._log("crc", "", 1, status, error, "")
        return error is None

    def _hook(self) -> dict[str, Any]:
        """A copy of the webhook configuration ({} when there is none)."""
        with self._host.lock:
            return dict(self._host.state["webhook"] or {})

    # ---- events (called under host.lock from handlers and seeds) ------------------
    def notify(self, kind: str, record: dict[str, Any]) -> None:
        """Queue the event for each subscribed user it concerns; never blocks."""
        hook = self._host.state["webhook"]
        if not hook:
            return
        involved = _involved(kind, record)
        event_kind = "tweet_create_events" if kind == "tweet" else "direct_message_events"
        for user_id in (u for u in hook["subscriptions"] if u in involved):
            if not hook["valid"]:
                self._log(event_kind, record["id"], 0, None, "webhook has not passed its CRC check", user_id)
                continue
            body = json.dumps(self._payload(kind, record, user_id), separators=(",", ":")).encode()
            self._enqueue(_Delivery(self._generation, record["id"], event_kind, user_id, body),
                          lambda u=user_id: self._log(event_kind, record["id"], 0, None, "queue full: event dropped",
                                                      u))

    def _deliver(self, delivery: _Delivery) -> None:
        hook = self._hook()
        if delivery.generation != self._generation or not hook:
            return
        headers = {"Content-Type": "application/json",
                   "x-twitter-webhooks-signature": sign(hook["consumer_secret"], delivery.body)}
        for attempt in range(1, hook["max_attempts"] + 1):
            status, error = _attempt(
                lambda: self._session.post(hook["url"], data=delivery.body, headers=headers, timeout=TIMEOUT),
                lambda answer: answer.status_code == 200, "webhook did not answer 200")
            with self._host.lock:
                if delivery.generation != self._generation:
                    return
                self._log(delivery.kind, delivery.delivery_id, attempt, status, error, delivery.for_user_id)
            if error is None:
                return

    def _log(self, kind: str, delivery_id: str, attempt: int, status: int | None, error: str | None,
             for_user_id: str) -> None:
        """Record one attempt (callers hold host.lock); the log keeps the latest entries."""
        log = self._host.state["webhook_attempts"]
        log.append({"kind": kind, "id": delivery_id, "for_user_id": for_user_id, "attempt": attempt,
                    "status": status, "ok": error is None, "error": error, "at": iso(self._host.clock.now())})
        del log[:-LOG_SIZE]

    # ---- payloads in the Account Activity (v1.1) shapes --------------------------------
    def _payload(self, kind: str, record: dict[str, Any], for_user_id: str) -> dict[str, Any]:
        users = self._host.state["users"]
        if kind == "tweet":
            payload: dict[str, Any] = {"for_user_id": for_user_id}
            if record["author_id"] != for_user_id:
                payload["user_has_blocked"] = False  # present on @mention events only
            payload["tweet_create_events"] = [_v1_tweet(record, users)]
            return payload
        sender, recipient = _dm_ends(record)
        return {
            "for_user_id": for_user_id,
            "direct_message_events": [{
                "type": "message_create",
                "id": record["id"],
                "created_timestamp": _millis(record["created_at"]),
                "message_create": {
                    "target": {"recipient_id": recipient},
                    "sender_id": sender,
                    "message_data": {"text": record["text"],
                                     "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []}},
                },
            }],
            "users": {uid: _v1_user(users[uid]) for uid in (sender, recipient) if uid in users},
        }


def _attempt(send: Callable[[], requests.Response], accepted: Callable[[requests.Response], bool],
             refusal: str) -> tuple[int | None, str | None]:
    """One HTTP call to the webhook: (status or None, error or None)."""
    try:
        answer = send()
    except requests.RequestException as exc:
        return None, type(exc).__name__
    return answer.status_code, None if accepted(answer) else refusal


def _involved(kind: str, record: dict[str, Any]) -> set[str]:
    if kind == "tweet":
        mentioned = {m["id"] for m in record.get("entities", {}).get("mentions", [])}
        return mentioned | {record["author_id"]}
    return set(conversation_members(record["dm_conversation_id"]) or ())


def _dm_ends(event: dict[str, Any]) -> tuple[str, str]:
    members = conversation_members(event["dm_conversation_id"]) or ("", "")
    recipient = members[1] if members[0] == event["sender_id"] else members[0]
    return event["sender_id"], recipient


def _millis(timestamp: str) -> str:
    return str(int(parse_iso(timestamp).timestamp() * 1000))


def _v1_user(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "id_str": user["id"], "name": user["name"], "screen_name": user["username"],
            "created_timestamp": _millis(user["created_at"]), "protected": user["protected"],
            "verified": user["verified"], "followers_count": user["followers_count"],
            "friends_count": user["following_count"],
            "profile_image_url_https": user["profile_image_url"]}


def _v1_tweet(tweet: dict[str, Any], users: dict[str, Any]) -> dict[str, Any]:
    created = parse_iso(tweet["created_at"])
    author = users[tweet["author_id"]]
    mentions = [{"screen_name": m["username"], "name": users[m["id"]]["name"], "id": int(m["id"]),
                 "id_str": m["id"], "indices": [m["start"], m["end"]]}
                for m in tweet.get("entities", {}).get("mentions", [])]
    hashtags = [{"text": h["tag"], "indices": [h["start"], h["end"]]}
                for h in tweet.get("entities", {}).get("hashtags", [])]
    parent_id = next((r["id"] for r in tweet.get("referenced_tweets", []) if r["type"] == "replied_to"), None)
    reply_to = users.get(tweet.get("in_reply_to_user_id", ""))
    return {
        "created_at": created.strftime(V1_TIME),
        "id": int(tweet["id"]),
        "id_str": tweet["id"],
        "text": tweet["text"],
        "truncated": False,
        "in_reply_to_status_id": int(parent_id) if parent_id else None,
        "in_reply_to_status_id_str": parent_id,
        "in_reply_to_user_id": int(reply_to["id"]) if reply_to else None,
        "in_reply_to_user_id_str": reply_to["id"] if reply_to else None,
        "in_reply_to_screen_name": reply_to["username"] if reply_to else None,
        "user": _v1_user(author),
        "entities": {"hashtags": hashtags, "urls": [], "user_mentions": mentions, "symbols": []},
        "lang": tweet.get("lang", "en"),
        "timestamp_ms": _millis(tweet["created_at"]),
    }


def _response_token(answer: requests.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    token = body.get("response_token") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None
