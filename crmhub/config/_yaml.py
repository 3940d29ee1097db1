"""Reading YAML with positions, and finding the node a key path points at.

ruamel's round-trip loader keeps, on every mapping and sequence, the line and
column of each key, value and item (`.lc`, 0-based); problems are reported
1-based, as editors count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from crmhub.config._types import display_path

Loc = tuple[str | int, ...]


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
            return f"{self.file}: {self.text}"
        return f"{self.file}:{self.line}:{self.col}: {self.text}"


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
        text = doc.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [doc.file_problem("file not found; create it (see docs/configuration.md) or fix the path")]
    except IsADirectoryError:
        return [doc.file_problem("is a directory, not a file; point at the YAML file itself")]
    except UnicodeDecodeError as exc:
        line = text_line_of(doc.path.read_bytes(), exc.start)
        return [Problem(doc.order, line, 1, doc.display, "the file is not UTF-8 text; save it as UTF-8")]
    except OSError as exc:
        return [doc.file_problem(f"cannot read the file ({exc.strerror}); check its permissions")]
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        return [_syntax_problem(doc, exc)]
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
