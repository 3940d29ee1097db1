"""Salesforce preflight: login, describe of every object crmhub reads or writes, queues.

Everything is read through the connector's simple-salesforce client (so
login, retries and error translation are crmhub's own): the run-as user from
`chatter/users/me`, `GET /sobjects/{O}/describe` once per object (field
names, types, `createable`/`updateable`, `externalId`/`unique`, picklists),
and the queues by SOQL on Group. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from crmhub.check._report import Finding, did_you_mean, failed, listed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.salesforce import CASE_KEY_FIELD, CONTACT_KEY_FIELD, TASK_KEY_FIELD, SalesforceCrm
from crmhub.errors import NotFound

SYSTEM = "salesforce"
TEXT_TYPES = frozenset({"string", "textarea", "email", "phone", "picklist", "combobox", "url", "multipicklist"})
KIND_TYPES = {"phone": frozenset({"phone", "string"}), "email": frozenset({"email", "string"}),
              "x_handle": frozenset({"string", "url"})}
OWN = "crmhub's own writes"  # where a field crmhub always writes is "named"
# Fields the connector writes besides the admin's templates (crmhub/connectors/salesforce.py).
CASE_FIELDS = ("Status", "Origin", "Priority", "OwnerId", "ContactId")
TASK_FIELDS = ("Status", "ActivityDate", "WhoId", "WhatId", "CallDurationInSeconds", "CallType")
TASK_CREATE_ONLY = ("TaskSubtype",)
COMMENT_FIELDS = ("ParentId", "CommentBody", "IsPublished")


@dataclass(frozen=True)
class Need:
    """A field crmhub reads or writes on one object, and what it must allow."""

    obj: str
    name: str
    where: str
    types: frozenset[str] | None = None  # None: any type
    create: bool = False
    update: bool = False
    key: bool = False  # upserted by: externalId
    unique: bool = False


def check(crm: SalesforceCrm, config: Config, where: Where) -> Iterator[Finding]:
    """Every finding for the Salesforce org (credentials first: a failed login raises `AuthError`)."""
    me: dict[str, Any] = crm.sf("check.me", lambda sf: sf.restful("chatter/users/me")) or {}
    yield passed(SYSTEM, "credentials", f"logged in as {me.get('username') or me.get('name') or me.get('id')}")
    needs = list(_needs(config, where))
    described: dict[str, dict[str, Any]] = {}
    for obj in dict.fromkeys([n.obj for n in needs]):
        try:
            described[obj] = crm.sf(f"check.describe.{obj}", lambda sf, o=obj: getattr(sf, o).describe())  # type: ignore[misc]
        except NotFound:
            yield failed(SYSTEM, f"object {obj}", f"object {obj} does not exist or the integration user cannot see it",
                         f"give the run-as user read, create and edit on {obj} (profile or permission set)")
    yield from _object_access(config, described)
    for need in needs:
        if need.obj in described:
            yield _field(need, described[need.obj])
    yield from _queues(crm, config, where)
    yield from _picklists(config, where, described)


def _needs(config: Config, where: Where) -> Iterator[Need]:
    """The fields crmhub names on each object: the admin's mappings, then its own."""
    identity = config.identities.crms.salesforce
    create = identity.create_when_unmatched if identity is not None else "none"
    for obj, match in (identity.objects().items() if identity is not None else ()):
        for kind, names in match.by_kind().items():
            for i, name in enumerate(names):
                yield Need(obj, name, where("identities", ("crms", "salesforce", "match", obj, kind, i)),
                           KIND_TYPES[kind], create=obj == create)
        if obj == create:
            yield Need(obj, CONTACT_KEY_FIELD, OWN, TEXT_TYPES, create=True, update=True, key=True, unique=True)
            yield Need(obj, "LastName", OWN, TEXT_TYPES, create=True)
    for record, obj in (("case", "Case"), ("task", "Task")):
        for name in getattr(config.history.salesforce, record):
            yield Need(obj, name, where("history", ("salesforce", record, name)), TEXT_TYPES, create=True, update=True)
    yield Need("Case", CASE_KEY_FIELD, OWN, TEXT_TYPES, create=True, update=True, key=True)
    for name in CASE_FIELDS:
        yield Need("Case", name, OWN, create=True, update=True)
    yield Need("Task", TASK_KEY_FIELD, OWN, TEXT_TYPES, create=True, update=True, key=True, unique=True)
    for name in TASK_FIELDS:
        yield Need("Task", name, OWN, create=True, update=True)
    for name in TASK_CREATE_ONLY:
        yield Need("Task", name, OWN, create=True)
    for name in COMMENT_FIELDS:
        yield Need("CaseComment", name, OWN, create=True)


def _object_access(config: Config, described: dict[str, dict[str, Any]]) -> list[Finding]:
    identity = config.identities.crms.salesforce
    wanted = {"Case": ("create", "update"), "Task": ("create", "update"), "CaseComment": ("create",)}
    if identity is not None and identity.create_when_unmatched != "none":
        wanted[identity.create_when_unmatched] = ("create",)
    out = []
    for obj, rights in wanted.items():
        info = described.get(obj)
        if info is None:
            continue
        missing = [r for r in rights if not info.get(f"{r}able")]
        if missing:
            out.append(failed(SYSTEM, f"object {obj}", f"the integration user may not {' or '.join(missing)} {obj} "
                                                       f"records", f"grant {', '.join(r.title() for r in missing)} "
                                                                   f"on {obj} to the run-as user's profile or a "
                                                                   "permission set"))
        else:
            out.append(passed(SYSTEM, f"object {obj}", " and ".join(rights) + " allowed"))
    return out


def _field(need: Need, describe: dict[str, Any]) -> Finding:
    fields = {f["name"].lower(): f for f in describe.get("fields") or []}
    label = f"field {need.obj}.{need.name}"
    info = fields.get(need.name.lower())
    if info is None:
        hint = did_you_mean(need.name, [f["name"] for f in fields.values()])
        if need.key:
            fix = (f"create {need.name} on {need.obj}: Text(255), External ID" + (", Unique" if need.unique else "")
                   + " (docs/setup/salesforce.md), visible and editable for the run-as user")
        elif need.name.endswith("__c"):
            fix = (f"create the custom field {need.name} on {need.obj} (Setup > Object Manager) and give the run-as "
                   "user access to it")
        elif need.where == OWN:
            fix = (f"give the run-as user access to {need.obj}.{need.name} (field-level security in its profile or "
                   "a permission set); crmhub writes it")
        else:
            fix = "use the field's API name (Setup > Object Manager > the object > Fields & Relationships)"
        return failed(SYSTEM, label, f"field {need.obj}.{need.name} named in {need.where} does not exist "
                                     f"or is hidden from the integration user{hint}", fix)
    kind = str(info.get("type"))
    if need.types is not None and kind not in need.types:
        return failed(SYSTEM, label, f"field {need.obj}.{need.name} named in {need.where} is of type {kind}; crmhub "
                                     f"writes text there (expected {listed(sorted(need.types))})",
                      f"name a field of one of those types, or change the field's type")
    lacks = [r for r, wanted in (("create", need.create), ("update", need.update))
             if wanted and not info.get(f"{r}able")]
    if lacks:
        return failed(SYSTEM, label, f"field {need.obj}.{need.name} named in {need.where} is not "
                                     f"{' or '.join(r + 'able' for r in lacks)} by the integration user",
                      "make it editable in the run-as user's field-level security (profile or permission set)"
                      + ("; crmhub writes it on every record of this kind" if need.where == OWN
                         else ", or remove it from the mapping"))
    if need.key and not info.get("externalId"):
        return failed(SYSTEM, label, f"field {need.obj}.{need.name} is not an External ID; crmhub upserts by it",
                      "edit the field and tick External ID" + (" and Unique" if need.unique else ""))
    if need.unique and not info.get("unique"):
        return failed(SYSTEM, label, f"field {need.obj}.{need.name} is not Unique; a retried write could make a "
                                     "second record", "edit the field and tick Unique")
    seen = [kind] + [w for w, on in (("externalId", info.get("externalId") and need.key),
                                     ("unique", info.get("unique") and need.unique)) if on]
    return passed(SYSTEM, label, ", ".join(seen))


def _queues(crm: SalesforceCrm, config: Config, where: Where) -> list[Finding]:
    wanted = config.routing.queues.salesforce
    if not wanted:
        return []
    soql = "SELECT Id, DeveloperName, Name FROM Group WHERE Type = 'Queue'"
    found = [r for page in crm.query_pages(soql) for r in page]
    names = [str(r.get("DeveloperName")) for r in found]
    out = []
    for name, queue in wanted.items():
        label = f"queue {queue.queue}"
        if queue.queue in names:
            out.append(passed(SYSTEM, label, "Group of Type Queue"))
            continue
        hint = did_you_mean(queue.queue, names)
        out.append(failed(SYSTEM, label, f"queue {queue.queue} named in "
                                         f"{where('routing', ('queues', 'salesforce', name, 'queue'))} does not "
                                         f"exist{hint}",
                          f"create a queue with that API name supporting Cases (Setup > Queues), or name one of: "
                          f"{listed(names)}"))
    return out


def _picklists(config: Config, where: Where, described: dict[str, dict[str, Any]]) -> list[Finding]:
    """Case Priority values the routes set, checked where the picklist is restricted (others take any value)."""
    case = described.get("Case")
    priority = next((f for f in (case or {}).get("fields") or [] if f.get("name") == "Priority"), None)
    if priority is None or not priority.get("restrictedPicklist"):
        return []
    values = [str(v.get("value")) for v in priority.get("picklistValues") or [] if v.get("active", True)]
    out = []
    for loc, value in _route_priorities(config):
        if value not in values:
            out.append(failed(SYSTEM, f"Case.Priority {value}",
                              f"Case Priority {value!r} named in {where('routing', loc)} is not a value of the "
                              f"restricted picklist{did_you_mean(value, values)}",
                              f"use one of: {listed(values)}"))
    return out


def _route_priorities(config: Config) -> Iterator[tuple[Sequence[str | int], str]]:
    for i, rule in enumerate(config.routing.rules):
        target = rule.route.salesforce
        if target is not None and target.priority:
            yield ("rules", i, "route", "salesforce", "priority"), target.priority
    if config.routing.default.salesforce is not None and config.routing.default.salesforce.priority:
        yield ("default", "salesforce", "priority"), config.routing.default.salesforce.priority


__all__ = ["check"]
