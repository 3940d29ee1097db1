"""User fields and ticket fields: the account's schema (`GET /api/v2/user_fields.json`, `ticket_fields.json`).

Shapes as in Zendesk's reference ("User Fields", "Ticket Fields"): a user
field has a `key` (what `user_fields.<key>` names on a user), a ticket field
an `id` (what `custom_fields: [{id, value}]` names on a ticket). A fresh
account has the system ticket fields and the demo's custom user field
`x_handle` (text); `POST /_sandbox/user_fields` and `ticket_fields` add
more, and `{"key": ..., "remove": true}` / `{"id": ..., "remove": true}`
take one away, to break an org in tests. Values written to users and tickets
are not checked against these definitions (Zendesk drops unknown keys).
"""

from __future__ import annotations

from typing import Any

from crmhub.sandbox.zendesk.records import Record, api_url, iso

FIELD_ID_BASE = 360_000_001
USER_FIELD_TYPES = frozenset({"text", "textarea", "checkbox", "date", "integer", "decimal", "regexp", "dropdown",
                              "lookup", "multiselect"})
TICKET_FIELD_TYPES = USER_FIELD_TYPES | {"tagger", "partialcreditcard"}
# (type, title) of the system ticket fields a fresh account lists first.
SYSTEM_TICKET_FIELDS = (("subject", "Subject"), ("description", "Description"), ("status", "Status"),
                        ("tickettype", "Type"), ("priority", "Priority"), ("group", "Group"),
                        ("assignee", "Assignee"))
DEMO_USER_FIELDS = (("x_handle", "text", "X handle"),)


def initial_fields(state: dict[str, Any], now: float) -> None:
    """Put the system ticket fields and the demo's user fields into a fresh account's `state`."""
    state["next_id"].setdefault("field", FIELD_ID_BASE)
    state.setdefault("user_fields", {})
    state.setdefault("ticket_fields", {})
    for kind, title in SYSTEM_TICKET_FIELDS:
        add_ticket_field(state, title, kind, now, system=True)
    for key, kind, title in DEMO_USER_FIELDS:
        add_user_field(state, key, kind, title, now)


def _next_id(state: dict[str, Any]) -> int:
    counters: dict[str, int] = state["next_id"]
    value = counters.setdefault("field", FIELD_ID_BASE)
    counters["field"] = value + 1
    return value


def add_user_field(state: dict[str, Any], key: str, kind: str, title: str, now: float) -> Record:
    """A custom user field (`user_fields.<key>` on users); ValueError for a taken key or unknown type."""
    if kind not in USER_FIELD_TYPES:
        raise ValueError(f"user field type {kind!r} is not one of {', '.join(sorted(USER_FIELD_TYPES))}")
    if any(f["key"] == key for f in state["user_fields"].values()):
        raise ValueError(f"a user field with key {key!r} exists already")
    field_id = _next_id(state)
    field = {"url": api_url(f"user_fields/{field_id}.json"), "id": field_id, "type": kind, "key": key,
             "title": title, "raw_title": title, "description": "", "raw_description": "",
             "position": len(state["user_fields"]), "active": True, "system": False,
             "regexp_for_validation": None, "created_at": iso(now), "updated_at": iso(now)}
    state["user_fields"][str(field_id)] = field
    return field


def add_ticket_field(state: dict[str, Any], title: str, kind: str, now: float, *, system: bool = False) -> Record:
    """A ticket field (custom unless `system`); its id is what `custom_fields` and history.yaml name."""
    if not system and kind not in TICKET_FIELD_TYPES:
        raise ValueError(f"ticket field type {kind!r} is not one of {', '.join(sorted(TICKET_FIELD_TYPES))}")
    field_id = _next_id(state)
    field = {"url": api_url(f"ticket_fields/{field_id}.json"), "id": field_id, "type": kind, "title": title,
             "raw_title": title, "description": "", "raw_description": "", "position": len(state["ticket_fields"]),
             "active": True, "required": False, "collapsed_for_agents": False, "regexp_for_validation": None,
             "title_in_portal": title, "raw_title_in_portal": title, "visible_in_portal": system,
             "editable_in_portal": system, "required_in_portal": False, "tag": None, "removable": not system,
             "key": None, "agent_description": None, "created_at": iso(now), "updated_at": iso(now)}
    state["ticket_fields"][str(field_id)] = field
    return field


def remove_field(state: dict[str, Any], table: str, *, key: str | None = None, field_id: int | None = None) -> None:
    """Delete a user field by key or a ticket field by id (ValueError when there is none)."""
    for stored_id, field in list(state[table].items()):
        if (key is not None and field.get("key") == key) or (field_id is not None and int(field["id"]) == field_id):
            del state[table][stored_id]
            return
    raise ValueError(f"no {table[:-1].replace('_', ' ')} {key or field_id}")


def control(state: dict[str, Any], table: str, body: dict[str, Any], now: float) -> dict[str, Any]:
    """`POST /_sandbox/user_fields` or `ticket_fields`: add one, or remove one with `"remove": true`."""
    if body.get("remove"):
        remove_field(state, table, key=body.get("key"), field_id=int(body["id"]) if "id" in body else None)
        return {"removed": True}
    if table == "user_fields":
        return {"id": add_user_field(state, str(body["key"]), str(body.get("type", "text")),
                                     str(body.get("title") or body["key"]), now)["id"]}
    return {"id": add_ticket_field(state, str(body["title"]), str(body.get("type", "text")), now)["id"]}
