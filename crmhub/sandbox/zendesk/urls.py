"""The route table: method and path to handler, for every emulated endpoint.

Generated docs and `GET /_sandbox/routes` read this table, so it is the one
list of what the Zendesk emulator answers; anything else gets "not emulated".
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import Route
from crmhub.sandbox.zendesk.errors import ZendeskError
from crmhub.sandbox.zendesk.responses import ZendeskResponses

V2 = "/api/v2"
INCREMENTAL_PREFIX = f"{V2}/incremental/"
Handler = Callable[..., Response]


def _vendor_errors(handler: Handler) -> Handler:
    """Answer a `ZendeskError` raised anywhere below the handler in Zendesk's shape."""

    @functools.wraps(handler)
    def call(request: Request, **args: object) -> Response:
        try:
            return handler(request, **args)
        except ZendeskError as exc:
            return exc.response()

    return call


def route_table(h: ZendeskResponses) -> list[Route]:
    table: list[tuple[str, str, Handler]] = [
        ("GET", "/users.json", h.list_users),
        ("POST", "/users.json", h.create_user),
        ("GET", "/users/me.json", h.me),
        ("GET", "/users/search.json", h.search_users),
        ("GET", "/users/show_many.json", h.show_many_users),
        ("POST", "/users/create_or_update.json", h.create_or_update_user),
        ("POST", "/users/create_many.json", h.create_many_users),
        ("POST", "/users/create_or_update_many.json", h.create_or_update_many_users),
        ("PUT", "/users/update_many.json", h.update_many_users),
        ("GET", "/users/<int:user_id>.json", h.show_user),
        ("PUT", "/users/<int:user_id>.json", h.update_user),
        ("DELETE", "/users/<int:user_id>.json", h.delete_user),
        ("PUT", "/users/<int:user_id>/merge.json", h.merge_user),
        ("GET", "/users/<int:user_id>/identities.json", h.list_identities),
        ("POST", "/users/<int:user_id>/identities.json", h.create_identity),
        ("GET", "/groups.json", h.list_groups),
        ("GET", "/groups/<int:group_id>.json", h.show_group),
        ("GET", "/user_fields.json", h.list_user_fields),
        ("GET", "/ticket_fields.json", h.list_ticket_fields),
        ("GET", "/tickets.json", h.list_tickets),
        ("POST", "/tickets.json", h.create_ticket),
        ("GET", "/tickets/show_many.json", h.show_many_tickets),
        ("POST", "/tickets/create_many.json", h.create_many_tickets),
        ("PUT", "/tickets/update_many.json", h.update_many_tickets),
        ("GET", "/tickets/<int:ticket_id>.json", h.show_ticket),
        ("PUT", "/tickets/<int:ticket_id>.json", h.update_ticket),
        ("GET", "/tickets/<int:ticket_id>/comments.json", h.list_comments),
        ("GET", "/tickets/<int:ticket_id>/audits.json", h.list_audits),
        ("GET", "/job_statuses.json", h.list_job_statuses),
        ("GET", "/job_statuses/show_many.json", h.show_many_job_statuses),
        ("GET", "/job_statuses/<job_id>.json", h.show_job_status),
        ("GET", "/search.json", h.search),
        ("GET", "/search/count.json", h.search_count),
        ("GET", "/incremental/tickets/cursor.json", h.export_tickets),
        ("GET", "/incremental/users/cursor.json", h.export_users),
        ("GET", "/incremental/ticket_events.json", h.export_ticket_events),
    ]
    return [Route((method,), V2 + path, _vendor_errors(handler)) for method, path, handler in table]
