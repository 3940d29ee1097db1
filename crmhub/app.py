"""Wiring: from a validated Config to connectors, router and delivery policies.

This is the one place that knows both the configuration models and the
engine's types; the engine (`crmhub.sync`) sees neither YAML nor wire formats.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.orm import Session

from crmhub.channels import registry
from crmhub.channels.contract import Attachment, ChannelModule
from crmhub.config import Config
from crmhub.errors import CrmhubError, reason_of
from crmhub import heap
from crmhub.connectors._budget import SALESFORCE_LIMITS_EVERY, Budget, Window
from crmhub.connectors._retry import Retrier, RetryPolicy, interruptible_sleep
from crmhub.connectors.salesforce import ContactObject, SalesforceAuth, SalesforceCrm
from crmhub.connectors.hubspot import HubSpotCrm, TicketQueue
from crmhub.connectors.zendesk import ZendeskAuth, ZendeskCrm, ZendeskGroup
from crmhub.metrics import Metrics
from crmhub.language import LanguageDetector
from crmhub.model import CaseState, Channel, CodeRoute, Identity, IdentityKind, MirrorRecord, QueueTarget, WritePriority
from crmhub.ops import links
from crmhub.replying import Replier
from crmhub.report.build import report_for
from crmhub.report.gauges import SupportCollector
from crmhub import streams
from crmhub.store import StateStore, backlog, open_store, outbox
from crmhub.store.budgets import SharedPace
from crmhub.store.leases import StreamLeases
from crmhub.store.ledger import known_external_ids
from crmhub.sync.blocklist import Blocklist
from crmhub.store.codes import CodeRules
from crmhub.sync.identity import CodePolicy, IdentityGraph, IdentityPolicy, OnStatement, StatementPolicy
from crmhub.sync.deliver import DeliveryPolicy, DeliveryReport, deliver
from crmhub.sync.ingest import PollReport, poll_stream
from crmhub.sync.links import note_suggestions
from crmhub.sync.mirror import mirror_loaded, refresh_mirror
from crmhub.sync.process import process_pending
from crmhub.sync.replies import ReplyPolicy, ReplyReport
from crmhub.sync.routing import Router, Rule
from crmhub.sync.surveys import policy_of
from crmhub.sync.threads import refresh_threads, threads_loaded
from crmhub.ops_listener import create_ops_app
from crmhub.webhooks import create_app, ledger_ingest
from crmhub.workers import Doorbell

log = structlog.get_logger("crmhub.app")



class CycleFailed(CrmhubError):
    """Some steps of a cycle failed (the others ran); `cycle` says what was done and what failed."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        super().__init__("; ".join(cycle.failures))


@dataclass
class Cycle:
    """What one sync cycle did."""

    polls: list[PollReport] = field(default_factory=list)
    mirrored: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    deliveries: list[DeliveryReport] = field(default_factory=list)
    replies: ReplyReport | None = None
    failures: list[str] = field(default_factory=list)  # "<step>: <error>", one per step that failed

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step; whatever it raises is recorded and the cycle goes on with the other systems.

        Not only crmhub's errors: a vendor answering in a shape its SDK does
        not expect makes the SDK raise a KeyError or AttributeError, and that
        must not stop the other CRMs. KeyboardInterrupt and SystemExit pass.
        """
        try:
            yield
        except Exception as exc:  # noqa: BLE001  # one system's failure, whatever it is, is that step's alone
            reason = reason_of(exc)
            self.failures.append(f"{name}: {reason}")
            log.error("step failed", step=name, error=type(exc).__name__, reason=reason[:300])


class Hub:
    """A configured crmhub: state store, connectors, router; runs sync cycles.

    Args:
        clock: the hub's time (tests pass the sandbox clock's `now`).
        sleep: how retries and pacing wait (default: real time, cut short by `stopping`).
        monotonic: seconds the pacing counts in (default `time.monotonic`; tests pass sandbox time).
    """

    def __init__(self, config: Config, store: StateStore, *, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] | None = None, monotonic: Callable[[], float] | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stopping = threading.Event()
        """Set when the daemon stops: jobs end after their current batch or page, waits are cut."""
        self.leases = StreamLeases(store)
        """The periodic readers this process owns (several daemons on PostgreSQL: one reads each)."""
        settings = config.settings
        retrier = Retrier(_retry_policy(config), sleep=sleep or interruptible_sleep(self.stopping),
                          clock=monotonic or time.monotonic)
        self.channel_modules: dict[str, ChannelModule] = {
            name: registry.load(name) for name in settings.channels.enabled_names()}
        self.channels: dict[str, Any] = {name: module.build(config, retrier)
                                         for name, module in self.channel_modules.items()}
        """The enabled channels' connectors, by channel module name."""
        builders = {"salesforce": build_salesforce, "zendesk": build_zendesk, "hubspot": build_hubspot}
        self.crms: dict[str, SalesforceCrm | ZendeskCrm | HubSpotCrm] = {
            name: builders[name](config, retrier) for name in settings.crms.enabled_names() if name in builders}
        self.router = build_router(config)
        self.blocklist = build_blocklist(config)
        self.identity = build_identity_policy(config, self.blocklist)
        self.policies = {name: build_policy(config, name, self.blocklist, max_batch=crm.max_batch)
                         for name, crm in self.crms.items()}
        self.replies_soon: Callable[[], None] = lambda: None
        """Asks for the replies job to run now (a reply was queued by the agents' panel); the scheduler sets it."""
        self.routing_bell = Doorbell()
        """Rung when new ledger rows are committed (webhooks, polls): wakes `crmhub run`'s routing worker."""
        channels = list(self.channels)
        self.metrics = Metrics(store, crms=list(self.crms), channels=channels, webhook_sources=channels,
                               clock=self.clock)
        self.metrics.registry.register(SupportCollector(
            lambda since, now, by: report_for(config, store, since=since, now=now, by=by), self.clock))
        shared = SharedPace(store) if store.dialect == "postgresql" else None  # SQLite: one daemon
        for connector in (*self.channels.values(), *self.crms.values()):
            connector.budget = build_budget(config, connector.name, retrier,
                                            wall=lambda: self.clock().timestamp(), shared=shared)
            connector.http_observer = self.metrics.http_observer(connector.name)
        survey_policy = policy_of(settings)
        # Questions go out through the replier: with replies off, no survey is asked (nor left pending).
        self.surveys = survey_policy if settings.replies.enabled and survey_policy.enabled else None
        self.replier = build_replier(self) if settings.replies.enabled else None
        wiring = Attachment(config, known=self._known_in_ledger, monotonic=monotonic or time.monotonic)
        for name, module in self.channel_modules.items():
            module.attach(self.channels[name], wiring)

    def _known_in_ledger(self, channels: Sequence[Channel], ids: Sequence[str]) -> set[str]:
        """Which of a polled page's ids the ledger already holds (one query; the source skips them)."""
        with self.store.transaction() as session:
            return known_external_ids(session, channels, ids)

    def _webhook_outcome(self, route: str, outcome: str) -> None:
        """Every webhook's outcome: counted, and told its channel module (`<name>.<kind>` routes)."""
        self.metrics.webhook_outcome(route, outcome)
        name = route.partition(".")[0]
        if name in self.channels:
            self.channel_modules[name].webhook_outcome(self.channels[name], route, outcome)

    def sync_once(self, *, after_polls: Callable[[], None] | None = None) -> Cycle:
        """Poll every channel, refresh the mirrors, route, and deliver to every CRM.

        One system's failure does not hold up the others: each step's error is
        recorded in `Cycle.failures` and the cycle goes on. `after_polls` is
        called once the polls are done (`crmhub run` starts its poll jobs then).
        """
        cycle = Cycle()
        for name, poll_job in self.polls().items():
            if self.stopping.is_set():  # the daemon is stopping: the rest waits for the restart
                return cycle
            with cycle.step(f"poll:{name}"):
                cycle.polls.extend(poll_job())
        if after_polls is not None:
            after_polls()
        for name in self.crms:
            if self.stopping.is_set():
                return cycle
            with cycle.step(f"mirror:{name}"):
                cycle.mirrored[name] = self.refresh_mirror(name)
        if not self.stopping.is_set():
            self.route_and_deliver(cycle)
        if self.replier is not None and not self.stopping.is_set():
            cycle.replies = self.replier.run(cycle.step)
        if not cycle.failures:
            heap.settle_once()  # start-up's long-lived heap out of every later full collection (`crmhub.heap`)
        return cycle

    def replies_job(self) -> Cycle:
        """The scheduler's `replies` job: agents' replies out to customers; a failed step fails the run."""
        cycle = Cycle()
        if self.replier is not None:
            cycle.replies = self.replier.run(cycle.step, spaced=True)
        if cycle.failures:
            raise CycleFailed(cycle)
        return cycle

    def polls(self) -> dict[str, Callable[[], list[PollReport]]]:
        """One poll job per enabled channel: every stream of it this process owns, into the ledger."""
        jobs: dict[str, Callable[[], list[PollReport]]] = {}
        wanted = streams.channel_streams(self.config.settings)
        for source, connector in self.channels.items():
            module = self.channel_modules[source]
            pages = module.pages(connector)
            jobs[source] = self._poll_job(source, module.partition(connector),
                                          [(name, pages[name]) for name in wanted[source]])
        return jobs

    def owns(self, stream: str) -> bool:
        """Whether this process reads `stream` now (it holds its lease; always on SQLite), as a metric too."""
        held = self.leases.holds(stream)
        self.metrics.record_lease(stream, held)
        return held

    def _poll_job(self, source: str, partition: str,
                  streams_: list[tuple[str, Callable[[str | None], Any]]]) -> Callable[[], list[PollReport]]:
        """Poll each stream of one source this process owns into the ledger, recording what it did."""

        def poll() -> list[PollReport]:
            mine = [(name, pages) for name, pages in streams_ if self.owns(streams.poll(source, name))]
            reports = [self.metrics.record_poll(poll_stream(self.store, source=source, stream=name,
                                                            partition=partition, pages=self._until_stopping(pages),
                                                            now=self.clock()))
                       for name, pages in mine if not self.stopping.is_set()]
            if not mine:
                self.metrics.read_elsewhere(source, "poll")
            if any(report.stored for report in reports):
                self.routing_bell.ring()
            return reports

        return poll

    def _until_stopping(self, pages: Callable[..., Iterable[Any]]) -> Callable[..., Iterator[Any]]:
        """`pages` that ends early, between two pages, once the daemon is stopping (each page commits with its cursor)."""

        def paged(*args: Any) -> Iterator[Any]:
            for page in pages(*args):
                yield page
                if self.stopping.is_set():
                    return

        return paged

    def webhook_app(self) -> FastAPI:
        """The webhook receiver, storing through the same ledger path as the polls."""
        settings = self.config.settings
        replier = self.replier
        hooks = [module.hooks(self.config, self.channels[name],
                              partial(replier.on_status, name) if replier is not None else None)
                 for name, module in self.channel_modules.items()]
        app = create_app(ledger_ingest(self.store, self.clock, on_stored=self.routing_bell.ring), hooks,
                         clock=self.clock, metrics=self._webhook_outcome)
        if settings.agent_api.enabled:
            app.mount("/agent", self.agent_app())
        return app

    def agent_app(self) -> FastAPI:
        """The agents' API for the CRM plugins (`crmhub.agent_api`), deciding suggestions as `crmhub links` does."""
        from crmhub.agent_api.wiring import agent_app

        return agent_app(self.config, self.store, clock=self.clock, policy=self.identity,
                         on_reply=lambda: self.replies_soon())

    def ops_app(self) -> FastAPI:
        """/metrics and /healthz for the ops listener, behind `ops.token` when one is set."""
        token = self.config.secret("ops.token").get_secret_value() if self.config.settings.ops.token else None
        return create_ops_app(self.metrics.registry, self.metrics.health, token=token)

    def poll_interval(self, channel: str) -> timedelta:
        module = self.channel_modules[channel]
        return module.poll_every(module.settings(self.config))

    def refresh_mirror(self, crm: str) -> int:
        """Refresh `crm`'s contact mirror, then its case states (closed/reopened), each when this process owns
        it; returns contacts changed."""
        connector = self.crms[crm]
        now = self.clock()

        def absorb(session: Session, records: list[MirrorRecord]) -> None:
            IdentityGraph(session, list(self.crms), self.identity, now).absorb_records(records)

        changed = 0
        if self.owns(streams.mirror(crm)):
            source = _StoppableMirror(connector.name, self._until_stopping(connector.mirror_pages))
            changed = refresh_mirror(self.store, source, list(connector.objects), now=now, absorb=absorb)
            self.metrics.record_mirror(crm)
        else:
            self.metrics.read_elsewhere(crm, "mirror")
        if self.owns(streams.cases(crm)):
            refresh_threads(self.store, connector, now=self.clock(), surveys=self.surveys, on_states=partial(
                self._link_marks, crm, now=self.clock()))
        self.store.keep_statistics(self.clock())  # SQLite's PRAGMA optimize, at most hourly
        return changed

    def _link_marks(self, crm: str, states: list[CaseState], *, now: datetime) -> Callable[[Session], None]:
        """Agents' confirmations and rejections of link suggestions, read back with `crm`'s cases.

        Who set the marks that decide something is asked of the CRM first, with no transaction open;
        the decisions are made in the page's transaction (`refresh_threads`).
        """
        authors: dict[links.MarkKey, str] = {}
        # Most pages carry no mark, and some CRMs name the agent in the case state: no extra transaction then.
        if links.reads_mark_authors(self.crms[crm]) and any(state.link_marks for state in states):
            with self.store.transaction() as session:
                deciding = links.marks_to_decide(session, crm, states)
            authors = links.mark_authors(self.crms[crm], deciding)

        def decide(session: Session) -> None:
            if links.decide_marks(session, crm, states, policy=self.identity, crms=list(self.crms), now=now,
                                  authors=authors):
                self.routing_bell.ring()  # a join re-queues history onto one record: deliver it soon

        return decide

    def route_and_deliver(self, cycle: Cycle | None = None) -> Cycle:
        """Route every new ledger row, then deliver every due outbox row to each CRM, each on its own."""
        cycle = cycle or Cycle()
        if not self._mirrors_loaded(cycle):
            return cycle
        self._route(cycle)
        for name in self.crms:
            if self.stopping.is_set():
                break
            self.deliver_to(name, cycle)
        return cycle

    def _mirrors_loaded(self, cycle: Cycle) -> bool:
        """Whether every CRM's contact mirror had a first full load; if not, a failure in `cycle` says so."""
        waiting = [name for name, crm in self.crms.items() if not mirror_loaded(self.store, name, list(crm.objects))
                   or not threads_loaded(self.store, name)]
        if waiting:  # a half-loaded mirror would duplicate contacts, unread cases would be opened again
            cycle.failures.append(f"route: waiting for a first full contact mirror of {', '.join(waiting)}")
            log.warning("routing waits for the contact mirror", crms=waiting)
        return not waiting

    def _route(self, cycle: Cycle) -> None:
        """Route every new ledger row into the outbox (`cycle.processed` says how many)."""
        cycle.processed = process_pending(self.store, self.router, list(self.crms), now=self.clock(),
                                          identity=self.identity,
                                          reopen_window=self.config.settings.threads.reopen_window)

    def deliver_to(self, name: str, cycle: Cycle, *, settle_later: bool = False, waiting_only: bool = False) -> None:
        """Deliver every due outbox row of one CRM (its failure is recorded in `cycle` as `deliver:<crm>`).

        `settle_later`: asynchronous bulk jobs are submitted, not waited for; a later run settles them.
        """
        crm = self.crms[name]
        with cycle.step(f"deliver:{name}"):
            crm.refresh_allowance()  # the vendor's limits endpoint, at most every few minutes
            report = deliver(self.store, crm, self.policies[name], now=self.clock(), clock=self.clock,
                             max_priority=crm.allowed_priority, stop=self.stopping, settle_later=settle_later,
                             waiting_only=waiting_only)
            if crm.allowed_priority() >= WritePriority.FOLLOW_UP:  # a note is a follow-up on a case
                report.noted = note_suggestions(self.store, crm, now=self.clock())
            cycle.deliveries.append(self.metrics.record_delivery(report))
            self._save_allowance(crm)

    def route_job(self) -> bool:
        """The routing worker's run: whether it enqueued anything; raises `CycleFailed` while a mirror loads."""
        cycle = Cycle()
        if not self._mirrors_loaded(cycle):
            raise CycleFailed(cycle)
        self._route(cycle)
        return cycle.processed > 0

    def delivery_job(self, name: str, *, waiting_only: bool = False) -> Cycle:
        """`deliver_to` for a CRM's delivery worker: a failure fails the job run.

        Jobs are settled by later runs (`settle_later`), so a CRM's slow jobs never hold its next batch;
        `Cycle.deliveries[...].settle_in` says when the worker should look again.
        """
        cycle = Cycle()
        self.deliver_to(name, cycle, settle_later=True, waiting_only=waiting_only)
        if cycle.failures:
            raise CycleFailed(cycle)
        return cycle

    def due_count(self, name: str, limit: int) -> int:
        """Outbox rows of CRM `name` due now, counted up to `limit` (a delivery worker's full-batch check)."""
        with self.store.transaction() as session:
            return backlog.due_count(session, name, now=self.clock(), limit=limit)

    def _save_allowance(self, crm: SalesforceCrm | ZendeskCrm | HubSpotCrm) -> None:
        """Record what the CRM's budget lets through, for `crmhub status` and `crmhub_outbox_held`."""
        if crm.budget is None:
            return
        allowance = crm.budget.allowance()
        with self.store.transaction() as session:
            outbox.save_allowance(session, crm.name, allowance.max_priority, now=self.clock(),
                                  daily_remaining=allowance.daily_remaining, daily_limit=allowance.daily_limit,
                                  reserve=allowance.reserve)

    def close(self) -> None:
        for name, module in self.channel_modules.items():
            module.close(self.channels[name])
        self.leases.close()  # the streams go to another daemon at its next run
        self.store.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class _StoppableMirror:
    """A CRM's `mirror_pages` as `refresh_mirror` reads them, ending between pages when stopping."""

    name: str
    pages: Callable[[str, str | None], Iterator[tuple[list[MirrorRecord], str]]]

    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]:
        return self.pages(object_name, since)


def build_hub(config: Config, *, clock: Callable[[], datetime] | None = None,
              sleep: Callable[[float], None] | None = None, monotonic: Callable[[], float] | None = None) -> Hub:
    """Open the state store (migrating it) and build every enabled, wired connector."""
    return Hub(config, open_store(config.database_url()), clock=clock, sleep=sleep, monotonic=monotonic)


def build_budget(config: Config, system: str, retrier: Retrier, *, wall: Callable[[], float],
                 shared: SharedPace | None = None) -> Budget | None:
    """The API budget of one system, from `crms.<crm>.budget` (a channel: its module's `budget`).

    `shared`: the paces the daemons on one PostgreSQL store share (None: this process alone).
    """
    crms = config.settings.crms
    common: dict[str, Any] = {"clock": retrier.clock, "sleep": retrier.sleep, "wall": wall,
                              "max_wait": retrier.policy.max_wait, "shared": shared}
    if system == "salesforce" and crms.salesforce is not None:
        sf = crms.salesforce.budget
        return Budget(system, windows=[Window(sf.requests_per_minute, 60.0)], daily_reserve=sf.daily_reserve,
                      limits_every=SALESFORCE_LIMITS_EVERY, **common)
    if system == "zendesk" and crms.zendesk is not None:
        return Budget(system, windows=[Window(crms.zendesk.budget.requests_per_minute, 60.0)], **common)
    if system == "hubspot" and crms.hubspot is not None:
        hs = crms.hubspot.budget
        return Budget(system, windows=[Window(hs.requests_per_10s, 10.0)], daily_reserve=hs.daily_reserve,
                      daily_limit=hs.daily, **common)
    if system in registry.names():
        return registry.load(system).budget(config, common)
    return None


def _retry_policy(config: Config) -> RetryPolicy:
    retry = config.settings.retry
    return RetryPolicy(max_attempts=retry.max_attempts, initial_wait=retry.initial_wait.total_seconds(),
                       max_wait=retry.max_wait.total_seconds(), max_total=retry.max_total.total_seconds())


def build_channel(name: str) -> Callable[[Config, Retrier], Any]:
    """How `crmhub check` builds channel `name`'s connector: its module's `build`."""
    return registry.load(name).build


def build_salesforce(config: Config, retrier: Retrier) -> SalesforceCrm:
    sf = config.settings.crms.salesforce
    assert sf is not None
    objects = contact_objects(config, "salesforce")
    password = config.secret("crms.salesforce.auth.password").get_secret_value() if sf.auth.password else None
    auth = SalesforceAuth(
        flow=sf.auth.flow,
        client_id=config.secret("crms.salesforce.auth.client_id").get_secret_value(),
        client_secret=config.secret("crms.salesforce.auth.client_secret").get_secret_value(),
        username=sf.auth.username, password=password)
    queues = {name: queue.queue for name, queue in config.routing.queues.salesforce.items()}
    return SalesforceCrm(instance_url=sf.instance_url, auth=auth, objects=objects, queues=queues,
                         base_url=sf.base_url, api_version=sf.api_version,
                         default_region=config.identities.default_region,
                         other_regions=config.identities.other_regions, link_field=sf.link_field, retrier=retrier,
                         carried_reads_within=carried_reads_within(config))


def carried_reads_within(config: Config) -> float:
    """How old a replies read a write carried may be when the replies job takes it: half `replies.every`, so a
    reply waits at most half an interval longer than a read of its own would make it (0 with replies off)."""
    replies = config.settings.replies
    return replies.every.total_seconds() / 2 if replies.enabled else 0.0


def build_zendesk(config: Config, retrier: Retrier) -> ZendeskCrm:
    zd = config.settings.crms.zendesk
    assert zd is not None

    def secret(key: str) -> str | None:
        return config.secret(f"crms.zendesk.auth.{key}").get_secret_value() if getattr(zd.auth, key) else None

    auth = ZendeskAuth(email=zd.auth.email, token=secret("token"), oauth_token=secret("oauth_token"))
    queues = {name: ZendeskGroup(q.group, q.priority) for name, q in config.routing.queues.zendesk.items()}
    crm = ZendeskCrm(subdomain=zd.subdomain, auth=auth, objects=contact_objects(config, "zendesk"), queues=queues,
                     base_url=zd.base_url, default_region=config.identities.default_region,
                     other_regions=config.identities.other_regions,
                     batch_size=zd.batch_size, retrier=retrier, job_sleep=retrier.sleep,
                     link_tag_prefix=zd.link_tag_prefix)
    crm.survey_fields = {kind: field for kind, field in zd.survey_fields.model_dump().items() if field is not None}
    return crm


def build_hubspot(config: Config, retrier: Retrier) -> HubSpotCrm:
    hs = config.settings.crms.hubspot
    assert hs is not None
    queues = {name: TicketQueue(q.pipeline, q.stage, q.owner) for name, q in config.routing.queues.hubspot.items()}
    return HubSpotCrm(access_token=config.secret("crms.hubspot.auth.access_token").get_secret_value(),
                      objects=contact_objects(config, "hubspot"), queues=queues, base_url=hs.base_url,
                      default_region=config.identities.default_region,
                      other_regions=config.identities.other_regions, batch_size=hs.batch_size,
                      link_property=hs.link_property, retrier=retrier)


def contact_objects(config: Config, crm: str) -> list[ContactObject]:
    """The objects to mirror and match in `crm`, with the routing fields to copy."""
    identity = getattr(config.identities.crms, crm)
    if identity is None:
        return []
    extra = sorted(config.routing.contact_fields())
    return [ContactObject(name, match.by_kind(), extra) for name, match in identity.objects().items()]


def build_blocklist(config: Config) -> Blocklist:
    """identities.yaml `blocked`: shared values (switchboards, team mailboxes) that never link anyone."""
    blocked = config.identities.blocked
    return Blocklist.of(blocked.values, blocked.patterns)


def build_identity_policy(config: Config, blocklist: Blocklist | None = None) -> IdentityPolicy:
    """identities.yaml for the engine; our own numbers and account are never a customer's statement."""
    mappings = config.identities
    if blocklist is None:
        blocklist = build_blocklist(config)
    channels = config.settings.channels
    own: set[Identity] = set()
    routes: dict[IdentityKind, CodeRoute] = {}
    texts = mappings.codes.texts
    for name in registry.names():  # our addresses on every configured channel, enabled or not
        block = getattr(channels, name)
        if block is not None:
            module = registry.load(name)
            own |= module.own_identities(block)
            for route in module.code_routes(block):  # the first channel module reaching a kind sends its codes
                routes.setdefault(route.kind, replace(route, text=texts.get(route.channel.value, route.text)))
    statements = StatementPolicy(**{kind: OnStatement(action) for kind, action in mappings.statements})
    rules = mappings.codes
    codes = CodePolicy(rules=CodeRules(rules.expire_after, rules.max_tries, rules.max_per_claim), routes=routes)
    return IdentityPolicy(blocklist=blocklist, max_per_kind=mappings.max_identities_per_kind,
                          statements=statements, default_region=mappings.default_region,
                          other_regions=tuple(mappings.other_regions),
                          own=frozenset(own), codes=codes)


def build_router(config: Config) -> Router:
    routing = config.routing
    rules = tuple(
        Rule(
            name=rule.name,
            targets=_targets(rule.route, rule.tags),
            channels=frozenset(_as_list(rule.when.channel)) if rule.when.channel else None,
            direction=rule.when.direction,
            text_pattern=re.compile(rule.when.text_matches) if rule.when.text_matches else None,
            keywords=tuple(_as_list(rule.when.keywords)),
            languages=frozenset(_as_list(rule.when.language)) if rule.when.language else None,
            contact=dict(rule.when.contact),
            business_hours=rule.when.business_hours,
            case_open=rule.when.case_open,
        )
        for rule in routing.rules
    )
    languages = config.settings.languages
    # A language a rule names is always expected: a rule on a language the detector never considers could not match.
    expected = frozenset(languages.expected) | {code for rule in rules for code in rule.languages or ()}
    detector = LanguageDetector(expected, min_confidence=languages.min_confidence) if expected else None
    return Router(rules, _targets(routing.default, []), routing.in_business_hours, detector=detector,
                  contact_language=tuple(routing.contact_language))


def _targets(routes: Any, tags: list[str]) -> dict[str, QueueTarget]:
    return {crm: QueueTarget(route.queue, getattr(route, "priority", None),
                             (*getattr(route, "tags", []), *tags))
            for crm, route in routes.targets().items()}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def build_policy(config: Config, crm: str, blocklist: Blocklist | None = None, *,
                 max_batch: int = 100) -> DeliveryPolicy:
    """How `crm`'s writes are shaped; batches are the CRM's `max_batch`, or `delivery.batch_size` when smaller."""
    delivery = config.settings.delivery
    batch_size = min(max_batch, delivery.batch_size or max_batch)
    identity = getattr(config.identities.crms, crm)
    create = identity.create_when_unmatched if identity is not None else "none"
    task, case = _templates(config, crm)
    return DeliveryPolicy(
        task_templates=task, case_templates=case, create_contact_as=None if create == "none" else create,
        contact_object=CONTACT_OBJECTS[crm], batch_size=batch_size, max_attempts=delivery.max_attempts,
        max_claims=delivery.max_claims, lease=delivery.lease, reopen_window=config.settings.threads.reopen_window,
        blocklist=blocklist or Blocklist())


CONTACT_OBJECTS = {"salesforce": "Contact", "zendesk": "user", "hubspot": "contacts"}


def _templates(config: Config, crm: str) -> tuple[dict[str, str], dict[str, str]]:
    """(activity templates, case templates) of history.yaml for `crm`."""
    history = config.history
    if crm == "salesforce":
        return dict(history.salesforce.task), dict(history.salesforce.case)
    return {}, dict(getattr(history, crm).ticket)


def build_replier(hub: Hub) -> Replier:
    """The reply steps over the hub's CRMs and channels (settings `replies`, `delivery` for leases and attempts)."""
    delivery = hub.config.settings.delivery
    policy = ReplyPolicy(max_attempts=delivery.max_attempts, max_claims=delivery.max_claims, lease=delivery.lease,
                         default_language=hub.config.settings.languages.default)
    return Replier(hub.store, hub.crms, hub.channel_modules, hub.channels, policy, hub.metrics, hub.clock,
                   owns=hub.owns)
