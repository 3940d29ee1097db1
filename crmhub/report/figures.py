"""Support figures per channel, queue, CRM or day, from the state store in a few set queries.

Five reads, whatever the size of the window: the volume (ledger rows, or
(interaction, CRM) writes when grouped by CRM or queue) and the replies'
outcomes as grouped counts; the cases opened in the window with their first
agent reply sent (one join on an aggregate of the replies); the open cases
(the backlog, along a partial index); the survey questions asked in the window
with their scores. Survey questions are not agents' replies. Medians and business time are then
worked out in memory over the case rows. The definitions, each with a
worked example, are in docs/metrics.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, select
from sqlalchemy.orm import Session

from crmhub.report.hours import BusinessHours
from crmhub.store import codes
from crmhub.store.schema import LedgerRow, OutboxRow, ReplyRow, RouteDecisionRow, SupportCaseRow, SurveyRow
from crmhub.store.surveys import REPLY_PREFIX

DIMENSIONS = ("channel", "queue", "crm", "day")
FIGURES = (
    "inbound", "outbound", "cases", "first_response_s", "first_response_business_s", "resolution_s",
    "resolution_business_s", "fcr_rate", "reopen_rate", "backlog_open", "backlog_age_max_s",
    "backlog_age_median_s", "replies_sent", "replies_failed", "reply_failure_rate",
    "csat_asked", "csat_answers", "csat_average", "csat_response_rate", "nps_asked", "nps_answers", "nps",
)
SENT = ("sent", "delivered")  # the customer got it (as far as the channel says)
FAILED = ("failed", "dead")  # the customer did not
AGENTS = ReplyRow.reply_ref.not_like(f"{REPLY_PREFIX}%")  # agents' replies, not crmhub's survey questions


@dataclass
class _Cases:
    """The case rows of one group, as the figures need them."""

    first_response: list[float] = field(default_factory=list)
    first_response_business: list[float] = field(default_factory=list)
    resolution: list[float] = field(default_factory=list)
    resolution_business: list[float] = field(default_factory=list)
    opened: int = 0
    closed: int = 0
    reopened: int = 0
    fcr_eligible: int = 0
    fcr: int = 0
    backlog_ages: list[float] = field(default_factory=list)


@dataclass
class _Surveys:
    """The survey questions of one group: asked (not skipped) and the answers' scores, per kind."""

    asked: dict[str, int] = field(default_factory=lambda: {"csat": 0, "nps": 0})
    scores: dict[str, list[int]] = field(default_factory=lambda: {"csat": [], "nps": []})


@dataclass(frozen=True)
class Report:
    """Figures per group (a tuple of values of `by`), and for everything (`totals`)."""

    since: datetime
    until: datetime
    by: tuple[str, ...]
    business_hours: bool
    rows: dict[tuple[str, ...], dict[str, float | int | None]]
    totals: dict[str, float | int | None]
    csat_distribution: dict[int, int] = field(default_factory=dict)  # every answer of the window: score -> answers

    def as_json(self) -> dict[str, Any]:
        """The report as JSON values (the schema is in docs/metrics.md)."""
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "by": list(self.by),
                "business_hours": self.business_hours,
                "rows": [{"group": dict(zip(self.by, key, strict=True)), **figures}
                         for key, figures in sorted(self.rows.items())],
                "totals": self.totals, "csat_distribution": {str(k): v for k, v in sorted(self.csat_distribution.items())}}


def compute(session: Session, *, since: datetime, now: datetime, by: Sequence[str], crms: Sequence[str],
            reopen_window: timedelta, hours: BusinessHours | None = None) -> Report:
    """The figures of the window [since, now), grouped by `by` (a subset of DIMENSIONS, in that order).

    `crms` are the CRMs whose queue names the routing decisions hold; `hours`,
    when routing.yaml sets business hours, adds the business-time figures.
    """
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown grouping {unknown[0]!r}; use one of {', '.join(DIMENSIONS)}")
    by = tuple(by)
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    totals: dict[str, Any] = {}

    def bump(row: dict[str, Any], name: str, amount: int) -> None:
        row[name] = row.get(name, 0) + amount

    for dims, direction, count in _volume(session, since, now, by, crms):
        for target in (groups.setdefault(_key(dims, by), {}), totals):
            bump(target, direction, count)
    for dims, status, count in _replies(session, since, now):
        outcome = "replies_sent" if status in SENT else "replies_failed" if status in FAILED else None
        for target in (groups.setdefault(_key(dims, by), {}), totals):
            if outcome is not None:  # pending or being sent: no outcome yet
                bump(target, outcome, count)
    cases: dict[tuple[str, ...], _Cases] = {}
    everything = _Cases()
    for dims, facts in _case_facts(session, since, now, reopen_window, hours):
        groups.setdefault(_key(dims, by), {})
        for group in (cases.setdefault(_key(dims, by), _Cases()), everything):
            _add(group, facts)
    for dims, age in _backlog(session, now):
        groups.setdefault(_key(dims, by), {})
        for group in (cases.setdefault(_key(dims, by), _Cases()), everything):
            group.backlog_ages.append(age)
    surveys: dict[tuple[str, ...], _Surveys] = {}
    all_surveys = _Surveys()
    for dims, kind, score in _surveys(session, since, now):
        groups.setdefault(_key(dims, by), {})
        for target in (surveys.setdefault(_key(dims, by), _Surveys()), all_surveys):
            target.asked[kind] += 1
            if score is not None:
                target.scores[kind].append(score)
    rows = {key: {**_figures(values, cases.get(key, _Cases()), hours is not None),
                  **_survey_figures(surveys.get(key, _Surveys()))} for key, values in groups.items()}
    distribution = {score: all_surveys.scores["csat"].count(score) for score in sorted(set(all_surveys.scores["csat"]))}
    return Report(since, now, by, hours is not None, rows,
                  {**_figures(totals, everything, hours is not None), **_survey_figures(all_surveys)}, distribution)


def _key(dims: dict[str, str], by: Sequence[str]) -> tuple[str, ...]:
    return tuple(dims.get(name) or "" for name in by)


def _add(target: _Cases, facts: dict[str, Any]) -> None:
    target.opened += 1
    for name in ("first_response", "first_response_business", "resolution", "resolution_business"):
        if facts.get(name) is not None:
            getattr(target, name).append(facts[name])
    target.closed += facts["closed"]
    target.reopened += facts["reopened"]
    target.fcr_eligible += facts["fcr_eligible"]
    target.fcr += facts["fcr"]


def _figures(counts: dict[str, Any], cases: _Cases, business: bool) -> dict[str, float | int | None]:
    sent, failed = counts.get("replies_sent", 0), counts.get("replies_failed", 0)
    figures: dict[str, float | int | None] = {
        "inbound": counts.get("inbound", 0), "outbound": counts.get("outbound", 0), "cases": cases.opened,
        "first_response_s": _median(cases.first_response),
        "first_response_business_s": _median(cases.first_response_business) if business else None,
        "resolution_s": _median(cases.resolution),
        "resolution_business_s": _median(cases.resolution_business) if business else None,
        "fcr_rate": _rate(cases.fcr, cases.fcr_eligible), "reopen_rate": _rate(cases.reopened, cases.closed),
        "backlog_open": len(cases.backlog_ages), "backlog_age_max_s": round(max(cases.backlog_ages), 1) if cases.backlog_ages else None,
        "backlog_age_median_s": _median(cases.backlog_ages),
        "replies_sent": sent, "replies_failed": failed, "reply_failure_rate": _rate(failed, sent + failed),
    }
    return figures


def _survey_figures(surveys: _Surveys) -> dict[str, float | int | None]:
    """CSAT: questions asked, answers, average score (1-5), answers per question; NPS: % promoters (9-10)
    minus % detractors (0-6) of the answers, -100..100."""
    csat, nps = surveys.scores["csat"], surveys.scores["nps"]
    promoters, detractors = sum(1 for s in nps if s >= 9), sum(1 for s in nps if s <= 6)
    return {
        "csat_asked": surveys.asked["csat"], "csat_answers": len(csat),
        "csat_average": round(sum(csat) / len(csat), 2) if csat else None,
        "csat_response_rate": _rate(len(csat), surveys.asked["csat"]),
        "nps_asked": surveys.asked["nps"], "nps_answers": len(nps),
        "nps": round(100 * (promoters - detractors) / len(nps), 1) if nps else None,
    }


def _median(values: Sequence[float]) -> float | None:
    return round(float(statistics.median(values)), 1) if values else None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# ---- the queries -------------------------------------------------------------------------------
def day_of(session: Session, column: Any) -> ColumnElement[str]:
    """The UTC day (YYYY-MM-DD) of a stored time, in SQL (SQLite stores UTC text, PostgreSQL timestamptz)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def _volume(session: Session, since: datetime, now: datetime, by: Sequence[str],
            crms: Sequence[str]) -> Iterable[tuple[dict[str, str], str, int]]:
    """Messages per (channel, day, direction); per CRM write (and its queue) when grouped by CRM or queue."""
    day = day_of(session, LedgerRow.occurred_at)
    window = and_(LedgerRow.occurred_at >= since, LedgerRow.occurred_at < now)
    if not {"crm", "queue"} & set(by):
        query = (select(LedgerRow.channel, day, LedgerRow.direction, func.count()).where(window)
                 .group_by(LedgerRow.channel, day, LedgerRow.direction))
        for channel, on, direction, count in session.execute(query):
            yield {"channel": channel, "day": on}, direction, int(count)
        return
    # The queue a write went to is in its routing decision, per CRM: {"salesforce": {"queue": "vip", ...}}.
    queue: Any = case(*[(OutboxRow.crm == crm, RouteDecisionRow.targets[(crm, "queue")].as_string())
                        for crm in crms], else_=literal("")) if crms else literal("")
    query = (select(LedgerRow.channel, day, OutboxRow.crm, queue, LedgerRow.direction, func.count())
             .join(OutboxRow, OutboxRow.interaction_id == LedgerRow.id)
             .outerjoin(RouteDecisionRow, RouteDecisionRow.interaction_id == LedgerRow.id)
             .where(window).group_by(LedgerRow.channel, day, OutboxRow.crm, queue, LedgerRow.direction))
    rows: Any = session.execute(query)  # six columns (mypy counts the overloads of select() up to four)
    for channel, on, crm, queue_name, direction, count in rows:
        yield {"channel": channel, "day": on, "crm": crm, "queue": queue_name}, direction, int(count)


def _replies(session: Session, since: datetime, now: datetime) -> Iterable[tuple[dict[str, str], str, int]]:
    """Agents' replies written in the window, per channel, CRM, their case's queue, day and status."""
    day = day_of(session, ReplyRow.written_at)
    query = (select(ReplyRow.channel, ReplyRow.crm, SupportCaseRow.queue, day, ReplyRow.status, func.count())
             .outerjoin(SupportCaseRow, and_(SupportCaseRow.crm == ReplyRow.crm,
                                             SupportCaseRow.record_id == ReplyRow.case_id))
             .where(ReplyRow.written_at >= since, ReplyRow.written_at < now, AGENTS,
                    ReplyRow.crm != codes.SENDER)  # a one-time code is no agent's reply
             .group_by(ReplyRow.channel, ReplyRow.crm, SupportCaseRow.queue, day, ReplyRow.status))
    for channel, crm, queue, on, status, count in session.execute(query):
        yield {"channel": channel, "crm": crm, "queue": queue or "", "day": on}, status, int(count)


def _case_facts(session: Session, since: datetime, now: datetime, window: timedelta,
                hours: BusinessHours | None) -> Iterable[tuple[dict[str, str], dict[str, Any]]]:
    """Each case whose first message is in the window, with its first reply sent and how many were sent."""
    sent = (select(ReplyRow.crm, ReplyRow.case_id, func.min(ReplyRow.sent_at).label("first"),
                   func.count().label("replies"))
            .where(ReplyRow.status.in_(SENT), ReplyRow.sent_at >= since, AGENTS)
            .group_by(ReplyRow.crm, ReplyRow.case_id).subquery())
    c = SupportCaseRow
    query = (select(c.crm, c.channel, c.queue, c.first_message_at, c.closed_at, c.reopens, sent.c.first,
                    sent.c.replies)
             .outerjoin(sent, and_(sent.c.crm == c.crm, sent.c.case_id == c.record_id))
             .where(c.first_message_at >= since, c.first_message_at < now))
    for crm, channel, queue, first_at, closed_at, reopens, first_reply, replies in session.execute(query):
        first_reply = _aware(first_reply)
        facts: dict[str, Any] = {"closed": int(closed_at is not None or reopens > 0), "reopened": int(reopens > 0)}
        if first_reply is not None:
            facts["first_response"] = (first_reply - first_at).total_seconds()
            if hours is not None:
                facts["first_response_business"] = hours.seconds_between(first_at, first_reply)
        if closed_at is not None:
            facts["resolution"] = (closed_at - first_at).total_seconds()
            if hours is not None:
                facts["resolution_business"] = hours.seconds_between(first_at, closed_at)
        settled = closed_at is not None and closed_at + window <= now  # it can no longer reopen
        facts["fcr_eligible"] = int(settled)
        facts["fcr"] = int(settled and reopens == 0 and (replies or 0) == 1)
        yield {"channel": channel, "queue": queue, "crm": crm, "day": first_at.date().isoformat()}, facts


def _surveys(session: Session, since: datetime, now: datetime) -> Iterable[tuple[dict[str, str], str, int | None]]:
    """Each question asked in the window (skipped ones left out) with its score (None: no answer)."""
    s = SurveyRow
    query = (select(s.channel, s.queue, s.crm, s.asked_at, s.kind, s.score)
             .where(s.asked_at >= since, s.asked_at < now, s.status != "skipped"))
    for channel, queue, crm, asked_at, kind, score in session.execute(query):
        yield {"channel": channel, "queue": queue, "crm": crm, "day": asked_at.date().isoformat()}, kind, score


def _backlog(session: Session, now: datetime) -> Iterable[tuple[dict[str, str], float]]:
    """Every open case (whenever it opened) and its age."""
    c = SupportCaseRow
    query = select(c.crm, c.channel, c.queue, c.first_message_at).where(c.closed_at.is_(None))
    for crm, channel, queue, first_at in session.execute(query):
        yield ({"channel": channel, "queue": queue, "crm": crm, "day": first_at.date().isoformat()},
               max(0.0, (now - first_at).total_seconds()))


def _aware(moment: datetime | str | None) -> datetime | None:
    """An aggregate's time as an aware UTC datetime, however the driver hands back a MIN() over the column."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment
