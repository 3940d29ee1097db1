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

X events are verified, then, given our account (`x_account`), translated by
`crmhub.connectors.x_hooks` into the X poller's Interactions and stored the
same way; a custom `on_x_event(payload)` replaces that.

Given a `registry`, the app also serves `GET /metrics` (Prometheus text
exposition); given a `health` check, `GET /healthz` answers its report, 200
while the state store is reachable and 503 when not (see `crmhub.metrics`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import structlog
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from crmhub.connectors.x_hooks import XAccountActivity
from crmhub.connectors.twilio_hooks import call_from_params, message_from_params, status_advances, status_from_params
from crmhub.model import Interaction, Malformed
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
HealthFn = Callable[[], tuple[bool, dict[str, Any]]]
"""Returns (ready, report): /healthz answers the report, with 503 when not ready."""

MAX_BODY = 256 * 1024  # Twilio's biggest webhook (1,600-char body, 10 media URLs) is a few KB
MAX_FIELDS = 500
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
TWILIO_SIGNATURE = "x-twilio-signature"
X_SIGNATURE = "x-twitter-webhooks-signature"


def create_app(ingest: IngestFn, *, twilio_auth_token: str | None, public_url: str | None,
               x_consumer_secret: str | None, metrics: MetricsFn | None = None,
               on_status: StatusFn | None = None, on_x_event: XEventFn | None = None,
               default_region: str = "US", clock: Callable[[], datetime] | None = None,
               x_account: str | None = None, registry: CollectorRegistry | None = None,
               health: HealthFn | None = None) -> FastAPI:
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
        x_account: our X handle (`channels.x.account`): whose events the default X handling stores.
        registry: serve its metrics on `GET /metrics` (None: no such route).
        health: the readiness report `GET /healthz` answers (None: a plain {"status": "ok"}).
    """
    receiver = _Receiver(ingest, twilio_auth_token=twilio_auth_token, public_url=public_url,
                         x_consumer_secret=x_consumer_secret, metrics=metrics,
                         on_status=on_status if on_status is not None else MessageStatuses(),
                         on_x_event=on_x_event,
                         x_events=XAccountActivity(x_account) if on_x_event is None and x_account else None,
                         default_region=default_region,
                         clock=clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="crmhub webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rejected = receiver.rejected
    app.state.counts = receiver.counts
    app.state.statuses = receiver.on_status
    if health is None:
        app.add_api_route("/healthz", receiver.health, methods=["GET"])
    else:
        app.add_api_route("/healthz", _health_route(health), methods=["GET"])
    if registry is not None:
        app.add_api_route("/metrics", _metrics_route(registry), methods=["GET"])
    app.add_api_route("/webhooks/twilio/messages", receiver.twilio_message, methods=["POST"])
    app.add_api_route("/webhooks/twilio/status", receiver.twilio_status, methods=["POST"])
    app.add_api_route("/webhooks/twilio/calls", receiver.twilio_call, methods=["POST"])
    app.add_api_route("/webhooks/x", receiver.x_crc, methods=["GET"])
    app.add_api_route("/webhooks/x", receiver.x_event, methods=["POST"])
    return app


def _health_route(health: HealthFn) -> Callable[[], Any]:
    async def healthz() -> JSONResponse:
        try:
            ready, report = await run_in_threadpool(health)
        except Exception as exc:  # noqa: BLE001  # a probe answers, whatever broke
            log.error("health check failed", error=type(exc).__name__)
            ready, report = False, {"status": "unavailable", "checks": {}}
        return JSONResponse(report, status_code=200 if ready else 503)

    return healthz


def _metrics_route(registry: CollectorRegistry) -> Callable[[], Any]:
    async def metrics() -> Response:
        body = await run_in_threadpool(generate_latest, registry)  # the store's gauges query the database
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def ledger_ingest(store: StateStore, clock: Callable[[], datetime]) -> IngestFn:
    """The usual `ingest`: one ledger transaction per webhook."""
    def ingest(interactions: list[Interaction], malformed: list[Malformed]) -> IngestResult:
        with store.transaction() as session:
            return ingest_page(session, interactions, malformed, now=clock())

    return ingest


def x_signature(consumer_secret: str, message: bytes) -> str:
    """X's CRC response token and event signature: 'sha256=' + base64 HMAC-SHA256."""
    digest = hmac.new(consumer_secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


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
                 on_x_event: XEventFn | None, x_events: XAccountActivity | None, default_region: str,
                 clock: Callable[[], datetime]) -> None:
        self.ingest = ingest
        self.twilio = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.x_secret = x_consumer_secret or None
        self.metrics = metrics
        self.on_status = on_status
        self.on_x_event = on_x_event
        self.x_events = x_events
        self.region = default_region
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()

    # ---- routes --------------------------------------------------------------
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

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
        token = request.query_params.get("crc_token")
        if not token:
            self._count("x.crc", "invalid")
            raise HTTPException(400, "crc_token is required")
        self._count("x.crc", "answered")
        return JSONResponse({"response_token": x_signature(secret, token.encode())})

    async def x_event(self, request: Request) -> JSONResponse:
        route = "x.events"
        secret = self._x_secret()
        body = await self._body(request, route)
        given = request.headers.get(X_SIGNATURE, "")
        if not hmac.compare_digest(x_signature(secret, body).encode(), given.encode()):
            self._reject("x", route, "missing" if not given else "bad")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            payload = None
        if not isinstance(payload, dict):
            self._count(route, "invalid")
            raise HTTPException(400, "expected a JSON object")
        if self.x_events is not None:
            await self._store_x(route, payload, self.x_events)
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
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                self._too_large(route)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _store(self, route: str, item: Interaction | Malformed) -> None:
        """Ingest one webhook item; answered only once it is stored."""
        good, bad = ([item], []) if isinstance(item, Interaction) else ([], [item])
        result: IngestResult = await self._run(route, self.ingest, good, bad)
        ref = item.external_id if isinstance(item, Interaction) else item.ref
        outcome = "dead_lettered" if bad else "stored" if result.stored else "repeat"
        self._count(route, outcome)
        log.info("webhook ingested", route=route, ref=ref, outcome=outcome)

    async def _store_x(self, route: str, payload: dict[str, Any], events: XAccountActivity) -> None:
        """Store a payload's mentions and DMs (one transaction), counting each event's outcome."""
        batch = events.translate(payload)
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


class WebhookServer:
    """Serves an app with uvicorn on a background thread: in the daemon, or in tests on port 0.

    Uvicorn's access log is off (it would log query strings); the app logs
    route and outcome itself.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *,
                 start_timeout: float = 10.0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="crmhub-webhooks", daemon=True)
        self._start_timeout = start_timeout
        self.host = host
        self._asked_port = port

    @property
    def port(self) -> int:
        """The bound port (the free one picked for port 0)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebhookServer:
        """Start serving; returns once the socket listens.

        Raises:
            RuntimeError: the server stopped or did not listen in time (e.g. the port is taken).
        """
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"webhook server did not start on {self.host}:{self._asked_port} (port taken?)")
            time.sleep(0.01)
        log.info("webhook server listening", url=self.url)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
