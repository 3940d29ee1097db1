"""What crmhub has done, for people: `crmhub status` and the sync summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from crmhub.model import WritePriority
from crmhub.store import StateStore
from crmhub.store.leases import stream_owners
from crmhub.store.ledger import all_cursors, ledger_counts, open_dead_letter_count
from crmhub.store.outbox import allowances, held_counts, outbox_counts
from crmhub.store.replies import reply_counts

# What each budget level lets through, for people.
ALLOWED = {
    WritePriority.BACKFILL: "every write goes",
    WritePriority.FOLLOW_UP: "backfill waits",
    WritePriority.NEW_CASE: "follow-ups and backfill wait; replies and new cases go",
    WritePriority.REPLY: "only agent replies go",
}


def store_status(store: StateStore, streams: list[str] | None = None) -> dict[str, Any]:
    """What the store holds; with `streams` (`crmhub.streams.all_streams`), which daemon reads each.

    The stream owners are only known on PostgreSQL (on SQLite, the one daemon reads every stream)."""
    report = _store_counts(store)
    if streams is not None and store.dialect == "postgresql":
        report["streams"] = [{"stream": name, "daemon": owner.daemon if owner else None,
                              "since": owner.since.isoformat() if owner else None}
                             for name, owner in stream_owners(store, streams).items()]
    return report


def _store_counts(store: StateStore) -> dict[str, Any]:
    with store.transaction() as session:
        held = held_counts(session)
        return {
            "cursors": [{"source": c.source, "stream": c.stream, "partition": c.partition, "value": c.value,
                         "updated_at": c.updated_at.isoformat()} for c in all_cursors(session)],
            "ledger": ledger_counts(session),
            "outbox": [{"crm": crm, "status": status, "count": count}
                       for (crm, status), count in sorted(outbox_counts(session).items())],
            "budgets": [{"crm": b.crm, "allowed": WritePriority(b.max_priority).name.lower(),
                         "held": held.get(b.crm, 0), "daily_remaining": b.daily_remaining,
                         "daily_limit": b.daily_limit, "reserve": b.reserve, "updated_at": b.updated_at.isoformat()}
                        for b in allowances(session)],
            "replies": [{"crm": crm, "channel": channel, "status": status, "count": count}
                        for (crm, channel, status), count in sorted(reply_counts(session).items())],
            "dead_letters": open_dead_letter_count(session),
        }


def budget_line(budget: dict[str, Any]) -> str:
    """One CRM's budget for people: what is held, why, and since when."""
    allowed = WritePriority[budget["allowed"].upper()]
    line = f"{budget['crm']}: {budget['held']} write(s) held by the API budget; {ALLOWED[allowed]}"
    if budget["daily_remaining"] is not None and budget["daily_limit"] is not None:
        line += f" (daily allowance: {budget['daily_remaining']} of {budget['daily_limit']} calls left"
        line += f", reserve {budget['reserve']})" if budget["reserve"] is not None else ")"
    return f"{line}; as of {budget['updated_at']}"


def print_status(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    cursors = Table(title="Cursors")
    for column in ("source", "stream", "partition", "value", "updated"):
        cursors.add_column(column)
    for c in report["cursors"]:
        cursors.add_row(c["source"], c["stream"], c["partition"] or "-", c["value"], c["updated_at"])
    console.print(cursors)
    ledger = Table(title="Ledger")
    ledger.add_column("channel")
    ledger.add_column("interactions", justify="right")
    for channel, count in sorted(report["ledger"].items()):
        ledger.add_row(channel, str(count))
    console.print(ledger)
    box = Table(title="Outbox")
    for column in ("crm", "status", "rows"):
        box.add_column(column)
    for row in report["outbox"]:
        box.add_row(row["crm"], row["status"], str(row["count"]))
    console.print(box)
    for budget in report.get("budgets", []):
        console.print(budget_line(budget), highlight=False)
    replies = Table(title="Replies")
    for column in ("crm", "channel", "status", "replies"):
        replies.add_column(column)
    for row in report["replies"]:
        replies.add_row(row["crm"], row["channel"], row["status"], str(row["count"]))
    console.print(replies)
    console.print(f"Open dead letters: [bold]{report['dead_letters']}[/]")
    if "streams" in report:
        owners = Table(title="Streams (each read by one daemon)")
        for column in ("stream", "daemon", "session since"):
            owners.add_column(column)
        for row in report["streams"]:
            owners.add_row(row["stream"], row["daemon"] or "nobody now: the next daemon to run it takes it",
                           row["since"] or "-")
        console.print(owners)


def print_cycle(cycle: Any, console: Console | None = None) -> None:
    """One line per step of a sync cycle."""
    console = console or Console()
    for poll in cycle.polls:
        console.print(f"polled {poll.source}/{poll.stream}: {poll.pages} page(s), {poll.stored} new, "
                      f"{poll.repeats} already known, {poll.dead_lettered} dead-lettered")
    for crm, changed in cycle.mirrored.items():
        console.print(f"mirror {crm}: {changed} contact(s) refreshed")
    console.print(f"routed {cycle.processed} interaction(s)")
    for report in cycle.deliveries:
        console.print(f"delivered to {report.crm}: {report.delivered} written, {report.retrying} to retry, "
                      f"{report.dead} dead-lettered" + (f", {report.held} held by the API budget"
                                                        if report.held else "")
                      + (f", {report.noted} link suggestion(s) noted on their case" if report.noted else ""))
    for line in cycle.replies.lines() if getattr(cycle, "replies", None) is not None else []:
        console.print(line)
    for failure in cycle.failures:
        console.print(f"[red]failed[/] {failure}")
