"""Signed webhooks, POSTed the way Twilio does, from one background thread.

Signature (https://www.twilio.com/docs/usage/security#validating-requests):
HMAC-SHA1, keyed with the account's auth token, over the full URL followed by
every POST parameter name and value sorted by name, base64-encoded, sent as
`X-Twilio-Signature`. `twilio.request_validator.RequestValidator` accepts it.

Delivery never blocks a request handler: `send` only puts the webhook on the
bounded queue the sandbox's emulators share (`crmhub.sandbox._deliveries`);
its one daemon thread POSTs with a short timeout and reports each attempt
(HTTP status or the error) through the `record` callback. Like Twilio's
default for SMS webhooks, a failed attempt is not retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests

from crmhub.sandbox._deliveries import QUEUE_SIZE, QueuedDeliveries

SIGNATURE_HEADER = "X-Twilio-Signature"


def signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Twilio's X-Twilio-Signature for a form POST of `params` to `url`."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Webhook:
    """One signed POST to deliver: what, about which resource, to where."""

    kind: str  # "message-status", "incoming-message", "call-status"
    sid: str
    url: str
    params: dict[str, str]
    signature: str
    idempotency_token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def headers(self) -> dict[str, str]:
        return {
            SIGNATURE_HEADER: self.signature,
            "I-Twilio-Idempotency-Token": self.idempotency_token,
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
        }


Recorder = Callable[[Webhook, "int | None", "str | None", int], None]
"""Called as record(webhook, http_status, error, generation) after each attempt."""


@dataclass(frozen=True)
class _Queued:
    generation: int
    hook: Webhook


class WebhookDispatcher(QueuedDeliveries[_Queued]):
    """POSTs webhooks from the shared delivery queue, one attempt each, reported through `record`.

    The emulator's `record` drops an attempt whose generation is older than
    `generation` (queued before a reset).
    """

    thread_name = "sandbox-twilio-webhooks"

    def __init__(self, record: Recorder, *, timeout: float = 2.0, capacity: int = QUEUE_SIZE) -> None:
        super().__init__(capacity)
        self._record = record
        self._timeout = timeout

    def send(self, hook: Webhook) -> bool:
        """Queue `hook` without waiting; False (and logged) when the queue is full."""
        generation = self._generation
        return self._enqueue(_Queued(generation, hook),
                             lambda: self._record(hook, None, "dropped: webhook queue full", generation))

    def _deliver(self, queued: _Queued) -> None:
        status, error = self._post(queued.hook)
        self._record(queued.hook, status, error, queued.generation)

    def _post(self, hook: Webhook) -> tuple[int | None, str | None]:
        try:
            response = self._session.post(
                hook.url, data=hook.params, headers=hook.headers(), timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None
