"""The Salesforce backend: records, validation, queries, logins and the API allowance.

No HTTP here (as in moto's models.py): handlers call these operations and
serialise what they return. Everything lives in the emulator's JSON-able
state, read through `state_of()` so that a reset, which swaps the state
dict, is seen at once:

    org_id, api_max, usage {minute: calls}, seq {key prefix: last number},
    case_number, records {object: {id: record}}, custom_fields {object: [spec]},
    logins {username: {user_id, password, security_token}},
    clients {client_id: {secret, user_id}}, tokens {token: {user_id, last_used}},
    cursors {locator: {sobject, ids, fields, user_id, path}}

Records are stored with canonical field names and Salesforce-formatted
values; deleted records stay, with IsDeleted true (the recycle bin), so
queryAll can see them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from crmhub.sandbox._server import SandboxClock
from crmhub.sandbox.salesforce.errors import (
    MultipleRecords,
    RecordError,
    SalesforceApiError,
    entity_is_deleted,
    error,
    no_such_column,
    not_found,
)
from crmhub.sandbox.salesforce.ids import make_id, normalize_id
from crmhub.sandbox.salesforce.schema import (
    API_PATH,
    CUSTOM_FIELD_TYPES,
    ID_TYPES,
    OBJECTS,
    OBJECTS_BY_PREFIX,
    ORG_PREFIX,
    QUERY_LOCATOR_PREFIX,
    SYSTEM_FIELDS,
    Field,
    SObjectSchema,
)
from crmhub.sandbox.salesforce.soql import compile_query, sort_key

INTEGRATION_USERNAME = "integration@sandbox.crmhub.test"
INTEGRATION_PASSWORD = "sandbox-password"
DEFAULT_CLIENT_ID = "crmhub-sandbox"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
DEFAULT_API_MAX = 15_000
SESSION_TIMEOUT = 2 * 3600.0  # Salesforce's default session timeout: 2 hours of inactivity
QUERY_BATCH_DEFAULT, QUERY_BATCH_MIN = 2000, 200
CURSORS_PER_USER = 10  # Salesforce keeps 10 open query cursors per user and drops the oldest
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CLOSED_STATUS = {"Case": "Closed", "Task": "Completed"}
_AUDIT_FIELDS = frozenset({"CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById"})


def sf_datetime(moment: datetime) -> str:
    """Salesforce's dateTime format: 2024-01-01T12:00:00.000+0000, in UTC."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def record_url(sobject: str, record_id: str) -> str:
    """A record's REST URL, as in `attributes.url` and 300 answers."""
    return f"{API_PATH}/sobjects/{sobject}/{record_id}"


def empty_state(api_max: int) -> dict[str, Any]:
    """A fresh org with no users, clients or records (see `SalesforceBackend.seed_defaults`)."""
    return {
        "org_id": make_id(ORG_PREFIX, 1), "api_max": api_max, "usage": {}, "seq": {}, "case_number": 1000,
        "records": {name: {} for name in OBJECTS}, "custom_fields": {},
        "logins": {}, "clients": {}, "tokens": {}, "cursors": {},
    }


@dataclass
class QueryPage:
    """One page of a query result, before serialisation."""

    sobject: str
    fields: list[str]
    records: list[dict[str, Any]]
    total: int
    next_locator: str | None
    path: str  # "query" or "queryAll": where nextRecordsUrl points


class SalesforceBackend:
    """Domain operations on the state of one emulated org. Callers hold the emulator lock."""

    def __init__(self, state_of: Callable[[], dict[str, Any]], clock: SandboxClock,
                 session_timeout: float | None = SESSION_TIMEOUT) -> None:
        self._state_of = state_of
        self.clock = clock
        self.session_timeout = session_timeout
        self._journal: list[tuple[str, str, dict[str, Any] | None]] | None = None
        self._index = _ExternalIdIndex()

    @property
    def state(self) -> dict[str, Any]:
        return self._state_of()

    def now(self) -> str:
        return sf_datetime(self.clock.now())

    # ---- schema -------------------------------------------------------------
    def schema(self, sobject: str) -> SObjectSchema | None:
        """The schema of `sobject` (case-insensitive name), or None if not emulated."""
        for name, sobject_type in OBJECTS.items():
            if name.lower() == sobject.lower():
                return SObjectSchema.build(sobject_type, self.state["custom_fields"].get(name, []),
                                           self.state.get("field_security", {}).get(name))
        return None

    def require_schema(self, sobject: str) -> SObjectSchema:
        """The schema of `sobject`, or Salesforce's 404 NOT_FOUND for an unknown object."""
        schema = self.schema(sobject)
        if schema is None:
            raise not_found()
        return schema

    def define_field(self, sobject: str, spec: dict[str, Any]) -> None:
        """Add a custom field (spec: name, type, external_id, unique) to an object."""
        schema = self.schema(sobject)
        if schema is None or not spec["name"].endswith("__c") or spec["type"] not in CUSTOM_FIELD_TYPES:
            raise ValueError(f"cannot define {spec} on {sobject}: custom fields end in __c and have a simple type")
        if schema.get(spec["name"]) is not None:
            raise ValueError(f"{sobject}.{spec['name']} already exists")
        self.state["custom_fields"].setdefault(schema.name, []).append(spec)

    def set_field_access(self, sobject: str, name: str, access: str) -> None:
        """The integration user's field-level security on one field: "hidden", "read" or "edit" (the default)."""
        schema = self.schema(sobject)
        if schema is None or access not in ("hidden", "read", "edit"):
            raise ValueError(f"cannot set {access!r} on {sobject}.{name}: an emulated object and hidden, read or edit")
        rules = self.state.setdefault("field_security", {}).setdefault(schema.name, {})
        if access == "edit":
            rules.pop(name, None)
        else:
            rules[name] = access

    # ---- transactions -------------------------------------------------------
    @contextmanager
    def savepoint(self) -> Iterator[Callable[[], None]]:
        """Yield a rollback() that undoes every record write made inside the block.

        Nests: an inner savepoint rolls back only its own writes. Any exception
        leaving the block rolls its writes back too.
        """
        outermost = self._journal is None
        if self._journal is None:
            self._journal = []
        mark = len(self._journal)
        try:
            yield lambda: self._undo_to(mark)
        except BaseException:
            self._undo_to(mark)
            raise
        finally:
            if outermost:
                self._journal = None

    def _undo_to(self, mark: int) -> None:
        journal = self._journal or []
        while len(journal) > mark:
            sobject, record_id, previous = journal.pop()
            self._put(sobject, record_id, previous)

    def _store(self, sobject: str, record: dict[str, Any]) -> None:
        """Write a record, journalled for rollback."""
        if self._journal is not None:
            old = self.state["records"][sobject].get(record["Id"])
            self._journal.append((sobject, record["Id"], dict(old) if old is not None else None))
        self._put(sobject, record["Id"], record)

    def _put(self, sobject: str, record_id: str, record: dict[str, Any] | None) -> None:
        """The only place records change, so the external-id index stays true."""
        table = self.state["records"][sobject]
        self._index.changed(self.state, sobject, table.get(record_id), record)
        if record is None:
            del table[record_id]
        else:
            table[record_id] = record

    # ---- records --------------------------------------------------------------
    def new_id(self, key_prefix: str) -> str:
        seq = self.state["seq"]
        seq[key_prefix] = seq.get(key_prefix, 0) + 1
        return make_id(key_prefix, seq[key_prefix])

    def find(self, sobject: str, record_id: str) -> dict[str, Any]:
        """The live record, or NOT_FOUND / ENTITY_IS_DELETED as Salesforce answers."""
        record: dict[str, Any] | None = self.state["records"][sobject].get(normalize_id(record_id) or "")
        if record is None:
            raise not_found()
        if record["IsDeleted"]:
            raise entity_is_deleted()
        return record

    def records_of(self, sobject: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        return [r for r in self.state["records"][sobject].values() if include_deleted or not r["IsDeleted"]]

    def create(self, schema: SObjectSchema, values: dict[str, Any], user_id: str, audit: bool = False) -> str:
        """Insert one record; raises SalesforceApiError with Salesforce's errors."""
        _require_permission(schema, schema.type.createable, "inserted")
        if any(k.lower() == "id" for k in values):
            raise error(400, "INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
        changes = self._checked(schema, values, creating=True, audit=audit)
        defaults = {name: f.default for name, f in schema.fields.items() if f.default is not None}
        if "OwnerId" in schema.fields:
            defaults["OwnerId"] = user_id
        record = {**defaults, **changes}
        self._check_complete(schema, record, None)
        now = self.now()
        record = {"Id": self.new_id(schema.type.key_prefix), "IsDeleted": False, "CreatedDate": now,
                  "CreatedById": user_id, "LastModifiedDate": now, "LastModifiedById": user_id, **record}
        self._derive(schema.name, record, None)
        record["SystemModstamp"] = record["LastModifiedDate"]
        self._store(schema.name, record)
        return str(record["Id"])

    def update(self, schema: SObjectSchema, record_id: str, values: dict[str, Any], user_id: str,
               audit: bool = False) -> None:
        """Update one live record; raises SalesforceApiError with Salesforce's errors."""
        existing = self.find(schema.name, record_id)
        _require_permission(schema, schema.type.updateable, "updated")
        values = {k: v for k, v in values.items() if k.lower() != "id"}
        changes = self._checked(schema, values, creating=False, audit=audit)
        record = {**existing, "LastModifiedDate": self.now(), "LastModifiedById": user_id, **changes}
        self._check_complete(schema, record, existing["Id"])
        self._derive(schema.name, record, existing)
        record["SystemModstamp"] = record["LastModifiedDate"]
        self._store(schema.name, record)

    def delete(self, schema: SObjectSchema, record_id: str, user_id: str) -> None:
        """Move a live record to the recycle bin (IsDeleted true)."""
        existing = self.find(schema.name, record_id)
        _require_permission(schema, schema.type.deletable, "deleted")
        now = self.now()
        self._store(schema.name, {**existing, "IsDeleted": True, "LastModifiedDate": now,
                                  "LastModifiedById": user_id, "SystemModstamp": now})

    def merge(self, schema: SObjectSchema, master_id: str, victim_ids: list[str], user_id: str) -> None:
        """Salesforce's merge(): up to two victims into the master, of one object (Contact, Lead, Account).

        Each victim's related records (Cases, Tasks by WhoId, Contacts of an
        Account) are re-parented to the master, and the victim goes to the
        recycle bin with `MasterRecordId` set, which is how queryAll tells a
        merge from a delete. The master's own field values prevail.
        """
        if not 1 <= len(victim_ids) <= 2:
            raise error(400, "INVALID_ARGUMENT", "merge takes one master and one or two records to merge", [])
        master = self.find(schema.name, master_id)
        victims = [self.find(schema.name, victim)["Id"] for victim in victim_ids]
        if master["Id"] in victims:
            raise error(400, "INVALID_ID_FIELD", "cannot merge a record with itself", [])
        now = self.now()
        for sobject in self.state["records"]:
            child_schema = self.require_schema(sobject)
            for name, field in child_schema.fields.items():
                if field.type != "reference" or schema.name not in field.reference_to or name == "MasterRecordId" \
                        or name in SYSTEM_FIELDS:
                    continue
                for record in self.records_of(sobject):
                    if record.get(name) in victims:
                        self._store(sobject, {**record, name: master["Id"], "LastModifiedDate": now,
                                              "LastModifiedById": user_id, "SystemModstamp": now})
        for victim in victims:
            existing = self.find(schema.name, victim)
            self._store(schema.name, {**existing, "IsDeleted": True, "MasterRecordId": master["Id"],
                                      "LastModifiedDate": now, "LastModifiedById": user_id, "SystemModstamp": now})
        self._store(schema.name, {**self.find(schema.name, master["Id"]), "LastModifiedDate": now,
                                  "LastModifiedById": user_id, "SystemModstamp": now})

    def upsert(self, schema: SObjectSchema, field_name: str, value: str, values: dict[str, Any],
               user_id: str) -> tuple[str, bool]:
        """Create or update by external id; returns (id, created). 300 if several match."""
        field, existing = self.by_external_id(schema, field_name, value)
        values = {k: v for k, v in values.items() if k.lower() != field.name.lower()}
        if existing is not None:
            self.update(schema, existing["Id"], values, user_id)
            return str(existing["Id"]), False
        return self.create(schema, {**values, field.name: value}, user_id), True

    def by_external_id(self, schema: SObjectSchema, field_name: str,
                       value: str) -> tuple[Field, dict[str, Any] | None]:
        """The external-id field and the one live record with that value (None: no record).

        Several matches (an external id that is not unique) raise MultipleRecords (HTTP 300).
        """
        field = self.external_id_field(schema, field_name)
        matches = self.match_external(schema, field, value)
        if len(matches) > 1:
            raise MultipleRecords(field.name, [record_url(schema.name, i) for i in matches])
        return field, self.state["records"][schema.name][matches[0]] if matches else None

    def external_id_field(self, schema: SObjectSchema, field_name: str) -> Field:
        field = schema.get(field_name)
        if field is None or not field.external_id:
            raise error(404, "NOT_FOUND",
                        f"Provided external ID field does not exist or is not accessible: {field_name}")
        return field

    def match_external(self, schema: SObjectSchema, field: Field, value: str) -> list[str]:
        """Ids of the live records whose external id `field` equals `value` (case-insensitive)."""
        return self._index.lookup(self.state, schema.name, field, sort_key(field, value))

    # ---- validation -----------------------------------------------------------
    def _checked(self, schema: SObjectSchema, values: dict[str, Any], creating: bool,
                 audit: bool) -> dict[str, Any]:
        """The body's values, coerced and keyed by canonical name, or Salesforce's errors."""
        changes: dict[str, Any] = {}
        locked: list[str] = []
        problems: list[RecordError] = []
        for key, raw in values.items():
            if key == "attributes":
                continue
            field = schema.get(key)
            if field is None and isinstance(raw, dict):
                try:
                    field, raw = self._related(schema, key, raw, values)
                except _FieldProblem as problem:
                    problems.append(RecordError(problem.code, problem.detail, []))
                    continue
            if field is None:
                raise no_such_column(key, schema.name)
            allowed = field.createable if creating else field.updateable
            if not allowed and not (audit and field.name in _AUDIT_FIELDS):
                locked.append(field.name)
                continue
            try:
                changes[field.name] = self._coerce(field, raw)
            except _FieldProblem as problem:
                problems.append(RecordError(problem.code, f"{field.label}: {problem.detail}", [field.name]))
        if locked:
            problems.insert(0, RecordError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {'create' if creating else 'update'} fields: {', '.join(locked)}. Please check the "
                "security settings of this field and verify that it is read/write for your profile or permission set.",
                locked))
        if problems:
            raise SalesforceApiError(400, *problems)
        return changes

    def _coerce(self, field: Field, raw: Any) -> Any:
        """One value in its stored form, or _FieldProblem as Salesforce words it."""
        if raw is None:
            return None
        kind = field.type
        if field.text:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise _FieldProblem("INVALID_TYPE_ON_FIELD_IN_RECORD", f"value not of required type: {raw}")
            text = str(raw)
            if field.length and len(text) > field.length:
                raise _FieldProblem("STRING_TOO_LONG", f"data value too large: {text} (max length={field.length})")
            if kind == "email" and text and not _EMAIL_RE.match(text):
                raise _FieldProblem("INVALID_EMAIL_ADDRESS", f"invalid email address: {text}")
            return text
        if kind in ID_TYPES:
            return self._reference(field, raw)
        if kind == "boolean" and isinstance(raw, bool):
            return raw
        if kind in ("int", "double") and isinstance(raw, int | float) and not isinstance(raw, bool):
            if kind == "int" and raw != int(raw):
                raise _FieldProblem("INVALID_TYPE_ON_FIELD_IN_RECORD", f"value not of required type: {raw}")
            return int(raw) if kind == "int" else float(raw)
        if kind in ("date", "datetime") and isinstance(raw, str):
            return _parse_temporal(kind, raw)
        raise _FieldProblem("INVALID_TYPE_ON_FIELD_IN_RECORD", f"value not of required type: {raw}")

    def _reference(self, field: Field, raw: Any) -> str:
        record_id = normalize_id(raw)
        if record_id is None:
            raise _FieldProblem("MALFORMED_ID", f"id value of incorrect type: {raw}")
        target = OBJECTS_BY_PREFIX.get(record_id[:3])
        if target not in field.reference_to:
            raise _FieldProblem("FIELD_INTEGRITY_EXCEPTION", f"id value of incorrect type: {raw}")
        record = self.state["records"][target].get(record_id)
        if record is None or record["IsDeleted"]:
            raise _FieldProblem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        return record_id

    def _related(self, schema: SObjectSchema, key: str, raw: dict[str, Any],
                 values: dict[str, Any]) -> tuple[Field | None, str]:
        """A relationship given by the parent's external id (`"Who": {"attributes": {"type": "Contact"},
        "Ext__c": "v"}`): the reference field (WhoId) and the one live record's id.

        (None, raw) when `key` names no relationship, so the caller answers INVALID_FIELD.
        """
        field = schema.get(f"{key}Id")
        if field is None or field.type != "reference" or not key[:1].isalpha():
            return None, ""
        if any(k.lower() == field.name.lower() and v not in (None, "") for k, v in values.items()):
            raise _FieldProblem("INVALID_FIELD", f"Cannot specify both an external ID reference {key} and a "
                                f"salesforce id, {field.name}")
        attributes = raw.get("attributes")
        sobject = attributes.get("type") if isinstance(attributes, dict) else None
        if sobject is None and len(field.reference_to) == 1:
            sobject = field.reference_to[0]
        parent = self.schema(str(sobject)) if sobject else None
        if parent is None or parent.name not in field.reference_to:
            raise _FieldProblem("INVALID_FIELD", f"Invalid type {sobject} for the relationship {key} "
                                f"(one of {', '.join(field.reference_to)} in attributes.type)")
        keys = [(k, v) for k, v in raw.items() if k != "attributes"]
        ext = parent.get(keys[0][0]) if len(keys) == 1 else None
        if ext is None or not ext.external_id:
            raise _FieldProblem("INVALID_FIELD", f"The relationship {key} needs exactly one external ID field "
                                f"of {parent.name}")
        value = str(keys[0][1])
        matches = self.match_external(parent, ext, value)
        if not matches:
            raise _FieldProblem("INVALID_FIELD", f"Foreign key external ID: {value} not found for field "
                                f"{ext.name} in entity {parent.name}")
        if len(matches) > 1:
            raise _FieldProblem("INVALID_FIELD", f"Foreign key external ID: {value} matched more than one record "
                                f"for field {ext.name} in entity {parent.name}")
        return field, matches[0]

    def _check_complete(self, schema: SObjectSchema, record: dict[str, Any], own_id: str | None) -> None:
        """Required fields present and unique fields unique, over the whole record."""
        missing = [name for name, f in schema.fields.items()
                   if f.required and f.createable and record.get(name) in (None, "")]
        if missing:
            raise error(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for name, f in schema.fields.items():
            if f.unique and record.get(name) not in (None, ""):
                clash = [i for i in self.match_external(schema, f, record[name]) if i != own_id]
                if clash:
                    message = f"duplicate value found: {name} duplicates value on record with id: {clash[0][:15]}"
                    raise error(400, "DUPLICATE_VALUE", message, [])

    def _derive(self, sobject: str, record: dict[str, Any], before: dict[str, Any] | None) -> None:
        """Fields Salesforce computes: Name, CaseNumber, IsClosed, ClosedDate."""
        if sobject in ("Contact", "Lead"):
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        if sobject == "Case" and before is None:
            self.state["case_number"] += 1
            record["CaseNumber"] = f"{self.state['case_number']:08d}"
        if sobject in _CLOSED_STATUS:
            record["IsClosed"] = record.get("Status") == _CLOSED_STATUS[sobject]
        if sobject == "Case":
            was_closed = bool(before and before.get("IsClosed"))
            if record["IsClosed"] and not was_closed:
                record["ClosedDate"] = record["LastModifiedDate"]
            elif not record["IsClosed"]:
                record["ClosedDate"] = None

    def changed_between(self, schema: SObjectSchema, start: datetime, end: datetime,
                        deleted: bool) -> list[dict[str, Any]]:
        """Records whose SystemModstamp falls in [start, end), live ones or deleted ones."""
        return [r for r in self.records_of(schema.name, include_deleted=True)
                if r["IsDeleted"] == deleted and start <= datetime.fromisoformat(r["SystemModstamp"]) < end]

    # ---- queries ----------------------------------------------------------------
    def query(self, text: str, all_rows: bool, user_id: str, batch_size: int) -> QueryPage:
        """Run SOQL (SoqlError on bad SOQL); the first page, keeping a cursor for the rest."""
        compiled = compile_query(text, self.schema)
        rows = compiled.run(self.records_of(compiled.schema.name, include_deleted=all_rows))
        path = "queryAll" if all_rows else "query"
        if compiled.fields is None:  # SELECT COUNT(): only totalSize
            return QueryPage(compiled.schema.name, [], [], len(rows), None, path)
        cursor = {"sobject": compiled.schema.name, "ids": [r["Id"] for r in rows], "fields": compiled.fields,
                  "user_id": user_id, "path": path, "batch": batch_size}
        return self._page(cursor, 0)

    def query_more(self, locator: str) -> QueryPage:
        """The page at `locator` ("01g...-2000"), or INVALID_QUERY_LOCATOR."""
        key, _, offset = locator.rpartition("-")
        cursor = self.state["cursors"].get(key)
        if cursor is None or not offset.isdigit():
            raise error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(cursor, int(offset), key)

    def _page(self, cursor: dict[str, Any], offset: int, key: str | None = None) -> QueryPage:
        ids = cursor["ids"][offset:offset + cursor["batch"]]
        table = self.state["records"][cursor["sobject"]]
        end = offset + len(ids)
        cursors = self.state["cursors"]
        if end < len(cursor["ids"]):
            key = key or self._open_cursor(cursor)
            next_locator: str | None = f"{key}-{end}"
        else:
            cursors.pop(key or "", None)
            next_locator = None
        return QueryPage(cursor["sobject"], cursor["fields"], [table[i] for i in ids], len(cursor["ids"]),
                         next_locator, cursor["path"])

    def _open_cursor(self, cursor: dict[str, Any]) -> str:
        cursors = self.state["cursors"]
        mine = [k for k, c in cursors.items() if c["user_id"] == cursor["user_id"]]
        for stale in mine[:max(0, len(mine) - CURSORS_PER_USER + 1)]:
            del cursors[stale]
        key = self.new_id(QUERY_LOCATOR_PREFIX)
        cursors[key] = cursor
        return key

    # ---- logins and sessions ------------------------------------------------------
    def add_user(self, username: str, password: str, security_token: str, name: str, email: str) -> str:
        user_id = self._insert_user(username, name, email)
        self.state["logins"][username.lower()] = {"user_id": user_id, "password": password,
                                                  "security_token": security_token}
        return user_id

    def _insert_user(self, username: str, name: str, email: str) -> str:
        """User records are read-only over the API, so the seed writes them directly."""
        now = self.now()
        user_id = self.new_id(OBJECTS["User"].key_prefix)
        creator = self.integration_user_id() or user_id
        self._store("User", {"Id": user_id, "IsDeleted": False, "CreatedDate": now, "CreatedById": creator,
                             "LastModifiedDate": now, "LastModifiedById": creator, "SystemModstamp": now,
                             "Name": name, "Username": username, "Email": email, "IsActive": True})
        return user_id

    def integration_user_id(self) -> str | None:
        login = self.state["logins"].get(INTEGRATION_USERNAME)
        return None if login is None else str(login["user_id"])

    def login(self, username: str, password: str) -> str | None:
        """The user id if `password` is the user's password followed by their security token."""
        login = self.state["logins"].get(username.lower())
        if login is None or not secrets.compare_digest(password, login["password"] + login["security_token"]):
            return None
        return str(login["user_id"])

    def add_client(self, client_id: str, secret: str, user_id: str) -> None:
        self.state["clients"][client_id] = {"secret": secret, "user_id": user_id}

    def client(self, client_id: str) -> dict[str, Any] | None:
        client: dict[str, Any] | None = self.state["clients"].get(client_id)
        return client

    def issue_token(self, user_id: str) -> str:
        """A new session id (access token) for `user_id`, shaped like Salesforce's."""
        token = f"{self.state['org_id'][:15]}!{secrets.token_urlsafe(48)}"
        self.state["tokens"][token] = {"user_id": user_id, "last_used": self.clock.time()}
        return token

    def session_user(self, token: str) -> str | None:
        """The user of a live session, extending it; None if unknown or timed out."""
        session = self.state["tokens"].get(token)
        now = self.clock.time()
        if session is None:
            return None
        if self.session_timeout is not None and now - session["last_used"] > self.session_timeout:
            del self.state["tokens"][token]
            return None
        session["last_used"] = now
        return str(session["user_id"])

    # ---- the daily allowance ------------------------------------------------------------
    def api_usage(self) -> int:
        """Billable calls in the rolling 24 hours (Salesforce counts a rolling day)."""
        oldest = int(self.clock.time() // 60) - 24 * 60
        usage = self.state["usage"]
        for minute in [m for m in usage if int(m) <= oldest]:
            del usage[minute]
        return sum(usage.values())

    def count_calls(self, n: int = 1) -> None:
        minute = str(int(self.clock.time() // 60))
        self.state["usage"][minute] = self.state["usage"].get(minute, 0) + n


def _require_permission(schema: SObjectSchema, allowed: bool, done: str) -> None:
    """The object-level create/update/delete permission (User is read-only here)."""
    if not allowed:
        raise error(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"entity type cannot be {done}: {schema.type.label}")


class _ExternalIdIndex:
    """Live records by (object, field, comparable value), so upserts and uniqueness checks
    cost one lookup instead of a scan. Built lazily per field; dropped when the state
    dict is swapped (reset); kept true by `SalesforceBackend._put`.
    """

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None
        self._maps: dict[tuple[str, str], tuple[Field, dict[Any, dict[str, None]]]] = {}

    def lookup(self, state: dict[str, Any], sobject: str, field: Field, key: Any) -> list[str]:
        if state is not self._state:
            self._state, self._maps = state, {}
        if (sobject, field.name) not in self._maps:
            index: dict[Any, dict[str, None]] = {}
            for record in state["records"][sobject].values():
                if not record["IsDeleted"] and record.get(field.name) is not None:
                    index.setdefault(sort_key(field, record[field.name]), {})[record["Id"]] = None
            self._maps[(sobject, field.name)] = (field, index)
        return list(self._maps[(sobject, field.name)][1].get(key, {}))

    def changed(self, state: dict[str, Any], sobject: str, old: dict[str, Any] | None,
                new: dict[str, Any] | None) -> None:
        if state is not self._state:
            return
        for (indexed_object, name), (field, index) in self._maps.items():
            if indexed_object != sobject:
                continue
            if old is not None and old.get(name) is not None:
                index.get(sort_key(field, old[name]), {}).pop(old["Id"], None)
            if new is not None and not new["IsDeleted"] and new.get(name) is not None:
                index.setdefault(sort_key(field, new[name]), {})[new["Id"]] = None


class _FieldProblem(Exception):
    """A value one field rejects; the caller adds the field's label and name."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def _parse_temporal(kind: str, raw: str) -> str:
    """A date (YYYY-MM-DD) or dateTime (any ISO 8601, naive means UTC) in Salesforce's format."""
    try:
        if kind == "date":
            return date.fromisoformat(raw).isoformat()
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _FieldProblem("INVALID_TYPE_ON_FIELD_IN_RECORD", f"value not of required type: {raw}") from None
    return sf_datetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


__all__ = [
    "DEFAULT_API_MAX", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "INTEGRATION_PASSWORD", "INTEGRATION_USERNAME",
    "QUERY_BATCH_DEFAULT", "QUERY_BATCH_MIN", "SYSTEM_FIELDS", "QueryPage", "SalesforceBackend", "empty_state",
    "record_url", "sf_datetime",
]
