"""The Zendesk Support API v2 emulator: auth, limits, faults and the seed API.

Admission of every request, in Zendesk's order:

1. authentication: Basic `{email}/token:{api_token}` of an agent or admin, or
   `Bearer {oauth_token}`; anything else is 401 `{"error": "Couldn't authenticate you"}`;
2. the fault `daily_limit`: Zendesk has no daily quota, so it plays a long
   429 storm (`Retry-After` runs to the fault's `until`, else its `retry_after`);
3. the account limit, `rate_limit_per_minute` requests (700 by default) in a
   60 s window of sandbox time opened by the first request; then the
   incremental exports' own 10 per minute;
4. roles: incremental exports are for admins (403 otherwise).

Every answer carries `X-Rate-Limit` / `X-Rate-Limit-Remaining`; GET answers
also `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset`.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import ControlAction, Emulator, Fault, Route, SandboxClock
from crmhub.sandbox.zendesk import errors, fields
from crmhub.sandbox.zendesk.exports import Exporter
from crmhub.sandbox.zendesk.jobs import JobRunner
from crmhub.sandbox.zendesk.models import ZendeskBackend, FixedClock, empty_account
from crmhub.sandbox.zendesk.records import DEFAULT_AGENT_EMAIL, Record, epoch
from crmhub.sandbox.zendesk.responses import ACTOR, ZendeskResponses
from crmhub.sandbox.zendesk.search import Searcher
from crmhub.sandbox.zendesk.urls import INCREMENTAL_PREFIX, route_table

WINDOW_SECONDS = 60.0
DEFAULT_CONFIG: dict[str, Any] = {
    "rate_limit_per_minute": 700,
    "incremental_per_minute": 10,
    "job_reads_per_step": 1,
    "job_autocomplete_seconds": 60,
    "export_delay_seconds": 60,  # incremental exports leave out changes younger than this (Zendesk: a minute)
}


class ZendeskEmulator(Emulator):
    """Zendesk Support API v2 as zenpy uses it (see docs/sandbox/zendesk.md)."""

    name = "zendesk"

    def __init__(self, *, clock: SandboxClock | None = None, state_file: str | Path | None = None) -> None:
        clock = clock or SandboxClock()
        self.backend = ZendeskBackend(lambda: self.state, clock)
        self.jobs = JobRunner(self.backend)
        self.exporter = Exporter(self.backend)
        self.searcher = Searcher(self.backend)
        self.handlers = ZendeskResponses(self)
        super().__init__(clock=clock, state_file=state_file)

    # ---- Emulator hooks ----------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        state = empty_account(self.clock.time())
        state.update(config=dict(DEFAULT_CONFIG), windows={})
        fields.initial_fields(state, self.clock.time())
        return state

    def routes(self) -> list[Route]:
        return route_table(self.handlers)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Admission: credentials, then limits, then role (see the module docstring)."""
        self.jobs.complete_stale(self.state["config"]["job_autocomplete_seconds"])
        user = self._caller(request)
        if user is None:
            return errors.unauthorized().response()
        request.environ[ACTOR] = user["id"]
        incremental = route.rule.startswith(INCREMENTAL_PREFIX)
        limited = self._throttle(request, incremental)
        if limited is not None:
            return limited
        if incremental and user["role"] != "admin":
            return errors.forbidden().response()
        return None

    def on_token_expiry(self) -> None:
        """Revoke every API token and OAuth token issued so far."""
        for token in (*self.state["api_tokens"].values(), *self.state["oauth_tokens"].values()):
            token["active"] = False

    def not_emulated_response(self, request: Request) -> Response:
        return errors.not_emulated(request.method, request.path)

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        return errors.rate_limited(math.ceil(fault.retry_after))

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return errors.server_error(fault.status)

    def decorate(self, request: Request, response: Response) -> Response:
        """The account rate-limit headers Zendesk puts on every answer."""
        with self.lock:
            limit = int(self.state["config"]["rate_limit_per_minute"])
            window = self.state["windows"].get("account") or {"start": self.clock.time(), "count": 0}
            remaining = 0 if response.status_code == 429 else max(0, limit - int(window["count"]))
            reset = max(0, math.ceil(window["start"] + WINDOW_SECONDS - self.clock.time()))
        if response.status_code == 429 and "Retry-After" in response.headers:
            reset = int(response.headers["Retry-After"])  # a 429 (limit or fault) resets when its wait ends
        response.headers["X-Rate-Limit"] = str(limit)
        response.headers["X-Rate-Limit-Remaining"] = str(remaining)
        if request.method == "GET":
            response.headers.update({"ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining),
                                     "ratelimit-reset": str(reset)})
        return response

    # ---- admission helpers -------------------------------------------------------
    def _caller(self, request: Request) -> Record | None:
        """The agent or admin the credentials belong to, or None."""
        auth = request.authorization
        if auth is None:
            return None
        if auth.type == "bearer":
            grant = self.state["oauth_tokens"].get(auth.token or "")
            user = self.state["users"].get(str(grant["user_id"])) if grant and grant["active"] else None
        elif auth.type == "basic" and (auth.username or "").endswith("/token"):
            grant = self.state["api_tokens"].get(auth.password or "")
            email = (auth.username or "")[: -len("/token")]
            user = self.backend.user_by_email(email) if grant and grant["active"] else None
        else:  # password access is switched off, as on every account since 2024
            user = None
        return user if user is not None and user["role"] in ("agent", "admin") else None

    def _throttle(self, request: Request, incremental: bool) -> Response | None:
        storm = self.take_fault("daily_limit", request)
        if storm is not None:
            left = (storm.until - self.clock.time()) if storm.until is not None else storm.retry_after
            return errors.rate_limited(math.ceil(left))
        config = self.state["config"]
        wait = self._admit("account", int(config["rate_limit_per_minute"]))
        if wait is None and incremental:
            wait = self._admit("incremental", int(config["incremental_per_minute"]))
            if wait is not None:
                return errors.rate_limited(wait, errors.INCREMENTAL_LIMIT_MESSAGE)
        return errors.rate_limited(wait) if wait is not None else None

    def _admit(self, name: str, limit: int) -> int | None:
        """Count one request in window `name`; the seconds to wait if it is full."""
        now = self.clock.time()
        window = self.state["windows"].get(name)
        if window is None or now - window["start"] >= WINDOW_SECONDS:
            window = self.state["windows"][name] = {"start": now, "count": 0}
        if window["count"] >= limit:
            return math.ceil(float(window["start"]) + WINDOW_SECONDS - now)
        window["count"] += 1
        return None

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/groups`, `users` (end-users, or agents with `role`), `user_fields` and `ticket_fields`."""
        return {
            "groups": lambda body: {"id": self.add_group(body["name"])},
            "users": lambda body: {"id": self.add_user(body["name"], body.get("email"),
                                                       **{k: v for k, v in body.items() if k not in ("name", "email")})},
            "user_fields": lambda body: self._fields("user_fields", body),
            "ticket_fields": lambda body: self._fields("ticket_fields", body),
        }

    def _fields(self, table: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return fields.control(self.state, table, body, self.clock.time())

    # ---- seed API (for tests, the demo and the traffic generator) -----------------
    @property
    def default_agent_id(self) -> int:
        """The id of the default admin, agent@sandbox.zendesk.test."""
        with self.lock:
            user = self.backend.user_by_email(DEFAULT_AGENT_EMAIL)
            assert user is not None, "the default agent is part of every fresh account"
            return int(user["id"])

    def add_user(self, name: str, email: str | None = None, **fields: Any) -> int:
        """Create a user (end-user unless `role=` says otherwise); returns its id."""
        with self.lock:
            return int(self.backend.create_user({"name": name, "email": email, **fields})["id"])

    def add_agent(self, email: str, name: str | None = None, *, role: str = "agent",
                  token: str | None = None) -> int:
        """Create an agent (or admin) who may call the API; `token` also registers an API token."""
        if token is not None:
            self.add_api_token(token)
        return self.add_user(name or email.split("@")[0], email, role=role, verified=True)

    def add_api_token(self, token: str) -> None:
        """Register an account API token (usable with any agent's email)."""
        with self.lock:
            self.state["api_tokens"][token] = {"active": True}

    def add_oauth_token(self, token: str, user_id: int | None = None) -> None:
        """Register an OAuth access token acting as `user_id` (default: the default admin)."""
        owner = user_id if user_id is not None else self.default_agent_id
        with self.lock:
            self.state["oauth_tokens"][token] = {"user_id": owner, "active": True}

    def add_identity(self, user_id: int, type: str, value: str, **fields: Any) -> int:  # noqa: A002  # Zendesk's field name
        """Add an identity (email, phone_number, twitter, ...) to a user; returns its id."""
        with self.lock:
            return int(self.backend.add_identity(user_id, {"type": type, "value": value, **fields})["id"])

    def add_group(self, name: str, **fields: Any) -> int:
        """Create a group; returns its id."""
        with self.lock:
            return int(self.backend.create_group(name, **fields)["id"])

    def add_ticket(self, subject: str, body: str, requester_id: int | None = None, *,
                   created_at: float | str | datetime | None = None, **fields: Any) -> int:
        """Create a ticket with a first public comment; `created_at` back-dates it. Returns its id."""
        with self.lock:
            backend = self._backend_at(created_at)
            spec = {"subject": subject, "comment": {"body": body}, "requester_id": requester_id, **fields}
            ticket, _ = backend.create_ticket(spec, self.default_agent_id)
            return int(ticket["id"])

    def add_agent_comment(self, ticket_id: int, body: str, public: bool = True,
                          author_id: int | None = None) -> int:
        """An agent's reply on a ticket (what crmhub picks up later); returns the comment id."""
        author = author_id if author_id is not None else self.default_agent_id
        with self.lock:
            _, audit = self.backend.update_ticket(
                ticket_id, {"comment": {"body": body, "public": public, "author_id": author}}, author)
            return int(next(e["id"] for e in audit["events"] if e["type"] == "Comment"))

    def users(self) -> list[Record]:
        """Every user, by id."""
        return self._read(self.backend.users)

    def tickets(self) -> list[Record]:
        """Every ticket, by id."""
        return self._read(self.backend.tickets)

    def groups(self) -> list[Record]:
        """Every group, by id."""
        return self._read(self.backend.groups)

    def comments(self, ticket_id: int) -> list[Record]:
        """The comments of a ticket, oldest first."""
        return self._read(lambda: self.backend.comments(ticket_id))

    def configure(self, **settings: Any) -> None:
        """Change limits and job timing: rate_limit_per_minute, incremental_per_minute,
        job_reads_per_step (0: first poll completes; None: only finish_jobs), job_autocomplete_seconds,
        export_delay_seconds (incremental exports leave out younger changes; Zendesk's is 60)."""
        with self.lock:
            unknown = set(settings) - set(DEFAULT_CONFIG)
            if unknown:
                raise ValueError(f"unknown Zendesk sandbox settings: {sorted(unknown)}")
            self.state["config"].update(settings)

    def finish_jobs(self, job_id: str | None = None) -> None:
        """Complete one queued job, or all of them, now."""
        with self.lock:
            self.jobs.finish(job_id)

    def _read(self, fetch: Any) -> list[Record]:
        with self.lock:
            return copy.deepcopy(fetch())

    def _backend_at(self, when: float | str | datetime | None) -> ZendeskBackend:
        """The backend, with its clock stopped at `when` if given (to back-date seed records)."""
        if when is None:
            return self.backend
        if isinstance(when, datetime):
            at = when.timestamp()
        elif isinstance(when, str):
            at = float(epoch(when))
        else:
            at = float(when)
        return ZendeskBackend(lambda: self.state, FixedClock(at))
