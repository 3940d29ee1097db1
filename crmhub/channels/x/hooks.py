"""X's webhook routes: the CRC challenge and signed Account Activity events into the ledger.

Events are verified, then, given who we are on X (`account`, resolved from
the credentials, never from the payload), translated by
`crmhub.connectors.x_hooks` into the X poller's Interactions and stored the
same way; a custom `on_event(payload)` replaces that. The CRC route answers
only X-shaped tokens (`crmhub.connectors.x_signing`), so it signs nothing an
outsider chose. A signed body that cannot be used (not JSON, not an object,
nested deeper than `MAX_DEPTH`) is a dead letter with a placeholder payload,
answered 200, so X does not retry it forever. The CRC needs only the
consumer secret, so every daemon's receiver answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from crmhub.channels.contract import WebhookRoute
from crmhub.connectors.x_hooks import XAccountActivity, unusable_payload
from crmhub.connectors.x_signing import BadCrcToken, crc_response, verify
from crmhub.model import Identity
from crmhub.webhooks import WebhookKit, json_object, log

X_SIGNATURE = "x-twitter-webhooks-signature"
PATH = "/webhooks/x"
XEventFn = Callable[[dict[str, Any]], object]
"""Called with each signed X Account Activity payload (parsed JSON object)."""
XAccountFn = Callable[[], Identity]
"""Who we are on X, as X says (`XChannel.account`); raises when X cannot be asked."""


class XHooks:
    """X's routes, given the app's consumer secret (CRC answers and event signatures).

    Args:
        account: who we are on X, from our credentials: events whose `for_user_id` is that account's id
            are stored; answers 503 while it cannot be resolved.
        on_event: receives verified payloads instead (then `account` is not used); neither: ignored.
    """

    def __init__(self, consumer_secret: str, *, account: XAccountFn | None = None,
                 on_event: XEventFn | None = None) -> None:
        self.secret = consumer_secret
        self.on_event = on_event
        self.account = account if on_event is None else None
        self.events = XAccountActivity()

    def routes(self, kit: WebhookKit) -> list[WebhookRoute]:
        self.kit = kit
        return [WebhookRoute(PATH, ("GET",), self.crc), WebhookRoute(PATH, ("POST",), self.event)]

    async def crc(self, request: Request) -> JSONResponse:
        try:
            answer = crc_response(self.secret, request.query_params.get("crc_token", ""))
        except BadCrcToken as exc:  # answering it would sign an outsider's text, e.g. an event body
            self.kit.count("x.crc", "invalid")
            raise HTTPException(400, str(exc)) from None
        self.kit.count("x.crc", "answered")
        return JSONResponse({"response_token": answer})

    async def event(self, request: Request) -> JSONResponse:
        route = "x.events"
        body = await self.kit.body(request, route)
        given = request.headers.get(X_SIGNATURE)
        if not verify(self.secret, body, given):
            self.kit.reject("x", route, "missing" if not given else "bad")
        payload = json_object(body)
        if isinstance(payload, str):  # signed by X, yet unusable: a dead letter, so X stops retrying it
            await self.kit.store(route, unusable_payload(body, payload))
        elif self.account is not None:
            batch = self.events.translate(payload, await self._whoami(route))
            await self.kit.store_batch(route, batch.interactions, batch.malformed, ignored=batch.ignored,
                                       deferred=batch.deferred)
        elif self.on_event is not None:
            await self.kit.run(route, self.on_event, payload)
            self.kit.count(route, "accepted")
        else:
            self.kit.count(route, "ignored")
        return JSONResponse({})

    async def _whoami(self, route: str) -> Identity:
        """Our X account, as X says; 503 while it cannot be asked (X retries, the poll reconciles)."""
        assert self.account is not None
        try:
            return await run_in_threadpool(self.account)
        except Exception as exc:  # noqa: BLE001  # X down, bad credentials: not stored, try later
            self.kit.count(route, "error")
            log.error("X account unknown; webhook not stored", route=route, error=type(exc).__name__)
            raise HTTPException(503, "not stored; try again later") from None
