"""Salesforce's error answers, each with the vendor's status, code and body.

REST errors are a JSON array of ``{"message", "errorCode"[, "fields"]}``; the
same error inside an sObject Collections result is spelled
``{"statusCode", "message", "fields"}``. OAuth errors are
``{"error", "error_description"}`` and SOAP login errors are SOAP faults.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from werkzeug.wrappers import Response

from crmhub.sandbox._server import json_response

INVALID_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
INVALID_TYPE_HINT = (
    "If you are attempting to use a custom object, be sure to append the '__c' after the entity name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
ROLLED_BACK_MESSAGE = "Record rolled back because not all records were valid and the request was using AllOrNone header"
HALTED_MESSAGE = "The transaction was rolled back since another operation in the same transaction failed."
OAUTH_RATE_LIMITED = "rate_limit_exceeded"  # the token endpoint's code for too many logins (400)


@dataclass(frozen=True)
class RecordError:
    """One error about one record or request. `fields` None: Salesforce omits the key."""

    code: str
    message: str
    fields: list[str] | None = None

    def rest(self) -> dict[str, Any]:
        """The shape of a REST error body item."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = self.fields
        return body

    def save_result(self) -> dict[str, Any]:
        """The shape of an error inside a SaveResult/DeleteResult/UpsertResult."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


class SalesforceApiError(Exception):
    """Raised by the backend or a handler; answered as Salesforce would answer it."""

    def __init__(self, status: int, *errors: RecordError) -> None:
        super().__init__(errors[0].message if errors else str(status))
        self.status = status
        self.errors = list(errors)

    def body(self) -> list[dict[str, Any]]:
        return [e.rest() for e in self.errors]

    def response(self) -> Response:
        return json_response(self.body(), self.status)


class MultipleRecords(SalesforceApiError):
    """An external id matching several records: HTTP 300 with the records' URLs as the body."""

    def __init__(self, field: str, urls: list[str]) -> None:
        ids = ", ".join(url.rsplit("/", 1)[-1] for url in urls)
        message = f"{field}: more than one record found for external id field: [{ids}]"
        super().__init__(300, RecordError("DUPLICATE_EXTERNAL_ID", message, [field]))
        self.urls = urls

    def body(self) -> list[Any]:
        return list(self.urls)


def error(status: int, code: str, message: str, fields: list[str] | None = None) -> SalesforceApiError:
    """A one-error SalesforceApiError."""
    return SalesforceApiError(status, RecordError(code, message, fields))


def not_found() -> SalesforceApiError:
    return error(404, "NOT_FOUND", "The requested resource does not exist")


def entity_is_deleted() -> SalesforceApiError:
    return error(404, "ENTITY_IS_DELETED", "entity is deleted", [])


def invalid_session() -> SalesforceApiError:
    return error(401, "INVALID_SESSION_ID", "Session expired or invalid")


def request_limit_exceeded(message: str) -> SalesforceApiError:
    """403 REQUEST_LIMIT_EXCEEDED: Salesforce's answer to both the daily and the concurrency limits."""
    return error(403, "REQUEST_LIMIT_EXCEEDED", message)


def malformed_request(message: str) -> SalesforceApiError:
    return error(400, "JSON_PARSER_ERROR", message)


def no_such_column(field: str, sobject: str) -> SalesforceApiError:
    """The write-side spelling of an unknown field (reads say "on entity 'X'")."""
    return error(400, "INVALID_FIELD", f"No such column '{field}' on sobject of type {sobject}")


def no_such_column_on_entity(field: str, sobject: str) -> SalesforceApiError:
    """The read-side spelling of an unknown field (?fields=, collections retrieve)."""
    return error(400, "INVALID_FIELD", f"No such column '{field}' on entity '{sobject}'. {INVALID_FIELD_HINT}")


def oauth_error(error_code: str, description: str, status: int = 400) -> Response:
    """An OAuth token endpoint error, e.g. invalid_grant / authentication failure."""
    return json_response({"error": error_code, "error_description": description}, status)


def soap_fault(code: str, message: str) -> Response:
    """A SOAP login fault as the partner API sends it (HTTP 500, sf:exceptionCode)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status=500, content_type="text/xml; charset=utf-8")
