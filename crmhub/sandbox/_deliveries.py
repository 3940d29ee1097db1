"""A bounded queue of webhook deliveries and the one background thread that makes them.

Shared by the X, Meta and Twilio emulators, which differ only in payloads,
signatures and how an attempt is made and logged (`_deliver`). The
generation moves on at each `discard_pending()` (the emulator's reset), so
a delivery still in flight from before a reset is neither retried nor
logged into the fresh state; `wait_idle()` still waits for that one attempt
to end, so no POST from before a reset reaches a receiver after it returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import requests

QUEUE_SIZE = 1000


class Delivery(Protocol):
    @property
    def generation(self) -> int: ...


D = TypeVar("D", bound=Delivery)


def loopback_session() -> requests.Session:
    """A session for calls to the receivers on loopback: a proxy from the environment must not swallow them."""
    session = requests.Session()
    session.trust_env = False
    return session


class QueuedDeliveries(Generic[D]):
    """Queue, pending count and delivery thread; subclasses implement `_deliver`."""

    thread_name = "sandbox-webhooks"

    def __init__(self, capacity: int = QUEUE_SIZE) -> None:
        self._queue: queue.Queue[D] = queue.Queue(maxsize=capacity)
        self._pending = 0  # queued plus the one being delivered
        self._generation = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._session = loopback_session()  # used by the delivery thread only

    @property
    def generation(self) -> int:
        """The current reset generation; a delivery tagged with an older one belongs to no live state."""
        return self._generation

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued event was delivered or given up (True), or `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def discard_pending(self) -> None:
        """Forget queued events (emulator reset); one still in flight is not logged."""
        with self._idle:
            self._generation += 1
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                self._pending -= 1
            self._idle.notify_all()

    def _enqueue(self, delivery: D, dropped: Callable[[], None]) -> bool:
        """Queue `delivery` without blocking; False after `dropped()` when the queue is full."""
        with self._idle:
            try:
                self._queue.put_nowait(delivery)
            except queue.Full:
                full = True
            else:
                full = False
                self._pending += 1
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
                    self._thread.start()
        if full:
            dropped()  # outside the condition: it may take the emulator's lock
        return not full

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                self._deliver(delivery)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, delivery: D) -> None:
        raise NotImplementedError
