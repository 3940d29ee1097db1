"""The connectors' shared HTTP plumbing for requests-based SDKs.

Every requests-based SDK (simple-salesforce, zenpy, tweepy, twilio) gets its
`requests.Session` from `build_session`, so this is the one place that:

* redirects an SDK that insists on `https://<vendor host>` to a configured
  base URL (the sandbox emulators, or a corporate proxy) by rewriting scheme
  and host while keeping path and query, through a transport adapter mounted
  on the session, which is the SDKs' supported injection point;
* tells the connector before every request (`before`: the budget paces each
  one, a second page or a login included) and reads the rate-limit headers
  of every response back (`observer`), so budgets see the vendor's figures.

Retries do not live here: they live in `crmhub.connectors._retry`, wrapped
once around each connector operation, so an SDK call is never retried twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

HeaderObserver = Callable[[str, int, Mapping[str, str], float], None]
"""Called as observer(url_path, status_code, headers, seconds the request took) after every response."""

RequestHook = Callable[[str], None]
"""Called as before(url_path) before every request is sent (it may wait, or raise to not send it)."""


class BaseUrlAdapter(HTTPAdapter):
    """Send every request to `base_url`, keeping the request's path and query.

    The SDK keeps building its usual URLs (and signing them, for OAuth 1.0a);
    only the transport goes elsewhere.
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must look like http://host:port, got {base_url!r}")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # same signature, loosely typed upstream
        original_url = request.url or ""
        original = urlsplit(original_url)
        request.url = urlunsplit(
            (self._scheme, self._netloc, self._prefix + original.path, original.query, original.fragment)
        )
        response = super().send(request, **kwargs)
        # The SDK sees the URL it asked for (zenpy, for one, parses answers by their host).
        request.url = response.url = original_url
        return response


def build_session(
    *,
    base_url: str | None = None,
    observer: HeaderObserver | None = None,
    timeout: float | None = None,
    before: RequestHook | None = None,
    after: Callable[[], None] | None = None,
) -> requests.Session:
    """A `requests.Session` for one connector.

    Args:
        base_url: where to send every request instead of the vendor's host
            (None: the vendor's real host, unchanged).
        observer: told the status, headers and duration of every response.
        before: told the path of every request before it is sent.
        after: told when each request is over (answered, refused or failed).
        timeout: default timeout for requests made without one (SDKs that
            take no timeout argument would otherwise wait forever).
    """
    session = requests.Session()
    if base_url:
        adapter = BaseUrlAdapter(base_url)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    if observer is not None:
        def _observe(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            observer(urlsplit(response.url).path, response.status_code, response.headers,
                     response.elapsed.total_seconds())

        session.hooks["response"].append(_observe)
    if timeout is not None:
        _default_timeout(session, timeout)
    if before is not None:
        _before_send(session, before, after)
    return session


def _before_send(session: requests.Session, before: RequestHook, after: Callable[[], None] | None) -> None:
    """Call `before` ahead of every request of `session` (and `after` once it is over).

    `Session.send` is the one method every request passes through: the
    `request()` helpers, redirects, and SDKs that prepare their own requests
    (twilio's `TwilioHttpClient` calls `send` directly).
    """
    send = session.send

    def paced_send(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        before(urlsplit(request.url or "").path)
        try:
            return send(request, **kwargs)
        finally:
            if after is not None:
                after()

    session.send = paced_send  # type: ignore[method-assign]  # instance-level hook, not a patch of the SDK


def _default_timeout(session: requests.Session, timeout: float) -> None:
    """Give every request of `session` a timeout unless the caller set one."""
    send = session.request

    def request(method: str, url: str, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = timeout
        return send(method, url, **kwargs)

    session.request = request  # type: ignore[method-assign]  # instance-level default, not a patch of the SDK
