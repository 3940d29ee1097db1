"""The webhook receiver: every channel module's signed callbacks into the same ingest path as polling.

One FastAPI app (`create_app`), served in the daemon's process or on its own
(`WebhookServer`), holding the routes each enabled channel module declares
(`ChannelModule.hooks`, e.g. `crmhub.channels.twilio.hooks`). The shared
steps (`WebhookKit`) keep what it promises the senders and the ops:

- a body over `MAX_BODY` gets 413 before it is read further; a missing or
  wrong signature gets 403 and is counted (`app.state.rejected[source]`);
  no body is ever logged, only route, outcome and ids;
- a signed item is stored through the injected `ingest` (one transaction)
  *before* it is acknowledged; what is signed but cannot be translated is
  dead-lettered and still acknowledged, so the vendor does not retry it
  forever; a storage failure answers 503 and the reconcile poll picks the
  item up later;
- translations produce the poller's Interactions, so the ledger's (channel,
  external id) key stores an item that came both ways once;
- junk (wrong content type, binary or huge bodies, missing fields, odd Host
  headers) gets a 4xx, never a 500.

`/metrics` and `/healthz` are not served here but on the ops listener
(`crmhub.ops_listener`), which need not be reachable by the vendors; a load
balancer in front of several daemons' receivers probes that `/healthz`
(nothing on this port reveals state). Every receiver accepts every webhook:
signatures need only the shared secrets and `public_url`, and storing goes
to the shared store.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import ClientDisconnect

from crmhub.model import Interaction, Malformed
from crmhub.serving import HttpServer
from crmhub.store import StateStore
from crmhub.store.ledger import IngestResult, ingest_page

if TYPE_CHECKING:
    from crmhub.channels.contract import Hooks

log = structlog.get_logger("crmhub.webhooks")

IngestFn = Callable[[list[Interaction], list[Malformed]], IngestResult]
"""Stores interactions and dead letters in one transaction (see `ledger_ingest`)."""
MetricsFn = Callable[[str, str], None]
"""Called as metrics(route, outcome), e.g. ("twilio.messages", "rejected")."""

WebhookServer = HttpServer
"""The receiver's server (uvicorn on a thread), under the name its callers know."""

MAX_BODY = 256 * 1024  # Twilio's biggest webhook (1,600-char body, 10 media URLs) is a few KB
MAX_FIELDS = 500
MAX_DEPTH = 64  # X's events nest about 6 deep; json.loads and what follows recurse per level
FORM = "application/x-www-form-urlencoded"


def create_app(ingest: IngestFn, hooks: Iterable[Hooks | None], *, metrics: MetricsFn | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The webhook app: every channel module's routes (`ChannelModule.hooks`), over one shared `WebhookKit`.

    Args:
        ingest: stores a webhook's interactions and dead letters (e.g. `ledger_ingest(store, clock)`).
        hooks: the enabled channels' webhook handlers (None entries are skipped); a channel that is
            not given has no routes, so its paths answer 404.
        metrics: told every route's outcome; the counts are also kept in `app.state.counts`.
        clock: when a webhook was received (some vendors' webhooks carry no time).
    """
    kit = WebhookKit(ingest, metrics=metrics, clock=clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="crmhub webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.rejected = kit.rejected
    app.state.counts = kit.counts
    for hook in hooks:
        for route in hook.routes(kit) if hook is not None else ():
            app.add_api_route(route.path, route.endpoint, methods=list(route.methods))
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

    Deduplicated on (message, status), and never moving backwards as `advances`
    (the channel module's `status_advances`) says: e.g. a late `sent` after
    `delivered` is dropped, and failed/undelivered are final.
    The oldest messages are forgotten beyond `capacity`.
    """

    def __init__(self, capacity: int = 100_000, *,
                 advances: Callable[[str | None, str], bool] = lambda previous, status: previous != status) -> None:
        self.capacity = capacity
        self.advances = advances
        self._latest: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, sid: str, status: str) -> bool:
        """Record `status` for `sid`; False when it is a repeat or would move backwards."""
        with self._lock:
            if not self.advances(self._latest.get(sid), status):
                return False
            self._latest[sid] = status
            self._latest.move_to_end(sid)
            while len(self._latest) > self.capacity:
                self._latest.popitem(last=False)
            return True

    def get(self, sid: str) -> str | None:
        with self._lock:
            return self._latest.get(sid)


class WebhookKit:
    """The steps every channel's webhook routes share: bounded bodies, storing, counting, rejecting."""

    def __init__(self, ingest: IngestFn, *, metrics: MetricsFn | None, clock: Callable[[], datetime]) -> None:
        self.ingest = ingest
        self.metrics = metrics
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()

    async def body(self, request: Request, route: str) -> bytes:
        """The raw body, refused with 413 past MAX_BODY without reading the rest."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            self.too_large(route)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    self.too_large(route)
                chunks.append(chunk)
        except ClientDisconnect:  # the sender hung up mid-body: nothing to store, nobody to answer
            self.count(route, "disconnected")
            log.warning("webhook sender hung up before the whole body", route=route, received_bytes=size)
            raise HTTPException(400, "incomplete body") from None
        return b"".join(chunks)

    def form(self, request: Request, body: bytes, route: str) -> ImmutableMultiDict[str, str]:
        """A form-encoded body's fields (400, counted `invalid`, when it is not one)."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if not body:
                return ImmutableMultiDict()  # no parameters at all, however it is labelled
            if content_type != FORM:
                raise ValueError(f"content type must be {FORM}")
            return ImmutableMultiDict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                                max_num_fields=MAX_FIELDS))
        except ValueError as exc:  # not UTF-8, too many fields
            self.count(route, "invalid")
            raise HTTPException(400, "expected a form-encoded body") from exc

    async def store(self, route: str, item: Interaction | Malformed) -> None:
        """Ingest one webhook item; answered only once it is stored."""
        good, bad = ([item], []) if isinstance(item, Interaction) else ([], [item])
        result: IngestResult = await self.run(route, self.ingest, good, bad)
        ref = item.external_id if isinstance(item, Interaction) else item.ref
        outcome = "dead_lettered" if bad else "stored" if result.stored else "repeat"
        self.count(route, outcome)
        log.info("webhook ingested", route=route, ref=ref, outcome=outcome)

    async def store_batch(self, route: str, interactions: list[Interaction], malformed: list[Malformed], *,
                          ignored: int = 0, deferred: int = 0) -> None:
        """Store one payload's items (one transaction), counting each item's outcome."""
        stored = repeats = 0
        if interactions or malformed:
            result: IngestResult = await self.run(route, self.ingest, interactions, malformed)
            stored, repeats = result.stored, result.repeats
        outcomes = {"stored": stored, "repeat": repeats, "dead_lettered": len(malformed),
                    "ignored": ignored, "deferred": deferred}
        for outcome, times in outcomes.items():
            for _ in range(times):
                self.count(route, outcome)
        log.info("webhook ingested", route=route, refs=[i.external_id for i in interactions],
                 **{k: v for k, v in outcomes.items() if v})

    async def run(self, route: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a storing callable off the event loop; its failure is a 503, never a 500."""
        try:
            return await run_in_threadpool(fn, *args)
        except Exception as exc:  # the boundary to the store: any failure means "not stored, try later"
            self.count(route, "error")
            log.error("webhook not stored", route=route, error=type(exc).__name__)  # str(exc) may hold the body
            raise HTTPException(503, "not stored; try again later") from exc

    def reject(self, source: str, route: str, why: str) -> NoReturn:
        """A missing or bad signature: 403, counted for `source`."""
        self.rejected[source] += 1
        self.count(route, "rejected")
        log.warning("webhook signature rejected", route=route, signature=why)
        raise HTTPException(403, "invalid signature")

    def too_large(self, route: str) -> NoReturn:
        self.count(route, "too_large")
        raise HTTPException(413, f"body over {MAX_BODY} bytes")

    def count(self, route: str, outcome: str) -> None:
        self.counts[(route, outcome)] += 1
        if self.metrics is not None:
            self.metrics(route, outcome)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_object(body: bytes) -> dict[str, Any] | str:
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
