"""Signed webhooks, POSTed the way Twilio does, from one background thread.

Signature (https://www.twilio.com/docs/usage/security#validating-requests):
HMAC-SHA1, keyed with the account's auth token, over the full URL followed by
every POST parameter name and value sorted by name, base64-encoded, sent as
`X-Twilio-Signature`. `twilio.request_validator.RequestValidator` accepts it.

Delivery never blocks a request handler: `send` only puts the webhook on a
bounded queue; one daemon thread POSTs with a short timeout and reports each
attempt (HTTP status or the error) through the `record` callback. Like
Twilio's default for SMS webhooks, a failed attempt is not retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests

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


class WebhookDispatcher:
    """A bounded queue of webhooks and the one thread that POSTs them.

    `generation` moves on at every `discard_pending()` (the emulator's reset),
    so an attempt still in flight from before a reset is not logged into the
    fresh state.
    """

    def __init__(self, record: Recorder, *, timeout: float = 2.0, capacity: int = 1000) -> None:
        self._record = record
        self._timeout = timeout
        self._queue: queue.Queue[tuple[int, Webhook]] = queue.Queue(maxsize=capacity)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.generation = 0

    def send(self, hook: Webhook) -> bool:
        """Queue `hook` without waiting; False (and logged) when the queue is full."""
        self._ensure_thread()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait((self.generation, hook))
        except queue.Full:
            self._done()
            self._record(hook, None, "dropped: webhook queue full", self.generation)
            return False
        return True

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook has been attempted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def discard_pending(self) -> None:
        """Forget queued webhooks and stop logging the one in flight."""
        self.generation += 1
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
            self._done()

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-twilio-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        session = requests.Session()
        session.trust_env = False  # a proxy from the environment must not swallow loopback callbacks
        while True:
            generation, hook = self._queue.get()
            status, error = self._post(session, hook)
            self._record(hook, status, error, generation)
            self._done()

    def _post(self, session: requests.Session, hook: Webhook) -> tuple[int | None, str | None]:
        try:
            response = session.post(
                hook.url, data=hook.params, headers=hook.headers(), timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()
