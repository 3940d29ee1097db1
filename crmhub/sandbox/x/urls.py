"""The X emulator's route table: path, who may call it, and its rate limits.

Limits are the published per-endpoint defaults (docs.x.com/x-api/fundamentals/
rate-limits): "app" applies to app-only Bearer requests per app, "user" to
user-context requests per user, "app_total" to all user-context requests of
an app. Endpoints without app limits accept user context only (a Bearer
token gets 403 Unsupported Authentication).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import Route
from crmhub.sandbox.x.errors import XApiError, error_response
from crmhub.sandbox.x.limits import DAY, FIFTEEN_MINUTES, Limits

_PATH_ARG = re.compile(r"<(?P<name>[^>]+)>")
_DOC_ARG = r":\g<name>"


@dataclass(frozen=True)
class Endpoint:
    """One emulated endpoint and how X guards it."""

    method: str
    rule: str  # werkzeug syntax, e.g. /2/users/<id>/mentions
    handler: str  # name of the XHandlers method
    limits: Limits

    @property
    def name(self) -> str:
        """The endpoint in X's documentation notation, e.g. 'GET /2/users/:id/mentions'."""
        return f"{self.method} {_PATH_ARG.sub(_DOC_ARG, self.rule)}"

    @property
    def auth(self) -> frozenset[str]:
        """Who may call it: 'user' always; 'app' (Bearer) where X publishes app limits."""
        return frozenset({"user", "app"} if self.limits.app else {"user"})


def _per_15min(app: int | None, user: int) -> Limits:
    return Limits(app=((app, FIFTEEN_MINUTES),) if app else (), user=((user, FIFTEEN_MINUTES),))


_DM_READ = _per_15min(None, 15)
_DM_WRITE = Limits(user=((15, FIFTEEN_MINUTES), (1440, DAY)), app_total=((1440, DAY),))
_USER_LOOKUP = _per_15min(300, 900)

ENDPOINTS = (
    Endpoint("GET", "/2/users/me", "me", _per_15min(None, 75)),
    Endpoint("GET", "/2/users", "users_by_ids", _USER_LOOKUP),
    Endpoint("GET", "/2/users/by", "users_by_usernames", _USER_LOOKUP),
    Endpoint("GET", "/2/users/by/username/<username>", "user_by_username", _USER_LOOKUP),
    Endpoint("GET", "/2/users/<id>", "user_by_id", _USER_LOOKUP),
    Endpoint("GET", "/2/users/<id>/mentions", "mentions", _per_15min(450, 300)),
    Endpoint("GET", "/2/users/<id>/tweets", "user_tweets", _per_15min(1500, 900)),
    Endpoint("GET", "/2/tweets/<id>", "tweet", _per_15min(450, 900)),
    Endpoint("POST", "/2/tweets", "create_tweet", Limits(user=((100, FIFTEEN_MINUTES),), app_total=((10000, DAY),))),
    Endpoint("GET", "/2/dm_events", "dm_events", _DM_READ),
    Endpoint("GET", "/2/dm_conversations/with/<participant_id>/dm_events", "dm_events_with", _DM_READ),
    Endpoint("GET", "/2/dm_conversations/<dm_conversation_id>/dm_events", "dm_events_in", _DM_READ),
    Endpoint("POST", "/2/dm_conversations/with/<participant_id>/messages", "send_dm_with", _DM_WRITE),
    Endpoint("POST", "/2/dm_conversations/<dm_conversation_id>/messages", "send_dm_in", _DM_WRITE),
)

_BY_RULE = {(e.method, e.rule): e for e in ENDPOINTS}
_MAP = Map([Rule(e.rule, endpoint=i, methods=[e.method]) for i, e in enumerate(ENDPOINTS)], strict_slashes=False)
BY_NAME = {e.name: e for e in ENDPOINTS}


def endpoint_for(method: str, rule: str) -> Endpoint:
    """The endpoint of a matched route."""
    return _BY_RULE[(method, rule)]


def match(method: str, path: str) -> Endpoint | None:
    """The endpoint a request goes to, or None (for answers given before routing)."""
    try:
        index, _ = _MAP.bind("sandbox").match(path, method=method)
    except HTTPException:
        return None
    return ENDPOINTS[int(index)]


def routes(handlers: object) -> list[Route]:
    """The route table, each handler answering X's errors in X's shape."""
    return [Route((e.method,), e.rule, _vendor_errors(getattr(handlers, e.handler))) for e in ENDPOINTS]


def _vendor_errors(handler: Callable[..., Response]) -> Callable[..., Response]:
    @wraps(handler)
    def guarded(request: Request, **args: Any) -> Response:
        try:
            return handler(request, **args)
        except XApiError as exc:
            return error_response(exc)

    return guarded
