"""The webhook receiver: signed Twilio and X callbacks into the same ingest path as polling.

One FastAPI app (`create_app`), served in the daemon's process or on its own
(`WebhookServer`). What it promises the senders and the ops:

- a body over `MAX_BODY` gets 413 before it is read further; a missing or
  wrong signature gets 403 and is counted (`app.state.rejected[source]`);
  no body is ever logged, only route, outcome and SIDs;
- a signed Twilio message or ended call is stored through the injected
  `ingest` (one transaction) *before* it is acknowledged; what is signed but
  cannot be translated is dead-lettered and still answered 200, so Twilio
  does not retry it forever; a storage failure answers 503 and the reconcile
  poll picks the item up later;
- translations live in `crmhub.connectors.twilio_hooks` and produce the
  poller's Interactions, so the ledger's (channel, external id) key stores
  an item that came both ways once;
- junk (wrong content type, binary or huge bodies, missing fields, odd Host
  headers) gets a 4xx, never a 500.

X events are verified, then, given who we are on X (`x_account`, resolved
from the credentials, never from the payload), translated by
`crmhub.connectors.x_hooks` into the X poller's Interactions and stored the
same way; a custom `on_x_event(payload)` replaces that. The CRC route answers
only X-shaped tokens (`crmhub.connectors.x_signing`), so it signs nothing an
outsider chose. A signed X body that cannot be used (not JSON, not an object,
nested deeper than `MAX_DEPTH`) is a dead letter with a placeholder payload,
answered 200, so X does not retry it forever.

`/metrics` and `/healthz` are not served here but on the ops listener
(`crmhub.ops_listener`), which need not be reachable by the vendors; a load
balancer in front of several daemons' receivers probes that `/healthz`
(nothing on this port reveals state). Every receiver accepts every webhook:
signatures need only the shared secrets and `public_url`, X's CRC only the
consumer secret, and storing goes to the shared store.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import ClientDisconnect
from twilio.request_validator import RequestValidator

from crmhub.connectors.twilio_hooks import call_from_params, message_from_params, status_advances, status_from_params
from crmhub.connectors.x_hooks import XAccountActivity, unusable_payload
from crmhub.connectors.x_signing import BadCrcToken, crc_response, verify
from crmhub.model import Identity, Interaction, Malformed
from crmhub.serving import HttpServer
from crmhub.store import StateStore
from crmhub.store.ledger import IngestResult, ingest_page

log = structlog.get_logger("crmhub.webhooks")

IngestFn = Callable[[list[Interaction], list[Malformed]], IngestResult]
"""Stores interactions and dead letters in one transaction (see `ledger_ingest`)."""
StatusFn = Callable[[str, str], object]
"""Called as on_status(message_sid, status) for every signed status callback."""
XEventFn = Callable[[dict[str, Any]], object]
"""Called with each signed X Account Activity payload (parsed JSON object)."""
MetricsFn = Callable[[str, str], None]
"""Called as metrics(route, outcome), e.g. ("twilio.messages", "rejected")."""
XAccountFn = Callable[[], Identity]
"""Who we are on X, as X says (`XChannel.account`); raises when X cannot be asked."""

WebhookServer = HttpServer
"""The receiver's server (uvicorn on a thread), under the name its callers know."""

MAX_BODY = 256 * 1024  # Twilio's biggest webhook (1,600-char body, 10 media URLs) is a few KB
MAX_FIELDS = 500
MAX_DEPTH = 64  # X's events nest about 6 deep; json.loads and what follows recurse per level
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
TWILIO_SIGNATURE = "x-twilio-signature"
X_SIGNATURE = "x-twitter-webhooks-signature"


def create_app(ingest: IngestFn, *, twilio_auth_token: str | None, public_url: str | None,
               x_consumer_secret: str | None, metrics: MetricsFn | None = None,
               on_status: StatusFn | None = None, on_x_event: XEventFn | None = None,
               default_region: str = "US", clock: Callable[[], datetime] | None = None,
               x_account: XAccountFn | None = None) -> FastAPI:
    """The webhook app; a source whose secret is None answers 404 on its routes.

    Args:
        ingest: stores a webhook's interactions and dead letters (e.g. `ledger_ingest(store, clock)`).
        twilio_auth_token: the account's auth token, which signs Twilio's webhooks.
        public_url: the scheme, host and port Twilio calls (behind a proxy); signatures are
            checked over it plus the request's path and query. None: the request's own URL.
        x_consumer_secret: the X app's consumer secret (CRC answers and event signatures).
        metrics: told every route's outcome; the counts are also kept in `app.state.counts`.
        on_status: records message status callbacks (default: an in-memory `MessageStatuses`).
        on_x_event: receives verified X payloads instead of the default: with `x_account`, store
            their mentions and DMs through `ingest`; without it, ignore them.
        default_region: region for phone numbers written without a country code.
        clock: when a webhook was received (Twilio's message webhooks carry no time).
        x_account: who we are on X, from our credentials (e.g. `XChannel.account`): the default X
            handling stores events whose `for_user_id` is that account's id, and answers 503 while it
            cannot be resolved.
    """
    receiver = _Receiver(ingest, twilio_auth_token=twilio_auth_token, public_url=public_url,
                         x_consumer_secret=x_consumer_secret, metrics=metrics,
                         on_status=on_status if on_status is not None else MessageStatuses(),
                         on_x_event=on_x_event, x_account=x_account if on_x_event is None else None,
                         default_region=default_region,
                         clock=clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="crmhub webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rejected = receiver.rejected
    app.state.counts = receiver.counts
    app.state.statuses = receiver.on_status
    app.add_api_route("/webhooks/twilio/messages", receiver.twilio_message, methods=["POST"])
    app.add_api_route("/webhooks/twilio/status", receiver.twilio_status, methods=["POST"])
    app.add_api_route("/webhooks/twilio/calls", receiver.twilio_call, methods=["POST"])
    app.add_api_route("/webhooks/x", receiver.x_crc, methods=["GET"])
    app.add_api_route("/webhooks/x", receiver.x_event, methods=["POST"])
    return app


def ledger_ingest(store: StateStore, clock: Callable[[], datetime],
                  on_stored: Callable[[], None] | None = None) -> IngestFn:
    """The usual `ingest`: one ledger transaction per webhook.

    Args:
        on_stored: called after a transaction that stored new items committed (the daemon wakes its routing).
    """
    def ingest(interactions: list[Interaction], malformed: list[Malformed]) -> IngestResult:
        with store.transaction() as session:
            result = ingest_page(session, interactions, malformed, now=clock())
        if result.stored and on_stored is not None:
            on_stored()
        return result

    return ingest


class MessageStatuses:
    """The latest status of each outbound message, kept in memory.

    Deduplicated on (message, status), and never moving backwards: a late
    `sent` after `delivered` is dropped, and failed/undelivered are final.
    The oldest messages are forgotten beyond `capacity`.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._latest: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, sid: str, status: str) -> bool:
        """Record `status` for `sid`; False when it is a repeat or would move backwards."""
        with self._lock:
            if not status_advances(self._latest.get(sid), status):
                return False
            self._latest[sid] = status
            self._latest.move_to_end(sid)
            while len(self._latest) > self.capacity:
                self._latest.popitem(last=False)
            return True

    def get(self, sid: str) -> str | None:
        with self._lock:
            return self._latest.get(sid)


class _Receiver:
    """The routes' shared state: secrets, callables, counters."""

    def __init__(self, ingest: IngestFn, *, twilio_auth_token: str | None, public_url: str | None,
                 x_consumer_secret: str | None, metrics: MetricsFn | None, on_status: StatusFn,
                 on_x_event: XEventFn | None, x_account: XAccountFn | None, default_region: str,
                 clock: Callable[[], datetime]) -> None:
        self.ingest = ingest
        self.twilio = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.x_secret = x_consumer_secret or None
        self.metrics = metrics
        self.on_status = on_status
        self.on_x_event = on_x_event
        self.x_account = x_account
        self.x_events = XAccountActivity()
        self.region = default_region
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()

    # ---- routes --------------------------------------------------------------
    async def twilio_message(self, request: Request) -> Response:
        route = "twilio.messages"
        params = await self._twilio_params(request, route)
        await self._store(route, message_from_params(params, received_at=self.clock(), default_region=self.region))
        return _twiml()

    async def twilio_status(self, request: Request) -> Response:
        route = "twilio.status"
        parsed = status_from_params(await self._twilio_params(request, route))
        if parsed is None:
            self._count(route, "ignored")
            return _twiml()
        recorded = await self._run(route, self.on_status, *parsed)
        self._count(route, "recorded" if recorded is not False else "repeat")
        log.info("status callback", route=route, sid=parsed[0], status=parsed[1], recorded=recorded is not False)
        return _twiml()

    async def twilio_call(self, request: Request) -> Response:
        route = "twilio.calls"
        item = call_from_params(await self._twilio_params(request, route), received_at=self.clock(),
                                default_region=self.region)
        if item is None:
            self._count(route, "ignored")  # ringing, in progress...: logged once it has ended
        else:
            await self._store(route, item)
        return _twiml()

    async def x_crc(self, request: Request) -> JSONResponse:
        secret = self._x_secret()
        try:
            answer = crc_response(secret, request.query_params.get("crc_token", ""))
        except BadCrcToken as exc:  # answering it would sign an outsider's text, e.g. an event body
            self._count("x.crc", "invalid")
            raise HTTPException(400, str(exc)) from None
        self._count("x.crc", "answered")
        return JSONResponse({"response_token": answer})

    async def x_event(self, request: Request) -> JSONResponse:
        route = "x.events"
        secret = self._x_secret()
        body = await self._body(request, route)
        given = request.headers.get(X_SIGNATURE)
        if not verify(secret, body, given):
            self._reject("x", route, "missing" if not given else "bad")
        payload = _json_object(body)
        if isinstance(payload, str):  # signed by X, yet unusable: a dead letter, so X stops retrying it
            await self._store(route, unusable_payload(body, payload))
        elif self.x_account is not None:
            await self._store_x(route, payload, await self._whoami(route))
        elif self.on_x_event is not None:
            await self._run(route, self.on_x_event, payload)
            self._count(route, "accepted")
        else:
            self._count(route, "ignored")
        return JSONResponse({})

    # ---- the steps -----------------------------------------------------------
    async def _twilio_params(self, request: Request, route: str) -> ImmutableMultiDict[str, str]:
        """The signed form parameters, or the right 4xx (403 counted)."""
        if self.twilio is None:
            raise HTTPException(404, "Twilio webhooks are not configured")
        body = await self._body(request, route)
        signature = request.headers.get(TWILIO_SIGNATURE)
        if not signature:
            self._reject("twilio", route, "missing")
        params = self._form(request, body, route)
        try:
            valid = self.twilio.validate(self._called_url(request), params, signature)
        except ValueError:  # e.g. a Host header with a port that is not a number
            valid = False
        if not valid:
            self._reject("twilio", route, "bad")
        return params

    def _form(self, request: Request, body: bytes, route: str) -> ImmutableMultiDict[str, str]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if not body:
                return ImmutableMultiDict()  # no parameters at all, however it is labelled
            if content_type != FORM:
                raise ValueError(f"content type must be {FORM}")
            return ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                                max_num_fields=MAX_FIELDS))
        except ValueError as exc:  # not UTF-8, too many fields
            self._count(route, "invalid")
            raise HTTPException(400, "expected a form-encoded body") from exc

    def _called_url(self, request: Request) -> str:
        """The URL Twilio signed: the public URL's origin with this path and query, or this request's URL."""
        if self.public_url is None:
            return str(request.url)
        query = request.url.query
        return self.public_url + request.url.path + (f"?{query}" if query else "")

    async def _body(self, request: Request, route: str) -> bytes:
        """The raw body, refused with 413 past MAX_BODY without reading the rest."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            self._too_large(route)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    self._too_large(route)
                chunks.append(chunk)
        except ClientDisconnect:  # the sender hung up mid-body: nothing to store, nobody to answer
            self._count(route, "disconnected")
            log.warning("webhook sender hung up before the whole body", route=route, received_bytes=size)
            raise HTTPException(400, "incomplete body") from None
        return b"".join(chunks)

    async def _whoami(self, route: str) -> Identity:
        """Our X account, as X says; 503 while it cannot be asked (X retries, the poll reconciles)."""
        assert self.x_account is not None
        try:
            return await run_in_threadpool(self.x_account)
        except Exception as exc:  # noqa: BLE001  # X down, bad credentials: not stored, try later
            self._count(route, "error")
            log.error("X account unknown; webhook not stored", route=route, error=type(exc).__name__)
            raise HTTPException(503, "not stored; try again later") from None

    async def _store(self, route: str, item: Interaction | Malformed) -> None:
        """Ingest one webhook item; answered only once it is stored."""
        good, bad = ([item], []) if isinstance(item, Interaction) else ([], [item])
        result: IngestResult = await self._run(route, self.ingest, good, bad)
        ref = item.external_id if isinstance(item, Interaction) else item.ref
        outcome = "dead_lettered" if bad else "stored" if result.stored else "repeat"
        self._count(route, outcome)
        log.info("webhook ingested", route=route, ref=ref, outcome=outcome)

    async def _store_x(self, route: str, payload: dict[str, Any], me: Identity) -> None:
        """Store a payload's mentions and DMs (one transaction), counting each event's outcome."""
        batch = self.x_events.translate(payload, me)
        stored = repeats = 0
        if batch.interactions or batch.malformed:
            result: IngestResult = await self._run(route, self.ingest, batch.interactions, batch.malformed)
            stored, repeats = result.stored, result.repeats
        outcomes = {"stored": stored, "repeat": repeats, "dead_lettered": len(batch.malformed),
                    "ignored": batch.ignored, "deferred": batch.deferred}
        for outcome, times in outcomes.items():
            for _ in range(times):
                self._count(route, outcome)
        log.info("webhook ingested", route=route, refs=[i.external_id for i in batch.interactions],
                 **{k: v for k, v in outcomes.items() if v})

    async def _run(self, route: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a storing callable off the event loop; its failure is a 503, never a 500."""
        try:
            return await run_in_threadpool(fn, *args)
        except Exception as exc:  # the boundary to the store: any failure means "not stored, try later"
            self._count(route, "error")
            log.error("webhook not stored", route=route, error=type(exc).__name__)  # str(exc) may hold the body
            raise HTTPException(503, "not stored; try again later") from exc

    def _x_secret(self) -> str:
        if self.x_secret is None:
            raise HTTPException(404, "X webhooks are not configured")
        return self.x_secret

    def _reject(self, source: str, route: str, why: str) -> NoReturn:
        self.rejected[source] += 1
        self._count(route, "rejected")
        log.warning("webhook signature rejected", route=route, signature=why)
        raise HTTPException(403, "invalid signature")

    def _too_large(self, route: str) -> NoReturn:
        self._count(route, "too_large")
        raise HTTPException(413, f"body over {MAX_BODY} bytes")

    def _count(self, route: str, outcome: str) -> None:
        self.counts[(route, outcome)] += 1
        if self.metrics is not None:
            self.metrics(route, outcome)


def _twiml() -> Response:
    return Response(TWIML, media_type="text/xml")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _json_object(body: bytes) -> dict[str, Any] | str:
    """The body as a JSON object, or why it is not one; nesting past MAX_DEPTH is refused before parsing."""
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", body)):  # brackets outside strings
        depth += 1 if bracket in (b"[", b"{") else -1
        if depth > MAX_DEPTH:
            return f"body nested deeper than {MAX_DEPTH} levels"
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError is a ValueError
        return "body is not JSON"
    return payload if isinstance(payload, dict) else "body is not a JSON object"
