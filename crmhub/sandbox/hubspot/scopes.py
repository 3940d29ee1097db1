"""Private app scopes: which scope each emulated endpoint needs, for tokens given a scope list.

From HubSpot's scope reference: contacts and companies records need
`crm.objects.<type>.read`/`.write` and their properties
`crm.schemas.<type>.read`/`.write`; tickets (records, properties and
pipelines) need `tickets`; owners `crm.objects.owners.read`. Engagements
(communications, calls, notes, emails) are taken as needing the contacts
scopes, which is what private apps are granted for them; the emails guide
also lists `sales-email-read`, which reads emails too. A search or batch
read is a read. The default token has every scope (`scopes: null`); `POST
/_sandbox/tokens` makes one with a list, so a test can take a scope away.
"""

from __future__ import annotations

from crmhub.sandbox.hubspot.catalog import ALIASES

_OWN_SCOPES = ("contacts", "companies")
_READS = ("/search", "/batch/read")


def required(method: str, path: str) -> list[str]:
    """Scopes of which the token needs one for `method path` (empty: none)."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "crm":
        return []
    access = "read" if method == "GET" or path.endswith(_READS) else "write"
    resource = parts[2]
    if resource == "owners":
        return ["crm.objects.owners.read"]
    kind = ALIASES.get(parts[3]) if len(parts) > 3 else None
    if kind is None:
        return []
    if kind == "tickets":
        return ["tickets"]
    family = kind if kind in _OWN_SCOPES else "contacts"
    if resource == "properties":
        return [f"crm.schemas.{family}.{access}"]
    if resource in ("objects", "associations", "pipelines"):
        return [f"crm.objects.{family}.{access}", *(["sales-email-read"] if kind == "emails" and access == "read"
                                                    else [])]
    return []
