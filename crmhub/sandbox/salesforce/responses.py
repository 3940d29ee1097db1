"""REST handlers: parse the request, call the backend, answer in Salesforce's shape.

Covers query/queryAll with cursors, describe, the sObject row resources
(including external-id upsert), sObject Collections and Composite. Errors
are raised as `SalesforceApiError` and rendered by the emulator's guard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import Fault, FaultKind, json_response
from crmhub.sandbox.salesforce.errors import (
    HALTED_MESSAGE,
    ROLLED_BACK_MESSAGE,
    RecordError,
    SalesforceApiError,
    error,
    malformed_request,
    no_such_column_on_entity,
    not_found,
)
from crmhub.sandbox.salesforce.ids import normalize_id
from crmhub.sandbox.salesforce.models import (
    QUERY_BATCH_DEFAULT,
    QUERY_BATCH_MIN,
    QueryPage,
    SalesforceBackend,
    record_url,
    sf_datetime,
)
from crmhub.sandbox.salesforce.schema import API_PATH, OBJECTS, OBJECTS_BY_PREFIX, SObjectSchema
from crmhub.sandbox.salesforce.soql import SoqlError

USER_KEY = "crmhub.salesforce.user"  # environ key: the session's user id, set by authenticate
FORCE_ALL_OR_NONE = "crmhub.salesforce.all_or_none"  # environ key: a Composite allOrNone applies inside
COLLECTION_MAX = 200
COMPOSITE_MAX = 25
COMPOSITE_HEAVY_MAX = 5  # of the 25, at most 5 sObject Collections or query (queryAll) subrequests
INJECTED_REJECTION = RecordError(  # what a customer's validation rule answers; fault partial_failure
    "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Rejected by the crmhub sandbox (injected fault).", [])
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_HEAVY_SUBREQUEST = re.compile(r"/(composite/sobjects|query|queryAll)(/|\?|$)")
_REFERENCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
Handler = Callable[..., Response]


class RestHandlers:
    """Mixin of the REST handlers; the emulator supplies the attributes below."""

    backend: SalesforceBackend
    state: dict[str, Any]
    composite_map: Map

    if TYPE_CHECKING:  # provided by SalesforceEmulator / Emulator
        def take_fault(self, kind: FaultKind, request: Request) -> Fault | None: ...
        def server_error_response(self, request: Request, fault: Fault) -> Response: ...
        def handler(self, name: str) -> Handler: ...
        def not_emulated_response(self, request: Request) -> Response: ...

    # ---- limits and describe ------------------------------------------------
    def limits(self, request: Request) -> Response:
        """GET /limits: the rolling-day allowance (only DailyApiRequests is emulated)."""
        used = self.backend.api_usage()
        maximum = int(self.state["api_max"])
        return json_response({"DailyApiRequests": {"Max": maximum, "Remaining": max(0, maximum - used)}})

    def chatter_me(self, request: Request) -> Response:
        """GET /chatter/users/me: the session's own user, as Connect REST's User Detail (the identity fields)."""
        user = self.state["records"]["User"][_user(request)]
        first, _, last = str(user["Name"]).rpartition(" ")
        return json_response({
            "id": user["Id"], "name": user["Name"], "displayName": user["Name"], "firstName": first or None,
            "lastName": last, "username": user["Username"], "email": user["Email"], "isActive": user["IsActive"],
            "type": "User", "userType": "Internal", "url": f"{API_PATH}/chatter/users/{user['Id']}",
            "title": None, "companyName": None, "communityNickname": user["Username"].split("@")[0],
        })

    def describe_global(self, request: Request) -> Response:
        entries = [self.backend.require_schema(name).global_entry() for name in OBJECTS]
        return json_response({"encoding": "UTF-8", "maxBatchSize": COLLECTION_MAX, "sobjects": entries})

    def sobject_info(self, request: Request, sobject: str) -> Response:
        schema = self.backend.require_schema(sobject)
        return json_response({"objectDescribe": schema.global_entry(), "recentItems": []})

    def describe(self, request: Request, sobject: str) -> Response:
        return json_response(self.backend.require_schema(sobject).describe())

    def updated_ids(self, request: Request, sobject: str) -> Response:
        """GET /sobjects/{O}/updated?start=&end=: ids changed in the window (for replication)."""
        schema = self.backend.require_schema(sobject)
        start, end, covered = self._replication_window(request)
        ids = [r["Id"] for r in self.backend.changed_between(schema, start, end, deleted=False)]
        return json_response({"ids": ids, "latestDateCovered": covered})

    def deleted_records(self, request: Request, sobject: str) -> Response:
        """GET /sobjects/{O}/deleted?start=&end=: records sent to the recycle bin in the window."""
        schema = self.backend.require_schema(sobject)
        start, end, covered = self._replication_window(request)
        gone = self.backend.changed_between(schema, start, end, deleted=True)
        dates = [r["SystemModstamp"] for r in gone]
        return json_response({"deletedRecords": [{"id": r["Id"], "deletedDate": r["SystemModstamp"]} for r in gone],
                              "earliestDateAvailable": min(dates, default=covered), "latestDateCovered": covered})

    def _replication_window(self, request: Request) -> tuple[datetime, datetime, str]:
        """start and end (ISO 8601), end cut to now and both to whole minutes, as Salesforce covers them."""
        try:
            start, end = (datetime.fromisoformat(request.args[k]) for k in ("start", "end"))
        except (KeyError, ValueError):
            raise error(400, "INVALID_REPLICATION_DATE", "start and end must be ISO 8601 dateTimes") from None
        now = self.backend.clock.now()
        if start.tzinfo is None or end.tzinfo is None or end <= start or start < now - timedelta(days=30):
            raise error(400, "INVALID_REPLICATION_DATE", "start must be within 30 days and before end")
        end = min(end, now).replace(second=0, microsecond=0)
        return start.replace(second=0, microsecond=0), end, sf_datetime(end)

    # ---- query ----------------------------------------------------------------
    def query(self, request: Request) -> Response:
        return self._query(request, all_rows=False)

    def query_all(self, request: Request) -> Response:
        return self._query(request, all_rows=True)

    def _query(self, request: Request, all_rows: bool) -> Response:
        text = request.args.get("q", "")
        if not text.strip():
            raise error(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            page = self.backend.query(text, all_rows, _user(request), _batch_size(request))
        except SoqlError as exc:
            raise error(400, exc.code, exc.message(text)) from None
        return json_response(_page_body(page))

    def query_more(self, request: Request, locator: str) -> Response:
        """GET /query/{locator}-{offset}: the next page of an open cursor."""
        return json_response(_page_body(self.backend.query_more(locator)))

    # ---- sObject rows -------------------------------------------------------------
    def create(self, request: Request, sobject: str) -> Response:
        schema = self.backend.require_schema(sobject)
        record_id = self.backend.create(schema, _json_object(request), _user(request))
        return json_response({"id": record_id, "success": True, "errors": []}, 201,
                             {"Location": record_url(schema.name, record_id)})

    def get_record(self, request: Request, sobject: str, record_id: str) -> Response:
        schema = self.backend.require_schema(sobject)
        record = self.backend.find(schema.name, record_id)
        return json_response(render(schema.name, record, _fields_param(schema, request.args.get("fields"))))

    def update_record(self, request: Request, sobject: str, record_id: str) -> Response:
        schema = self.backend.require_schema(sobject)
        self.backend.update(schema, record_id, _json_object(request), _user(request))
        return json_response(None, 204)

    def delete_record(self, request: Request, sobject: str, record_id: str) -> Response:
        schema = self.backend.require_schema(sobject)
        self.backend.delete(schema, record_id, _user(request))
        return json_response(None, 204)

    def get_by_external_id(self, request: Request, sobject: str, field: str, value: str) -> Response:
        schema = self.backend.require_schema(sobject)
        _, record = self.backend.by_external_id(schema, field, value)
        if record is None:
            raise not_found()
        return json_response(render(schema.name, record, _fields_param(schema, request.args.get("fields"))))

    def upsert(self, request: Request, sobject: str, field: str, value: str) -> Response:
        """PATCH /sobjects/{O}/{ExtField}/{value}: 201 created or 200 updated (API v46.0+)."""
        schema = self.backend.require_schema(sobject)
        record_id, created = self.backend.upsert(schema, field, value, _json_object(request), _user(request))
        return json_response({"id": record_id, "success": True, "errors": [], "created": created},
                             201 if created else 200)

    # ---- sObject Collections ---------------------------------------------------------
    def collection_create(self, request: Request) -> Response:
        body, records = _collection_body(request)
        user = _user(request)

        def create(item: dict[str, Any]) -> dict[str, Any]:
            record_id = self.backend.create(self._typed_schema(item), item, user)
            return {"id": record_id, "success": True, "errors": []}

        return self._batch(request, body, records, create, _no_id)

    def collection_update(self, request: Request) -> Response:
        body, records = _collection_body(request)
        user = _user(request)

        def update(item: dict[str, Any]) -> dict[str, Any]:
            record_id = _item_id(item)
            if record_id is None:
                raise error(400, "MISSING_ARGUMENT", "Id not specified in an update call", [])
            self.backend.update(self._typed_schema(item), record_id, item, user)
            return {"id": normalize_id(record_id), "success": True, "errors": []}

        return self._batch(request, body, records, update, _item_id)

    def collection_upsert(self, request: Request, sobject: str, field: str) -> Response:
        body, records = _collection_body(request)
        schema = self.backend.require_schema(sobject)
        ext = self.backend.external_id_field(schema, field)
        user = _user(request)

        def upsert(item: dict[str, Any]) -> dict[str, Any]:
            if self._typed_schema(item).name != schema.name:
                raise error(400, "INVALID_TYPE", f"Record type does not match the request: {schema.name}", [])
            value = next((v for k, v in item.items() if k.lower() == ext.name.lower()), None)
            if value in (None, ""):
                raise error(400, "MISSING_ARGUMENT", f"{ext.name} not specified", [ext.name])
            record_id, created = self.backend.upsert(schema, ext.name, str(value), item, user)
            return {"id": record_id, "success": True, "errors": [], "created": created}

        return self._batch(request, body, records, upsert, _no_id, upsert_shape=True)

    def collection_delete(self, request: Request) -> Response:
        ids = [i for i in request.args.get("ids", "").split(",") if i]
        if not ids:
            raise error(400, "MISSING_ARGUMENT", "ids parameter is required")
        user = _user(request)

        def delete(record_id: str) -> dict[str, Any]:
            self.backend.delete(_schema_of_id(self.backend, record_id), record_id, user)
            return {"id": normalize_id(record_id), "success": True, "errors": []}

        flag = request.args.get("allOrNone", "false").lower() == "true"
        return self._batch(request, {"allOrNone": flag}, ids, delete, str, faults=False)

    def collection_retrieve(self, request: Request, sobject: str) -> Response:
        """GET ?ids=&fields= or POST {"ids", "fields"}: records in order, null where not found."""
        schema = self.backend.require_schema(sobject)
        if request.method == "POST":
            body = _json_object(request)
            ids, fields = list(body.get("ids") or []), ",".join(body.get("fields") or [])
        else:
            ids, fields = request.args.get("ids", "").split(","), request.args.get("fields", "")
        if not fields:
            raise error(400, "MISSING_ARGUMENT", "fields parameter is required")
        names = _fields_param(schema, fields)
        table = self.state["records"][schema.name]
        found = [table.get(normalize_id(i) or "") for i in ids if i]
        return json_response([render(schema.name, r, names) if r and not r["IsDeleted"] else None for r in found])

    def _typed_schema(self, item: dict[str, Any]) -> SObjectSchema:
        """The schema named by a collection record's attributes.type."""
        attributes = item.get("attributes")
        sobject = attributes.get("type") if isinstance(attributes, dict) else None
        if not sobject:
            raise error(400, "INVALID_TYPE", "Must send a concrete entity type.", [])
        return self.backend.require_schema(sobject)

    def _batch(self, request: Request, body: dict[str, Any], items: list[Any],
               operate: Callable[[Any], dict[str, Any]], ident: Callable[[Any], str | None],
               upsert_shape: bool = False, faults: bool = True) -> Response:
        """Run `operate` per item; failures become results; allOrNone rolls all back.

        The partial_failure fault rejects the items at its `reject` indexes
        with a validation-rule error, as a customer's validation rule would.
        """
        fault = self.take_fault("partial_failure", request) if faults else None
        rejected = set(fault.reject) if fault else set()
        all_or_none = bool(body.get("allOrNone")) or bool(request.environ.get(FORCE_ALL_OR_NONE))
        results: list[dict[str, Any]] = []
        with self.backend.savepoint() as rollback:
            for index, item in enumerate(items):
                try:
                    if index in rejected:
                        raise SalesforceApiError(400, INJECTED_REJECTION)
                    results.append(operate(item))
                except SalesforceApiError as exc:
                    results.append(_failure(ident(item), exc.errors, upsert_shape))
            if all_or_none and any(not r["success"] for r in results):
                rollback()
                rolled_back = [RecordError("ALL_OR_NONE_OPERATION_ROLLED_BACK", ROLLED_BACK_MESSAGE, [])]
                results = [_failure(ident(item), rolled_back, upsert_shape) if r["success"] else r
                           for item, r in zip(items, results, strict=True)]
        return json_response(results)

    # ---- Composite ----------------------------------------------------------------------
    def composite(self, request: Request) -> Response:
        """POST /composite: up to 25 subrequests with @{ref.path} references; one API call."""
        body = _json_object(request)
        subrequests = _composite_subrequests(body)
        all_or_none = bool(body.get("allOrNone"))
        results: list[dict[str, Any]] = []
        outputs: dict[str, Any] = {}
        with self.backend.savepoint() as rollback:
            for index, sub in enumerate(subrequests):
                status, answer, headers = self._subrequest(request, sub, outputs, all_or_none)
                results.append(_sub_result(sub, status, answer, headers))
                failed = status >= 400 or (all_or_none and _has_failures(answer))
                outputs[sub["referenceId"]] = None if failed else answer
                if failed and all_or_none:  # undo everything; every other subrequest reports the halt
                    rollback()
                    halted = [RecordError("PROCESSING_HALTED", HALTED_MESSAGE).rest()]
                    results = [results[index] if i == index else _sub_result(other, 400, halted)
                               for i, other in enumerate(subrequests)]
                    break
        return json_response({"compositeResponse": results})

    def _subrequest(self, request: Request, sub: dict[str, Any], outputs: dict[str, Any],
                    all_or_none: bool) -> tuple[int, Any, dict[str, str]]:
        """Run one subrequest through the composite route map; (status, body, headers)."""
        try:
            url = _resolve(sub["url"], outputs)
            payload = _resolve(sub.get("body"), outputs)
        except _BadReference as exc:
            return 400, [RecordError("PROCESSING_HALTED", exc.message).rest()], {}
        environ = EnvironBuilder(method=sub["method"], path=url, json=payload,
                                 headers=sub.get("httpHeaders") or {}).get_environ()
        environ[USER_KEY] = _user(request)
        environ[FORCE_ALL_OR_NONE] = all_or_none
        sub_request = Request(environ)
        try:
            name, args = self.composite_map.bind_to_environ(environ).match()
        except HTTPException:  # NotFound / MethodNotAllowed: not a composite resource
            response = self.not_emulated_response(sub_request)
        else:
            fault = self.take_fault("server_error", sub_request)  # a subrequest failing alone, inside the answer
            response = (self.server_error_response(sub_request, fault) if fault is not None
                        else self.handler(str(name))(sub_request, **args))
        location = response.headers.get("Location")
        return response.status_code, response.get_json(silent=True), {"Location": location} if location else {}


# ---- serialisation and parsing helpers ----------------------------------------------
def render(sobject: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """A record as the API shows it: attributes first, then the fields asked for."""
    attributes = {"type": sobject, "url": record_url(sobject, record["Id"])}
    return {"attributes": attributes, **{name: record.get(name) for name in fields}}


def _page_body(page: QueryPage) -> dict[str, Any]:
    body: dict[str, Any] = {"totalSize": page.total, "done": page.next_locator is None}
    if page.next_locator:
        body["nextRecordsUrl"] = f"{API_PATH}/{page.path}/{page.next_locator}"
    body["records"] = [render(page.sobject, r, page.fields) for r in page.records]
    return body


def _user(request: Request) -> str:
    return str(request.environ[USER_KEY])


def _batch_size(request: Request) -> int:
    """Sforce-Query-Options: batchSize=N, clamped to Salesforce's 200..2000."""
    size = ""
    for option in request.headers.get("Sforce-Query-Options", "").split(","):
        name, _, value = option.strip().partition("=")
        if name == "batchSize":
            size = value.strip()
    return min(QUERY_BATCH_DEFAULT, max(QUERY_BATCH_MIN, int(size))) if size.isdigit() else QUERY_BATCH_DEFAULT


def _json_object(request: Request) -> dict[str, Any]:
    """The JSON object body, or Salesforce's JSON_PARSER_ERROR."""
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise malformed_request(f"Unexpected character: {exc}") from None
    if not isinstance(body, dict):
        raise malformed_request("Cannot deserialize instance of object from START_ARRAY value")
    return body


def _fields_param(schema: SObjectSchema, fields: str | None) -> list[str]:
    """Canonical names of a ?fields=A,B list (all fields when absent)."""
    if not fields:
        return list(schema.fields)
    names = []
    for name in (n.strip() for n in fields.split(",") if n.strip()):
        field = schema.get(name)
        if field is None:
            raise no_such_column_on_entity(name, schema.name)
        names.append(field.name)
    return names


def _collection_body(request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    body = _json_object(request)
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise malformed_request("records must be a list of sObjects")
    if len(records) > COLLECTION_MAX:
        raise error(400, "EXCEEDED_ID_LIMIT",
                    f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call")
    return body, records


def _item_id(item: dict[str, Any]) -> str | None:
    return next((str(v) for k, v in item.items() if k.lower() == "id" and v), None)


def _no_id(item: dict[str, Any]) -> None:
    """Failed creates and upserts carry no id."""
    return None


def _schema_of_id(backend: SalesforceBackend, record_id: str) -> SObjectSchema:
    """The object a record id belongs to, from its key prefix."""
    normal = normalize_id(record_id)
    sobject = OBJECTS_BY_PREFIX.get(normal[:3]) if normal else None
    if sobject is None:
        raise error(400, "MALFORMED_ID", f"malformed id {record_id}", [])
    return backend.require_schema(sobject)


def _failure(record_id: str | None, errors: list[RecordError], upsert_shape: bool) -> dict[str, Any]:
    """A failed SaveResult/DeleteResult/UpsertResult (creates carry no id)."""
    result: dict[str, Any] = {} if record_id is None else {"id": normalize_id(record_id) or record_id}
    result.update(success=False, errors=[e.save_result() for e in errors])
    if upsert_shape:
        result["created"] = False
    return result


def _composite_subrequests(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The validated compositeRequest list, or 400 for the whole request."""
    subs = body.get("compositeRequest")
    if not isinstance(subs, list) or not subs:
        raise malformed_request("compositeRequest must be a non-empty list")
    if len(subs) > COMPOSITE_MAX:
        raise error(400, "LIMIT_EXCEEDED", f"Limit Exceeded: exceeded the maximum of {COMPOSITE_MAX} subrequests")
    heavy = sum(1 for sub in subs if isinstance(sub, dict) and _HEAVY_SUBREQUEST.search(str(sub.get("url", ""))))
    if heavy > COMPOSITE_HEAVY_MAX:
        raise error(400, "LIMIT_EXCEEDED", f"Limit Exceeded: exceeded the maximum of {COMPOSITE_HEAVY_MAX} "
                    "sObject Collections or query subrequests")
    seen: set[str] = set()
    for sub in subs:
        ok = (isinstance(sub, dict) and sub.get("method") in ("GET", "POST", "PATCH", "PUT", "DELETE")
              and isinstance(sub.get("url"), str) and _REFERENCE_ID.match(str(sub.get("referenceId", ""))))
        if not ok or sub["referenceId"] in seen:
            raise error(400, "INVALID_INPUT", f"Invalid composite subrequest: {json.dumps(sub)[:200]}")
        seen.add(sub["referenceId"])
    return subs


def _sub_result(sub: dict[str, Any], status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"body": body, "httpHeaders": headers or {}, "httpStatusCode": status, "referenceId": sub["referenceId"]}


def _has_failures(answer: Any) -> bool:
    """A collection answer with a failed record (which a Composite allOrNone rolls back)."""
    return isinstance(answer, list) and any(isinstance(r, dict) and r.get("success") is False for r in answer)


class _BadReference(Exception):
    def __init__(self, expression: str, reference_id: str) -> None:
        self.message = (
            f"Invalid reference specified. No value for {expression} found in {reference_id}. "
            f"Provided referenceId ('{reference_id}') must start with a letter or a number, "
            "and it can contain only letters, numbers and underscores ('_')."
        )
        super().__init__(self.message)


def _resolve(value: Any, outputs: dict[str, Any]) -> Any:
    """`value` with every @{refId.path[0].Field} replaced by an earlier subrequest's output."""
    if isinstance(value, dict):
        return {k: _resolve(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, outputs) for v in value]
    if not isinstance(value, str):
        return value
    return _REFERENCE.sub(lambda m: str(_lookup(m.group(1), m.group(2), outputs)), value)


def _lookup(reference_id: str, path: str, outputs: dict[str, Any]) -> Any:
    current = outputs.get(reference_id)
    for key in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        name, index = key
        if name and isinstance(current, dict) and name in current:
            current = current[name]
        elif index and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            current = None
            break
    if current is None:
        raise _BadReference(f"{reference_id}{path}", reference_id)
    return current
