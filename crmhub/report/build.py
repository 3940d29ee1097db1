"""A report from a loaded configuration and its store: what the CLI, the demo and /metrics share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from crmhub.config import Config
from crmhub.report.figures import Report, compute
from crmhub.report.hours import business_hours_of
from crmhub.store import StateStore


def report_for(config: Config, store: StateStore, *, since: datetime, now: datetime, by: Sequence[str]) -> Report:
    """The figures of [since, now) grouped by `by`, with the reopen window and business hours of the config."""
    with store.transaction() as session:
        return compute(session, since=since, now=now, by=by, crms=config.settings.crms.enabled_names(),
                       reopen_window=config.settings.threads.reopen_window,
                       hours=business_hours_of(config.routing))
