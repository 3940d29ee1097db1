"""Renew a claimed batch's lease while it is written, so no other daemon claims rows still in flight.

A claim reserves rows until its lease ends (`delivery.lease`); a batch that
outlives it (a Zendesk batch waiting on a users job, backoff after a 429, a
slow CRM) could be claimed by another daemon on the same store while the
first still writes it, and written twice when the first write had not
landed yet when the second looked. `LeaseRenewal` wraps the CRM call: every
lease/3 a thread of its own pushes the rows' lease to now + lease in one
short transaction of its own (never the batch's session), one UPDATE per
renewal, whatever the batch. A batch shorter than lease/3 renews nothing.

Fenced: a row is extended only while it still carries the lease end this
claim last set (`outbox.renew`), so a row whose lease did lapse (the store
was out of reach for a whole lease) and that another daemon claimed since
is never taken back; such rows are logged as lost, and the batch's outcomes
are still recorded as before (writes are keyed). A daemon killed mid-batch
stops renewing with it: its rows come due when the lease it last set ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType

import structlog
from sqlalchemy.orm import Session

from crmhub.store import StateStore

log = structlog.get_logger("crmhub.lease")
MIN_INTERVAL = 0.05  # seconds between renewals however short the lease (never a busy loop)

Renew = Callable[[Session, Mapping[datetime, Collection[int]], datetime], set[int]]
"""(session, lease end -> rows still held at it, new lease end) -> the rows extended (`outbox.renew`)."""


class LeaseRenewal:
    """A context manager that keeps a batch's claimed rows leased while its block runs.

    Args:
        held: each claimed row's lease end (`Claim.next_attempt_at`), by row id.
        keys: each row's idempotency key, for the log when a lease is lost.
        what: what the rows are, for the log ("writes", "replies").
    """

    def __init__(self, store: StateStore, renew: Renew, held: Mapping[int, datetime], *, lease: timedelta,
                 clock: Callable[[], datetime], crm: str, keys: Mapping[int, str] | None = None,
                 what: str = "writes") -> None:
        self.store, self._renew, self.lease, self.clock, self.crm, self.what = store, renew, lease, clock, crm, what
        self._held = dict(held)
        self._keys = dict(keys or {})
        self.renewals = 0  # renewals made (each one UPDATE)
        self.lost: list[int] = []  # rows found no longer held by this claim
        self._stop = threading.Event()
        self._lock = threading.Lock()  # a renewal and `settling` take turns
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseRenewal:
        if self._held:
            self._thread = threading.Thread(target=self._run, name=f"lease:{self.crm}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop renewing before the batch's outcomes are recorded (or its rows given back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # at most one short transaction away

    @contextmanager
    def settling(self, ids: Collection[int]) -> Iterator[None]:
        """Rows whose outcome the block records: no longer renewed, and no renewal runs meanwhile.

        With no rows, the block just takes its turn with the renewals (a statement updating the same rows).
        """
        with self._lock:
            for row in ids:
                self._held.pop(row, None)
            yield

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, MIN_INTERVAL)
        while not self._stop.wait(interval):
            try:
                self.renew_now()
            except Exception as exc:  # noqa: BLE001  # the next renewal tries again; the lease may lapse as before
                log.warning("lease renewal failed", crm=self.crm, error=type(exc).__name__)

    def renew_now(self) -> None:
        """One renewal: the rows still held get now + lease; those another claim took are dropped and logged."""
        with self._lock:
            if not self._held:
                return
            by_end: dict[datetime, list[int]] = {}
            for row, end in self._held.items():
                by_end.setdefault(end, []).append(row)
            until = self.clock() + self.lease
            with self.store.transaction() as session:
                extended = self._renew(session, by_end, until)
            self.renewals += 1
            lost = [row for row in self._held if row not in extended]
            self._held = {row: until for row in extended if row in self._held}
        log.debug("lease renewed", crm=self.crm, what=self.what, rows=len(extended), until=until.isoformat())
        if lost:
            self.lost += lost
            log.warning("lease lost while writing: another daemon may take these rows too; their outcomes are "
                        "still recorded here (writes are keyed by crmhub's idempotency key)", crm=self.crm,
                        what=self.what, rows=len(lost), items=[self._keys.get(row, str(row)) for row in lost[:10]])
