"""Ingest: pages from a channel into the ledger, with the cursor, nothing lost.

The source owns what its cursor means (a time for Twilio, re-read with an
overlap window; a post id for X); this loop owns when it is saved: in the
same transaction as the run's last page, so a crash mid-run re-reads
instead of skipping, and the ledger drops the repeats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from crmhub.model import Interaction, Malformed
from crmhub.store import StateStore
from crmhub.store.ledger import ingest_page, load_cursor, touch_cursors

log = structlog.get_logger("crmhub.ingest")


class SourcePage(Protocol):
    """What a channel connector yields per page."""

    @property
    def interactions(self) -> Sequence[Interaction]: ...
    @property
    def malformed(self) -> Sequence[Malformed]: ...
    @property
    def cursor(self) -> str | None:
        """Where the next run starts if this run ended with this page (None: unchanged)."""
    @property
    def last(self) -> bool: ...
    @property
    def known(self) -> int:
        """Items the source skipped untranslated because the ledger holds them (repeats).

        A page may also carry `skipped`: items the source read and set aside on
        purpose (an email bounce or auto-reply), each with a `reason` from a
        short fixed list; they are counted by reason, never stored.
        """


@dataclass
class PollReport:
    """What one poll of one stream did."""

    source: str
    stream: str
    pages: int = 0
    seen: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0
    cursor: str | None = None
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> items set aside on purpose, never stored


def poll_stream(
    store: StateStore,
    *,
    source: str,
    stream: str,
    partition: str,
    pages: Callable[[str | None], Iterator[SourcePage]],
    now: datetime,
) -> PollReport:
    """Read every page of one stream since its saved cursor into the ledger."""
    with store.transaction() as session:
        cursor = load_cursor(session, source, stream, partition)
    report = PollReport(source, stream, cursor=cursor)
    for page in pages(cursor):
        save = (source, stream, partition, page.cursor) if page.last and page.cursor else None
        with store.transaction() as session:
            result = ingest_page(session, page.interactions, page.malformed, now=now, cursor=save)
        report.pages += 1
        report.seen += len(page.interactions) + len(page.malformed) + page.known
        report.stored += result.stored
        report.repeats += result.repeats + page.known
        report.dead_lettered += result.dead_lettered
        report.skipped.update(_set_aside(page))
        if save:
            report.cursor = save[3]
    with store.transaction() as session:
        touch_cursors(session, source, [stream], partition, now=now)
    log.info("polled", source=source, stream=stream, pages=report.pages, stored=report.stored,
             repeats=report.repeats, dead_lettered=report.dead_lettered, skipped=sum(report.skipped.values()))
    return report


def _set_aside(page: SourcePage) -> Iterable[str]:
    """The reasons of the items `page` set aside (a source without such items has no `skipped`)."""
    return (item.reason for item in getattr(page, "skipped", ()))
