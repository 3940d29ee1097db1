"""SalesforceEmulator: the REST API v59.0 subset crmhub uses, its logins, faults and seed API.

The hooks of `Emulator` give Salesforce's shapes: sessions are checked and
the rolling daily allowance counted in `authenticate`; `decorate` adds
``Sforce-Limit-Info: api-usage=n/max`` to every REST answer; the generic
rate-limit fault answers 403 REQUEST_LIMIT_EXCEEDED (Salesforce sends no 429
and no Retry-After for REST). See docs/sandbox/salesforce.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import ControlAction, Emulator, Fault, Route, json_response
from crmhub.sandbox.salesforce.auth import AuthHandlers
from crmhub.sandbox.salesforce.errors import (
    OAUTH_RATE_LIMITED,
    SalesforceApiError,
    invalid_session,
    oauth_error,
    request_limit_exceeded,
)
from crmhub.sandbox.salesforce.ids import normalize_id
from crmhub.sandbox.salesforce.models import (
    DEFAULT_API_MAX,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USERNAME,
    SESSION_TIMEOUT,
    SalesforceBackend,
    empty_state,
)
from crmhub.sandbox.salesforce.responses import USER_KEY, Handler, RestHandlers
from crmhub.sandbox.salesforce.schema import API_PATH, OBJECTS_BY_PREFIX, SObjectSchema
from crmhub.sandbox.salesforce.urls import ENDPOINTS

CONCURRENCY_LIMIT_MESSAGE = "ConcurrentPerOrgLongTxn Limit exceeded."
DAILY_LIMIT_MESSAGE = "TotalRequests Limit exceeded."
# A 200 that is not Salesforce's answer (a proxy's or captive portal's JSON): no token, no instance_url.
ODD_ANSWER = {"status": "ok", "message": "request accepted"}
OAUTH_TOKEN_PATH = "/services/oauth2/token"
T = TypeVar("T")
SeedOperation = Callable[[SalesforceBackend, SObjectSchema, str], T]


class SalesforceEmulator(AuthHandlers, RestHandlers, Emulator):
    """Salesforce REST API v59.0 (plus OAuth and SOAP login) for one sandbox org.

    Args:
        api_max: DailyApiRequests Max (rolling 24 h of sandbox time).
        session_timeout: seconds of inactivity after which a session id is
            refused with INVALID_SESSION_ID (None: never).
    """

    name = "salesforce"

    def __init__(self, *, api_max: int = DEFAULT_API_MAX, session_timeout: float | None = SESSION_TIMEOUT,
                 **kwargs: Any) -> None:
        self._api_max = api_max  # read by initial_state, which the base calls
        super().__init__(**kwargs)
        self.backend = SalesforceBackend(lambda: self.state, self.clock, session_timeout)
        self.composite_map = Map([Rule(e.rule, endpoint=e.handler, methods=list(e.methods))
                                  for e in ENDPOINTS if e.composite], strict_slashes=False)

    # ---- Emulator hooks ---------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        """An org with the integration user and the documented OAuth client."""
        state = empty_state(self._api_max)
        backend = SalesforceBackend(lambda: state, self.clock)
        user_id = backend.add_user(INTEGRATION_USERNAME, INTEGRATION_PASSWORD, "", "crmhub Integration",
                                   INTEGRATION_USERNAME)
        backend.add_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, user_id)
        return state

    def routes(self) -> Iterable[Route]:
        return [Route(e.methods, e.rule, self.handler(e.handler), e.billable) for e in ENDPOINTS]

    def handler(self, name: str) -> Handler:
        """The handler `name`, answering its SalesforceApiError as Salesforce would."""
        method = getattr(self, name)

        @functools.wraps(method)
        def guarded(request: Request, **args: Any) -> Response:
            try:
                response: Response = method(request, **args)
            except SalesforceApiError as exc:
                return exc.response()
            return response

        return guarded

    def authenticate(self, request: Request, route: Route) -> Response | None:
        """Session check, then the daily allowance, then count the call.

        The free endpoints (versions, OAuth token, SOAP login) are also the
        ones that need no session. The `odd_answer` fault answers first.
        """
        if self.take_fault("odd_answer", request) is not None:
            return json_response(ODD_ANSWER)
        if not route.billable:
            return None
        kind, _, token = request.headers.get("Authorization", "").partition(" ")
        user_id = self.backend.session_user(token.strip()) if kind in ("Bearer", "OAuth") else None
        if user_id is None:
            return invalid_session().response()
        if self.take_fault("daily_limit", request) or self.backend.api_usage() >= int(self.state["api_max"]):
            return request_limit_exceeded(DAILY_LIMIT_MESSAGE).response()
        self.backend.count_calls()
        request.environ[USER_KEY] = user_id
        return None

    def on_token_expiry(self) -> None:
        self.state["tokens"].clear()

    def decorate(self, request: Request, response: Response) -> Response:
        """Sforce-Limit-Info on every REST answer (not on versions or logins)."""
        if request.path.startswith(API_PATH + "/"):
            with self.lock:
                response.headers["Sforce-Limit-Info"] = f"api-usage={self.backend.api_usage()}/{self.state['api_max']}"
        return response

    def rate_limited_response(self, request: Request, fault: Fault) -> Response:
        """Salesforce has no REST 429: too many long-running requests get this 403.

        The OAuth token endpoint answers in the OAuth error shape instead, as all its errors are.
        """
        if request.path.rstrip("/") == OAUTH_TOKEN_PATH:
            return oauth_error(OAUTH_RATE_LIMITED, "too many login attempts; try again later")
        return request_limit_exceeded(CONCURRENCY_LIMIT_MESSAGE).response()

    def server_error_response(self, request: Request, fault: Fault) -> Response:
        if request.path.rstrip("/") == OAUTH_TOKEN_PATH:  # RFC 6749's codes, the OAuth error shape
            code = "temporarily_unavailable" if fault.status == 503 else "server_error"
            return oauth_error(code, "the authorization server could not answer; try again later", fault.status)
        if fault.status == 500:
            message = "An unexpected error occurred. Please include this ErrorId if you contact support: 1425263-1 (-1)"
            return json_response([{"message": message, "errorCode": "UNKNOWN_EXCEPTION"}], 500)
        return json_response([{"message": "Server temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}],
                             fault.status)

    def not_emulated_response(self, request: Request) -> Response:
        detail = f"the crmhub sandbox does not emulate {request.method} {request.path}"
        return json_response([{"message": detail, "errorCode": "NOT_EMULATED", "method": request.method,
                               "path": request.path}], 501)

    def control_actions(self) -> dict[str, ControlAction]:
        """`POST /_sandbox/queues`, `users`, `records` (any sObject, e.g. a Contact) and `field_security`, as an admin would."""
        return {
            "queues": lambda body: {"id": self.add_queue(body.get("name") or body["developer_name"].replace("_", " "),
                                                         body["developer_name"])},
            "users": lambda body: {"id": self.add_user(body["username"], body["password"], name=body.get("name", ""),
                                                       email=body.get("email", ""))},
            "records": lambda body: {"id": self.insert(body["sobject"], **dict(body.get("fields") or {}))},
            "field_security": lambda body: self._field_access(body["sobject"], body["field"], body["access"]),
        }

    def _field_access(self, sobject: str, field: str, access: str) -> dict[str, str]:
        self.set_field_access(sobject, field, access)
        return {"field": f"{sobject}.{field}", "access": access}

    # ---- seed API (no HTTP, no call counted) ----------------------------------------
    def insert(self, sobject: str, **fields: Any) -> str:
        """Create a record as the integration user; returns its 18-character id.

        Validated like an API insert (ValueError lists Salesforce's errors), but
        CreatedDate, CreatedById, LastModifiedDate and LastModifiedById may be
        set, as a data import with "Set Audit Fields" can.
        """
        with self.lock:
            return self._seed(lambda b, s, u: b.create(s, fields, u, audit=True), sobject)

    def update(self, sobject: str, record_id: str, **fields: Any) -> None:
        """Change a record as an agent would in the UI (LastModifiedDate moves on)."""
        with self.lock:
            self._seed(lambda b, s, u: b.update(s, record_id, fields, u, audit=True), sobject)

    def delete(self, sobject: str, record_id: str) -> None:
        """Send a record to the recycle bin (IsDeleted true, still seen by queryAll)."""
        with self.lock:
            self._seed(lambda b, s, u: b.delete(s, record_id, u), sobject)

    def merge(self, sobject: str, master_id: str, *victim_ids: str) -> None:
        """An admin's merge of duplicates (Salesforce's merge(): SOAP, Apex or the UI; REST has none).

        The victims go to the recycle bin with MasterRecordId set; their Cases
        and Tasks move to the master.
        """
        with self.lock:
            self._seed(lambda b, s, u: b.merge(s, master_id, list(victim_ids), u), sobject)

    def records(self, sobject: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Copies of the records of `sobject` with every field (None if unset), in creation order."""
        with self.lock:
            schema = self.backend.require_schema(sobject)
            return [_every_field(schema, r) for r in self.backend.records_of(schema.name, include_deleted)]

    def record(self, record_id: str) -> dict[str, Any] | None:
        """A copy of any record (deleted ones too) by its 15- or 18-character id."""
        normal = normalize_id(record_id) or ""
        sobject = OBJECTS_BY_PREFIX.get(normal[:3])
        with self.lock:
            found = self.state["records"][sobject].get(normal) if sobject else None
            return None if found is None else _every_field(self.backend.require_schema(str(sobject)), found)

    def add_queue(self, name: str, developer_name: str) -> str:
        """A queue (Group of Type 'Queue') that can own Cases; returns its id."""
        return self.insert("Group", Name=name, DeveloperName=developer_name, Type="Queue")

    def add_user(self, username: str, password: str, *, security_token: str = "", name: str = "",
                 email: str = "") -> str:
        """A user who can log in (SOAP or OAuth password grant) with password + security_token."""
        with self.lock:
            return self.backend.add_user(username, password, security_token, name or username, email or username)

    def add_oauth_client(self, client_id: str, client_secret: str, *, run_as: str = INTEGRATION_USERNAME) -> None:
        """A connected app; its client_credentials sessions act as the user `run_as`."""
        with self.lock:
            login = self.state["logins"].get(run_as.lower())
            if login is None:
                raise ValueError(f"no user {run_as!r}: add_user() first")
            self.backend.add_client(client_id, client_secret, login["user_id"])

    def issue_token(self, username: str = INTEGRATION_USERNAME) -> str:
        """A session id for `username`, as a login would give (for session_id= clients)."""
        with self.lock:
            login = self.state["logins"].get(username.lower())
            if login is None:
                raise ValueError(f"no user {username!r}")
            return self.backend.issue_token(login["user_id"])

    def define_field(self, sobject: str, name: str, type: str,  # noqa: A002  # describe's word for it
                     external_id: bool = False, unique: bool = False) -> None:
        """Add a custom field (name ending in __c) to an object's describe, writes and SOQL."""
        with self.lock:
            self.backend.define_field(sobject, {"name": name, "type": type, "external_id": external_id,
                                                "unique": unique})

    def set_field_access(self, sobject: str, field: str, access: str) -> None:
        """The integration user's field-level security: "hidden" (gone from describe, SOQL and writes for it),
        "read" (not createable or updateable) or "edit" (the default)."""
        with self.lock:
            self.backend.set_field_access(sobject, field, access)
            self.persist()

    def set_api_limit(self, maximum: int) -> None:
        """Change DailyApiRequests Max (until the next reset)."""
        with self.lock:
            self.state["api_max"] = maximum

    def spend_api_calls(self, n: int) -> None:
        """Use up `n` calls of the allowance, as the customer's other integrations would."""
        with self.lock:
            self.backend.count_calls(n)

    @property
    def integration_user_id(self) -> str:
        """Id of the default user (integration@sandbox.crmhub.test), the default OwnerId."""
        with self.lock:
            return str(self.backend.integration_user_id())

    def _seed(self, operation: SeedOperation[T], sobject: str) -> T:
        """Run a backend write as the integration user; Salesforce errors become ValueError."""
        schema = self.backend.require_schema(sobject)
        try:
            return operation(self.backend, schema, self.integration_user_id)
        except SalesforceApiError as exc:
            raise ValueError(f"{sobject}: {exc.body()}") from None
        finally:
            self.persist()


def _every_field(schema: SObjectSchema, record: dict[str, Any]) -> dict[str, Any]:
    """A record with every field of its object, in describe order (records are stored sparse)."""
    return {name: record.get(name) for name in schema.fields}
