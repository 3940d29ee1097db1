"""The HubSpot backend: state and domain operations, no knowledge of HTTP.

All state is plain JSON in the emulator's `state` dict (see `initial_state`):
records keyed by object type and id, property definitions, associations in
both directions, pipelines, owners, tokens, limits and usage counters. Domain
rules (property validation, unique values, batch atomicity, search paging)
live here and raise `HubSpotError`s; the handlers turn those into answers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crmhub.sandbox._server import SandboxClock
from crmhub.sandbox.hubspot import catalog, errors, search
from crmhub.sandbox.hubspot.catalog import ObjectType
from crmhub.sandbox.hubspot.errors import HubSpotError
from crmhub.sandbox.hubspot.values import as_text, epoch_ms, is_email, is_number, iso_millis, parse_datetime

Record = dict[str, Any]
State = dict[str, Any]


def initial_state(now: str) -> State:
    """A fresh portal: default properties, the Support Pipeline, the default token."""
    return {
        "portal_id": catalog.PORTAL_ID,
        "next_id": 1001,
        "objects": {name: {} for name in catalog.OBJECT_TYPES},
        "properties": {name: {spec[0]: _definition(name, spec, now, hubspot_defined=True)
                              for spec in specs} for name, specs in catalog.DEFAULT_PROPERTIES.items()},
        "associations": {name: {} for name in catalog.OBJECT_TYPES},
        "pipelines": {"tickets": [_pipeline("0", "Support Pipeline", catalog.SUPPORT_PIPELINE_STAGES, now)]},
        "owners": [],
        "tokens": {catalog.DEFAULT_TOKEN: {"expired_at": None}},
        "limits": {"ten_second_max": catalog.TEN_SECOND_MAX, "daily_max": catalog.DAILY_MAX,
                   "search_per_second": catalog.SEARCH_PER_SECOND},
        "usage": {"window": [], "search": [], "day": now[:10], "daily": 0},
        "search_lag_seconds": 0,  # new records reach search this much later (HubSpot's index lags; 0: at once)
        "history": {},  # object type -> record id -> property -> versions, newest first (`propertiesWithHistory`)
        "history_reads": 0,  # reads that asked for `propertiesWithHistory` (for tests counting them)
    }


APP_SOURCE: dict[str, Any] = {"sourceType": "INTEGRATION", "sourceId": str(catalog.APP_ID)}
"""Who a private app token's writes (and the seed API's) are by, in property history."""


def user_source(user_id: int) -> dict[str, Any]:
    """Who a HubSpot user's writes are by, as HubSpot records an edit made in the CRM (`updatedByUserId`)."""
    return {"sourceType": "CRM_UI", "sourceId": f"userId:{user_id}", "updatedByUserId": user_id}


def _definition(object_type: str, spec: catalog.PropertySpec, now: str, *, hubspot_defined: bool) -> dict[str, Any]:
    """A property definition in the shape of HubSpot's properties API."""
    name, label, kind, field_type, options, unique, read_only = spec
    return {
        "updatedAt": now, "createdAt": now, "name": name, "label": label, "type": kind, "fieldType": field_type,
        "description": "", "groupName": catalog.GROUP_NAMES[object_type],
        "options": [{"label": o, "value": o, "displayOrder": i, "hidden": False} for i, o in enumerate(options)],
        "displayOrder": -1, "calculated": False, "externalOptions": False, "hasUniqueValue": unique,
        "hidden": False, "hubspotDefined": hubspot_defined, "formField": not read_only,
        "modificationMetadata": {"archivable": not hubspot_defined, "readOnlyDefinition": hubspot_defined,
                                 "readOnlyValue": read_only},
    }


def _pipeline(pid: str, label: str, stages: Iterable[tuple[str, str, str]], now: str) -> dict[str, Any]:
    return {
        "label": label, "displayOrder": 0, "id": pid, "createdAt": now, "updatedAt": now, "archived": False,
        "stages": [{"label": s_label, "displayOrder": i, "metadata": {"ticketState": state}, "id": sid,
                    "createdAt": now, "updatedAt": now, "archived": False,
                    "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"}
                   for i, (sid, s_label, state) in enumerate(stages)],
    }


@dataclass
class BatchResult:
    """What a batch call did: records (with extra answer fields) and 207 errors."""

    results: list[tuple[Record, dict[str, Any]]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


BatchStep = Callable[[dict[str, Any]], tuple[Record, dict[str, Any]]]


class HubSpotBackend:
    """Domain operations on one portal's state.

    Args:
        state: the emulator's state dict (mutated in place).
        clock: the sandbox clock, for every timestamp.
        source: who writes, as property history names them (default: the private app).
    """

    def __init__(self, state: State, clock: SandboxClock, source: dict[str, Any] | None = None) -> None:
        self.state = state
        self.clock = clock
        self.source = source or APP_SOURCE
        self._added: list[list[dict[str, Any]]] = []  # version lists `_remember` added to (newest first), in order

    def now(self) -> str:
        return iso_millis(self.clock.now())

    def _new_id(self) -> str:
        self.state["next_id"] += 1
        return str(self.state["next_id"] - 1)

    # ---- property definitions ---------------------------------------------
    def definitions(self, otype: ObjectType) -> dict[str, dict[str, Any]]:
        defs: dict[str, dict[str, Any]] = self.state["properties"][otype.name]
        return defs

    def kinds(self, otype: ObjectType) -> dict[str, str]:
        """Property name -> HubSpot type (string, number, datetime, enumeration...)."""
        return {name: d["type"] for name, d in self.definitions(otype).items()}

    def definition(self, otype: ObjectType, name: str) -> dict[str, Any]:
        found = self.definitions(otype).get(name)
        if found is None:
            raise errors.not_found(f"Unable to find property {name} for object type {otype.type_id}")
        return found

    def define_property(self, otype: ObjectType, body: dict[str, Any]) -> dict[str, Any]:
        """Create a custom property (POST /crm/v3/properties/{objectType})."""
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise errors.invalid_input(f"Missing required fields: {', '.join(missing)}")
        name = str(body["name"])
        if name in self.definitions(otype):
            raise errors.already_exists(f"Property named '{name}' already exists.")
        if body["type"] not in ("string", "number", "date", "datetime", "enumeration", "bool"):
            raise errors.invalid_input(f"Invalid property type {body['type']!r}")
        options = tuple(str(o.get("value")) for o in body.get("options") or [])
        spec = (name, str(body["label"]), str(body["type"]), str(body["fieldType"]), options,
                bool(body.get("hasUniqueValue")), False)
        definition = _definition(otype.name, spec, self.now(), hubspot_defined=False)
        definition.update(groupName=body["groupName"], description=body.get("description") or "",
                          hidden=bool(body.get("hidden")), formField=body.get("formField", True))
        definition["options"] = [{"hidden": False, "displayOrder": i, **o} for i, o in
                                 enumerate(body.get("options") or [])]
        self.definitions(otype)[name] = definition
        return definition

    # ---- records -------------------------------------------------------------
    def records(self, otype: ObjectType) -> dict[str, Record]:
        found: dict[str, Record] = self.state["objects"][otype.name]
        return found

    def find(self, otype: ObjectType, key: str, id_property: str | None = None,
             archived: bool = False) -> Record | None:
        """The record whose id (or unique `id_property`) is `key`, live or archived as asked."""
        if id_property in (None, "", "hs_object_id"):
            record = self.records(otype).get(str(key))
            return record if record is not None and record["archived"] == archived else None
        prop = self._unique_property(otype, str(id_property))
        wanted = str(key).lower() if prop == "email" else str(key)
        return next((r for r in self.records(otype).values() if r["archived"] == archived
                     and r["properties"].get(prop) == wanted), None)

    def _unique_property(self, otype: ObjectType, prop: str) -> str:
        definition = self.definitions(otype).get(prop)
        if definition is None or not definition["hasUniqueValue"]:
            raise errors.non_unique_id_property(otype.type_id, prop)
        return prop

    def get(self, otype: ObjectType, key: str, id_property: str | None = None, archived: bool = False) -> Record:
        record = self.find(otype, key, id_property, archived)
        if record is None:
            raise errors.not_found()
        return record

    def create(self, otype: ObjectType, properties: dict[str, Any],
               associations: list[dict[str, Any]] | None = None) -> Record:
        """A new record from API properties, with its inline v3 `associations`."""
        cleaned = self.clean(otype, properties, None)
        if associations is not None and not isinstance(associations, list):
            raise errors.invalid_json("associations must be a list")
        links = [self._inline_association(otype, a) for a in associations or []]
        now, rid = self.now(), self._new_id()
        self._close_date(otype, cleaned, None, properties, now)
        props = {k: v for k, v in cleaned.items() if v is not None}
        props.setdefault(otype.created, now)
        props.update({otype.modified: now, "hs_lastmodifieddate": now, "hs_object_id": rid})
        record: Record = {"id": rid, "properties": props, "createdAt": now, "updatedAt": now, "archived": False}
        self.records(otype)[rid] = record
        self._remember(otype, rid, {k: v for k, v in cleaned.items() if v is not None}, now)
        for to_type, to_id, type_ids in links:
            self.associate(otype, rid, to_type, to_id, type_ids)
        return record

    def update(self, otype: ObjectType, key: str, properties: dict[str, Any],
               id_property: str | None = None) -> Record:
        record = self.get(otype, key, id_property)
        cleaned = self.clean(otype, properties, record)
        now = self.now()  # one instant for the change: the close date equals the modified date, as in HubSpot
        self._close_date(otype, cleaned, record, properties, now)
        self._remember(otype, record["id"], {k: v for k, v in cleaned.items() if v != record["properties"].get(k)},
                       now)
        for name, value in cleaned.items():
            if value is None:
                record["properties"].pop(name, None)
            else:
                record["properties"][name] = value
        record["properties"].update({otype.modified: now, "hs_lastmodifieddate": now})
        record["updatedAt"] = now
        return record

    def _remember(self, otype: ObjectType, rid: str, changed: dict[str, str | None], now: str) -> None:
        """A version of each changed property, by this backend's source (a cleared value is "")."""
        versions = self.state.setdefault("history", {}).setdefault(otype.name, {}).setdefault(rid, {})
        for name, value in changed.items():
            versions.setdefault(name, []).insert(0, {"value": "" if value is None else value, "timestamp": now,
                                                      **self.source})
            self._added.append(versions[name])

    def history(self, otype: ObjectType, rid: str, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """`propertiesWithHistory` of a record: the versions of each named property the object has, newest first."""
        versions = self.state.get("history", {}).get(otype.name, {}).get(rid, {})
        return {n: [dict(v) for v in versions.get(n, [])] for n in names if n in self.definitions(otype)}

    def archive(self, otype: ObjectType, key: str) -> None:
        """Move a record to the recycle bin; unknown ids are fine (HubSpot answers 204)."""
        record = self.find(otype, key)
        if record is None:
            return
        record.update(archived=True, archivedAt=self.now())
        for to_type, targets in self._links(otype.name, record["id"]).items():
            for to_id in list(targets):
                self.dissociate(otype, record["id"], catalog.OBJECT_TYPES[to_type], to_id)

    def merge(self, otype: ObjectType, primary_id: str, merged_id: str) -> Record:
        """`POST /crm/v3/objects/{type}/merge`, as HubSpot merges contacts since its 2023 change.

        A new record with a new id is made from both: the primary's values
        win, the other's fill the gaps, and `hs_merged_object_ids` lists both
        old ids (and any they had absorbed before). Both records' associations
        move to it. The old ids stop being records (search and lists no longer
        show them) but still lead to the new one when read (`follow_merge`).
        """
        primary, other = self.get(otype, primary_id), self.get(otype, merged_id)
        if primary["id"] == other["id"]:
            raise errors.invalid_input("The primary object and the object to merge must be different.")
        now, rid = self.now(), self._new_id()
        earlier = [i for r in (primary, other) for i in (r["properties"].get("hs_merged_object_ids") or "").split(";")
                   if i]
        props = {**other["properties"], **primary["properties"]}
        props.update({"hs_object_id": rid, "hs_merged_object_ids": ";".join([primary["id"], other["id"], *earlier]),
                      otype.modified: now, "hs_lastmodifieddate": now})
        record: Record = {"id": rid, "properties": props, "createdAt": primary["createdAt"], "updatedAt": now,
                          "archived": False}
        self.records(otype)[rid] = record
        aliases: dict[str, str] = self.state.setdefault("merged", {}).setdefault(otype.name, {})
        for old in (primary, other):
            for to_type, targets in list(self._links(otype.name, old["id"]).items()):
                to = catalog.OBJECT_TYPES[to_type]
                for to_id, type_ids in list(targets.items()):
                    self.dissociate(otype, old["id"], to, to_id)
                    self.associate(otype, rid, to, to_id, type_ids)
            del self.records(otype)[old["id"]]
            aliases.update({alias: rid for alias, target in aliases.items() if target == old["id"]})
            aliases[old["id"]] = rid
        return record

    def follow_merge(self, otype: ObjectType, key: str) -> str:
        """The id a merged-away id now leads to when read (itself when not merged)."""
        return str(self.state.get("merged", {}).get(otype.name, {}).get(str(key), key))

    def _close_date(self, otype: ObjectType, cleaned: dict[str, str | None], record: Record | None,
                    given: dict[str, Any], now: str) -> None:
        """A ticket's `closed_date` follows its stage: set on entering a closed stage, cleared on leaving it.

        HubSpot sets the close date when a ticket moves into a stage whose
        `ticketState` is CLOSED; a value the request gives wins.
        """
        if otype.name != "tickets" or "closed_date" in given:
            return
        before = (record or {}).get("properties", {})
        pipeline = str(cleaned.get("hs_pipeline") or before.get("hs_pipeline") or "0")
        stage = cleaned.get("hs_pipeline_stage") or before.get("hs_pipeline_stage")
        was_closed = record is not None and self.stage_closed(str(before.get("hs_pipeline") or "0"),
                                                              before.get("hs_pipeline_stage"))
        closed = self.stage_closed(pipeline, stage)
        if closed and not was_closed:
            cleaned["closed_date"] = now
        elif was_closed and not closed:
            cleaned["closed_date"] = None

    def stage_closed(self, pipeline_id: str, stage_id: object) -> bool:
        """Whether a ticket stage's `ticketState` is CLOSED."""
        pipeline = self.find_pipeline("tickets", pipeline_id)
        stage = next((s for s in (pipeline or {}).get("stages", []) if s["id"] == stage_id), None)
        return stage is not None and stage["metadata"].get("ticketState") == "CLOSED"

    # ---- property validation -------------------------------------------------
    def clean(self, otype: ObjectType, properties: dict[str, Any], record: Record | None) -> dict[str, str | None]:
        """Validate API property values and normalise them as HubSpot stores them.

        Raises 400 VALIDATION_ERROR listing every bad property, or 409 CONFLICT
        for a unique value (e.g. a contact's email) another record holds.
        """
        defs = self.definitions(otype)
        problems: list[tuple[str, str, str]] = []
        cleaned: dict[str, str | None] = {}
        for name, raw in properties.items():
            definition = defs.get(name)
            if definition is None:
                problems.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            value = as_text(raw)
            problem = None if value is None else self._value_problem(otype, definition, value, properties, record)
            if problem is not None:
                problems.append((name, *problem))
            else:
                cleaned[name] = _normalise(definition, value)
        if record is None:
            self._fill_defaults(otype, cleaned)
            named = {p[0] for p in problems}
            problems += [(n, "REQUIRED_FIELD", f"{n} is required") for n in otype.required
                         if not cleaned.get(n) and n not in named]
        if problems:
            raise errors.invalid_properties(problems)
        self._check_unique(otype, cleaned, record)
        if otype.name == "emails" and "hs_email_headers" in cleaned:
            cleaned.update(_header_fields(cleaned["hs_email_headers"]))
        return cleaned

    def _value_problem(self, otype: ObjectType, definition: dict[str, Any], value: str,
                       properties: dict[str, Any], record: Record | None) -> tuple[str, str] | None:
        """(code, message) of what is wrong with one value, or None."""
        name, kind = definition["name"], definition["type"]
        if definition["modificationMetadata"]["readOnlyValue"]:
            return "READ_ONLY_VALUE", f'Property "{name}" is a read only property; its value cannot be set.'
        if kind == "number" and not is_number(value):
            return "INVALID_INTEGER", f"{value} was not a valid number."
        if kind in ("datetime", "date") and parse_datetime(value) is None:
            return "INVALID_DATE", f"{value} was not a valid date or datetime."
        if name == "email" and not is_email(value):
            return "INVALID_EMAIL", f"Email address {value} is invalid"
        allowed = self._allowed_options(otype, definition, properties, record)
        if allowed is not None and value not in allowed:
            return "INVALID_OPTION", f"{value} was not one of the allowed options: [{', '.join(allowed)}]"
        return None

    def _allowed_options(self, otype: ObjectType, definition: dict[str, Any], properties: dict[str, Any],
                         record: Record | None) -> list[str] | None:
        """The values an enumeration accepts (owners and pipelines are looked up live)."""
        name = definition["name"]
        if name == "hubspot_owner_id":
            return [o["id"] for o in self.state["owners"]]
        if otype.name == "tickets" and name == "hs_pipeline":
            return [p["id"] for p in self.state["pipelines"]["tickets"]]
        if otype.name == "tickets" and name == "hs_pipeline_stage":
            current = (record or {}).get("properties", {}).get("hs_pipeline", "0")
            pipeline = self.find_pipeline("tickets", str(properties.get("hs_pipeline") or current))
            return [s["id"] for s in pipeline["stages"]] if pipeline else []
        if definition["type"] == "enumeration" and definition["options"]:
            return [o["value"] for o in definition["options"]]
        return None

    def _fill_defaults(self, otype: ObjectType, cleaned: dict[str, str | None]) -> None:
        if otype.name == "tickets":
            cleaned.setdefault("hs_pipeline", "0")

    def _check_unique(self, otype: ObjectType, cleaned: dict[str, str | None], record: Record | None) -> None:
        own_id = record["id"] if record else None
        for name, value in cleaned.items():
            if value is None or not self.definitions(otype)[name]["hasUniqueValue"]:
                continue
            holder = self.find(otype, value, name)
            if holder is not None and holder["id"] != own_id:
                raise errors.conflict(f"{otype.singular.capitalize()} already exists. Existing ID: {holder['id']}")

    # ---- listing and search --------------------------------------------------
    def page(self, otype: ObjectType, after: str | None, limit: int, archived: bool) -> tuple[list[Record], str | None]:
        """One page in id order; the cursor is the id to start from (HubSpot's `after`)."""
        start = _int_param(after, "after", 0)
        rows = sorted((r for r in self.records(otype).values() if r["archived"] == archived and int(r["id"]) >= start),
                      key=lambda r: int(r["id"]))
        return rows[:limit], (rows[limit]["id"] if len(rows) > limit else None)

    def search(self, otype: ObjectType, body: dict[str, Any]) -> tuple[list[Record], int, str | None]:
        """(page, total, next after) of a search request; raises 400 past 10,000 results."""
        limit = _int_param(body.get("limit"), "limit", catalog.SEARCH_DEFAULT_LIMIT)
        if not 0 < limit <= catalog.SEARCH_MAX_LIMIT:
            raise errors.invalid_input(f"limit must be between 1 and {catalog.SEARCH_MAX_LIMIT}, got {limit}")
        offset = _int_param(body.get("after"), "after", 0)
        if offset >= catalog.SEARCH_MAX_RESULTS:
            raise errors.invalid_input(f"The search endpoints are limited to {catalog.SEARCH_MAX_RESULTS} total "
                                       f"results for any given query; after={offset} pages beyond them.")
        kinds = self.kinds(otype)
        groups = search.validate(body, kinds)
        live = [r for r in self.records(otype).values() if not r["archived"] and self._indexed(r)]
        matched = search.select(live, groups, body.get("query"), otype=otype, kinds=kinds,
                                associated=lambda rid, to: set(self._links(otype.name, rid).get(to, {})))
        ordered = search.sort(matched, body.get("sorts") or [], otype, kinds)
        end = offset + limit
        return ordered[offset:end], len(ordered), (str(end) if end < len(ordered) else None)

    def _indexed(self, record: Record) -> bool:
        """Whether search sees `record` yet: HubSpot's index lags behind writes by `search_lag_seconds`."""
        lag = float(self.state.get("search_lag_seconds", 0))
        created = epoch_ms(record["createdAt"]) if lag > 0 else None
        return created is None or created / 1000 <= self.clock.time() - lag

    # ---- batches ---------------------------------------------------------------
    def batch(self, otype: ObjectType, inputs: list[dict[str, Any]], reject: set[int], step: BatchStep,
              *, atomic: bool, multi_status: bool | None = None) -> BatchResult:
        """Run `step` on each input the way HubSpot's batch endpoints do.

        Inputs at `reject` (a partial_failure fault) fail alone. Ids that do not
        exist are grouped into one OBJECT_NOT_FOUND error (207). Any other error
        fails the whole call and undoes it (`atomic` writes) unless every input
        carries an `objectWriteTraceId`, which turns on HubSpot's multi-status
        answers (`multi_status` True forces them, as association batches do).
        """
        if len(inputs) > catalog.BATCH_MAX_INPUTS:
            raise errors.too_many_inputs(len(inputs), catalog.BATCH_MAX_INPUTS)
        snapshot = self._snapshot() if atomic else None
        if multi_status is None:
            multi_status = bool(inputs) and all(i.get("objectWriteTraceId") for i in inputs)
        result, missing = BatchResult(), []
        for index, item in enumerate(inputs):
            if index in reject:
                result.errors.append(errors.injected_rejection(index).item(_naming(index, item)))
                continue
            try:
                result.results.append(step(item))
            except HubSpotError as err:
                if err.status == 404:
                    missing.append(str(item.get("id")))
                elif multi_status:
                    result.errors.append(err.item(_naming(index, item)))
                else:
                    self._restore(snapshot)
                    raise
        if missing:
            result.errors.insert(0, errors.missing_objects(otype.label, missing).item())
        return result

    def _snapshot(self) -> State:
        """What a failed atomic batch goes back to: a copy of all but property history, whose versions only
        grow, so the ones the batch added are taken back instead (copying them made every batch slow)."""
        self._added.clear()
        return {key: copy.deepcopy(value) for key, value in self.state.items() if key != "history"}

    def _restore(self, snapshot: State | None) -> None:
        if snapshot is not None:
            history = self.state.get("history", {})
            for versions in self._added:
                versions.pop(0)
            self.state.clear()
            self.state.update(snapshot, history=history)

    def upsert(self, otype: ObjectType, item: dict[str, Any]) -> tuple[Record, dict[str, Any]]:
        """One batch/upsert input: update the record holding the unique value, or create it."""
        prop = self._unique_property(otype, str(item.get("idProperty") or "hs_object_id"))
        existing = self.find(otype, str(item.get("id")), prop)
        if existing is not None:
            return self.update(otype, existing["id"], item.get("properties") or {}), {"new": False}
        properties = {**(item.get("properties") or {}), prop: item.get("id")}
        return self.create(otype, properties), {"new": True}

    # ---- associations ----------------------------------------------------------
    def _links(self, type_name: str, rid: str) -> dict[str, dict[str, list[int]]]:
        """to_type -> to_id -> type ids, for one record (a live view into the state)."""
        table: dict[str, dict[str, dict[str, list[int]]]] = self.state["associations"][type_name]
        return table.setdefault(rid, {})

    def associations(self, otype: ObjectType, rid: str, to: ObjectType) -> list[tuple[str, list[int]]]:
        """(to_id, type ids) of `rid`'s associations to `to`, in id order."""
        targets = self._links(otype.name, rid).get(to.name, {})
        return sorted(targets.items(), key=lambda kv: int(kv[0]))

    def associate(self, otype: ObjectType, rid: str, to: ObjectType, to_id: str,
                  type_ids: list[int] | None = None, *, replace: bool = False) -> list[int]:
        """Link two records (both directions); None means HubSpot's unlabeled default type."""
        for kind, key in ((otype, rid), (to, to_id)):
            if self.find(kind, key) is None:
                raise errors.invalid_input(f"{kind.label} object with id {key} does not exist.")
        wanted = type_ids if type_ids is not None else [self.default_type(otype, to)]
        for type_id in wanted:
            spec = catalog.ASSOCIATION_TYPES.get(type_id)
            if spec is None or (spec.from_type, spec.to_type) != (otype.name, to.name):
                raise errors.invalid_input(f"associationTypeId {type_id} is not a valid HUBSPOT_DEFINED type "
                                           f"from {otype.singular} to {to.singular}.")
        forward = self._links(otype.name, rid).setdefault(to.name, {})
        kept = [] if replace else forward.get(str(to_id), [])
        merged = sorted(set(kept) | set(wanted))
        forward[str(to_id)] = merged
        backward = self._links(to.name, str(to_id)).setdefault(otype.name, {})
        backward[rid] = sorted(catalog.ASSOCIATION_TYPES[t].inverse for t in merged)
        return merged

    def default_type(self, otype: ObjectType, to: ObjectType) -> int:
        """HubSpot's unlabeled association type from `otype` to `to`."""
        spec = catalog.default_association(otype.name, to.name)
        if spec is None:
            raise errors.invalid_input(f"There is no default association from {otype.singular} to {to.singular}.")
        return spec.type_id

    def dissociate(self, otype: ObjectType, rid: str, to: ObjectType, to_id: str) -> None:
        self._links(otype.name, rid).get(to.name, {}).pop(str(to_id), None)
        self._links(to.name, str(to_id)).get(otype.name, {}).pop(rid, None)

    def _inline_association(self, otype: ObjectType, spec: Any) -> tuple[ObjectType, str, list[int]]:
        """(target type, id, type ids) of one v3 create `associations` entry; the type id names the target.

        HubSpot's `PublicAssociationsForObject`: `{"to": {"id"}, "types":
        [{"associationCategory", "associationTypeId"}]}`, both members required.
        """
        to_id, type_ids = _association_entry(spec)
        known = [catalog.ASSOCIATION_TYPES.get(t) for t in type_ids]
        if any(k is None or k.from_type != otype.name for k in known):
            raise errors.invalid_input(f"Invalid association types {type_ids} for a {otype.singular}.")
        to = catalog.OBJECT_TYPES[known[0].to_type]  # type: ignore[union-attr]  # None excluded just above
        if any(k.to_type != to.name for k in known):  # type: ignore[union-attr]  # None excluded above
            raise errors.invalid_input(f"Association types {type_ids} do not all lead to the same object type.")
        if self.find(to, to_id) is None:
            raise errors.invalid_input(f"{to.label} object with id {to_id} does not exist.")
        return to, to_id, type_ids

    # ---- pipelines and owners --------------------------------------------------
    def pipelines(self, type_name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.state["pipelines"].get(type_name, [])
        return found

    def find_pipeline(self, type_name: str, pid: str) -> dict[str, Any] | None:
        return next((p for p in self.pipelines(type_name) if p["id"] == pid), None)

    def pipeline(self, type_name: str, pid: str) -> dict[str, Any]:
        found = self.find_pipeline(type_name, pid)
        if found is None:
            raise errors.not_found(f"Unable to find pipeline {pid} for object type {type_name}")
        return found

    def add_pipeline(self, type_name: str, label: str, stages: Iterable[tuple[str, str]]) -> str:
        pid = self._new_id()
        numbered = [(self._new_id(), s_label, state) for s_label, state in stages]
        self.state["pipelines"].setdefault(type_name, []).append(_pipeline(pid, label, numbered, self.now()))
        return pid

    def add_owner(self, email: str, first_name: str, last_name: str, teams: list[dict[str, Any]]) -> str:
        oid, now = self._new_id(), self.now()
        self.state["owners"].append({
            "id": oid, "email": email, "firstName": first_name, "lastName": last_name, "type": "PERSON",
            "userId": int(oid) + 9_000_000, "userIdIncludingInactive": int(oid) + 9_000_000,
            "createdAt": now, "updatedAt": now, "archived": False, "teams": teams,
        })
        return oid

    def owner(self, key: str, id_property: str | None) -> dict[str, Any]:
        field_name = "userId" if id_property == "userId" else "id"
        owners: list[dict[str, Any]] = self.state["owners"]
        found = next((o for o in owners if str(o[field_name]) == str(key)), None)
        if found is None:
            raise errors.not_found()
        return found


def _normalise(definition: dict[str, Any], value: str | None) -> str | None:
    """A valid value the way HubSpot stores it (ISO datetimes, lower-case emails)."""
    if value is None:
        return None
    if definition["type"] in ("datetime", "date"):
        moment = parse_datetime(value)
        return iso_millis(moment) if moment else value
    return value.lower() if definition["name"] == "email" else value


CATEGORIES = ("HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED")


def _header_fields(headers: str | None) -> dict[str, str | None]:
    """The read-only sender and recipient properties HubSpot fills from an email's `hs_email_headers`.

    Headers that are not a JSON object fill nothing (HubSpot does not say
    what it does with them); cleared headers clear the derived values.
    """
    try:
        parsed = json.loads(headers) if headers else {}
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    out: dict[str, str | None] = {}
    for prop, (header, name) in catalog.EMAIL_HEADER_FIELDS.items():
        entries = parsed.get(header)
        entries = entries if isinstance(entries, list) else [entries]
        values = [str(e[name]) for e in entries if isinstance(e, dict) and e.get(name)]
        out[prop] = ";".join(values) or None
    return out


def _association_entry(spec: Any) -> tuple[str, list[int]]:
    """(target id, type ids) of an inline association, refused as HubSpot refuses malformed JSON input."""
    to = spec.get("to") if isinstance(spec, dict) else None
    types = spec.get("types") if isinstance(spec, dict) else None
    if not isinstance(to, dict) or to.get("id") in (None, ""):
        raise errors.invalid_json("associations[].to.id is required")
    if not isinstance(types, list) or not types:
        raise errors.invalid_json("associations[].types must be a non-empty list")
    type_ids: list[int] = []
    for entry in types:
        category = entry.get("associationCategory") if isinstance(entry, dict) else None
        type_id = entry.get("associationTypeId") if isinstance(entry, dict) else None
        if category not in CATEGORIES:
            raise errors.invalid_json(f"associationCategory must be one of {', '.join(CATEGORIES)}, "
                                      f"got {category!r}")
        if isinstance(type_id, bool) or not isinstance(type_id, int | str) or not str(type_id).isdigit():
            raise errors.invalid_json(f"associationTypeId must be an integer, got {type_id!r}")
        if category != "HUBSPOT_DEFINED":
            raise errors.invalid_input(f"associationCategory {category!r} is not available: custom association "
                                       "labels are not emulated.")
        type_ids.append(int(type_id))
    return str(to["id"]), type_ids


def _naming(index: int, item: dict[str, Any]) -> dict[str, list[str]]:
    """The `context` that names a failed batch input: trace id, else record id, else its index."""
    if item.get("objectWriteTraceId"):
        return {"objectWriteTraceId": [str(item["objectWriteTraceId"])]}
    if item.get("id") is not None:
        return {"ids": [str(item["id"])]}
    return {"inputIndex": [str(index)]}


def _int_param(value: Any, name: str, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.invalid_input(f"{name} must be an integer, got {value!r}") from None
