"""HubSpot's error answers, each with the vendor's status, category and body.

HubSpot's CRM APIs answer errors as
`{"status": "error", "message", "correlationId", "category", "errors"?, "context"?}`
(see "Error handling" in the API reference). Inside a 207 Multi-Status batch
answer the same error appears without `correlationId` (the `StandardError`
model). Rate limits use an older shape with `errorType` and `policyName`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from werkzeug.wrappers import Response

from crmhub.sandbox._server import json_response
from crmhub.sandbox.hubspot.catalog import AUTH_HELP, PORTAL_ID

CORRELATION_HEADER = "X-HubSpot-Correlation-Id"


def correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotError(Exception):
    """A vendor error raised by the backend and answered by the handlers.

    Args:
        status: HTTP status of the whole answer.
        category: HubSpot's `category` (VALIDATION_ERROR, OBJECT_NOT_FOUND, ...).
        message: the human-readable `message`.
        errors: HubSpot's detailed `errors` list, when it sends one.
        context: HubSpot's `context` (dict of lists of strings).
    """

    def __init__(self, status: int, category: str, message: str, *,
                 errors: list[dict[str, Any]] | None = None,
                 context: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context

    def body(self) -> dict[str, Any]:
        """The top-level error body, as a failed call returns it."""
        body: dict[str, Any] = {"status": "error", "message": self.message, "correlationId": correlation_id()}
        if self.errors is not None:
            body["errors"] = self.errors
        if self.context is not None:
            body["context"] = self.context
        body["category"] = self.category
        return body

    def item(self, context: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """The same error as one entry of a 207 answer's `errors` list; `context` names the input."""
        item: dict[str, Any] = {"status": "error", "category": self.category, "message": self.message}
        named = self.context or context  # the error's own context names the input best
        if named:
            item["context"] = named
        return item

    def response(self) -> Response:
        body = self.body()
        return json_response(body, self.status, {CORRELATION_HEADER: body["correlationId"]})


# ---- constructors, one per vendor error ------------------------------------
def not_found(message: str = "resource not found") -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", message)


def invalid_input(message: str) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message)


def conflict(message: str) -> HubSpotError:
    return HubSpotError(409, "CONFLICT", message)


def already_exists(message: str) -> HubSpotError:
    return HubSpotError(409, "OBJECT_ALREADY_EXISTS", message)


def invalid_json(detail: str) -> HubSpotError:
    return invalid_input(f"Invalid input JSON on line 1, column 1: {detail}")


def too_many_inputs(count: int, limit: int) -> HubSpotError:
    return invalid_input(f"Too many inputs: {count}. The maximum number of inputs per batch request is {limit}.")


def non_unique_id_property(type_id: str, prop: str) -> HubSpotError:
    return invalid_input(f"Unable to perform update/upsert by non-unique {type_id} property {prop} "
                         f"in portal ID {PORTAL_ID}")


def missing_objects(label: str, ids: list[str]) -> HubSpotError:
    """The 207 entry HubSpot gives for ids that do not exist (batch read/update)."""
    return HubSpotError(207, "OBJECT_NOT_FOUND",
                        f"Could not get some {label} objects, they may be deleted or not exist. "
                        "Check that ids are valid.", context={"ids": ids})


def invalid_properties(problems: list[tuple[str, str, str]]) -> HubSpotError:
    """400 VALIDATION_ERROR for bad property values: (name, code, message) each.

    HubSpot nests the list as escaped JSON inside `message` and repeats it in
    `errors` with a `propertyName` context.
    """
    inner = [{"isValid": False, "message": msg, "error": code, "name": name,
              "localizedErrorMessage": msg, "portalId": PORTAL_ID} for name, code, msg in problems]
    errors = [{"message": msg, "code": code, "context": {"propertyName": [name]}} for name, code, msg in problems]
    message = "Property values were not valid: " + json.dumps(inner, separators=(",", ":"))
    return HubSpotError(400, "VALIDATION_ERROR", message, errors=errors)


def unauthorized() -> HubSpotError:
    return HubSpotError(401, "INVALID_AUTHENTICATION", AUTH_HELP)


def missing_scopes(scopes: list[str]) -> HubSpotError:
    """A private app token without any of `scopes` (what the endpoint needs)."""
    return HubSpotError(403, "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call. "
                                               "Read more about required scopes here: https://developers.hubspot.com/scopes.",
                        errors=[{"message": "One or more of the following scopes are required.",
                                 "context": {"requiredGranularScopes": scopes}}])


def expired(seconds_ago: int) -> HubSpotError:
    return HubSpotError(401, "EXPIRED_AUTHENTICATION",
                        f"The OAuth token used to make this call expired {seconds_ago} second(s) ago.")


def injected_rejection(index: int) -> HubSpotError:
    """The error a `partial_failure` fault puts on a batch input."""
    return HubSpotError(207, "VALIDATION_ERROR",
                        f"Input {index} was rejected (sandbox partial_failure fault).")


# ---- rate limits (an older body shape: errorType + policyName) ---------------
_POLICY_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}
_POLICY_GROUPS = {
    "TEN_SECONDLY_ROLLING": f"publicapi:private_app-api-calls-ten-secondly:1:{PORTAL_ID}",
    "SECONDLY": f"publicapi:private_app-search-api-calls-secondly:1:{PORTAL_ID}",
    "DAILY": f"publicapi:private_app-api-calls-daily:1:{PORTAL_ID}",
}


def rate_limited(policy: str, headers: dict[str, str]) -> Response:
    """429 for one of HubSpot's limit policies (TEN_SECONDLY_ROLLING, SECONDLY, DAILY)."""
    cid = correlation_id()
    body = {"status": "error", "message": _POLICY_MESSAGES[policy], "errorType": "RATE_LIMIT",
            "correlationId": cid, "policyName": policy, "groupName": _POLICY_GROUPS[policy],
            "requestId": cid}
    return json_response(body, 429, {**headers, CORRELATION_HEADER: cid})


def server_error(status: int) -> Response:
    """5xx as HubSpot's API gateway answers it."""
    err = HubSpotError(status, "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE",
                       "internal error" if status == 500 else "Service temporarily unavailable, try again.")
    return err.response()


def not_emulated(method: str, path: str) -> Response:
    """501 naming method and path: the sandbox never answers an unknown call with 200 or a bare 404."""
    cid = correlation_id()
    body = {"status": "error", "category": "NOT_EMULATED", "correlationId": cid, "method": method, "path": path,
            "message": f"the crmhub HubSpot sandbox does not emulate {method} {path}"}
    return json_response(body, 501, {CORRELATION_HEADER: cid})
