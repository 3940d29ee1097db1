"""Prometheus metrics and the readiness report of one Hub (`/metrics`, `/healthz`).

Every `Metrics` owns its own `CollectorRegistry` (never prometheus-client's
global one), so two hubs in one process, or two tests, never share a count.

Counters are bumped where the counts are produced: poll, delivery and reply
reports (`record_poll`, `record_delivery`, `record_replies`), the webhook receiver's outcomes
(`webhook_outcome`, the receiver's `metrics=` hook), the connectors' HTTP
sessions (`http_observer`, the `build_session` observer) and the scheduler's
job wrapper (`JobRecords`). Gauges that describe the state store (outbox
depth, open dead letters, cursor lag) are computed at scrape time by
`StoreCollector` with a few COUNT queries, so they are never stale.

Labels carry only names of systems, channels, jobs, streams, outcomes and HTTP
status codes: never message bodies, identities, URLs or secrets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from crmhub.connectors._budget import read_headroom
from crmhub.errors import ConnectorError
from crmhub.model import OutboxStatus
from crmhub.store import StateStore
from crmhub.store.ledger import all_cursors, open_dead_letter_count
from crmhub.store.outbox import held_counts, outbox_counts
from crmhub.sync.deliver import DeliveryReport
from crmhub.sync.ingest import PollReport
from crmhub.sync.mirror import is_marker
from crmhub.sync.replies import ReplyReport

log = structlog.get_logger("crmhub.metrics")

INGEST_OUTCOMES = ("stored", "repeat", "dead_lettered")
API_CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DELIVERY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)
WRITE_OUTCOMES = ("delivered", "retrying", "dead")


@dataclass
class JobRecord:
    """What the scheduler saw of one job: runs, failures, last success and last error."""

    runs: int = 0
    failures: int = 0
    last_ok_at: datetime | None = None
    last_error_at: datetime | None = None
    last_error: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "failures": self.failures, "last_ok_at": _iso(self.last_ok_at),
                "last_error_at": _iso(self.last_error_at), "last_error": self.last_error}


def describe_error(exc: BaseException) -> dict[str, Any]:
    """An error as /healthz shows it: its type and, for a connector error, system, HTTP status and code.

    The message itself is left out: a vendor's error text may quote the record it refused.
    """
    described: dict[str, Any] = {"type": type(exc).__name__}
    if isinstance(exc, ConnectorError):
        described.update(system=getattr(exc, "system", None), status=getattr(exc, "status", None),
                         code=getattr(exc, "code", None) or None)
    return described


class JobRecords:
    """Per-job records (thread-safe): the scheduler writes them, /healthz reads them."""

    def __init__(self, clock: Callable[[], datetime], on_run: Callable[[str, str], None] | None = None) -> None:
        self._clock = clock
        self._on_run = on_run
        self._records: dict[str, JobRecord] = {}
        self._lock = threading.Lock()

    def ok(self, job: str) -> None:
        with self._lock:
            record = self._records.setdefault(job, JobRecord())
            record.runs += 1
            record.last_ok_at = self._clock()
        if self._on_run is not None:
            self._on_run(job, "ok")

    def failed(self, job: str, exc: BaseException) -> None:
        with self._lock:
            record = self._records.setdefault(job, JobRecord())
            record.runs += 1
            record.failures += 1
            record.last_error_at = self._clock()
            record.last_error = describe_error(exc)
        if self._on_run is not None:
            self._on_run(job, "failed")

    def get(self, job: str) -> JobRecord | None:
        with self._lock:
            record = self._records.get(job)
            return None if record is None else JobRecord(**vars(record))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {job: record.as_json() for job, record in sorted(self._records.items())}


def budget_remaining(system: str, headers: Mapping[str, str]) -> float | None:
    """The calls left in the vendor's window, from its rate-limit headers; None when it sent none.

    Salesforce `Sforce-Limit-Info: api-usage=n/m` (m - n, the org's rolling 24 h allowance);
    X `x-rate-limit-remaining` (the window of the endpoint called last);
    Zendesk `X-Rate-Limit-Remaining` or `ratelimit-remaining`;
    HubSpot `X-HubSpot-RateLimit-Remaining` (the 10-second window).
    The headers are read by the budgets' parser (`crmhub.connectors._budget.read_headroom`).
    """
    headroom = read_headroom(system, headers)
    if headroom is None:
        return None
    remaining = headroom.daily_remaining if system == "salesforce" else headroom.remaining
    return None if remaining is None else float(remaining)


class StoreCollector(Collector):
    """Gauges read from the state store at scrape time: outbox depth and held rows, dead letters, cursor lag."""

    def __init__(self, store: StateStore, crms: Iterable[str], clock: Callable[[], datetime]) -> None:
        self.store = store
        self.crms = tuple(crms)
        self.clock = clock

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # computed at scrape time only; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("crmhub_store_up", "1 when the state store answered this scrape's queries.")
        try:
            depth, held, dead_letters, lags = self._read()
        except Exception as exc:  # noqa: BLE001  # a scrape must answer even when the store does not
            log.error("metrics: state store unreachable", error=type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        outbox = GaugeMetricFamily("crmhub_outbox_depth", "Outbox rows waiting for delivery (first try or retry).",
                                   labels=["crm"])
        for crm in sorted({*self.crms, *depth}):
            outbox.add_metric([crm], float(depth.get(crm, 0)))
        yield outbox
        held_rows = GaugeMetricFamily("crmhub_outbox_held", "Outbox rows held back by the CRM's API budget (its "
                                      "daily allowance is down to the reserve): pending, not failed.",
                                      labels=["crm"])
        for crm in sorted({*self.crms, *held}):
            held_rows.add_metric([crm], float(held.get(crm, 0)))
        yield held_rows
        open_letters = GaugeMetricFamily("crmhub_dead_letters_open", "Dead letters not resolved or replayed yet.")
        open_letters.add_metric([], float(dead_letters))
        yield open_letters
        lag = GaugeMetricFamily("crmhub_lag_seconds",
                                "Seconds since crmhub last read the stream to its end (its cursor saved), per "
                                "source and stream; the oldest partition.", labels=["source", "stream"])
        for (source, stream), seconds in sorted(lags.items()):
            lag.add_metric([source, stream], seconds)
        yield lag

    def _read(self) -> tuple[dict[str, int], dict[str, int], int, dict[tuple[str, str], float]]:
        now = self.clock()
        with self.store.transaction() as session:
            depth = {crm: count for (crm, status), count in outbox_counts(session).items()
                     if status == OutboxStatus.PENDING.value}
            held = held_counts(session)
            dead_letters = open_dead_letter_count(session)
            lags: dict[tuple[str, str], float] = {}
            for cursor in all_cursors(session):
                if is_marker(cursor.stream):
                    continue  # a one-time mark (the mirror's first load done), not a stream that is read
                at = cursor.updated_at if cursor.updated_at.tzinfo else cursor.updated_at.replace(tzinfo=UTC)
                key = (cursor.source, cursor.stream)
                lags[key] = max(lags.get(key, 0.0), max(0.0, (now - at).total_seconds()))  # oldest partition
        return depth, held, dead_letters, lags


def check_store(store: StateStore) -> dict[str, Any]:
    """{"ok": True} when the store answers `SELECT 1`, else {"ok": False, "error": <type>}."""
    try:
        with store.transaction() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001  # any failure means "not ready"
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True}


class Metrics:
    """One hub's metrics: its registry, counters, budget gauge, job records and readiness report.

    Args:
        store: the state store the scrape-time gauges and the readiness check read (None: neither).
        crms: the CRMs delivered to (their outbox depth and write counts start at 0).
        channels: the channels polled (their ingest counts start at 0).
        webhook_sources: sources whose webhooks are verified (their rejections start at 0).
        clock: the hub's clock (job records, lag).
    """

    def __init__(self, store: StateStore | None = None, *, crms: Iterable[str] = (), channels: Iterable[str] = (),
                 webhook_sources: Iterable[str] = (), clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.crms = tuple(crms)
        self.channels = tuple(channels)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.registry = CollectorRegistry()
        r = self.registry
        self.items_ingested = Counter("crmhub_items_ingested", "Items a source (twilio, x) reported, by how they "
                                      "reached crmhub and what the ledger did with them.",
                                      ["source", "path", "outcome"], registry=r)
        self.items_skipped = Counter("crmhub_items_skipped", "Items a source read and set aside on purpose, never "
                                     "stored or routed (an email bounce, auto-reply, read receipt, bulk mail), by "
                                     "reason.", ["source", "reason"], registry=r)
        self.crm_writes = Counter("crmhub_crm_writes", "Outbox rows handled by delivery, by outcome.",
                                  ["crm", "outcome"], registry=r)
        self.lease_renewals = Counter("crmhub_lease_renewals", "Lease renewals of delivery batches that outlived a "
                                      "third of delivery.lease (one UPDATE each).", ["crm"], registry=r)
        self.leases_lost = Counter("crmhub_leases_lost", "Outbox rows a lease renewal found claimed by another "
                                   "daemon (their lease had lapsed before it).", ["crm"], registry=r)
        self.webhook_rejected = Counter("crmhub_webhook_rejected", "Webhooks refused with 403 (missing or bad "
                                        "signature).", ["source"], registry=r)
        self.webhook_requests = Counter("crmhub_webhook_requests", "Webhook requests by route and what became of "
                                        "them (stored, dead_lettered, rejected, invalid, disconnected...).",
                                        ["route", "outcome"], registry=r)
        self.api_calls = Counter("crmhub_api_calls", "HTTP responses received from each external API.",
                                 ["system", "status"], registry=r)
        self.job_runs = Counter("crmhub_job_runs", "Scheduler job runs, by outcome.", ["job", "outcome"], registry=r)
        self.replies = Counter("crmhub_replies", "Agents' replies entering a status (pending when collected, sent, "
                               "delivered, failed, dead).", ["crm", "channel", "status"], registry=r)
        self.api_call_seconds = Histogram("crmhub_api_call_duration_seconds", "How long each HTTP call to an "
                                          "external API took, answer included.", ["system"],
                                          buckets=API_CALL_BUCKETS, registry=r)
        self.delivery_latency = Histogram("crmhub_delivery_latency_seconds", "From an item's time on its channel to "
                                          "the CRM confirming its write (webhook or poll, routing, batching, "
                                          "retries); relinks of old history left out.", ["crm"],
                                          buckets=DELIVERY_BUCKETS, registry=r)
        self.api_budget = Gauge("crmhub_api_budget_remaining", "Calls left in the vendor's rate-limit window, from "
                                "its last response's headers.", ["system"], registry=r)
        self.stream_owned = Gauge("crmhub_stream_owned", "1 while this daemon holds the stream's lease and reads "
                                  "it, 0 while another daemon does (several daemons on one PostgreSQL store).",
                                  ["stream"], registry=r)
        for crm in self.crms:
            for outcome in WRITE_OUTCOMES:
                self.crm_writes.labels(crm, outcome)
            self.lease_renewals.labels(crm)
            self.leases_lost.labels(crm)
        for channel in self.channels:
            for outcome in INGEST_OUTCOMES:
                self.items_ingested.labels(channel, "poll", outcome)
        for source in webhook_sources:
            self.webhook_rejected.labels(source)
        self.jobs = JobRecords(self.clock, on_run=lambda job, outcome: self.job_runs.labels(job, outcome).inc())
        self._last: dict[tuple[str, str], datetime] = {}  # (connector, "poll"|"mirror"|"delivery") -> time
        self._lock = threading.Lock()
        if store is not None:
            r.register(StoreCollector(store, self.crms, self.clock))

    # ---- counting ------------------------------------------------------------
    def record_poll(self, report: PollReport) -> PollReport:
        """Count one stream's poll (every outcome) and note the channel's last successful poll."""
        for outcome, count in (("stored", report.stored), ("repeat", report.repeats),
                               ("dead_lettered", report.dead_lettered)):
            if count:
                self.items_ingested.labels(report.source, "poll", outcome).inc(count)
        for reason, count in report.skipped.items():
            self.items_skipped.labels(report.source, reason).inc(count)
        self._done(report.source, "poll")
        return report

    def record_delivery(self, report: DeliveryReport) -> DeliveryReport:
        """Count one CRM's delivery run and note its last completed delivery."""
        for outcome, count in (("delivered", report.delivered), ("retrying", report.retrying), ("dead", report.dead)):
            if count:
                self.crm_writes.labels(report.crm, outcome).inc(count)
        if report.renewals:
            self.lease_renewals.labels(report.crm).inc(report.renewals)
        if report.leases_lost:
            self.leases_lost.labels(report.crm).inc(report.leases_lost)
        latency = self.delivery_latency.labels(report.crm)
        for seconds in report.latencies:
            latency.observe(seconds)
        self._done(report.crm, "delivery")
        return report

    def record_replies(self, report: ReplyReport) -> ReplyReport:
        """Count the replies a run of the reply steps moved, by CRM, channel and the status they entered."""
        for (crm, channel, status), count in report.moves.items():
            self.replies.labels(crm, channel, status).inc(count)
        return report

    def record_mirror(self, crm: str) -> None:
        self._done(crm, "mirror")

    def record_lease(self, stream: str, held: bool) -> None:
        """Whether this daemon holds `stream` (checked before each read of it)."""
        self.stream_owned.labels(stream).set(1 if held else 0)

    def read_elsewhere(self, connector: str, what: str) -> None:
        """Another daemon reads this connector's streams: nothing is overdue here ("poll" or "mirror")."""
        self._done(connector, what)

    def webhook_outcome(self, route: str, outcome: str) -> None:
        """The webhook receiver's `metrics=` hook: route is "<source>.<kind>" (twilio.messages, x.events)."""
        source = route.split(".", 1)[0]
        self.webhook_requests.labels(route, outcome).inc()
        if outcome == "rejected":
            self.webhook_rejected.labels(source).inc()
        elif outcome in INGEST_OUTCOMES:
            self.items_ingested.labels(source, "webhook", outcome).inc()

    def http_observer(self, system: str) -> Callable[[str, int, Mapping[str, str], float | None], None]:
        """A `build_session` observer counting `system`'s responses, timing them and reading rate-limit headers."""
        def observe(path: str, status: int, headers: Mapping[str, str], elapsed: float | None = None) -> None:
            self.api_calls.labels(system, str(status)).inc()
            if elapsed is not None:
                self.api_call_seconds.labels(system).observe(elapsed)
            remaining = budget_remaining(system, headers or {})
            if remaining is not None:
                self.api_budget.labels(system).set(remaining)

        return observe

    def _done(self, connector: str, what: str) -> None:
        with self._lock:
            self._last[(connector, what)] = self.clock()

    # ---- reading -------------------------------------------------------------
    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's current value (tests, `crmhub status`), None when absent."""
        return self.registry.get_sample_value(name, dict(labels or {}))

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(store reachable, the /healthz body): liveness, the store check, and per-connector readiness.

        A connector is `ready` once its last poll (channel) or delivery (CRM) completed and no job
        serving it failed after that; a CRM being down does not make the process unready, since
        webhooks are still stored and the outbox keeps the writes.
        """
        store = check_store(self.store) if self.store is not None else {"ok": True}
        jobs = self.jobs.snapshot()
        with self._lock:
            last = dict(self._last)
        connectors: dict[str, Any] = {}
        for channel in self.channels:
            connectors[channel] = self._readiness("channel", last.get((channel, "poll")),
                                                  [f"poll:{channel}", "catch-up"], "last_poll_at")
        for crm in self.crms:
            jobs_serving = [f"mirror:{crm}", "route", f"deliver:{crm}", "catch-up"]
            entry = self._readiness("crm", last.get((crm, "delivery")), jobs_serving, "last_delivery_at")
            entry["last_mirror_at"] = _iso(last.get((crm, "mirror")))
            connectors[crm] = entry
        ok = bool(store["ok"])
        body = {"status": "ok" if ok else "unavailable",
                "checks": {"store": store, "connectors": connectors, "jobs": jobs}}
        return ok, body

    def _readiness(self, kind: str, last_ok: datetime | None, job_names: list[str],
                   field_name: str) -> dict[str, Any]:
        failures = [(record.last_error_at, name, record.last_error or {}) for name in job_names
                    if (record := self.jobs.get(name)) is not None and record.last_error_at is not None]
        latest = max(failures, key=lambda failure: failure[0]) if failures else None
        ready = last_ok is not None and (latest is None or latest[0] <= last_ok)
        return {"kind": kind, "ready": ready, field_name: _iso(last_ok),
                "last_error": None if latest is None else {"job": latest[1], "at": _iso(latest[0]), **latest[2]}}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat()
