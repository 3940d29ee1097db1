"""Salesforce: contact mirror, queues, and history writes (simple-salesforce).

Retries: simple-salesforce has none of its own; the shared layer retries.
An expired session is renewed once by logging in again (the OAuth flow from
settings) before the call is retried.

Writes are batched and idempotent by construction: Contacts and Leads are
upserted by `Crmhub_Person__c`, Cases by `Crmhub_Conversation__c`
(`<conversation>#<seq>`) and Tasks by `Crmhub_Key__c` (crmhub's interaction
key) through sObject Collections requests, 200 records each, all carried by
one Composite call per batch (`salesforce_composite`), so a retry after a
timeout updates instead of duplicating. TaskSubtype is create-only: a Task
the upsert finds is refused for it and sent again without it, on any attempt
(`_retry_create_only`). A closed Case the engine asks to reopen gets `Status`
back to `New` (the status crmhub opens Cases with), and a relinked Case its
primary Contact, through one collections update in the same Composite;
setting them twice is harmless.

Mirror (`mirror_pages`): Contacts and Leads by `SystemModstamp` through
`queryAll`, so deleted ones come too (`IsDeleted`), and a merge's losers
with `MasterRecordId`, the survivor (`/sobjects/{O}/deleted` names none). A
Task or Case refused for its contact (`ENTITY_IS_DELETED`, or
`INVALID_CROSS_REFERENCE_KEY` on `WhoId`/`ContactId`) is `RecordGone`; a
Task refused for its Case (`INVALID_CROSS_REFERENCE_KEY` on `WhatId`:
deleted, or merged away) is `CaseGone`.

Case states (`case_pages`): crmhub's own Cases (`Crmhub_Conversation__c !=
null`) changed since the cursor, by `SystemModstamp` like the contact
mirror, with `IsClosed` and `ClosedDate` (which Salesforce sets when a Case
closes and clears when it is reopened), and the link field agents confirm
link suggestions in (`Crmhub_Link__c`, when the org has it) with
`LastModifiedById`, who set it.

Replies (`reply_pages`): published CaseComments (`IsPublished = true`) by
`SystemModstamp` (so a comment published after it was written is read then),
oldest first, not created by crmhub's own user (`chatter/users/me`, read
once: the connector logs in as the integration user). SOQL here has no
relationship filters, so every published comment of the window is read and
the engine keeps those on crmhub's Cases. Notes (`add_case_note`): a
CaseComment with `IsPublished = false` (agents see it, the customer never
does), carrying the note's key on its last line; the Case's unpublished
comments are read first, so a retry never writes it twice.

The replies read rides the write Composite (issue 13): while a batch goes
out anyway, its Composite also carries the replies query from the cursor
the engine was last handed (`salesforce_composite.Ride`), and the replies
job takes that answer instead of a call of its own when it asks from that
same cursor and the answer is at most `carried_reads_within` seconds old.
The answer is for an earlier moment, which a cursor read allows: what came
since is read next time. Another cursor (another daemon moved it, a
transaction failed) or an older answer: the job queries as before.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceError

from crmhub.connectors._base import Connector, classify_status, fit, fit_text
from crmhub.connectors._http import build_session
from crmhub.connectors._identity_fields import identity_field_updates
from crmhub.connectors._redact import vendor_error
from crmhub.connectors._retry import Retrier
from crmhub.connectors.salesforce_composite import (
    COLLECTION_LIMIT, Ride, Subrequest, composite_bodies, relationship, subrequest_results,
)
from crmhub.errors import (
    AuthError, CaseGone, ConnectorError, PermanentError, RateLimited, RecordGone, Rejected, TransientError,
)
from crmhub.identities import from_crm_field, mapping_kind
from crmhub.link_marks import read_field
from crmhub.model import (
    AgentReply, CaseNote, CaseState, Channel, HistoryWrite, Identity, IdentityKind, LinkMark, MirrorRecord,
    ReplyPage, WriteOutcome,
)

log = structlog.get_logger("crmhub.salesforce")

T = TypeVar("T")
K = TypeVar("K")
log = structlog.get_logger("crmhub.salesforce")
_Entry = tuple[str | None, Exception | None, frozenset[str]]  # (id, refusal, fields the refusal names)
TASK_KEY_FIELD = "Crmhub_Key__c"
CASE_KEY_FIELD = "Crmhub_Conversation__c"
LINK_FIELD = "Crmhub_Link__c"  # the default Case text field agents confirm link suggestions in
CONTACT_KEY_FIELD = "Crmhub_Person__c"  # on Contact and Lead: a repeated create (lost answer, crash) finds the first
CREATE_ONLY_TASK_FIELDS = frozenset({"TaskSubtype"})  # createable, not updateable
CONTACT_REFERENCES = frozenset({"WhoId", "ContactId"})  # a refused reference here: the contact is gone
CASE_REFERENCES = frozenset({"WhatId", "ParentId"})  # a refused reference here: the Case is gone
CONTACT_PREFIX = "003"  # Contact ids start so; a Case's ContactId takes only those (not Leads)
SOQL_DATETIME = "%Y-%m-%dT%H:%M:%SZ"
# OAuth token endpoint codes that mean "try later" (too many logins; RFC 6749's server errors), not bad credentials.
LOGIN_TRANSIENT = frozenset({"rate_limit_exceeded", "server_error", "temporarily_unavailable"})
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
    max_batch = COLLECTION_LIMIT  # outbox rows a delivery worker fills a batch with: one Composite call

    def __init__(self, *, instance_url: str, auth: SalesforceAuth, objects: Sequence[ContactObject],
                 queues: Mapping[str, str] | None = None, base_url: str | None = None, api_version: str = "59.0",
                 default_region: str = "US", other_regions: Sequence[str] = (),
                 link_field: str = LINK_FIELD, retrier: Retrier | None = None,
                 carried_reads_within: float = 0.0) -> None:
        """
        Args:
            objects: the contact-like objects to mirror and match (Contact, Lead).
            queues: routing queue name -> the queue's Group DeveloperName.
            link_field: the Case text field agents confirm link suggestions in (`crmhub.link_marks`).
            carried_reads_within: seconds a replies read carried by a write Composite stays good for the
                replies job (0: never carried; the app passes half of `replies.every`).
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
        self.link_field = link_field
        self._no_link_field = False  # the org refused the field: case states are read without it
        self.carried_reads_within = carried_reads_within
        self._carry = threading.Lock()
        self._reply_since: str | None = None  # the cursor the replies job was last handed: the next read's start
        self._carried: tuple[str, Mapping[str, Any], float] | None = None  # (since, first page, `clock` time)
        self.clock: Callable[[], float] = time.monotonic

    # ---- SDK boundary --------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, SalesforceAuthenticationFailed) and str(exc.code) in LOGIN_TRANSIENT:
            # The token endpoint's own "try later" answers (OAuth shape): wait and log in again.
            return TransientError(f"login: {vendor_error(str(exc.code), str(exc.message))}", system=self.name,
                                  code=str(exc.code))
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
    def query_pages(self, soql: str, *, include_deleted: bool = False,
                    first: Mapping[str, Any] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Records of a SOQL query, one API page at a time (`queryAll` with `include_deleted`).

        `first`: the query's first page, already read (a Composite carried it); the rest are read here.
        """
        operation = "query_all" if include_deleted else "query"
        result = first if first is not None else self.sf(
            operation, lambda sf: sf.query(soql, include_deleted=include_deleted))
        while True:
            yield [_plain(r) for r in result["records"]]
            if result.get("done", True):
                return
            next_url = result["nextRecordsUrl"]
            result = self.sf(f"{operation}_more", lambda sf: sf.query_more(next_url, identifier_is_url=True))

    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]:
        """Contacts changed since the cursor, oldest change first, with the cursor after each page.

        Read with `queryAll`, so records deleted or merged away since the
        cursor come too (`IsDeleted`, and `MasterRecordId` naming a merge's
        survivor): SOQL `query` never returns them. The first load skips them.
        """
        obj = self.objects[object_name]
        where = [f"SystemModstamp >= {since}"] if since else ["IsDeleted = false"]
        for records in self.query_pages(self._mirror_soql(obj, where), include_deleted=True):
            if records:
                mirrored = [self._mirror_record(obj, r) for r in records]
                yield mirrored, _soql_datetime(max(m.modified_at for m in mirrored))

    def record_fates(self, object_type: str, record_ids: Sequence[str]) -> list[MirrorRecord]:
        """These records as they stand now, deleted and merged ones included (one `queryAll` per 200 ids).

        What a write that found its record gone asks (`crmhub.sync.deliver`).
        """
        obj = self.objects.get(object_type)
        if obj is None:
            return []
        found: list[MirrorRecord] = []
        for start in range(0, len(record_ids), COLLECTION_LIMIT):
            ids = ", ".join(f"'{_soql_string(i)}'" for i in record_ids[start:start + COLLECTION_LIMIT])
            for records in self.query_pages(self._mirror_soql(obj, [f"Id IN ({ids})"]), include_deleted=True):
                found += [self._mirror_record(obj, r) for r in records]
        return found

    def _mirror_soql(self, obj: ContactObject, where: Sequence[str]) -> str:
        wanted = {"Id", "CreatedDate", "SystemModstamp", "IsDeleted", "MasterRecordId", *obj.extra_fields,
                  *(f for names in obj.fields_by_kind.values() for f in names)}
        fields = sorted(wanted & self.field_names(obj.name))
        # A converted Lead leaves the mirror (its Contact takes over); a deleted one is read to unlink it.
        conditions = [*where, *(["(IsConverted = false OR IsDeleted = true)"] if obj.name == "Lead" else [])]
        return (f"SELECT {', '.join(fields)} FROM {obj.name}"
                + (f" WHERE {' AND '.join(conditions)}" if conditions else "") + " ORDER BY SystemModstamp ASC")

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]:
        """crmhub's Cases changed since the cursor (all of them when None), oldest change first.

        The cursor is inclusive (`>=`), as for the contact mirror: a Case saved
        in the cursor's second is read again rather than skipped.
        """
        where = [f"{CASE_KEY_FIELD} != null"] + ([f"SystemModstamp >= {since}"] if since else [])
        link = None if self._no_link_field else self.link_field
        try:
            yield from self._case_state_pages(where, link)
        except Rejected as exc:
            # Asked for without a describe (no call spent in the usual case); an org without the field refuses the
            # query before its first page, so it is read again without it.
            if link is None or exc.code != "INVALID_FIELD":
                raise
            self._no_link_field = True
            log.warning("case field for link confirmations missing", crm=self.name, field=link,
                        fix=f"create the Text(255) custom field {link} on Case, or set crms.salesforce.link_field "
                            "to the one you have; until then agents cannot confirm links in Salesforce")
            yield from self._case_state_pages(where, None)

    def _case_state_pages(self, where: Sequence[str], link: str | None) -> Iterator[tuple[list[CaseState], str]]:
        soql = (f"SELECT Id, {CASE_KEY_FIELD}, IsClosed, ClosedDate, SystemModstamp, LastModifiedById"
                f"{', ' + link if link else ''} FROM Case WHERE {' AND '.join(where)} ORDER BY SystemModstamp ASC")
        for records in self.query_pages(soql):
            if records:
                states = [self._case_state(r, link) for r in records]
                yield states, _soql_datetime(max(s.modified_at for s in states))

    def _case_state(self, record: Mapping[str, Any], link: str | None) -> CaseState:
        modified = _parse_datetime(record["SystemModstamp"])
        closed_at = None
        if record.get("IsClosed"):
            closed_at = _parse_datetime(record["ClosedDate"]) if record.get("ClosedDate") else modified
        marks = read_field(record.get(link)) if link else []
        return CaseState(case_key=str(record[CASE_KEY_FIELD]), record_id=str(record["Id"]), closed_at=closed_at,
                         modified_at=modified, link_marks=tuple(
                             LinkMark(number, confirm, self._editor(record.get("LastModifiedById")))
                             for number, confirm in marks))

    def _editor(self, user_id: object) -> str:
        """Who set a Case's link field: its last modifier, unless that was crmhub itself (then just an agent)."""
        if isinstance(user_id, str) and user_id and user_id != self.my_user_id():
            return f"salesforce user {user_id}"
        return "agent in salesforce"

    def link_instruction(self, suggestion_id: int) -> str:
        """What an agent sets on the Case to confirm or reject a suggestion (the words `crmhub.link_marks` reads)."""
        return (f"To confirm, set the Case field {self.link_field} to \"confirm {suggestion_id}\"; "
                f"to reject, \"reject {suggestion_id}\".")

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
            deleted=bool(record.get("IsDeleted")), merged_into=record.get("MasterRecordId") or None,
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
        newest = since
        pages = self.query_pages(_reply_soql(since), first=self._carried_replies(since))
        for records in pages:
            replies = tuple(
                AgentReply(crm=self.name, reply_ref=r["Id"], case_id=r["ParentId"], text=r.get("CommentBody") or "",
                           written_at=_parse_datetime(r["CreatedDate"]), author=r.get("CreatedById") or "")
                for r in records if r.get("CreatedById") != me)
            if records:
                newest = max(newest, _soql_datetime(max(_parse_datetime(r["SystemModstamp"]) for r in records)))
            yield ReplyPage(replies, newest, last=False)
        with self._carry:
            self._reply_since = newest
        yield ReplyPage((), newest, last=True)

    def _carried_replies(self, since: str) -> Mapping[str, Any] | None:
        """The replies read a write Composite carried from `since`, if fresh enough (taken: used once)."""
        with self._carry:
            carried, self._carried = self._carried, None
        if carried is None or carried[0] != since or self.clock() - carried[2] > self.carried_reads_within:
            return None
        log.debug("replies read carried by a write", crm=self.name)
        return carried[1]

    def _replies_ride(self) -> tuple[str, Ride] | None:
        """The replies query for the next write Composite to carry, with its cursor (None: not carrying, or
        no cursor handed out yet)."""
        with self._carry:
            since = self._reply_since
        return (since, Ride("replies", _reply_soql(since))) if since and self.carried_reads_within > 0 else None

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

    SURVEY_FIELDS = {"csat": "Crmhub_CSAT__c", "nps": "Crmhub_NPS__c"}  # Number(2, 0) custom fields on Case

    def set_survey_score(self, record_id: str, kind: str, score: int) -> None:
        """The survey's score onto the Case (an update to a value: repeating it after a lost answer changes nothing)."""
        field = self.SURVEY_FIELDS[kind]
        self.sf("case.survey", lambda sf: sf.Case.update(record_id, {field: score}))

    # ---- writes --------------------------------------------------------------
    def write_history(self, writes: Sequence[HistoryWrite]) -> list[WriteOutcome]:
        """Create missing contacts, upsert new cases, reopen or move cases, upsert one Task per write.

        One Composite call per batch (`salesforce_composite`): contacts first,
        then Cases and Tasks naming new contacts (and Tasks their new Cases) by
        crmhub's external ids, so a contact Salesforce refuses fails only its
        own Case and Tasks. Every write is an upsert by crmhub's keys or an
        update to the same values, so a Composite resent after a lost answer
        finds what the first one did.

        Writes marked `adopt` (an earlier state store may have made them) are
        first looked for by key, one query per 200 (`_adopted`): a Task found
        is adopted as it is, not written again (its case not reopened, the
        Task not moved); only the others are sent.
        """
        adopted = self._adopted([w for w in writes if w.adopt])
        outcomes = self._write([w for w in writes if w.key not in adopted])
        return [adopted.get(w.key) or outcomes[w.key] for w in writes]

    def _adopted(self, writes: Sequence[HistoryWrite]) -> dict[str, WriteOutcome]:
        """The writes whose Task the org holds already (by `Crmhub_Key__c`), as adopted outcomes."""
        if not writes:
            return {}
        found: dict[str, Mapping[str, Any]] = {}
        keys = sorted({w.key for w in writes})
        for start in range(0, len(keys), COLLECTION_LIMIT):
            listed = ", ".join(f"'{_soql_string(k)}'" for k in keys[start:start + COLLECTION_LIMIT])
            soql = f"SELECT Id, {TASK_KEY_FIELD}, WhoId, WhatId FROM Task WHERE {TASK_KEY_FIELD} IN ({listed})"
            for records in self.query_pages(soql):
                found.update((str(r[TASK_KEY_FIELD]), r) for r in records)
        return {w.key: WriteOutcome(w.key, record_id=str(found[w.key]["Id"]),
                                    contact_id=w.contact_id or found[w.key].get("WhoId"),
                                    case_id=w.case_id or found[w.key].get("WhatId"), adopted="tasks")
                for w in writes if w.key in found}

    def _write(self, writes: Sequence[HistoryWrite]) -> dict[str, WriteOutcome]:
        """`write_history` for the writes to send: one outcome per write key."""
        if not writes:
            return {}
        new_people = self._new_people(writes)
        contacts = {sobject: {p: self._contact_fields(w) for p, w in of_person.items()}
                    for sobject, of_person in new_people.items()}
        objects = {p: sobject for sobject, of_person in new_people.items() for p in of_person}
        cases, case_errors = self._case_records(writes, objects)
        updates = self._case_updates(writes)
        ready = [w for w in writes if w.new_case is None or w.new_case.key not in case_errors]
        tasks = [self._task(w, objects) for w in ready]
        bodies = [_updatable(t) if w.relink else t for w, t in zip(ready, tasks, strict=True)]
        subrequests = [Subrequest(f"contacts_{sobject}", "PATCH", f"composite/sobjects/{sobject}/{CONTACT_KEY_FIELD}",
                                  list(records.values())) for sobject, records in contacts.items()]
        renamed = self._contact_updates(writes)
        subrequests += [Subrequest("contact_updates", "PATCH", "composite/sobjects", list(renamed.values())),
                        Subrequest("cases", "PATCH", f"composite/sobjects/Case/{CASE_KEY_FIELD}", list(cases.values())),
                        Subrequest("case_updates", "PATCH", "composite/sobjects", list(updates.values())),
                        Subrequest("tasks", "PATCH", f"composite/sobjects/Task/{TASK_KEY_FIELD}", bodies)]
        results = self._send(subrequests)

        created: dict[int, str] = {}
        errors_of_person: dict[int, Exception] = {}
        for sobject, records in contacts.items():
            _split(zip(records, results[f"contacts_{sobject}"], strict=True), created, errors_of_person)
        refused: dict[str, Exception] = {}
        _split(zip(renamed, results["contact_updates"], strict=True), {}, refused)
        for record_id, error in refused.items():  # the history goes on; the field is set again with the next write
            log.warning("contact field not updated", crm=self.name, record=record_id, reason=str(error)[:200])
        case_ids: dict[str, str] = {}
        _split(zip(cases, results["cases"], strict=True), case_ids, case_errors)
        update_errors: dict[str, Exception] = {}
        _split(zip(updates, results["case_updates"], strict=True), {}, update_errors)
        # A Case update (a reopen) refused as deleted: the Case itself is gone (a gone contact names its field).
        update_errors = {case: CaseGone(str(e), system=self.name, code=e.code)
                         if isinstance(e, RecordGone) and e.code == "ENTITY_IS_DELETED" else e
                         for case, e in update_errors.items()}
        task_results = self._retry_create_only(bodies, results["tasks"])
        ready_keys = {w.key for w in ready}
        outcomes = {w.key: WriteOutcome(w.key, error=case_errors[w.new_case.key])  # type: ignore[union-attr]
                    for w in writes if w.key not in ready_keys}  # refused before sending: no Task written
        for write, (record_id, task_error) in zip(ready, task_results, strict=True):
            error = (errors_of_person.get(write.person_id)
                     or (case_errors.get(write.new_case.key) if write.new_case else None)
                     or (update_errors.get(write.case_id) if write.case_id else None) or task_error)
            outcomes[write.key] = WriteOutcome(
                write.key, record_id=record_id, error=error,
                contact_id=write.contact_id or created.get(write.person_id),
                case_id=write.case_id or (case_ids.get(write.new_case.key) if write.new_case else None))
        return outcomes

    def _send(self, subrequests: Sequence[Subrequest]) -> dict[str, list[_Entry]]:
        """Each subrequest's per-record results, by reference id, through as few Composite calls as fit.

        A subrequest that fails as a whole (halted, refused) is sent again on
        its own, as a collections call for just its records:
        upserts by key and updates to the same values, safe to repeat.
        """
        results: dict[str, list[_Entry]] = {sub.reference_id: [] for sub in subrequests}
        origin = {piece.reference_id: sub.reference_id for sub in subrequests for piece in sub.chunks()}
        since, ride = self._replies_ride() or (None, None)
        for group, body in composite_bodies(self.api_version, subrequests, ride):
            answer = self.sf("composite", lambda sf, body=body: sf.restful(  # type: ignore[misc]
                "composite", method="POST", json=body))
            carried = ride.answer(answer) if ride is not None else None
            if since is not None and carried is not None:
                with self._carry:
                    self._carried = (since, carried, self.clock())
            for piece, entries in zip(group, subrequest_results(answer, group), strict=True):
                parsed = (self._collection_entries(piece.method, piece.path, piece.records) if entries is None
                          else [self._entry(e) for e in entries])
                results[origin[piece.reference_id]].extend(parsed)
        return results

    def _retry_create_only(self, bodies: list[dict[str, Any]], entries: list[_Entry]
                           ) -> list[tuple[str | None, Exception | None]]:
        """Task upsert results, with the Tasks refused for a create-only field sent once more without it.

        TaskSubtype can be set only on insert, and an upsert that finds its
        Task is an update. A relink always finds its Task. Any other write may
        too, whatever its attempt counter says: an earlier try's answer was
        lost (in this call or a former one), the state store is new in front
        of an org crmhub wrote to, a dead letter is replayed. Salesforce
        refuses just those records, naming the field; they are sent once more
        without it in the same write. The common case (no Task yet) costs no
        call of its own, a found Task one more.
        """
        results = [(record_id, error) for record_id, error, _ in entries]
        again = [i for i, (_, error, fields) in enumerate(entries)
                 if isinstance(error, Rejected) and error.code == "INVALID_FIELD_FOR_INSERT_UPDATE"
                 and CREATE_ONLY_TASK_FIELDS & fields & set(bodies[i])]
        if again:
            for i, result in zip(again, self._collection_upsert("Task", TASK_KEY_FIELD,
                                                                [_updatable(bodies[i]) for i in again]), strict=True):
                results[i] = result
        return results

    def _new_people(self, writes: Sequence[HistoryWrite]) -> dict[str, dict[int, HistoryWrite]]:
        """The persons whose Contact or Lead this batch creates, by object: the first write of each.

        An upsert by crmhub's person key, not a create: when an earlier
        attempt's answer was lost, or the daemon died before recording the
        link, the retry finds that record instead of making a second one.
        """
        wanted: dict[str, dict[int, HistoryWrite]] = defaultdict(dict)
        for write in writes:
            if write.contact_id is None and write.new_contact:
                wanted[self.objects[write.contact_object].name].setdefault(write.person_id, write)
        return wanted

    def _contact_fields(self, write: HistoryWrite) -> dict[str, Any]:
        obj = self.objects[write.contact_object]
        fields: dict[str, Any] = {"attributes": {"type": obj.name}, CONTACT_KEY_FIELD: write.person_key()}
        for identity in write.new_contact:
            names = obj.fields_by_kind.get(mapping_kind(identity.kind), ())
            if names and names[0] not in fields:
                fields[names[0]] = identity.display if identity.kind is IdentityKind.X else identity.value
        fields["LastName"] = write.new_contact[0].display or write.new_contact[0].value
        if obj.name == "Lead":
            fields.setdefault("Company", "Unknown (created by crmhub)")
        return fit(fields, CONTACT_LIMITS, utf16=True)

    def _case_records(self, writes: Sequence[HistoryWrite], new_people: Mapping[int, str]
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, Exception]]:
        """The Cases to upsert by key, and the refusals known before sending (a queue the org lacks)."""
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
            if write.contact_id:
                if write.contact_id.startswith(CONTACT_PREFIX):  # a Case's ContactId takes Contacts, not Leads
                    record["ContactId"] = write.contact_id
            elif new_people.get(write.person_id) == "Contact":
                record["Contact"] = relationship("Contact", CONTACT_KEY_FIELD, write.person_key())
            specs[spec.key] = record
        return specs, errors

    def _contact_updates(self, writes: Sequence[HistoryWrite]) -> dict[str, dict[str, Any]]:
        """One update per existing Contact or Lead whose identity fields the engine asks to set (a renamed X
        handle into the object's first field of that kind); setting them twice is harmless."""
        return {record: {"attributes": {"type": obj.name}, "id": record, **fields}
                for record, (obj, fields) in identity_field_updates(writes, self.objects).items()}

    def _case_updates(self, writes: Sequence[HistoryWrite]) -> dict[str, dict[str, Any]]:
        """One update per Case: `OPEN_STATUS` for a reopen, the primary Contact after an identity merge."""
        updates: dict[str, dict[str, Any]] = {}
        for write in writes:
            if not write.case_id:
                continue
            if write.reopen is not None:
                updates.setdefault(write.case_id, {"attributes": {"type": "Case"}, "id": write.case_id}
                                   )["Status"] = OPEN_STATUS
            if write.relink and write.contact_id and write.contact_id.startswith(CONTACT_PREFIX):
                updates.setdefault(write.case_id, {"attributes": {"type": "Case"}, "id": write.case_id}
                                   )["ContactId"] = write.contact_id
        return updates

    def _task(self, write: HistoryWrite, new_people: Mapping[int, str]) -> dict[str, Any]:
        item = write.interaction
        task: dict[str, Any] = {
            "attributes": {"type": "Task"}, TASK_KEY_FIELD: write.key, "Status": "Completed",
            "TaskSubtype": "Call" if item.channel is Channel.CALL else "Task",
            "ActivityDate": item.occurred_at.astimezone(UTC).date().isoformat(),
            **write.fields,
        }
        if write.contact_id or write.person_id not in new_people:
            task["WhoId"] = write.contact_id
        else:
            task["Who"] = relationship(new_people[write.person_id], CONTACT_KEY_FIELD, write.person_key())
        if write.case_id or write.new_case is None:
            task["WhatId"] = write.case_id
        else:
            task["What"] = relationship("Case", CASE_KEY_FIELD, write.new_case.key)
        task = fit(task, TASK_LIMITS, utf16=True)
        if item.call is not None:
            task["CallDurationInSeconds"] = item.call.duration_seconds
            task["CallType"] = "Inbound" if item.direction.value == "inbound" else "Outbound"
        return task

    def _collection_upsert(self, sobject: str, key_field: str, records: list[dict[str, Any]]
                           ) -> list[tuple[str | None, Exception | None]]:
        path = f"composite/sobjects/{sobject}/{key_field}"
        return [(record_id, error) for record_id, error, _ in self._collection_entries("PATCH", path, records)]

    def _collection_entries(self, method: str, path: str, records: list[dict[str, Any]]) -> list[_Entry]:
        """Send records through sObject Collections, 200 per call: one (id, error, fields refused) per record."""
        results: list[_Entry] = []
        for start in range(0, len(records), COLLECTION_LIMIT):
            chunk = records[start:start + COLLECTION_LIMIT]
            body = {"allOrNone": False, "records": chunk}
            answer = self.sf(f"collections.{method.lower()}",
                             lambda sf, body=body: sf.restful(path, method=method, json=body))  # type: ignore[misc]
            results.extend(self._entry(entry) for entry in answer or [])
        return results

    def _entry(self, entry: Mapping[str, Any]) -> _Entry:
        """One SaveResult/UpsertResult: (id, None, {}) or (None, the refusal, the fields it names)."""
        if entry.get("success"):
            return entry.get("id"), None, frozenset()
        code, message, fields = _first_error(entry.get("errors"))
        return None, self._refusal(code, message, fields), frozenset(fields)

    def _refusal(self, code: str, message: str, fields: Sequence[str]) -> PermanentError:
        """A record Salesforce refused; `RecordGone` when the contact it points to was deleted or merged away,
        `CaseGone` when its Case was."""
        text = vendor_error(code, message, fields, labelled=True)
        if code == "INVALID_CROSS_REFERENCE_KEY" and CASE_REFERENCES & set(fields) and not CONTACT_REFERENCES & set(
                fields):
            return CaseGone(text, system=self.name, code=code)
        if code == "ENTITY_IS_DELETED" or (code == "INVALID_CROSS_REFERENCE_KEY" and CONTACT_REFERENCES & set(fields)):
            return RecordGone(text, system=self.name, code=code)
        return Rejected(text, system=self.name, code=code)


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


def _split(results: Iterable[tuple[K, _Entry]], ids: dict[K, str], errors: dict[K, Exception]) -> None:
    """Sort per-record results into ids and errors by their key."""
    for key, (record_id, error, _) in results:
        if error is not None:
            errors[key] = error
        elif record_id is not None:
            ids[key] = record_id


def _updatable(task: Mapping[str, Any]) -> dict[str, Any]:
    """A Task body fit for updating an existing Task."""
    return {k: v for k, v in task.items() if k not in CREATE_ONLY_TASK_FIELDS}


def _plain(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}




def _parse_datetime(value: str) -> datetime:
    """Salesforce's `2024-01-01T12:00:00.000+0000` as an aware datetime.

    `fromisoformat` reads that shape in a fraction of `strptime`'s time (a
    mirror page has up to 2000); anything else still goes through `strptime`.
    """
    if len(value) == 28 and value[10] == "T" and value[19] == "." and value[23] in "+-":
        return datetime.fromisoformat(value)
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def _soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime(SOQL_DATETIME)


def _reply_soql(since: str) -> str:
    """Published CaseComments changed since `since` (a SOQL datetime), oldest first: agents' replies."""
    return ("SELECT Id, ParentId, CommentBody, CreatedById, CreatedDate, SystemModstamp FROM CaseComment "
            f"WHERE IsPublished = true AND SystemModstamp >= {since} ORDER BY SystemModstamp ASC")


def _soql_string(value: str) -> str:
    """A value for a quoted SOQL literal (backslashes and quotes escaped)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")

