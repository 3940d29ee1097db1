"""HubSpot handlers: parse a request, call the backend, answer in HubSpot's shape.

One method per endpoint of the route table (`urls.py`). Records are answered
as `{"id", "properties", "createdAt", "updatedAt", "archived"}`; batch calls as
`{"status": "COMPLETE", "results", "startedAt", "completedAt"}` plus
`numErrors`/`errors` and status 207 when some inputs failed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import json_response
from crmhub.sandbox.hubspot import catalog, errors
from crmhub.sandbox.hubspot.catalog import ObjectType, object_type
from crmhub.sandbox.hubspot.errors import HubSpotError
from crmhub.sandbox.hubspot.models import BatchResult, HubSpotBackend, Record

if TYPE_CHECKING:
    from crmhub.sandbox.hubspot.emulator import HubSpotEmulator

Json = dict[str, Any]
SOURCE = "crmhub.hubspot.source"  # request.environ: who the token writes as (`models.APP_SOURCE`, `user_source`)


_TYPE_ARGS = ("object_type", "from_type", "to_type")


def guarded(handler: Callable[..., Response],
            types: tuple[str, ...] = tuple(catalog.ALIASES)) -> Callable[..., Response]:
    """Answer a `HubSpotError` raised anywhere in a handler with its vendor body.

    Object types outside `types` get the "not emulated" answer before the handler runs.
    """
    @functools.wraps(handler)
    def run(request: Request, **args: str) -> Response:
        if any(args.get(key) not in types for key in _TYPE_ARGS if key in args):
            return errors.not_emulated(request.method, request.path)
        try:
            return handler(request, **args)
        except HubSpotError as err:
            return err.response()

    return run


# ---- request parsing ----------------------------------------------------------
def _json(request: Request, empty: str) -> Any:
    try:
        return json.loads(request.get_data(as_text=True) or empty)
    except json.JSONDecodeError as exc:
        raise errors.invalid_json(exc.msg) from None


def _body(request: Request) -> Json:
    body = _json(request, "{}")
    if not isinstance(body, dict):
        raise errors.invalid_json("expected a JSON object")
    return body


def _inputs(body: Json) -> list[Json]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise errors.invalid_input("inputs must be a list of objects")
    return inputs


def _names(request: Request, key: str) -> list[str] | None:
    """A list query parameter, sent repeated (the SDK) or comma-separated (HubSpot's docs)."""
    values = [v for raw in request.args.getlist(key) for v in raw.split(",") if v]
    return values or None


def _flag(request: Request, key: str) -> bool:
    return request.args.get(key, "false").lower() == "true"


def _int_arg(request: Request, key: str, default: int) -> int:
    raw = request.args.get(key)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise errors.invalid_input(f"{key} must be an integer, got {raw!r}") from None


def _limit(request: Request, default: int, maximum: int) -> int:
    limit = _int_arg(request, "limit", default)
    if not 0 < limit <= maximum:
        raise errors.invalid_input(f"limit must be between 1 and {maximum}, got {limit}")
    return limit


def _paging(request: Request, after: str | None, *, link: bool = True) -> Json:
    """HubSpot's `paging` member: {"next": {"after", "link"}} when there is more."""
    if after is None:
        return {}
    args = {**request.args.to_dict(flat=True), "after": after}
    nxt: Json = {"after": after}
    if link:
        nxt["link"] = f"{request.base_url}?{urlencode(args)}"
    return {"paging": {"next": nxt}}


# ---- answers ---------------------------------------------------------------------
ALL = ["*"]
"""`wanted` for writes: HubSpot answers a write with every property that has a value."""


def record_view(record: Record, otype: ObjectType, wanted: list[str] | None, defs: dict[str, Any]) -> Json:
    """A record as HubSpot answers it.

    `wanted` None: the object's default properties; a list: those (plus the
    record meta), ignoring names the object does not have; `ALL`: every
    property that has a value.
    """
    stored: dict[str, str] = record["properties"]
    if wanted is ALL:
        props: dict[str, str | None] = dict(stored)
    else:
        names = otype.defaults if not wanted else (*otype.meta, *(n for n in wanted if n in defs))
        props = {n: stored.get(n) for n in sorted(set(names))}
    view: Json = {"id": record["id"], "properties": props, "createdAt": record["createdAt"],
                  "updatedAt": record["updatedAt"], "archived": record["archived"]}
    if record["archived"]:
        view["archivedAt"] = record.get("archivedAt")
    return view


def _batch_answer(result: BatchResult, started: str, completed: str, ok_status: int,
                  view: Callable[[Record], Json]) -> Response:
    body: Json = {"status": "COMPLETE", "results": [{**view(r), **extra} for r, extra in result.results],
                  "startedAt": started, "completedAt": completed}
    if result.errors:
        body.update(numErrors=len(result.errors), errors=result.errors)
    return json_response(body, 207 if result.errors else ok_status)


def _association_types(type_ids: list[int]) -> list[Json]:
    return [{"category": "HUBSPOT_DEFINED", "typeId": t, "label": catalog.ASSOCIATION_TYPES[t].label}
            for t in type_ids]


def _labels_between(otype: ObjectType, rid: str, to: ObjectType, to_id: str, type_ids: list[int]) -> Json:
    return {"fromObjectTypeId": otype.type_id, "fromObjectId": int(rid), "toObjectTypeId": to.type_id,
            "toObjectId": int(to_id),
            "labels": [lbl for t in type_ids if (lbl := catalog.ASSOCIATION_TYPES[t].label)]}


def _default_pairs(otype: ObjectType, rid: str, to: ObjectType, to_id: str, type_ids: list[int]) -> list[Json]:
    """Both directions of a default association, as PUT .../associations/default answers them."""
    pairs = []
    for t in type_ids:
        inverse = catalog.ASSOCIATION_TYPES[t].inverse
        pairs.append({"from": {"id": rid}, "to": {"id": to_id},
                      "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}})
        pairs.append({"from": {"id": to_id}, "to": {"id": rid},
                      "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": inverse}})
    return pairs


class HubSpotResponses:
    """The handlers of one emulator (they run under its lock)."""

    def __init__(self, emulator: HubSpotEmulator) -> None:
        self.emulator = emulator

    @property
    def backend(self) -> HubSpotBackend:
        return self.emulator.backend

    def _writer(self, request: Request) -> HubSpotBackend:
        """The backend writing as the token's owner (the private app, or a user), for property history."""
        return HubSpotBackend(self.emulator.state, self.emulator.clock, request.environ.get(SOURCE))

    def _reject(self, request: Request) -> set[int]:
        """Indexes a `partial_failure` fault refuses in this batch call."""
        fault = self.emulator.take_fault("partial_failure", request)
        return set(fault.reject) if fault else set()

    def _view(self, otype: ObjectType, wanted: list[str] | None, associations: list[str] | None = None,
              with_history: list[str] | None = None) -> Callable[[Record], Json]:
        defs = self.backend.definitions(otype)
        if with_history:
            self.emulator.state["history_reads"] = self.emulator.state.get("history_reads", 0) + 1

        def view(record: Record) -> Json:
            out = record_view(record, otype, wanted, defs)
            if with_history:
                out["propertiesWithHistory"] = self.backend.history(otype, record["id"], with_history)
            linked = self._associations_v3(otype, record["id"], associations or [])
            if linked:
                out["associations"] = linked
            return out

        return view

    def _associations_v3(self, otype: ObjectType, rid: str, kinds: list[str]) -> Json:
        """The v3 `associations` member: {"tickets": {"results": [{"id", "type"}]}}."""
        out: Json = {}
        for alias in kinds:
            if alias not in catalog.ALIASES:
                continue
            to = object_type(alias)
            results = [{"id": to_id, "type": catalog.ASSOCIATION_TYPES[t].v3_name}
                       for to_id, type_ids in self.backend.associations(otype, rid, to) for t in type_ids]
            if results:
                out[to.name] = {"results": results}
        return out

    # ---- objects (v3) ----------------------------------------------------------
    def create_object(self, request: Request, object_type: str) -> Response:
        otype, body = catalog.object_type(object_type), _body(request)
        record = self._writer(request).create(otype, body.get("properties") or {}, body.get("associations"))
        return json_response(self._view(otype, ALL)(record), 201)

    def get_object(self, request: Request, object_type: str, object_id: str) -> Response:
        otype = catalog.object_type(object_type)
        id_property, archived = request.args.get("idProperty"), _flag(request, "archived")
        key = self._read_key(otype, object_id, id_property, archived)
        record = self.backend.get(otype, key, id_property, archived)
        view = self._view(otype, _names(request, "properties"), _names(request, "associations"),
                          _names(request, "propertiesWithHistory"))
        return json_response(view(record))

    def update_object(self, request: Request, object_type: str, object_id: str) -> Response:
        otype = catalog.object_type(object_type)
        properties = _body(request).get("properties") or {}
        record = self._writer(request).update(otype, object_id, properties, request.args.get("idProperty"))
        return json_response(self._view(otype, ALL)(record))

    def archive_object(self, request: Request, object_type: str, object_id: str) -> Response:
        self.backend.archive(catalog.object_type(object_type), object_id)
        return json_response(None, 204)

    def list_objects(self, request: Request, object_type: str) -> Response:
        otype = catalog.object_type(object_type)
        limit = _limit(request, catalog.LIST_DEFAULT_LIMIT, catalog.LIST_MAX_LIMIT)
        rows, after = self.backend.page(otype, request.args.get("after"), limit, _flag(request, "archived"))
        view = self._view(otype, _names(request, "properties"), _names(request, "associations"))
        return json_response({"results": [view(r) for r in rows], **_paging(request, after)})

    def search_objects(self, request: Request, object_type: str) -> Response:
        otype, body = catalog.object_type(object_type), _body(request)
        rows, total, after = self.backend.search(otype, body)
        view = self._view(otype, body.get("properties") or None)
        return json_response({"total": total, "results": [view(r) for r in rows],
                              **_paging(request, after, link=False)})

    # ---- objects, batch ----------------------------------------------------------
    def _batch_write(self, request: Request, object_type: str, ok_status: int,
                     step: Callable[[HubSpotBackend, ObjectType, Json], tuple[Record, Json]]) -> Response:
        otype, writer = catalog.object_type(object_type), self._writer(request)
        started, inputs = writer.now(), _inputs(_body(request))
        result = writer.batch(otype, inputs, self._reject(request), lambda item: step(writer, otype, item),
                              atomic=True)
        return _batch_answer(result, started, writer.now(), ok_status, self._view(otype, ALL))

    def batch_create(self, request: Request, object_type: str) -> Response:
        return self._batch_write(request, object_type, 201, lambda writer, otype, item: (
            writer.create(otype, item.get("properties") or {}, item.get("associations")), {}))

    def batch_update(self, request: Request, object_type: str) -> Response:
        return self._batch_write(request, object_type, 200, lambda writer, otype, item: (
            writer.update(otype, str(item.get("id")), item.get("properties") or {}, item.get("idProperty")), {}))

    def batch_upsert(self, request: Request, object_type: str) -> Response:
        return self._batch_write(request, object_type, 200, lambda writer, otype, item: writer.upsert(otype, item))

    def batch_read(self, request: Request, object_type: str) -> Response:
        otype, started, body = catalog.object_type(object_type), self.backend.now(), _body(request)
        id_property, archived = body.get("idProperty"), _flag(request, "archived")
        result = self.backend.batch(
            otype, _inputs(body), self._reject(request),
            lambda item: (self.backend.get(otype, self._read_key(otype, str(item.get("id")), id_property, archived),
                                           id_property, archived), {}), atomic=False)
        view = self._view(otype, body.get("properties") or None, with_history=body.get("propertiesWithHistory") or None)
        return _batch_answer(result, started, self.backend.now(), 200, view)

    def _read_key(self, otype: ObjectType, key: str, id_property: str | None, archived: bool) -> str:
        """A read by a merged-away id answers with the merged record (HubSpot's merge changelog)."""
        return key if id_property not in (None, "", "hs_object_id") or archived else self.backend.follow_merge(otype, key)

    def merge_objects(self, request: Request, object_type: str) -> Response:
        """POST /crm/v3/objects/{type}/merge {primaryObjectId, objectIdToMerge}: the new merged record."""
        otype, body = catalog.object_type(object_type), _body(request)
        primary, merged = body.get("primaryObjectId"), body.get("objectIdToMerge")
        if not primary or not merged:
            raise errors.invalid_input("primaryObjectId and objectIdToMerge are required.")
        return json_response(self._view(otype, ALL)(self.backend.merge(otype, str(primary), str(merged))))

    def batch_archive(self, request: Request, object_type: str) -> Response:
        otype, inputs = catalog.object_type(object_type), _inputs(_body(request))
        if len(inputs) > catalog.BATCH_MAX_INPUTS:
            raise errors.too_many_inputs(len(inputs), catalog.BATCH_MAX_INPUTS)
        for item in inputs:
            self.backend.archive(otype, str(item.get("id")))
        return json_response(None, 204)

    # ---- properties --------------------------------------------------------------
    def list_properties(self, request: Request, object_type: str) -> Response:
        defs = self.backend.definitions(catalog.object_type(object_type))
        return json_response({"results": list(defs.values())})

    def get_property(self, request: Request, object_type: str, property_name: str) -> Response:
        return json_response(self.backend.definition(catalog.object_type(object_type), property_name))

    def create_property(self, request: Request, object_type: str) -> Response:
        return json_response(self.backend.define_property(catalog.object_type(object_type), _body(request)), 201)

    # ---- associations (v4) -------------------------------------------------------
    def create_default_association(self, request: Request, from_type: str, from_id: str,
                                   to_type: str, to_id: str) -> Response:
        otype, to, started = object_type(from_type), object_type(to_type), self.backend.now()
        self.backend.associate(otype, from_id, to, to_id)
        default = [self.backend.default_type(otype, to)]
        return json_response({"status": "COMPLETE", "results": _default_pairs(otype, from_id, to, to_id, default),
                              "startedAt": started, "completedAt": self.backend.now()})

    def create_association(self, request: Request, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        otype, to = object_type(from_type), object_type(to_type)
        specs = _json(request, "[]")
        if not isinstance(specs, list):
            raise errors.invalid_json("expected a list of association specs")
        type_ids = self._type_ids(specs)
        merged = self.backend.associate(otype, from_id, to, to_id, type_ids, replace=True)
        return json_response(_labels_between(otype, from_id, to, to_id, merged), 201)

    @staticmethod
    def _type_ids(specs: list[Json]) -> list[int]:
        """Type ids of `[{associationCategory, associationTypeId}]`; only HubSpot-defined ones exist here."""
        for spec in specs:
            if spec.get("associationCategory") != "HUBSPOT_DEFINED":
                raise errors.invalid_input(f"associationCategory {spec.get('associationCategory')!r} is not "
                                           "available: custom association labels are not emulated.")
        return [int(s.get("associationTypeId", 0)) for s in specs]

    def archive_association(self, request: Request, from_type: str, from_id: str, to_type: str, to_id: str) -> Response:
        self.backend.dissociate(object_type(from_type), from_id, object_type(to_type), to_id)
        return json_response(None, 204)

    def list_associations(self, request: Request, from_type: str, from_id: str, to_type: str) -> Response:
        otype, to = object_type(from_type), object_type(to_type)
        limit = _limit(request, catalog.ASSOCIATIONS_PAGE_LIMIT, catalog.ASSOCIATIONS_PAGE_LIMIT)
        links = [(i, t) for i, t in self.backend.associations(otype, from_id, to)
                 if int(i) >= _int_arg(request, "after", 0)]
        results = [{"toObjectId": int(i), "associationTypes": _association_types(t)} for i, t in links[:limit]]
        after = links[limit][0] if len(links) > limit else None
        return json_response({"results": results, **_paging(request, after)})

    def _association_batch(self, request: Request, from_type: str, to_type: str, ok_status: int,
                           step: Callable[[ObjectType, ObjectType, Json], Json]) -> Response:
        otype, to, started = object_type(from_type), object_type(to_type), self.backend.now()
        result = self.backend.batch(otype, _inputs(_body(request)), self._reject(request),
                                    lambda item: (step(otype, to, item), {}), atomic=False, multi_status=True)
        return _batch_answer(result, started, self.backend.now(), ok_status, lambda answer: answer)

    def batch_create_associations(self, request: Request, from_type: str, to_type: str) -> Response:
        def step(otype: ObjectType, to: ObjectType, item: Json) -> Json:
            rid, to_id = _pair(item)
            merged = self.backend.associate(otype, rid, to, to_id, self._type_ids(item.get("types") or []))
            return _labels_between(otype, rid, to, to_id, merged)

        return self._association_batch(request, from_type, to_type, 201, step)

    def batch_default_associations(self, request: Request, from_type: str, to_type: str) -> Response:
        def step(otype: ObjectType, to: ObjectType, item: Json) -> Json:
            rid, to_id = _pair(item)
            self.backend.associate(otype, rid, to, to_id)
            return _default_pairs(otype, rid, to, to_id, [self.backend.default_type(otype, to)])[0]

        return self._association_batch(request, from_type, to_type, 200, step)

    def batch_read_associations(self, request: Request, from_type: str, to_type: str) -> Response:
        def step(otype: ObjectType, to: ObjectType, item: Json) -> Json:
            rid = str(item.get("id"))
            links = self.backend.associations(otype, rid, to)
            if not links:
                raise HubSpotError(207, "OBJECT_NOT_FOUND", f"No {to.singular} is associated with {otype.singular} "
                                   f"{rid}.", context={"fromObjectId": [rid]})
            return {"from": {"id": rid}, "to": [{"toObjectId": int(i), "associationTypes": _association_types(t)}
                                                for i, t in links]}

        return self._association_batch(request, from_type, to_type, 200, step)

    def batch_archive_associations(self, request: Request, from_type: str, to_type: str) -> Response:
        otype, to = object_type(from_type), object_type(to_type)
        for item in _inputs(_body(request)):
            for target in item.get("to") or []:
                self.backend.dissociate(otype, str((item.get("from") or {}).get("id")), to, str(target.get("id")))
        return json_response(None, 204)

    # ---- pipelines and owners ------------------------------------------------------
    def list_pipelines(self, request: Request, object_type: str) -> Response:
        return json_response({"results": self.backend.pipelines(catalog.object_type(object_type).name)})

    def get_pipeline(self, request: Request, object_type: str, pipeline_id: str) -> Response:
        return json_response(self.backend.pipeline(catalog.object_type(object_type).name, pipeline_id))

    def list_stages(self, request: Request, object_type: str, pipeline_id: str) -> Response:
        pipeline = self.backend.pipeline(catalog.object_type(object_type).name, pipeline_id)
        return json_response({"results": pipeline["stages"]})

    def get_stage(self, request: Request, object_type: str, pipeline_id: str, stage_id: str) -> Response:
        pipeline = self.backend.pipeline(catalog.object_type(object_type).name, pipeline_id)
        stage = next((s for s in pipeline["stages"] if s["id"] == stage_id), None)
        if stage is None:
            raise errors.not_found(f"Unable to find stage {stage_id} in pipeline {pipeline_id}")
        return json_response(stage)

    def list_owners(self, request: Request) -> Response:
        limit = _limit(request, catalog.OWNERS_DEFAULT_LIMIT, catalog.OWNERS_MAX_LIMIT)
        archived, email = _flag(request, "archived"), request.args.get("email")
        owners = [o for o in self.emulator.state["owners"]
                  if o["archived"] == archived and (not email or o["email"].lower() == email.lower())]
        start = _int_arg(request, "after", 0)
        after = str(start + limit) if start + limit < len(owners) else None
        return json_response({"results": owners[start:start + limit], **_paging(request, after)})

    def get_owner(self, request: Request, owner_id: str) -> Response:
        return json_response(self.backend.owner(owner_id, request.args.get("idProperty")))


def _pair(item: Json) -> tuple[str, str]:
    """(from id, to id) of a v4 batch input `{"from": {"id"}, "to": {"id"}}`."""
    return str((item.get("from") or {}).get("id")), str((item.get("to") or {}).get("id"))
