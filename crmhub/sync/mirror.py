"""Keep the local contact mirror of each CRM current, by cursor.

The first run pages through every contact; later runs ask only for records
changed since the saved cursor. Each page and its cursor commit together.
Daemons sharing a PostgreSQL store write their pages one at a time
(`crmhub.store.locks`): two started together read the same new contacts,
and writing them at once failed the slower one on the mirror's unique keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.orm import Session

from crmhub.model import MirrorRecord
from crmhub.store import StateStore
from crmhub.store.graph import upsert_mirror
from crmhub.store.ledger import load_cursor, save_cursor, touch_cursors
from crmhub.store.locks import one_at_a_time
from crmhub.store.text import storable_record

log = structlog.get_logger("crmhub.mirror")


class MirrorSource(Protocol):
    """A CRM connector that can list contacts changed since a cursor."""

    name: str

    def mirror_pages(self, object_name: str, since: str | None) -> Iterator[tuple[list[MirrorRecord], str]]: ...


def refresh_mirror(store: StateStore, source: MirrorSource, object_names: Sequence[str], *, now: datetime,
                   absorb: Callable[[Session, list[MirrorRecord]], None] | None = None) -> int:
    """Bring the mirror of `source` up to date; returns how many records changed.

    `absorb` sees each page in the page's transaction: the identity graph
    joins the persons a record shows to be one (`IdentityGraph.absorb_records`).

    When an object's pages have all been read once, a `loaded` marker is
    saved: until then matching would miss existing contacts and create
    duplicates, so routing and delivery wait for it (`mirror_loaded`).
    """
    changed = 0
    for object_name in object_names:
        stream = f"mirror.{object_name}"
        with store.transaction() as session:
            cursor = load_cursor(session, source.name, stream)
        for page, next_cursor in source.mirror_pages(object_name, cursor):
            records = [storable_record(record) for record in page]  # one odd character must not fail every refresh
            with store.transaction() as session:
                one_at_a_time(session, f"mirror:{source.name}")
                changed += upsert_mirror(session, records)
                if absorb is not None:
                    absorb(session, records)
                save_cursor(session, source.name, stream, "", next_cursor, now=now)
        with store.transaction() as session:
            one_at_a_time(session, f"mirror:{source.name}")
            if load_cursor(session, source.name, loaded_marker(stream)) is None:
                save_cursor(session, source.name, loaded_marker(stream), "", now.isoformat(), now=now)
            touch_cursors(session, source.name, [stream], now=now)
    log.info("mirror refreshed", crm=source.name, changed=changed)
    return changed


def mirror_loaded(store: StateStore, crm: str, object_names: Sequence[str]) -> bool:
    """Whether every object of `crm` has been mirrored in full at least once."""
    with store.transaction() as session:
        return all(load_cursor(session, crm, loaded_marker(f"mirror.{name}")) is not None for name in object_names)


def loaded_marker(stream: str) -> str:
    """The cursor row marking that `stream` was read in full once (a one-time mark, never read again)."""
    return f"{stream}{_LOADED}"


def is_marker(stream: str) -> bool:
    """Whether a cursor row is a `loaded_marker`, not a stream being read."""
    return stream.endswith(_LOADED)


_LOADED = ".loaded"
