"""`crmhub run`'s routing and delivery workers: woken by arriving items, full batches at once, one slow CRM alone.

Every daemon runs with intervals of an hour (`delivery.every`, and the polls
unless a test needs them), so what reaches a CRM in these tests got there
through the wake path, not through an interval that happened to come round.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from tests.daemons import Daemon, pending, tune_settings, wait_for
from tests.test_run import free_port

OURS = "+14155550100"
TASK_UPSERTS = "/composite$"  # the batch's one Composite call, which carries the Task upsert


def _salesforce_org(sf: Any, senders: list[str]) -> None:
    """Queues, and a known Contact per sender (every write is then an upsert by crmhub's keys)."""
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    for n, phone in enumerate(senders):
        sf.insert("Contact", LastName=f"Known{n}", Phone=phone)


def _with_webhooks(salesforce: EmulatorServer, twilio: EmulatorServer, tmp_path: Path, senders: list[str],
                   tuned: dict[str, object] | None = None) -> Path:
    """Settings for Salesforce and Twilio with hour-long intervals, our number's webhooks sent to the daemon."""
    _salesforce_org(salesforce.emulator, senders)
    port = free_port()
    twilio.emulator.add_number(OURS, sms_url=f"http://127.0.0.1:{port}/webhooks/twilio/messages")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce.url, "twilio": twilio.url},
                                      webhooks_port=port, every="1h")
    if tuned:
        tune_settings(settings, tuned)
    return settings


@contextmanager
def _running(settings: Path, log: Path) -> Iterator[Daemon]:
    """A `crmhub run` past its catch-up cycle (its workers started); killed if the test fails midway."""
    daemon = Daemon(settings, log)
    daemon.start()
    try:
        wait_for(daemon.running, 60, "the daemon to catch up and start its workers", [daemon])
        yield daemon
    finally:
        daemon.ensure_dead()


def _stops_cleanly(daemon: Daemon) -> None:
    status = daemon.stop()
    assert status == 0 and "stopped" in daemon.tail(3), f"exit {status}\n{daemon.tail()}"


def test_a_webhook_reaches_salesforce_through_the_wake_path_with_hour_long_intervals(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    settings = _with_webhooks(salesforce_sandbox, twilio_sandbox, tmp_path, [])
    with _running(settings, tmp_path / "run.log") as daemon:
        tw.receive_message("+14155550123", OURS, "Woken by the webhook")
        assert tw.wait_for_webhooks(timeout=10)
        assert [h["status"] for h in tw.webhook_log()] == [200]
        wait_for(lambda: len(sf.records("Task")) == 1, 60, "the message as a Task (after max_wait)", [daemon])
        _stops_cleanly(daemon)
    assert [t["Description"] for t in sf.records("Task")] == ["Woken by the webhook"]
    assert tw.calls["GET /2010-04-01/Accounts/<account_sid>/Messages.json"] == 1  # the catch-up's poll, no other


def test_a_full_batch_goes_at_once_in_one_task_collection_call_despite_an_hour_long_budget(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    senders = [f"+1415555{6000 + n}" for n in range(4)]
    _salesforce_org(sf, senders)
    tw.add_number(OURS)
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      every="1h")
    tune_settings(settings, {"delivery.latency_budget": "1h", "delivery.max_wait": "1h",
                             "channels.twilio.poll_every": "1s",
                             "channels.twilio.page_size": 1000})
    task_calls = sf.faults.add(Fault(kind="slow", path=TASK_UPSERTS, times=None, delay=0.0))  # counts, no delay
    with _running(settings, tmp_path / "run.log") as daemon:
        start = datetime.now(UTC) - timedelta(minutes=5)
        bodies = [f"batch message {n}" for n in range(200)]
        for n, body in enumerate(bodies):
            tw.receive_message(senders[n % 4], OURS, body, at=start + timedelta(milliseconds=n))
        wait_for(lambda: len(sf.records("Task")) == 200, 60, "the 200 messages as Tasks", [daemon])
        _stops_cleanly(daemon)
    assert Counter(t["Description"] for t in sf.records("Task")) == Counter(bodies)
    assert task_calls.hits == 1  # one Composite call for 200, sent without waiting out the budget


def test_a_trickle_waits_past_the_budget_and_goes_in_one_batch_not_one_per_message(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    senders = [f"+1415555{6100 + n}" for n in range(3)]
    # No budget at all: before issue 13's rule each message went in a call of its own, as soon as it was routed.
    settings = _with_webhooks(salesforce_sandbox, twilio_sandbox, tmp_path, senders,
                              {"delivery.latency_budget": "0s", "delivery.max_wait": "30s"})
    db_url = load_config(settings).database_url()
    task_calls = sf.faults.add(Fault(kind="slow", path=TASK_UPSERTS, times=None, delay=0.0))  # counts, no delay
    bodies = [f"trickle message {n}" for n in range(3)]
    with _running(settings, tmp_path / "run.log") as daemon:
        for n, (sender, body) in enumerate(zip(senders, bodies, strict=True)):
            tw.receive_message(sender, OURS, body)
            wait_for(lambda n=n: pending(db_url) == n + 1, 20, f"message {n} routed and waiting", [daemon])
        assert not sf.records("Task")  # three waiting items are far from worth a call (0.025 a message)
        wait_for(lambda: len(sf.records("Task")) == 3, 60, "the trickle delivered at max_wait", [daemon])
        _stops_cleanly(daemon)
    assert sorted(t["Description"] for t in sf.records("Task")) == bodies
    assert task_calls.hits == 1  # one write call for the three


def test_a_zendesk_slow_to_run_its_jobs_does_not_hold_salesforce_back(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    _salesforce_org(sf, ["+14155550123"])
    user = zd.add_user(name="Jane Doe", phone="+1 415 555 0123")
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    zd.configure(job_reads_per_step=None)  # bulk jobs stay queued until the test finishes them
    port = free_port()
    tw.add_number(OURS, sms_url=f"http://127.0.0.1:{port}/webhooks/twilio/messages")
    urls = {"salesforce": salesforce_sandbox.url, "zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url}
    settings = write_sandbox_settings(tmp_path, urls, enabled=("salesforce", "zendesk", "twilio"),
                                      webhooks_port=port, every="1h")

    def queued_jobs() -> list[dict[str, Any]]:
        return [job for job in zd.snapshot()["jobs"].values() if job["status"] != "completed"]

    with _running(settings, tmp_path / "run.log") as daemon:
        tw.receive_message("+14155550123", OURS, "Where is my parcel?")
        wait_for(lambda: bool(queued_jobs()), 30, "Zendesk's ticket job to be submitted", [daemon])
        wait_for(lambda: len(sf.records("Task")) == 1, 30, "the Salesforce Task", [daemon])
        # Zendesk's worker now polls its job; a message arriving meanwhile still reaches Salesforce at once.
        tw.receive_message("+14155550123", OURS, "Any news?")
        wait_for(lambda: len(sf.records("Task")) == 2, 30, "the second Salesforce Task", [daemon])
        assert len(queued_jobs()) == 1 and not zd.tickets()  # Zendesk's first job is still queued
        # From now on a job completes at its first poll, or a second after its submission as Zendesk's do
        # (the follow-up's comment job is read only by the next run that comes).
        zd.configure(job_reads_per_step=0, job_autocomplete_seconds=1)
        zd.finish_jobs()
        wait_for(lambda: len(zd.tickets()) == 1 and len(zd.comments(zd.tickets()[0]["id"])) == 2, 90,
                 "the Zendesk ticket and its follow-up once the jobs ran", [daemon])
        _stops_cleanly(daemon)
    [ticket] = zd.tickets()
    assert ticket["requester_id"] == user
    assert [c["body"] for c in zd.comments(ticket["id"])] == ["Where is my parcel?", "Any news?"]
    assert sorted(t["Description"] for t in sf.records("Task")) == ["Any news?", "Where is my parcel?"]


def test_sigterm_with_a_worker_mid_batch_exits_0_and_the_restart_delivers_the_batch_once(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    senders = [f"+1415555{7000 + n}" for n in range(5)]
    settings = _with_webhooks(salesforce_sandbox, twilio_sandbox, tmp_path, senders,
                              {"run.shutdown_grace": "1s", "delivery.lease": "2s", "delivery.max_wait": "1s"})
    # The worker's Task upsert answers only after 6 s: SIGTERM finds it in flight.
    slow = sf.faults.add(Fault(kind="slow", path=TASK_UPSERTS, times=1, delay=6.0))
    bodies = [f"worker message {n}" for n in range(5)]
    with _running(settings, tmp_path / "run.log") as daemon:
        for sender, body in zip(senders, bodies, strict=True):
            tw.receive_message(sender, OURS, body)
        assert tw.wait_for_webhooks(timeout=10)
        wait_for(lambda: slow.hits == 1, 30, "the worker's Task upsert in flight", [daemon])
        status = daemon.stop()
        log = daemon.text()
        assert status == 0, log[-2000:]
        assert "cut short" in log and "deliver:salesforce" in log and "safe to cut" in log, log[-2000:]
        assert "catch-up" not in log.split("stopping:")[-1]  # the worker was cut, not the start-up cycle
        assert "worker message" not in log  # no bodies in the logs

    # The cut request still lands in the CRM: crmhub never recorded it, so the restart must find it, not double it.
    wait_for(lambda: len(sf.records("Task")) >= 1, 30, "the in-flight upsert to land")
    db_url = load_config(settings).database_url()
    with _running(settings, tmp_path / "restart.log") as restart:
        wait_for(lambda: len(sf.records("Task")) >= 5 and pending(db_url) == 0, 60, "every message delivered",
                 [restart])
        _stops_cleanly(restart)
        assert "cut short" not in restart.text().split("] running ")[-1]
    assert Counter(t["Description"] for t in sf.records("Task")) == Counter(bodies)  # each exactly once
