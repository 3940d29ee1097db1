"""Zendesk preflight: the API user, groups, user fields and ticket fields (zenpy).

Reads `users/me` (the token's user must be an admin: the incremental
exports crmhub reads are admin-only), `groups`, `user_fields` and
`ticket_fields` through the connector's zenpy client.
crmhub keys users and tickets on `external_id`, a built-in attribute, so
there is no key field to create.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crmhub.check._report import Finding, did_you_mean, failed, listed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.zendesk import CUSTOM_FIELD, ZendeskCrm

SYSTEM = "zendesk"
USER_ATTRIBUTES = frozenset({"name", "email", "phone", "external_id", "alias", "details", "notes", "locale",
                             "time_zone", "organization_id", "tags"})
TICKET_ATTRIBUTES = frozenset({"subject", "description", "priority", "type", "status", "tags", "due_at",
                               "problem_id", "assignee_id", "assignee_email", "organization_id", "brand_id",
                               "ticket_form_id", "collaborator_ids", "follower_ids", "email_cc_ids"})
HANDLE_TYPES = frozenset({"text", "regexp"})  # a field crmhub writes an @handle into


def check(crm: ZendeskCrm, config: Config, where: Where) -> Iterator[Finding]:
    me: Any = crm.zd("check.me", lambda zd: zd.users.me())
    role = str(getattr(me, "role", "") or "")
    if role != "admin":
        yield failed(SYSTEM, "credentials", f"the API user {getattr(me, 'email', '?')} is {_a(role or 'anonymous')} "
                                            "user, not an admin; crmhub's user mirror, case states and agents' "
                                            "replies come from Zendesk's incremental exports, which only admins "
                                            "may read",
                     "set crms.zendesk.auth.email to an admin's email and use that admin's API token "
                     "(docs/setup/zendesk.md)")
        return
    yield passed(SYSTEM, "credentials", f"{me.email} ({role})")
    yield from _groups(crm, config, where)
    yield from _user_fields(crm, config, where)
    yield from _ticket_fields(crm, config, where)
    yield passed(SYSTEM, "key external_id", "built-in on users and tickets")


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _groups(crm: ZendeskCrm, config: Config, where: Where) -> Iterator[Finding]:
    wanted = config.routing.queues.zendesk
    if not wanted:
        return
    names = [str(g.name) for g in crm.zd("check.groups", lambda zd: list(zd.groups()))]
    for name, queue in wanted.items():
        if queue.group in names:
            yield passed(SYSTEM, f"group {queue.group}", "exists")
            continue
        yield failed(SYSTEM, f"group {queue.group}",
                     f"group {queue.group!r} named in {where('routing', ('queues', 'zendesk', name, 'group'))} "
                     f"does not exist{did_you_mean(queue.group, names)}",
                     f"create it (Admin Center > People > Groups) or name one of: {listed(names)}")


def _user_fields(crm: ZendeskCrm, config: Config, where: Where) -> Iterator[Finding]:
    identity = config.identities.crms.zendesk
    if identity is None:
        return
    defined = {str(f.key): f for f in crm.zd("check.user_fields", lambda zd: list(zd.user_fields()))}
    for obj, match in identity.objects().items():
        for kind, names in match.by_kind().items():
            for i, name in enumerate(names):
                loc = where("identities", ("crms", "zendesk", "match", obj, kind, i))
                yield _user_field(name, kind, loc, defined)


def _user_field(name: str, kind: str, loc: str, defined: dict[str, Any]) -> Finding:
    label = f"user field {name}"
    if not name.startswith("user_fields."):
        if name in USER_ATTRIBUTES:
            return passed(SYSTEM, label, "built-in")
        return failed(SYSTEM, label, f"{name!r} named in {loc} is not a user attribute"
                                     f"{did_you_mean(name, [*USER_ATTRIBUTES, *('user_fields.' + k for k in defined)])}",
                      "name a built-in attribute (phone, email) or a custom user field as user_fields.KEY")
    key = name.removeprefix("user_fields.")
    field = defined.get(key)
    if field is None or not getattr(field, "active", True):
        return failed(SYSTEM, label, f"user field {key!r} named in {loc} does not exist{did_you_mean(key, defined)}",
                      f"create a {'text ' if kind == 'x_handle' else ''}user field with key {key} (Admin Center > "
                      "People > Configuration > User fields)")
    if kind == "x_handle" and str(field.type) not in HANDLE_TYPES:
        return failed(SYSTEM, label, f"user field {key!r} named in {loc} is of type {field.type}; crmhub writes an "
                                     "X handle there", "use a text user field")
    return passed(SYSTEM, label, str(field.type))


def _ticket_fields(crm: ZendeskCrm, config: Config, where: Where) -> Iterator[Finding]:
    templates = config.history.zendesk.ticket
    custom = [k for k in templates if k.startswith(CUSTOM_FIELD)]
    defined: dict[str, Any] = {}
    if custom:
        defined = {str(f.id): f for f in crm.zd("check.ticket_fields", lambda zd: list(zd.ticket_fields()))}
    for key in templates:
        loc = where("history", ("zendesk", "ticket", key))
        if not key.startswith(CUSTOM_FIELD):
            if key in TICKET_ATTRIBUTES:
                yield passed(SYSTEM, f"ticket {key}", "built-in")
            else:
                yield failed(SYSTEM, f"ticket {key}", f"{key!r} named in {loc} is not a ticket attribute"
                                                      f"{did_you_mean(key, TICKET_ATTRIBUTES)}",
                             "name a ticket attribute, or a custom ticket field as custom_field:ID")
            continue
        field_id = key.removeprefix(CUSTOM_FIELD)
        field = defined.get(field_id)
        if field is None or not getattr(field, "active", True):
            titles = [f"{f.id} ({f.title})" for f in defined.values() if getattr(f, "removable", True)]
            yield failed(SYSTEM, f"ticket field {field_id}", f"ticket field {field_id} named in {loc} does not "
                                                             "exist or is inactive",
                         f"create it (Admin Center > Objects and rules > Tickets > Fields) or use one of: "
                         f"{listed(titles)}")
        else:
            yield passed(SYSTEM, f"ticket field {field_id}", f"{field.title} ({field.type})")
