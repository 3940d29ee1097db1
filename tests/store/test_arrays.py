"""Arrays bound as parameters reach PostgreSQL element for element, whatever the elements hold
(`crmhub.store.arrays` writes them its own way on the store's connections)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.exc import DataError

from crmhub.store import StateStore, open_store

AWKWARD_TEXTS = ["", "NULL", "null", " lead", "trail ", "in side", "a,b", "{x}", 'q"uote', "back\\slash", "\\",
                 '"', "tab\there", "new\nline", "zoë", "\u2028", "a\u3000b", "\u1680", "日本語", "plain",
                 json.dumps({"text": 'say "hi"\\', "n": [1, None]}), json.dumps(None)]

ARRAYS: list[tuple[str, list[Any]]] = [
    ("text[]", AWKWARD_TEXTS),
    ("text[]", ["one"]),
    ("text[]", []),
    ("text[]", [None, None]),
    ("text[]", ["x", None, "NULL", None]),
    ("varchar[]", ["+14155550100", "zoë@example.com"]),
    ("bigint[]", [0, -1, 2**40, -(2**62)]),
    ("numeric[]", [2**70, 5]),
    ("int[]", [1, None, 3]),
    ("boolean[]", [True, False, True]),
    ("timestamptz[]", [datetime(2026, 12, 6, 18, 0, tzinfo=UTC), datetime(2026, 1, 1, 9, 30, 15, 123456,
                                                                           tzinfo=UTC) + timedelta(0)]),
    ("date[]", [date(2026, 2, 28), date(1999, 12, 31)]),
    ("float8[]", [1.5, -0.25, 1e300]),
    ("int[][]", [[1, 2], [3, 4]]),
]


@pytest.fixture
def pg(postgres_url: str) -> Iterator[StateStore]:
    store = open_store(postgres_url)
    yield store
    store.close()


@pytest.mark.parametrize(("sql_type", "values"), ARRAYS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(ARRAYS)])
def test_an_array_parameter_arrives_as_bound(pg: StateStore, sql_type: str, values: list[Any]) -> None:
    with pg.engine.connect() as connection:
        assert connection.exec_driver_sql(f"SELECT %(p)s::{sql_type}", {"p": values}).scalar_one() == values


def test_a_text_with_a_nul_is_refused_as_psycopg_refuses_it(pg: StateStore) -> None:
    with pg.engine.connect() as connection, pytest.raises(DataError, match="NUL"):
        connection.exec_driver_sql("SELECT %(p)s::text[]", {"p": ["fine", "bad\0"]})
