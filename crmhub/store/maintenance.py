"""Planner statistics: the database must know how big the hot tables are, or it picks the wrong index.

Without statistics SQLite guesses every table the same size and every index
as selective as any other, and took a status slice of the whole outbox for
a person's rows (issue 13). SQLite gathers statistics only when told:

* at start, after migrations, a store with rows but no statistics for them
  (`sqlite_stat1` absent, or silent on a table that holds rows) gets a full
  `ANALYZE`; any other start gets `PRAGMA optimize`, which re-analyses only
  what changed a lot;
* every `OPTIMIZE_EVERY` (from the mirror job) `PRAGMA optimize` again.

Both run under `PRAGMA analysis_limit`, so an ANALYZE samples each index
instead of reading it whole: milliseconds at any size.

PostgreSQL's autovacuum keeps statistics current on its own; crmhub only
runs `ANALYZE` at start on the tables that have never been analysed (those a
migration just created, a restored dump) or that changed past autovacuum's
own threshold without it having run yet, so the first cycles are planned on
figures, not defaults.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

ANALYSIS_LIMIT = 1000  # rows sampled per index by a SQLite ANALYZE (SQLite's advice: 100 to 1000)
OPTIMIZE_EVERY = timedelta(hours=1)
# autovacuum's defaults (autovacuum_analyze_threshold, autovacuum_analyze_scale_factor)
PG_ANALYZE_THRESHOLD, PG_ANALYZE_SCALE = 50, 0.1


def at_start(engine: Engine) -> list[str]:
    """Give the planner statistics before the first cycle (after migrations); returns the tables analysed.

    Silent: every CLI command opens the store, and its output (`--json`) must
    stay its own, before logging is even configured.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            return _sqlite_at_start(connection)
        if connection.dialect.name == "postgresql":
            return _postgres_at_start(connection)
    return []


def optimize(engine: Engine) -> None:
    """Re-analyse what changed a lot since the last statistics (SQLite; PostgreSQL's autovacuum does it)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as connection:
        connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        connection.exec_driver_sql("PRAGMA optimize")


@dataclass
class Statistics:
    """When `optimize` last ran in this process, so the mirror job runs it at most every `every`."""

    every: timedelta = OPTIMIZE_EVERY
    last: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def due(self, now: datetime) -> bool:
        """True (and counted as run) when `every` has passed since the last run."""
        with self._lock:
            if self.last is not None and now - self.last < self.every:
                return False
            self.last = now
            return True


def _sqlite_at_start(connection: Connection) -> list[str]:
    connection.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
    missing = _sqlite_tables_without_statistics(connection)
    if missing:
        connection.exec_driver_sql("ANALYZE")
    else:
        connection.exec_driver_sql("PRAGMA optimize")
    return sorted(missing)


def _sqlite_tables_without_statistics(connection: Connection) -> set[str]:
    """Tables with an index and at least one row that `sqlite_stat1` says nothing about."""
    indexed = set(connection.exec_driver_sql(
        "SELECT DISTINCT tbl_name FROM sqlite_master WHERE type = 'index' AND tbl_name NOT LIKE 'sqlite_%'"
    ).scalars())
    has_stats = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'").first() is not None
    known = set(connection.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1").scalars()) if has_stats else set()
    # Table names from sqlite_master itself, never from outside; one indexed probe of one row each.
    return {name for name in indexed - known
            if connection.exec_driver_sql(f'SELECT 1 FROM "{name}" LIMIT 1').first() is not None}


def _postgres_at_start(connection: Connection) -> list[str]:
    stale = list(connection.execute(text(
        "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
        "WHERE s.schemaname = current_schema() AND ("
        " (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)"
        " OR s.n_mod_since_analyze > :threshold + :scale * greatest(c.reltuples, 0))"),
        {"threshold": PG_ANALYZE_THRESHOLD, "scale": PG_ANALYZE_SCALE}).scalars())
    if stale:  # names from the catalogue, quoted; a table another daemon (or autovacuum) analyses is skipped
        connection.exec_driver_sql("ANALYZE (SKIP_LOCKED) " + ", ".join(f'"{name}"' for name in sorted(stale)))
    return sorted(stale)
