"""XEmulator: the X API v2 endpoints crmhub uses, as tweepy's `Client` calls them.

Glue between the shared plumbing and the X parts: authentication (app-only
Bearer, OAuth 1.0a user context with real signature checks), per-endpoint
rate limits with `x-rate-limit-*` headers, the vendor-shaped fault answers,
Account Activity style webhooks, and the seed API tests and the demo use.
See docs/sandbox/x.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import ControlAction, Emulator, Fault, Route, SandboxClock
from crmhub.sandbox.x import models, urls
from crmhub.sandbox.x.errors import (
    ClientNotEnrolled,
    TooManyRequests,
    Unauthorized,
    UnsupportedAuthentication,
    UsageCapExceeded,
    XApiError,
    error_response,
    generic_problem,
    not_emulated,
    problem_response,
)
from crmhub.sandbox.x.limits import Principal, RateLimiter, RateLimitHit, RateStatus
from crmhub.sandbox.x.models import DEFAULT_CONSUMER_KEY, DEFAULT_CONSUMER_SECRET, XBackend
from crmhub.sandbox.x.oauth import parse_authorization, verify
from crmhub.sandbox.x.responses import PRINCIPAL, XHandlers
from crmhub.sandbox.x.webhooks import WebhookDispatcher

RATE = "crmhub.x.rate"


class XEmulator(Emulator):
    """The X (Twitter) API v2 emulator. Seed it with the methods below."""

    name: ClassVar[str] = "x"

    def __init__(self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None) -> None:
        self.webhooks = WebhookDispatcher(self)
        self.backend = XBackend(self, on_event=self.webhooks.notify)
        self.limiter = RateLimiter(self)
        self.handlers = XHandlers(self.backend, self.take_fault)
        super().__init__(clock=clock, state_file=state_file)

    # ---- plumbing hooks ----------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return models.initial_state()

    def routes(self) -> Iterable[Route]:
        return urls.routes(self.handlers)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Credentials, then the endpoint's rate limits, then the monthly usage cap."""
        endpoint = urls.endpoint_for(request.method, route.rule)
        try:
            caller = self._caller(request, verified=True)
            if caller is None:
                raise Unauthorized()
            if caller.kind not in endpoint.auth:
                raise UnsupportedAuthentication()
            app = self.state["apps"].get(caller.consumer_key) or {}
            if "/dm_" in endpoint.rule and not app.get("dm_access", True):  # dm_events, dm_conversations
                raise ClientNotEnrolled(str(app.get("app_id", "")))
            request.environ[PRINCIPAL] = caller
            request.environ[RATE] = self.limiter.admit(caller, endpoint.name, endpoint.limits)
            if self.take_fault("daily_limit", request) is not None:
                raise UsageCapExceeded()
        except RateLimitHit as hit:
            request.environ[RATE] = hit.rate
            return error_response(hit)
        except XApiError as exc:
            return error_response(exc)
        return None

    def on_token_expiry(self) -> None:
        self.backend.revoke_all_tokens()

    def not_emulated_response(self, request: Request) -> Response:
        return not_emulated(request.method, request.path)

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        """A 429 as X sends it: no Retry-After, an exhausted window that resets after `retry_after`."""
        current = self._peek(request)
        reset = int(self.clock.time() + fault.retry_after)
        status = RateStatus(current.limit if current else 15, 0, reset)
        return error_response(TooManyRequests(), status.headers())

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return problem_response(fault.status, generic_problem(fault.status))

    def decorate(self, request: Request, response: Response) -> Response:
        """x-rate-limit-* on every answer whose caller and endpoint are known."""
        if "x-rate-limit-limit" not in response.headers:
            status = request.environ.get(RATE) or self._peek(request)
            if status is not None:
                response.headers.update(status.headers())
        return response

    def reset(self) -> None:
        self.webhooks.discard_pending()
        super().reset()

    def _caller(self, request: Request, *, verified: bool) -> Principal | None:
        """Who sent the request; with `verified`, only if the credentials are valid and live."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            found = self.backend.app_by_bearer(header[len("Bearer "):].strip())
            if found is None or (verified and found[1]["bearer_revoked"]):
                return None
            return Principal("app", found[0])
        oauth = parse_authorization(header)
        if oauth is None:
            return None
        app = self.state["apps"].get(oauth["oauth_consumer_key"])
        token = self.state["access_tokens"].get(oauth["oauth_token"])
        if app is None or token is None or token["consumer_key"] != oauth["oauth_consumer_key"]:
            return None
        if verified and (token["revoked"] or not verify(request, oauth, app["consumer_secret"], token["secret"])):
            return None
        return Principal("user", oauth["oauth_consumer_key"], token["user_id"])

    def _peek(self, request: Request) -> RateStatus | None:
        endpoint = urls.match(request.method, request.path)
        if endpoint is None:
            return None
        with self.lock:
            caller = self._caller(request, verified=False)
            return self.limiter.peek(caller, endpoint.name, endpoint.limits) if caller else None

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/users`, `mentions`, `dms` and `access`; an unknown handle becomes a new account on the fly."""
        return {
            "users": lambda body: {"id": self.add_user(_handle(body["username"]), body.get("name"))},
            "mentions": lambda body: {"id": self.post_mention(self.user_id(body["from"]), str(body["text"]),
                                                              body.get("in_reply_to"))},
            "access": self._access,
            "dms": lambda body: {"id": self.send_dm(self.user_id(body["from"]),
                                                    self.user_id(body.get("to") or models.DEFAULT_ACCOUNT),
                                                    str(body["text"]))},
        }

    def _access(self, body: dict[str, Any]) -> dict[str, Any]:
        """`{"dm": false}`: every app's access level lacks DMs (403 client-not-enrolled), as on a tier without them."""
        allowed = bool(body["dm"])
        with self.lock:
            for app in self.state["apps"].values():
                app["dm_access"] = allowed
        return {"dm": allowed}

    def user_id(self, handle: str) -> str:
        """The id of the account `handle` (@ optional), created first if X does not know it."""
        with self._seeding():
            found = self.backend.user_by_username(_handle(handle))
            return str(found["id"]) if found else self.backend.add_user(_handle(handle))

    # ---- seed API ------------------------------------------------------------------
    @contextmanager
    def _seeding(self) -> Iterator[None]:
        """Seeds change state outside any request: hold the lock, then persist as a write does."""
        with self.lock:
            yield
            self.persist()

    def add_user(self, username: str, name: str | None = None, user_id: str | None = None, **profile: Any) -> str:
        """A new X account; returns its id (a fresh snowflake unless `user_id` is given,
        e.g. to replay a traffic plan). `profile` sets user fields (e.g. description)."""
        with self._seeding():
            return self.backend.add_user(username, name, user_id, **profile)

    def post_mention(self, author_id: str, text: str, in_reply_to: str | None = None,
                     at: datetime | None = None) -> str:
        """A post by `author_id` mentioning the support account (prefixed with @crmhub_support
        unless the text mentions someone); `in_reply_to` threads it. Returns the post id."""
        with self._seeding():
            return self.backend.post_mention(author_id, text, in_reply_to, at)

    def post(self, author_id: str, text: str, in_reply_to: str | None = None, at: datetime | None = None) -> str:
        """A post by `author_id` as written in X's own app (e.g. an agent replying from the support
        account outside crmhub); a reply gets X's leading @handles. Returns the post id."""
        with self._seeding():
            post_id: str = self.backend.create_tweet(author_id, text, in_reply_to, at)["id"]
            return post_id

    def send_dm(self, sender_id: str, recipient_id: str, text: str, at: datetime | None = None) -> str:
        """A direct message in the one-to-one conversation of the two users; returns the event id."""
        with self._seeding():
            event_id: str = self.backend.send_dm(sender_id, recipient_id, text, at)["id"]
            return event_id

    def tweets(self) -> list[dict[str, Any]]:
        """Every post, oldest first, with all stored fields."""
        return _oldest_first(self.snapshot()["tweets"])

    def dm_events(self) -> list[dict[str, Any]]:
        """Every DM event, oldest first (including those older than 30 days)."""
        return _oldest_first(self.snapshot()["dm_events"])

    def add_app(self, consumer_key: str, consumer_secret: str, bearer_token: str, name: str = "app") -> str:
        """Another developer app (its own rate-limit buckets); returns its app id."""
        with self._seeding():
            return self.backend.add_app(consumer_key, consumer_secret, bearer_token, name)

    def add_access_token(self, user_id: str, access_token: str, access_token_secret: str,
                         consumer_key: str = DEFAULT_CONSUMER_KEY) -> None:
        """OAuth 1.0a user-context credentials for `user_id` through the app `consumer_key`."""
        with self._seeding():
            self.backend.add_access_token(user_id, access_token, access_token_secret, consumer_key)

    def set_rate_limit(self, endpoint: str, *, app: int | None = None, user: int | None = None) -> None:
        """Change an endpoint's 15-minute limits, e.g. set_rate_limit("GET /2/users/:id/mentions", app=3)."""
        if endpoint not in urls.BY_NAME:
            raise KeyError(f"not an emulated endpoint: {endpoint!r} (one of {sorted(urls.BY_NAME)})")
        with self._seeding():
            self.limiter.set_override(endpoint, app, user)

    def set_webhook(self, url: str, consumer_secret: str = DEFAULT_CONSUMER_SECRET,
                    subscriptions: list[str] | None = None, *, max_attempts: int = 3, validate: bool = True) -> bool:
        """Register the Account Activity webhook for `subscriptions` (default: the support account).

        With `validate`, X's CRC check runs at once; events go only to a webhook that passed it.
        Returns whether it is valid.
        """
        with self._seeding():
            self.webhooks.configure(url, consumer_secret, subscriptions or [models.DEFAULT_ACCOUNT_ID],
                                    max_attempts)
        return self.webhooks.crc_check() if validate else False

    def crc_check(self) -> bool:
        """Run the CRC check against the webhook now (X also re-checks periodically)."""
        return self.webhooks.crc_check()

    def wait_for_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until queued webhook events were delivered or given up; False on timeout."""
        return self.webhooks.wait_idle(timeout)

    def webhook_attempts(self) -> list[dict[str, Any]]:
        """The log of CRC checks and delivery attempts, oldest first."""
        attempts: list[dict[str, Any]] = self.snapshot()["webhook_attempts"]
        return attempts


def _handle(value: str) -> str:
    return str(value).strip().removeprefix("@")


def _oldest_first(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records.values(), key=lambda r: int(r["id"]))
