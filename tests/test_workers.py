"""The workers' decisions, on their own threads with fake work: when a woken worker writes and when it does not.

Each worker here gets an hour for its interval and its budget, so a worker
that ran at all ran because of the decision under test; every join has a
generous deadline and a worker still alive after it fails the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from crmhub.workers import DeliveryWorker, Doorbell, RoutingWorker

HOUR = 3600.0


class Runs:
    """A `run_job` recording job names; the worker's bell is closed after `stop_after` runs (its loop ends)."""

    def __init__(self, bell: Doorbell, stop_after: int = 1) -> None:
        self.bell, self.stop_after = bell, stop_after
        self.names: list[str] = []

    def __call__(self, job: str, fn: Callable[[], Any]) -> None:
        fn()
        self.names.append(job)
        if len(self.names) >= self.stop_after:
            self.bell.close()


def _run_until_closed(loop: Callable[[], None]) -> None:
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker is still waiting"


def test_a_full_batch_is_delivered_at_once_whatever_the_budget() -> None:
    bell, delivered = Doorbell(), []
    runs = Runs(bell)
    worker = DeliveryWorker(job="deliver:crm", deliver=lambda: delivered.append(200), due=lambda limit: limit,
                            batch=200, every=HOUR, budget=HOUR, run_job=runs, bell=bell)
    bell.ring()
    _run_until_closed(worker.loop)
    assert runs.names == ["deliver:crm"] and delivered == [200]


def test_a_ring_with_nothing_due_delivers_nothing() -> None:
    bell = Doorbell()
    runs = Runs(bell)
    counted: list[int] = []

    def due(limit: int) -> int:
        counted.append(limit)
        bell.close()  # after this one count, the loop ends
        return 0

    worker = DeliveryWorker(job="deliver:crm", deliver=lambda: None, due=due, batch=100, every=HOUR, budget=HOUR,
                            run_job=runs, bell=bell)
    bell.ring()
    _run_until_closed(worker.loop)
    assert counted == [100] and runs.names == []


def test_a_partial_batch_waits_for_more_and_goes_once_full() -> None:
    bell = Doorbell()
    runs = Runs(bell)
    events: list[str] = []

    def due(limit: int) -> int:
        count = 100 if events else 40
        events.append(f"count:{count}")
        if count < limit:
            threading.Thread(target=bell.ring).start()  # routing enqueues the rest, and rings again
        return count

    worker = DeliveryWorker(job="deliver:crm", deliver=lambda: events.append("deliver"), due=due, batch=100,
                            every=HOUR, budget=HOUR, run_job=runs, bell=bell)
    bell.ring()
    _run_until_closed(worker.loop)
    assert events == ["count:40", "count:100", "deliver"]


def test_a_spent_budget_delivers_a_partial_batch() -> None:
    bell = Doorbell()
    runs = Runs(bell)
    worker = DeliveryWorker(job="deliver:crm", deliver=lambda: None, due=lambda limit: 1, batch=100, every=HOUR,
                            budget=0.0, run_job=runs, bell=bell)
    bell.ring()
    _run_until_closed(worker.loop)
    assert runs.names == ["deliver:crm"]


def test_routing_rings_the_delivery_workers_only_when_it_enqueued() -> None:
    for enqueued in (True, False):
        bell, crm_bells = Doorbell(), [Doorbell(), Doorbell()]
        runs = Runs(bell)
        worker = RoutingWorker(route=lambda e=enqueued: e, deliveries=crm_bells, every=HOUR, run_job=runs, bell=bell)
        bell.ring()
        _run_until_closed(worker.loop)
        assert runs.names == ["route"]
        assert [b.wait(0) is not None for b in crm_bells] == [enqueued, enqueued]


def test_closing_a_bell_ends_a_worker_waiting_for_its_interval() -> None:
    bell = Doorbell()
    runs = Runs(bell)
    worker = DeliveryWorker(job="deliver:crm", deliver=lambda: None, due=lambda limit: 0, batch=100, every=HOUR,
                            budget=HOUR, run_job=runs, bell=bell)
    thread = threading.Thread(target=worker.loop, daemon=True)
    thread.start()
    bell.close()
    thread.join(timeout=30)
    assert not thread.is_alive() and runs.names == []
