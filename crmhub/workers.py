"""The daemon's routing worker and one delivery worker per CRM, each on its own thread, woken by doorbells.

Items reach a CRM within about a latency budget instead of a job interval:

* the webhook receiver and the polls ring the routing bell once they have
  committed new ledger rows; the routing worker routes everything pending
  (`process_pending`, one daemon at a time) and rings the bell of every CRM
  when it enqueued anything;
* a CRM's delivery worker, once rung, counts its due rows: a full batch (the
  CRM's maximum) goes at once; otherwise it waits, until a full batch is due
  or the budget since the first ring has passed, then delivers. Each worker
  also runs on its interval (`delivery.every`), for retries and backoff and
  rows another daemon routed. A slow CRM holds up only its own worker.

The bells are in-process: several daemons on one store see each other's rows
on their intervals. Every run goes through `run_job` (the scheduler's
`RunningJobs`), so job records, /healthz, metrics and the shutdown's wait
and naming of cut jobs treat a worker's run as any job's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        self._closed = False

    def ring(self) -> None:
        """New work is there (committed before the ring)."""
        with self._changed:
            if self._first_ring is None:
                self._first_ring = self.clock()
            self._rung = True
            self._changed.notify_all()

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

    def answer(self) -> None:
        """The worker takes all the work rung for so far (it is about to run): the next ring starts a new wait."""
        with self._changed:
            self._first_ring = None
            self._rung = False


@dataclass
class DeliveryWorker:
    """One CRM's delivery worker: batches within a latency budget, plus a run on every interval.

    Args:
        job: the job's name (`deliver:<crm>`).
        deliver: one delivery run for the CRM (drains what is due, batch after batch).
        due: how many rows are due now, counted up to its argument.
        batch: rows in a full batch (the CRM's maximum, or `delivery.batch_size` when smaller).
        every: seconds between runs when nobody rings.
        budget: seconds a rung worker may wait for a fuller batch, from the first ring.
    """

    job: str
    deliver: Callable[[], Any]
    due: Callable[[int], int]
    batch: int
    every: float
    budget: float
    run_job: RunJob
    bell: Doorbell = field(default_factory=Doorbell)

    def loop(self) -> None:
        """Until the bell is closed: wait for a ring or the interval, gather, deliver."""
        while not self.bell.closed:
            first_ring = self.bell.wait(self.every)
            if self.bell.closed:
                return
            if first_ring is not None and not self._gathered(first_ring):
                continue  # rung for nothing due (another daemon or run took it)
            self.bell.answer()
            self.run_job(self.job, self.deliver)

    def _gathered(self, first_ring: float) -> bool:
        """Wait until a full batch is due or the budget from `first_ring` is spent; False when nothing is due."""
        deadline = first_ring + self.budget
        while True:
            due = self.due(self.batch)
            if due == 0:
                self.bell.settle()
                return False
            left = deadline - self.bell.clock()
            if due >= self.batch or left <= 0:
                return True
            self.bell.wait(left)  # a ring means more rows: count again
            if self.bell.closed:
                return False


@dataclass
class RoutingWorker:
    """Routes new ledger rows when rung (or every `every` seconds), then rings the delivery workers.

    Args:
        route: one routing run; returns whether it enqueued anything.
        deliveries: the delivery workers' bells, rung after a run that enqueued writes.
    """

    route: Callable[[], bool]
    deliveries: list[Doorbell]
    every: float
    run_job: RunJob
    bell: Doorbell = field(default_factory=Doorbell)
    job: str = "route"

    def loop(self) -> None:
        while not self.bell.closed:
            self.bell.wait(self.every)
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
