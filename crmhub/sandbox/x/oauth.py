"""OAuth 1.0a (RFC 5849) HMAC-SHA1 signature checks, written from the RFC.

Deliberately independent of oauthlib (which signs tweepy's requests), so a
signing bug on either side shows up as a 401 instead of agreeing with itself.

The signature covers the URL the client *built*. An SDK pointed at the
sandbox through a transport adapter still builds and signs
`https://api.twitter.com/...`, so the check accepts a signature over X's
public hosts as well as over the URL the request actually reached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

from werkzeug.wrappers import Request

SIGNED_HOSTS = ("https://api.twitter.com", "https://api.x.com")
REQUIRED = ("oauth_consumer_key", "oauth_token", "oauth_signature_method", "oauth_signature",
            "oauth_timestamp", "oauth_nonce")
_PARAM = re.compile(r'([A-Za-z0-9_]+)="([^"]*)"')


def parse_authorization(header: str) -> dict[str, str] | None:
    """The oauth_* parameters of an `Authorization: OAuth ...` header, or None."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "oauth":
        return None
    params = {name: unquote(value) for name, value in _PARAM.findall(rest)}
    if any(name not in params for name in REQUIRED) or params["oauth_signature_method"] != "HMAC-SHA1":
        return None
    if params.get("oauth_version", "1.0") != "1.0":
        return None
    return params


def _escape(value: str) -> str:
    """RFC 5849 3.6: percent-encode everything but the unreserved characters."""
    return quote(value, safe="~")


def signature(method: str, base_uri: str, params: Iterable[tuple[str, str]],
              consumer_secret: str, token_secret: str) -> str:
    """The base64 HMAC-SHA1 signature of a request (RFC 5849 3.4)."""
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_escape(k), _escape(v)) for k, v in params))
    base = "&".join((_escape(method.upper()), _escape(base_uri), _escape(normalized)))
    key = f"{_escape(consumer_secret)}&{_escape(token_secret)}"
    return base64.b64encode(hmac.new(key.encode(), base.encode(), hashlib.sha1).digest()).decode()


def verify(request: Request, oauth: dict[str, str], consumer_secret: str, token_secret: str) -> bool:
    """Whether the request's signature is right for the given secrets."""
    params = list(request.args.items(multi=True))
    if request.mimetype == "application/x-www-form-urlencoded":
        params += list(request.form.items(multi=True))
    params += [(k, v) for k, v in oauth.items() if k not in ("oauth_signature", "realm")]
    path = quote(request.path, safe="/-._~!$&'()*+,;=:@")
    candidates = [host + path for host in SIGNED_HOSTS] + [request.host_url.rstrip("/") + path]
    given = oauth["oauth_signature"]
    return any(hmac.compare_digest(signature(request.method, uri, params, consumer_secret, token_secret), given)
               for uri in candidates)
