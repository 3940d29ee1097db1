"""Twilio's REST errors, each with the status, code and message Twilio sends.

Every 4xx/5xx of the 2010-04-01 API has the same JSON body
(https://www.twilio.com/docs/usage/troubleshooting/debugging-your-application):

    {"code": 21211, "message": "The 'To' number 555 is not a valid phone number.",
     "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}

The SDK turns that body into `TwilioRestException(status, uri, msg, code)`
for fetch/create calls. Handlers raise `TwilioError`; the emulator turns it
into the response, so no handler builds an error body by hand.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Response

from crmhub.sandbox._server import json_response

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


def error_body(status: int, code: int | None, message: str) -> dict[str, Any]:
    """The body Twilio sends with every error."""
    return {
        "code": code,
        "message": message,
        "more_info": MORE_INFO.format(code=code) if code is not None else None,
        "status": status,
    }


class TwilioError(Exception):
    """A Twilio REST error; `response()` is exactly what Twilio answers."""

    def __init__(self, status: int, code: int | None, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(error_body(self.status, self.code, self.message), self.status, self.headers)


def bad_request(code: int, message: str) -> TwilioError:
    return TwilioError(400, code, message)


# ---- authentication, lookup, throttling -------------------------------------
def authenticate() -> TwilioError:
    """401 for missing or wrong credentials (code 20003, message "Authenticate")."""
    return TwilioError(401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'})


def not_found(path: str) -> TwilioError:
    """404 naming the requested path, as Twilio words it."""
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


def too_many_requests(retry_after: str) -> TwilioError:
    """429 code 20429; Twilio's own 429s are about concurrency, never a daily quota."""
    return TwilioError(429, 20429, "Too Many Requests", {"Retry-After": retry_after})


SERVER_ERRORS = {500: (20500, "Internal Server Error"), 503: (20503, "Service Unavailable")}


def server_error(status: int) -> TwilioError:
    code, message = SERVER_ERRORS.get(status, (20500, "Internal Server Error"))
    return TwilioError(status, code, message)


# ---- Messages: POST validation ----------------------------------------------
def to_required() -> TwilioError:
    return bad_request(21604, "A 'To' phone number is required.")


def from_required() -> TwilioError:
    return bad_request(21603, "A 'From' phone number is required.")


def body_required() -> TwilioError:
    return bad_request(21602, "Message body is required.")


def body_too_long() -> TwilioError:
    return bad_request(21617, "The concatenated message body exceeds the 1600 character limit.")


def invalid_to(to: str) -> TwilioError:
    return bad_request(21211, f"The 'To' number {to} is not a valid phone number.")


def invalid_from(from_: str) -> TwilioError:
    """21606: the From is not even a phone number this account could send from."""
    return bad_request(21606, f"The From phone number {from_} is not a valid, SMS-capable inbound phone number "
                              "or short code for your account.")


def not_our_number(from_: str) -> TwilioError:
    """21659: a well-formed number, but not one of this account's numbers."""
    return bad_request(21659, f"'From' {from_} is not a Twilio phone number or Short Code country mismatch")


def no_whatsapp_channel() -> TwilioError:
    return bad_request(63007, "Twilio could not find a Channel with the specified From address")


def channel_mismatch() -> TwilioError:
    return bad_request(21910, "Invalid From and To pair. From and To should be of the same channel")


def unsubscribed() -> TwilioError:
    """21610: the customer texted STOP to this sender (Advanced Opt-Out) and not START since."""
    return bad_request(21610, "Attempt to send to unsubscribed recipient")


def content_sid_required() -> TwilioError:
    return bad_request(21654, "A ContentSid must be specified if ContentVariables are provided in the request.")


def invalid_content_sid() -> TwilioError:
    """21655: not HX + 32 hex digits, deleted, or another account's template."""
    return bad_request(21655, "The ContentSid is Invalid")


def invalid_content_variables() -> TwilioError:
    """21656: not a JSON object of strings, an empty or null value, or a placeholder left without a value."""
    return bad_request(21656, "The ContentVariables Parameter is invalid")


def invalid_messaging_service(sid: str) -> TwilioError:
    return bad_request(21705, f"The Messaging Service {sid} is invalid.")


# ---- list parameters --------------------------------------------------------
def invalid_parameter(name: str, value: str) -> TwilioError:
    """20001: a query parameter Twilio cannot parse (dates, page sizes, tokens)."""
    return bad_request(20001, f"Invalid {name}: {value}")


# ---- delivery errors written onto failed/undelivered messages ---------------
DELIVERY_ERRORS = {
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    63016: ("Failed to send freeform message because you are outside the allowed window. If you are using "
            "WhatsApp, please use a Message Template."),
}
