"""The report's figures on `/metrics`, as gauges recomputed at most every few minutes.

Decision (issue 16): computed at scrape, cached. A scrape older than
`every` (default 5 minutes) recomputes the last `window` (7 days) per
channel, queue and CRM: twelve grouped queries along indexes
(`ix_ledger_occurred`, `ix_support_cases_first`, `ix_support_cases_open`,
`ix_replies_written`); every other scrape serves the cached figures. So a
Prometheus scraping every 15 s costs the store one report per 5 minutes,
and the figures are never older than that. A failed recompute keeps the
last figures and is logged; the gauges are absent until a first success.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from crmhub.report.figures import FIGURES, Report

log = structlog.get_logger("crmhub.metrics")
GROUPINGS = ("channel", "queue", "crm")


def gauge_name(figure: str) -> str:
    """`first_response_s` -> `crmhub_support_first_response_seconds`, `fcr_rate` -> `..._fcr_ratio`."""
    if figure.endswith("_s"):
        figure = figure[:-2] + "_seconds"
    elif figure.endswith("_rate"):
        figure = figure[:-5] + "_ratio"
    return f"crmhub_support_{figure}"


class SupportCollector(Collector):
    """`crmhub_support_*{by, group}` gauges: the report of the last `window`, by channel, queue and CRM.

    Args:
        figures: the report of [since, now) grouped by one dimension (`crmhub.report.build.report_for`).
        clock: the hub's clock.
    """

    def __init__(self, figures: Callable[[datetime, datetime, Sequence[str]], Report],
                 clock: Callable[[], datetime], *, window: timedelta = timedelta(days=7),
                 every: timedelta = timedelta(minutes=5)) -> None:
        self.figures, self.clock, self.window, self.every = figures, clock, window, every
        self._cached: tuple[datetime, dict[str, Report]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # computed at scrape time only

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reports = self._reports()
        if reports is None:
            return
        for figure in FIGURES:
            family = GaugeMetricFamily(gauge_name(figure), f"`crmhub report`'s {figure} over the last "
                                       f"{self.window.days} days (docs/metrics.md); recomputed every few minutes.",
                                       labels=["by", "group"])
            for by, report in reports.items():
                for (group,), values in sorted(report.rows.items()):
                    if values[figure] is not None:
                        family.add_metric([by, group], float(values[figure]))  # type: ignore[arg-type]  # not None
            yield family

    def _reports(self) -> dict[str, Report] | None:
        now = self.clock()
        with self._lock:  # one recompute at a time; concurrent scrapes wait and share it
            if self._cached is None or now - self._cached[0] >= self.every:
                try:
                    self._cached = (now, {by: self.figures(now - self.window, now, (by,)) for by in GROUPINGS})
                except Exception as exc:  # noqa: BLE001  # a scrape must answer even when the store does not
                    log.error("metrics: support figures not computed", error=type(exc).__name__)
            return None if self._cached is None else self._cached[1]
