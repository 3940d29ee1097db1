"""X API v2 errors in the vendor's shapes (RFC 7807 "problem" bodies).

X answers errors with a problem object (`title`, `detail`, `type`, often
`status`); request validation failures add an `errors` list naming each bad
parameter. Lookups of missing resources are *not* errors: they answer 200
with the misses in `errors` next to `data` (see `not_found_item`).
Reference: docs.x.com/x-api/fundamentals/response-codes-and-errors.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from werkzeug.wrappers import Response

from crmhub.sandbox._server import json_response

PROBLEMS = "https://api.twitter.com/2/problems/"
INVALID_REQUEST = PROBLEMS + "invalid-request"
RESOURCE_NOT_FOUND = PROBLEMS + "resource-not-found"
UNSUPPORTED_AUTHENTICATION = PROBLEMS + "unsupported-authentication"
USAGE_CAPPED = PROBLEMS + "usage-capped"


class XApiError(Exception):
    """An error X answers with a status and a problem body."""

    status: int = 500

    def body(self) -> dict[str, Any]:
        """The JSON body X sends for this error."""
        return generic_problem(self.status)


class Unauthorized(XApiError):
    """401: missing, unknown, revoked or badly signed credentials."""

    status = 401


class Forbidden(XApiError):
    """403 with X's generic body, optionally with a specific `detail`."""

    status = 403

    def __init__(self, detail: str = "Forbidden") -> None:
        super().__init__(detail)
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {**generic_problem(403), "detail": self.detail}


class ClientNotEnrolled(XApiError):
    """403: the app's access level does not include the endpoint (DMs on a tier without them)."""

    status = 403

    def __init__(self, client_id: str) -> None:
        super().__init__("client-not-enrolled")
        self.client_id = client_id

    def body(self) -> dict[str, Any]:
        return {"client_id": self.client_id,
                "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens "
                          "from a Twitter developer App that is attached to a Project. You can create a project via "
                          "the developer portal.",
                "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
                "title": "Client Forbidden", "required_enrollment": "Appropriate Level of API Access",
                "reason": "client-not-enrolled", "type": "https://api.twitter.com/2/problems/client-forbidden"}


class UnsupportedAuthentication(XApiError):
    """403: an app-only Bearer token on a user-context-only endpoint."""

    status = 403

    def body(self) -> dict[str, Any]:
        return {
            "title": "Unsupported Authentication",
            "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
            "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
            "type": UNSUPPORTED_AUTHENTICATION,
            "status": 403,
        }


class TooManyRequests(XApiError):
    """429: the endpoint's 15-minute (or 24-hour) window is used up."""

    status = 429


class UsageCapExceeded(XApiError):
    """429: the project's monthly Post cap is used up (not a rate limit)."""

    status = 429

    def body(self) -> dict[str, Any]:
        return {
            "title": "UsageCapExceeded",
            "detail": "Usage cap exceeded: Monthly product cap",
            "type": USAGE_CAPPED,
            "period": "Monthly",
            "scope": "Product",
        }


class InvalidRequest(XApiError):
    """400: one or more parameters were invalid; X lists every one of them."""

    status = 400

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e["message"]) for e in errors))
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": INVALID_REQUEST,
        }


class ParamErrors:
    """Collects parameter problems so one 400 reports all of them, as X does."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, values: list[str], message: str) -> None:
        self.items.append({"parameters": {name: values}, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidRequest(self.items)


def invalid(name: str, value: str, message: str) -> InvalidRequest:
    """A 400 about a single parameter."""
    return InvalidRequest([{"parameters": {name: [value]}, "message": message}])


def generic_problem(status: int) -> dict[str, Any]:
    """X's `about:blank` problem, titled with the HTTP reason phrase."""
    phrase = HTTPStatus(status).phrase
    return {"title": phrase, "type": "about:blank", "status": status, "detail": phrase}


def not_found_item(resource_type: str, parameter: str, value: str, detail: str | None = None) -> dict[str, Any]:
    """One entry of the `errors` list of a 200 lookup that missed a resource."""
    return {
        "value": value,
        "detail": detail or f"Could not find {resource_type} with {parameter}: [{value}].",
        "title": "Not Found Error",
        "resource_type": resource_type,
        "parameter": parameter,
        "resource_id": value,
        "type": RESOURCE_NOT_FOUND,
    }


def problem_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A problem body, with the `application/problem+json` type X uses for them."""
    response = json_response(body, status, headers)
    response.headers["Content-Type"] = "application/problem+json"
    return response


def error_response(error: XApiError, headers: dict[str, str] | None = None) -> Response:
    """The vendor answer for `error`."""
    return problem_response(error.status, error.body(), headers)


def not_emulated(method: str, path: str) -> Response:
    """X answers unknown routes with 404; ours also names what is missing."""
    body = {
        "title": "Not Found Error",
        "detail": f"the crmhub sandbox does not emulate {method} {path}",
        "type": "about:blank",
        "status": 404,
        "error": "not emulated",
        "method": method,
        "path": path,
    }
    return problem_response(404, body)
