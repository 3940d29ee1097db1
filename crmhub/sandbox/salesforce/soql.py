"""The SOQL subset crmhub uses: a tokenizer, a recursive-descent parser, a typed evaluator.

Grammar (keywords are case-insensitive)::

    query      := SELECT select FROM name [WHERE or] [ORDER BY order (',' order)*]
                  [LIMIT int] [OFFSET int]
    select     := COUNT '(' ')' | name (',' name)*
    or         := and (OR and)*
    and        := not (AND not)*
    not        := NOT not | '(' or ')' | condition
    condition  := name op value | name [NOT] IN '(' value (',' value)* ')' | name LIKE string
    order      := name [ASC | DESC] [NULLS (FIRST | LAST)]
    value      := 'string' | number | date | datetime | TRUE | FALSE | NULL

Names and literals are checked against the object's fields (`FieldResolver`),
so unknown objects, unknown fields and mistyped literals fail the way
Salesforce fails them (INVALID_TYPE, INVALID_FIELD,
INVALID_QUERY_FILTER_OPERATOR), and syntax errors give MALFORMED_QUERY with
Salesforce's "ERROR at Row:r:Column:c" message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cmp_to_key
from typing import Any, NoReturn

from crmhub.sandbox.salesforce.errors import INVALID_FIELD_HINT, INVALID_TYPE_HINT
from crmhub.sandbox.salesforce.ids import normalize_id
from crmhub.sandbox.salesforce.schema import ID_TYPES, Field, SObjectSchema

KEYWORDS = frozenset({"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
                      "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE"})
_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<quote>')
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
FieldResolver = Callable[[str], SObjectSchema | None]


class SoqlError(Exception):
    """A SOQL failure: Salesforce's error code, its message and where in the query."""

    def __init__(self, code: str, detail: str, pos: int) -> None:
        super().__init__(detail)
        self.code, self.detail, self.pos = code, detail, pos

    def message(self, text: str) -> str:
        """Salesforce's message: the line, a caret under the column, then the detail."""
        row = text.count("\n", 0, self.pos) + 1
        line_start = text.rfind("\n", 0, self.pos) + 1
        line = text[line_start:].split("\n", 1)[0]
        column = self.pos - line_start + 1
        return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{self.detail}"


# ---- tokens -------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str  # keyword, name, string, number, date, datetime, op, punct, eof
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> list[Token]:
    """Split a SOQL string into tokens; keywords are recognised case-insensitively."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos]}'", pos)
        kind = match.lastgroup or ""
        if kind == "quote":
            value, end = _read_string(text, pos)
            tokens.append(Token("string", text[pos:end], pos, value))
            pos = end
            continue
        word = match.group()
        if kind == "name" and word.upper() in KEYWORDS:
            tokens.append(Token("keyword", word.upper(), pos))
        elif kind != "ws":
            tokens.append(Token(kind, word, pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """A quoted literal from `start` (the opening quote) to its end; LIKE escapes are kept."""
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        ch = text[pos]
        if ch == "'":
            return "".join(out), pos + 1
        if ch == "\\" and pos + 1 < len(text):
            nxt = text[pos + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))  # \% and \_ stay escaped for LIKE
            pos += 2
            continue
        out.append(ch)
        pos += 1
    raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>", len(text))


# ---- syntax tree --------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, date, datetime, boolean, null
    value: Any
    pos: int

    @property
    def quoted(self) -> bool:
        return self.kind == "string"


@dataclass(frozen=True)
class FieldRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Condition:
    field: FieldRef
    op: str  # = != < > <= >= IN NOT IN LIKE
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND, OR
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    item: Any


@dataclass(frozen=True)
class Order:
    field: FieldRef
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class ParsedQuery:
    sobject: str
    sobject_pos: int
    fields: tuple[FieldRef, ...] | None  # None: SELECT COUNT()
    where: Any
    order: tuple[Order, ...]
    limit: int | None
    offset: int | None


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        return self.take() if self.at(kind, text) else None

    def expect(self, kind: str, text: str | None = None) -> Token:
        if not self.at(kind, text):
            self.fail()
        return self.take()

    def fail(self) -> NoReturn:
        shown = self.tok.text if self.tok.kind == "eof" else f"'{self.tok.text}'"
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: {shown}", self.tok.pos)

    def query(self) -> ParsedQuery:
        self.expect("keyword", "SELECT")
        fields = self.select_list()
        self.expect("keyword", "FROM")
        sobject = self.expect("name")
        where = self.or_expr() if self.accept("keyword", "WHERE") else None
        order: tuple[Order, ...] = ()
        if self.accept("keyword", "ORDER"):
            self.expect("keyword", "BY")
            order = (self.order_item(),)
            while self.accept("punct", ","):
                order += (self.order_item(),)
        limit = self.integer() if self.accept("keyword", "LIMIT") else None
        offset = self.integer() if self.accept("keyword", "OFFSET") else None
        self.expect("eof")
        return ParsedQuery(sobject.text, sobject.pos, fields, where, order, limit, offset)

    def select_list(self) -> tuple[FieldRef, ...] | None:
        if self.tok.kind == "name" and self.tok.text.upper() == "COUNT" and self.tokens[self.i + 1].text == "(":
            self.i += 2
            self.expect("punct", ")")
            return None
        fields = [self.field_ref()]
        while self.accept("punct", ","):
            fields.append(self.field_ref())
        return tuple(fields)

    def field_ref(self) -> FieldRef:
        token = self.expect("name")
        return FieldRef(token.text, token.pos)

    def integer(self) -> int:
        token = self.expect("number")
        if not token.text.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'", token.pos)
        return int(token.text)

    def order_item(self) -> Order:
        ref = self.field_ref()
        descending = self.accept("keyword", "DESC") is not None
        if not descending:
            self.accept("keyword", "ASC")
        nulls_last = False
        if self.accept("keyword", "NULLS"):
            nulls_last = self.accept("keyword", "LAST") is not None
            if not nulls_last:
                self.expect("keyword", "FIRST")
        return Order(ref, descending, nulls_last)

    def or_expr(self) -> Any:
        items = [self.and_expr()]
        while self.accept("keyword", "OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def and_expr(self) -> Any:
        items = [self.not_expr()]
        while self.accept("keyword", "AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

    def not_expr(self) -> Any:
        if self.accept("keyword", "NOT"):
            return Not(self.not_expr())
        if self.accept("punct", "("):
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        return self.condition()

    def condition(self) -> Condition:
        ref = self.field_ref()
        if self.accept("keyword", "LIKE"):
            pattern = self.literal()
            if pattern.kind != "string":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{pattern.value}'", pattern.pos)
            return Condition(ref, "LIKE", (pattern,))
        negated = self.accept("keyword", "NOT") is not None
        if negated or self.at("keyword", "IN"):
            self.expect("keyword", "IN")
            self.expect("punct", "(")
            values = [self.literal()]
            while self.accept("punct", ","):
                values.append(self.literal())
            self.expect("punct", ")")
            return Condition(ref, "NOT IN" if negated else "IN", tuple(values))
        op = self.expect("op").text
        return Condition(ref, "!=" if op == "<>" else op, (self.literal(),))

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return Literal("string", token.value, token.pos)
        if token.kind == "number":
            return Literal("number", float(token.text), token.pos)
        if token.kind == "date":
            return Literal("date", token.text, token.pos)
        if token.kind == "datetime":
            return Literal("datetime", datetime.fromisoformat(token.text), token.pos)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return Literal("boolean", token.text == "TRUE", token.pos)
        if token.kind == "keyword" and token.text == "NULL":
            return Literal("null", None, token.pos)
        self.i -= 1
        self.fail()


def parse(text: str) -> ParsedQuery:
    """The syntax tree of a SOQL query, or SoqlError(MALFORMED_QUERY)."""
    return _Parser(text).query()


# ---- typed evaluation ---------------------------------------------------------
_LITERAL_FOR_TYPE = {"boolean": "boolean", "int": "number", "double": "number", "date": "date", "datetime": "datetime"}
_TYPE_WORD = {"boolean": "boolean", "int": "int", "double": "double", "date": "date", "datetime": "dateTime"}


def sort_key(field: Field, value: Any) -> Any:
    """A comparable form of a stored value: text case-folded, ids in 18-character form."""
    if value is None:
        return None
    if field.type in ID_TYPES:
        return (normalize_id(value) or value).casefold()
    if field.text:
        return str(value).casefold()
    if field.type == "datetime":
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    return value


def _like_regex(pattern: str) -> re.Pattern[str]:
    """SOQL LIKE to a regex: % any run, _ one character, backslash escapes the next."""
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append({"%": ".*", "_": "."}.get(ch, re.escape(ch)))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


@dataclass
class CompiledQuery:
    """A query checked against the schema, ready to filter and sort records."""

    schema: SObjectSchema
    fields: list[str] | None  # canonical field names; None for COUNT()
    where: Any
    order: list[tuple[Field, bool, bool]]
    limit: int | None
    offset: int | None

    def run(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The matching records, sorted, after OFFSET and LIMIT."""
        rows = [r for r in records if self.where is None or self.where(r)]
        if self.order:
            rows.sort(key=cmp_to_key(self._compare))
        start = self.offset or 0
        return rows[start:None if self.limit is None else start + self.limit]

    def _compare(self, a: dict[str, Any], b: dict[str, Any]) -> int:
        for field, descending, nulls_last in self.order:
            x, y = sort_key(field, a.get(field.name)), sort_key(field, b.get(field.name))
            if x == y:
                continue
            if x is None or y is None:
                return (1 if x is None else -1) * (1 if nulls_last else -1)
            return (1 if x > y else -1) * (-1 if descending else 1)
        return 0


class _Compiler:
    """Resolves names against the schema and turns conditions into predicates."""

    def __init__(self, schema: SObjectSchema) -> None:
        self.schema = schema

    def field(self, ref: FieldRef) -> Field:
        found = self.schema.get(ref.name)
        if found is not None:
            return found
        if "." in ref.name:
            detail = (f"Didn't understand relationship '{ref.name.split('.')[0]}' in field path. "
                      f"{INVALID_FIELD_HINT.replace('custom field', 'custom relationship')}")
        else:
            detail = f"No such column '{ref.name}' on entity '{self.schema.name}'. {INVALID_FIELD_HINT}"
        raise SoqlError("INVALID_FIELD", detail, ref.pos)

    def predicate(self, node: Any) -> Callable[[dict[str, Any]], bool]:
        if isinstance(node, BoolOp):
            parts = [self.predicate(item) for item in node.items]
            if node.op == "AND":
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, Not):
            inner = self.predicate(node.item)
            return lambda r: not inner(r)
        return self.condition(node)

    def condition(self, cond: Condition) -> Callable[[dict[str, Any]], bool]:
        field = self.field(cond.field)
        values = [self.value(field, lit, cond.op) for lit in cond.values]
        name = field.name
        if cond.op == "LIKE":
            regex = _like_regex(cond.values[0].value)
            return lambda r: r.get(name) is not None and regex.fullmatch(str(r[name])) is not None
        if cond.op in ("IN", "NOT IN"):
            wanted, negate = set(values), cond.op == "NOT IN"
            return lambda r: (sort_key(field, r.get(name)) in wanted) != negate
        return _comparison(field, cond.op, values[0])

    def value(self, field: Field, lit: Literal, op: str) -> Any:
        """The literal as a comparable value, after Salesforce's type checks."""
        if op == "LIKE" and (not field.text or field.type in ID_TYPES):
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on {field.type} field", lit.pos)
        if lit.kind == "null":
            return None
        wanted = _LITERAL_FOR_TYPE.get(field.type, "string")
        if lit.kind != wanted:
            quoted = " and should not be enclosed in quotes" if lit.quoted else ""
            type_word = _TYPE_WORD.get(field.type, "string")
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR",
                            f"value of filter criterion for field '{field.name}' must be of type {type_word}{quoted}",
                            lit.pos)
        if field.type in ID_TYPES and normalize_id(lit.value) is None and op != "LIKE":
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}", lit.pos)
        return lit.value if op == "LIKE" else sort_key(field, lit.value)

    def order(self, item: Order) -> tuple[Field, bool, bool]:
        return self.field(item.field), item.descending, item.nulls_last


def _comparison(field: Field, op: str, value: Any) -> Callable[[dict[str, Any]], bool]:
    """`field op value` with SOQL's null rules: only = and != match nulls."""
    name = field.name

    def test(record: dict[str, Any]) -> bool:
        actual = sort_key(field, record.get(name))
        if op == "=":
            return bool(actual == value)
        if op == "!=":
            return bool(actual != value)
        if actual is None or value is None:
            return False
        return bool({"<": actual < value, ">": actual > value, "<=": actual <= value, ">=": actual >= value}[op])

    return test


def compile_query(text: str, resolve: FieldResolver) -> CompiledQuery:
    """Parse `text` and check it against the schema `resolve` finds for its FROM object."""
    parsed = parse(text)
    schema = resolve(parsed.sobject)
    if schema is None:
        raise SoqlError("INVALID_TYPE", f"sObject type '{parsed.sobject}' is not supported. {INVALID_TYPE_HINT}",
                        parsed.sobject_pos)
    compiler = _Compiler(schema)
    fields = None if parsed.fields is None else [compiler.field(ref).name for ref in parsed.fields]
    where = None if parsed.where is None else compiler.predicate(parsed.where)
    order = [compiler.order(item) for item in parsed.order]
    return CompiledQuery(schema, fields, where, order, parsed.limit, parsed.offset)
