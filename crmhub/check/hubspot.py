"""HubSpot preflight: scopes, properties, key properties, ticket pipelines and owners (hubspot-api-client).

A private app token has no token-info endpoint (`GET /oauth/v1/access-tokens/{token}`
answers for OAuth tokens only), so scopes are found by use: a read of each
object kind crmhub touches (its properties, and one record) answers 403
`MISSING_SCOPES` naming the scope that is missing. Write scopes cannot be
seen without writing; docs/check.md lists them. Then every property the
mappings name must exist (did-you-mean from the account's own list), the
key properties crmhub upserts by must be unique when present (crmhub creates
them, unique, on its first write otherwise), and each queue's pipeline,
stage and owner must exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crmhub.check._report import Finding, did_you_mean, failed, listed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.hubspot import ACTIVITY_KEY, ACTIVITY_TYPES, CASE_KEY, PERSON_KEY, HubSpotCrm
from crmhub.errors import AuthError

SYSTEM = "hubspot"
KINDS = ("contacts", "tickets", *ACTIVITY_TYPES)  # what crmhub reads and writes
KEYS = {"contacts": PERSON_KEY, "tickets": CASE_KEY, **dict.fromkeys(ACTIVITY_TYPES, ACTIVITY_KEY)}
SCOPES_FIX = ("add the scope to the private app (Settings > Integrations > Private apps > your app > Scopes: "
              "crm.objects.contacts.read/write, crm.schemas.contacts.read/write, tickets, crm.objects.owners.read) "
              "and commit; the token stays the same")


def check(crm: HubSpotCrm, config: Config, where: Where) -> Iterator[Finding]:
    properties: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        for what, call in (("properties", lambda k=kind: crm.api(f"check.properties.{k}", "properties", "get_all", k)),
                           ("records", lambda k=kind: crm.api(f"check.read.{k}", "basic", "get_page", k, limit=1))):
            try:
                answer = call()
            except AuthError as exc:
                if exc.code != "MISSING_SCOPES":
                    raise  # a bad token: the runner names the credentials
                yield failed(SYSTEM, f"scope: {kind} {what}", f"the private app may not read {kind} {what} ({exc})",
                             SCOPES_FIX)
                continue
            if what == "properties":
                properties[kind] = {str(p["name"]): p for p in (answer or {}).get("results") or []}
            yield passed(SYSTEM, f"scope: {kind} {what}", "readable")
    yield from _named_properties(config, where, properties)
    yield from _keys(config, properties)
    yield from _pipelines(crm, config, where)
    yield from _owners(crm, config, where)


def _named_properties(config: Config, where: Where, properties: dict[str, dict[str, Any]]) -> Iterator[Finding]:
    identity = config.identities.crms.hubspot
    if identity is not None and "contacts" in properties:
        creates = identity.create_when_unmatched == "contacts"
        for obj, match in identity.objects().items():
            for kind, names in match.by_kind().items():
                for i, name in enumerate(names):
                    loc = where("identities", ("crms", "hubspot", "match", obj, kind, i))
                    yield _property("contacts", name, loc, properties["contacts"], writes=creates)
    if "tickets" in properties:
        for name in config.history.hubspot.ticket:
            yield _property("tickets", name, where("history", ("hubspot", "ticket", name)), properties["tickets"],
                            writes=True)
        yield from _priorities(config, where, properties["tickets"])


def _property(kind: str, name: str, loc: str, defined: dict[str, Any], *, writes: bool) -> Finding:
    label = f"property {kind}.{name}"
    found = defined.get(name)
    if found is None:
        return failed(SYSTEM, label, f"property {name!r} of {kind} named in {loc} does not exist"
                                     f"{did_you_mean(name, defined)}",
                      f"use the property's internal name (Settings > Properties > {kind[:-1]} properties), or create "
                      "it as a single-line text property")
    if writes and (found.get("modificationMetadata") or {}).get("readOnlyValue"):
        return failed(SYSTEM, label, f"property {name!r} of {kind} named in {loc} is read-only; crmhub writes it",
                      "name a property crmhub may write, or remove it from the mapping")
    return passed(SYSTEM, label, f"{found.get('type')} ({found.get('fieldType')})")


def _keys(config: Config, properties: dict[str, dict[str, Any]]) -> Iterator[Finding]:
    identity = config.identities.crms.hubspot
    creates = identity is not None and identity.create_when_unmatched == "contacts"
    for kind, key in KEYS.items():
        if kind not in properties or (kind == "contacts" and not creates):
            continue
        found = properties[kind].get(key)
        if found is None:
            yield passed(SYSTEM, f"key {kind}.{key}", "absent: crmhub creates it (unique text) on its first write; "
                                                      "needs the crm.schemas write scope")
        elif not found.get("hasUniqueValue"):
            yield failed(SYSTEM, f"key {kind}.{key}", f"property {key!r} of {kind} exists but is not unique "
                                                      "(hasUniqueValue false); crmhub finds what a lost answer "
                                                      "wrote by it, and a second copy could be made",
                         f"delete the property {key} of {kind} (crmhub creates it, unique, on its first write) or "
                         "recreate it as single-line text with \"Require unique values\"")
        else:
            yield passed(SYSTEM, f"key {kind}.{key}", "hasUniqueValue")


def _pipelines(crm: HubSpotCrm, config: Config, where: Where) -> Iterator[Finding]:
    """Each queue's pipeline and stage, by id or label as the connector resolves them (`_stage_properties`)."""
    queues = config.routing.queues.hubspot
    if not queues:
        return
    try:
        pipelines = crm.ticket_pipelines()
    except AuthError as exc:
        if exc.code != "MISSING_SCOPES":
            raise
        yield failed(SYSTEM, "scope: tickets pipelines", f"the private app may not read tickets pipelines ({exc})",
                     SCOPES_FIX)
        return
    for name, queue in queues.items():
        pipeline = _by_id_or_label(pipelines, queue.pipeline)
        if pipeline is None:
            hint = did_you_mean(queue.pipeline, [*pipelines, *(str(p.get("label")) for p in pipelines.values())])
            yield failed(SYSTEM, f"pipeline {queue.pipeline}",
                         f"ticket pipeline {queue.pipeline!r} named in "
                         f"{where('routing', ('queues', 'hubspot', name, 'pipeline'))} does not exist{hint}",
                         f"write the pipeline's id (or label): one of "
                         f"{listed([_labelled(k, p) for k, p in pipelines.items()])}")
            continue
        yield passed(SYSTEM, f"pipeline {queue.pipeline}", _labelled(str(pipeline["id"]), pipeline))
        stages = {str(s["id"]): s for s in pipeline.get("stages") or []}
        stage = _by_id_or_label(stages, queue.stage)
        if stage is not None:
            yield passed(SYSTEM, f"stage {queue.pipeline}/{queue.stage}", _labelled(str(stage["id"]), stage))
            continue
        hint = did_you_mean(queue.stage, [*stages, *(str(s.get("label")) for s in stages.values())])
        yield failed(SYSTEM, f"stage {queue.pipeline}/{queue.stage}",
                     f"stage {queue.stage!r} named in {where('routing', ('queues', 'hubspot', name, 'stage'))} is not "
                     f"a stage of pipeline {pipeline.get('label')} ({pipeline['id']}){hint}",
                     f"write the stage's id (or label): one of {listed([_labelled(k, s) for k, s in stages.items()])}")


def _by_id_or_label(items: dict[str, Any], wanted: str) -> Any:
    return items.get(wanted) or next((i for i in items.values()
                                      if str(i.get("label", "")).lower() == wanted.lower()), None)


def _owners(crm: HubSpotCrm, config: Config, where: Where) -> Iterator[Finding]:
    wanted = {name: q.owner for name, q in config.routing.queues.hubspot.items() if q.owner}
    if not wanted:
        return
    try:
        owners = crm.owner_ids()
    except AuthError as exc:
        if exc.code != "MISSING_SCOPES":
            raise
        yield failed(SYSTEM, "scope: owners", f"the private app may not read owners ({exc})", SCOPES_FIX)
        return
    for name, owner in wanted.items():
        if owner in owners:
            yield passed(SYSTEM, f"owner {owner}", "active owner")
        else:
            yield failed(SYSTEM, f"owner {owner}", f"owner {owner!r} named in "
                                                   f"{where('routing', ('queues', 'hubspot', name, 'owner'))} is not "
                                                   "an active owner of the account",
                         f"write an active owner's id: one of {listed(sorted(owners))} (Settings > Users & Teams)")


def _labelled(item_id: str, item: dict[str, Any]) -> str:
    return f"{item_id} ({item.get('label')})"


def _priorities(config: Config, where: Where, tickets: dict[str, Any]) -> Iterator[Finding]:
    options = [str(o.get("value")) for o in (tickets.get("hs_ticket_priority") or {}).get("options") or []]
    if not options:
        return
    routes = [(("rules", i, "route", "hubspot", "priority"), r.route.hubspot.priority)
              for i, r in enumerate(config.routing.rules) if r.route.hubspot is not None and r.route.hubspot.priority]
    if config.routing.default.hubspot is not None and config.routing.default.hubspot.priority:
        routes.append((("default", "hubspot", "priority"), config.routing.default.hubspot.priority))
    for loc, value in routes:
        if value not in options:
            yield failed(SYSTEM, f"priority {value}", f"ticket priority {value!r} named in {where('routing', loc)} "
                                                      f"is not an option of hs_ticket_priority"
                                                      f"{did_you_mean(value, options)}",
                         f"use one of: {listed(options)}")
