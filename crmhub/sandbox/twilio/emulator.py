"""`TwilioEmulator`: the Twilio REST API 2010-04-01 as the twilio SDK uses it.

Layers as in moto: `models.py` (state and domain operations), `responses.py`
(handlers), `urls.py` (route table), `errors.py` (Twilio's error bodies) and
`webhooks.py` (signed callbacks on a background thread). This class wires
them to the shared `Emulator` plumbing and carries the seed API that tests,
the demo and the traffic generator use to create data without HTTP.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import ControlAction, Emulator, Fault, Route, SandboxClock, json_response
from crmhub.sandbox.twilio import errors, models
from crmhub.sandbox.twilio.models import DEFAULT_ACCOUNT_SID, DEFAULT_API_KEY_SECRET, TwilioBackend, new_sid
from crmhub.sandbox.twilio.responses import Handler
from crmhub.sandbox.twilio.urls import URLS
from crmhub.sandbox.twilio.webhooks import Webhook, WebhookDispatcher

P = ParamSpec("P")
T = TypeVar("T")
ACCOUNT_IN_PATH = re.compile(r"^/2010-04-01/Accounts/([^/.]+)")
ADVANCE = re.compile(r"messages/([^/]+)/advance")
STARTED = "crmhub.sandbox.started"


def retry_after(seconds: float) -> str:
    """Whole seconds for Retry-After, never rounding a real wait down to 0."""
    return str(max(1, int(seconds + 0.999))) if seconds > 0 else "0"


def _seed(method: Callable[Concatenate[TwilioEmulator, P], T]) -> Callable[Concatenate[TwilioEmulator, P], T]:
    """Run a seed method under the emulator lock and persist its change."""
    @functools.wraps(method)
    def locked(self: TwilioEmulator, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self.lock:
            result = method(self, *args, **kwargs)
            self.persist()
            return result

    return locked


class TwilioEmulator(Emulator):
    """Twilio REST API 2010-04-01 (Messages, Media, IncomingPhoneNumbers, Calls, Recordings).

    Accepts `DEFAULT_ACCOUNT_SID` / `DEFAULT_AUTH_TOKEN` out of the box.
    Webhooks are signed with the owning account's auth token.
    """

    name = "twilio"

    def __init__(
        self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None,
        webhook_timeout: float = 2.0, webhook_queue: int = 1000,
    ) -> None:
        self.webhooks = WebhookDispatcher(self._log_webhook, timeout=webhook_timeout, capacity=webhook_queue)
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        super().__init__(clock=clock, state_file=state_file)
        self.backend = TwilioBackend(lambda: self.state, self.clock, self.webhooks.send)

    # ---- Emulator hooks -----------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return models.initial_state(models.utc(self.clock.now()))

    def routes(self) -> Iterable[Route]:
        return [Route(methods, rule, self._bind(handler)) for methods, rule, handler in URLS]

    def _bind(self, handler: Handler) -> Callable[..., Response]:
        """Give the handler the backend, apply `daily_limit`, render Twilio errors."""
        def run(request: Request, **path: str) -> Response:
            try:
                fault = self.take_fault("daily_limit", request)
                if fault is not None:
                    # Twilio has no daily quota: an exhausted allowance shows as a storm of 429s.
                    raise errors.too_many_requests(retry_after(fault.retry_after))
                return handler(self.backend, request, **path)
            except errors.TwilioError as exc:
                return exc.response()

        return run

    def authenticate(self, request: Request, route: Route) -> Response | None:
        auth = request.authorization
        match = ACCOUNT_IN_PATH.match(request.path)
        account_sid = match.group(1) if match else ""
        if auth is None or auth.type != "basic" or not self.backend.authorized(
            auth.username or "", auth.password or "", account_sid
        ):
            return errors.authenticate().response()
        return None

    def on_token_expiry(self) -> None:
        # Twilio credentials do not expire; the closest event is a rotated auth token.
        self.backend.rotate_credentials()

    def not_emulated_response(self, request: Request) -> Response:
        detail = f"the crmhub sandbox does not emulate {request.method} {request.path}"
        body = errors.error_body(501, None, detail) | {
            "error": "not emulated", "method": request.method, "path": request.path}
        return json_response(body, 501)

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        return errors.too_many_requests(retry_after(fault.retry_after)).response()

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return errors.server_error(fault.status).response()

    def decorate(self, request: Request, response: Response) -> Response:
        """Twilio's per-response headers (request id, duration, account concurrency)."""
        started = float(request.environ.get(STARTED, time.perf_counter()))
        response.headers["Twilio-Request-Id"] = new_sid("RQ")
        response.headers["Twilio-Request-Duration"] = f"{time.perf_counter() - started:.3f}"
        response.headers["Twilio-Concurrent-Requests"] = str(max(self._inflight, 1))
        return response

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ[STARTED] = time.perf_counter()
        with self._inflight_lock:
            self._inflight += 1
        try:
            return super().__call__(environ, start_response)
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def reset(self) -> None:
        with self.lock:
            super().reset()
            self.webhooks.discard_pending()

    def extra_control(self, request: Request, what: str) -> Response | None:
        """Twilio's own control endpoints: transitions, inbound, messages/<sid>/advance."""
        if request.method != "POST" or not (what in ("transitions", "inbound") or ADVANCE.fullmatch(what)):
            return None
        body = request.get_json(force=True, silent=True) or {}
        try:
            return json_response(self._run_control(what, body))
        except (KeyError, TypeError, ValueError) as exc:
            return json_response({"error": f"bad {what} request: {exc}"}, 400)

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/numbers` (one of our numbers) and `POST /_sandbox/calls` (a customer calls one)."""
        return {"numbers": lambda body: {"sid": self.add_number(body["phone"], body.get("sms_url"),
                                                                body.get("voice_status_url"))},
                "calls": self._inbound_call}

    def _inbound_call(self, body: dict[str, Any]) -> dict[str, Any]:
        """A customer's call to one of our numbers (an unanswered one with status "no-answer")."""
        if self.backend.find_number(body["to"]) is None:
            raise ValueError(f"{body['to']} is not an IncomingPhoneNumber of any account; add it first "
                             f"(POST /_sandbox/numbers)")
        status = str(body.get("status", "completed"))
        duration = int(body.get("duration", 60 if status == "completed" else 0))
        return {"sid": self.add_call(body["from"], body["to"], status=status, duration=duration)}

    def _run_control(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        if what == "transitions":
            self.set_transitions(body["mode"], int(body.get("reads", 1)))
            return {"transitions": self.snapshot()["transitions"]}
        if what == "inbound":
            sid = self.receive_message(body["from"], body["to"], body.get("body", ""), body.get("media_urls", ()),
                                       profile_name=body.get("profile_name"))
            return {"sid": sid}
        sid = ADVANCE.fullmatch(what).group(1)  # type: ignore[union-attr]  # matched by extra_control
        return {"sid": sid, "status": self.advance_message(sid, body.get("status"))}

    def _log_webhook(self, hook: Webhook, status: int | None, error: str | None, generation: int) -> None:
        with self.lock:
            if generation != self.webhooks.generation:
                return  # queued before a reset: not part of this state
            self.state["webhooks"].append({
                "kind": hook.kind, "sid": hook.sid, "url": hook.url, "status": status, "error": error,
                "signature": hook.signature, "params": dict(hook.params), "at": self.clock.now().isoformat(),
            })

    # ---- seed API -----------------------------------------------------------
    @_seed
    def add_account(self, sid: str | None = None, auth_token: str | None = None,
                    friendly_name: str = "crmhub sandbox") -> str:
        """A further account (its own numbers, messages and webhook signing token); returns its SID."""
        return self.backend.add_account(sid, auth_token, friendly_name)

    @_seed
    def add_api_key(self, account_sid: str = DEFAULT_ACCOUNT_SID, secret: str = DEFAULT_API_KEY_SECRET) -> str:
        """An API key (SK...) of the account; authenticate as (key SID, secret) with account_sid=."""
        return self.backend.add_api_key(account_sid, secret)

    def auth_token(self, account_sid: str = DEFAULT_ACCOUNT_SID) -> str:
        """The account's current auth token (it changes after an `expire_token` fault)."""
        with self.lock:
            return self.backend.auth_token(account_sid)

    @_seed
    def add_number(self, phone: str, sms_url: str | None = None, voice_status_url: str | None = None,
                   account_sid: str = DEFAULT_ACCOUNT_SID) -> str:
        """An IncomingPhoneNumber (PN...): a valid From, and where inbound SMS/WhatsApp and call status POST."""
        return self.backend.add_number(phone, sms_url, voice_status_url, account_sid)

    @_seed
    def add_messaging_service(self, numbers: Sequence[str], account_sid: str = DEFAULT_ACCOUNT_SID,
                              friendly_name: str = "crmhub") -> str:
        """A Messaging Service (MG...) sending from the first of `numbers`."""
        return self.backend.add_messaging_service(numbers, account_sid, friendly_name)

    @_seed
    def mark_undeliverable(self, number: str, status: str = "undelivered", error_code: int | None = None) -> None:
        """Messages to `number` end `undelivered` (30003) or `failed` (30008) instead of `delivered`."""
        self.backend.mark_undeliverable(number, status, error_code)

    @_seed
    def set_transitions(self, mode: str, reads: int = 1) -> None:
        """When outbound messages advance: "immediate", "reads" (a step every `reads` reads) or "manual"."""
        self.backend.set_transitions(mode, reads)

    @_seed
    def advance_message(self, sid: str, status: str | None = None) -> str:
        """Move an outbound message one step, or up to `status`; returns the new status."""
        return self.backend.advance_message(sid, status)

    @_seed
    def add_content(self, friendly_name: str, body: str, variables: dict[str, str] | None = None, *,
                    language: str = "en", whatsapp_approved: bool = True,
                    account_sid: str = DEFAULT_ACCOUNT_SID) -> str:
        """A Content Template (HX...), `body` with {{1}}-style placeholders; returns its ContentSid."""
        return self.backend.add_content(friendly_name, body, variables, language=language,
                                        whatsapp_approved=whatsapp_approved, account_sid=account_sid)

    @_seed
    def receive_message(self, from_: str, to: str, body: str, media_urls: Sequence[str] = (),
                        at: datetime | None = None, profile_name: str | None = None) -> str:
        """An inbound SMS/WhatsApp to one of our numbers; POSTs its sms_url, signed. Returns the SID."""
        return self.backend.receive_message(from_, to, body, media_urls, at, profile_name)

    @_seed
    def add_call(self, from_: str, to: str, direction: str = "inbound", status: str = "completed",
                 duration: int = 60, start: datetime | None = None, recording: bool = False) -> str:
        """A call (CA...), with a recording if asked; POSTs the number's voice status callback. Returns the SID."""
        return self.backend.add_call(from_, to, direction, status, duration, start, recording)

    def webhook_log(self) -> list[dict[str, Any]]:
        """Every webhook attempt so far: kind, sid, url, status (None if unreachable), error, params."""
        return list(self.snapshot()["webhooks"])

    def wait_for_webhooks(self, timeout: float = 5.0) -> bool:
        """Block until every queued webhook has been attempted (False on timeout)."""
        return self.webhooks.wait_idle(timeout)
