"""zenpy objects that are the fields crmhub sends, for zenpy's bulk writes.

zenpy's `tickets.create`/`update` and `users.create`/`update` take only its
own objects (they check the type), and serialise each one through its
`to_dict(serialize=True)`. Building a `Ticket(**fields)` records every one of
its fifty attributes as changed and then serialises the object to JSON once
just to forget the ones left None; a comment is a second such object.
Together with the serialisation that follows, that was about a tenth of a
warm cycle's CPU (issue 13). `ticket()` and `user()` are zenpy's `Ticket`
and `User` carrying their fields as given: zenpy sends them through the same
endpoints, serialiser, response handling and job statuses, and the body is
what the full object would have sent (top-level and comment values of None
left out, as zenpy leaves out attributes never set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zenpy.lib.api_objects import Ticket, User

__all__ = ["ticket", "user"]


class _AsSent:
    """A zenpy object whose body is `fields` (zenpy's serialiser calls `to_dict`); nothing to track or clean."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.__dict__["_fields"] = fields
        self.__dict__["id"] = fields.get("id")  # zenpy reads it to address a single update

    def to_dict(self, serialize: bool = False) -> Any:
        return self.__dict__["_fields"]

    def _clean_dirty(self, obj: Any = None) -> None:
        """zenpy calls this once the write succeeded; these objects track no changes."""


class _Ticket(_AsSent, Ticket):  # type: ignore[misc]  # zenpy is untyped
    pass


class _User(_AsSent, User):  # type: ignore[misc]  # zenpy is untyped
    pass


def ticket(fields: Mapping[str, Any]) -> Ticket:
    """A `Ticket` for zenpy's ticket writes whose body is `fields` (with a `comment` mapping, if any)."""
    body = _set(fields)
    if isinstance(body.get("comment"), Mapping):
        body["comment"] = _set(body["comment"])
    return _Ticket(body)


def user(fields: Mapping[str, Any]) -> User:
    """A `User` for zenpy's user writes whose body is `fields`."""
    return _User(_set(fields))


def _set(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
