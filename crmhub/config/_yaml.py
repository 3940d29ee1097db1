"""Reading YAML with positions, and finding the node a key path points at.

ruamel's round-trip loader keeps, on every mapping and sequence, the line and
column of each key, value and item (`.lc`, 0-based); problems are reported
1-based, as editors count.

A file is read within limits, so no file can crash or stall what follows
(issue 12): its size, how deep it nests, how many values it holds once
aliases are expanded, and how large a number may be. A file past one is
refused like a syntax error, at the place it crosses the limit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import RoundTripScanner

from crmhub.config._types import FileRefused, display_path, read_bounded

Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 256 * 1024
"""crmhub's files are a few KiB; ruamel's pure-Python parser takes seconds over a few hundred."""
MAX_DEPTH = 64
"""Nesting levels (crmhub's files use at most seven); past a few hundred, ruamel recurses too deep."""
MAX_VALUES = 5_000
"""Keys, values and items of one file, each alias counted as the values it repeats (billion laughs)."""
MAX_DIGITS = 18
"""Whole numbers up to 18 digits fit every setting; longer ones are kept as text and refused."""
MAX_TEXT = 10_000
"""Characters of one key or value."""


@dataclass(frozen=True, order=True)
class Problem:
    """One line for people: `<file>:<line>:<col>: <key path>: <problem>; <fix>`."""

    order: int  # which file (settings first), for sorting
    line: int
    col: int
    file: str = field(compare=False)
    text: str = field(compare=False)
    positioned: bool = field(default=True, compare=False)

    def __str__(self) -> str:
        if not self.positioned:
            return printable(f"{self.file}: {self.text}")
        return printable(f"{self.file}:{self.line}:{self.col}: {self.text}")


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` on one line that any terminal can print: control characters and lone surrogates escaped."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


@dataclass(frozen=True)
class LargeNumber:
    """A whole number written with more than `MAX_DIGITS` digits, kept as its text.

    Python refuses to convert more than 4300 digits, and a giant hex number
    converts but cannot be printed; as text, it is reported like any value.
    """

    text: str

    def __str__(self) -> str:
        return self.text


class LimitExceeded(MarkedYAMLError):
    """The file passes one of the loader's limits, or holds a value YAML cannot build; `problem` is final text."""

    def __init__(self, text: str, mark: Any) -> None:
        super().__init__(problem=text, problem_mark=mark)


_TOO_DEEP = (f"nested more than {MAX_DEPTH} levels deep; crmhub's files need a few levels, "
             "check the brackets and indentation here")


class _BoundedScanner(RoundTripScanner):  # type: ignore[misc]  # ruamel is untyped
    """ruamel's scanner, refusing `[` and `{` nested past `MAX_DEPTH`.

    The scanner reads ahead through every open bracket that might start a
    key, each step looking at all of them: a thousand `[` took seconds
    before the composer's own depth check was reached.
    """

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise LimitExceeded(_TOO_DEEP, self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


class _BoundedComposer(Composer):  # type: ignore[misc]  # ruamel is untyped
    """ruamel's composer, refusing deep nesting, alias loops and too many values once aliases are expanded.

    Each node's expanded size is counted as it is composed, so a billion
    laughs is refused after about `MAX_VALUES` steps, before anything copies it.
    """

    def compose_document(self) -> Any:
        self.warn_double_anchors = False  # legal YAML (the last wins); a warning would print beside the problems
        self._values = 0
        self._sizes: dict[int, int] = {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise LimitExceeded(f"alias *{event.anchor} is used inside the value it names; "
                                    "write the value out instead", event.start_mark)
            self._count(size, event.start_mark)
            return node
        if self.depth >= MAX_DEPTH:
            raise LimitExceeded(_TOO_DEEP, event.start_mark)
        before = self._values
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._values - before
        return node

    def _count(self, values: int, mark: Any) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise LimitExceeded(f"more than {MAX_VALUES} values once aliases are expanded; "
                                "write fewer aliases (or a smaller file)", mark)


class _BoundedConstructor(RoundTripConstructor):  # type: ignore[misc]  # ruamel is untyped
    """ruamel's constructor, keeping long whole numbers as text and reporting values it cannot build."""

    def construct_yaml_int(self, node: Any) -> Any:
        digits = node.value.lstrip("+-").replace("_", "")
        if len(digits) > MAX_DIGITS + 2:  # + a 0x, 0o or 0b prefix: checked before int() sees it
            return LargeNumber(node.value)
        value = super().construct_yaml_int(node)
        return value if abs(value) < 10**MAX_DIGITS else LargeNumber(node.value)

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except YAMLError:
            raise
        except Exception:  # an explicit tag on a value that is not one (`!!int x`, `!!timestamp 2024-13-45`)
            # The exception names the value, which may be a secret: only the tag is repeated.
            tag = str(getattr(node.tag, "value", node.tag)).replace("tag:yaml.org,2002:", "!!")
            raise LimitExceeded(f"the value cannot be read as {tag}; remove the tag or fix the value",
                                node.start_mark) from None


_BoundedConstructor.add_constructor("tag:yaml.org,2002:int", _BoundedConstructor.construct_yaml_int)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Scanner = _BoundedScanner
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _BoundedConstructor
    return yaml


@dataclass
class Document:
    """One YAML file: where it is, how to name it, and its tree (None: unreadable)."""

    path: Path
    order: int
    display: str = ""  # the path as people should see it; default: relative to the working directory
    tree: Any = None

    def __post_init__(self) -> None:
        if not self.display:
            self.display = display_path(self.path)

    def problem(self, text: str, loc: Loc = (), *, at: Literal["key", "value"] = "value") -> Problem:
        """A problem positioned at `loc` (the parent mapping when the key is missing)."""
        line, col = locate(self.tree, loc, at=at)
        return Problem(self.order, line, col, self.display, text)

    def file_problem(self, text: str) -> Problem:
        """A problem with the file as a whole (not found, unreadable)."""
        return Problem(self.order, 0, 0, self.display, text, positioned=False)


def read(doc: Document) -> list[Problem]:
    """Load `doc.path` into `doc.tree`; the problems found (none when it loaded)."""
    try:
        data = read_bounded(doc.path, MAX_FILE_BYTES)
    except FileNotFoundError:
        return [doc.file_problem("file not found; create it (see docs/configuration.md) or fix the path")]
    except IsADirectoryError:
        return [doc.file_problem("is a directory, not a file; point at the YAML file itself")]
    except FileRefused as exc:
        return [doc.file_problem(_REFUSED[exc.kind].format(reason=exc))]
    except OSError as exc:
        return [doc.file_problem(f"cannot read the file ({exc.strerror}); check its permissions")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(doc.order, text_line_of(data, exc.start), 1, doc.display,
                        "the file is not UTF-8 text; save it as UTF-8")]
    try:
        tree = _yaml().load(text)
    except LimitExceeded as exc:
        mark = exc.problem_mark
        return [Problem(doc.order, mark.line + 1, mark.column + 1, doc.display, str(exc.problem))]
    except MarkedYAMLError as exc:
        return [_syntax_problem(doc, exc)]
    except ReaderError as exc:  # a character YAML does not allow, anywhere in the file
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return [Problem(doc.order, line, col, doc.display,
                        f"YAML syntax error: unacceptable character U+{exc.character:04X} ({exc.reason}); remove it")]
    except YAMLError as exc:  # unmarked: rare, no position
        return [Problem(doc.order, 1, 1, doc.display, f"YAML error: {exc}; fix the YAML syntax")]
    if tree is None:
        return [Problem(doc.order, 1, 1, doc.display, "the file is empty; start from the example in docs/configuration.md")]
    if not isinstance(tree, CommentedMap):
        what = "a list" if isinstance(tree, CommentedSeq) else "a single value"
        return [Problem(doc.order, 1, 1, doc.display,
                        f"the file holds {what}; it must be a mapping of keys (key: value), "
                        "see the example in docs/configuration.md")]
    doc.tree = tree
    return []


_REFUSED = {
    "path": "{reason}; give the file a shorter name, or fix the path",
    "kind": "is {reason}; point at the YAML file itself",
    "size": "the file is {reason}; crmhub's files are a few KiB, check that this is the right file",
}


def text_line_of(data: bytes, offset: int) -> int:
    """1-based line of byte `offset` in `data`."""
    return data.count(b"\n", 0, offset) + 1


_DUPLICATE = re.compile(r'found duplicate key "(.*?)" with value')


def _syntax_problem(doc: Document, exc: MarkedYAMLError) -> Problem:
    # Only ruamel's short problem texts are used: its full message quotes the
    # offending source line, which may hold a secret.
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = (exc.problem or "invalid YAML").strip()
    duplicate = _DUPLICATE.match(problem)
    if duplicate:
        first = exc.context_mark
        where = f" (the mapping starts at line {first.line + 1})" if first is not None else ""
        return Problem(doc.order, line, col, doc.display,
                       f"duplicate key '{duplicate[1]}'{where}; keep only one")
    context = ""
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        context = f" ({exc.context} started at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    fix = "check the indentation and quoting here"
    if "'\\t'" in problem:
        fix = "indent with spaces, not tabs"
    elif "mapping values are not allowed" in problem:
        fix = "check the indentation, or quote a value that contains ': '"
    elif "quoted scalar" in (exc.context or ""):
        fix = "close the quote"
    return Problem(doc.order, line, col, doc.display, f"YAML syntax error: {problem}{context}; {fix}")


def plain(node: Any) -> Any:
    """The tree as plain dicts, lists and scalars (what pydantic validates)."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime | date):
        # `2024-01-01` unquoted: crmhub has no date settings, keep what was written.
        return node.isoformat()
    return node


def locate(tree: Any, loc: Sequence[str | int], *, at: Literal["key", "value"] = "value") -> tuple[int, int]:
    """1-based (line, column) of what `loc` points at in `tree`.

    `at="key"` gives the key's position (unknown keys), `"value"` the value's
    (bad values). Where the path leaves the tree (a missing key, a value of
    the wrong shape) the deepest node reached is used: for a missing key,
    that is its parent mapping.
    """
    line, col = _start(tree)
    node = tree
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap) and _has(node, step):
            key = _key(node, step)
            position = node.lc.key(key) if (last and at == "key") else _value_pos(node, key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(step, int) and 0 <= step < len(node):
            position = node.lc.item(step)
            node = node[step]
        else:
            if isinstance(node, CommentedMap | CommentedSeq) and node is not tree:
                return _start(node)
            return line, col
        if position is not None:
            line, col = position[0] + 1, position[1] + 1
    return line, col


def scalars(tree: Any, loc: Loc = (), at: tuple[int, int] = (1, 1)) -> Iterator[tuple[Loc, bool, Any, int, int]]:
    """Every key and scalar value of `tree`: (key path, is a key, value, line, column).

    For a key, the path is its mapping's. A value repeated by an alias is
    visited at each use (the composer bounds how many that can be).
    """
    if isinstance(tree, CommentedMap):
        for key, value in tree.items():
            key_at = _position(tree.lc.key, key, at)
            yield loc, True, key, *key_at
            yield from scalars(value, (*loc, key), _position(tree.lc.value, key, key_at))
    elif isinstance(tree, CommentedSeq):
        for i, item in enumerate(tree):
            yield from scalars(item, (*loc, i), _position(tree.lc.item, i, at))
    else:
        yield loc, False, tree, *at


def _position(lookup: Any, key: Any, default: tuple[int, int]) -> tuple[int, int]:
    """1-based position from ruamel's `.lc` lookup; `default` where it has none (keys merged in with `<<`)."""
    try:
        line, col = lookup(key)
    except (KeyError, IndexError, TypeError):
        return default
    return (line + 1, col + 1) if line is not None else default


def find(tree: Any, loc: Sequence[str | int]) -> Any:
    """The node at `loc`, or None when the path leaves the tree."""
    node = tree
    for step in loc:
        if isinstance(node, dict) and _has(node, step):
            node = node[_key(node, step)]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            node = node[step]
        else:
            return None
    return node


def _has(node: dict[Any, Any], step: str | int) -> bool:
    return step in node or str(step) in {str(k) for k in node}


def _key(node: dict[Any, Any], step: str | int) -> Any:
    if step in node:
        return step
    return next(k for k in node if str(k) == str(step))


def _value_pos(node: CommentedMap, key: Any) -> tuple[int, int] | None:
    try:
        position = node.lc.value(key)
    except (KeyError, TypeError):
        position = None
    if position is None or position[0] is None:
        position = node.lc.key(key)
    return position  # type: ignore[no-any-return]  # ruamel's LineCol is untyped


def _start(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:
        return 1, 1
    return lc.line + 1, lc.col + 1
