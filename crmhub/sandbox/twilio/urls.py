"""The route table: method and path of every emulated endpoint -> handler.

Paths are exactly the SDK's (`twilio/rest/api/v2010/account/...`); anything
else gets the emulator's "not emulated" answer. `GET /_sandbox/routes`
lists this table on a running sandbox.
"""

from __future__ import annotations

from crmhub.sandbox.twilio import responses as r

ACCOUNT = "/2010-04-01/Accounts/<account_sid>"

URLS: tuple[tuple[tuple[str, ...], str, r.Handler], ...] = (
    (("GET",), f"{ACCOUNT}.json", r.fetch_account),
    (("GET",), f"{ACCOUNT}/IncomingPhoneNumbers.json", r.list_numbers),
    (("GET",), f"{ACCOUNT}/IncomingPhoneNumbers/<sid>.json", r.fetch_number),
    (("POST",), f"{ACCOUNT}/Messages.json", r.create_message),
    (("GET",), f"{ACCOUNT}/Messages.json", r.list_messages),
    (("GET",), f"{ACCOUNT}/Messages/<sid>.json", r.fetch_message),
    (("GET",), f"{ACCOUNT}/Messages/<message_sid>/Media.json", r.list_media),
    (("GET",), f"{ACCOUNT}/Messages/<message_sid>/Media/<sid>.json", r.fetch_media),
    (("GET",), f"{ACCOUNT}/Calls.json", r.list_calls),
    (("GET",), f"{ACCOUNT}/Calls/<sid>.json", r.fetch_call),
    (("GET",), f"{ACCOUNT}/Calls/<call_sid>/Recordings.json", r.list_call_recordings),
    (("GET",), f"{ACCOUNT}/Calls/<call_sid>/Recordings/<sid>.json", r.fetch_call_recording),
    (("GET",), f"{ACCOUNT}/Recordings.json", r.list_recordings),
    (("GET",), f"{ACCOUNT}/Recordings/<sid>.json", r.fetch_recording),
)
