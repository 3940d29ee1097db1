"""Test-only: open a new state store and die, as if SIGKILLed, right after its N-th CREATE TABLE.

    python -m tests.store.die_mid_migration URL N

Counts the migrations' CREATE TABLE statements (not Alembic's own
alembic_version) and ends the process with `os._exit` after the N-th: no
rollback, no commit, no cleanup, as a kill leaves it. Exits with DIED when
it got there, so a test knows the kill landed; with 0 if the migrations
ended first. Installed from here, not in crmhub's code.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sqlalchemy import Engine, event

from crmhub.store import open_store

DIED = 86


def main(url: str, nth: int) -> None:
    created = 0

    def after_cursor_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal created
        if statement.lstrip().upper().startswith("CREATE TABLE") and "alembic_version" not in statement:
            created += 1
            if created == nth:
                os._exit(DIED)

    event.listen(Engine, "after_cursor_execute", after_cursor_execute)
    open_store(url).close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
