"""`among(column, values)`: a batch's `column IN (...)`, as one bound parameter whatever the batch size.

An IN list of a batch's keys is one bound parameter per key: a new statement
text for each batch size, which SQLAlchemy expands and psycopg re-parses on
every execution (it caches statements of up to 50 parameters only), and the
server plans afresh. On PostgreSQL the same test is `column = ANY(:array)`:
one parameter, one statement text whatever the batch, which psycopg caches
and prepares, and which the planner turns into the same index condition
(PostgreSQL reads `IN (a, b)` as `= ANY('{a,b}')` itself). On SQLite it is
`column IN (SELECT value FROM json_each(:json))`: one statement text the
driver's statement cache keeps, no list for SQLAlchemy to expand on each
execution, and the same index lookups per value (issue 13: the conversion
was a tenth of a warm cycle's CPU on PostgreSQL, the expansion a twentieth
on SQLite). Other dialects get the plain expanded IN list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, JSON, Boolean, Executable, Text, any_, bindparam, cast, func
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["among", "per_row", "PerRow", "unnest"]


class Among(ColumnElement[bool]):
    """`column` is one of `values`; compiled per dialect (see the module docstring)."""

    __visit_name__ = "crmhub_among"
    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no `= 1` appended where booleans are integers (SQLite)
    # Both forms' parameters are part of the cache key, so a cached compilation binds this call's values.
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("listed", InternalTraversal.dp_clauseelement),
                           ("array", InternalTraversal.dp_clauseelement),
                           ("json", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any], values: Iterable[Any] | BindParameter[Any]) -> None:
        self.column = column
        if isinstance(values, BindParameter):  # a statement built once: the list comes at execution, by name
            key = values.key
            self.listed: BindParameter[Any] = bindparam(key, type_=column.type, expanding=True)
            self.array: BindParameter[Any] = bindparam(key, type_=ARRAY(column.type))
            self.json: BindParameter[Any] = bindparam(key, type_=JSON())
            return
        values = list(values)
        self.listed = bindparam(None, values, type_=column.type, expanding=True)
        self.array = bindparam(None, values, type_=ARRAY(column.type))
        self.json = bindparam(None, values, type_=JSON())


def among(column: ColumnElement[Any], values: Iterable[Any] | BindParameter[Any]) -> ColumnElement[bool]:
    """`column IN (values)`: `= ANY(:array)` on PostgreSQL, `IN (SELECT value FROM json_each(:json))` on SQLite.

    `values` may be `bindparam("name")`: the list is then given at execution as `name`.
    """
    return Among(column, values)


@compiles(Among)
def _listed(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(element.listed), **kw)


@compiles(Among, "postgresql")
def _array(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column == any_(element.array), **kw)


@compiles(Among, "sqlite")
def _json_each(element: Among, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(element.json, **kw)}))"


@dataclass(frozen=True)
class PerRow:
    """The per-row values of a bulk UPDATE, as `per_row` gives them: `columns[name]` goes into the statement.

    `params` is the executemany list; None when the values are inside the statement already (PostgreSQL).
    """

    columns: Mapping[str, ColumnElement[Any]]
    params: list[dict[str, Any]] | None

    def execute(self, session: Session, statement: Executable) -> None:
        """Run `statement` (built with `columns`) over every row: once on PostgreSQL, as an executemany elsewhere."""
        if self.params is None:
            session.connection().execute(statement)
        else:
            session.connection().execute(statement, self.params)


def per_row(session: Session, rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]], *,
            key: str) -> PerRow:
    """Per-row values of `rows` (each holding every name in `types`) for one bulk UPDATE.

    On PostgreSQL they are the columns of `unnest(:array, ...) AS v(name, ...)`, one array parameter per name:
    psycopg runs an executemany as one pipelined statement per row, whose Python costs about six times an
    UPDATE ... FROM over arrays (issue 13: 900 outcome rows, 10.7 ms against 1.7 ms). Elsewhere, bound
    parameters of an executemany, as before. A row must match at most one row of the table, since an
    UPDATE ... FROM applies one source row to each: rows whose `key` repeats go as an executemany, applied
    in turn, as everywhere else.
    """
    names = list(types)
    if session.get_bind().dialect.name == "postgresql" and len({row[key] for row in rows}) == len(rows):
        return PerRow(unnest(rows, types), None)
    return PerRow({name: bindparam(name, type_=types[name]) for name in names},
                  [{name: row[name] for name in names} for row in rows])


def unnest(rows: Sequence[Mapping[str, Any]], types: Mapping[str, TypeEngine[Any]]) -> dict[str, ColumnElement[Any]]:
    """The columns, by name, of `unnest(:array, ...) AS v(name, ...)` over `rows` (PostgreSQL): one array
    parameter per name in `types`.

    A JSON value travels as its text and is cast back (psycopg has no array of JSON wrappers); None is JSON's
    null unless the type stores it as SQL NULL, as SQLAlchemy's JSON type does for a single row.
    """
    names = list(types)
    arrays = [bindparam(None, [_json_text(row[name], types[name]) for row in rows], type_=ARRAY(Text()))
              if isinstance(types[name], JSON) else
              bindparam(None, [row[name] for row in rows], type_=ARRAY(types[name])) for name in names]
    source = func.unnest(*arrays).table_valued(*names).render_derived()
    return {name: cast(source.c[name], types[name]) if isinstance(types[name], JSON) else source.c[name]
            for name in names}


def _json_text(value: Any, type_: JSON) -> str | None:
    if value is None and type_.none_as_null:
        return None
    return json.dumps(value)
