"""Request handlers: parse a Zendesk API request, call the backend, answer in Zendesk's shape.

Each handler is called as `handler(request, **path_args)` under the
emulator's lock, after the emulator has authenticated the caller (its user
id is in `request.environ[ACTOR]`) and applied the rate limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import json_response
from crmhub.sandbox.zendesk import errors
from crmhub.sandbox.zendesk.exports import MAX_PER_PAGE, decode_cursor, encode_cursor
from crmhub.sandbox.zendesk.paging import int_param, link, offset_page, paginate, unpaged
from crmhub.sandbox.zendesk.models import ZendeskBackend
from crmhub.sandbox.zendesk.records import MAX_BATCH, Record

if TYPE_CHECKING:
    from crmhub.sandbox.zendesk.emulator import ZendeskEmulator

ACTOR = "crmhub.zendesk.actor_id"


def created(body: dict[str, Any], url: str) -> Response:
    """201 with the `Location` of the new record, as Zendesk answers a create."""
    return json_response(body, 201, {"Location": url})


def body_of(request: Request, key: str) -> Any:
    """The `key` member of the JSON body; a missing or malformed body is a 400."""
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or key not in payload:
        raise errors.invalid_parameter(f"request body must be a JSON object with '{key}'")
    return payload[key]


def record_of(request: Request, key: str) -> Record:
    value = body_of(request, key)
    if not isinstance(value, dict):
        raise errors.invalid_parameter(f"'{key}' must be an object")
    return value


def batch_of(request: Request, key: str) -> list[Record]:
    """A bulk request's list of records (at most 100)."""
    items = body_of(request, key)
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise errors.invalid_parameter(f"'{key}' must be a list of objects")
    if len(items) > MAX_BATCH:
        raise errors.too_many_values(len(items), MAX_BATCH)
    return items


def id_list(request: Request, name: str = "ids") -> list[str]:
    """A comma-separated id list parameter (at most 100 values)."""
    raw = request.args.get(name, "")
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise errors.invalid_parameter(f"{name} is required")
    if len(values) > MAX_BATCH:
        raise errors.too_many_values(len(values), MAX_BATCH)
    return values


class ZendeskResponses:
    """The handlers of every emulated endpoint (see `urls.py` for the table)."""

    def __init__(self, emulator: ZendeskEmulator) -> None:
        self.emulator = emulator

    @property
    def backend(self) -> ZendeskBackend:
        return self.emulator.backend

    @staticmethod
    def actor(request: Request) -> int:
        return int(request.environ[ACTOR])

    # ---- users -----------------------------------------------------------------
    def list_users(self, request: Request) -> Response:
        users = self.backend.users()
        roles = request.args.getlist("role[]") or request.args.getlist("role")
        if roles:
            users = [u for u in users if u["role"] in roles]
        return json_response(paginate(request, "users", users))

    def create_user(self, request: Request) -> Response:
        user = self.backend.create_user(record_of(request, "user"))
        return created({"user": user}, user["url"])

    def me(self, request: Request) -> Response:
        return json_response({"user": self.backend.user(self.actor(request))})

    def show_user(self, request: Request, user_id: int) -> Response:
        return json_response({"user": self.backend.user(user_id)})

    def update_user(self, request: Request, user_id: int) -> Response:
        return json_response({"user": self.backend.update_user(user_id, record_of(request, "user"))})

    def delete_user(self, request: Request, user_id: int) -> Response:
        return json_response({"user": self.backend.delete_user(user_id)})

    def merge_user(self, request: Request, user_id: int) -> Response:
        target = record_of(request, "user").get("id")
        if target is None:
            raise errors.invalid_parameter("user.id (the user to merge into) is required")
        return json_response({"user": self.backend.merge_user(user_id, target)})

    def search_users(self, request: Request) -> Response:
        if "external_id" in request.args:
            user = self.backend.user_by_external_id(request.args["external_id"])
            return json_response(offset_page(request, "users", [user] if user else []))
        query = request.args.get("query", "").strip()
        if not query:
            raise errors.invalid_parameter("query or external_id is required")
        return json_response(offset_page(request, "users", self.emulator.searcher.users(query)))

    def show_many_users(self, request: Request) -> Response:
        if "external_ids" in request.args:
            matches = [self.backend.user_by_external_id(x) for x in id_list(request, "external_ids")]
            found = [user for user in matches if user is not None]
        else:
            found = self.backend.users_by_ids(id_list(request))
        return json_response(unpaged("users", found))

    def create_or_update_user(self, request: Request) -> Response:
        user, is_new = self.backend.create_or_update_user(record_of(request, "user"))
        return created({"user": user}, user["url"]) if is_new else json_response({"user": user})

    def create_many_users(self, request: Request) -> Response:
        return self._submit(request, "users.create", batch_of(request, "users"))

    def create_or_update_many_users(self, request: Request) -> Response:
        return self._submit(request, "users.create_or_update", batch_of(request, "users"))

    def update_many_users(self, request: Request) -> Response:
        """`{"users": [{id, ...}]}`, or `?ids=` with one `{"user": {...}}` for all (Update Many Users)."""
        if "ids" in request.args:
            change = record_of(request, "user")
            items = [{**change, "id": int(x)} for x in id_list(request) if x.isdigit()]
        else:
            items = batch_of(request, "users")
        return self._submit(request, "users.update", items)

    def list_identities(self, request: Request, user_id: int) -> Response:
        return json_response(unpaged("identities", self.backend.identities(user_id)))

    def create_identity(self, request: Request, user_id: int) -> Response:
        identity = self.backend.add_identity(user_id, record_of(request, "identity"))
        return created({"identity": identity}, identity["url"])

    # ---- groups ----------------------------------------------------------------
    def list_groups(self, request: Request) -> Response:
        return json_response(paginate(request, "groups", self.backend.groups()))

    def show_group(self, request: Request, group_id: int) -> Response:
        return json_response({"group": self.backend.group(group_id)})

    # ---- schema: user and ticket fields ---------------------------------------
    def list_user_fields(self, request: Request) -> Response:
        return json_response(paginate(request, "user_fields", self.backend.schema_fields("user_fields")))

    def list_ticket_fields(self, request: Request) -> Response:
        return json_response(paginate(request, "ticket_fields", self.backend.schema_fields("ticket_fields")))

    # ---- tickets ---------------------------------------------------------------
    def list_tickets(self, request: Request) -> Response:
        tickets = self.backend.tickets()
        if "external_id" in request.args:
            tickets = [t for t in tickets if t["external_id"] == request.args["external_id"]]
        return json_response(paginate(request, "tickets", tickets))

    def create_ticket(self, request: Request) -> Response:
        ticket, audit = self.backend.create_ticket(record_of(request, "ticket"), self.actor(request))
        return created({"ticket": ticket, "audit": audit}, ticket["url"])

    def show_ticket(self, request: Request, ticket_id: int) -> Response:
        return json_response({"ticket": self.backend.ticket(ticket_id)})

    def update_ticket(self, request: Request, ticket_id: int) -> Response:
        ticket, audit = self.backend.update_ticket(ticket_id, record_of(request, "ticket"), self.actor(request))
        return json_response({"ticket": ticket, "audit": audit})

    def show_many_tickets(self, request: Request) -> Response:
        return json_response(unpaged("tickets", self.backend.tickets_by_ids(id_list(request))))

    def create_many_tickets(self, request: Request) -> Response:
        return self._submit(request, "tickets.create", batch_of(request, "tickets"))

    def update_many_tickets(self, request: Request) -> Response:
        """`{"tickets": [{id, ...}]}`, or `?ids=` with one `{"ticket": {...}}` for all."""
        if "ids" in request.args:
            change = record_of(request, "ticket")
            items = [{**change, "id": int(x)} for x in id_list(request) if x.isdigit()]
        else:
            items = batch_of(request, "tickets")
        return self._submit(request, "tickets.update", items)

    def list_comments(self, request: Request, ticket_id: int) -> Response:
        return json_response(paginate(request, "comments", self.backend.comments(ticket_id)))

    def list_audits(self, request: Request, ticket_id: int) -> Response:
        """List Audits for a Ticket, oldest first: who changed what, one audit per update (tags included)."""
        return json_response(paginate(request, "audits", self.backend.audits(ticket_id)))

    def _submit(self, request: Request, kind: str, items: list[Record]) -> Response:
        fault = self.emulator.take_fault("partial_failure", request)
        job = self.emulator.jobs.submit(kind, items, self.actor(request), fault.reject if fault else ())
        return json_response({"job_status": job})

    def list_job_statuses(self, request: Request) -> Response:
        reads = self.emulator.state["config"]["job_reads_per_step"]
        jobs, more = self.emulator.jobs.recent(reads)
        return json_response({"job_statuses": jobs, "meta": {"has_more": more, "after_cursor": None,
                                                              "before_cursor": None},
                              "links": {"next": None, "prev": None}})

    def show_many_job_statuses(self, request: Request) -> Response:
        """`?ids=a,b,c` (up to 100, as every show_many): those jobs' statuses; unknown (expired) ids are left out.

        Each read may move a job one step, as a single status read does.
        """
        reads = self.emulator.state["config"]["job_reads_per_step"]
        return json_response({"job_statuses": self.emulator.jobs.read_many(id_list(request), reads)})

    def show_job_status(self, request: Request, job_id: str) -> Response:
        reads = self.emulator.state["config"]["job_reads_per_step"]
        return json_response({"job_status": self.emulator.jobs.read(job_id, reads)})

    # ---- search ----------------------------------------------------------------
    def search(self, request: Request) -> Response:
        page = offset_page(request, "results", self._search_results(request))
        return json_response({**page, "facets": None})

    def search_count(self, request: Request) -> Response:
        return json_response({"count": len(self._search_results(request))})

    def _search_results(self, request: Request) -> list[Record]:
        query = request.args.get("query", "").strip()
        if not query:
            raise errors.invalid_parameter("query is required")
        return list(self.emulator.searcher.search(query, request.args.get("filter[type]")))

    # ---- incremental exports ---------------------------------------------------
    def export_tickets(self, request: Request) -> Response:
        return self._cursor_export(request, "tickets")

    def export_users(self, request: Request) -> Response:
        return self._cursor_export(request, "users")

    def _cursor_export(self, request: Request, kind: str) -> Response:
        cursor, start = request.args.get("cursor"), request.args.get("start_time")
        if bool(cursor) == bool(start):
            raise errors.invalid_parameter("exactly one of start_time and cursor is required")
        after = decode_cursor(cursor) if cursor else (int_param(request.args, "start_time", 0), 0)
        items, last, end = self.emulator.exporter.cursor_page(kind, after, _per_page(request))
        after_cursor = encode_cursor(last)
        return json_response({
            kind: items, "after_cursor": after_cursor,
            "after_url": link(request, {"cursor": after_cursor}, drop=("start_time",)),
            "before_cursor": None, "before_url": None, "end_of_stream": end,
        })

    def export_ticket_events(self, request: Request) -> Response:
        if not request.args.get("start_time"):
            raise errors.invalid_parameter("start_time is required")
        start = int_param(request.args, "start_time", 0)
        include = "comment_events" in request.args.get("include", "").split(",")
        events, end_time, end = self.emulator.exporter.ticket_events(start, _per_page(request), include)
        return json_response({
            "ticket_events": events, "next_page": link(request, {"start_time": end_time}),
            "count": len(events), "end_time": end_time, "end_of_stream": end,
        })


def _per_page(request: Request) -> int:
    return min(MAX_PER_PAGE, max(1, int_param(request.args, "per_page", MAX_PER_PAGE)))
