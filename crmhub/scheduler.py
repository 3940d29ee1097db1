"""APScheduler wiring of the daemon's jobs (`crmhub run`).

At start one full cycle runs in order (poll, mirror, route, deliver), so a
restart catches up at once; then one job per concern runs on its interval
from settings, never two runs of the same job at once (`max_instances=1`),
missed runs coalesced into one. The poll jobs start as soon as the cycle's
polls are done, without waiting for the rest of it: a daemon holding a
stream's lease (several daemons on one store) must read it on time however
long its mirrors take to load.

* `poll:twilio`   every `channels.twilio.poll_every` (messages, and calls when `calls: true`)
* `poll:x`        every `channels.x.poll_every` (mentions, DMs)
* `mirror:<crm>`  every `MIRROR_EVERY`: the contact mirror, then the case states (a setting comes with issue 6)
* `route`         a worker thread: routes new ledger rows when a webhook or a poll stored some,
                  and every `delivery.every` (rows stored by another process)
* `deliver:<crm>` a worker thread per CRM: writes its outbox rows `delivery.latency_budget` after
                  being routed, or later, up to `delivery.max_wait`, while the batch is too small for
                  `delivery.calls_per_interaction` (a full batch at once); and every `delivery.every`
                  (`crmhub.workers`)
* `replies`       every `replies.every` (when `replies.enabled`): agents' replies out to customers

SIGTERM and SIGINT stop it within `run.shutdown_grace`: no job starts any
more, running jobs are asked to stop after their current batch or page
(`Hub.stopping`, which also cuts retry and pacing waits short), and the
process exits 0 once they have, or when the grace period is over, whichever
comes first. A job cut short that way is logged by name; cutting is safe:
claimed outbox rows come due again when their lease ends, CRM writes are
upserts by crmhub's keys, and each polled page commits with its cursor.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import undefined

from crmhub.app import Cycle, Hub
from crmhub.errors import reason_of
from crmhub.metrics import JobRecords
from crmhub.serving import HttpServer
from crmhub.workers import BatchCost, DeliveryWorker, Doorbell, Filling, RoutingWorker, start_threads

log = structlog.get_logger("crmhub.scheduler")
MIRROR_EVERY = timedelta(minutes=5)
ROUTING_GATHER = 0.25  # seconds, at most: the routing worker's wait for more rows after a ring (a budget's quarter)
SETTLE_MARGIN = 0.05  # seconds after rows waiting on CRM jobs are due before their worker is rung
SAFE_TO_CUT = ("safe to cut: claimed outbox rows come due again when their lease ends, CRM writes are upserts "
               "by crmhub's keys, and polled pages commit with their cursors; the restart finishes the work")


class RunningJobs:
    """Which jobs are running now, so a shutdown can wait for them (up to its grace period) and name the rest.

    Args:
        records: job records to note every run in (ok or failed), for /healthz and metrics.
        stopping: once set, jobs no longer start, and a job ending in an error is logged as
            cut short by the shutdown rather than as failed.
    """

    def __init__(self, records: JobRecords | None = None, stopping: threading.Event | None = None) -> None:
        self.records = records
        self.stopping = stopping or threading.Event()
        self._running: dict[str, int] = {}
        self._changed = threading.Condition()

    def wrap(self, job_id: str, fn: Callable[[], Any]) -> Callable[[], None]:
        """`fn` as a job: counted while it runs; a failure is logged with its reason, the next run tries again."""

        def run() -> None:
            if self.stopping.is_set():
                return  # queued before the shutdown: not started
            with self._changed:
                self._running[job_id] = self._running.get(job_id, 0) + 1
            try:
                self._run(job_id, fn)
            finally:
                with self._changed:
                    self._running[job_id] -= 1
                    if not self._running[job_id]:
                        del self._running[job_id]
                    self._changed.notify_all()

        return run

    def _run(self, job_id: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001  # a job must never take the daemon down
            if self.stopping.is_set():
                log.info("job cut short by the shutdown", job=job_id, error=type(exc).__name__)
                return
            log.error("job failed", job=job_id, error=type(exc).__name__, reason=reason_of(exc)[:300])
            if self.records is not None:
                self.records.failed(job_id, exc)
        else:
            if self.records is not None:
                self.records.ok(job_id)

    def running(self) -> list[str]:
        with self._changed:
            return sorted(self._running)

    def wait_idle(self, timeout: float) -> list[str]:
        """Wait until no job runs, at most `timeout` seconds; returns the jobs still running."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return sorted(self._running)


def build_scheduler(hub: Hub, jobs: RunningJobs | None = None, *, polls_first: bool = False) -> BackgroundScheduler:
    """A scheduler holding every job of `hub`, not yet started.

    `polls_first`: only the poll jobs run once it starts; the others are added paused, for
    `resume_after_catch_up` once the catch-up cycle has done their work.
    """
    jobs = jobs or RunningJobs(hub.metrics.jobs, hub.stopping)
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(4)}, timezone=UTC,
                                    job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None})

    def add(job_id: str, every: timedelta, fn: Callable[[], Any], first: Any = undefined) -> None:
        scheduler.add_job(jobs.wrap(job_id, fn), "interval", seconds=every.total_seconds(), id=job_id, name=job_id,
                          next_run_time=first)

    later = None if polls_first else undefined  # next_run_time None: added paused
    for name, poll in hub.polls().items():
        add(f"poll:{name}", hub.poll_interval(name), poll)
    for name in hub.crms:
        add(f"mirror:{name}", MIRROR_EVERY, lambda name=name: hub.refresh_mirror(name), later)  # type: ignore[misc]
    if hub.replier is not None:
        add("replies", hub.config.settings.replies.every, hub.replies_job, later)
        hub.replies_soon = partial(_run_soon, scheduler, "replies")
    return scheduler


def resume_after_catch_up(scheduler: BackgroundScheduler) -> None:
    """Resume the jobs `build_scheduler(polls_first=True)` added paused: each runs next after its interval."""
    for job in scheduler.get_jobs():
        if job.next_run_time is None:
            job.resume()


WAKER_WAIT = 300.0  # seconds a channel's waiter blocks before it looks again (IMAP IDLE is renewed within 29 min)
WAKER_PAUSE = 30.0  # after a waiter failed at once (server down), before it tries again; the interval poll goes on


def start_wakers(hub: Hub, scheduler: BackgroundScheduler) -> None:
    """One daemon thread per channel with a `waiter` (IMAP IDLE): it moves the channel's poll forward when told."""
    for name, module in hub.channel_modules.items():
        wait = module.waiter(hub.channels[name], module.settings(hub.config))
        if wait is None:
            continue

        def wake(name: str = name, wait: Callable[[float], bool] = wait) -> None:
            while not hub.stopping.is_set():
                began = time.monotonic()
                if wait(WAKER_WAIT):
                    if not hub.stopping.is_set():
                        _run_soon(scheduler, f"poll:{name}")
                elif time.monotonic() - began < 1 and hub.stopping.wait(WAKER_PAUSE):  # failed at once: no spin
                    return

        threading.Thread(target=wake, name=f"crmhub-wake-{name}", daemon=True).start()


def _run_soon(scheduler: BackgroundScheduler, job_id: str) -> None:
    """Move the job's next run to now (it still runs once at a time); nothing while it waits for the catch-up
    cycle (paused) or when the daemon is stopping."""
    try:
        job = scheduler.get_job(job_id)
        if job is not None and job.next_run_time is not None:
            job.modify(next_run_time=datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001  # a scheduler shut down: the interval run will do
        log.debug("job not moved forward", job=job_id, reason=type(exc).__name__)


def build_workers(hub: Hub, jobs: RunningJobs) -> list[DeliveryWorker | RoutingWorker]:
    """The routing worker (on `hub.routing_bell`) and one delivery worker per CRM, not yet started."""
    delivery = hub.config.settings.delivery
    every, budget = delivery.every.total_seconds(), delivery.latency_budget.total_seconds()

    def run_job(job_id: str, fn: Callable[[], Any]) -> None:
        jobs.wrap(job_id, fn)()

    deliveries = []
    for name in hub.crms:
        bell = Doorbell()
        alarm = _SettleAlarm(partial(hub.delivery_job, name), bell)
        settling = _SettleAlarm(partial(hub.delivery_job, name, waiting_only=True), bell)
        deliveries.append(DeliveryWorker(job=f"deliver:{name}", deliver=partial(_rows_delivered, alarm),
                                         due=partial(hub.due_count, name), batch=hub.policies[name].batch_size,
                                         every=every, budget=budget, run_job=run_job, bell=bell,
                                         filling=_filling(hub, name), settle=partial(_rows_delivered, settling)))
    routing = RoutingWorker(route=hub.route_job, deliveries=[worker.bell for worker in deliveries], every=every,
                            run_job=run_job, bell=hub.routing_bell, gather=min(budget / 4, ROUTING_GATHER))
    return [routing, *deliveries]


def _filling(hub: Hub, name: str) -> Filling:
    """How long CRM `name`'s worker lets a small batch fill: its target, `max_wait`, its connector's calls."""
    delivery = hub.config.settings.delivery
    crm = hub.crms[name]
    budget = crm.budget

    def allowance_low() -> bool:
        return budget is not None and budget.allowance().low

    return Filling(target=getattr(delivery.calls_per_interaction, name),
                   max_wait=delivery.max_wait.total_seconds(), calls=crm.calls_here, allowance_low=allowance_low,
                   cost=BatchCost(seed=crm.batch_calls))


def _rows_delivered(run: Callable[[], Cycle]) -> int:
    """A delivery worker's run: the outbox rows it settled (written, retrying or dead).

    Rows it left waiting on CRM jobs are counted when a later run settles them; the calls spent
    meanwhile are carried to that run (`DeliveryWorker._run`).
    """
    cycle = run()
    return sum(r.delivered + r.retrying + r.dead for r in cycle.deliveries)


class _SettleAlarm:
    """A delivery run that rings its worker's bell again when the writes it left in CRM jobs are due.

    The run submits jobs without waiting for them (`Hub.delivery_job`); their
    rows come due after the connector's `settle_after`, which may be long
    before the worker's interval. Rows whose next step waits on their job
    ring urgently (a run at once); the others (`WriteOutcome.urgent` False)
    ring as new rows do, so the next batch takes them along and a follow-up
    held back by one of them is not left for the interval.
    """

    def __init__(self, run: Callable[[], Any], bell: Doorbell) -> None:
        self.run, self.bell = run, bell
        self._timers: dict[bool, threading.Timer] = {}  # urgent? -> its pending ring

    def __call__(self) -> Any:
        cycle = self.run()
        for urgent, waits in ((True, [r.settle_in for r in cycle.deliveries if r.settle_in is not None]),
                              (False, [r.ride_in for r in cycle.deliveries if r.ride_in is not None])):
            if waits:
                self._ring_in(min(waits) + SETTLE_MARGIN, urgent=urgent)
        return cycle

    def _ring_in(self, seconds: float, *, urgent: bool) -> None:
        if (timer := self._timers.get(urgent)) is not None:
            timer.cancel()
        # Urgent: those writes were paid for when their jobs were submitted; reading the outcome (and
        # submitting a new customer's next stage) must not wait for a fuller batch as new rows do.
        timer = threading.Timer(seconds, partial(self.bell.ring, urgent=urgent))
        timer.daemon = True  # a stopping daemon closes the bell; the alarm never holds it up
        timer.start()
        self._timers[urgent] = timer


def _stop_on_signals(stop: threading.Event | None) -> threading.Event:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def start_listeners(hub: Hub, *, webhooks: bool) -> list[HttpServer]:
    """Start the ops listener (when `ops.enabled`) and, when asked, the webhook receiver.

    Raises:
        CannotListen: an address is taken or not this host's (nothing is left listening).
    """
    settings, source = hub.config.settings, hub.config.source
    apps = [("ops", settings.ops.host, settings.ops.port, hub.ops_app)] if settings.ops.enabled else []
    if webhooks:
        apps.append(("webhooks", settings.webhooks.host, settings.webhooks.port, hub.webhook_app))
    started: list[HttpServer] = []
    try:
        for section, host, port, app in apps:
            started.append(HttpServer(app(), host=host, port=port, section=section, source=source).start())
    except BaseException:
        stop_listeners(started)
        raise
    return started


def stop_listeners(servers: list[HttpServer]) -> None:
    for server in reversed(servers):
        server.stop()


def serve_webhooks_forever(hub: Hub, *, stop: threading.Event | None = None) -> None:
    """The webhook receiver alone (`crmhub webhooks`), with the ops listener, until SIGTERM/SIGINT."""
    stop = _stop_on_signals(stop)
    servers = start_listeners(hub, webhooks=True)
    stop.wait()
    stop_listeners(servers)
    log.info("stopped")


def leave_promptly(wait: float = 5.0) -> None:
    """After a clean stop: give threads still working `wait` seconds, then exit without them, naming them.

    The interpreter's exit waits for every non-daemon thread (a pool thread
    of the scheduler, an SDK's); one stuck in a call would hold a stopping
    daemon past its grace period until systemd kills it. Its work is safe to
    cut, as any job's is (SAFE_TO_CUT).
    """
    deadline = time.monotonic() + wait
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [thread.name for thread in threading.enumerate()
            if thread is not threading.current_thread() and not thread.daemon and thread.is_alive()]
    if busy:
        log.warning("threads still busy after the stop; exiting without them", threads=busy, note=SAFE_TO_CUT)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run_forever(hub: Hub, *, stop: threading.Event | None = None, exit_when_cut: bool = True) -> list[str]:
    """Run the listeners (ops; webhooks when enabled) and the jobs until SIGTERM/SIGINT (or `stop`), then stop.

    The receiver starts first, so webhooks arriving during the catch-up
    cycle are stored; whatever it misses while down, the polls find. The
    catch-up cycle runs on its own thread, so a signal during it is honoured
    like one during any job.

    Args:
        exit_when_cut: when jobs are still running at the end of the grace period, end
            the process at once with status 0 (their threads would otherwise hold the
            interpreter's exit); False returns their names instead (tests).

    Returns:
        The jobs cut short (empty when every running job finished in time).
    """
    stop = _stop_on_signals(stop)
    grace = hub.config.settings.run.shutdown_grace.total_seconds()
    servers = start_listeners(hub, webhooks=hub.config.settings.webhooks.enabled)
    jobs = RunningJobs(hub.metrics.jobs, hub.stopping)
    scheduler = build_scheduler(hub, jobs, polls_first=True)
    workers = build_workers(hub, jobs)
    starting = threading.Lock()

    def start_polling() -> None:
        with starting:
            if not hub.stopping.is_set():
                scheduler.start()  # the polls on their intervals; the other jobs wait for the catch-up
                start_wakers(hub, scheduler)

    def catch_up_then_schedule() -> None:
        jobs.wrap("catch-up", partial(hub.sync_once, after_polls=start_polling))()
        with starting:
            if hub.stopping.is_set():
                return
            if not scheduler.running:  # the catch-up ended before its polls did (they failed)
                scheduler.start()
            resume_after_catch_up(scheduler)
            start_threads(workers)
        log.info("running", jobs=[job.id for job in scheduler.get_jobs()] + [worker.job for worker in workers],
                 listening=[s.url for s in servers])

    threading.Thread(target=catch_up_then_schedule, name="crmhub-catch-up", daemon=True).start()
    stop.wait()
    log.info("stopping: running jobs finish their current batch", running=jobs.running(), grace_seconds=grace)
    with starting:
        hub.stopping.set()  # no job starts any more; running ones end after their batch or page
        if scheduler.running:
            scheduler.shutdown(wait=False)
        for worker in workers:
            worker.bell.close()  # a worker mid-batch ends after it; an idle one at once
    stop_listeners(servers)
    cut = jobs.wait_idle(grace)
    if not cut:
        log.info("stopped")
        return []
    log.warning("stopped with jobs cut short at the end of the grace period", jobs=cut, grace_seconds=grace,
                note=SAFE_TO_CUT)
    if exit_when_cut:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # the cut jobs' threads would hold the interpreter's exit; nothing is left half-recorded
    return cut
