"""The Zendesk backend: the account's records and the domain operations on them.

No HTTP here (as in moto's `models.py`): handlers parse requests, call these
methods and serialise what they return. State lives in the emulator's
`state` dict, reached through `state_of()`, so a reset or a reload from disk
is seen at once. Keys of record maps are strings, so the state survives a
round trip through JSON.

Errors are raised as `ZendeskError` with the body Zendesk sends, so a batch
job can record the same error per item that a single call would answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crmhub.sandbox._server import SandboxClock
from crmhub.sandbox.zendesk import errors
from crmhub.sandbox.zendesk.records import (
    DEFAULT_AGENT_EMAIL, DEFAULT_AGENT_NAME, DEFAULT_API_TOKEN, DEFAULT_GROUP_NAME, IDENTITY_TYPES,
    PRIORITIES, ROLES, STATUSES, TICKET_CREATE_EVENTS, TICKET_DEFAULTS, TICKET_TRACKED, TICKET_TYPES,
    UNIQUE_IDENTITY_TYPES, USER_DEFAULTS, USER_WRITABLE, Record, api_url, comment_bodies, default_via,
    digits, iso, normalise_tags,
)

# First id of each kind: distinct ranges, so an id never names two kinds of record.
ID_BASES = {"ticket": 1, "user": 1001, "group": 5001, "identity": 7001, "event": 900001, "job": 1}


def empty_account(now: float) -> dict[str, Any]:
    """A fresh account: one admin with the default API token, and the default group."""
    state: dict[str, Any] = {
        "next_id": dict(ID_BASES),
        "users": {}, "identities": {}, "groups": {}, "tickets": {}, "audits": {}, "jobs": {},
        "api_tokens": {DEFAULT_API_TOKEN: {"active": True}},
        "oauth_tokens": {},
    }
    backend = ZendeskBackend(lambda: state, FixedClock(now))
    backend.create_user({"name": DEFAULT_AGENT_NAME, "email": DEFAULT_AGENT_EMAIL, "role": "admin",
                         "verified": True})
    backend.create_group(DEFAULT_GROUP_NAME, default=True)
    return state


class FixedClock(SandboxClock):
    """A clock stopped at one instant: stamps the initial records and back-dated seed records."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self._at = at

    def time(self) -> float:
        return self._at


class ZendeskBackend:
    """Users, identities, groups, tickets and their audits (comments are audit events)."""

    def __init__(self, state_of: Callable[[], dict[str, Any]], clock: SandboxClock) -> None:
        self._state_of = state_of
        self.clock = clock

    @property
    def state(self) -> dict[str, Any]:
        return self._state_of()

    def now(self) -> str:
        return iso(self.clock.time())

    def next_id(self, kind: str) -> int:
        counters: dict[str, int] = self.state["next_id"]
        value = counters[kind]
        counters[kind] = value + 1
        return value

    def _get(self, table: str, record_id: object) -> Record:
        record: Record | None = self.state[table].get(str(record_id))
        if record is None:
            raise errors.not_found()
        return record

    def _all(self, table: str) -> list[Record]:
        return sorted(self.state[table].values(), key=lambda record: int(record["id"]))

    def schema_fields(self, table: str) -> list[Record]:
        """The account's `user_fields` or `ticket_fields` (crmhub.sandbox.zendesk.fields), by id."""
        return self._all(table)

    # ---- users ---------------------------------------------------------------
    def user(self, user_id: object) -> Record:
        return self._get("users", user_id)

    def users(self) -> list[Record]:
        return self._all("users")

    def users_by_ids(self, ids: list[str]) -> list[Record]:
        """The users among `ids` that exist (show_many skips the others)."""
        return [self.state["users"][i] for i in ids if i in self.state["users"]]

    def user_by_email(self, email: str) -> Record | None:
        return self._user_by_identity("email", email.strip().lower())

    def user_by_external_id(self, external_id: object) -> Record | None:
        wanted = str(external_id)
        return next((u for u in self.users() if u["external_id"] is not None and str(u["external_id"]) == wanted),
                    None)

    def users_by_phone(self, phone: object) -> list[Record]:
        """Users whose phone, or any phone identity, has the same digits."""
        wanted = digits(phone)
        owners = {i["user_id"] for i in self._all("identities")
                  if i["type"] == "phone_number" and digits(i["value"]) == wanted}
        return [u for u in self.users() if u["id"] in owners or (wanted and digits(u["phone"]) == wanted)]

    def create_user(self, fields: Mapping[str, Any]) -> Record:
        """Create a user (and its primary email and phone identities)."""
        values = _writable(fields)
        if not str(values.get("name") or "").strip():
            raise errors.blank("name", "Name")
        values.setdefault("role", "end-user")
        self._check_user(values, owner=None)
        now = self.now()
        user_id = self.next_id("user")
        user: Record = {"id": user_id, "url": api_url(f"users/{user_id}.json"), **_copy(USER_DEFAULTS),
                        "created_at": now, "updated_at": now}
        self.state["users"][str(user_id)] = user
        self._apply_user(user, values)
        return user

    def update_user(self, user_id: object, fields: Mapping[str, Any]) -> Record:
        user = self.user(user_id)
        values = _writable(fields)
        if "name" in values and not str(values["name"] or "").strip():
            raise errors.blank("name", "Name")
        self._check_user(values, owner=user["id"])
        self._apply_user(user, values)
        user["updated_at"] = self.now()
        return user

    def create_or_update_user(self, fields: Mapping[str, Any]) -> tuple[Record, bool]:
        """Update the user matching `external_id` or `email`, else create one. Returns (user, created)."""
        match = None
        if fields.get("external_id") is not None:
            match = self.user_by_external_id(fields["external_id"])
        if match is None and fields.get("email"):
            match = self.user_by_email(str(fields["email"]))
        if match is None:
            return self.create_user(fields), True
        return self.update_user(match["id"], fields), False

    def delete_user(self, user_id: object) -> Record:
        """`DELETE /api/v2/users/{id}`: the user stays, inactive (`active: false`), until permanently deleted.

        Their tickets keep them as requester; the incremental export shows the
        change (`updated_at`).
        """
        user = self.user(user_id)
        if not user.get("active", True):
            raise errors.not_found()
        user.update(active=False, updated_at=self.now())
        return user

    def merge_user(self, source_id: object, target_id: object) -> Record:
        """`PUT /api/v2/users/{id}/merge` `{"user": {"id": target}}`: the source end user into the target.

        Only end users merge. The source's identities (emails, phone numbers)
        and requested tickets move to the target, and the source is deleted
        (inactive). Zendesk records nowhere which user absorbed it: the export
        shows the source inactive and the target changed.
        """
        source, target = self.user(source_id), self.user(target_id)
        if source["id"] == target["id"]:
            raise errors.record_invalid("user", "User: cannot be merged into itself")
        for user in (source, target):
            if user.get("role", "end-user") != "end-user" or not user.get("active", True):
                raise errors.record_invalid("user", f"User: {user['id']} cannot be merged (only active end users)")
        now = self.now()
        kinds = {i["type"] for i in self.identities(target["id"]) if i["primary"]}
        for identity in self.identities(source["id"]):
            identity.update(user_id=target["id"], primary=identity["primary"] and identity["type"] not in kinds,
                            updated_at=now)
            if identity["primary"] and identity["type"] in ("email", "phone_number"):
                target["email" if identity["type"] == "email" else "phone"] = identity["value"]
        for ticket in self.tickets():
            if ticket["requester_id"] == source["id"]:
                ticket.update(requester_id=target["id"], updated_at=now)
        source.update(active=False, email=None, phone=None, updated_at=now)
        target["updated_at"] = now
        return target

    def _check_user(self, values: Mapping[str, Any], owner: int | None) -> None:
        """Validate role and uniqueness before anything is written."""
        if "role" in values and values["role"] not in ROLES:
            raise errors.record_invalid("role", f"Role: {values['role']} is not valid")
        if values.get("email"):
            self._check_identity_free("email", str(values["email"]).strip().lower(), owner, "email", "Email")
        if values.get("phone") and not values.get("shared_phone_number"):
            self._check_identity_free("phone_number", str(values["phone"]), owner, "phone", "Phone")
        if values.get("external_id") is not None:
            other = self.user_by_external_id(values["external_id"])
            if other is not None and other["id"] != owner:
                raise errors.duplicate("external_id", "External ID", values["external_id"])

    def _apply_user(self, user: Record, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            user[key] = normalise_tags(value or []) if key == "tags" else value
        if values.get("email"):
            user["email"] = str(values["email"]).strip().lower()
            self._set_primary_identity(user, "email", user["email"])
        if values.get("phone") and not user.get("shared_phone_number"):
            self._set_primary_identity(user, "phone_number", str(values["phone"]))

    # ---- identities ----------------------------------------------------------
    def identities(self, user_id: object) -> list[Record]:
        self.user(user_id)
        return [i for i in self._all("identities") if i["user_id"] == int(str(user_id))]

    def add_identity(self, user_id: object, fields: Mapping[str, Any]) -> Record:
        """Add an identity; the first of its type becomes primary (and the user's email/phone)."""
        user = self.user(user_id)
        kind, value = fields.get("type"), fields.get("value")
        if kind not in IDENTITY_TYPES:
            raise errors.record_invalid("type", f"Type: {kind} is not valid")
        if not str(value or "").strip():
            raise errors.blank("value", "Value")
        value = str(value).strip().lower() if kind == "email" else str(value).strip()
        self._check_identity_free(str(kind), value, None, "value", "Value")
        primary = not any(i["type"] == kind for i in self.identities(user["id"]))
        identity = self._new_identity(user["id"], str(kind), value, primary, bool(fields.get("verified", False)))
        if primary and kind in ("email", "phone_number"):
            user["email" if kind == "email" else "phone"] = value
            user["updated_at"] = self.now()
        return identity

    def _new_identity(self, user_id: int, kind: str, value: str, primary: bool, verified: bool) -> Record:
        now = self.now()
        identity_id = self.next_id("identity")
        identity: Record = {
            "url": api_url(f"users/{user_id}/identities/{identity_id}.json"), "id": identity_id,
            "user_id": user_id, "type": kind, "value": value, "verified": verified, "primary": primary,
            "created_at": now, "updated_at": now, "undeliverable_count": 0, "deliverable_state": "deliverable",
        }
        self.state["identities"][str(identity_id)] = identity
        return identity

    def _set_primary_identity(self, user: Record, kind: str, value: str) -> None:
        primary = next((i for i in self.identities(user["id"]) if i["type"] == kind and i["primary"]), None)
        if primary is None:
            self._new_identity(user["id"], kind, value, True, bool(user.get("verified")))
        elif primary["value"] != value:
            primary.update(value=value, updated_at=self.now())

    def _user_by_identity(self, kind: str, value: str) -> Record | None:
        for identity in self._all("identities"):
            if identity["type"] == kind and identity["value"] == value:
                return self.user(identity["user_id"])
        return None

    def _check_identity_free(self, kind: str, value: str, owner: int | None, field: str, label: str) -> None:
        if kind not in UNIQUE_IDENTITY_TYPES:
            return
        holder = self._user_by_identity(kind, value)
        if holder is not None and holder["id"] != owner:
            raise errors.duplicate(field, label, value)

    # ---- groups --------------------------------------------------------------
    def group(self, group_id: object) -> Record:
        return self._get("groups", group_id)

    def groups(self) -> list[Record]:
        return self._all("groups")

    def create_group(self, name: str, **fields: Any) -> Record:
        now = self.now()
        group_id = self.next_id("group")
        group: Record = {"url": api_url(f"groups/{group_id}.json"), "id": group_id, "is_public": True,
                         "name": name, "description": "", "default": False, "deleted": False,
                         "created_at": now, "updated_at": now, **fields}
        self.state["groups"][str(group_id)] = group
        return group

    # ---- tickets -------------------------------------------------------------
    def ticket(self, ticket_id: object) -> Record:
        return self._get("tickets", ticket_id)

    def tickets(self) -> list[Record]:
        return self._all("tickets")

    def tickets_by_ids(self, ids: list[str]) -> list[Record]:
        """The tickets among `ids` that exist (show_many skips the others)."""
        return [self.state["tickets"][i] for i in ids if i in self.state["tickets"]]

    def audits(self, ticket_id: object) -> list[Record]:
        self.ticket(ticket_id)
        audits: list[Record] = self.state["audits"].get(str(ticket_id), [])
        return audits

    def all_audits(self) -> list[Record]:
        return [audit for audits in self.state["audits"].values() for audit in audits]

    def comments(self, ticket_id: object) -> list[Record]:
        """The ticket's comments, oldest first, as the comments endpoint shows them."""
        return [_comment_view(audit, event) for audit in self.audits(ticket_id)
                for event in audit["events"] if event["type"] == "Comment"]

    def create_ticket(self, fields: Mapping[str, Any], actor_id: int) -> tuple[Record, Record]:
        """Create a ticket with its first comment. Returns (ticket, audit)."""
        spec = _first_comment(fields)
        if not isinstance(spec, Mapping) or not (spec.get("body") or spec.get("html_body")):
            raise errors.record_invalid("base", "Description: cannot be blank", "BlankValue")
        values = self._ticket_values(fields)
        values["requester_id"] = self._requester(fields, actor_id)
        values.setdefault("submitter_id", actor_id)
        values.setdefault("status", "open" if values.get("assignee_id") else "new")
        now = self.now()
        ticket_id = self.next_id("ticket")
        ticket: Record = {"url": api_url(f"tickets/{ticket_id}.json"), "id": ticket_id,
                          "via": _via(fields.get("via")), "created_at": now, "updated_at": now,
                          "generated_timestamp": int(self.clock.time()), **_copy(TICKET_DEFAULTS), **values}
        body = comment_bodies(spec)[0]
        ticket.update(raw_subject=ticket["subject"], description=body, fields=ticket["custom_fields"],
                      is_public=bool(spec.get("public", True)))
        events = [self._event("Create", field_name=name, value=ticket[name])
                  for name in (*TICKET_CREATE_EVENTS, "tags") if ticket[name] not in (None, [])]
        events.append(self._comment_event(spec, spec.get("author_id") or values["submitter_id"]))
        self.state["tickets"][str(ticket_id)] = ticket
        return ticket, self._record_audit(ticket, events, actor_id, fields.get("metadata"))

    def update_ticket(self, ticket_id: object, fields: Mapping[str, Any], actor_id: int) -> tuple[Record, Record]:
        """Change fields and/or add a comment. Returns (ticket, audit)."""
        ticket = self.ticket(ticket_id)
        if ticket["status"] == "closed":
            raise errors.record_invalid("status", "Status: closed prevents ticket update", "InvalidValue")
        values = self._ticket_values(fields)
        if "requester_id" in fields:
            values["requester_id"] = self._requester(fields, actor_id)
        events = self._field_changes(ticket, values)
        events += self._tag_changes(ticket, fields)
        spec = fields.get("comment")
        if isinstance(spec, Mapping) and (spec.get("body") or spec.get("html_body")):
            events.append(self._comment_event(spec, spec.get("author_id") or actor_id))
        if "custom_fields" in values:
            ticket["custom_fields"] = ticket["fields"] = _merge_custom_fields(ticket["custom_fields"],
                                                                              values["custom_fields"])
        if events:
            ticket["updated_at"] = self.now()
        ticket["generated_timestamp"] = int(self.clock.time())
        return ticket, self._record_audit(ticket, events, actor_id, fields.get("metadata"))

    def _ticket_values(self, fields: Mapping[str, Any]) -> Record:
        """The settable ticket fields of a request body, validated."""
        values = {k: fields[k] for k in (*TICKET_TRACKED, "custom_fields", "tags") if k in fields}
        _check_choice(values, "status", STATUSES, "Status")
        _check_choice(values, "priority", PRIORITIES, "Priority")
        _check_choice(values, "type", TICKET_TYPES, "Type")
        if values.get("group_id") is not None:
            self._must_exist("groups", values["group_id"], "group", "Group")
        if values.get("assignee_id") is not None:
            assignee = self._must_exist("users", values["assignee_id"], "assignee", "Assignee")
            if assignee["role"] == "end-user":
                raise errors.record_invalid("assignee", "Assignee: is not an agent")
        if "tags" in values:
            values["tags"] = normalise_tags(values["tags"] or [])
        if "submitter_id" in fields:
            values["submitter_id"] = self._must_exist("users", fields["submitter_id"], "submitter", "Submitter")["id"]
        return values

    def _must_exist(self, table: str, record_id: object, field: str, label: str) -> Record:
        try:
            return self._get(table, record_id)
        except errors.ZendeskError:
            raise errors.record_invalid(field, f"{label}: {record_id} is invalid") from None

    def _requester(self, fields: Mapping[str, Any], actor_id: int) -> int:
        """The requester's id: given, found by email, created from `requester`, or the caller."""
        if fields.get("requester_id") is not None:
            requester = self._must_exist("users", fields["requester_id"], "requester", "Requester")
            if not requester.get("active", True):  # deleted (or merged away): no new tickets for them
                raise errors.record_invalid("requester", f"Requester: {fields['requester_id']} is invalid")
            return int(requester["id"])
        spec = fields.get("requester")
        if not isinstance(spec, Mapping):
            return actor_id
        email = str(spec.get("email") or "").strip().lower()
        existing = self.user_by_email(email) if email else None
        if existing is not None:
            return int(existing["id"])
        name = spec.get("name") or (email.split("@")[0] if email else "")
        new_user = {"name": name, "email": email or None, "locale_id": spec.get("locale_id")}
        return int(self.create_user({k: v for k, v in new_user.items() if v is not None})["id"])

    def _field_changes(self, ticket: Record, values: Mapping[str, Any]) -> list[Record]:
        events = []
        for name in TICKET_TRACKED:
            if name in values and values[name] != ticket[name]:
                events.append(self._event("Change", field_name=name, value=values[name],
                                          previous_value=ticket[name]))
                ticket[name] = values[name]
        if "subject" in values:
            ticket["raw_subject"] = ticket["subject"]
        return events

    def _tag_changes(self, ticket: Record, fields: Mapping[str, Any]) -> list[Record]:
        """`tags` replaces the list; `additional_tags` / `remove_tags` edit it."""
        tags = normalise_tags(fields["tags"] or []) if "tags" in fields else list(ticket["tags"])
        tags += [t for t in normalise_tags(fields.get("additional_tags") or []) if t not in tags]
        removed = normalise_tags(fields.get("remove_tags") or [])
        tags = [t for t in tags if t not in removed]
        if tags == ticket["tags"]:
            return []
        event = self._event("Change", field_name="tags", value=tags, previous_value=ticket["tags"])
        ticket["tags"] = tags
        return [event]

    def _event(self, kind: str, **fields: Any) -> Record:
        return {"id": self.next_id("event"), "type": kind, **fields}

    def _comment_event(self, spec: Mapping[str, Any], author_id: object) -> Record:
        body, html_body, plain_body = comment_bodies(spec)
        return self._event("Comment", author_id=int(str(author_id)), body=body, html_body=html_body,
                           plain_body=plain_body, public=bool(spec.get("public", True)), attachments=[])

    def _record_audit(self, ticket: Record, events: list[Record], actor_id: int,
                      custom: object = None) -> Record:
        """Store the audit of one change (only if something changed) and return it."""
        audit: Record = {
            "id": self.next_id("event"), "ticket_id": ticket["id"], "created_at": self.now(),
            "author_id": actor_id, "via": ticket["via"] if not self.state["audits"].get(str(ticket["id"]))
            else default_via(),
            "metadata": {"system": {"client": "crmhub-sandbox", "ip_address": "127.0.0.1", "location": None,
                                    "latitude": None, "longitude": None},
                         "custom": dict(custom) if isinstance(custom, Mapping) else {}},
            "events": events,
        }
        for event in events:
            if event["type"] == "Comment":
                event["audit_id"] = audit["id"]
        if events:
            self.state["audits"].setdefault(str(ticket["id"]), []).append(audit)
        return audit


def _writable(fields: Mapping[str, Any]) -> Record:
    return {key: value for key, value in fields.items() if key in USER_WRITABLE}


def _first_comment(fields: Mapping[str, Any]) -> Any:
    """The new ticket's first comment: `comment`, else a `description` as its body.

    Zendesk takes `description` as the first (public) comment when a ticket is
    created without `comment`; with both, `comment` wins (docs/sandbox/zendesk.md).
    """
    spec = fields.get("comment")
    if spec is None and isinstance(fields.get("description"), str) and fields["description"].strip():
        return {"body": fields["description"]}
    return spec


def _copy(defaults: Record) -> Record:
    """Defaults with fresh lists and dicts, never shared between records."""
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k, v in defaults.items()}


def _check_choice(values: Mapping[str, Any], field: str, allowed: tuple[str, ...], label: str) -> None:
    if field in values and values[field] is not None and values[field] not in allowed:
        raise errors.record_invalid(field, f"{label}: {values[field]} is not valid")


def _via(given: object) -> Record:
    """The ticket's `via`; a caller may name the channel (e.g. `{"channel": "sms"}`)."""
    via = default_via()
    if isinstance(given, Mapping) and given.get("channel"):
        via["channel"] = str(given["channel"])
        if isinstance(given.get("source"), Mapping):
            via["source"] = {**via["source"], **given["source"]}
    return via


def _merge_custom_fields(current: list[Record], changes: object) -> list[Record]:
    merged = {int(f["id"]): dict(f) for f in current}
    for change in changes if isinstance(changes, list) else []:
        if isinstance(change, Mapping) and "id" in change:
            merged[int(change["id"])] = {"id": int(change["id"]), "value": change.get("value")}
    return [merged[key] for key in sorted(merged)]


def _comment_view(audit: Record, event: Record) -> Record:
    """A Comment event as the comments endpoint shows it (with its audit's time and via)."""
    view = {key: value for key, value in event.items()}
    view.update(via=audit["via"], created_at=audit["created_at"], metadata=audit["metadata"])
    return view
