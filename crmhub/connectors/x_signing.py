"""X webhook signing: the CRC answer and the event signature, in one place because they are one HMAC.

X signs both with the app's consumer secret, as `sha256=<base64 HMAC-SHA256>`:
the Challenge-Response Check answer over `crc_token`, and each event over its
body (`x-twitter-webhooks-signature`). So whoever can make the CRC route sign
a text of their choice can sign events: `crc_response` answers only tokens
shaped like X's (short base64 / URL-safe base64, which X's own tokens are),
and no JSON object, which starts with `{`, can ever be one.
Reference: developer.x.com .../account-activity-api/guides/securing-webhooks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

# X's crc_token: a short random base64 string (the sandbox sends secrets.token_urlsafe(24), 32 chars).
CRC_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{8,128}")


class BadCrcToken(ValueError):
    """A crc_token X would never send; answering it would sign an outsider's text."""


def signature(consumer_secret: str, message: bytes) -> str:
    """'sha256=' + base64 HMAC-SHA256 of `message` with the consumer secret."""
    digest = hmac.new(consumer_secret.encode(), message, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def crc_response(consumer_secret: str, token: str) -> str:
    """The CRC `response_token` for an X-shaped `token`.

    Raises:
        BadCrcToken: the token is not 8-128 characters of [A-Za-z0-9_-+/=].
    """
    if not CRC_TOKEN.fullmatch(token):
        raise BadCrcToken("crc_token must be 8-128 characters of base64")
    return signature(consumer_secret, token.encode("ascii"))


def verify(consumer_secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is X's signature of `body` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(signature(consumer_secret, body).encode(), header.encode("utf-8", "replace"))
