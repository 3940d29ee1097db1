"""crmhub's own short-lived session tokens, given to a plugin page after its CRM's signed launch was verified.

A Zendesk app or Salesforce component is signed once, when its page loads;
its later calls carry this token instead. HS256 with `agent_api.session_secret`
(several daemons behind one load balancer need the same secret; without one
each process makes its own, so a restart signs every plugin out).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import jwt

from crmhub.agent_api.signing import Agent, NotSigned

AUDIENCE = "crmhub-agent-api"


class Sessions:
    def __init__(self, secret: str | None, ttl: timedelta) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()
        self.ttl = ttl

    def issue(self, agent: Agent, *, now: datetime) -> str:
        claims = {"aud": AUDIENCE, "crm": agent.crm, "sub": agent.user, "name": agent.display,
                  "iat": int(now.timestamp()), "exp": int((now + self.ttl).timestamp())}
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, *, now: datetime) -> Agent:
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"], audience=AUDIENCE,
                                options={"verify_exp": False, "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise NotSigned(f"session refused: {type(exc).__name__}") from None
        if int(claims.get("exp", 0)) < now.timestamp():
            raise NotSigned("session refused: expired")
        return Agent(str(claims.get("crm", "")), str(claims.get("sub", "")), str(claims.get("name", "")))
