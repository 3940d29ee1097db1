"""Twilio's webhook routes: signed message, status and call callbacks into the ledger.

A signed message or ended call is stored through the receiver's ingest (one
transaction) *before* it is acknowledged; what is signed but cannot be
translated is dead-lettered and still answered 200, so Twilio does not retry
it forever; a storage failure answers 503 and the reconcile poll picks the
item up later. Translations live in `crmhub.connectors.twilio_hooks` and
produce the poller's Interactions, so an item that came both ways is stored
once. Signatures are checked over `public_url` (behind a proxy) plus the
request's path and query, or the request's own URL.
"""

from __future__ import annotations


from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from crmhub.channels.contract import StatusFn, WebhookRoute
from crmhub.connectors.twilio_hooks import call_from_params, message_from_params, status_from_params
from crmhub.webhooks import WebhookKit, log

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
TWILIO_SIGNATURE = "x-twilio-signature"
MESSAGES, STATUS, CALLS = "/webhooks/twilio/messages", "/webhooks/twilio/status", "/webhooks/twilio/calls"


class TwilioHooks:
    """Twilio's routes, given the auth token that signs them.

    Args:
        public_url: the scheme, host and port Twilio calls (behind a proxy). None: the request's own URL.
        on_status: records each signed message status callback as on_status(message_sid, status).
        default_region: region for phone numbers written without a country code.
    """

    def __init__(self, auth_token: str, *, public_url: str | None, on_status: StatusFn,
                 default_region: str = "US") -> None:
        self.validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/") if public_url else None
        self.on_status = on_status
        self.region = default_region

    def routes(self, kit: WebhookKit) -> list[WebhookRoute]:
        self.kit = kit
        return [WebhookRoute(MESSAGES, ("POST",), self.message), WebhookRoute(STATUS, ("POST",), self.status),
                WebhookRoute(CALLS, ("POST",), self.call)]

    async def message(self, request: Request) -> Response:
        route = "twilio.messages"
        params = await self._params(request, route)
        await self.kit.store(route, message_from_params(params, received_at=self.kit.clock(),
                                                        default_region=self.region))
        return twiml()

    async def status(self, request: Request) -> Response:
        route = "twilio.status"
        parsed = status_from_params(await self._params(request, route))
        if parsed is None:
            self.kit.count(route, "ignored")
            return twiml()
        recorded = await self.kit.run(route, self.on_status, *parsed)
        self.kit.count(route, "recorded" if recorded is not False else "repeat")
        log.info("status callback", route=route, sid=parsed[0], status=parsed[1], recorded=recorded is not False)
        return twiml()

    async def call(self, request: Request) -> Response:
        route = "twilio.calls"
        item = call_from_params(await self._params(request, route), received_at=self.kit.clock(),
                                default_region=self.region)
        if item is None:
            self.kit.count(route, "ignored")  # ringing, in progress...: logged once it has ended
        else:
            await self.kit.store(route, item)
        return twiml()

    async def _params(self, request: Request, route: str) -> ImmutableMultiDict[str, str]:
        """The signed form parameters, or the right 4xx (403 counted)."""
        body = await self.kit.body(request, route)
        signature = request.headers.get(TWILIO_SIGNATURE)
        if not signature:
            self.kit.reject("twilio", route, "missing")
        params = self.kit.form(request, body, route)
        try:
            valid = self.validator.validate(self._called_url(request), params, signature)
        except ValueError:  # e.g. a Host header with a port that is not a number
            valid = False
        if not valid:
            self.kit.reject("twilio", route, "bad")
        return params

    def _called_url(self, request: Request) -> str:
        """The URL Twilio signed: the public URL's origin with this path and query, or this request's URL."""
        if self.public_url is None:
            return str(request.url)
        query = request.url.query
        return self.public_url + request.url.path + (f"?{query}" if query else "")


def twiml() -> Response:
    return Response(TWIML, media_type="text/xml")


