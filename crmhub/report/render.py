"""A report as people and programs read it: a rich table, JSON, CSV (the same figures in each)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.table import Table

from crmhub.report.figures import FIGURES, Report

# Column titles of the terminal table (figures of business time only when routing.yaml sets business hours).
TITLES = {
    "inbound": "messages in", "outbound": "messages out", "cases": "cases opened",
    "first_response_s": "first response (median)", "first_response_business_s": "  in business hours",
    "resolution_s": "resolution (median)", "resolution_business_s": "  in business hours",
    "fcr_rate": "first-contact resolution", "reopen_rate": "reopen rate", "backlog_open": "open cases now",
    "backlog_age_max_s": "oldest open case", "backlog_age_median_s": "open case age (median)",
    "replies_sent": "replies sent", "replies_failed": "replies failed", "reply_failure_rate": "reply failure rate",
    "csat_asked": "CSAT surveys sent", "csat_answers": "CSAT answers", "csat_average": "CSAT (average, 1-5)",
    "csat_response_rate": "CSAT response rate", "nps_asked": "NPS questions sent", "nps_answers": "NPS answers",
    "nps": "NPS (-100..100)",
}


def figures_of(report: Report) -> tuple[str, ...]:
    """The figures the report has: without business time when no business hours are configured."""
    return tuple(name for name in FIGURES if report.business_hours or "business" not in name)


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2)


def to_csv(report: Report) -> str:
    """One row per group then a `total` row; empty cells where a figure has no value (no case, no reply)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = figures_of(report)
    writer.writerow([*report.by, *names])
    for key, figures in sorted(report.rows.items()):
        writer.writerow([*key, *("" if figures[n] is None else figures[n] for n in names)])
    writer.writerow([*(["total"] + [""] * (len(report.by) - 1) if report.by else []),
                     *("" if report.totals[n] is None else report.totals[n] for n in names)])
    return out.getvalue()


def print_table(report: Report, console: Console) -> None:
    """The report as a table with a row per figure and a column per group (so it fits a terminal):
    durations as 1h 05m, rates as percentages, '–' where there is no value."""
    table = Table(title=f"Support, {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
                        f"{', business time per routing.yaml' if report.business_hours else ''}")
    keys = sorted(report.rows)
    table.add_column(" / ".join(report.by))
    for key in keys:
        table.add_column(" / ".join(value or "–" for value in key), justify="right")
    table.add_column("total", justify="right", style="bold")
    for name in figures_of(report):
        table.add_row(TITLES[name], *(shown(name, report.rows[key][name]) for key in keys),
                      shown(name, report.totals[name]))
    console.print(table)


def shown(name: str, value: float | int | None) -> str:
    """A figure for people."""
    if value is None:
        return "–"
    if name.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if name.endswith("_s"):
        return duration(float(value))
    return str(value)


def duration(seconds: float) -> str:
    """12s, 4m 05s, 3h 20m, 2d 4h."""
    whole = int(round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
