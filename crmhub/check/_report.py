"""What `crmhub check` found: one `Finding` per thing checked, and the three ways of printing them.

A finding that failed prints as one line, `<system>: <what is wrong>. Fix: <what to do>`
(the setup guides in docs/setup/ quote lines of this form); the ones that
passed only show in the table and in `--json`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One thing checked on one system: passed (`problem` empty) or what is wrong and the fix."""

    system: str
    check: str  # what was checked, e.g. "field Contact.Phone", "queue Support_Queue"
    detail: str = ""  # for a pass: what was seen (e.g. "externalId, unique")
    problem: str = ""
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def line(self) -> str:
        """`salesforce: field Contact.X__c ... does not exist. Fix: create it ...`."""
        stop = "" if self.problem.endswith((".", "?", "!")) else "."
        return f"{self.system}: {self.problem}{stop} Fix: {self.fix}" if self.fix else f"{self.system}: {self.problem}"


def passed(system: str, check: str, detail: str = "") -> Finding:
    return Finding(system, check, detail)


def failed(system: str, check: str, problem: str, fix: str) -> Finding:
    return Finding(system, check, problem=problem, fix=fix)


@dataclass
class Report:
    """Every finding of one run, in the order the systems were checked."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """One line per problem."""
        return [f.line() for f in self.problems]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": len(self.problems),
                "systems": sorted({f.system for f in self.findings}),
                "checks": [{**asdict(f), "ok": f.ok} for f in self.findings]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def print_table(self, console: Any) -> None:
        """A rich table of what was checked (every row passed when this is shown)."""
        from rich.table import Table

        table = Table(title=f"crmhub check: {len(self.findings)} checks passed")
        for column in ("system", "check", "seen"):
            table.add_column(column, overflow="fold")
        for finding in self.findings:
            table.add_row(finding.system, finding.check, finding.detail or "ok")
        console.print(table)


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice `name` most likely meant: the same but for case, else a close spelling."""
    names = [c for c in choices if c]
    for choice in names:
        if choice.lower() == name.lower():
            return choice
    lowered = {c.lower(): c for c in names}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`; did you mean MobilePhone?` or ``."""
    close = closest(name, choices)
    return f"; did you mean {close}?" if close and close != name else ""


def listed(names: Sequence[str], limit: int = 8) -> str:
    """`A, B, C` (at most `limit`, then `and N more`)."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "") if names else "none"
