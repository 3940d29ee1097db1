"""The report as one self-contained HTML file: the table and charts drawn by matplotlib as inline SVG.

matplotlib because it renders SVG offline with no JavaScript: the file
opens anywhere, mailed or on a share, with no network (plotly would inline
about 3 MB of script for the same three charts).
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crmhub.report.figures import Report
from crmhub.report.render import TITLES, figures_of, shown

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
tr.total{font-weight:bold}figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.4em}"""


def to_html(report: Report, by_channel_day: Report, csat: Mapping[int, int] | None = None) -> str:
    """The page: `report`'s table, then volume and first response per channel and day (`by_channel_day`,
    grouped by channel then day), then the CSAT distribution (score -> answers; None: no surveys yet)."""
    charts = [("Messages per channel and day (inbound and outbound)", _volume_chart(by_channel_day)),
              ("First response per channel and day (median, hours)", _response_chart(by_channel_day))]
    if csat:
        charts.append(("CSAT answers by score", _csat_chart(csat)))
    figures = "".join(f'<figure class="chart"><figcaption>{html.escape(title)}</figcaption>{svg}</figure>'
                      for title, svg in charts)
    no_csat = "" if csat else "<p>CSAT: no survey answers in this window.</p>"
    title = f"crmhub support report, {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d}"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{_table(report)}{figures}{no_csat}"
            "</body></html>\n")


def _table(report: Report) -> str:
    names = figures_of(report)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in report.by) + "".join(
        f"<th>{html.escape(TITLES[n])}</th>" for n in names)
    body = ""
    for key, figures in sorted(report.rows.items()):
        body += "<tr>" + "".join(f"<td>{html.escape(v or '–')}</td>" for v in key) + "".join(
            f"<td>{html.escape(shown(n, figures[n]))}</td>" for n in names) + "</tr>"
    body += '<tr class="total">' + "".join(f"<td>{'total' if i == 0 else ''}</td>" for i in range(len(report.by)))
    body += "".join(f"<td>{html.escape(shown(n, report.totals[n]))}</td>" for n in names) + "</tr>"
    return f'<table id="figures"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _series(report: Report, figure: str, scale: float = 1.0, missing: float = 0.0
            ) -> tuple[list[str], dict[str, list[float]]]:
    """Days in order, and per channel the figure on each day (`missing` where it has none).

    Counts take 0 for a day without any; a duration takes NaN, which matplotlib leaves out: a channel
    with no reply yet has no first response, not one of zero hours.
    """
    days = sorted({day for _, day in report.rows})
    channels = sorted({channel for channel, _ in report.rows})
    values: dict[str, list[float]] = {}
    for channel in channels:
        found = [report.rows.get((channel, day), {}).get(figure) for day in days]
        values[channel] = [missing if value is None else float(value) / scale for value in found]
    return days, values


def _volume_chart(report: Report) -> str:
    from matplotlib.figure import Figure

    days, inbound = _series(report, "inbound")
    _, outbound = _series(report, "outbound")
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    bottom = [0.0] * len(days)
    for channel in inbound:
        totals = [i + o for i, o in zip(inbound[channel], outbound[channel], strict=True)]
        axes.bar(days, totals, bottom=bottom, label=channel)
        bottom = [b + t for b, t in zip(bottom, totals, strict=True)]
    axes.set_ylabel("messages")
    return _svg(figure, axes, bool(inbound))


def _response_chart(report: Report) -> str:
    from matplotlib.figure import Figure

    days, hours = _series(report, "first_response_s", scale=3600, missing=math.nan)
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    for channel, values in hours.items():
        axes.plot(days, values, marker="o", label=channel)
    axes.set_ylabel("hours")
    return _svg(figure, axes, bool(hours))


def _csat_chart(csat: Mapping[int, int]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3))
    axes = figure.subplots()
    scores = sorted(csat)
    axes.bar([str(s) for s in scores], [csat[s] for s in scores], color="#4a7")
    axes.set_xlabel("score")
    axes.set_ylabel("answers")
    return _svg(figure, axes, False)


def _svg(figure: Figure, axes: Axes, legend: bool) -> str:
    """The figure as an inline <svg> element (glyphs drawn as paths: no font, file or script to fetch)."""
    if legend:
        axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    text = text[text.index("<svg"):]
    if "<metadata>" in text:  # RDF about the file (creator, format): nothing a reader sees
        text = text[:text.index("<metadata>")] + text[text.index("</metadata>") + len("</metadata>"):]
    return text
