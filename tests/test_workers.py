"""The workers' decisions, on their own threads with fake work: when a woken worker writes and when it does not.

Each worker here gets an hour for its interval and its budget, so a worker
that ran at all ran because of the decision under test; every join has a
generous deadline and a worker still alive after it fails the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from crmhub.workers import BatchCost, DeliveryWorker, Doorbell, Filling, RoutingWorker

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


# ---- stretching a small batch until it is worth its calls (`Filling`) ------------------------------------------

class Clock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Trickle:
    """Fake outbox and CRM: each count of the due rows is one second later, with `per_second` more rows
    routed (and the bell rung, as routing does); a run delivers every row, spending `calls_per_batch`."""

    def __init__(self, bell: Doorbell, clock: Clock, per_second: int, calls_per_batch: int = 1,
                 batch: int = 200) -> None:
        self.bell, self.clock, self.per_second = bell, clock, per_second
        self.calls_per_batch, self.batch = calls_per_batch, batch
        self.rows = per_second
        self.calls = 0
        self.runs: list[tuple[float, int]] = []  # (when, rows delivered)

    def due(self, limit: int) -> int:
        self.clock.now += 1
        self.rows += self.per_second
        self.bell.ring()
        return min(self.rows, limit)

    def deliver(self) -> int:
        handled, self.rows = self.rows, 0
        self.runs.append((self.clock.now, handled))
        self.calls += self.calls_per_batch * -(-handled // self.batch)
        self.rows = self.per_second  # the next item arrives meanwhile: a new wait starts from its ring
        self.bell.ring()
        return handled

    def worker(self, runs: Runs, *, target: float, max_wait: float, low: bool = False) -> DeliveryWorker:
        filling = Filling(target=target, max_wait=max_wait, calls=lambda: self.calls, allowance_low=lambda: low)
        return DeliveryWorker(job="deliver:crm", deliver=self.deliver, due=self.due, batch=self.batch, every=HOUR,
                              budget=1.0, run_job=runs, bell=self.bell, filling=filling)


def _trickle(per_second: int, *, runs: int = 1, target: float = 0.025, max_wait: float = 15.0, low: bool = False,
             calls_per_batch: int = 1) -> Trickle:
    clock = Clock()
    bell = Doorbell(clock)
    work = Trickle(bell, clock, per_second, calls_per_batch)
    worker = work.worker(Runs(bell, stop_after=runs), target=target, max_wait=max_wait, low=low)
    bell.ring()
    _run_until_closed(worker.loop)
    return work


def test_a_small_batch_waits_past_the_budget_until_it_is_worth_one_call() -> None:
    work = _trickle(5)  # 5 rows a second; a batch costs 1 call (the seed); 0.025 a row: 40 rows
    assert work.runs == [(7.0, 40)]  # not at the 1 s budget with 10 rows


def test_a_busy_crm_goes_at_the_budget() -> None:
    work = _trickle(50)
    assert work.runs == [(1.0, 100)]  # worth it at once: the budget is the shortest wait


def test_a_trickle_goes_at_max_wait_in_one_batch() -> None:
    work = _trickle(1, max_wait=15.0)
    assert work.runs == [(15.0, 16)]


def test_what_a_batch_costs_is_measured_from_the_calls_the_runs_made() -> None:
    work = _trickle(5, runs=3, calls_per_batch=3)
    # First the seed (1 call): 40 rows. Each run then costs 3 calls, and the average moves a quarter of the way.
    assert [rows for _, rows in work.runs] == [40, 60, 75]


def test_a_low_allowance_halves_the_target() -> None:
    work = _trickle(5, low=True)
    assert work.runs == [(15.0, 80)]  # 0.0125 a row: 80 rows, and max_wait came first


def test_a_closed_bell_ends_a_stretched_wait_without_delivering() -> None:
    clock = Clock()
    bell = Doorbell(clock)
    work = Trickle(bell, clock, 1)
    counted = 0

    def due(limit: int) -> int:
        nonlocal counted
        counted += 1
        if counted == 3:
            bell.close()  # SIGTERM: the rows wait in the outbox for the next start's catch-up
        return work.due(limit)

    worker = work.worker(Runs(bell), target=0.025, max_wait=15.0)
    worker.due = due
    bell.ring()
    _run_until_closed(worker.loop)
    assert work.runs == [] and counted == 3


def test_the_moving_average_starts_at_one_call_and_ignores_runs_without_batches() -> None:
    cost = BatchCost()
    cost.add(5, 0)
    assert cost.calls == 1.0
    cost.add(6, 2)
    assert cost.calls == 1.5


def test_routing_gathers_rings_for_its_gather_time_into_one_run() -> None:
    clock = Clock()
    bell = Doorbell(clock)
    arrived: list[int] = []
    routed: list[int] = []
    runs = Runs(bell)
    worker = RoutingWorker(route=lambda: routed.append(len(arrived)) is None, deliveries=[], every=HOUR,
                           run_job=runs, bell=bell, gather=2.0)
    for n in range(3):  # items stored (and rung for) at t=0
        arrived.append(n)
        bell.ring()
    thread = threading.Thread(target=worker.loop, daemon=True)
    thread.start()  # it waits: the clock stands at 0, inside the gather time, whatever the rings
    arrived.append(3)
    bell.ring()
    clock.now = 2.5
    bell.ring()  # past the gather time: the next wake routes
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert runs.names == ["route"] and routed == [4]  # one run for the four items, not one each


def test_an_urgent_ring_runs_at_once_however_small_the_batch() -> None:
    """Rows waiting on CRM jobs that came due (the settle alarm) are read at once, not held for a fuller batch."""
    clock = Clock()
    bell = Doorbell(clock)
    work = Trickle(bell, clock, 1)
    worker = work.worker(Runs(bell), target=0.025, max_wait=15.0)
    bell.ring(urgent=True)
    _run_until_closed(worker.loop)
    assert [rows for _, rows in work.runs] == [2]  # one count of the due rows, then the run: no 15 s wait
    assert not bell.urgent  # taken: the next ring waits as usual


def test_calls_of_runs_that_settle_no_row_count_towards_the_next_that_does() -> None:
    """A run that only submitted jobs settles nothing; its calls are part of what the batch cost."""
    clock = Clock()
    bell = Doorbell(clock)
    calls = [0]
    handled = iter([0, 40])

    def deliver() -> int:
        calls[0] += 2  # a submit run, then a settling run: two calls each
        bell.ring()  # the jobs' alarm (or new rows) wakes the worker again
        return next(handled)

    worker = DeliveryWorker(job="deliver:crm", deliver=deliver, due=lambda limit: 40, batch=200, every=HOUR,
                            budget=0.0, run_job=Runs(bell, stop_after=2), bell=bell,
                            filling=Filling(target=1.0, max_wait=0.0, calls=lambda: calls[0]))
    bell.ring()
    _run_until_closed(worker.loop)
    assert worker.filling.cost.calls == 1.0 + BatchCost.WEIGHT * (4 - 1.0)  # 4 calls for the one batch settled


def test_an_urgent_ring_settles_waiting_rows_alone_and_new_rows_keep_filling() -> None:
    """The settle alarm's run takes only rows whose CRM jobs came due; new rows still wait for their batch."""
    clock = Clock()
    bell = Doorbell(clock)
    work = Trickle(bell, clock, 1)
    settled: list[float] = []

    def settle() -> int:
        settled.append(clock.now)
        return 3  # the rows whose jobs were read

    worker = work.worker(Runs(bell, stop_after=2), target=0.025, max_wait=15.0)
    worker.settle = settle
    bell.ring(urgent=True)
    _run_until_closed(worker.loop)
    assert len(settled) == 1 and settled[0] < 15.0  # at once, not after max_wait
    assert work.runs and work.runs[0][0] >= 15.0  # the new rows went at max_wait, as a trickle does


def test_settling_runs_count_towards_their_batch_not_as_batches_of_their_own() -> None:
    """A Zendesk batch is a submit run and then settling runs (its jobs read, the next stage submitted):
    all their calls are what the batch cost, or the stretch would take a batch for cheaper than it is."""
    calls = [0]

    def run(spent: int, settled: int) -> Callable[[], int]:
        def deliver() -> int:
            calls[0] += spent
            return settled
        return deliver

    worker = DeliveryWorker(job="deliver:crm", deliver=run(2, 0), due=lambda limit: 0, batch=100, every=HOUR,
                            budget=0.0, run_job=lambda job, fn: fn(), filling=Filling(calls=lambda: calls[0]))
    worker._run(run(2, 0))  # the batch run: users and comments jobs submitted, nothing settled
    worker._run(run(2, 30), settling=True)  # their jobs read (comments settled), the tickets job submitted
    worker._run(run(1, 40), settling=True)  # the tickets job read
    assert worker.filling.cost.calls == 1.0  # settling runs close no batch ...
    worker._run(run(2, 0))  # ... the next batch run does, with every call since: 7 for 70 rows, one batch
    assert worker.filling.cost.calls == 1.0 + BatchCost.WEIGHT * (7 - 1.0)
