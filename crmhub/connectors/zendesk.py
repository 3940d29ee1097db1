"""Zendesk Support: user mirror, groups, and history writes as ticket comments (zenpy).

Retries: only crmhub's layer (`Connector.call`) retries. zenpy has no retry
of its own except on 429, where it sleeps `Retry-After` seconds and tries
again for as long as its `ratelimit_budget` allows (for ever without one).
The client is built with `ratelimit_budget=1`, so zenpy raises
`RatelimitBudgetExceeded` before its first sleep, and with
`proactive_ratelimit` unset (that one sleeps too). The 429's own
`Retry-After` is read from the response by the session's observer (zenpy's
exception carries no response) and handed to the retry layer as
`RateLimited.retry_after`.

Reaching the API: `build_session(base_url=...)` is zenpy's `session=`, so
the sandbox or a proxy is reached per instance; no process-wide environment.

Mirror: the cursor-based incremental user export
(`/api/v2/incremental/users/cursor.json`): the first load starts at
`start_time=0`, later runs resume from the saved `after_cursor`, one call
per page (up to 1000 users), stopping at `end_of_stream`, because that
export allows only 10 requests a minute. Agents, admins and deleted users
leave the mirror (`MirrorRecord.deleted`): they are not customers. A user
merged into another (`PUT /users/{id}/merge`) shows as deleted: Zendesk
names no survivor, whose identities and tickets the merge moved. A ticket
refused for its requester (deleted since crmhub linked it) is `RecordGone`;
an update refused for its ticket (`Status: closed prevents ticket update`:
closed by an agent or a ticket merge) is `CaseGone`.

Writes (`write_history`), per batch:

1. Contacts: missing users are created with `users/create_many`, each with
   `external_id = crmhub-person-<person id>`, once per person. A create that
   fails is looked up with one `users/show_many?external_ids=` call (a
   timed-out earlier attempt, or an earlier batch, already created the user,
   whose external id is unique; the mirror does not list it for a minute,
   as the incremental export leaves out the last minute's changes). One
   refused because its phone or email is already used (a user an agent made
   seconds ago) is then looked up with `users/search?query=phone:` (then
   `email:`), and linked when exactly one end-user holds that very value
   (issue 13). Found users count as created. `users/create_or_update_many`
   would match by external id and email at the same cost, but not by phone,
   and would overwrite the name (and external id) of a user crmhub did not
   create, so crmhub does not use it.
2. Cases: a new case is a ticket with `external_id = CaseSpec.key`,
   requester = the contact, group / priority / tags from the target, and
   the interaction as its first comment. Ticket external ids are *not*
   unique in Zendesk, so before creating, each case is looked up with
   `GET /tickets.json?external_id=` (the list endpoint, consistent at once,
   unlike search, whose index lags). The look-up is skipped when the
   requester was created in this same call: such a user cannot have a
   ticket yet. Missing tickets are created with `tickets/create_many`,
   each carrying its case's first run of writes as its first comment.
3. Interactions: the other writes become comments, sent through
   `tickets/update_many`, folded (`zendesk_comments`): a ticket's
   consecutive writes of one visibility and author share one comment, and
   a job takes one comment per ticket, so a ticket with several runs takes
   one job per run ("rounds"). Inbound customer messages are public
   comments authored by the customer, outbound ones are private notes
   authored by the API agent (public agent comments are what the reply job
   sends back out over the channel, and they would e-mail the requester).
   Comments on tickets that exist, by authors that exist, need nothing
   made first: their first round is submitted with the users job.

Reopening: a write whose case the engine found closed (solved) within the
reopen window sets the ticket's status back to `open` in the same
`update_many` item that adds its comment, so the two land together or not
at all, and a repeat is harmless.

Case states (`case_pages`): the cursor-based incremental ticket export
(`/api/v2/incremental/tickets/cursor.json`, like the user mirror: 1000
tickets a page, resumed from the saved `after_cursor`, stopping at
`end_of_stream`), keeping the tickets whose `external_id` is a crmhub case
key. `new`, `open`, `pending` and `hold` are open; `solved` is closed and
can be reopened; `closed` (and `deleted`) is closed for good, as Zendesk
refuses to update such a ticket. Tags `crmhub_confirm_N` / `crmhub_reject_N`
on the ticket are an agent's decision on link suggestion N. The close time is the ticket's
`updated_at`: the export's ticket carries no solve time of its own
(`include=metric_sets` would add `solved_at`, but zenpy drops the export's
side-loads), and a solved ticket is rarely edited without being reopened.
The first refresh starts at `start_time=0`, i.e. reads every ticket of the
account once (1000 per call, 10 calls a minute at most).

Idempotency key: every comment is written with the audit metadata
`{"crmhub_key": HistoryWrite.key}`, plus `crmhub_keys` (every key) on a
folded one (shown on the comment as `metadata.custom`, invisible to agents
and customers, unlike a tag per interaction). Before commenting on a ticket that existed before
this call (a follow-up's `case_id`, or a ticket found by external id), its
comments are read once and writes whose key is already there count as
done. So writing the same batch twice, e.g. after a timeout, creates
nothing twice.

Lost answers of bulk writes (issue 13): `create_many` / `update_many`
answer with a job id, and the job runs later. When that answer is lost
(reset or timeout after sending), the job may be queued, its effect not yet
visible, so re-reading at once and resending would double it. The retry
layer therefore never resends a bulk write blindly: each attempt after a
failed one (`_submit_once`) first waits until no recent job of the same
size is queued or working (`GET /api/v2/job_statuses`, polled like a job:
its id is unknown, but it is among the newest jobs until it has run), then
looks up what landed by crmhub's keys (`users/show_many?external_ids=`,
tickets by `external_id`, comments' `crmhub_key`) and submits only the
rest. The check runs inside the attempt, so retries stay in one layer.
Moving a ticket to another requester (`_move_tickets`) sets a value and is
harmless to repeat, so it is not checked.

Jobs kept across attempts: each job's id is reported as soon as it is
submitted (`write_history(..., on_submitted=)`, with the keys of the
writes it carries; after a lost answer, the listed candidates), and the
engine stores it on those outbox rows. A later attempt (the lease ran out,
the daemon died, polling gave up after `job_timeout`) brings it back as
`HistoryWrite.job_ref`, and the connector first waits for those jobs,
then finds what they wrote by key, so a queued job is never submitted
twice. Left: a daemon killed between a submit landing and its answer has
no id to store (docs/roadmap.md).

Without waiting (`write_history(..., settle_later=True)`, the daemon's
delivery workers; issue 13): no job is polled on the delivery path. Each
write goes one stage further per call (its user, else its ticket, else its
comment), the job is submitted, and the write is reported `waiting` with
its place in the job (`zendesk_jobs`: `<stage>:<job id>:<index>`), which
the engine stores on the row. The call that next gets the row (due after
`job_settle_first` seconds, doubling while the job runs, at most
`job_poll_max`) reads every job its writes wait on with one
`job_statuses/show_many` (100 ids a call), takes each item's result from
the job (user id, ticket id, comment done) without looking anything up,
and submits the next stage at once. A batch in steady state thus costs its
submits plus one read. A ticket whose comment job is out, and a case whose
ticket job is out, take further writes only once that job has finished
(they wait `after` it), so comments keep their order and no ticket is
opened twice. A job gone or failed, a reference without a place, or a
claim cut short (`first_attempt` false) falls back to the careful path:
found by crmhub's keys, like any retry. `sync_once` (and every caller
without `settle_later`) still waits for its jobs as below.

Replies (`reply_pages`): agents' public comments, read from the time-based
incremental ticket events export with comment events
(`/api/v2/incremental/ticket_events.json?start_time=&include=comment_events`),
one call per page, the cursor being the export's `end_time` (events at that
second come again on the next read, and the replies table drops repeats).
A comment counts when it is public and written by an agent or admin other
than crmhub's own API user (`users/me`): customers' comments (crmhub writes
inbound messages as public comments authored by the customer) and crmhub's
own private notes never do. Authors' roles are read with one
`users/show_many` per page that has candidates, and remembered. Which
tickets are crmhub's is the engine's business (its threads). The daemon's
replies job reads this export at most every `reply_read_spacing` (25 s:
every second run of the default 15 s job; `crmhub.replying`), as the export
holds back the last minute anyway: half the calls, of the 10 a minute the
incremental exports share, for a reply out in 60-90 s instead of 60-75 s.

Notes (`add_case_note`): a private comment with the note's key in the audit
metadata, written once (the ticket's comment keys are read first).

Bulk jobs take at most `batch_size` (<= 100) items; all of a step's
outstanding jobs are polled together with
`GET /api/v2/job_statuses/show_many.json?ids=` (100 ids a call), first
after `job_poll_first` seconds (0.5: jobs finish in a second or two), then
backing off (x2, at most `job_poll_max` apart) up to `job_timeout` seconds,
after which the batch is an uncertain failure (`Timeout`). A failed item of a job
becomes that write's `Rejected`; the rest of the batch goes on.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar
from urllib.parse import quote

import requests
import structlog
from zenpy import Zenpy
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from crmhub.connectors import zendesk_objects
from crmhub.connectors._base import Connector, classify_status, fit, retry_after_seconds
from crmhub.connectors._identity_fields import identity_field_updates
from crmhub.connectors._http import build_session
from crmhub.connectors._redact import vendor_error
from crmhub.connectors._retry import Retrier
from crmhub.connectors.salesforce import ContactObject
from crmhub.connectors.zendesk_comments import COMMENT_BYTES, KEY_FIELD, comment_fields, keys_of, runs
from crmhub.connectors.zendesk_jobs import (
    AFTER,
    COMMENT,
    FIRST,
    HELD,
    LAST_STAGES,
    RUNNING,
    TICKET,
    USERS,
    JobRef,
    parse,
)
from crmhub.errors import (
    CaseGone, ConnectorError, NotFound, PermanentError, RateLimited, RecordGone, Rejected, Timeout,
)
from crmhub.identities import from_crm_field, mapping_kind
from crmhub.link_marks import read_tags
from crmhub.model import (
    AgentReply,
    CaseNote,
    CaseState,
    LinkMark,
    Direction,
    HistoryWrite,
    Identity,
    IdentityKind,
    MirrorRecord,
    ReplyPage,
    WriteOutcome,
)

T = TypeVar("T")
log = structlog.get_logger("crmhub.zendesk")
MAX_BULK = 100  # items per create_many / update_many / show_many (Zendesk's limit)
EXPORT_PAGE = 1000  # users (or ticket events) per incremental export page (Zendesk's maximum)
MAX_CANDIDATES = 7  # job ids stored for one lost answer (the engine keeps 255 characters)
AGENT_ROLES = frozenset({"agent", "admin"})
CRMHUB_TAG = "crmhub"
LINK_TAG_PREFIX = "crmhub_"  # tags crmhub_confirm_12 / crmhub_reject_12: an agent's decision on link suggestion 12
ZENDESK_TIME = "%Y-%m-%dT%H:%M:%SZ"
CASE_KEY = re.compile(r".+#\d+")  # crmhub's case keys, `<conversation>#<seq>`, in tickets' external_id
OPEN_STATUSES = frozenset({"new", "open", "pending", "hold"})
FINAL_STATUSES = frozenset({"closed", "deleted"})  # Zendesk refuses to update (reopen) these
# What crmhub writes, cut to fit: comments take up to 64 KB (UTF-8); subjects are kept to 255 characters.
TICKET_LIMITS = {"subject": 255}

__all__ = ["ContactObject", "ZendeskAuth", "ZendeskCrm", "ZendeskGroup"]


class DuplicateTaken(Rejected):
    """A create refused because a unique value (email, phone, external id) is already another user's."""


@dataclass
class _Submitted:
    """A bulk job over items 0..count-1: items found done before sending, items sent, its status and results."""

    count: int
    found: dict[int, int]  # index -> record id, already in Zendesk (an earlier, unanswered attempt made it)
    sent: list[int]
    job: Any  # zenpy's JobStatus as submitted; None when nothing was sent
    results: list[tuple[int | None, Exception | None]] | None = None  # per sent item, once the job completed

    def merged(self) -> list[tuple[int | None, Exception | None]]:
        """(record id, error) per item: found ones as done, sent ones from the job's results."""
        results = dict(zip(self.sent, self.results or [], strict=False))
        return [(self.found[i], None) if i in self.found else results[i] for i in range(self.count)]


@dataclass(frozen=True)
class ZendeskAuth:
    """API token (`email` + `token`) or an OAuth access token."""

    email: str | None = None
    token: str | None = None
    oauth_token: str | None = None


@dataclass(frozen=True)
class ZendeskGroup:
    """Where a routing queue puts new tickets: a group (by name) and its default priority."""

    group: str
    priority: str | None = None


class ZendeskCrm(Connector):
    """One Zendesk Support account."""

    name = "zendesk"
    max_batch = MAX_BULK  # outbox rows a delivery worker fills a batch with: one create_many/update_many job
    # A batch with new customers: users, a status read, tickets and comments (its last jobs are read with
    # the next batch's read): the stretch's estimate until calls are measured.
    batch_calls = 4.0
    reports_jobs = True  # write_history(..., on_submitted=): bulk jobs are stored by the engine as submitted
    # The daemon reads replies at most this often (`crmhub.replying`): the ticket events export leaves out the
    # last minute, so a reply goes out 60-75 s after it was written with a read every 15 s and 60-90 s with one
    # every 30 s, for half the calls (of the 10 a minute the incremental exports share). 25: every second run
    # of the default 15 s replies job.
    reply_read_spacing = 25.0

    def __init__(self, *, subdomain: str, auth: ZendeskAuth, objects: Sequence[ContactObject],
                 queues: Mapping[str, ZendeskGroup] | None = None, base_url: str | None = None,
                 default_region: str = "US", other_regions: Sequence[str] = (),
                 batch_size: int = MAX_BULK, retrier: Retrier | None = None,
                 job_sleep: Callable[[float], None] = time.sleep, job_poll_first: float = 0.5,
                 job_poll_max: float = 10.0, job_timeout: float = 120.0, job_settle_first: float = 1.0,
                 link_tag_prefix: str = LINK_TAG_PREFIX) -> None:
        """
        Args:
            subdomain: the account's subdomain (acme for acme.zendesk.com).
            objects: the mirrored object (`user`): which user fields hold which
                identity kind (custom ones as `user_fields.NAME`), plus routing fields.
            queues: routing queue name -> group (by name) and default priority.
            base_url: where to send requests instead of https://{subdomain}.zendesk.com.
            batch_size: items per bulk job (1..100).
            job_sleep: how to wait between job status polls (tests pass a fake).
            job_settle_first: seconds before a job submitted without waiting is read
                (`settle_later`); then twice as long each time it is still running, up to `job_poll_max`.
            link_tag_prefix: tags `<prefix>confirm_N` / `<prefix>reject_N` on a ticket are an agent's decision
                on link suggestion N (`crmhub.link_marks`).
        """
        super().__init__(retrier)
        if not 1 <= batch_size <= MAX_BULK:
            raise ValueError(f"batch_size must be 1..{MAX_BULK}, got {batch_size}")
        self.subdomain = subdomain
        self.auth = auth
        self.objects = {o.name: o for o in objects}
        self.queues = dict(queues or {})
        self.base_url = base_url
        self.default_region = default_region
        self.other_regions = tuple(other_regions)  # tried for national numbers not valid in default_region
        self.batch_size = batch_size
        self.job_sleep = job_sleep
        self.job_poll_first = job_poll_first
        self.job_poll_max = job_poll_max
        self.job_timeout = job_timeout
        self.job_settle_first = job_settle_first
        self.link_tag_prefix = link_tag_prefix
        self._checks: dict[str, int] = {}  # job id -> reads that found it still running (settle_later)
        self._inflight: dict[int, str] = {}  # ticket id -> the comment job on it not seen finished (settle_later)
        self._adopted: set[str] = set()  # keys of `adopt` writes found on their ticket in this call (issue 14)
        self._opening: dict[str, str] = {}  # case key -> the ticket job creating it, not seen finished (settle_later)
        self._creating: dict[int, str] = {}  # person -> the users job creating its user, not seen finished
        self._zenpy: Zenpy | None = None
        self._groups: dict[str, int] | None = None
        self._me: int | None = None
        self._roles: dict[int, str] = {}
        self._hints = threading.local()  # Retry-After of the last 429 seen by this thread
        self._call = threading.local()  # the running write_history's `on_submitted`

    # ---- SDK boundary --------------------------------------------------------
    def translate(self, exc: Exception) -> ConnectorError | None:
        if isinstance(exc, RatelimitBudgetExceeded):
            # zenpy raised instead of sleeping (ratelimit_budget=1); the hint came through the observer.
            hint = getattr(self._hints, "retry_after", None)
            return RateLimited(f"HTTP 429: rate limited; retry after {hint or '?'} s", retry_after=hint,
                               system=self.name, status=429)
        response = getattr(exc, "response", None)
        if isinstance(exc, APIException | requests.HTTPError) and isinstance(response, requests.Response):
            code, message, fields = _error_of(response)
            text = f"HTTP {response.status_code} {vendor_error(code, message, fields)}"
            return classify_status(response.status_code, text, system=self.name, code=code,
                                   retry_after=_rate_hint(response.headers))
        if isinstance(exc, ZenpyException):
            return Rejected(f"zenpy refused the call: {vendor_error(type(exc).__name__, str(exc))}", system=self.name)
        return None

    def _observe(self, path: str, status: int, headers: Mapping[str, str], elapsed: float | None = None) -> None:
        self.observe_http(path, status, headers, elapsed)
        if status == 429:
            self._hints.retry_after = _rate_hint(headers)

    def _client(self) -> Zenpy:
        if self._zenpy is None:
            session = build_session(base_url=self.base_url, observer=self._observe, timeout=60,
                                    before=self.before_http, after=self.after_http)
            credentials: dict[str, Any] = (
                {"oauth_token": self.auth.oauth_token} if self.auth.oauth_token
                else {"email": self.auth.email, "token": self.auth.token})
            self._zenpy = Zenpy(subdomain=self.subdomain, session=session, ratelimit_budget=1,
                                disable_cache=True, **credentials)
        return self._zenpy

    def zd(self, operation: str, fn: Callable[[Zenpy], T]) -> T:
        """Run `fn(client)` through the one retry layer."""
        return self.call(operation, lambda: fn(self._client()))

    # ---- reads ---------------------------------------------------------------
    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]:
        """Users changed since the cursor (all of them when None), a page and the cursor after it at a time."""
        obj = self.objects[object_name]
        cursor = since
        while True:
            page = self.zd("incremental_users", lambda zd, c=cursor: _export_page(zd, c))  # type: ignore[misc]
            users, after, end = page
            if users or after != cursor:
                yield [self._mirror_record(obj, u) for u in users], after
            if end or not after or after == cursor:
                return  # end_of_stream: the next request would only spend the 10/min allowance
            cursor = after

    def record_fates(self, object_type: str, record_ids: Sequence[str]) -> list[MirrorRecord]:
        """These users as they stand now (`users/show_many`, 100 a call): a deleted one shows `active: false`.

        Zendesk does not record which user a merge absorbed a user into, so
        a merged-away user is simply gone here; its identities moved to the
        survivor, which the mirror then matches. What a write that found its
        user gone asks (`crmhub.sync.deliver`).
        """
        obj = self.objects.get(object_type)
        if obj is None:
            return []
        found: list[MirrorRecord] = []
        for start in range(0, len(record_ids), MAX_BULK):
            chunk = [int(i) for i in record_ids[start:start + MAX_BULK] if str(i).isdigit()]
            users = self.zd("users.show_many", lambda zd, c=chunk: [u.to_dict() for u in zd.users(ids=c)])  # type: ignore[misc]
            found += [self._mirror_record(obj, u) for u in users]
        return found

    def case_pages(self, since: str | None) -> Iterator[tuple[list[CaseState], str]]:
        """crmhub's tickets changed since the cursor (every one when None), a page and the cursor after it at a time."""
        cursor = since
        while True:
            page = self.zd("incremental_tickets", lambda zd, c=cursor: _ticket_export_page(zd, c))  # type: ignore[misc]
            tickets, after, end = page
            if tickets or after != cursor:
                yield [state for t in tickets if (state := _case_state(t, self.link_tag_prefix)) is not None], after
            if end or not after or after == cursor:
                return  # end_of_stream: the next request would only spend the 10/min allowance
            cursor = after

    def _mirror_record(self, obj: ContactObject, user: Mapping[str, Any]) -> MirrorRecord:
        identities: list[Identity] = []
        for kind, names in obj.fields_by_kind.items():
            for name in names:
                identity = from_crm_field(kind, _field(user, name), self.default_region, self.other_regions)
                if identity is not None:
                    identities.append(identity)
        return MirrorRecord(
            crm=self.name, object_type=obj.name, record_id=str(user["id"]), identities=tuple(identities),
            fields={name: _field(user, name) for name in obj.extra_fields},
            modified_at=_parse_time(user.get("updated_at") or user["created_at"]),
            created_at=_parse_time(user["created_at"]) if user.get("created_at") else None,
            deleted=not user.get("active", True) or user.get("role", "end-user") != "end-user",
        )

    def group_ids(self) -> dict[str, int]:
        """Group name -> id, listed once per connector."""
        if self._groups is None:
            groups = self.zd("groups", lambda zd: [g.to_dict() for g in zd.groups()])
            self._groups = {str(g["name"]): int(g["id"]) for g in groups if not g.get("deleted")}
        return self._groups

    def _comment_keys(self, zd: Zenpy, ticket_id: int) -> set[str]:
        """crmhub keys already on a ticket's comments (raw SDK: call inside an attempt)."""
        keys: set[str] = set()
        for comment in zd.tickets.comments(ticket=ticket_id):
            keys |= keys_of((comment.to_dict().get("metadata") or {}).get("custom"))  # folded ones carry several
        return keys

    @staticmethod
    def _ticket_by_key(zd: Zenpy, key: str) -> int | None:
        """The oldest ticket whose external_id is `key` (raw SDK: call inside an attempt)."""
        # zenpy puts parameter values into the URL as given, so the key ('#' in it) is escaped here.
        ids = sorted(int(t.id) for t in zd.tickets(external_id=quote(key, safe="")) if t.external_id == key)
        return ids[0] if ids else None

    # ---- replies -------------------------------------------------------------
    def reply_pages(self, cursor: str | None, *, start: datetime) -> Iterator[ReplyPage]:
        """Agents' public comments since `cursor` (the export's epoch seconds; None: since `start`)."""
        start_time = int(cursor) if cursor else int(start.timestamp())
        me = self._my_id()
        while True:
            events, end_time, end = self.zd("ticket_events", lambda zd, t=start_time: _events_page(zd, t))  # type: ignore[misc]
            comments = [(event, child) for event in events for child in event.get("child_events") or []
                        if child.get("event_type") == "Comment" and child.get("public") is True
                        and child.get("author_id") not in (None, me) and child.get("body")]
            roles = self._author_roles({int(child["author_id"]) for _, child in comments})
            replies = tuple(
                AgentReply(crm=self.name, reply_ref=str(child["id"]), case_id=str(event["ticket_id"]),
                           text=str(child["body"]), written_at=_event_time(event), author=str(child["author_id"]))
                for event, child in comments if roles.get(int(child["author_id"])) in AGENT_ROLES)
            moved = end_time is not None and end_time > start_time
            yield ReplyPage(replies, str(end_time) if moved else cursor, last=end or not moved)
            if end or not moved:
                return
            start_time = end_time  # type: ignore[assignment]  # moved implies an int

    def _my_id(self) -> int:
        """crmhub's own API user, whose comments are never agents' replies (read once)."""
        if self._me is None:
            self._me = int(self.zd("users.me", lambda zd: zd.users.me().id))
        return self._me

    def _author_roles(self, ids: set[int]) -> dict[int, str]:
        """Role of each author (end-user, agent, admin), read once per author with users/show_many."""
        missing = sorted(ids - set(self._roles))
        for start in range(0, len(missing), MAX_BULK):
            chunk = missing[start:start + MAX_BULK]
            # the request zenpy's `users(ids=)` sends, its JSON read as it came (`_raw_get`)
            body = self.zd("users.show_many",
                           lambda zd, c=chunk: _raw_get(zd.users, zd.users.endpoint, ids=c))  # type: ignore[misc]
            for user in body.get("users") or []:
                self._roles[int(user["id"])] = str(user.get("role") or "end-user")
        return {i: self._roles.get(i, "end-user") for i in ids}

    survey_fields: Mapping[str, int] = {}  # settings `crms.zendesk.survey_fields`: kind -> Number ticket field id

    def set_survey_score(self, record_id: str, kind: str, score: int) -> None:
        """The survey's score into its ticket field (an update to a value: repeating it after a lost answer changes
        nothing). Zendesk's own satisfaction rating is good/bad and only the requester may set it."""
        field = self.survey_fields.get(kind)
        if field is None:
            raise Rejected(f"no Zendesk ticket field for {kind.upper()} scores: create a Number ticket field "
                           f"and set crms.zendesk.survey_fields.{kind} to its id in settings.yaml", system=self.name)
        ticket = zendesk_objects.ticket({"id": int(record_id), "custom_fields": [{"id": field, "value": score}]})
        self.zd("tickets.survey", lambda zd: zd.tickets.update(ticket))

    def mark_authors(self, marks: Sequence[tuple[str, LinkMark]]) -> dict[tuple[str, int], str]:
        """Who added each mark's tag (`zendesk user <id>`), from the ticket's audits; marks not found are left out.

        The export does not say who set a tag, the audits do: the latest audit that added the tag names
        its author. One audit listing per ticket (Zendesk has no listing for several tickets but the
        account-wide one), asked only for marks about to decide a suggestion (`crmhub.ops.links`).
        """
        wanted: dict[str, list[LinkMark]] = {}
        for ticket_id, mark in marks:
            wanted.setdefault(ticket_id, []).append(mark)
        found: dict[tuple[str, int], str] = {}
        for ticket_id, ticket_marks in wanted.items():
            if not ticket_id.isdigit():
                continue
            added = _tag_authors(self._audits(int(ticket_id)))
            for mark in ticket_marks:
                verb = "confirm" if mark.confirm else "reject"
                author = added.get(f"{self.link_tag_prefix}{verb}_{mark.suggestion_id}".lower())
                if author is not None and author > 0 and author != self._my_id():  # -1: Zendesk itself
                    found[(ticket_id, mark.suggestion_id)] = f"zendesk user {author}"
        return found

    def _audits(self, ticket_id: int) -> list[dict[str, Any]]:
        """A ticket's audits, oldest first (List Audits for a Ticket, cursor pagination, 100 a page)."""
        audits: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = {"page[after]": after} if after else {}
            body = self.zd("tickets.audits", lambda zd, p=page: _raw_get(  # type: ignore[misc]
                zd.tickets, zd.tickets.endpoint.audits, id=ticket_id, cursor_pagination=True, **p))
            audits += [a for a in body.get("audits") or [] if isinstance(a, dict)]
            meta = body.get("meta") or {}
            if not meta.get("has_more") or not meta.get("after_cursor") or meta.get("after_cursor") == after:
                return audits
            after = str(meta["after_cursor"])

    def link_instruction(self, suggestion_id: int) -> str:
        """What an agent sets on the ticket to confirm or reject a suggestion (tags `crmhub.link_marks` reads)."""
        return (f"To confirm, add the tag {self.link_tag_prefix}confirm_{suggestion_id} to this ticket; "
                f"to reject, {self.link_tag_prefix}reject_{suggestion_id}.")

    def add_case_note(self, note: CaseNote) -> None:
        """A private comment on the ticket, keyed in the audit metadata so it is written once."""
        ticket_id = int(note.case_id)

        def write(zd: Zenpy) -> None:
            if note.key in self._comment_keys(zd, ticket_id):
                return
            zd.tickets.update(zendesk_objects.ticket({"id": ticket_id,
                                             "comment": fit({"body": note.text, "public": False}, COMMENT_BYTES,
                                                            utf8=True),
                                             "metadata": {KEY_FIELD: note.key}}))

        self.zd("tickets.note", write)

    # ---- writes --------------------------------------------------------------
    def write_history(self, writes: Sequence[HistoryWrite], *,
                      on_submitted: Callable[[Sequence[str], str], None] | None = None,
                      settle_later: bool = False, more_due: bool = False) -> list[WriteOutcome]:
        """Create missing users and tickets, then add each ticket's interactions as folded comments.

        Args:
            on_submitted: told (write keys, job id) as soon as a bulk job is
                submitted, before waiting for it, so the engine can store the
                job with its writes; a later attempt gets it back as
                `HistoryWrite.job_ref` and waits for that job instead of
                submitting again.
            settle_later: submit and return without waiting for any job: each
                write goes one stage further (user, ticket, comment) and is
                reported `waiting` on its job (`zendesk_jobs`); the call
                settles the writes whose jobs earlier calls left first, from
                one `job_statuses/show_many` read.
            more_due: (with `settle_later`) another full batch is due behind
                this one, so the call waits for nothing, not even its new
                customers' users job (`_users_first`).

        Returns one outcome per write, in order; a write the account refused
        carries a `Rejected`. Raises a `TransientError` when the batch as a
        whole failed (nothing known about it), to be retried.
        """
        self._call.on_submitted = on_submitted
        self._adopted = set()
        self._update_users(writes)
        try:
            if settle_later:
                return self._adoptions(self._write_later(writes, more_due))
            self._await_refs(sorted({w.job_ref for w in writes if w.job_ref}))
            # A write that waited in a job (a worker's, then `crmhub sync`) was sent: found by key, never resent.
            return self._adoptions(self._write([replace(w, first_attempt=False) if w.job_ref else w for w in writes]))
        finally:
            self._call.on_submitted = None

    def _update_users(self, writes: Sequence[HistoryWrite]) -> None:
        """Set the identity fields the engine asks to (a renamed X handle): one update_many job, waited (rare).

        Setting a value twice is harmless; a refusal is logged, not the
        write's failure (the history still lands, and the next write sets it again).
        """
        fields: dict[int, dict[str, Any]] = {}
        for record, (_, values) in identity_field_updates(writes, self.objects,
                                                          next(iter(self.objects.values()), None)).items():
            user = fields.setdefault(int(record), {})
            for name, value in values.items():
                if name.startswith("user_fields."):
                    user.setdefault("user_fields", {})[name.removeprefix("user_fields.")] = value
                else:
                    user[name] = value
        users = [zendesk_objects.user({"id": user_id, **changes}) for user_id, changes in sorted(fields.items())]
        for start in range(0, len(users), self.batch_size):
            chunk = users[start:start + self.batch_size]
            try:
                results = self._run_job("users.update_many",
                                        lambda zd, c=chunk: zd.users.update(c))  # type: ignore[misc]
            except PermanentError as exc:
                results = [(None, exc)] * len(chunk)
            for user, (_, error) in zip(chunk, results, strict=False):
                if error is not None:
                    log.warning("user fields not updated", crm=self.name, record=user.id, reason=str(error)[:200])

    def _adoptions(self, outcomes: list[WriteOutcome]) -> list[WriteOutcome]:
        """Outcomes of `adopt` writes whose comment an earlier state store made, marked adopted."""
        return [replace(o, adopted="comments") if o.key in self._adopted and o.ok else o for o in outcomes]

    # -- without waiting (settle_later)
    def _write_later(self, writes: Sequence[HistoryWrite], more_due: bool = False) -> list[WriteOutcome]:
        """Settle what earlier calls' jobs did, then submit each write's next stage (only a users job is waited
        for, once: `_users_first`)."""
        writes, submitted = self._users_first(writes, more_due)
        places = {w.key: parse(w.job_ref) for w in writes if w.job_ref}
        statuses = self._read_jobs(sorted({job for jobs, _ in places.values() for job in jobs}))
        outcomes: dict[str, WriteOutcome] = {}
        ready: list[HistoryWrite] = []
        refused: dict[int, tuple[Exception, HistoryWrite]] = {}  # person -> why its user was not created
        results: dict[str, list[tuple[int | None, Exception | None]]] = {}  # per completed job, read once
        opened: dict[str, int] = {}  # case key -> its ticket, made by a job settled here
        made: dict[int, int] = {}  # person -> its user, made by a job settled here
        users_job: str | None = None  # this call's users job, still running: new tickets go after it (`HELD`)
        for write in writes:
            if write.key not in places:
                ready.append(write)
                continue
            jobs, place = places[write.key]
            if any(getattr(statuses.get(job), "status", None) in RUNNING for job in jobs):
                outcomes[write.key] = self._waiting(write, str(write.job_ref), jobs)
                if place is not None and place.stage in (FIRST, TICKET) and write.new_case is not None:
                    self._opening.setdefault(write.new_case.key, place.job)
                if place is not None and place.stage == USERS:
                    self._creating.setdefault(write.person_id, place.job)
                    users_job = place.job if place.job in submitted else users_job
                continue
            status = statuses.get(place.job) if place is not None else None
            if place is None or getattr(status, "status", None) != "completed":
                ready.append(replace(write, first_attempt=False))  # gone, failed or unplaced: found by key
                continue
            if place.stage == AFTER:
                ready.append(write)
                continue
            if place.stage == HELD:  # never sent (the write waited for its batch's users job): it goes now
                ready.append(write if write.new_case is None else  # its case opened meanwhile: a follow-up now
                             replace(write, new_case=replace(write.new_case, may_exist=not write.first_attempt)))
                continue
            if place.job not in results:
                results[place.job] = self._job_results(status, int(status.total or 0))
            record, error = results[place.job][place.index] if 0 <= place.index < len(results[place.job]) else (
                None, Rejected("missing from the job results", system=self.name))
            if place.stage == USERS and write.contact_id is not None:  # linked meanwhile (another write's user)
                ready.append(self._with_contact(write, int(write.contact_id)))
            elif error is not None or record is None:
                if place.stage == USERS and write.new_contact:
                    refused[write.person_id] = (error or Rejected("user not created", system=self.name), write)
                outcomes[write.key] = WriteOutcome(write.key, error=error)
            elif place.stage == USERS:  # the customer exists now: on to its ticket or comment
                ready.append(self._with_contact(write, record))
                made.setdefault(write.person_id, record)
            elif place.stage == FIRST:
                outcomes[write.key] = WriteOutcome(write.key, record_id=str(record), contact_id=write.contact_id,
                                                   case_id=str(record))
                opened.setdefault(write.new_case.key if write.new_case else "", record)
            elif place.stage == TICKET:
                ready.append(replace(write, case_id=str(record), new_case=None))
                opened.setdefault(write.new_case.key if write.new_case else "", record)
            else:  # COMMENT
                outcomes[write.key] = WriteOutcome(write.key, record_id=write.case_id, contact_id=write.contact_id,
                                                   case_id=write.case_id)
        if refused:  # made meanwhile (an earlier attempt, an agent): look the users up as a waited create does
            found = self._existing_users({p: e for p, (e, _) in refused.items()},
                                         {p: self._user_fields(w) for p, (_, w) in refused.items()})
            for write in writes:
                if write.person_id in found and write.key in outcomes and outcomes[write.key].error is not None:
                    del outcomes[write.key]
                    ready.append(self._with_contact(write, found[write.person_id]))
        ready = [self._with_contact(w, made[w.person_id]) if w.contact_id is None and w.person_id in made else w
                 for w in ready]
        outcomes.update(self._submit_later(self._join_cases(ready, opened, outcomes), users_job))
        nowhere = Rejected("no ticket to write on", system=self.name)
        return [outcomes.get(w.key) or WriteOutcome(w.key, error=nowhere) for w in writes]

    @property
    def settle_lookahead(self) -> float:
        """Seconds ahead a settle-later batch takes rows waiting on jobs (`crmhub.sync.deliver`): a batch's own
        status read comes `job_settle_first` after its users job, and reads theirs with it."""
        return self.job_settle_first

    def _users_first(self, writes: Sequence[HistoryWrite], more_due: bool = False
                     ) -> tuple[list[HistoryWrite], list[str]]:
        """The batch's new customers' users job, submitted first and read after `job_settle_first` with the jobs
        the batch's other rows wait on (one status read), so that their tickets go in this same run.

        Not when another full batch is due behind this one (`more_due`, 50 msg/s): those rows must not
        wait a second per batch; its users are settled by a later run, as any job. A full batch with no
        full one behind it waits (10 msg/s): the next batch is not ready before the second is over, and
        a settling run of its own would cost a read and a tickets job more (issue 13).

        Without it a new customer's ticket costs a run of its own, and a read, after its user's job. A job
        still running at that read is settled later, as any. The writes come back placed in the job
        (`u:<job>:<index>`), or linked to a user an earlier attempt made, with the jobs submitted.
        """
        known = {w.person_id for w in writes if w.contact_id is not None}
        need = [w for w in writes if w.job_ref is None and w.contact_id is None and w.new_contact
                and w.person_id not in known and w.person_id not in self._creating]
        if not need or more_due:
            return list(writes), []
        out: dict[str, WriteOutcome] = {}
        made, jobs = self._users_later(need, out)
        if jobs:
            self.job_sleep(self.job_settle_first)
        return [replace(w, job_ref=out[w.key].job_ref) if w.key in out else
                self._with_contact(w, made[w.person_id]) if w.person_id in made and w.contact_id is None else w
                for w in writes], jobs

    def _join_cases(self, writes: Sequence[HistoryWrite], opened: Mapping[str, int],
                    outcomes: dict[str, WriteOutcome]) -> list[HistoryWrite]:
        """Writes opening a case another write's ticket job opened (or is opening): onto that ticket, or after it.

        A conversation's next write is claimed once its first one waits in a
        job (its row is due again to be settled); its ticket must not be
        created twice.
        """
        ready = []
        for write in writes:
            key = write.new_case.key if write.new_case is not None else None
            if key is not None and key in opened:
                ready.append(replace(write, case_id=str(opened[key]), new_case=None))
            elif key is not None and key in self._opening:
                job = self._opening[key]
                outcomes[write.key] = self._waiting(write, str(JobRef(AFTER, job)), [job])
            else:
                ready.append(write)
        return ready

    @staticmethod
    def _with_contact(write: HistoryWrite, user_id: int) -> HistoryWrite:
        """The write once its customer's user exists. Its ticket was never sent unless a claim was cut short."""
        case = write.new_case
        return replace(write, contact_id=str(user_id), new_contact=(),
                       new_case=replace(case, may_exist=not write.first_attempt) if case is not None else None)

    def _waiting(self, write: HistoryWrite, ref: str, jobs: Sequence[str]) -> WriteOutcome:
        """`write` waits in (or for) `jobs`: read again after a wait that doubles each time they are running.

        A write whose job is its last stage (its comment, or its new ticket's first comment) is in the
        ticket once the job has run: it is not urgent, and rides the next run's status read.
        """
        checks = max((self._checks.get(job, 0) for job in jobs), default=0)
        place = parse(ref)[1]
        return WriteOutcome(write.key, contact_id=write.contact_id, case_id=write.case_id, job_ref=ref,
                            settle_after=min(self.job_poll_max, self.job_settle_first * 2 ** checks),
                            urgent=place is None or place.stage not in LAST_STAGES)

    def _read_jobs(self, ids: Sequence[str]) -> dict[str, Any]:
        """Job id -> its status now (`show_many`, 100 ids a call; a gone job is left out). No wait."""
        statuses = self._show_jobs(ids)
        for job in ids:
            if getattr(statuses.get(job), "status", None) in RUNNING:
                self._checks[job] = self._checks.get(job, 0) + 1
            else:
                self._checks.pop(job, None)
                for ticket in [t for t, j in self._inflight.items() if j == job]:
                    del self._inflight[ticket]
                for case in [k for k, j in self._opening.items() if j == job]:
                    del self._opening[case]
                for person in [p for p, j in self._creating.items() if j == job]:
                    del self._creating[person]
        return statuses

    def _submit_later(self, writes: Sequence[HistoryWrite], users_job: str | None = None) -> dict[str, WriteOutcome]:
        """Each write's next stage, submitted: its user, else its ticket, else its comment; none waited for.

        While a users job of the batch runs (`users_job`, or one submitted here), the batch's other new
        tickets wait for it (`HELD`): all of them then go in one tickets job, with its customers' tickets.
        """
        out = self._move_tickets([w for w in writes if w.relink and w.case_id and w.contact_id])  # rare: waited
        rest = [w for w in writes if w.key not in out]
        users: dict[int, int] = {w.person_id: int(w.contact_id) for w in rest if w.contact_id is not None}
        need_user = [w for w in rest if w.contact_id is None and w.new_contact and w.person_id not in users]
        for write in need_user:  # its user is being made by a job out already: after that job
            if write.person_id in self._creating:
                job_id = self._creating[write.person_id]
                out[write.key] = self._waiting(write, str(JobRef(AFTER, job_id)), [job_id])
        made, jobs = self._users_later([w for w in need_user if w.key not in out], out)
        users.update(made)
        ready = [self._with_contact(w, made[w.person_id]) if w.person_id in made else w
                 for w in rest if w.key not in out]
        out.update(self._move_tickets([w for w in ready if w.relink and w.case_id and w.contact_id]))  # user just made
        ready = [w for w in ready if w.key not in out]
        users_job = jobs[-1] if jobs else users_job
        if users_job is not None:  # new tickets wait for the users job, then go in one tickets job with its users'
            out.update((w.key, self._waiting(w, str(JobRef(HELD, users_job)), [users_job])) for w in ready
                       if w.new_case is not None)
        opened = self._tickets_later([w for w in ready if w.new_case is not None and w.key not in out], users, out)
        self._comments_later([opened.get(w.key, w) for w in ready if w.key not in out], users, out)
        return out

    def _users_later(self, writes: Sequence[HistoryWrite], out: dict[str, WriteOutcome]
                     ) -> tuple[dict[int, int], list[str]]:
        """users/create_many for the writes' customers: (the users found made already, person -> id; the jobs)."""
        of_person: dict[int, list[HistoryWrite]] = {}
        for write in writes:
            of_person.setdefault(write.person_id, []).append(write)
        people = list(of_person)
        found: dict[int, int] = {}
        jobs: list[str] = []
        for start in range(0, len(people), self.batch_size):
            chunk = people[start:start + self.batch_size]
            job = self._create_users([self._user_fields(of_person[p][0]) for p in chunk],
                                     [[w.key for w in of_person[p]] for p in chunk])
            if job.job is not None:
                jobs.append(str(job.job.id))
            for i, person in enumerate(chunk):
                if i in job.found:
                    found[person] = job.found[i]
                    continue
                ref = str(JobRef(USERS, str(job.job.id), job.sent.index(i)))
                self._creating[person] = str(job.job.id)
                out.update((w.key, self._waiting(w, ref, [])) for w in of_person[person])
        return found, jobs

    def _tickets_later(self, writes: Sequence[HistoryWrite], users: Mapping[int, int],
                       out: dict[str, WriteOutcome]) -> dict[str, HistoryWrite]:
        """tickets/create_many for the writes' new cases; returns the writes whose ticket exists already."""
        of_case: dict[str, list[HistoryWrite]] = {}
        for write in writes:
            of_case.setdefault(write.new_case.key, []).append(write)  # type: ignore[union-attr]  # all have one
        groups = self.group_ids() if of_case else {}
        exists: dict[str, HistoryWrite] = {}
        to_create: list[str] = []
        for key, case_writes in of_case.items():
            spec = case_writes[0].new_case
            assert spec is not None
            problem = self._route_problem(spec.target.queue, groups)
            found = None if problem is not None or not spec.may_exist else self.zd(
                "tickets.by_external_id", lambda zd, k=key: self._ticket_by_key(zd, k))  # type: ignore[misc]
            if problem is not None:
                out.update((w.key, WriteOutcome(w.key, error=problem)) for w in case_writes)
            elif found is not None:
                exists.update((w.key, replace(w, case_id=str(found), new_case=None, first_attempt=False))
                              for w in case_writes)
            else:
                to_create.append(key)
        for start in range(0, len(to_create), self.batch_size):
            chunk = to_create[start:start + self.batch_size]
            firsts = [runs(of_case[k], users)[0] for k in chunk]
            job = self._create_tickets(firsts, [[w.key for w in of_case[k]] for k in chunk], users, groups)
            for i, key in enumerate(chunk):
                if i in job.found:  # an earlier attempt made it: its comments are checked
                    exists.update((w.key, replace(w, case_id=str(job.found[i]), new_case=None, first_attempt=False))
                                  for w in of_case[key])
                    continue
                index = job.sent.index(i)
                self._opening[key] = str(job.job.id)
                first = {w.key for w in firsts[i]}
                out.update((w.key, self._waiting(w, str(JobRef(FIRST if w.key in first else TICKET, str(job.job.id),
                                                                     index)), []))
                           for w in of_case[key])
        return exists

    def _comments_later(self, writes: Sequence[HistoryWrite], users: Mapping[int, int],
                        out: dict[str, WriteOutcome]) -> None:
        """tickets/update_many with each ticket's next run of writes; later runs wait for that job."""
        done: dict[str, int] = {}
        pending = [(w, int(w.case_id)) for w in writes if w.case_id and w.key not in out]
        self._skip_written(pending, {t for _, t in pending}, done)
        out.update((w.key, WriteOutcome(w.key, record_id=w.case_id, contact_id=w.contact_id, case_id=w.case_id))
                   for w, _ in pending if w.key in done)
        todo = [(w, t) for w, t in pending if w.key not in done and t not in self._inflight]
        while todo:
            for chunk, job in self._submit_round(todo, users):
                for i, (fold, ticket) in enumerate(chunk):
                    if i in job.found:
                        out.update((w.key, WriteOutcome(w.key, record_id=str(ticket), contact_id=w.contact_id,
                                                        case_id=str(ticket))) for w in fold)
                        continue
                    self._inflight[ticket] = str(job.job.id)
                    ref = str(JobRef(COMMENT, str(job.job.id), job.sent.index(i)))
                    out.update((w.key, self._waiting(w, ref, [])) for w in fold)
            todo = [(w, t) for w, t in todo if w.key not in out and t not in self._inflight]
        for write, ticket in pending:  # a later run on a ticket whose comment job is out: after that job
            if write.key not in out:
                job_id = self._inflight[ticket]
                out[write.key] = self._waiting(write, str(JobRef(AFTER, job_id)), [job_id])

    def _write(self, writes: Sequence[HistoryWrite]) -> list[WriteOutcome]:
        errors: dict[str, Exception] = {}
        moved = self._move_tickets([w for w in writes if w.relink and w.case_id and w.contact_id])
        if moved:
            rest = self._write([w for w in writes if w.key not in moved]) if len(moved) < len(writes) else []
            by_key = {o.key: o for o in [*moved.values(), *rest]}
            return [by_key[w.key] for w in writes]
        done: dict[str, int] = {}  # write key -> ticket id, for writes already on their ticket
        # Comments on known tickets by known authors need nothing created first: their first round goes out
        # with the first job that must be waited for (users, else tickets), and they are polled together.
        known = [(w, int(w.case_id)) for w in writes if w.case_id and (
            w.contact_id is not None or w.interaction.direction is not Direction.INBOUND)]
        # Every write on a ticket read here is checked now (the read is not repeated for later rounds).
        checked = self._skip_written([(w, int(w.case_id)) for w in writes if w.case_id], {t for _, t in known}, done)
        early = self._submit_round([(w, t) for w, t in known if w.key not in done],
                                   {w.person_id: int(w.contact_id) for w, _ in known if w.contact_id})
        alongside = [job for _, job in early]  # polled once, by whichever step polls first
        users, fresh = self._ensure_contacts(writes, errors, alongside)
        # A relink whose customer had no user (given back by an undo): its ticket moves to the user just made.
        late = [replace(w, contact_id=str(users[w.person_id])) for w in writes
                if w.relink and w.case_id and w.contact_id is None and w.person_id in users and w.key not in errors]
        for key, outcome in self._move_tickets(late).items():
            if outcome.error is not None:
                errors[key] = outcome.error
            else:
                done[key] = int(outcome.case_id)  # type: ignore[arg-type]  # a relink has its case
        tickets, preexisting, first_writes = self._ensure_tickets(writes, users, fresh, errors, alongside)
        self._collect_round(early, done, errors)
        done.update(first_writes)
        pending: list[tuple[HistoryWrite, int]] = []
        for write in writes:
            if write.key in errors or write.key in done:
                continue
            if write.case_id:
                ticket_id: int | None = int(write.case_id)
            else:
                ticket_id = tickets.get(write.new_case.key) if write.new_case is not None else None
            if ticket_id is None:
                continue
            pending.append((write, ticket_id))
        self._comment(pending, users, preexisting - checked, done, errors)
        outcomes = []
        for write in writes:
            contact = write.contact_id or (str(users[write.person_id]) if write.person_id in users else None)
            ticket = done.get(write.key)
            if write.key in errors or ticket is None:
                error = errors.get(write.key) or Rejected("no ticket to write on", system=self.name)
                outcomes.append(WriteOutcome(write.key, error=error))
            else:
                outcomes.append(WriteOutcome(write.key, record_id=str(ticket), contact_id=contact,
                                             case_id=write.case_id or str(ticket)))
        return outcomes

    def _move_tickets(self, relinks: Sequence[HistoryWrite]) -> dict[str, WriteOutcome]:
        """After an identity merge: make the primary user the requester of each relinked ticket.

        The comment is on its ticket already; moving the ticket moves it onto
        the primary user's history. One update_many job per `batch_size` tickets.
        """
        moves = {int(w.case_id): int(w.contact_id) for w in relinks}  # type: ignore[arg-type]  # both set
        tickets = sorted(moves)
        results: dict[int, Exception | None] = {}
        for start in range(0, len(tickets), self.batch_size):
            chunk = tickets[start:start + self.batch_size]
            updates = [zendesk_objects.ticket({"id": t, "requester_id": moves[t]}) for t in chunk]
            outcome = self._run_job("tickets.update_many", lambda zd, u=updates: zd.tickets.update(u))  # type: ignore[misc]
            results.update((t, error) for t, (_, error) in zip(chunk, outcome, strict=True))
        for write in {(w.case_id, w.detach_from): w for w in relinks if w.detach_from}.values():
            if results.get(int(write.case_id)) is None:  # type: ignore[arg-type]  # set
                results[int(write.case_id)] = self._note_undone(write)  # type: ignore[arg-type]  # set
        return {w.key: WriteOutcome(w.key, record_id=w.case_id, contact_id=w.contact_id, case_id=w.case_id,
                                    error=results.get(int(w.case_id)))  # type: ignore[arg-type]
                for w in relinks}

    def _note_undone(self, write: HistoryWrite) -> Exception | None:
        """A ticket given back after an undone join: a private note says whose its comments are.

        Zendesk never changes a comment's author, so the comments the customer
        wrote while joined still show the other customer's user; the ticket,
        one conversation's, is the right one again, so they stay (written
        again they would show twice). The note is keyed, so it is written once.
        """
        note = CaseNote(case_id=str(write.case_id), key=f"crmhub-split:{write.case_id}:{write.detach_from}",
                        text=(f"crmhub: this ticket is its requester's again. crmhub had joined them with another "
                              f"customer (Zendesk user {write.detach_from}) by mistake, and an admin undid that. "
                              f"Public comments here shown as written by user {write.detach_from} came from this "
                              "ticket's requester: Zendesk does not let crmhub change a comment's author."))
        try:
            self.add_case_note(note)
        except ConnectorError as exc:
            return exc
        return None

    # -- contacts
    def _ensure_contacts(self, writes: Sequence[HistoryWrite], errors: dict[str, Exception],
                         alongside: Sequence[_Submitted] = ()) -> tuple[dict[int, int], set[int]]:
        """(person -> user id of every write's contact, persons created by this call).

        The users jobs are polled together with the `alongside` jobs (submitted already), if there are any.
        """
        users: dict[int, int] = {}
        wanted: dict[int, HistoryWrite] = {}
        for write in writes:
            if write.contact_id is not None:
                users[write.person_id] = int(write.contact_id)
            elif write.new_contact:
                wanted.setdefault(write.person_id, write)
        failed: dict[int, Exception] = {}
        records = {p: self._user_fields(w) for p, w in wanted.items()}
        people = list(wanted)
        keys: dict[int, list[str]] = {}  # person -> the writes waiting for that user
        for write in writes:
            if write.person_id in wanted and write.contact_id is None:
                keys.setdefault(write.person_id, []).append(write.key)
        chunks = [people[start:start + self.batch_size] for start in range(0, len(people), self.batch_size)]
        jobs = [self._create_users([records[p] for p in chunk], [keys[p] for p in chunk]) for chunk in chunks]
        results = self._finish([*jobs, *alongside]) if jobs else []  # no users job: `alongside` waits for the next
        for chunk, outcome in zip(chunks, results, strict=False):  # results of `alongside` come after
            for person, (user_id, error) in zip(chunk, outcome, strict=True):
                if error is None and user_id is not None:
                    users[person] = user_id
                else:
                    failed[person] = error or Rejected("user not created", system=self.name)
        fresh = set(users) - {w.person_id for w in writes if w.contact_id is not None}
        if failed:
            users.update(self._existing_users(failed, records))
            for person, error in failed.items():
                if person not in users:
                    for write in writes:
                        if write.person_id == person and write.contact_id is None:
                            errors[write.key] = error
        return users, fresh

    def _create_users(self, batch: list[dict[str, Any]], keys: Sequence[Sequence[str]]) -> _Submitted:
        """One users/create_many job (submitted, not awaited); a resend skips users already made."""
        def made(zd: Zenpy, indexes: list[int]) -> dict[int, int]:
            wanted = {str(batch[i]["external_id"]): i for i in indexes}
            return {wanted[str(u.external_id)]: int(u.id) for u in zd.users(external_ids=list(wanted))
                    if str(u.external_id) in wanted}

        return self._submit_once("users.create_many", keys, made,
                                 lambda zd, todo: zd.users.create([zendesk_objects.user(batch[i]) for i in todo]))

    def _existing_users(self, failed: Mapping[int, Exception], records: Mapping[int, Mapping[str, Any]]
                        ) -> dict[int, int]:
        """The users that already hold what a refused create asked for: person -> user id.

        First by external id, with `users/show_many?external_ids=` (100 a call):
        a timed-out earlier attempt, or an earlier batch whose user the mirror
        does not list yet (the incremental export leaves out the last minute),
        made it, and external ids are unique. Then, for a create refused because
        its phone or email is already used (`DuplicateTaken`), the user holding
        it, with `users/search?query=phone:` / `email:` (one call each): a user an
        agent made seconds ago. Only an end-user whose phone (digits) or email
        (case folded) is the very value crmhub sent counts, and only when exactly
        one does; anything else keeps its refusal (an agent's or admin's number
        is not a customer's).
        """
        found: dict[int, int] = {}
        external = {str(records[p]["external_id"]): p for p in failed}
        keys = list(external)
        for start in range(0, len(keys), MAX_BULK):
            chunk_ids = keys[start:start + MAX_BULK]
            listed = self.zd("users.show_many", lambda zd, c=chunk_ids: [  # type: ignore[misc]
                (u.external_id, u.id) for u in zd.users(external_ids=c)])
            found.update({external[str(ext)]: int(uid) for ext, uid in listed if str(ext) in external})
        for person, error in failed.items():
            if person in found or not isinstance(error, DuplicateTaken):
                continue
            for field in ("phone", "email"):
                value = records[person].get(field)
                if not value:
                    continue
                listed = self.zd("users.search", lambda zd, f=field, v=value: [  # type: ignore[misc]
                    u.to_dict() for u in zd.users.search(query=f"{f}:{v}")])
                holders = {int(u["id"]) for u in listed if _holds(u, field, str(value))}
                if len(holders) == 1:
                    found[person] = holders.pop()
                    break
        return found

    def _user_fields(self, write: HistoryWrite) -> dict[str, Any]:
        obj = self.objects.get(write.contact_object) or next(iter(self.objects.values()))
        fields: dict[str, Any] = {"external_id": write.person_key()}
        for identity in write.new_contact:
            names = obj.fields_by_kind.get(mapping_kind(identity.kind), ())
            if not names:
                continue
            value = identity.display if identity.kind is IdentityKind.X else identity.value
            name = names[0]
            if name.startswith("user_fields."):
                fields.setdefault("user_fields", {}).setdefault(name.removeprefix("user_fields."), value)
            else:
                fields.setdefault(name, value)
        first = write.new_contact[0]
        fields["name"] = first.display or first.value
        return fields

    # -- tickets
    def _ensure_tickets(self, writes: Sequence[HistoryWrite], users: Mapping[int, int], fresh: set[int],
                        errors: dict[str, Exception], alongside: Sequence[_Submitted] = ()
                        ) -> tuple[dict[str, int], set[int], dict[str, int]]:
        """(case key -> ticket id, ids of tickets that existed before, write key -> ticket for first comments).

        A new ticket's first comment carries the first run of its case's writes
        (`zendesk_comments.runs`); all chunks' create jobs are polled together,
        with the `alongside` jobs not polled yet.
        """
        tickets: dict[str, int] = {}
        preexisting = {int(w.case_id) for w in writes if w.case_id and w.key not in errors}
        case_errors: dict[str, Exception] = {}
        to_create: dict[str, HistoryWrite] = {}  # case key -> its first write
        specs = [w for w in writes if w.new_case is not None and w.key not in errors]
        groups = self.group_ids() if specs else {}
        for write in specs:
            spec = write.new_case
            assert spec is not None
            if spec.key in tickets or spec.key in case_errors or spec.key in to_create:
                continue
            problem = self._route_problem(spec.target.queue, groups)
            if problem is not None:
                case_errors[spec.key] = problem
                continue
            found = None
            if write.person_id not in fresh and spec.may_exist:
                found = self.zd("tickets.by_external_id", lambda zd, k=spec.key: self._ticket_by_key(zd, k))  # type: ignore[misc]
            if found is not None:
                tickets[spec.key] = found
                preexisting.add(found)
            else:
                to_create[spec.key] = write
        first_writes: dict[str, int] = {}
        of_case: dict[str, list[HistoryWrite]] = {}
        for write in specs:
            of_case.setdefault(write.new_case.key, []).append(write)  # type: ignore[union-attr]  # specs have one
        keys = list(to_create)
        chunks = [keys[start:start + self.batch_size] for start in range(0, len(keys), self.batch_size)]
        firsts = {k: runs(of_case[k], users)[0] for k in keys}
        jobs = [self._create_tickets([firsts[k] for k in chunk], [[w.key for w in of_case[k]] for k in chunk],
                                     users, groups) for chunk in chunks]
        for chunk, (job, results) in zip(chunks, zip(jobs, self._finish([*jobs, *alongside]), strict=False),
                                         strict=True):
            for i, (case_key, (ticket_id, error)) in enumerate(zip(chunk, results, strict=True)):
                if error is not None or ticket_id is None:
                    case_errors[case_key] = error or Rejected("ticket not created", system=self.name)
                    continue
                tickets[case_key] = ticket_id
                if i in job.found:  # it existed (an earlier attempt made it): its comments are checked
                    preexisting.add(ticket_id)
                else:
                    first_writes.update((w.key, ticket_id) for w in firsts[case_key])
        for write in specs:
            if write.new_case is not None and write.new_case.key in case_errors:
                errors.setdefault(write.key, case_errors[write.new_case.key])
        return tickets, preexisting, first_writes

    def _route_problem(self, queue: str, groups: Mapping[str, int]) -> Rejected | None:
        target = self.queues.get(queue)
        if target is None:
            return Rejected(f"routing queue {queue!r} is not declared for Zendesk; add it under queues.zendesk "
                            "in mappings/routing.yaml", system=self.name)
        if _group_id(target.group, groups) is None:
            return Rejected(f"group {target.group!r} (routing name {queue!r}) does not exist in this Zendesk "
                            "account; create the group or fix queues.zendesk in mappings/routing.yaml",
                            system=self.name)
        return None

    def _ticket(self, fold: Sequence[HistoryWrite], users: Mapping[int, int], groups: Mapping[str, int]
                ) -> dict[str, Any]:
        """A new ticket whose first comment carries `fold` (its case's first run of writes)."""
        write = fold[0]
        spec = write.new_case
        assert spec is not None
        target = self.queues[spec.target.queue]
        record: dict[str, Any] = {
            "subject": f"{write.interaction.channel.label} conversation", **_with_custom_fields(spec.fields),
            "external_id": spec.key, "group_id": _group_id(target.group, groups),
            "tags": [CRMHUB_TAG, write.interaction.channel.value, *spec.target.tags],
            **comment_fields(fold, users.get(write.person_id)),
        }
        if write.person_id in users:  # none for a shared (blocked) number: the API agent is the requester
            record["requester_id"] = users[write.person_id]
        priority = spec.target.priority or target.priority
        if priority:
            record["priority"] = priority.lower()
        return fit(record, TICKET_LIMITS)

    def _create_tickets(self, folds: list[list[HistoryWrite]], keys: Sequence[Sequence[str]],
                        users: Mapping[int, int], groups: Mapping[str, int]) -> _Submitted:
        """One tickets/create_many job, one ticket per fold (submitted, not awaited).

        A resubmission after an uncertain failure first looks each ticket up
        by external id and creates only the missing ones (`_Submitted.found`).
        """
        records = [self._ticket(fold, users, groups) for fold in folds]

        def made(zd: Zenpy, indexes: list[int]) -> dict[int, int]:
            return {i: ticket_id for i in indexes
                    if (ticket_id := self._ticket_by_key(zd, records[i]["external_id"])) is not None}

        return self._submit_once("tickets.create_many", keys, made, lambda zd, todo: (
            zd.tickets.create([zendesk_objects.ticket(records[i]) for i in todo])))

    # -- comments
    def _skip_written(self, pending: Sequence[tuple[HistoryWrite, int]], tickets: set[int],
                      done: dict[str, int]) -> set[int]:
        """Mark done the pending writes whose key is on their ticket already; returns the tickets read.

        Only tickets in `tickets` (ones that existed before this call) are read,
        and only when one of their writes was sent before (the engine says which).
        """
        check = sorted({t for w, t in pending if t in tickets and not w.first_attempt})
        for ticket_id in check:
            written = self.zd("tickets.comments", lambda zd, t=ticket_id: self._comment_keys(zd, t))  # type: ignore[misc]
            for write, target in pending:
                if target == ticket_id and write.key in written:
                    done[write.key] = ticket_id
                    if write.adopt:
                        self._adopted.add(write.key)
        return set(check)

    def _comment(self, pending: list[tuple[HistoryWrite, int]], users: Mapping[int, int], check: set[int],
                 done: dict[str, int], errors: dict[str, Exception]) -> None:
        """Write each pending interaction onto its ticket, skipping keys the tickets in `check` already hold.

        Each pass sends one folded comment per ticket (its next run of writes),
        as `update_many` takes one comment per ticket per job.
        """
        self._skip_written(pending, check, done)
        todo = [(w, t) for w, t in pending if w.key not in done]
        while todo:
            self._collect_round(self._submit_round(todo, users), done, errors)
            todo = [(w, t) for w, t in todo if w.key not in done and w.key not in errors]

    def _submit_round(self, items: Sequence[tuple[HistoryWrite, int]], authors: Mapping[int, int]
                      ) -> list[tuple[list[tuple[list[HistoryWrite], int]], _Submitted]]:
        """Submit the first run of each ticket's writes as one comment, `batch_size` tickets a job."""
        of_ticket: dict[int, list[HistoryWrite]] = {}
        for write, ticket_id in items:
            of_ticket.setdefault(ticket_id, []).append(write)
        folds = [(runs(writes, authors)[0], ticket_id) for ticket_id, writes in of_ticket.items()]
        chunks = [folds[start:start + self.batch_size] for start in range(0, len(folds), self.batch_size)]
        return [(chunk, self._update_tickets(chunk, authors)) for chunk in chunks]

    def _collect_round(self, jobs: list[tuple[list[tuple[list[HistoryWrite], int]], _Submitted]],
                       done: dict[str, int], errors: dict[str, Exception]) -> None:
        """Wait for a round's jobs (polled together) and record each folded write's outcome."""
        for (chunk, _), results in zip(jobs, self._finish([job for _, job in jobs]), strict=True):
            for (fold, ticket_id), (_, error) in zip(chunk, results, strict=True):
                for write in fold:
                    if error is None:
                        done[write.key] = ticket_id
                    else:
                        errors[write.key] = error

    def _update_tickets(self, chunk: list[tuple[list[HistoryWrite], int]], authors: Mapping[int, int]
                        ) -> _Submitted:
        """One update_many job adding one folded comment per ticket; re-checks comments before a resubmission."""
        updates = [{"id": t, **comment_fields(fold, authors.get(fold[0].person_id)),
                    **({"status": "open"} if any(w.reopen is not None for w in fold) else {})} for fold, t in chunk]

        def written(zd: Zenpy, indexes: list[int]) -> dict[int, int]:
            keys = {t: self._comment_keys(zd, t) for t in sorted({updates[i]["id"] for i in indexes})}
            return {i: updates[i]["id"] for i in indexes if keys_of(updates[i]["metadata"]) & keys[updates[i]["id"]]}

        return self._submit_once("tickets.update_many", [[w.key for w in fold] for fold, _ in chunk], written,
                                 lambda zd, todo: zd.tickets.update([zendesk_objects.ticket(updates[i]) for i in todo]))

    # -- jobs
    def _run_job(self, operation: str, submit: Callable[[Zenpy], Any]) -> list[tuple[int | None, Exception | None]]:
        """A job harmless to repeat (it sets values): submitted, reported and awaited."""
        job = self.zd(operation, submit)
        total = int(job.total or 0)
        return self._finish([_Submitted(total, {}, list(range(total)), job)])[0]

    def _submit_once(self, operation: str, keys: Sequence[Sequence[str]],
                     find_done: Callable[[Zenpy, list[int]], Mapping[int, int]],
                     send: Callable[[Zenpy, list[int]], Any]) -> _Submitted:
        """Submit a bulk job over items `0..count-1` so each lands once, even when an answer is lost.

        A bulk POST/PUT whose answer is lost (reset or timeout after sending)
        may have queued a job that runs later, and its effect is not visible
        until it has run. So an attempt that follows a failed one first waits
        until no recent job of the same size is still queued or working
        (`_await_jobs`), then asks `find_done` which of the items it sent are
        in Zendesk now (index -> record id), and sends only the others. The
        check runs inside the retry layer's attempt: the layer never resends
        blindly, and retries stay in that one layer.

        The job's id is reported at once (`on_submitted` of `write_history`)
        with the keys of the writes its items carry, before anyone waits for it.

        Args:
            operation: the retry layer's name for the call.
            keys: per item, the keys of the writes that wait for it.
            find_done: raw SDK look-up by crmhub's keys (external id, comment metadata).
            send: submits the items at the given indexes; returns the job status.
        """
        count = len(keys)
        found: dict[int, int] = {}
        sent: list[int] = []

        def submit(zd: Zenpy) -> tuple[list[int], Any]:
            nonlocal sent
            if sent:  # an earlier attempt sent these; its job may be queued although its answer was lost
                self._await_jobs(zd, len(sent), [key for i in sent for key in keys[i]])
                found.update(find_done(zd, sent))
            todo = [i for i in range(count) if i not in found]
            sent = todo
            return todo, (send(zd, todo) if todo else None)

        todo, job = self.zd(operation, submit)
        if job is not None:
            self._report([key for i in todo for key in keys[i]], str(job.id))
        return _Submitted(count, found, todo, job)

    def _report(self, keys: Sequence[str], job_ref: str) -> None:
        """Tell the running write_history's caller which job(s) now carry these writes."""
        hook = getattr(self._call, "on_submitted", None)
        if hook is not None and keys:
            hook(keys, job_ref)

    def _finish(self, jobs: Sequence[_Submitted]) -> list[list[tuple[int | None, Exception | None]]]:
        """(record id, error) per item of each job, once every job still running is done (polled together)."""
        running = [j for j in jobs if j.job is not None and j.results is None]
        statuses = self._poll([str(j.job.id) for j in running])
        for job in running:
            job.results = self._job_results(statuses[str(job.job.id)], len(job.sent))
        return [job.merged() for job in jobs]

    def _await_refs(self, refs: Sequence[str]) -> None:
        """Wait for the jobs an earlier attempt submitted (`HistoryWrite.job_ref`) before looking or sending.

        A job still queued has not written yet, so looking up its writes by key
        would miss them and send them again. Once it has run (or is gone: kept
        one day), its writes are found by key like any earlier attempt's.
        """
        ids = sorted({job_id for ref in refs for job_id in parse(ref)[0]})
        if ids:
            self._poll(ids, first_wait=False, gone_ok=True)

    def _poll(self, ids: Sequence[str], *, first_wait: bool = True, gone_ok: bool = False) -> dict[str, Any]:
        """Poll job statuses until each is completed: job id -> its status.

        All outstanding jobs are read together with
        `GET /api/v2/job_statuses/show_many.json?ids=` (`MAX_BULK` ids a call),
        first after `job_poll_first` seconds, then backing off (x2, at most
        `job_poll_max` apart) up to `job_timeout` seconds (`Timeout`). A job
        that failed is `Rejected`; one whose status is gone (expired, lost) a
        `Timeout`, as whether it ran is unknown, unless `gone_ok` (an earlier
        attempt's job: what it did is looked up by key anyway).
        """
        statuses: dict[str, Any] = {}
        pending = list(ids)
        wait, waited = self.job_poll_first, 0.0
        first = True
        while pending:
            if first_wait or not first:
                self.job_sleep(wait)
                waited += wait
                wait = min(self.job_poll_max, wait * 2)
            first = False
            listed = self._show_jobs(pending)
            still = []
            for job_id in pending:
                status = listed.get(job_id)
                state = getattr(status, "status", None)
                if state == "completed" or (gone_ok and state in (None, "failed", "killed")):
                    statuses[job_id] = status
                elif state is None:
                    raise Timeout(f"bulk job {job_id} status is gone; the work may or may not be done",
                                  system=self.name)
                elif state in ("failed", "killed"):
                    raise Rejected(f"bulk job {job_id} {vendor_error(str(state), str(getattr(status, 'message', None) or ''))}",
                                   system=self.name)
                else:
                    still.append(job_id)
            pending = still
            if pending and waited >= self.job_timeout:
                raise Timeout(f"{len(pending)} bulk job(s) not completed after {waited:.0f} s; they may still "
                              "complete", system=self.name)
        return statuses

    def _show_jobs(self, ids: Sequence[str]) -> dict[str, Any]:
        """Job id -> status, read with `job_statuses/show_many` (`MAX_BULK` ids a call); gone jobs are left out."""
        listed: dict[str, Any] = {}
        for start in range(0, len(ids), MAX_BULK):
            chunk = list(ids[start:start + MAX_BULK])
            # the request zenpy's `job_status(ids=)` sends, its JSON read as it came (`_raw_get`): zenpy built an
            # object per job and per result (100 a job), the statuses' largest cost, for a few fields read here
            page = self.zd("job_statuses.show_many", lambda zd, c=chunk: _raw_get(  # type: ignore[misc]
                zd.job_status, zd.job_status.endpoint, ids=c))
            listed.update((str(j["id"]), _job_status(j)) for j in page.get("job_statuses") or []
                          if isinstance(j, dict) and "id" in j)
        return listed

    def _await_jobs(self, zd: Zenpy, total: int, keys: Sequence[str]) -> None:
        """Wait until no recent job over `total` items is queued or working (raw SDK: inside an attempt).

        Reads `GET /api/v2/job_statuses` (the newest jobs, one page), polling
        like `_job_results`: a job whose id never came back is among them
        until it has run. Jobs of other sizes are not ours and are not waited
        for; another of the same size only makes the wait longer. Raises
        `Timeout` after `job_timeout` seconds (the next attempt waits again).
        The candidates are reported with the writes' `keys` (`on_submitted`)
        before any wait, so an attempt after a crash waits for them too.
        """
        wait, waited = self.job_poll_first, 0.0
        reported = False
        while True:
            listed = zd.job_status()
            jobs = listed.get("job_statuses", []) if isinstance(listed, Mapping) else list(listed)
            pending = [j for j in jobs if getattr(j, "total", None) == total
                       and getattr(j, "status", None) in ("queued", "working")]
            if not pending:
                return
            if not reported:
                self._report(keys, ",".join(str(j.id) for j in pending[:MAX_CANDIDATES]))
                reported = True
            if waited >= self.job_timeout:
                raise Timeout(f"{len(pending)} bulk job(s) of {total} items still queued after {waited:.0f} s; "
                              "one may be the unanswered submission", system=self.name)
            self.job_sleep(wait)
            waited += wait
            wait = min(self.job_poll_max, wait * 2)

    def _job_results(self, status: Any, total: int) -> list[tuple[int | None, Exception | None]]:
        """(record id, error) per submitted item of a completed job status."""
        outcomes: list[tuple[int | None, Exception | None]] = [
            (None, Rejected("missing from the job results", system=self.name))] * total
        for result in status.results or []:
            # the attributes zenpy set from the JSON, without serialising the object back (to_dict)
            entry: dict[str, Any] = dict(result) if isinstance(result, Mapping) else {
                name: getattr(result, name, None) for name in ("index", "id", "status", "success", "error", "details")}
            index = entry.get("index")
            if not isinstance(index, int) or not 0 <= index < total:
                continue
            if entry.get("status") == "Failed" or entry.get("success") is False or entry.get("error"):
                code = str(entry.get("error") or "Failed")
                details = str(entry.get("details") or "")
                kind = (DuplicateTaken if _taken(code, details) else RecordGone if _gone(details)
                        else CaseGone if _closed(details) else Rejected)
                outcomes[index] = (None, kind(vendor_error(code, details), system=self.name, code=code))
            else:
                outcomes[index] = (int(entry["id"]), None)
        return outcomes


# ---- helpers -------------------------------------------------------------------
def _job_status(body: Mapping[str, Any]) -> SimpleNamespace:
    """A job status as read: its JSON fields as attributes, the ones zenpy's JobStatus has None when absent."""
    return SimpleNamespace(**{"status": None, "total": None, "message": None, "results": None, **body})


def _raw_get(api: Any, endpoint: Any, **params: Any) -> dict[str, Any]:
    """GET one of zenpy's endpoints through zenpy's own call path, and the answer's JSON as it came.

    The session, zenpy's 429 handling (`ratelimit_budget`) and its error check
    are zenpy's, so errors reach `translate` as before; only the objects are
    skipped. An export page of 1000 records became zenpy objects twice (the
    generator builds them, `process_page()` again) and then dicts through
    `to_dict()`, a third of a warm cycle's CPU, to read a few fields (issue 13).
    """
    body = api._get(api._build_url(endpoint=endpoint(**params)), raw_response=True).json()
    if not isinstance(body, dict):
        raise ZenpyException(f"unexpected answer to {endpoint.endpoint}: {type(body).__name__}")
    return body


def _cursor_export(api: Any, plural: str, cursor: str | None) -> tuple[list[dict[str, Any]], str, bool]:
    """One page of a cursor-based incremental export (users, tickets): (records, after_cursor, end_of_stream).

    The same requests as zenpy's `incremental(cursor=)` / `incremental(start_time=0)`.
    """
    incremental = api.endpoint.incremental
    body = (_raw_get(api, incremental.cursor, cursor=cursor, include=None, per_page=EXPORT_PAGE) if cursor
            else _raw_get(api, incremental.cursor_start, start_time=0, include=None, per_page=EXPORT_PAGE))
    records = [r for r in body.get(plural) or [] if isinstance(r, dict)]
    return records, str(body.get("after_cursor") or cursor or ""), bool(body.get("end_of_stream", True))


def _export_page(zd: Zenpy, cursor: str | None) -> tuple[list[dict[str, Any]], str, bool]:
    """One page of the incremental user export: (users, after_cursor, end_of_stream)."""
    return _cursor_export(zd.users, "users", cursor)


CUSTOM_FIELD = "custom_field:"  # history.yaml's key for a ticket field by id: "custom_field:360001234"


def _with_custom_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """history.yaml's ticket fields in the API's shape: `custom_field:<id>` keys become `custom_fields` entries.

    https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#setting-custom-field-values
    """
    plain = {k: v for k, v in fields.items() if not (k.startswith(CUSTOM_FIELD) and k.removeprefix(CUSTOM_FIELD).isdigit())}
    custom = [{"id": int(k.removeprefix(CUSTOM_FIELD)), "value": v} for k, v in fields.items()
              if k.startswith(CUSTOM_FIELD) and k.removeprefix(CUSTOM_FIELD).isdigit()]
    return {**plain, "custom_fields": custom} if custom else plain


def _ticket_export_page(zd: Zenpy, cursor: str | None) -> tuple[list[dict[str, Any]], str, bool]:
    """One page of the incremental ticket export: (tickets, after_cursor, end_of_stream)."""
    return _cursor_export(zd.tickets, "tickets", cursor)


def _case_state(ticket: Mapping[str, Any], link_tag_prefix: str) -> CaseState | None:
    """A ticket of the export as a case state; None for tickets crmhub did not open.

    The export does not say who added a tag (only the ticket's audits do), so a link mark's actor is
    "agent in zendesk" here; `mark_authors` names the agent when the mark is about to decide something.
    """
    key = ticket.get("external_id")
    if not isinstance(key, str) or not CASE_KEY.fullmatch(key):
        return None
    modified = _parse_time(ticket.get("updated_at") or ticket["created_at"])
    status = str(ticket.get("status") or "open")
    marks = tuple(LinkMark(number, confirm, "agent in zendesk")
                  for number, confirm in read_tags(ticket.get("tags") or [], link_tag_prefix))
    return CaseState(case_key=key, record_id=str(ticket["id"]), modified_at=modified,
                     closed_at=None if status in OPEN_STATUSES else modified, final=status in FINAL_STATUSES,
                     link_marks=marks)


def _tag_authors(audits: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Tag -> author of the latest audit that added it (a Create or Change event on `tags`), in audit order."""
    authors: dict[str, int] = {}
    for audit in audits:
        author = audit.get("author_id")
        for event in audit.get("events") or []:
            if not isinstance(event, dict) or event.get("field_name") != "tags" or not isinstance(author, int):
                continue
            if event.get("type") not in ("Create", "Change"):
                continue
            before = {str(t).lower() for t in _tag_list(event.get("previous_value"))}
            for tag in _tag_list(event.get("value")):
                if str(tag).lower() not in before:
                    authors[str(tag).lower()] = author
    return authors


def _tag_list(value: object) -> list[object]:
    """A tags event's value: a list of tags (a string is read as space-separated tags, to be safe)."""
    if isinstance(value, list):
        return value
    return list(value.split()) if isinstance(value, str) else []


def _events_page(zd: Zenpy, start_time: int) -> tuple[list[dict[str, Any]], int | None, bool]:
    """One page of the ticket events export with comment events: (events, end_time, end_of_stream)."""
    body = _raw_get(zd.tickets, zd.tickets.endpoint.events, start_time=start_time, include="comment_events",
                    per_page=EXPORT_PAGE)
    events = [e for e in body.get("ticket_events") or [] if isinstance(e, dict)]
    end_time = body.get("end_time")
    return events, int(end_time) if end_time is not None else None, bool(body.get("end_of_stream", True))


def _event_time(event: Mapping[str, Any]) -> datetime:
    """When a ticket event happened: its `created_at`, else its epoch `timestamp`."""
    if event.get("created_at"):
        return _parse_time(str(event["created_at"]))
    return datetime.fromtimestamp(int(event.get("timestamp") or 0), UTC)


def _group_id(group: str, groups: Mapping[str, int]) -> int | None:
    if group in groups:
        return groups[group]
    if group.isdigit() and int(group) in groups.values():
        return int(group)
    return None


def _field(record: Mapping[str, Any], name: str) -> Any:
    """A user field by name: `phone`, `user_fields.x_handle`, or a bare custom field name."""
    if name.startswith("user_fields."):
        return (record.get("user_fields") or {}).get(name.removeprefix("user_fields."))
    if name in record:
        return record[name]
    return (record.get("user_fields") or {}).get(name)


def _error_of(response: requests.Response) -> tuple[str, str, list[str]]:
    """(error, description, fields) of Zendesk's error envelope, or the text.

    A `details` entry's description quotes the refused value ("Email: <it> is
    already being used..."), so only its field and its `error` code are taken.
    """
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200], []
    if not isinstance(body, Mapping):
        return "", str(body)[:200], []
    error = body.get("error")
    code = str(error.get("title", "")) if isinstance(error, Mapping) else str(error or "")
    message = str(body.get("description") or (error.get("message") if isinstance(error, Mapping) else "") or "")
    details = body.get("details")
    fields: list[str] = []
    if isinstance(details, Mapping):
        fields = [str(name) for name in details]
        kinds = [str(e.get("error", "")) for entries in details.values() if isinstance(entries, list)
                 for e in entries if isinstance(e, Mapping)]
        message = "; ".join(p for p in [message, *kinds] if p)
    return code, message, fields


def _gone(details: str) -> bool:
    """Whether a failed job item was refused for its requester: deleted (or merged away) since crmhub linked it."""
    return details.startswith("Requester:")


def _closed(details: str) -> bool:
    """Whether a failed job item was refused for its ticket: closed for good (by an agent, or by a ticket merge,
    which closes the tickets merged away), so that Zendesk takes nothing more on it."""
    return details.startswith("Status: closed")


def _taken(code: str, details: str) -> bool:
    """Whether a failed job item was refused for a value another user already holds.

    Zendesk words it "Email: <value> is already being used by another user"
    (code `DuplicateValue` in a single call's `details`), older accounts
    "has already been taken"; a job result carries the sentence in `details`.
    """
    wording = details.lower()
    return code == "DuplicateValue" or "already being used" in wording or "already been taken" in wording


def _holds(user: Mapping[str, Any], field: str, value: str) -> bool:
    """Whether a search hit is an active end-user whose `field` is `value` (search may match loosely)."""
    if user.get("role", "end-user") != "end-user" or not user.get("active", True):
        return False
    if field == "phone":
        return bool(_digits(value)) and _digits(str(user.get("phone") or "")) == _digits(value)
    return str(user.get(field) or "").strip().lower() == value.strip().lower()


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def _rate_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After`, else `ratelimit-reset` when nothing remains."""
    hint = retry_after_seconds(headers.get("Retry-After"))
    if hint is None and headers.get("ratelimit-remaining") == "0":
        hint = retry_after_seconds(headers.get("ratelimit-reset"))
    return hint




def _parse_time(value: str) -> datetime:
    """Zendesk's `2024-01-01T12:00:00Z` as an aware datetime.

    `fromisoformat` reads that shape in a fraction of `strptime`'s time (a
    mirror page has a thousand); anything else still goes through `strptime`,
    which refuses it as before.
    """
    if len(value) == 20 and value.endswith("Z") and value[10] == "T":
        return datetime.fromisoformat(value)
    return datetime.strptime(value, ZENDESK_TIME).replace(tzinfo=UTC)
