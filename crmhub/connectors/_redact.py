"""Vendor error messages, made safe to log, report and store.

CRMs quote the value they refused in their error messages, and with a
`{text}` history template that value is the customer's message:

- Salesforce: `Comments: data value too large: <the text> (max length=32000)`
  (`{"errorCode", "message", "fields"}`, or `statusCode` in collection results);
- Zendesk: `Email: <the address> is already being used by another user`
  (`details: {field: [{"description", "error"}]}`, job results' `details`);
- HubSpot: `Property values were not valid: [{"message": "<the value> was not ...`
  (`errors: [{"message", "code", "context": {"propertyName": [...]}}]`).

So each connector's error translation passes what it read through
`vendor_error`: the error code and the field names are kept, and of the
message only the vendor's wording before the first value it may quote.
"""

from __future__ import annotations

from collections.abc import Sequence

VALUE_REDACTED = "(value redacted)"
MAX_WORDING = 120  # longer text before the first colon is not the vendor's wording: it is dropped


def vendor_error(code: str, message: str, fields: Sequence[str] = (), *, labelled: bool = False) -> str:
    """`CODE on Field, Other: vendor wording (value redacted)`, with no value the vendor quoted.

    Args:
        code: the vendor's error code (its own constant, kept).
        message: the vendor's message, untrusted: cut at the first ": " (where vendors quote values).
        fields: the field names the error names.
        labelled: the message starts with the field's label, "<label>: <wording>: <value>"
            (Salesforce's field errors); the label is skipped so the wording is kept.
    """
    wording = " ".join(message.split())
    if labelled and wording.count(": ") >= 2:
        wording = wording.partition(": ")[2]
    head, colon, _ = wording.partition(": ")
    if len(head) > MAX_WORDING:  # no vendor wording is that long: it may be the value itself
        head, colon = "", ":"
    cut = bool(colon)
    head = head.rstrip(" .;,")
    where = f" on {', '.join(fields)}" if fields else ""
    said = " ".join(part for part in (head, VALUE_REDACTED if cut else "") if part)
    return f"{code}{where}: {said}" if said else f"{code}{where}"
