"""The daemon's routing worker and one delivery worker per CRM, each on its own thread, woken by doorbells.

Items reach a CRM within about a latency budget instead of a job interval:

* the webhook receiver and the polls ring the routing bell once they have
  committed new ledger rows; the routing worker gathers for a quarter of
  the latency budget (at most 0.25 s) from the first ring, since a run
  costs about the same for one item as for fifty and at a few messages a
  second it would otherwise run once per message; then it routes
  everything pending (`process_pending`, one daemon at a time) and rings
  the bell of every CRM when it enqueued anything;
* a CRM's delivery worker, once rung, counts its due rows: a full batch (the
  CRM's maximum) goes at once; otherwise it waits at least the latency
  budget since the first ring, and then on while the batch is too small to
  be worth its calls (`Filling`): while `due * target` is below what a
  batch has been costing, until `max_wait` since the first ring. Each
  worker also runs on its interval (`delivery.every`), for retries and
  backoff and rows another daemon routed. A slow CRM holds up only its own
  worker.

The bells are in-process: several daemons on one store see each other's rows
on their intervals. Every run goes through `run_job` (the scheduler's
`RunningJobs`), so job records, /healthz, metrics and the shutdown's wait
and naming of cut jobs treat a worker's run as any job's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

log = structlog.get_logger("crmhub.workers")

RunJob = Callable[[str, Callable[[], Any]], None]
"""Runs one job by name (counted while it runs, its outcome recorded), e.g. `RunningJobs.wrap(name, fn)()`."""


class Doorbell:
    """Wakes one worker; remembers when it was first rung since the worker last took the work (`answer`).

    Args:
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._changed = threading.Condition()
        self._first_ring: float | None = None
        self._rung = False
        self._urgent = False
        self._closed = False

    def ring(self, *, urgent: bool = False) -> None:
        """New work is there (committed before the ring); `urgent`: run without waiting for a fuller batch."""
        with self._changed:
            if self._first_ring is None:
                self._first_ring = self.clock()
            self._rung = True
            self._urgent = self._urgent or urgent
            self._changed.notify_all()

    @property
    def urgent(self) -> bool:
        """An urgent ring came since the worker last took the work (`answer`)."""
        return self._urgent

    def close(self) -> None:
        """The daemon is stopping: every wait returns at once, for good."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait(self, timeout: float) -> float | None:
        """Wait for a ring, at most `timeout` seconds.

        Returns:
            When the bell was first rung since the last `answer` (a ring came), or None
            (the timeout passed, or the bell is closed).
        """
        deadline = self.clock() + timeout
        with self._changed:
            while not self._rung and not self._closed:
                left = deadline - self.clock()
                if left <= 0:
                    break
                self._changed.wait(left)
            rung, self._rung = self._rung, False
            return self._first_ring if rung and not self._closed else None

    def settle(self) -> None:
        """The ring was for nothing (no work due): forget it, unless another ring came since the last wait."""
        with self._changed:
            if not self._rung:
                self._first_ring = None
                self._urgent = False

    def answer(self) -> None:
        """The worker takes all the work rung for so far (it is about to run): the next ring starts a new wait."""
        with self._changed:
            self._first_ring = None
            self._rung = False
            self._urgent = False


class BatchCost:
    """A moving average of the API calls one batch has cost, measured over a worker's runs (seeded at 1)."""

    WEIGHT = 0.25  # of the newest run: a few runs follow a change, one odd run does not swing it

    def __init__(self, seed: float = 1.0) -> None:
        self.calls = seed

    def add(self, calls: int, batches: int) -> None:
        """One run spent `calls` API calls on `batches` batches (a run with none teaches nothing)."""
        if batches > 0:
            self.calls += self.WEIGHT * (calls / batches - self.calls)


@dataclass
class Filling:
    """When a partial batch is worth its calls: the `delivery.calls_per_interaction` rule.

    After the latency budget, a worker keeps waiting while `due * target` is
    below what a batch costs (`cost`, measured from the connector's call
    count) and the first ring is less than `max_wait` old; the target halves
    while the CRM's daily allowance is low, so a customer's shared allowance
    lasts. The default (`max_wait` 0) never waits past the budget.

    Args:
        target: API calls per interaction the worker aims at (e.g. 0.025).
        max_wait: seconds from the first ring after which a partial batch goes anyway.
        calls: API calls the CRM's connector has made on this thread so far (a counter).
        allowance_low: whether the CRM's daily allowance is running low now.
    """

    target: float = 1.0
    max_wait: float = 0.0
    calls: Callable[[], int] = lambda: 0
    allowance_low: Callable[[], bool] = lambda: False
    cost: BatchCost = field(default_factory=BatchCost)

    def economical(self, due: int) -> bool:
        """Whether `due` rows make a batch worth what a batch costs."""
        target = self.target / 2 if self.allowance_low() else self.target
        return due * target >= self.cost.calls


BATCH = "batch"  # a delivery worker's gathering ended with a batch worth its calls
SETTLE = "settle"  # ... with an urgent ring alone: only the rows whose CRM jobs came due go


@dataclass
class DeliveryWorker:
    """One CRM's delivery worker: batches within a latency budget, stretched while too small; a run per interval.

    Args:
        job: the job's name (`deliver:<crm>`).
        deliver: one delivery run for the CRM (drains what is due, batch after batch); returns the
            rows it handled (None: not known, the run teaches `filling.cost` nothing).
        due: how many rows are due now, counted up to its argument.
        batch: rows in a full batch (the CRM's maximum, or `delivery.batch_size` when smaller).
        every: seconds between runs when nobody rings.
        budget: seconds a rung worker waits at least for a fuller batch, from the first ring.
        filling: how much longer a small batch waits (`Filling`).
        settle: a run for an urgent ring alone (rows whose CRM jobs came due, `Doorbell.ring(urgent=True)`):
            it takes only those rows, so new rows still wait for their batch (None: `deliver`).
    """

    job: str
    deliver: Callable[[], int | None]
    due: Callable[[int], int]
    batch: int
    every: float
    budget: float
    run_job: RunJob
    bell: Doorbell = field(default_factory=Doorbell)
    filling: Filling = field(default_factory=Filling)
    settle: Callable[[], int | None] | None = None
    _unsettled_calls: int = field(default=0, init=False, repr=False)
    _settled_rows: int = field(default=0, init=False, repr=False)

    def loop(self) -> None:
        """Until the bell is closed: wait for a ring or the interval, gather, deliver."""
        while not self.bell.closed:
            first_ring = self.bell.wait(self.every)
            if self.bell.closed:
                return
            gathered = self._gathered(first_ring) if first_ring is not None else BATCH
            if gathered is None:
                continue  # rung for nothing due (another daemon or run took it)
            settling = gathered is SETTLE and self.settle is not None
            self.bell.answer()
            self.run_job(self.job, partial(self._run, self.settle, settling=True) if settling else
                         partial(self._run, self.deliver))
            if settling:
                self.bell.ring()  # new rows it left: their wait for a batch goes on

    def _run(self, deliver: Callable[[], int | None], *, settling: bool = False) -> None:
        """One delivery run, its calls per batch fed to the moving average.

        A run that settles no row (it only submitted CRM jobs, say) carries its
        calls to the next run that does, and a settling run (an urgent ring:
        jobs read, a new customer's next stage submitted) carries its calls and
        rows to the next batch run: a batch costs what all its runs spent, not
        a batch run's calls and then a settling run's as if each were a batch.
        """
        before = self.filling.calls()
        handled = deliver() or 0
        calls = self.filling.calls() - before
        self._unsettled_calls += calls
        self._settled_rows += handled
        if self._settled_rows and not settling:
            spent, rows = self._unsettled_calls, self._settled_rows
            self._unsettled_calls, self._settled_rows = 0, 0
            self.filling.cost.add(spent, math.ceil(rows / self.batch))
        if handled:
            log.info("delivery run", job=self.job, rows=handled, settling=settling, calls=calls,
                     calls_per_batch=round(self.filling.cost.calls, 2))

    def _gathered(self, first_ring: float) -> str | None:
        """Wait until a full batch is due, or the budget from `first_ring` is spent and the batch is worth
        its calls (or `max_wait` is spent): `BATCH`. An urgent ring before that: `SETTLE` (the rows whose
        CRM jobs came due go alone). None when nothing is due or the bell closed (the rows wait in the
        outbox for the next start's catch-up)."""
        soonest = first_ring + self.budget
        latest = first_ring + max(self.budget, self.filling.max_wait)
        while True:
            due = self.due(self.batch)  # new rows: rows waiting on CRM jobs are rung for (urgent), not counted
            if due == 0 and not self.bell.urgent:
                self.bell.settle()
                return None
            now = self.bell.clock()
            if due > 0 and (due >= self.batch or now >= latest or (now >= soonest and self.filling.economical(due))):
                return BATCH
            if self.bell.urgent:
                return SETTLE
            self.bell.wait((soonest if now < soonest else latest) - now)  # a ring means more rows: count again
            if self.bell.closed:
                return None


@dataclass
class RoutingWorker:
    """Routes new ledger rows when rung (or every `every` seconds), then rings the delivery workers.

    Args:
        route: one routing run; returns whether it enqueued anything.
        deliveries: the delivery workers' bells, rung after a run that enqueued writes.
        gather: seconds from the first ring to wait for more rows before a run (rings meanwhile
            join it); under load a run lasts longer than this and the next one starts at once.
    """

    route: Callable[[], bool]
    deliveries: list[Doorbell]
    every: float
    run_job: RunJob
    bell: Doorbell = field(default_factory=Doorbell)
    job: str = "route"
    gather: float = 0.0

    def loop(self) -> None:
        while not self.bell.closed:
            first_ring = self.bell.wait(self.every)
            while first_ring is not None and not self.bell.closed:
                left = first_ring + self.gather - self.bell.clock()
                if left <= 0:
                    break
                self.bell.wait(left)
            if self.bell.closed:
                return
            self.bell.answer()
            self.run_job(self.job, self._route_then_ring)

    def _route_then_ring(self) -> None:
        if self.route():
            for bell in self.deliveries:
                bell.ring()


def start_threads(workers: list[DeliveryWorker | RoutingWorker]) -> list[threading.Thread]:
    """One daemon thread per worker (a worker cut at the end of the grace period must not hold the exit)."""
    threads = [threading.Thread(target=worker.loop, name=f"crmhub-{worker.job}", daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    return threads
