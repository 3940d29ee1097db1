"""Who may call the agents' API: a verified CRM app request, a session from a verified launch, or the ops token.

No credentials at all answer 401; credentials that do not verify (a wrong
signature, another account, stale, an unknown token) answer 403. Refusals
are logged with the check that failed, never with the token or signature.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn
from datetime import datetime, timedelta

import structlog
from fastapi import HTTPException, Request

from crmhub.agent_api.sessions import Sessions
from crmhub.agent_api.signing import Agent, NotSigned, verify_hubspot, verify_salesforce, verify_zendesk

log = structlog.get_logger("crmhub.agent_api")


@dataclass(frozen=True)
class ZendeskApp:
    public_key: str  # PEM of the app's public key (GET /api/v2/apps/{app_id}/public_key.pem)
    subdomain: str
    audience: str  # https://<subdomain>.zendesk.com/api/v2/apps/installations/<installation id>.json


@dataclass(frozen=True)
class SalesforceApp:
    consumer_secret: str
    organization_id: str | None


@dataclass(eq=False)  # a FastAPI dependency: hashed by identity
class AgentAuth:
    """The secrets each way of signing is checked with; a CRM without one cannot call the API."""

    sessions: Sessions
    clock: Callable[[], datetime]
    ops_token: str | None = None
    zendesk: ZendeskApp | None = None
    hubspot_secret: str | None = None
    salesforce: SalesforceApp | None = None
    public_url: str | None = None  # the URL HubSpot calls (signatures cover it), else the request's own

    # ---- launches: a plugin page's one signed request, exchanged for a session --------------
    def launch(self, crm: str, signed: str) -> tuple[Agent, str]:
        now = self.clock()
        try:
            if crm == "zendesk" and self.zendesk is not None:
                agent = verify_zendesk(signed, public_key=self.zendesk.public_key, subdomain=self.zendesk.subdomain,
                                       audience=self.zendesk.audience, now=now)
            elif crm == "salesforce" and self.salesforce is not None:
                agent = verify_salesforce(signed, secret=self.salesforce.consumer_secret,
                                          organization_id=self.salesforce.organization_id, now=now)
            else:
                raise HTTPException(404, f"{crm} apps are not configured (settings agent_api.{crm})")
        except NotSigned as exc:
            _refused(crm, str(exc))
        return agent, self.sessions.issue(agent, now=now)

    # ---- every API request ------------------------------------------------------------
    async def __call__(self, request: Request) -> Agent:
        """The agent behind `request`, or 401/403."""
        now = self.clock()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            token = token.strip()
            if self.ops_token and hmac.compare_digest(token.encode("utf-8", "replace"), self.ops_token.encode()):
                return Agent("ops", "")
            try:
                return self.sessions.verify(token, now=now)
            except NotSigned as exc:
                _refused("session", str(exc))
        if "x-hubspot-signature-v3" in request.headers:
            if self.hubspot_secret is None:
                _refused("hubspot", "hubspot apps are not configured (settings agent_api.hubspot)")
            body = await request.body()
            try:
                return verify_hubspot(request.headers, method=request.method, uri=self._called(request), body=body,
                                      secret=self.hubspot_secret, now=now)
            except NotSigned as exc:
                _refused("hubspot", str(exc))
        log.warning("agent api request refused", path=request.url.path, reason="no credentials")
        raise HTTPException(401, "sign the request as your CRM's app does, or send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})

    def _called(self, request: Request) -> str:
        if not self.public_url:
            return str(request.url)
        query = f"?{request.url.query}" if request.url.query else ""
        return f"{self.public_url.rstrip('/')}{request.url.path}{query}"


def _refused(source: str, reason: str) -> NoReturn:
    log.warning("agent api request refused", source=source, reason=reason)
    raise HTTPException(403, "the request's signature or token is not valid for this crmhub")


SESSION_TTL = timedelta(hours=8)
