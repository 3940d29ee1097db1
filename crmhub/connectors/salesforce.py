"""Salesforce: contact mirror, queues, and history writes (simple-salesforce).

Retries: simple-salesforce has none of its own; the shared layer retries.
An expired session is renewed once by logging in again (the OAuth flow from
settings) before the call is retried.

Writes are batched and idempotent by construction: Cases are upserted by
`Crmhub_Conversation__c` (`<conversation>#<seq>`) and Tasks by
`Crmhub_Key__c` (crmhub's interaction key) through sObject Collections, 200
records per call, so a retry after a timeout updates instead of duplicating.
TaskSubtype is create-only: a Task the upsert finds is refused for it and
sent again without it, on any attempt (`_upsert_tasks`).
A closed Case the engine asks to reopen gets `Status` back to `New` (the
status crmhub opens Cases with) through one sObject Collections update per
batch; setting it twice is harmless.

Case states (`case_pages`): crmhub's own Cases (`Crmhub_Conversation__c !=
null`) changed since the cursor, by `SystemModstamp` like the contact
mirror, with `IsClosed` and `ClosedDate` (which Salesforce sets when a Case
closes and clears when it is reopened).

Replies (`reply_pages`): published CaseComments (`IsPublished = true`) by
`SystemModstamp` (so a comment published after it was written is read then),
oldest first, not created by crmhub's own user (`chatter/users/me`, read
once: the connector logs in as the integration user). SOQL here has no
relationship filters, so every published comment of the window is read and
the engine keeps those on crmhub's Cases. Notes (`add_case_note`): a
CaseComment with `IsPublished = false` (agents see it, the customer never
does), carrying the note's key on its last line; the Case's unpublished
comments are read first, so a retry never writes it twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError

from crmhub.connectors._base import Connector, classify_status, fit, fit_text
from crmhub.connectors._http import build_session
from crmhub.connectors._redact import vendor_error
from crmhub.connectors._retry import Retrier
from crmhub.errors import AuthError, ConnectorError, RateLimited, Rejected
from crmhub.identities import from_crm_field, mapping_kind
from crmhub.model import (
    AgentReply, CaseNote, CaseState, Channel, HistoryWrite, Identity, IdentityKind, MirrorRecord, ReplyPage,
    WriteOutcome, person_key,
)

T = TypeVar("T")
COLLECTION_LIMIT = 200  # records per sObject Collections call
TASK_KEY_FIELD = "Crmhub_Key__c"
CASE_KEY_FIELD = "Crmhub_Conversation__c"
CONTACT_KEY_FIELD = "Crmhub_Person__c"  # on Contact and Lead: a repeated create (lost answer, crash) finds the first
CREATE_ONLY_TASK_FIELDS = frozenset({"TaskSubtype"})  # createable, not updateable
CONTACT_PREFIX = "003"  # Contact ids start so; a Case's ContactId takes only those (not Leads)
SOQL_DATETIME = "%Y-%m-%dT%H:%M:%SZ"
# Published lengths of the text fields crmhub writes (a longer value is STRING_TOO_LONG): cut to fit first.
TASK_LIMITS = {"Subject": 255, "Description": 32_000}
CASE_LIMITS = {"Subject": 255, "Description": 32_000}
CONTACT_LIMITS = {"FirstName": 40, "LastName": 80}
CASE_COMMENT_LIMITS = {"CommentBody": 4_000}
OPEN_STATUS = "New"  # the Case Status crmhub opens and reopens Cases with


@dataclass(frozen=True)
class SalesforceAuth:
    """How to log in: `client_credentials` or `password` (OAuth 2.0 flows)."""

    flow: str
    client_id: str
    client_secret: str
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class ContactObject:
    """Which fields of one object (Contact, Lead) hold which identity kind."""

    name: str
    fields_by_kind: Mapping[str, Sequence[str]]  # "phone" -> ["Phone", "MobilePhone"]
    extra_fields: Sequence[str] = ()  # copied into the mirror for routing (e.g. Tier__c)


class SalesforceCrm(Connector):
    """One Salesforce org."""

    name = "salesforce"
    max_batch = COLLECTION_LIMIT  # outbox rows a delivery worker fills a batch with: one sObject Collections call

    def __init__(self, *, instance_url: str, auth: SalesforceAuth, objects: Sequence[ContactObject],
                 queues: Mapping[str, str] | None = None, base_url: str | None = None, api_version: str = "59.0",
                 default_region: str = "US", other_regions: Sequence[str] = (),
                 retrier: Retrier | None = None) -> None:
        """
        Args:
            objects: the contact-like objects to mirror and match (Contact, Lead).
            queues: routing queue name -> the queue's Group DeveloperName.
        """
        super().__init__(retrier)
        self.instance_url = instance_url.rstrip("/")
        self.auth = auth
        self.objects = {o.name: o for o in objects}
        self.queue_names = dict(queues or {})
        self.base_url = base_url
        self.api_version = api_version
        self.default_region = default_region
        self.other_regions = tuple(other_regions)  # tried for national numbers not valid in default_region
        self._sf: Salesforce | None = None
        self._queues: dict[str, str] | None = None
        self._fields: dict[str, frozenset[str]] = {}
        self._me: str | None = None

    # ---- SDK boundary --------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, SalesforceAuthenticationFailed):
            return AuthError(f"login failed: {vendor_error(str(exc.code), str(exc.message))}; "
                             "check crms.salesforce.auth", system=self.name, code=str(exc.code))
        if not isinstance(exc, SalesforceError):
            return None
        code, message, fields = _first_error(exc.content)
        text = f"HTTP {exc.status} {vendor_error(code, message, fields, labelled=True)}"
        if code == "REQUEST_LIMIT_EXCEEDED":
            return RateLimited(text, system=self.name, status=exc.status, code=code)
        return classify_status(exc.status, text, system=self.name, code=code)

    def _client(self) -> Salesforce:
        if self._sf is None:
            self._sf = self._login()
        return self._sf

    def _login(self) -> Salesforce:
        session = build_session(base_url=self.base_url, observer=self.observe_http, timeout=60,
                                before=self.before_http, after=self.after_http)
        common: dict[str, Any] = {"session": session, "version": self.api_version,
                                  "consumer_key": self.auth.client_id, "consumer_secret": self.auth.client_secret,
                                  "domain": _domain(self.instance_url)}
        if self.auth.flow == "password":
            return Salesforce(username=self.auth.username, password=self.auth.password, **common)
        return Salesforce(**common)

    def sf(self, operation: str, fn: Callable[[Salesforce], T]) -> T:
        """Run `fn(client)` through the retry layer, renewing an expired session once."""
        try:
            return self.call(operation, lambda: fn(self._client()))
        except AuthError as exc:
            if exc.code != "INVALID_SESSION_ID":
                raise
            self._sf = None
            return self.call(operation, lambda: fn(self._client()))

    def read_daily_allowance(self) -> tuple[int, int] | None:
        """(Max, Remaining) of `DailyApiRequests` from `GET /limits` (the org's rolling 24 hours)."""
        answer = self.sf("limits", lambda sf: sf.restful("limits"))
        daily = (answer or {}).get("DailyApiRequests") or {}
        if "Max" not in daily or "Remaining" not in daily:
            return None
        return int(daily["Max"]), int(daily["Remaining"])

    # ---- reads ---------------------------------------------------------------
    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Records of a SOQL query, one API page at a time."""
        result = self.sf("query", lambda sf: sf.query(soql))
        while True:
            yield [_plain(r) for r in result["records"]]
            if result.get("done", True):
                return
            next_url = result["nextRecordsUrl"]
            result = self.sf("query_more", lambda sf: sf.query_more(next_url, identifier_is_url=True))

    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]:
        """Contacts changed since the cursor, oldest change first, with the cursor after each page."""
        obj = self.objects[object_name]
        wanted = {"Id", "CreatedDate", "SystemModstamp", *obj.extra_fields,
                  *(f for names in obj.fields_by_kind.values() for f in names)}
        fields = sorted(wanted & self.field_names(object_name))
        where = [f"SystemModstamp >= {since}"] if since else []
        if object_name == "Lead":
            where.append("IsConverted = false")
        soql = (f"SELECT {', '.join(fields)} FROM {object_name}"
                + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY SystemModstamp ASC")
        for records in self.query_pages(soql):
            if records:
                mirrored = [self._mirror_record(obj, r) for r in records]
                yield mirrored, _soql_datetime(max(m.modified_at for m in mirrored))

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]:
        """crmhub's Cases changed since the cursor (all of them when None), oldest change first.

        The cursor is inclusive (`>=`), as for the contact mirror: a Case saved
        in the cursor's second is read again rather than skipped.
        """
        where = [f"{CASE_KEY_FIELD} != null"] + ([f"SystemModstamp >= {since}"] if since else [])
        soql = (f"SELECT Id, {CASE_KEY_FIELD}, IsClosed, ClosedDate, SystemModstamp FROM Case "
                f"WHERE {' AND '.join(where)} ORDER BY SystemModstamp ASC")
        for records in self.query_pages(soql):
            if records:
                states = [self._case_state(r) for r in records]
                yield states, _soql_datetime(max(s.modified_at for s in states))

    @staticmethod
    def _case_state(record: Mapping[str, Any]) -> CaseState:
        modified = _parse_datetime(record["SystemModstamp"])
        closed_at = None
        if record.get("IsClosed"):
            closed_at = _parse_datetime(record["ClosedDate"]) if record.get("ClosedDate") else modified
        return CaseState(case_key=str(record[CASE_KEY_FIELD]), record_id=str(record["Id"]), closed_at=closed_at,
                         modified_at=modified)

    def _mirror_record(self, obj: ContactObject, record: Mapping[str, Any]) -> MirrorRecord:
        identities: list[Identity] = []
        for kind, names in obj.fields_by_kind.items():
            for name in names:
                identity = from_crm_field(kind, record.get(name), self.default_region, self.other_regions)
                if identity is not None:
                    identities.append(identity)
        return MirrorRecord(
            crm=self.name, object_type=obj.name, record_id=record["Id"], identities=tuple(identities),
            fields={k: record.get(k) for k in obj.extra_fields},
            modified_at=_parse_datetime(record["SystemModstamp"]),
            created_at=_parse_datetime(record["CreatedDate"]) if record.get("CreatedDate") else None,
        )

    def field_names(self, object_name: str) -> frozenset[str]:
        """The object's field names (one describe call per object and connector).

        Routing may name a contact field only some objects have (Tier__c on
        Contact, not Lead); asking for it on the others would fail the query.
        """
        if object_name not in self._fields:
            described = self.sf("describe", lambda sf: sf.restful(f"sobjects/{object_name}/describe"))
            self._fields[object_name] = frozenset(f["name"] for f in (described or {}).get("fields", []))
        return self._fields[object_name]

    def queue_ids(self) -> dict[str, str]:
        """Queue DeveloperName -> Group Id, read once per connector."""
        if self._queues is None:
            soql = "SELECT Id, DeveloperName FROM Group WHERE Type = 'Queue'"
            self._queues = {r["DeveloperName"]: r["Id"] for page in self.query_pages(soql) for r in page}
        return self._queues

    # ---- replies -------------------------------------------------------------
    def reply_pages(self, cursor: str | None, *, start: datetime) -> Iterator[ReplyPage]:
        """Published CaseComments changed since `cursor` (a SOQL datetime; None: since `start`), oldest first."""
        me = self.my_user_id()
        since = cursor or _soql_datetime(start)
        soql = ("SELECT Id, ParentId, CommentBody, CreatedById, CreatedDate, SystemModstamp FROM CaseComment "
                f"WHERE IsPublished = true AND SystemModstamp >= {since} ORDER BY SystemModstamp ASC")
        newest = since
        pages = self.query_pages(soql)
        for records in pages:
            replies = tuple(
                AgentReply(crm=self.name, reply_ref=r["Id"], case_id=r["ParentId"], text=r.get("CommentBody") or "",
                           written_at=_parse_datetime(r["CreatedDate"]), author=r.get("CreatedById") or "")
                for r in records if r.get("CreatedById") != me)
            if records:
                newest = max(newest, _soql_datetime(max(_parse_datetime(r["SystemModstamp"]) for r in records)))
            yield ReplyPage(replies, newest, last=False)
        yield ReplyPage((), newest, last=True)

    def my_user_id(self) -> str:
        """The user crmhub acts as (its comments are never agents' replies), read once."""
        if self._me is None:
            self._me = str(self.sf("users.me", lambda sf: sf.restful("chatter/users/me"))["id"])
        return self._me

    def add_case_note(self, note: CaseNote) -> None:
        """An unpublished CaseComment on the Case, written once (its key is on the comment's last line).

        Each try reads the Case's unpublished comments before creating, so a
        retry after a lost answer finds the comment the first try made.
        """
        marker = f"[{note.key}]"
        soql = (f"SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '{_soql_string(note.case_id)}' "
                "AND IsPublished = false")
        # The key marker ends the body and must survive the cut, or a retry would not find the note.
        room = CASE_COMMENT_LIMITS["CommentBody"] - len(marker) - 1
        body = f"{fit_text(note.text, room, utf16=True)}\n{marker}"

        def write(sf: Salesforce) -> None:
            if any(marker in (r.get("CommentBody") or "") for r in sf.query_all(soql)["records"]):
                return
            sf.CaseComment.create({"ParentId": note.case_id, "CommentBody": body, "IsPublished": False})

        self.sf("casecomment.note", write)

    # ---- writes --------------------------------------------------------------
    def write_history(self, writes: Sequence[HistoryWrite]) -> list[WriteOutcome]:
        """Create missing contacts, upsert new cases, reopen closed ones, upsert one Task per write."""
        contacts, contact_errors = self._create_contacts(writes)
        cases, case_errors = self._upsert_cases(writes, contacts)
        reopen_errors = self._reopen_cases(writes)
        ready: list[HistoryWrite] = []
        outcomes: dict[str, WriteOutcome] = {}
        for write in writes:
            error = contact_errors.get(write.person_id) or (case_errors.get(write.new_case.key)
                                                             if write.new_case else None)
            if error is None and write.reopen is not None and write.case_id:
                error = reopen_errors.get(write.case_id)
            if error is not None:
                outcomes[write.key] = WriteOutcome(write.key, error=error)
            else:
                ready.append(write)
        tasks = [self._task(w, contacts, cases) for w in ready]
        case_errors = self._move_cases([w for w in ready if w.relink])
        for write, result in zip(ready, self._upsert_tasks(ready, tasks), strict=True):
            record_id, error = result
            error = error or (case_errors.get(write.case_id) if write.case_id else None)
            outcomes[write.key] = WriteOutcome(
                write.key, record_id=record_id, error=error,
                contact_id=write.contact_id or contacts.get(write.person_id),
                case_id=write.case_id or (cases.get(write.new_case.key) if write.new_case else None))
        return [outcomes[w.key] for w in writes]

    def _upsert_tasks(self, writes: Sequence[HistoryWrite], tasks: list[dict[str, Any]]
                      ) -> list[tuple[str | None, Exception | None]]:
        """Upsert Tasks by crmhub's key; a Task that exists already is updated without its create-only fields.

        TaskSubtype can be set only on insert, and an upsert that finds its
        Task is an update. A relink always finds its Task. Any other write may
        too, whatever its attempt counter says: an earlier try's answer was
        lost (in this call or a former one), the state store is new in front
        of an org crmhub wrote to, a dead letter is replayed. Salesforce
        refuses just those records, naming the field; they are sent once more
        without it in the same write. The common case (no Task yet) costs one
        call, a found Task one more.
        """
        bodies = [_updatable(t) if w.relink else t for w, t in zip(writes, tasks, strict=True)]
        entries = self._collection_entries("PATCH", f"composite/sobjects/Task/{TASK_KEY_FIELD}", bodies)
        results = [(record_id, error) for record_id, error, _ in entries]
        again = [i for i, (_, error, fields) in enumerate(entries)
                 if isinstance(error, Rejected) and error.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
                 and CREATE_ONLY_TASK_FIELDS & fields & set(bodies[i])]
        if again:
            for i, result in zip(again, self._collection_upsert("Task", TASK_KEY_FIELD,
                                                                [_updatable(bodies[i]) for i in again]), strict=True):
                results[i] = result
        return results

    def _move_cases(self, relinks: Sequence[HistoryWrite]) -> dict[str, Exception]:
        """After an identity merge: point each relinked Case at the primary Contact (one collections call)."""
        moves = {w.case_id: w.contact_id for w in relinks
                 if w.case_id and w.contact_id and w.contact_id.startswith(CONTACT_PREFIX)}
        records = [{"attributes": {"type": "Case"}, "id": case_id, "ContactId": contact_id}
                   for case_id, contact_id in moves.items()]
        results = self._collection("PATCH", "composite/sobjects", records) if records else []
        return {case_id: error for case_id, (_, error) in zip(moves, results, strict=True) if error is not None}

    def _create_contacts(self, writes: Sequence[HistoryWrite]) -> tuple[dict[int, str], dict[int, Exception]]:
        """Upsert each new person's Contact or Lead by crmhub's person key, one collections call per object.

        An upsert, not a create: when an earlier attempt's answer was lost, or the
        daemon died before recording the link, the retry finds that record
        instead of making a second one.
        """
        wanted: dict[str, dict[int, HistoryWrite]] = defaultdict(dict)
        for write in writes:
            if write.contact_id is None and write.new_contact:
                wanted[self.objects[write.contact_object].name].setdefault(write.person_id, write)
        created: dict[int, str] = {}
        errors: dict[int, Exception] = {}
        for sobject, of_person in wanted.items():
            records = [self._contact_fields(w) for w in of_person.values()]
            results = self._collection_upsert(sobject, CONTACT_KEY_FIELD, records)
            for person_id, (record_id, error) in zip(of_person, results, strict=True):
                if error is not None:
                    errors[person_id] = error
                else:
                    created[person_id] = record_id  # type: ignore[assignment]  # set when no error
        return created, errors

    def _contact_fields(self, write: HistoryWrite) -> dict[str, Any]:
        obj = self.objects[write.contact_object]
        fields: dict[str, Any] = {"attributes": {"type": obj.name}, CONTACT_KEY_FIELD: person_key(write.person_id)}
        for identity in write.new_contact:
            names = obj.fields_by_kind.get(mapping_kind(identity.kind), ())
            if names and names[0] not in fields:
                fields[names[0]] = identity.display if identity.kind is IdentityKind.X else identity.value
        fields["LastName"] = write.new_contact[0].display or write.new_contact[0].value
        if obj.name == "Lead":
            fields.setdefault("Company", "Unknown (created by crmhub)")
        return fit(fields, CONTACT_LIMITS, utf16=True)

    def _upsert_cases(self, writes: Sequence[HistoryWrite], contacts: Mapping[int, str]
                      ) -> tuple[dict[str, str], dict[str, Exception]]:
        specs: dict[str, dict[str, Any]] = {}
        errors: dict[str, Exception] = {}
        queues = self.queue_ids() if any(w.new_case for w in writes) else {}
        refreshed = False
        for write in writes:
            spec = write.new_case
            if spec is None or spec.key in specs or spec.key in errors:
                continue
            record: dict[str, Any] = {"attributes": {"type": "Case"}, CASE_KEY_FIELD: spec.key,
                                      "Status": OPEN_STATUS, "Origin": write.interaction.channel.label, **spec.fields}
            record = fit(record, CASE_LIMITS, utf16=True)
            developer_name = self.queue_names.get(spec.target.queue, spec.target.queue)
            if developer_name not in queues and not refreshed:
                self._queues, refreshed = None, True  # an admin may have created it since: look again, once
                queues = self.queue_ids()
            if developer_name not in queues:
                errors[spec.key] = Rejected(
                    f"queue {developer_name!r} (routing name {spec.target.queue!r}) does not exist in this org; "
                    "create the queue or fix queues.salesforce in mappings/routing.yaml", system=self.name)
                continue
            record["OwnerId"] = queues[developer_name]
            if spec.target.priority:
                record["Priority"] = spec.target.priority
            contact_id = write.contact_id or contacts.get(write.person_id)
            if contact_id and contact_id.startswith(CONTACT_PREFIX):
                record["ContactId"] = contact_id
            specs[spec.key] = record
        cases: dict[str, str] = {}
        results = self._collection_upsert("Case", CASE_KEY_FIELD, list(specs.values()))
        for key, (record_id, error) in zip(specs, results, strict=True):
            if error is not None:
                errors[key] = error
            else:
                cases[key] = record_id  # type: ignore[assignment]  # set when no error
        return cases, errors

    def _reopen_cases(self, writes: Sequence[HistoryWrite]) -> dict[str, Exception]:
        """Set the closed Cases the writes reopen back to `OPEN_STATUS`: errors by Case id."""
        ids = list(dict.fromkeys(w.case_id for w in writes if w.reopen is not None and w.case_id))
        records = [{"attributes": {"type": "Case"}, "id": case_id, "Status": OPEN_STATUS} for case_id in ids]
        return {case_id: error for case_id, (_, error) in zip(ids, self._collection_update(records), strict=True)
                if error is not None}

    def _task(self, write: HistoryWrite, contacts: Mapping[int, str], cases: Mapping[str, str]) -> dict[str, Any]:
        item = write.interaction
        task: dict[str, Any] = {
            "attributes": {"type": "Task"}, TASK_KEY_FIELD: write.key, "Status": "Completed",
            "TaskSubtype": "Call" if item.channel is Channel.CALL else "Task",
            "ActivityDate": item.occurred_at.astimezone(UTC).date().isoformat(),
            "WhoId": write.contact_id or contacts.get(write.person_id),
            "WhatId": write.case_id or (cases.get(write.new_case.key) if write.new_case else None),
            **write.fields,
        }
        task = fit(task, TASK_LIMITS, utf16=True)
        if item.call is not None:
            task["CallDurationInSeconds"] = item.call.duration_seconds
            task["CallType"] = "Inbound" if item.direction.value == "inbound" else "Outbound"
        return task

    def _collection_update(self, records: list[dict[str, Any]]) -> list[tuple[str | None, Exception | None]]:
        return self._collection("PATCH", "composite/sobjects", records)

    def _collection_upsert(self, sobject: str, key_field: str, records: list[dict[str, Any]]
                           ) -> list[tuple[str | None, Exception | None]]:
        return self._collection("PATCH", f"composite/sobjects/{sobject}/{key_field}", records)

    def _collection(self, method: str, path: str, records: list[dict[str, Any]]
                    ) -> list[tuple[str | None, Exception | None]]:
        """Send records through sObject Collections, 200 per call, one result per record."""
        return [(record_id, error) for record_id, error, _ in self._collection_entries(method, path, records)]

    def _collection_entries(self, method: str, path: str, records: list[dict[str, Any]]
                            ) -> list[tuple[str | None, Exception | None, frozenset[str]]]:
        """As `_collection`, with the fields each refusal names (empty for a success)."""
        results: list[tuple[str | None, Exception | None, frozenset[str]]] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start:start + COLLECTION_LIMIT]
            body = {"allOrNone": False, "records": chunk}
            answer = self.sf(f"collections.{method.lower()}",
                             lambda sf, body=body: sf.restful(path, method=method, json=body))  # type: ignore[misc]
            for entry in answer or []:
                if entry.get("success"):
                    results.append((entry.get("id"), None, frozenset()))
                else:
                    code, message, fields = _first_error(entry.get("errors"))
                    results.append((None, Rejected(vendor_error(code, message, fields, labelled=True),
                                                   system=self.name, code=code), frozenset(fields)))
        return results


# ---- helpers -------------------------------------------------------------------
def _domain(instance_url: str) -> str:
    """`https://acme.my.salesforce.com` -> `acme.my`, the SDK's login domain."""
    host = urlsplit(instance_url).hostname or "login"
    return host.removesuffix(".salesforce.com") or "login"


def _first_error(content: Any) -> tuple[str, str, list[str]]:
    """(errorCode, message, fields) of Salesforce's error list, whatever shape came back."""
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        fields = first.get("fields")
        return (str(first.get("errorCode") or first.get("statusCode") or ""), str(first.get("message", "")),
                [str(f) for f in fields] if isinstance(fields, list) else [])
    return "", str(content)[:200], []


def _updatable(task: Mapping[str, Any]) -> dict[str, Any]:
    """A Task body fit for updating an existing Task."""
    return {k: v for k, v in task.items() if k not in CREATE_ONLY_TASK_FIELDS}


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}




def _parse_datetime(value: str) -> datetime:
    """Salesforce's `2024-01-01T12:00:00.000+0000` as an aware datetime."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def _soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime(SOQL_DATETIME)


def _soql_string(value: str) -> str:
    """A value for a quoted SOQL literal (backslashes and quotes escaped)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")

