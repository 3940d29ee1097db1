"""The HubSpot emulator: auth, limits, vendor-shaped fault answers and the seed API.

hubspot-api-client talks to it unchanged through its public knobs:
`HubSpot(access_token="sandbox-token", host=url, base_url=url)` (`host` for the
generated APIs, `base_url` for `client.api_request`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import CONTROL_PREFIX, ControlAction, Emulator, Fault, Route
from crmhub.sandbox.hubspot import catalog, errors, models, scopes
from crmhub.sandbox.hubspot.limits import RateLimiter
from crmhub.sandbox.hubspot.models import HubSpotBackend
from crmhub.sandbox.hubspot.responses import SOURCE, HubSpotResponses
from crmhub.sandbox.hubspot.urls import route_table
from crmhub.sandbox.hubspot.values import iso_millis


class HubSpotEmulator(Emulator):
    """HubSpot CRM (private app token auth) with the seed API tests and the demo use."""

    name: ClassVar[str] = "hubspot"

    # ---- Emulator hooks ----------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        return models.initial_state(iso_millis(self.clock.now()))

    def routes(self) -> Iterable[Route]:
        return route_table(HubSpotResponses(self))

    @property
    def backend(self) -> HubSpotBackend:
        """Domain operations on the current state (a fresh view: `reset` replaces the state)."""
        return HubSpotBackend(self.state, self.clock)

    @property
    def limiter(self) -> RateLimiter:
        return RateLimiter(self.state, self.clock)

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Check the Bearer token, then the app's allowances (daily, 10-second window, search).

        Both answer before any handler runs, as HubSpot's gateway does; a
        request refused here is not counted against the allowances.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        entry = self.state["tokens"].get(token) if scheme.lower() == "bearer" else None
        if entry is None:
            return errors.unauthorized().response()
        if entry["expired_at"] is not None:
            return errors.expired(int(self.clock.time() - entry["expired_at"])).response()
        user = entry.get("user_id")
        request.environ[SOURCE] = models.user_source(int(user)) if user is not None else models.APP_SOURCE
        granted = entry.get("scopes")
        needed = scopes.required(request.method, request.path) if granted is not None else []
        if needed and not set(needed) & set(granted):
            return errors.missing_scopes(needed).response()
        if self.take_fault("daily_limit", request) is not None:
            return errors.rate_limited("DAILY", self.limiter.headers(daily_remaining=0))
        policy = self.limiter.admit(is_search=request.path.endswith("/search"))
        if policy is not None:
            return errors.rate_limited(policy, self.limiter.headers())
        return None

    def on_token_expiry(self) -> None:
        for entry in self.state["tokens"].values():
            entry["expired_at"] = entry["expired_at"] or self.clock.time()

    def not_emulated_response(self, request: Request) -> Response:
        return errors.not_emulated(request.method, request.path)

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        """The 10-second window's 429; the fault's `retry_after` is sent as Retry-After."""
        with self.lock:
            headers = self.limiter.headers(remaining=0, secondly_remaining=0)
        headers["Retry-After"] = str(max(1, math.ceil(fault.retry_after))) if fault.retry_after > 0 else "0"
        return errors.rate_limited("TEN_SECONDLY_ROLLING", headers)

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        return errors.server_error(fault.status)

    def decorate(self, request: Request, response: Response) -> Response:
        """Rate-limit headers and a correlation id on every authenticated answer."""
        if request.path.startswith(CONTROL_PREFIX) or response.status_code == 401:
            return response
        with self.lock:
            headers = self.limiter.headers()
        for key, value in headers.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault(errors.CORRELATION_HEADER, errors.correlation_id())
        return response

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/owners`, `pipelines`, `objects`, `search_lag` and `tokens` (docs/sandbox/hubspot.md)."""
        return {
            "owners": lambda body: {"id": self.add_owner(body["email"], body.get("first_name", ""),
                                                         body.get("last_name", ""))},
            "pipelines": lambda body: {"id": self.add_pipeline(body["label"], [tuple(s) for s in body["stages"]])
                                       if "stages" in body else self.add_pipeline(body["label"])},
            "objects": lambda body: {"id": self.add(body["object_type"], **dict(body.get("properties") or {}))},
            "search_lag": lambda body: self._lag(float(body["seconds"])),
            "tokens": self._token,
        }

    def _token(self, body: dict[str, Any]) -> dict[str, Any]:
        """A private app token with only `scopes` (null: every scope), e.g. to take one away in a test."""
        granted = body.get("scopes")
        with self.lock:
            self.state["tokens"][str(body["token"])] = {"expired_at": None,
                                                         "scopes": None if granted is None else list(granted)}
        return {"token": body["token"], "scopes": granted}

    def _lag(self, seconds: float) -> dict[str, Any]:
        self.set_search_lag(seconds)
        return {"search_lag_seconds": seconds}

    # ---- seed API (no HTTP, no limits, no faults) -----------------------------
    def add(self, object_type: str, **properties: Any) -> str:
        """Create a record (validated like the API) and return its id.

        Engagements get `hs_timestamp` = now and communications
        `hs_communication_logged_from` = "CRM" when not given; tickets go to
        stage "1" of the Support Pipeline unless told otherwise.
        """
        otype = catalog.object_type(object_type)
        defaults = {"hs_timestamp": iso_millis(self.clock.now()), "hs_communication_logged_from": "CRM",
                    "hs_pipeline_stage": "1"}
        for name in otype.required:
            if name in defaults:
                properties.setdefault(name, defaults[name])
        with self.lock:
            record = self.backend.create(otype, properties)
            self.persist()
        return str(record["id"])

    def objects(self, object_type: str, *, archived: bool = False) -> list[dict[str, Any]]:
        """Copies of the records of a type (live ones, or the archived ones), in id order."""
        with self.lock:
            records = self.backend.records(catalog.object_type(object_type)).values()
            return [copy.deepcopy(r) for r in sorted(records, key=lambda r: int(r["id"])) if r["archived"] == archived]

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str,
                  type_id: int | None = None) -> list[int]:
        """Link two records in both directions (HubSpot's default type unless `type_id`)."""
        with self.lock:
            merged = self.backend.associate(catalog.object_type(from_type), str(from_id),
                                            catalog.object_type(to_type), str(to_id),
                                            None if type_id is None else [type_id])
            self.persist()
        return merged

    def associated(self, from_type: str, from_id: str, to_type: str) -> dict[str, list[int]]:
        """to_id -> association type ids, for assertions on what HubSpot would hold."""
        with self.lock:
            links = self.backend.associations(catalog.object_type(from_type), str(from_id),
                                              catalog.object_type(to_type))
        return dict(links)

    def define_property(self, object_type: str, name: str, *, label: str | None = None, type: str = "string",  # noqa: A002  # HubSpot's field name
                        field_type: str = "text", unique: bool = False, options: Iterable[str] = ()) -> None:
        """Create a custom property, e.g. a unique `crmhub_key` for upserts."""
        otype = catalog.object_type(object_type)
        body = {"name": name, "label": label or name, "type": type, "fieldType": field_type,
                "groupName": catalog.GROUP_NAMES[otype.name], "hasUniqueValue": unique,
                "options": [{"label": o, "value": o} for o in options]}
        with self.lock:
            self.backend.define_property(otype, body)
            self.persist()

    def add_owner(self, email: str, first_name: str = "", last_name: str = "",
                  teams: list[dict[str, Any]] | None = None) -> str:
        """Add a HubSpot user as an owner; returns the owner id (`hubspot_owner_id` values)."""
        with self.lock:
            owner_id = self.backend.add_owner(email, first_name, last_name, teams or [])
            self.persist()
        return owner_id

    def add_pipeline(self, label: str, stages: Iterable[tuple[str, str]] = (("New", "OPEN"), ("Closed", "CLOSED")),
                     object_type: str = "tickets") -> str:
        """Add a pipeline of (stage label, "OPEN" | "CLOSED") stages; returns its id."""
        with self.lock:
            pipeline_id = self.backend.add_pipeline(catalog.object_type(object_type).name, label, stages)
            self.persist()
        return pipeline_id

    def add_token(self, token: str) -> None:
        """Accept another private app token (e.g. a rotated one after `expire_token`)."""
        with self.lock:
            self.state["tokens"][token] = {"expired_at": None}
            self.persist()

    def add_agent(self, email: str, first_name: str, last_name: str, *, token: str) -> int:
        """A HubSpot user (an owner too) and a token that acts as them; returns their user id.

        What an agent changes through that token is theirs in property history (`sourceType` CRM_UI,
        `updatedByUserId`), as an edit they make in HubSpot's own screens is: how tests act as an agent.
        """
        with self.lock:
            owner_id = self.backend.add_owner(email, first_name, last_name, [])
            user_id = int(self.backend.owner(owner_id, None)["userId"])
            self.state["tokens"][token] = {"expired_at": None, "user_id": user_id}
            self.persist()
        return user_id

    def history_reads(self) -> int:
        """How many reads asked for `propertiesWithHistory` (GET by id or batch read), for tests counting them."""
        with self.lock:
            return int(self.state.get("history_reads", 0))

    def set_search_lag(self, seconds: float) -> None:
        """New records show in search only `seconds` of sandbox time after their creation, as
        HubSpot's search index lags behind writes (default 0: at once, so tests keep their behaviour)."""
        if seconds < 0:
            raise ValueError("the search lag is zero or more seconds")
        with self.lock:
            self.state["search_lag_seconds"] = seconds
            self.persist()

    def set_limits(self, *, ten_second_max: int | None = None, daily_max: int | None = None,
                   search_per_second: int | None = None) -> None:
        """Change the app's allowances (defaults: 190 per 10 s, 1,000,000 a day, search 5/s)."""
        wanted = {"ten_second_max": ten_second_max, "daily_max": daily_max, "search_per_second": search_per_second}
        with self.lock:
            self.state["limits"].update({k: v for k, v in wanted.items() if v is not None})
            self.persist()
