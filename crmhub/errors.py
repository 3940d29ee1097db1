"""crmhub's one error tree.

    CrmhubError
    ├── ConfigError                 terminal: fix the settings, never retried
    ├── Interrupted                 the daemon is stopping: a wait was cut, the call not made
    └── ConnectorError              raised only at the connector boundary
        ├── TransientError          wait and retry (the retry layer does)
        │   ├── RateLimited         429 / limit headers; carries retry_after
        │   └── Timeout             timeouts, resets, 5xx: outcome unknown
        └── PermanentError          retrying cannot help
            ├── AuthError           401/403: fix credentials
            ├── NotFound            404: our bug or a deleted record
            │   └── RecordGone      the addressed CRM record was deleted or merged away
            │       └── CaseGone    the case/ticket a write goes onto is gone, or closed for good
            └── Rejected            400/422: the API refused this item

Programming mistakes stay outside the tree. Every error carries a message
for people (what happened, what to do) and never a secret or message body.
"""

from __future__ import annotations

import traceback
from pathlib import PurePath


class CrmhubError(Exception):
    """Base of every error crmhub raises on purpose."""


class ConfigError(CrmhubError):
    """Invalid settings or mappings: terminal, the process refuses to start."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Interrupted(CrmhubError):
    """The daemon is stopping: a pacing or retry wait was cut short and the call was not made.

    Not a failure of the call: whatever it was part of is repeated after the
    restart (outbox leases, cursors and upserts make that safe).
    """


class ConnectorError(CrmhubError):
    """A call to an external API failed; `system` names which one."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None, code: str = "") -> None:
        self.system = system
        self.status = status
        self.code = code
        super().__init__(message)

    @property
    def for_people(self) -> str:
        where = f"{self.system}: " if self.system else ""
        return f"{where}{self}"


class TransientError(ConnectorError):
    """Worth retrying after a wait."""


class RateLimited(TransientError):
    """The API said slow down; `retry_after` seconds is its hint (None: no hint)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]  # keyword pass-through


class Timeout(TransientError):
    """No answer, a reset or a 5xx: the call may or may not have taken effect."""


class PermanentError(ConnectorError):
    """Retrying the same call cannot succeed."""


class AuthError(PermanentError):
    """Credentials are wrong, expired beyond refresh, or lack a permission."""


class NotFound(PermanentError):
    """The addressed record or endpoint does not exist."""


class RecordGone(NotFound):
    """The CRM record a write addressed is gone (deleted, or merged into another by an admin).

    Connectors raise it for their CRM's own ways of saying so; the engine
    re-reads the record's fate and writes again to what is left, instead of
    dead-lettering (`crmhub.sync.deliver`).
    """


class CaseGone(RecordGone):
    """The case (Salesforce Case, Zendesk ticket, HubSpot ticket) a write goes onto is gone, not its contact.

    Deleted, merged away, or closed so that the CRM refuses anything more on
    it (a Zendesk ticket's `closed`, which a ticket merge also leaves). The
    engine forgets the conversation's case and writes again at once, opening
    the conversation's next case (`crmhub.sync.deliver`).
    """


class Rejected(PermanentError):
    """The API refused this item (validation, duplicate, bad field)."""


def reason_of(exc: BaseException) -> str:
    """What an error may say in logs, cycle failures and dead letters.

    crmhub's own errors carry a message made for that (vendor values
    redacted at the connector boundary). Any other exception may quote the
    data it choked on (a KeyError names the key, a ValueError the value), so
    only its type and the place it was raised are told.
    """
    if isinstance(exc, CrmhubError):
        return f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    where = "/".join(PurePath(last.filename).parts[-2:])
    return f"{type(exc).__name__} in {where}:{last.lineno} ({last.name})"
