"""APScheduler wiring of the daemon's jobs (`crmhub run`).

At start one full cycle runs in order (poll, mirror, route, deliver), so a
restart catches up at once; then one job per concern runs on its interval
from settings, never two runs of the same job at once (`max_instances=1`),
missed runs coalesced into one:

* `poll:twilio`   every `channels.twilio.poll_every` (messages, and calls when `calls: true`)
* `poll:x`        every `channels.x.poll_every` (mentions, DMs)
* `mirror:<crm>`  every `MIRROR_EVERY` (a setting comes with issue 6)
* `deliver`       every `delivery.every`: route new ledger rows, then write the outbox
* `replies`       every `replies.every` (when `replies.enabled`): agents' replies out to customers

SIGTERM and SIGINT stop the scheduler and wait for running jobs to finish
their batch, so nothing is left half-recorded (and anything interrupted
harder is safe to repeat: see the outbox and ledger docstrings).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from crmhub.app import Hub
from crmhub.metrics import JobRecords
from crmhub.webhooks import WebhookServer

log = structlog.get_logger("crmhub.scheduler")
MIRROR_EVERY = timedelta(minutes=5)


def build_scheduler(hub: Hub) -> BackgroundScheduler:
    """A scheduler holding every job of `hub`, not yet started."""
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(4)}, timezone=UTC,
                                    job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None})

    def add(job_id: str, every: timedelta, fn: Callable[[], Any]) -> None:
        scheduler.add_job(_logged(job_id, fn, hub.metrics.jobs), "interval", seconds=every.total_seconds(), id=job_id, name=job_id)

    for name, poll in hub.polls().items():
        add(f"poll:{name}", hub.poll_interval(name), poll)
    for name in hub.crms:
        add(f"mirror:{name}", MIRROR_EVERY, lambda name=name: hub.refresh_mirror(name))  # type: ignore[misc]
    add("deliver", hub.config.settings.delivery.every, hub.deliver_job)
    if hub.replier is not None:
        add("replies", hub.config.settings.replies.every, hub.replies_job)
    return scheduler


def _logged(job_id: str, fn: Callable[[], Any], records: JobRecords | None = None) -> Callable[[], None]:
    """Run a job; a failure is logged with its reason and the next run tries again.

    With `records`, every run is recorded (ok or failed, when, the error's type) for
    /healthz and `crmhub_job_runs_total`.
    """

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001  # a job must never take the daemon down
            log.error("job failed", job=job_id, error=type(exc).__name__, reason=str(exc)[:300])
            if records is not None:
                records.failed(job_id, exc)
        else:
            if records is not None:
                records.ok(job_id)

    return run


def _stop_on_signals(stop: threading.Event | None) -> threading.Event:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def serve_webhooks_forever(hub: Hub, *, stop: threading.Event | None = None) -> None:
    """The webhook receiver alone (`crmhub webhooks`), until SIGTERM/SIGINT."""
    stop = _stop_on_signals(stop)
    hooks = hub.config.settings.webhooks
    server = WebhookServer(hub.webhook_app(), host=hooks.host, port=hooks.port).start()
    stop.wait()
    server.stop()
    log.info("stopped")


def run_forever(hub: Hub, *, stop: threading.Event | None = None) -> None:
    """Run the webhook receiver and the jobs until SIGTERM/SIGINT (or `stop`), then drain and return.

    The receiver starts first, so webhooks arriving during the catch-up
    cycle are stored; whatever it misses while down, the polls find.
    """
    stop = _stop_on_signals(stop)
    hooks = hub.config.settings.webhooks
    server = WebhookServer(hub.webhook_app(), host=hooks.host, port=hooks.port).start() if hooks.enabled else None
    _logged("catch-up", hub.sync_once, hub.metrics.jobs)()
    scheduler = build_scheduler(hub)
    scheduler.start()
    log.info("running", jobs=[job.id for job in scheduler.get_jobs()], webhooks=server.url if server else None)
    stop.wait()
    log.info("stopping: finishing running jobs")
    if server is not None:
        server.stop()
    scheduler.shutdown(wait=True)
    log.info("stopped")
