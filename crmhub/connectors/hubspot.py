"""HubSpot: contact mirror, ticket routing and history writes (hubspot-api-client).

Retries: the SDK's own are switched off and crmhub's layer retries.
hubspot-api-client hands its `retry=` setting to urllib3, whose default
`Retry(3)` silently repeats idempotent calls after a dropped connection and
sleeps out the Retry-After of a 429/503: a second, hidden retry layer. So the
client is built as
``HubSpot(access_token=..., host=url, base_url=url, retry=Retry(total=0))``
(urllib3 sends each request once) and every call passes
``_request_timeout=<timeout>`` because the SDK has no timeout of its own.
Every SDK call runs inside `Connector.call`, the one retry layer.

Mirror: the contacts search API, sorted by `lastmodifieddate` ascending with
an inclusive (GTE) filter on the cursor, paged by `after`. A search query
reaches 10,000 results at most, so past that the search starts again from the
last `lastmodifieddate` seen. The first load is the same search without the
filter. Search never shows archived or merged-away contacts: a merge makes a
new record whose `hs_merged_object_ids` names both old ids (gone, merged
into it), and archived contacts come from the `archived=true` list after the
search. An activity refused because its contact no longer exists is
`RecordGone`; because its ticket no longer exists (archived, merged away),
`CaseGone`.

Case states: the same search over tickets that have `crmhub_conversation`,
by `hs_lastmodifieddate`. A ticket is closed when its pipeline stage's
metadata says `ticketState: CLOSED` (pipelines are read once, and again when
a ticket names a stage not seen yet); its close time is `closed_date`, which
HubSpot sets when a ticket enters a closed stage, else its last modification.
The ticket property `crmhub_link` (created if missing, not unique) holds an
agent's "confirm N" / "reject N" on link suggestion N.

Writes are batched (100 inputs per call at most) and idempotent:

* contacts: batch create under the unique custom property `crmhub_person`
  (`person_key`), so a lost answer or a crash never makes a second one; a
  create refused because another contact holds one of its unique values (an
  email) uses the contact a search finds holding its identities;
* tickets: batch create under the unique custom property
  `crmhub_conversation` (`CaseSpec.key`), routed to the queue's pipeline,
  stage and owner, associated with their contact inline; a closed ticket the
  engine asks to reopen goes back to its queue's pipeline and stage by batch
  update (its owner stays);
* activities: batch create under the unique custom property `crmhub_key`
  (`HistoryWrite.key`) as communications (SMS, WhatsApp), calls, emails
  (email), or notes (anything else), associated with their contact and
  ticket inline (v3 create inputs take `associations`; upsert inputs do not,
  hence create).

A create never makes a second copy: a record that may exist already (not
the write's first attempt, a retry after a lost answer, a create refused
with 409 CONFLICT because the key is taken) is looked for by its key with
one batch read, and what is found gets its associations by v4 "associate
default" batches, which merge, so repeating them is harmless. Association
calls remain only there and for relinks (a ticket moved to the primary
contact after an identity merge).

Every object input carries an `objectWriteTraceId`, HubSpot's opt-in to
multi-status answers, so one bad input fails alone instead of the batch. The
custom key properties are created (unique text) the first time they are
missing.

Replies (`reply_pages`): what an agent sends a customer in HubSpot is an
outbound message logged as a *communication* (the Communications API's
SMS, WhatsApp or LinkedIn message, `hs_communication_logged_from: CRM`;
the timeline's "Log SMS/WhatsApp" does the same) on the ticket. A
communication has no direction property, so crmhub takes every communication
associated with one of its tickets that it did not write itself (crmhub's
own carry `crmhub_key`) as an agent's reply. They are read with the search
API (`hs_createdate >= cursor`, `crmhub_key` NOT_HAS_PROPERTY, oldest
first) and their tickets with one v4 batch association read per page. A
communication created without its ticket association (two API calls) is
read again while it is younger than `ASSOCIATION_GRACE`: the cursor stays
at it. Emails are never read as replies: an email on a ticket that crmhub
did not write was sent by HubSpot itself (an agent's connected inbox), and
sending it again would send it twice. Notes (`add_case_note`): a note
upserted by `crmhub_key` and associated with the ticket, so a retry writes
it once.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import structlog
import urllib3.exceptions
from hubspot import HubSpot
from urllib3.util.retry import Retry

from crmhub.connectors._base import Connector, classify_status, fit, retry_after_seconds
from crmhub.connectors._identity_fields import identity_field_updates
from crmhub.connectors._redact import vendor_error
from crmhub.connectors._retry import Retrier
from crmhub.connectors.salesforce import ContactObject
from crmhub.errors import CaseGone, ConnectorError, NotFound, PermanentError, RecordGone, Rejected, Timeout
from crmhub.identities import from_crm_field, mapping_kind, normal_handle
from crmhub.link_marks import read_field
from crmhub.model import (
    AgentReply,
    CaseNote,
    CaseState,
    LinkMark,
    Channel,
    Direction,
    HistoryWrite,
    Identity,
    IdentityKind,
    Interaction,
    MirrorRecord,
    ReplyPage,
    WriteOutcome,
)

log = structlog.get_logger("crmhub.hubspot")
BATCH_LIMIT = 100  # inputs per batch call (objects and v4 associations)
SEARCH_PAGE_LIMIT = 200  # results per search page
SEARCH_RESULT_CAP = 10_000  # results one search query can reach
SEARCH_GROUPS_LIMIT = 5  # filterGroups per search request
IN_VALUES_LIMIT = 100  # values of one IN filter
CASE_KEY = "crmhub_conversation"
PERSON_KEY = "crmhub_person"  # on contacts: crmhub's key of the contact it created for a person
ACTIVITY_KEY = "crmhub_key"
ACTIVITY_TYPES = ("communications", "calls", "notes", "emails")  # the engagements crmhub writes, keyed by crmhub_key
LINK_PROPERTY = "crmhub_link"  # ticket text property: an agent's "confirm N" / "reject N" on link suggestion N
MODIFIED = "lastmodifieddate"
TICKET_MODIFIED = "hs_lastmodifieddate"
CLOSED_DATE = "closed_date"
CREATED_AT = "hs_createdate"  # engagements' creation time
CREATED = "createdate"
MERGED_IDS = "hs_merged_object_ids"  # on a merge's new record: the ids it absorbed, `;`-separated
# A link to a contact (a ticket) deleted or merged away since crmhub linked it: `RecordGone` (`CaseGone`).
GONE_CONTACT = re.compile(r"\bcontact object with id \S+ does not exist", re.IGNORECASE)
# HubSpot's communication types (hs_communication_channel_type: WHATS_APP, LINKEDIN_MESSAGE, SMS, per
# developers.hubspot.com/docs/api/crm/communications); email is an email engagement (developers.hubspot.com/docs/
# api/crm/email), calls are calls, and any other channel is logged as a note with its label.
COMMUNICATION_TYPES = {Channel.SMS: "SMS", Channel.WHATSAPP: "WHATS_APP"}
GONE_TICKET = re.compile(r"\bticket object with id \S+ does not exist", re.IGNORECASE)
REPLY_PROPERTIES = ["hs_communication_body", "hs_communication_channel_type", "hs_createdate", "hubspot_owner_id",
                    "crmhub_key"]
PROPERTY_LENGTH = 65_536  # characters a property value may hold; longer ones are cut to fit
ASSOCIATION_GRACE = timedelta(minutes=5)  # a new communication's ticket association may come in a second call
PROPERTY_GROUPS = {"contacts": "contactinformation", "tickets": "ticketinformation", "communications": "communication", "calls": "call",
                   "notes": "note", "emails": "email"}
CALL_STATUSES = {"completed": "COMPLETED", "busy": "BUSY", "no-answer": "NO_ANSWER", "failed": "FAILED",
                 "canceled": "CANCELED", "in-progress": "IN_PROGRESS", "ringing": "RINGING", "queued": "QUEUED",
                 "initiated": "CONNECTING"}
_TRANSIENT_TRANSPORT = (urllib3.exceptions.MaxRetryError, urllib3.exceptions.ProtocolError,
                        urllib3.exceptions.TimeoutError, urllib3.exceptions.NewConnectionError,
                        urllib3.exceptions.SSLError, urllib3.exceptions.ProxyError)

# HubSpot-defined (unlabeled) association type ids of what crmhub links on create, from the v4
# "association type ID values" tables: (from object, to object) -> associationTypeId.
LINK_TYPES: dict[tuple[str, str], int] = {
    ("tickets", "contacts"): 16,
    ("communications", "contacts"): 81, ("communications", "tickets"): 83,
    ("calls", "contacts"): 194, ("calls", "tickets"): 220,
    ("notes", "contacts"): 202, ("notes", "tickets"): 228,
    ("emails", "contacts"): 198, ("emails", "tickets"): 224,
}

Json = dict[str, Any]
Result = tuple[str | None, Exception | None]  # (record id, error)


@dataclass(frozen=True)
class NewRecord:
    """A record crmhub creates under its unique key, and the records it is linked to from birth.

    `maybe_written`: an earlier attempt may have created it already (its
    answer lost, or the process died), so it is looked for before creating.
    """

    properties: Json
    links: tuple[tuple[str, str], ...] = ()  # (to object type, to record id)
    maybe_written: bool = True


@dataclass(frozen=True)
class TicketQueue:
    """Where a routing queue puts new tickets: a pipeline stage and, optionally, an owner.

    Pipeline and stage are ids (labels are accepted too); owner is an owner id.
    """

    pipeline: str
    stage: str
    owner: str | None = None


class HubSpotCrm(Connector):
    """One HubSpot account (private app token)."""

    name = "hubspot"
    max_batch = BATCH_LIMIT  # outbox rows a delivery worker fills a batch with: one batch call

    def __init__(self, *, access_token: str, objects: Sequence[ContactObject],
                 queues: Mapping[str, TicketQueue] | None = None, base_url: str | None = None,
                 default_region: str = "US", other_regions: Sequence[str] = (),
                 batch_size: int = BATCH_LIMIT, page_size: int = SEARCH_PAGE_LIMIT,
                 timeout: float = 60.0, link_property: str = LINK_PROPERTY, retrier: Retrier | None = None) -> None:
        """
        Args:
            access_token: the private app's token (scopes: contacts, tickets, and the
                engagement objects, read and write; properties and owners read).
            objects: the contact-like objects to mirror and match (HubSpot: `contacts`).
            queues: routing queue name -> the pipeline stage (and owner) of its tickets.
            base_url: send every request here instead of api.hubapi.com (sandbox, proxy).
            batch_size: inputs per batch call, 1..100.
            page_size: contacts per mirror search page, 1..200.
            timeout: seconds to wait for each HTTP answer.
            link_property: the ticket text property agents confirm link suggestions in (`crmhub.link_marks`),
                created if missing.
        """
        super().__init__(retrier)
        self.access_token = access_token
        self.objects = {o.name: o for o in objects}
        self.queues = dict(queues or {})
        self.base_url = base_url.rstrip("/") if base_url else None
        self.default_region = default_region
        self.other_regions = tuple(other_regions)  # tried for national numbers not valid in default_region
        self.batch_size = max(1, min(batch_size, BATCH_LIMIT))
        self.page_size = max(1, min(page_size, SEARCH_PAGE_LIMIT))
        self.search_cap = SEARCH_RESULT_CAP
        self.timeout = timeout
        self._apis: SimpleNamespace | None = None
        self._key_properties: set[tuple[str, str]] = set()
        self.link_property = link_property
        self._pipelines: dict[str, Json] | None = None
        self._owners: set[str] | None = None

    # ---- SDK boundary --------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, urllib3.exceptions.HTTPError):
            if isinstance(exc, _TRANSIENT_TRANSPORT):
                return Timeout(f"no answer ({type(exc).__name__}); the call may or may not have taken effect",
                               system=self.name)
            return PermanentError(f"request failed: {type(exc).__name__}", system=self.name)
        if not _is_sdk_error(exc):
            return None
        status = int(getattr(exc, "status", 0) or 0)
        if status == 0:  # the SDK gave up below HTTP (a TLS failure): no answer at all
            return Timeout(f"no answer: {str(getattr(exc, 'reason', ''))[:200]}", system=self.name)
        body = _error_body(getattr(exc, "body", None))
        headers = getattr(exc, "headers", None) or {}
        code = str(body.get("category") or body.get("errorType") or "")
        fields = [name for entry in body.get("errors") or [] if isinstance(entry, dict)
                  for name in _property_names(entry)]
        text = f"HTTP {status} {vendor_error(code, str(body.get('message') or getattr(exc, 'reason', '')), fields)}"
        if code == "MISSING_SCOPES":
            text = (f"HTTP {status} MISSING_SCOPES: the private app lacks scope {' or '.join(_scopes(body)) or '?'}; "
                    "add it to the app (Settings > Integrations > Private apps > Scopes)")
        elif status in (401, 403):
            text += "; check crms.hubspot.auth.access_token (a valid private app token with the CRM scopes)"
        hint = _rate_limit_hint(headers, body) if status == 429 else None
        return classify_status(status, text, system=self.name, code=code, retry_after=hint)

    def _client(self) -> SimpleNamespace:
        """The SDK's API objects, built once (each property access would build a new client)."""
        if self._apis is None:
            config: dict[str, Any] = {"access_token": self.access_token, "retry": Retry(total=0)}
            if self.base_url:
                config.update(host=self.base_url, base_url=self.base_url)
            client = HubSpot(**config)
            self._apis = SimpleNamespace(
                batch=client.crm.objects.batch_api, search=client.crm.objects.search_api,
                basic=client.crm.objects.basic_api,
                properties=client.crm.properties.core_api, pipelines=client.crm.pipelines.pipelines_api,
                owners=client.crm.owners.owners_api, associations=client.crm.associations.v4.batch_api)
        return self._apis

    def _raw(self, api: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One SDK call (`<api>.<method>(*args)`), answered as plain JSON; no retries here.

        The answer is not loaded into the SDK's models (`_preload_content=False`):
        crmhub reads HubSpot's JSON as documented, 207 errors included.
        """
        fn = getattr(getattr(self._client(), api), method)
        self.before_http(f"{api}.{method}")  # the budget paces each request (urllib3: no session hook)
        started = time.monotonic()
        try:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except Exception as exc:
            if _is_sdk_error(exc) and getattr(exc, "status", None):  # an HTTP answer, not a dropped connection
                self.observe_http(f"{api}.{method}", int(exc.status), getattr(exc, "headers", None) or {},  # type: ignore[attr-defined]  # SDK errors carry status and headers
                                  time.monotonic() - started)
            raise
        finally:
            self.after_http()
        self.observe_http(f"{api}.{method}", int(getattr(response, "status", 0) or 0),
                          getattr(response, "headers", None) or {}, time.monotonic() - started)
        data = getattr(response, "data", b"")
        return json.loads(data) if data else None

    def api(self, operation: str, api: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """`<api>.<method>(*args, **kwargs)` of the SDK through the retry layer; the answer as plain JSON.

        Args:
            operation: the name retries and logs use.
            api: one of batch, search, properties, pipelines, owners, associations.
            method: the SDK method of that API (e.g. `upsert`).
        """
        return self.call(operation, lambda: self._raw(api, method, *args, **kwargs))

    # ---- reads ---------------------------------------------------------------
    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]:
        """Contacts changed since the cursor (inclusive), oldest change first, with the cursor after each page."""
        obj = self.objects[object_name]
        newest = since
        for results, newest in self._changed_since(object_name, MODIFIED, self._mirror_properties(obj), since):
            yield [gone for r in results for gone in self._merged_away(obj, r)] + [
                self._mirror_record(obj, r) for r in results], newest
        if since is not None and newest is not None:
            for archived in self._archived_since(obj, since):
                yield archived, newest

    def _mirror_properties(self, obj: ContactObject) -> list[str]:
        return [CREATED, MERGED_IDS, *obj.extra_fields, *(f for names in obj.fields_by_kind.values() for f in names)]

    def _merged_away(self, obj: ContactObject, record: Mapping[str, Any]) -> list[MirrorRecord]:
        """The records a merge's new record absorbed (`hs_merged_object_ids`): gone, merged into it.

        HubSpot makes a new record with a new id when it merges two contacts;
        search never shows the old ids again.
        """
        props = record.get("properties") or {}
        modified = _parse_datetime(props.get(MODIFIED) or record["updatedAt"])
        return [MirrorRecord(crm=self.name, object_type=obj.name, record_id=old, identities=(), fields={},
                             modified_at=modified, deleted=True, merged_into=str(record["id"]))
                for old in str(props.get(MERGED_IDS) or "").split(";") if old and old != str(record["id"])]

    def _archived_since(self, obj: ContactObject, since: str) -> Iterator[list[MirrorRecord]]:
        """Records archived (deleted) at or after `since`: `archived=true` lists, a page at a time.

        Search never returns archived records, and their list has no filter:
        it is read whole and filtered here (HubSpot empties it after 90 days).
        """
        floor, after = _parse_datetime(since), None
        while True:
            answer = self.api("archived", "basic", "get_page", obj.name, limit=BATCH_LIMIT, after=after,
                              archived=True, properties=[MODIFIED]) or {}
            gone = [MirrorRecord(crm=self.name, object_type=obj.name, record_id=str(r["id"]), identities=(), fields={},
                                 modified_at=_parse_datetime(r["archivedAt"]), deleted=True)
                    for r in answer.get("results") or [] if r.get("archivedAt")
                    and _parse_datetime(r["archivedAt"]) >= floor]
            if gone:
                yield gone
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def record_fates(self, object_type: str, record_ids: Sequence[str]) -> list[MirrorRecord]:
        """These records as they stand now: live, merged into a new record, or archived (batch reads).

        A read by a merged-away id answers with the merged record, whose
        `hs_merged_object_ids` names the id asked for and every other it
        absorbed (gone as well, so answered too). What a write that found its
        record gone asks (`crmhub.sync.deliver`).
        """
        obj = self.objects.get(object_type)
        if obj is None:
            return []
        found: dict[str, MirrorRecord] = {}
        for archived in (False, True):
            todo = [i for i in record_ids if i not in found]
            for start in range(0, len(todo), self.batch_size):
                body = {"properties": self._mirror_properties(obj),
                        "inputs": [{"id": i} for i in todo[start:start + self.batch_size]]}
                answer = self.api("batch.read", "batch", "read", obj.name, body, archived=archived) or {}
                for r in answer.get("results") or []:
                    if archived:
                        found[str(r["id"])] = replace(self._mirror_record(obj, r), deleted=True)
                    elif str(r["id"]) in todo:
                        found[str(r["id"])] = self._mirror_record(obj, r)
                    # Every id the merged record absorbed is gone too, not only the one asked for.
                    found.update({m.record_id: m for m in self._merged_away(obj, r)})
        return list(found.values())

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]:
        """crmhub's tickets changed since the cursor (inclusive; all of them when None), with the cursor after each page.

        A ticket is closed when its pipeline stage's `ticketState` is CLOSED;
        the close time is its `closed_date` (set when it enters a closed
        stage), else its last modification.
        """
        self.ensure_key_property("tickets", CASE_KEY)  # a search filter on a missing property is refused
        self.ensure_key_property("tickets", self.link_property, unique=False,
                                 description="Agents: \"confirm N\" or \"reject N\" decides crmhub's link "
                                             "suggestion N (see its note on the ticket).")
        properties = [CASE_KEY, "hs_pipeline", "hs_pipeline_stage", CLOSED_DATE, self.link_property]
        ours = {"propertyName": CASE_KEY, "operator": "HAS_PROPERTY"}
        reread = [False]  # pipelines are read again once per refresh when a stage is unknown (an admin added it)
        for results, newest in self._changed_since("tickets", TICKET_MODIFIED, properties, since, [ours]):
            yield [self._case_state(r, reread) for r in results], newest

    def _changed_since(self, object_type: str, modified: str, properties: Sequence[str], since: str | None,
                       filters: Sequence[Json] = ()) -> Iterator[tuple[list[Json], str]]:
        """Records whose `modified` is at or after `since` (every one when None), oldest first, a page at a time.

        Yields each page with the newest `modified` value so far (the cursor to
        save). A search query reaches `search_cap` results at most, so past that
        the search starts again from the newest value seen.
        """
        floor, after, reached = since, None, 0
        newest: str | None = None
        while True:
            body: Json = {"sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
                          "properties": sorted({modified, *properties}), "limit": self.page_size}
            conditions = [*filters, *([{"propertyName": modified, "operator": "GTE", "value": _epoch_ms(floor)}]
                                      if floor else [])]
            if conditions:
                body["filterGroups"] = [{"filters": conditions}]
            if after:
                body["after"] = after
            answer = self.api("search", "search", "do_search", object_type, body) or {}
            results = answer.get("results") or []
            if results:
                newest = _iso(max(_parse_datetime(_modified(r, modified)) for r in results))
                yield results, newest
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            reached += len(results)
            if not after or not results:
                return
            if reached + self.page_size > self.search_cap:
                # HubSpot's 10,000-result cap: start a new query where this one got to.
                if newest == floor:
                    raise PermanentError(f"more than {self.search_cap} {object_type} share {modified} "
                                         f"{newest}; the search cannot page past them", system=self.name)
                floor, after, reached = newest, None, 0

    def _case_state(self, record: Mapping[str, Any], reread: list[bool]) -> CaseState:
        props = record.get("properties") or {}
        modified = _parse_datetime(_modified(record, TICKET_MODIFIED))
        closed = self._stage_closed(str(props.get("hs_pipeline") or ""), str(props.get("hs_pipeline_stage") or ""),
                                    reread)
        closed_at = (_parse_datetime(props[CLOSED_DATE]) if props.get(CLOSED_DATE) else modified) if closed else None
        # Search results carry no per-property author (only `propertiesWithHistory` reads do): "agent in hubspot"
        # here; `mark_authors` names the user when the mark is about to decide something.
        marks = tuple(LinkMark(number, confirm, "agent in hubspot")
                      for number, confirm in read_field(props.get(self.link_property)))
        return CaseState(case_key=str(props[CASE_KEY]), record_id=str(record["id"]), closed_at=closed_at,
                         modified_at=modified, link_marks=marks)

    def mark_authors(self, marks: Sequence[tuple[str, LinkMark]]) -> dict[tuple[str, int], str]:
        """Who set each mark (`hubspot user <updatedByUserId>`), from the link property's history; others left out.

        Batch reads of the tickets with `propertiesWithHistory` (100 a call): the newest value that
        holds the mark names its user. A value an integration or workflow set has no user, so the mark
        keeps "agent in hubspot". Asked only for marks about to decide a suggestion (`crmhub.ops.links`).
        """
        ids = sorted({ticket_id for ticket_id, _ in marks})
        history: dict[str, list[Json]] = {}
        for start in range(0, len(ids), self.batch_size):
            body = {"properties": [self.link_property], "propertiesWithHistory": [self.link_property],
                    "inputs": [{"id": i} for i in ids[start:start + self.batch_size]]}
            answer = self.api("tickets.link_history", "batch", "read", "tickets", body) or {}
            for r in answer.get("results") or []:
                entries = (r.get("propertiesWithHistory") or {}).get(self.link_property) or []
                history[str(r["id"])] = [e for e in entries if isinstance(e, dict)]
        found: dict[tuple[str, int], str] = {}
        for ticket_id, mark in marks:
            setting = [e for e in history.get(ticket_id, [])
                       if (mark.suggestion_id, mark.confirm) in read_field(e.get("value"))]
            newest = max(setting, key=_set_at, default=None)
            user = (newest or {}).get("updatedByUserId")
            if user not in (None, ""):
                found[(ticket_id, mark.suggestion_id)] = f"hubspot user {user}"
        return found

    def link_instruction(self, suggestion_id: int) -> str:
        """What an agent sets on the ticket to confirm or reject a suggestion (the words `crmhub.link_marks` reads)."""
        return (f"To confirm, set the ticket property {self.link_property} to \"confirm {suggestion_id}\"; "
                f"to reject, \"reject {suggestion_id}\".")

    def _stage_closed(self, pipeline_id: str, stage_id: str, reread: list[bool]) -> bool:
        """Whether a ticket stage is a closed one (its metadata's `ticketState` is CLOSED)."""
        stage = _stage(self.ticket_pipelines(), pipeline_id, stage_id)
        if stage is None and not reread[0]:
            reread[0], self._pipelines = True, None
            stage = _stage(self.ticket_pipelines(), pipeline_id, stage_id)
        metadata = (stage or {}).get("metadata") or {}
        # Ticket stages say `ticketState: OPEN|CLOSED`; the older pipelines API (and deal stages) `isClosed`.
        return str(metadata.get("ticketState", "")).upper() == "CLOSED" or str(metadata.get("isClosed")) == "true"

    def _mirror_record(self, obj: ContactObject, record: Mapping[str, Any]) -> MirrorRecord:
        props = record.get("properties") or {}
        identities: list[Identity] = []
        for kind, names in obj.fields_by_kind.items():
            for name in names:
                identity = from_crm_field(kind, props.get(name), self.default_region, self.other_regions)
                if identity is not None and identity not in identities:
                    identities.append(identity)
        created = props.get(CREATED) or record.get("createdAt")
        return MirrorRecord(
            crm=self.name, object_type=obj.name, record_id=str(record["id"]), identities=tuple(identities),
            fields={k: props.get(k) for k in obj.extra_fields},
            modified_at=_parse_datetime(props.get(MODIFIED) or record["updatedAt"]),
            created_at=_parse_datetime(created) if created else None,
        )

    def ticket_pipelines(self) -> dict[str, Json]:
        """Ticket pipelines by id (with their stages), read once per connector."""
        if self._pipelines is None:
            answer = self.api("pipelines", "pipelines", "get_all", "tickets") or {}
            self._pipelines = {str(p["id"]): p for p in answer.get("results") or []}
        return self._pipelines

    def owner_ids(self) -> set[str]:
        """Ids of the account's active owners, read once per connector."""
        if self._owners is None:
            owners: set[str] = set()
            after: str | None = None
            while True:
                answer = self.api("owners", "owners", "get_page", limit=500, archived=False,
                                  **({"after": after} if after else {})) or {}
                owners.update(str(owner["id"]) for owner in answer.get("results") or [])
                after = ((answer.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
            self._owners = owners
        return self._owners

    def ensure_key_property(self, object_type: str, name: str, *, unique: bool = True,
                            description: str = "Set by crmhub to find its records again; do not edit.") -> None:
        """Create the (unique) text property `name` on `object_type` unless it exists (checked once)."""
        if (object_type, name) in self._key_properties:
            return
        try:
            found = self.api("properties.get", "properties", "get_by_name", object_type, name) or {}
            if unique and not found.get("hasUniqueValue"):
                raise Rejected(f"property {name!r} of {object_type} exists but does not require unique values; "
                               "crmhub upserts by it: make it unique in HubSpot (or delete it so crmhub creates it)",
                               system=self.name)
        except NotFound:
            self._create_property(object_type, {
                "name": name, "label": f"crmhub {name.removeprefix('crmhub_')}", "type": "string",
                "fieldType": "text", "hasUniqueValue": unique, "description": description})
        self._key_properties.add((object_type, name))

    def _create_property(self, object_type: str, body: Mapping[str, Any]) -> None:
        """Create a custom property in crmhub's group; one another process created meanwhile (409) is fine."""
        try:
            self.api("properties.create", "properties", "create", object_type,
                     {**body, "groupName": PROPERTY_GROUPS.get(object_type, object_type)})
        except Rejected as exc:
            if exc.status != 409:
                raise

    # ---- replies -------------------------------------------------------------
    def reply_pages(self, cursor: str | None, *, start: datetime) -> Iterator[ReplyPage]:
        """Communications crmhub did not write, created since `cursor` (None: since `start`), oldest first."""
        self.ensure_key_property("communications", ACTIVITY_KEY)
        floor = cursor or _iso(start)
        newest, held, after = floor, None, None
        young = _iso(datetime.now(UTC) - ASSOCIATION_GRACE)
        while True:
            body: Json = {"filterGroups": [{"filters": [
                              {"propertyName": CREATED_AT, "operator": "GTE", "value": _epoch_ms(floor)},
                              {"propertyName": ACTIVITY_KEY, "operator": "NOT_HAS_PROPERTY"}]}],
                          "sorts": [{"propertyName": CREATED_AT, "direction": "ASCENDING"}],
                          "properties": REPLY_PROPERTIES, "limit": self.page_size}
            if after:
                body["after"] = after
            answer = self.api("communications.search", "search", "do_search", "communications", body) or {}
            results = answer.get("results") or []
            tickets = self._tickets_of([str(r["id"]) for r in results])
            replies = []
            for record in results:
                props = record.get("properties") or {}
                created = _iso(_parse_datetime(props.get(CREATED_AT) or record["createdAt"]))
                newest = max(newest, created)
                if not tickets.get(str(record["id"])) and created >= young and (held is None or created < held):
                    held = created  # its ticket association may not be there yet: read it again next time
                replies += [AgentReply(crm=self.name, reply_ref=str(record["id"]), case_id=ticket,
                                       text=_plain_text(props.get("hs_communication_body") or ""),
                                       written_at=_parse_datetime(created),
                                       author=str(props.get("hubspot_owner_id") or ""))
                            for ticket in tickets.get(str(record["id"]), [])]
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            last = not after or not results
            yield ReplyPage(tuple(replies), min(newest, held) if held else newest, last=last)
            if last:
                return

    def _tickets_of(self, communications: Sequence[str]) -> dict[str, list[str]]:
        """The tickets each communication is associated with (v4 batch read, `batch_size` per call)."""
        out: dict[str, list[str]] = {}
        for start in range(0, len(communications), self.batch_size):
            chunk = communications[start:start + self.batch_size]
            answer = self.api("associations.communications.tickets.read", "associations", "get_page",
                              "communications", "tickets", {"inputs": [{"id": c} for c in chunk]}) or {}
            for result in answer.get("results") or []:  # a communication without tickets is an `errors` entry
                out[str(result["from"]["id"])] = sorted((str(t["toObjectId"]) for t in result.get("to") or []),
                                                        key=int)
        return out

    def add_case_note(self, note: CaseNote) -> None:
        """A note on the ticket, created under `crmhub_key` (written once) with its ticket association inline."""
        self.ensure_key_property("notes", ACTIVITY_KEY)
        props = _properties({"hs_note_body": note.text, "hs_timestamp": _iso(datetime.now(UTC))})
        record = NewRecord(props, (("tickets", note.case_id),), maybe_written=True)
        [(record_id, error)] = self._create_keyed("notes", ACTIVITY_KEY, {note.key: record}).values()
        if error is not None or record_id is None:
            raise error or Rejected("no record id in HubSpot's answer", system=self.name)

    SURVEY_PROPERTIES = {"csat": "crmhub_csat", "nps": "crmhub_nps"}  # number properties on tickets

    def set_survey_score(self, record_id: str, kind: str, score: int) -> None:
        """The survey's score onto the ticket (a property update: repeating it after a lost answer changes nothing)."""
        name = self.SURVEY_PROPERTIES[kind]
        self._ensure_number_property("tickets", name)
        body = {"inputs": [{"id": record_id, "objectWriteTraceId": record_id, "properties": {name: str(score)}}]}
        answer = self.api("tickets.survey", "batch", "update", "tickets", body) or {}
        if not any(str(r.get("id")) == record_id for r in answer.get("results") or []):
            raise self._errors(answer).get(record_id) or self._unexplained(answer)

    def _ensure_number_property(self, object_type: str, name: str) -> None:
        """Create the number property `name` on `object_type` unless it exists (checked once)."""
        if (object_type, name) in self._key_properties:
            return
        try:
            self.api("properties.get", "properties", "get_by_name", object_type, name)
        except NotFound:
            self._create_property(object_type, {
                "name": name, "label": f"crmhub {name.removeprefix('crmhub_').upper()}", "type": "number",
                "fieldType": "number", "description": "A customer's survey answer, set by crmhub."})
        self._key_properties.add((object_type, name))

    # ---- writes --------------------------------------------------------------
    def write_history(self, writes: Sequence[HistoryWrite]) -> list[WriteOutcome]:
        """Create missing contacts, then new tickets and one activity per write, each with its associations inline.

        Writes marked `adopt` (an earlier state store may have made them) are
        first looked for by `crmhub_key`, one batch read per 100 and activity
        type (`_adopted`): one found is adopted as it is (its ticket not
        reopened, nothing associated anew); only the others are written.
        """
        adopted = self._adopted([w for w in writes if w.adopt])
        outcomes = self._write([w for w in writes if w.key not in adopted])
        return [adopted.get(w.key) or outcomes[w.key] for w in writes]

    def _adopted(self, writes: Sequence[HistoryWrite]) -> dict[str, WriteOutcome]:
        """The writes whose activity the portal holds already, by crmhub's key, as adopted outcomes."""
        keys: dict[str, list[str]] = defaultdict(list)
        for write in writes:
            keys[self._activity(write)[0]].append(write.key)
        found: dict[str, tuple[str, str]] = {}  # write key -> (activity type, record id)
        for object_type, of_type in sorted(keys.items()):
            self.ensure_key_property(object_type, ACTIVITY_KEY)
            read = self.call(f"{object_type}.read",
                             lambda t=object_type, k=of_type: self._read_keys(t, ACTIVITY_KEY, k))  # type: ignore[misc]
            found.update((key, (object_type, record_id)) for key, record_id in read.items())
        return {w.key: WriteOutcome(w.key, record_id=found[w.key][1], contact_id=w.contact_id, case_id=w.case_id,
                                    adopted=found[w.key][0]) for w in writes if w.key in found}

    def _write(self, writes: Sequence[HistoryWrite]) -> dict[str, WriteOutcome]:
        """`write_history` for the writes to send: one outcome per write key."""
        if not writes:
            return {}
        errors: dict[str, Exception] = {}
        contacts, contact_errors = self._contacts(writes)
        contact_of = {w.key: w.contact_id or contacts.get(w.person_id) for w in writes}
        self._update_contacts(writes)
        tickets, ticket_errors = self._tickets(writes, contact_of)
        reopen_errors = self._reopen_tickets(writes)
        ticket_of = {w.key: w.case_id or (tickets.get(w.new_case.key) if w.new_case else None) for w in writes}
        by_type: dict[str, dict[str, NewRecord]] = defaultdict(dict)
        for write in writes:
            error = contact_errors.get(write.person_id) if write.contact_id is None else None
            if error is None and write.new_case is not None:
                error = ticket_errors.get(write.new_case.key)
            if error is None and write.reopen is not None and write.case_id:
                error = reopen_errors.get(write.case_id)
            if error is not None:
                errors[write.key] = error
                continue
            object_type, properties = self._activity(write)
            links = tuple((to_type, to_id) for to_type, to_id in (("contacts", contact_of[write.key]),
                                                                 ("tickets", ticket_of[write.key])) if to_id)
            by_type[object_type][write.key] = NewRecord(_properties(properties), links,
                                                        maybe_written=not write.first_attempt or write.relink)
        activities: dict[str, str] = {}
        for object_type, records in by_type.items():
            self.ensure_key_property(object_type, ACTIVITY_KEY)
            for key, (record_id, error) in self._create_keyed(object_type, ACTIVITY_KEY, records).items():
                if error is not None or record_id is None:
                    errors[key] = error or Rejected("no record id in HubSpot's answer", system=self.name)
                else:
                    activities[key] = record_id
        self._move_tickets([w for w in writes if w.relink and w.key not in errors], contact_of, ticket_of, errors)
        type_of = {key: object_type for object_type, records in by_type.items() for key in records}
        self._detach([w for w in writes if w.detach_from and w.key in activities], type_of, activities, ticket_of,
                     contact_of)
        return {w.key: WriteOutcome(w.key, record_id=activities.get(w.key) if w.key not in errors else None,
                                    contact_id=contact_of[w.key], case_id=ticket_of[w.key], error=errors.get(w.key))
                for w in writes}

    # contacts
    def _contacts(self, writes: Sequence[HistoryWrite]) -> tuple[dict[int, str], dict[int, Exception]]:
        """Create the contacts of new persons under `crmhub_person`: ids and errors by person id.

        A contact refused because another holds one of its unique values (an
        email) is the contact that holds its identities, found by search.
        """
        wanted: dict[int, HistoryWrite] = {}
        maybe_written: set[int] = set()
        for write in writes:
            if write.contact_id is None and write.new_contact:
                wanted.setdefault(write.person_id, write)
                if not write.first_attempt:
                    maybe_written.add(write.person_id)
        errors: dict[int, Exception] = {}
        properties: dict[int, Json] = {}
        for person_id, write in wanted.items():
            obj = self.objects.get(write.contact_object)
            props = self._contact_properties(obj, write.new_contact) if obj else {}
            if obj is None:
                errors[person_id] = Rejected(f"cannot create a {write.contact_object!r}: only "
                                             f"{', '.join(self.objects) or 'no object'} is matched in HubSpot; fix "
                                             "crms.hubspot.create_when_unmatched in mappings/identities.yaml",
                                             system=self.name)
            elif not props:
                errors[person_id] = Rejected("none of the person's identities maps to a contact property; add "
                                             "the property under crms.hubspot.match.contacts in "
                                             "mappings/identities.yaml", system=self.name)
            else:
                properties[person_id] = props
        if not properties:
            return {}, errors
        self.ensure_key_property("contacts", PERSON_KEY)
        person_of = {wanted[pid].person_key(): pid for pid in properties}
        records = {key: NewRecord(properties[pid], maybe_written=pid in maybe_written) for key, pid in person_of.items()}
        created: dict[int, str] = {}
        taken: dict[int, Json] = {}  # another contact holds one of its unique values (an email)
        for key, (record_id, error) in self._create_keyed("contacts", PERSON_KEY, records).items():
            pid = person_of[key]
            if record_id is not None and error is None:
                created[pid] = record_id
            elif getattr(error, "code", "") == "CONFLICT":
                taken[pid] = properties[pid]
            else:
                errors[pid] = error or Rejected("no record id in HubSpot's answer", system=self.name)
        if taken:
            found = self.call("contacts.find", lambda: self._find_contacts(taken))
            created.update(found)
            errors.update({pid: Rejected("HubSpot refused the new contact: another contact holds one of its unique "
                                         "values, and no contact holding its identities was found", system=self.name,
                                         code="CONFLICT") for pid in taken if pid not in found})
        return created, errors

    def _contact_properties(self, obj: ContactObject, identities: Sequence[Identity]) -> Json:
        """The identity properties of a new contact: the n-th identity of a kind in the n-th field of it."""
        props: Json = {}
        used: dict[str, int] = defaultdict(int)
        for identity in identities:
            kind = mapping_kind(identity.kind)
            names = obj.fields_by_kind.get(kind, ())
            value = _written_value(identity)
            if not value or used[kind] >= len(names) or value in props.values():
                continue
            props[names[used[kind]]] = value
            used[kind] += 1
        return props

    def _find_contacts(self, properties: Mapping[int, Json]) -> dict[int, str]:
        """Persons whose identity values a live contact already holds (the lowest contact id wins)."""
        values: dict[str, set[str]] = defaultdict(set)
        for props in properties.values():
            for name, value in props.items():
                values[name].add(str(value).lower())  # HubSpot wants IN values in lower case
        groups = [{"filters": [{"propertyName": name, "operator": "IN", "values": sorted(vals)[i:i + IN_VALUES_LIMIT]}]}
                  for name, vals in sorted(values.items()) for i in range(0, len(vals), IN_VALUES_LIMIT)]
        holder: dict[tuple[str, str], str] = {}
        for start in range(0, len(groups), SEARCH_GROUPS_LIMIT):
            after: str | None = None
            while True:
                body: Json = {"filterGroups": groups[start:start + SEARCH_GROUPS_LIMIT], "properties": sorted(values),
                              "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                              "limit": SEARCH_PAGE_LIMIT, **({"after": after} if after else {})}
                answer = self._raw("search", "do_search", "contacts", body) or {}
                for record in answer.get("results") or []:
                    for name in values:
                        value = str((record.get("properties") or {}).get(name) or "").lower()
                        if value:
                            holder.setdefault((name, value), str(record["id"]))
                after = ((answer.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        found: dict[int, str] = {}
        for pid, props in properties.items():
            ids = [holder[(n, str(v).lower())] for n, v in props.items() if (n, str(v).lower()) in holder]
            if ids:
                found[pid] = min(ids, key=int)
        return found

    # tickets
    def _tickets(self, writes: Sequence[HistoryWrite], contact_of: Mapping[str, str | None]
                 ) -> tuple[dict[str, str], dict[str, Exception]]:
        """Create the new tickets (routed to their queue's stage, linked to their contact): ids and errors by case key."""
        records: dict[str, NewRecord] = {}
        errors: dict[str, Exception] = {}
        for write in writes:
            spec = write.new_case
            if spec is None or spec.key in errors:
                continue
            if spec.key in records:  # one ticket, several writes: it is new only if none was sent before
                if not write.first_attempt:
                    records[spec.key] = replace(records[spec.key], maybe_written=True)
                continue
            stage = self._stage_properties(spec.target.queue)
            if isinstance(stage, Exception):
                errors[spec.key] = stage
                continue
            item = write.interaction
            customer = item.customer.display or item.customer.value
            props: Json = {"subject": f"{item.channel.label} conversation with {customer}", **spec.fields, **stage}
            if spec.target.priority:
                props["hs_ticket_priority"] = spec.target.priority.upper()
            contact_id = contact_of[write.key]
            records[spec.key] = NewRecord(_properties(props), (("contacts", contact_id),) if contact_id else (),
                                          maybe_written=not write.first_attempt)
        if not records:
            return {}, errors
        self.ensure_key_property("tickets", CASE_KEY)
        tickets: dict[str, str] = {}
        for key, (record_id, error) in self._create_keyed("tickets", CASE_KEY, records).items():
            if error is not None or record_id is None:
                errors[key] = error or Rejected("no record id in HubSpot's answer", system=self.name)
            else:
                tickets[key] = record_id
        return tickets, errors

    def _update_contacts(self, writes: Sequence[HistoryWrite]) -> None:
        """Set the identity properties the engine asks to (a renamed X handle), one batch update per 100 contacts.

        Setting a value twice is harmless. A refusal is logged, not the write's
        failure: the history still lands, and the next write sets it again.
        """
        items = [(record, fields) for record, (_, fields) in identity_field_updates(writes, self.objects).items()]
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            body = {"inputs": [{"id": cid, "objectWriteTraceId": cid, "properties": props} for cid, props in chunk]}
            try:
                answer = self.api("contacts.batch_update", "batch", "update", "contacts", body) or {}
            except PermanentError as exc:  # e.g. the property is gone: the history still lands
                log.warning("contact properties not updated", crm=self.name, records=len(chunk), reason=str(exc)[:200])
                continue
            done = {str(r["id"]) for r in answer.get("results") or []}
            for cid, _ in chunk:
                if cid not in done:
                    log.warning("contact property not updated", crm=self.name, record=cid)

    def _reopen_tickets(self, writes: Sequence[HistoryWrite]) -> dict[str, Exception]:
        """Move the closed tickets the writes reopen back to their queue's stage: errors by ticket id.

        One batch update per `batch_size` tickets; the owner stays (the agent
        who handled the ticket gets it back). Moving a ticket twice is harmless.
        """
        inputs: dict[str, Json] = {}
        errors: dict[str, Exception] = {}
        for write in writes:
            ticket_id = write.case_id
            if write.reopen is None or not ticket_id or ticket_id in inputs or ticket_id in errors:
                continue
            stage = self._stage_properties(write.reopen.queue)
            if isinstance(stage, Exception):
                errors[ticket_id] = stage
            else:
                inputs[ticket_id] = {k: stage[k] for k in ("hs_pipeline", "hs_pipeline_stage")}
        items = list(inputs.items())
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            body = {"inputs": [{"id": tid, "objectWriteTraceId": tid, "properties": props} for tid, props in chunk]}
            answer = self.api("tickets.batch_update", "batch", "update", "tickets", body) or {}
            done = {str(r["id"]) for r in answer.get("results") or []}
            failures = self._errors(answer)
            for tid, _ in chunk:
                if tid not in done:
                    errors[tid] = failures.get(tid) or self._unexplained(answer)
        return errors

    def _stage_properties(self, queue: str) -> Json | Exception:
        """The ticket properties of a routing queue, or a Rejected naming what to fix."""
        spec = self.queues.get(queue)
        where = f"queues.hubspot.{queue or '<none>'} in mappings/routing.yaml"
        if spec is None:
            return Rejected(f"queue {queue!r} is not declared for HubSpot; declare it under queues.hubspot in "
                            "mappings/routing.yaml with its pipeline and stage, or route to a declared queue",
                            system=self.name)
        pipelines = self.ticket_pipelines()
        pipeline = pipelines.get(spec.pipeline) or next(
            (p for p in pipelines.values() if str(p.get("label", "")).lower() == spec.pipeline.lower()), None)
        if pipeline is None:
            known = ", ".join(f"{pid} ({p.get('label')})" for pid, p in pipelines.items())
            return Rejected(f"queue {queue!r}: ticket pipeline {spec.pipeline!r} does not exist in this HubSpot "
                            f"account (pipelines: {known}); fix {where}", system=self.name)
        stages = pipeline.get("stages") or []
        stage = next((s for s in stages if str(s["id"]) == spec.stage), None) or next(
            (s for s in stages if str(s.get("label", "")).lower() == spec.stage.lower()), None)
        if stage is None:
            known = ", ".join(f"{s['id']} ({s.get('label')})" for s in stages)
            return Rejected(f"queue {queue!r}: stage {spec.stage!r} is not in pipeline {pipeline['id']} "
                            f"({pipeline.get('label')}; stages: {known}); fix {where}", system=self.name)
        props: Json = {"hs_pipeline": str(pipeline["id"]), "hs_pipeline_stage": str(stage["id"])}
        if spec.owner:
            if spec.owner not in self.owner_ids():
                return Rejected(f"queue {queue!r}: owner {spec.owner!r} is not an active owner in this HubSpot "
                                f"account; fix {where}", system=self.name)
            props["hubspot_owner_id"] = spec.owner
        return props

    # activities
    def _activity(self, write: HistoryWrite) -> tuple[str, Json]:
        """(object type, properties) of the engagement recording one interaction."""
        item = write.interaction
        when = _iso(item.occurred_at)
        text = item.text + (f"\n[{len(item.media)} attachment(s)]" if item.media else "")
        if item.channel in COMMUNICATION_TYPES:
            return "communications", {
                "hs_communication_channel_type": COMMUNICATION_TYPES[item.channel],
                "hs_communication_logged_from": "CRM", "hs_communication_body": text, "hs_timestamp": when,
                **write.fields}
        if item.channel is Channel.CALL:
            inbound = item.direction is Direction.INBOUND
            props: Json = {
                "hs_timestamp": when, "hs_call_direction": "INBOUND" if inbound else "OUTBOUND",
                "hs_call_title": f"{'Inbound' if inbound else 'Outbound'} call "
                                 f"{'from' if inbound else 'to'} {item.customer.display or item.customer.value}",
                "hs_call_body": text, "hs_call_from_number": item.sender.value,
                "hs_call_to_number": item.recipient.value}
            if item.call is not None:
                props["hs_call_duration"] = str(item.call.duration_seconds * 1000)
                if item.call.status.lower() in CALL_STATUSES:
                    props["hs_call_status"] = CALL_STATUSES[item.call.status.lower()]
                if item.call.recording_url:
                    props["hs_call_recording_url"] = item.call.recording_url
            return "calls", {**props, **write.fields}
        if item.channel is Channel.EMAIL:
            return "emails", {**_email_properties(item, text, when), **write.fields}
        return "notes", {"hs_note_body": f"{item.channel.label} {item.direction.value} "
                                         f"{'from' if item.direction is Direction.INBOUND else 'to'} "
                                         f"{item.customer.display or item.customer.value}: {text}",
                         "hs_timestamp": when, **write.fields}

    def _move_tickets(self, relinks: Sequence[HistoryWrite], contact_of: Mapping[str, str | None],
                      ticket_of: Mapping[str, str | None], errors: dict[str, Exception]) -> None:
        """After an identity merge: associate each relinked ticket with the primary contact too.

        HubSpot records may have many associations; the old ones stay, as
        HubSpot's own contact merge would keep them.
        """
        pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
        for write in relinks:
            ticket, contact = ticket_of[write.key], contact_of[write.key]
            if ticket and contact:
                pairs[(ticket, contact)].append(write.key)
        for (_, keys), error in zip(pairs.items(), self._associate("tickets", "contacts", list(pairs)),
                                       strict=True):
            if error is not None:
                for key in keys:
                    errors.setdefault(key, error)

    def _detach(self, writes: Sequence[HistoryWrite], type_of: Mapping[str, str], activities: Mapping[str, str],
                ticket_of: Mapping[str, str | None], contact_of: Mapping[str, str | None]) -> None:
        """After an undone join: take each activity and its ticket off the contact the join put them on.

        A relink keeps old associations (as HubSpot's merge does), but the
        contact an undone join used is another customer's. One v4 batch
        archive per object type pair; archiving an absent association is a no-op, so a retry is harmless.
        """
        pairs: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        for write in writes:
            wrong = write.detach_from
            if not wrong or wrong == contact_of[write.key]:
                continue
            pairs[(type_of[write.key], "contacts")].add((activities[write.key], wrong))
            if ticket_of[write.key]:
                pairs[("tickets", "contacts")].add((str(ticket_of[write.key]), wrong))
        for (from_type, to_type), found in pairs.items():
            chunk_list = sorted(found)
            for start in range(0, len(chunk_list), self.batch_size):
                chunk = chunk_list[start:start + self.batch_size]
                body = {"inputs": [{"from": {"id": f}, "to": [{"id": t}]} for f, t in chunk]}
                self.api(f"associations.{from_type}.{to_type}.archive", "associations", "archive",
                         from_type, to_type, body)

    # ---- batch plumbing ----------------------------------------------------------
    def _create_keyed(self, object_type: str, key_property: str,
                      records: Mapping[str, NewRecord]) -> dict[str, Result]:
        """Create records under crmhub's unique key, associations inline; one (id, error) per key.

        A record an earlier attempt may have made is looked for by its key
        first (one batch read per `batch_size` keys): those `maybe_written`,
        every one still pending when the retry layer tries again after an
        answer it never got, and any the create refuses because the key is
        taken (409 CONFLICT). A record found is not created again; it gets its
        associations by v4 batch (the earlier attempt's may be missing, and
        associating twice is harmless).
        """
        out: dict[str, Result] = {}
        found: dict[str, str] = {}
        tries = [0]

        def attempt() -> None:
            todo = [key for key in records if key not in out and key not in found]
            look = [key for key in todo if tries[0] or records[key].maybe_written]
            tries[0] += 1
            found.update(self._read_keys(object_type, key_property, look))
            taken = self._create_batch(object_type, key_property,
                                       {key: records[key] for key in todo if key not in found}, out)
            if taken:
                found.update(self._read_keys(object_type, key_property, taken))
                for key in taken:
                    if key not in found:
                        out[key] = (None, Rejected(f"HubSpot refused the new {object_type} record: a unique value "
                                                   f"it holds is taken, and no record holds its {key_property}",
                                                   system=self.name, code="CONFLICT"))

        self.call(f"{object_type}.create", attempt)
        self._link_found(object_type, {key: (rid, records[key].links) for key, rid in found.items()}, out)
        return out

    def _create_batch(self, object_type: str, key_property: str, records: Mapping[str, NewRecord],
                      out: dict[str, Result]) -> list[str]:
        """One batch create per `batch_size` records (no retries here); fills `out`, returns the keys already taken."""
        taken: list[str] = []
        items = list(records.items())
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            body = {"inputs": [{"properties": {**record.properties, key_property: key}, "objectWriteTraceId": key,
                                **({"associations": [_link(object_type, *to) for to in record.links]}
                                   if record.links else {})}
                               for key, record in chunk]}
            try:
                answer = self._raw("batch", "create", object_type, body) or {}
            except Exception as exc:
                if _is_sdk_error(exc) and getattr(exc, "status", None) == 409:  # a whole-call conflict
                    taken += [key for key, _ in chunk]
                    continue
                raise
            # Results come in no promised order: each holds its key.
            made = {str((r.get("properties") or {}).get(key_property)): str(r["id"]) for r in answer.get("results") or []}
            failures = self._errors(answer)
            for key, _ in chunk:
                if key in made:
                    out[key] = (made[key], None)
                elif getattr(failures.get(key), "code", "") == "CONFLICT":
                    taken.append(key)
                else:
                    out[key] = (None, failures.get(key) or self._unexplained(answer))
        return taken

    def _read_keys(self, object_type: str, key_property: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> record id of the keys a live record holds (batch read by the unique property; no retries here)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), self.batch_size):
            body = {"idProperty": key_property, "properties": [key_property],
                    "inputs": [{"id": key} for key in keys[start:start + self.batch_size]]}
            answer = self._raw("batch", "read", object_type, body) or {}  # keys not found are 207 errors
            found.update({str((r.get("properties") or {}).get(key_property)): str(r["id"])
                          for r in answer.get("results") or []})
        return found

    def _link_found(self, object_type: str, found: Mapping[str, tuple[str, Sequence[tuple[str, str]]]],
                    out: dict[str, Result]) -> None:
        """Associate records found by key with what they link to (v4 batch per target type); a failed link fails its key."""
        by_target: dict[str, list[tuple[str, tuple[str, str]]]] = defaultdict(list)
        for key, (record_id, links) in found.items():
            out[key] = (record_id, None)
            for to_type, to_id in links:
                by_target[to_type].append((key, (record_id, to_id)))
        for to_type, keyed in by_target.items():
            for (key, _), error in zip(keyed, self._associate(object_type, to_type, [p for _, p in keyed]),
                                       strict=True):
                if error is not None:
                    out[key] = (None, error)

    def _associate(self, from_type: str, to_type: str, pairs: Sequence[tuple[str, str]]) -> list[Exception | None]:
        """Default (unlabeled) associations between pairs of ids, `batch_size` per call; one error slot per pair."""
        out: list[Exception | None] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            body = {"inputs": [{"from": {"id": f}, "to": {"id": t}} for f, t in chunk]}
            answer = self.api(f"associations.{from_type}.{to_type}", "associations", "create_default",
                              from_type, to_type, body) or {}
            failed: dict[int, Exception] = {}
            for entry in answer.get("errors") or []:
                context = entry.get("context") or {}
                error = self._error(entry)
                indexes = [int(i) for i in context.get("inputIndex") or []]
                named = {str(i) for key in ("fromObjectId", "ids") for i in context.get(key) or []}
                indexes += [i for i, (f, _) in enumerate(chunk) if f in named]
                for index in indexes or range(len(chunk)):  # unattributed: every pair of the call is in doubt
                    failed.setdefault(index, error)
            out.extend(failed.get(i) for i in range(len(chunk)))
        return out

    def _errors(self, answer: Mapping[str, Any]) -> dict[str, Exception]:
        """The 207 errors of a batch answer by the trace id (or record id) they name."""
        out: dict[str, Exception] = {}
        for entry in answer.get("errors") or []:
            context = entry.get("context") or {}
            for name in [*(context.get("objectWriteTraceId") or []), *(context.get("ids") or [])]:
                out[str(name)] = self._error(entry)
        return out

    def _error(self, entry: Mapping[str, Any]) -> Rejected | RecordGone | CaseGone:
        """One 207/batch error; `RecordGone` when it names a linked contact that no longer exists, `CaseGone` a
        ticket."""
        code = str(entry.get("category") or entry.get("subCategory") or "")
        message = str(entry.get("message", ""))
        text = vendor_error(code, message, _property_names(entry))
        if GONE_CONTACT.search(message):
            return RecordGone(text, system=self.name, code=code)
        if GONE_TICKET.search(message):
            return CaseGone(text, system=self.name, code=code)
        return Rejected(text, system=self.name, code=code)

    def _unexplained(self, answer: Mapping[str, Any]) -> Rejected | RecordGone | CaseGone:
        errors = answer.get("errors") or []
        if errors:
            return self._error(errors[0])
        return Rejected("HubSpot answered the batch without a result for this input", system=self.name)


# ---- helpers -------------------------------------------------------------------
def _link(object_type: str, to_type: str, to_id: str) -> Json:
    """One inline association of a v3 create input (`PublicAssociationsForObject`)."""
    return {"to": {"id": to_id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": LINK_TYPES[(object_type, to_type)]}]}


def _email_properties(item: Interaction, text: str, when: str) -> Json:
    """An email engagement of one message, from the interaction alone (no channel's raw payload).

    Inbound is `INCOMING_EMAIL`, outbound (an agent's reply) `EMAIL`, HubSpot's
    value for a sent email; both were sent (`SENT`). The subject is derived, as
    a call's title is: the message's own subject line is the first line of a
    new thread's text. `hs_email_headers` names sender and recipient, from which
    HubSpot fills the read-only from/to properties.
    """
    inbound = item.direction is Direction.INBOUND
    customer = item.customer.display or item.customer.value
    headers = {"from": _email_address(item.sender), "to": [_email_address(item.recipient)], "cc": [], "bcc": []}
    return {"hs_timestamp": when, "hs_email_direction": "INCOMING_EMAIL" if inbound else "EMAIL",
            "hs_email_status": "SENT", "hs_email_subject": f"Email {'from' if inbound else 'to'} {customer}",
            "hs_email_text": text, "hs_email_headers": json.dumps(headers, ensure_ascii=False)}


def _email_address(identity: Identity) -> Json:
    """One address of `hs_email_headers` (`email`, `firstName`, `lastName`); names from the display name split at
    its first space, none when the display is the address itself."""
    display = identity.display.strip()
    first, _, last = ("" if display == identity.value else display).partition(" ")
    names = {"firstName": first, "lastName": last.strip()}
    return {"email": identity.value, **{k: v for k, v in names.items() if v}}


def _is_sdk_error(exc: Exception) -> bool:
    """Every generated package of hubspot-api-client has its own `ApiException` class."""
    return any(cls.__name__ == "ApiException" and cls.__module__.startswith("hubspot.") for cls in type(exc).__mro__)


def _property_names(entry: Mapping[str, Any]) -> list[str]:
    """The properties a HubSpot error entry names (`context.propertyName`)."""
    names = (entry.get("context") or {}).get("propertyName") or []
    return [str(name) for name in names] if isinstance(names, list) else []


def _scopes(body: Mapping[str, Any]) -> list[str]:
    """The scopes a MISSING_SCOPES answer names (`errors[].context.requiredGranularScopes`, or `requiredScopes`)."""
    found: list[str] = []
    for entry in body.get("errors") or []:
        context = entry.get("context") or {} if isinstance(entry, dict) else {}
        for key in ("requiredGranularScopes", "requiredScopes"):
            found += [str(s) for s in context.get(key) or [] if str(s) not in found]
    return found


def _properties(props: Json) -> Json:
    """`props` with every value cut to HubSpot's property length."""
    return fit(props, dict.fromkeys(props, PROPERTY_LENGTH))


def _error_body(raw: Any) -> Json:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": str(raw)[:200]}
    return body if isinstance(body, dict) else {}


def _rate_limit_hint(headers: Mapping[str, str], body: Mapping[str, Any]) -> float | None:
    """Seconds to wait after a 429: Retry-After, else what HubSpot's policy and headers imply.

    HubSpot's own 429s carry no Retry-After; the policy that refused says how
    long its window is (https://developers.hubspot.com/docs/api/usage-details).
    """
    hint = retry_after_seconds(headers.get("Retry-After"))
    if hint is not None:
        return hint
    policy = str(body.get("policyName") or "")
    if not policy:  # no body to say which allowance ran out: the widest one at zero
        for header, name in (("Daily-Remaining", "DAILY"), ("Remaining", "TEN_SECONDLY_ROLLING"),
                             ("Secondly-Remaining", "SECONDLY")):
            if headers.get(f"X-HubSpot-RateLimit-{header}") == "0":
                policy = name
                break
    if policy == "DAILY":
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return (midnight - now).total_seconds()
    if policy == "SECONDLY":
        return 1.0
    if policy == "TEN_SECONDLY_ROLLING":
        try:
            return int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000) / 1000
        except ValueError:
            return 10.0
    return None


def _modified(record: Mapping[str, Any], modified: str) -> str:
    """A search result's last-modified value (the property, else the record's `updatedAt`)."""
    return str((record.get("properties") or {}).get(modified) or record["updatedAt"])


def _stage(pipelines: Mapping[str, Json], pipeline_id: str, stage_id: str) -> Json | None:
    """A ticket stage by pipeline and stage id (any pipeline when the ticket names none)."""
    candidates = [pipelines[pipeline_id]] if pipeline_id in pipelines else list(pipelines.values())
    return next((s for p in candidates for s in p.get("stages") or [] if str(s["id"]) == stage_id), None)


def _written_value(identity: Identity) -> str | None:
    """What a new contact's property holds for an identity (X: the handle, never the numeric id)."""
    if identity.kind is IdentityKind.X:
        return normal_handle(identity.display) or None
    if identity.kind is IdentityKind.X_HANDLE:
        return normal_handle(identity.value) or None
    return identity.value



def _parse_datetime(value: str) -> datetime:
    """HubSpot's `2024-01-01T12:00:00.000Z` (or epoch milliseconds) as an aware datetime."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _set_at(entry: Mapping[str, Any]) -> datetime:
    """When a property history entry was set (the epoch when its timestamp cannot be read)."""
    try:
        return _parse_datetime(str(entry.get("timestamp") or "0"))
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _iso(value: datetime) -> str:
    """HubSpot's datetime form: ISO-8601 UTC with milliseconds."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain_text(body: str) -> str:
    """A communication body as the customer should read it: HubSpot may store the timeline's rich text as HTML."""
    if "<" not in body:
        return body
    text = re.sub(r"(?i)<br\s*/?>|</p>\s*<p[^>]*>", "\n", body)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def _epoch_ms(cursor: str) -> str:
    """A cursor as the epoch milliseconds search filters on datetimes take."""
    return str(int(_parse_datetime(cursor).timestamp() * 1000))
