"""How each CRM's app framework proves a request comes from one of its signed-in agents.

- Zendesk (Apps framework, signed URLs): Zendesk POSTs the app's page with a
  `token` form field, a JWT signed RS256 with the app's key pair; its `iss`
  is the account's host and its `aud` the app installation's URL.
- HubSpot (app cards' `hubspot.fetch`): each request carries
  `X-HubSpot-Signature-v3`, base64 HMAC-SHA256 with the app's client secret
  over method + URI + body + `X-HubSpot-Request-Timestamp`, and is refused
  when the timestamp is more than five minutes old.
- Salesforce (Canvas signed request): `signed_request` is
  `<base64 HMAC-SHA256 of the encoded envelope>.<base64 JSON envelope>`,
  keyed with the connected app's consumer secret.

A verified Zendesk or Salesforce launch is exchanged for a crmhub session
token (`sessions.py`); HubSpot signs every request, so it needs none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote

import jwt

HUBSPOT_MAX_AGE = timedelta(minutes=5)
# HubSpot decodes these in the URI before signing (its request validation reference); nothing else.
_HUBSPOT_DECODED = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}


class NotSigned(Exception):
    """The request is not signed by the CRM it claims (wrong or missing signature, stale, or another account).

    The message says which check failed, for the log; it never holds a secret or the token.
    """


@dataclass(frozen=True)
class Agent:
    """Who is asking: the CRM the request came through and the agent's user id there (or the ops token)."""

    crm: str  # salesforce, zendesk, hubspot, or "ops"
    user: str  # the agent's user id in that CRM ("" when the framework does not say)
    display: str = ""

    @property
    def actor(self) -> str:
        """How a decision by this agent is recorded (`decided_by`, link events)."""
        if self.crm == "ops":
            return "ops API token"
        return f"agent {self.user or 'unknown'} in {self.crm}" + (f" ({self.display})" if self.display else "")


# ---- Zendesk -------------------------------------------------------------------------
def verify_zendesk(token: str, *, public_key: str, subdomain: str, audience: str, now: datetime) -> Agent:
    """A Zendesk app's signed-URL JWT, checked against the app's public key, our account and our installation."""
    try:
        claims = jwt.decode(token, public_key, algorithms=["RS256"], audience=audience,
                            options={"require": ["exp", "iat", "iss", "aud"], "verify_iat": False},
                            leeway=timedelta(seconds=30))
    except jwt.PyJWTError as exc:
        raise NotSigned(f"zendesk token refused: {type(exc).__name__}") from None
    issuer = str(claims.get("iss", "")).removeprefix("https://").rstrip("/")
    if issuer != f"{subdomain}.zendesk.com":
        raise NotSigned("zendesk token refused: issued for another Zendesk account")
    if datetime.fromtimestamp(float(claims["exp"]), now.tzinfo) < now - timedelta(seconds=30):
        raise NotSigned("zendesk token refused: expired")  # PyJWT checks against the wall clock; this is ours
    return Agent("zendesk", str(claims.get("sub", "")), str(claims.get("name", ""))[:120])


# ---- HubSpot -------------------------------------------------------------------------
def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature HubSpot sends for a request (also what tests and the sandbox host page sign with)."""
    for encoded, plain in _HUBSPOT_DECODED.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    source = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def verify_hubspot(headers: Mapping[str, str], *, method: str, uri: str, body: bytes, secret: str,
                   now: datetime) -> Agent:
    """A HubSpot `hubspot.fetch` request: v3 signature over it, at most five minutes old.

    Args:
        uri: the URL HubSpot called (the public URL, with its query), as it signs it.
    """
    given, stamp = headers.get("x-hubspot-signature-v3", ""), headers.get("x-hubspot-request-timestamp", "")
    if not given or not stamp.isdigit():
        raise NotSigned("hubspot request refused: no v3 signature")
    at = datetime.fromtimestamp(int(stamp) / 1000, now.tzinfo)
    if abs(now - at) > HUBSPOT_MAX_AGE:
        raise NotSigned("hubspot request refused: timestamp older than five minutes")
    if not hmac.compare_digest(given.encode(), hubspot_signature(secret, method, uri, body, stamp).encode()):
        raise NotSigned("hubspot request refused: signature does not match")
    query = dict(pair.split("=", 1) for pair in uri.partition("?")[2].split("&") if "=" in pair)
    return Agent("hubspot", unquote(query.get("userId", "")), unquote(query.get("userEmail", ""))[:120])


# ---- Salesforce ----------------------------------------------------------------------
def canvas_signed_request(secret: str, envelope: Mapping[str, Any]) -> str:
    """A Canvas signed request for `envelope` (what Salesforce POSTs; tests and the sandbox host page use it)."""
    encoded = base64.b64encode(json.dumps(envelope).encode()).decode()
    signature = base64.b64encode(hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()).decode()
    return f"{signature}.{encoded}"


def verify_salesforce(signed_request: str, *, secret: str, organization_id: str | None, now: datetime,
                      max_age: timedelta = timedelta(minutes=15)) -> Agent:
    """A Canvas signed request from our connected app (and, when configured, our org), not older than `max_age`."""
    signature, _, encoded = signed_request.partition(".")
    expected = base64.b64encode(hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()).decode()
    if not encoded or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise NotSigned("salesforce signed request refused: signature does not match")
    try:
        envelope = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise NotSigned("salesforce signed request refused: the envelope is not base64 JSON") from None
    if not isinstance(envelope, dict) or envelope.get("algorithm") != "HMACSHA256":
        raise NotSigned("salesforce signed request refused: not an HMACSHA256 envelope")
    issued = envelope.get("issuedAt")
    if isinstance(issued, (int, float)) and abs(now - datetime.fromtimestamp(issued / 1000, now.tzinfo)) > max_age:
        raise NotSigned("salesforce signed request refused: issued too long ago")
    context = envelope.get("context") if isinstance(envelope.get("context"), dict) else {}
    org = (context.get("organization") or {}).get("organizationId", "")
    if organization_id and str(org)[:15] != organization_id[:15]:
        raise NotSigned("salesforce signed request refused: issued by another org")
    user = context.get("user") or {}
    return Agent("salesforce", str(envelope.get("userId") or user.get("userId", "")), str(user.get("userName", ""))[:120])
