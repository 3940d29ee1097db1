"""Zendesk's error answers, each with the vendor's status, code and body.

Zendesk wraps most errors in a JSON envelope: a short `error` code, a
human-readable `description` and, for validation failures (422), `details`
mapping a field to a list of `{description, error}` records. Rate-limit
answers are the exception: a `text/plain` sentence with `Retry-After`.
See https://developer.zendesk.com/api-reference/introduction/requests/ and
https://developer.zendesk.com/api-reference/introduction/rate-limits/.

Handlers and the backend raise `ZendeskError`; the route wrapper in
`urls.py` turns it into the answer with `response()`.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from crmhub.sandbox._server import json_response

ACCOUNT_LIMIT_MESSAGE = "Number of allowed API requests per minute exceeded"
INCREMENTAL_LIMIT_MESSAGE = "Number of allowed incremental export API requests per minute exceeded"


class ZendeskError(Exception):
    """A vendor-shaped error: HTTP status plus Zendesk's JSON envelope."""

    def __init__(self, status: int, error: str, description: str | None = None,
                 details: dict[str, list[dict[str, str]]] | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON envelope, with only the keys Zendesk sends for this error."""
        body: dict[str, Any] = {"error": self.error}
        if self.description is not None:
            body["description"] = self.description
        if self.details is not None:
            body["details"] = self.details
        return body

    def response(self) -> Response:
        return json_response(self.body(), self.status)


def unauthorized() -> ZendeskError:
    """401: bad or missing credentials (Zendesk sends no description)."""
    return ZendeskError(401, "Couldn't authenticate you")


def forbidden() -> ZendeskError:
    """403: authenticated, but the role may not use this endpoint."""
    return ZendeskError(403, "Forbidden", "You do not have access to this page. Please contact the account "
                        "owner of this help desk for further help.")


def not_found() -> ZendeskError:
    """404 for a record that does not exist."""
    return ZendeskError(404, "RecordNotFound", "Not found")


def record_invalid(field: str, description: str, error: str = "InvalidValue") -> ZendeskError:
    """422 with one validation failure on `field`."""
    return ZendeskError(422, "RecordInvalid", "Record validation errors",
                        {field: [{"description": description, "error": error}]})


def blank(field: str, label: str) -> ZendeskError:
    """422 for a required value left empty."""
    return record_invalid(field, f"{label}: cannot be blank", "BlankValue")


def duplicate(field: str, label: str, value: object) -> ZendeskError:
    """422 for a value that must be unique and is already used."""
    return record_invalid(field, f"{label}: {value} is already being used by another user", "DuplicateValue")


def too_many_values(given: int, maximum: int) -> ZendeskError:
    """400 for a batch or id list over the endpoint's maximum."""
    return ZendeskError(400, "TooManyValues", f"Too many values: {given} given, maximum is {maximum}")


def invalid_parameter(description: str) -> ZendeskError:
    """400 for a malformed query parameter."""
    return ZendeskError(400, "InvalidValue", description)


def invalid_pagination(description: str) -> ZendeskError:
    """400 for a bad `page[...]` parameter of cursor pagination."""
    return ZendeskError(400, "InvalidPaginationParameter", description)


def rate_limited(retry_after: int, message: str = ACCOUNT_LIMIT_MESSAGE) -> Response:
    """429 as Zendesk sends it: plain text, `Retry-After` in whole seconds."""
    response = Response(message, status=429, content_type="text/plain; charset=utf-8")
    response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def server_error(status: int) -> Response:
    """5xx; Zendesk's JSON envelope with a generic code."""
    code = "ServiceUnavailable" if status == 503 else "InternalServerError"
    return json_response({"error": code, "description": "Something went wrong, please try again later"}, status)


def not_emulated(method: str, path: str) -> Response:
    """501 naming what the sandbox does not emulate (never a bare 404)."""
    return json_response(
        {"error": "NotEmulated", "method": method, "path": path,
         "description": f"the crmhub sandbox does not emulate {method} {path}"},
        501,
    )
