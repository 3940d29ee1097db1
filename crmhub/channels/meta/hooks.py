"""Meta's webhook routes: the subscription handshake and signed Messenger / Instagram events into the ledger.

`GET /webhooks/meta` answers Meta's verification request (`hub.mode`,
`hub.verify_token`, `hub.challenge`) with the challenge, only when the token
matches and the challenge looks like Meta's (so the route never echoes text
an outsider chose); anything else is 403, counted. `POST /webhooks/meta`
checks `X-Hub-Signature-256` over the raw body before parsing it (403,
counted, when missing or wrong), then stores the payload's messages as the
poll's Interactions (`crmhub.connectors.meta.translate_webhook`). A signed
body that is not a JSON object is one dead letter keyed by its digest,
answered 200 so Meta stops retrying it.
"""

from __future__ import annotations

from functools import partial

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from crmhub.channels.contract import WebhookRoute
from crmhub.connectors.meta import (
    SIGNATURE_HEADER,
    SOURCE,
    MetaChannel,
    handshake,
    signature_ok,
    translate_webhook,
    unusable_ref,
)
from crmhub.model import Malformed
from crmhub.webhooks import WebhookKit, json_object

PATH = "/webhooks/meta"


class MetaHooks:
    """Meta's routes, given the app secret, the verify token and who we are (from settings, never a payload)."""

    def __init__(self, app_secret: str, verify_token: str, *, page_id: str, instagram_id: str | None,
                 connector: MetaChannel | None = None) -> None:
        self.secret = app_secret
        self.verify_token = verify_token
        self.page_id = page_id
        self.instagram_id = instagram_id
        self.connector = connector

    def routes(self, kit: WebhookKit) -> list[WebhookRoute]:
        self.kit = kit
        return [WebhookRoute(PATH, ("GET",), self.verify), WebhookRoute(PATH, ("POST",), self.event)]

    async def verify(self, request: Request) -> PlainTextResponse:
        challenge = handshake(dict(request.query_params), self.verify_token)
        if challenge is None:
            self.kit.count("meta.verify", "refused")
            raise HTTPException(403, "verification refused")
        self.kit.count("meta.verify", "answered")
        return PlainTextResponse(challenge)

    async def event(self, request: Request) -> JSONResponse:
        route = "meta.events"
        body = await self.kit.body(request, route)
        given = request.headers.get(SIGNATURE_HEADER)
        if not signature_ok(self.secret, body, given):
            self.kit.reject(SOURCE, route, "missing" if not given else "bad")
        payload = json_object(body)
        if isinstance(payload, str):  # signed by Meta, yet unusable: one dead letter, so Meta stops retrying
            await self.kit.store(route, Malformed(SOURCE, unusable_ref(body), f"Meta webhook: {payload}",
                                                  {"body_bytes": len(body)}))
            return JSONResponse({})
        names = partial(self.connector.names, retry=False) if self.connector is not None else None
        batch = await self.kit.run(route, translate_webhook, payload, self.page_id, self.instagram_id, names)
        await self.kit.store_batch(route, batch.interactions, batch.malformed, ignored=batch.ignored)
        return JSONResponse({})
