"""CSAT and NPS surveys: asked when a case closes, answered in the conversation, written onto the case.

1. `ask_on_close`: in the transaction that records a batch of closes
   (`refresh_threads`), one question per closed case across the CRMs: an
   NPS question when the person was not asked in the current period, else
   the CSAT one, each where settings allow it (channel, queue). A customer
   who opted out (STOP on SMS or WhatsApp and no START since), an X
   conversation where X refused a message, or a WhatsApp conversation outside
   the 24-hour window (no template support yet) gets no question: the row is
   stored `skipped` with the reason, so the case is never asked again. The
   question goes out as a `replies` row (`survey:<id>`), so the replier's
   exactly-once path sends it (after an uncertain try it searches the
   channel before sending again), and routing settles its echo in every CRM.
2. `take_answers`: before routing a batch, an inbound message of a
   conversation with a sent question, within the answer window, that reads as
   a score (`survey_answers.score_of`) is the answer: it is recorded on the
   question and queued as a score write onto the case in each CRM, and it is
   not routed (it never opens nor reopens a case).
3. `write_scores`: set each CRM's case field (a plain field update, so a
   retry after a lost answer sets the same value again and changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from crmhub.errors import ConnectorError, PermanentError
from crmhub.model import Channel, Direction, Interaction, ReplyStatus
from crmhub.store import StateStore, ledger
from crmhub.store import replies as reply_store
from crmhub.store import surveys as store
from crmhub.store.cases import Closed, channel_of
from crmhub.sync.replies import THREADED
from crmhub.sync.survey_answers import CSAT, NPS, score_of
from crmhub.texts import DEFAULT_LANGUAGE, pick

log = structlog.get_logger("crmhub.surveys")
# Keywords Twilio's Advanced Opt-Out reads on a whole message (https://help.twilio.com/articles/223134027).
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
WHATSAPP_WINDOW = timedelta(hours=24)
TWILIO_CHANNELS = (Channel.SMS.value, Channel.WHATSAPP.value)


@dataclass(frozen=True)
class Question:
    """One kind of survey as settings describe it."""

    enabled: bool = False
    channels: frozenset[str] = frozenset()
    texts: Mapping[str, str] = field(default_factory=dict)
    window: timedelta = timedelta(days=3)
    queues: frozenset[str] | None = None  # CSAT only; None: every queue
    every: timedelta = timedelta(days=90)  # NPS only


@dataclass(frozen=True)
class SurveyPolicy:
    csat: Question = Question()
    nps: Question = Question()
    default_language: str = DEFAULT_LANGUAGE

    @property
    def enabled(self) -> bool:
        return self.csat.enabled or self.nps.enabled


# ---- 1. ask ----------------------------------------------------------------------
def ask_on_close(session: Session, crm: str, closes: Sequence[Closed], policy: SurveyPolicy, *,
                 now: datetime) -> int:
    """Queue a question for each closed case that settings survey (once per case); returns how many were asked."""
    wanted = [c for c in closes if _surveyed(c, policy)]
    if not wanted or not policy.enabled:
        return 0
    done = store.surveyed_cases(session, {c.conversation_key for c in wanted})  # a reopened case closing again
    wanted = [c for c in wanted if (c.conversation_key, c.seq) not in done]
    keys = {c.conversation_key for c in wanted}
    latest = store.latest_inbound(session, keys)
    why_not = _reasons_not_to_ask(session, keys, latest, now)
    languages = ledger.conversation_languages(session, keys)
    nps_rows, csat_rows = [], []
    for close in wanted:
        last = latest.get(close.conversation_key)
        reason = why_not.get(close.conversation_key) or (None if last is not None else "no message from the customer")
        base = {"conversation_key": close.conversation_key, "seq": close.seq, "crm": crm,
                "channel": channel_of(close.conversation_key), "queue": close.queue,
                "person_id": last.person_id if last is not None else None, "asked_at": now, "reason": reason,
                "status": store.SKIPPED if reason else store.ASKED}
        if (reason is None and policy.nps.enabled and last is not None and last.person_id is not None
                and base["channel"] in policy.nps.channels):
            period = store.period_of(close.closed_at, policy.nps.every)
            nps_rows.append({**base, "kind": NPS, "subject": f"person:{last.person_id}@{period}",
                             "answer_by": now + policy.nps.window})
        csat_rows.append({**base, "kind": CSAT, "subject": f"{close.conversation_key}#{close.seq}",
                          "answer_by": now + policy.csat.window})
    asked_nps = store.insert_questions(session, nps_rows)
    nps_cases = {(r["conversation_key"], r["seq"]) for r in nps_rows if r["subject"] in asked_nps}
    csat_rows = [r for r in csat_rows if (r["conversation_key"], r["seq"]) not in nps_cases and policy.csat.enabled
                 and (r["channel"] in policy.csat.channels)]
    asked_csat = store.insert_questions(session, csat_rows)
    by_case = {(c.conversation_key, c.seq): c for c in wanted}
    questions = [(asked_nps[r["subject"]], r, policy.nps) for r in nps_rows if r["subject"] in asked_nps]
    questions += [(asked_csat[r["subject"]], r, policy.csat) for r in csat_rows
                  if r["subject"] in asked_csat and r["status"] == store.ASKED]
    rows = [_reply_row(sid, row, by_case[(row["conversation_key"], row["seq"])], latest[row["conversation_key"]],
                       pick(question.texts, languages.get(row["conversation_key"]), policy.default_language), now)
            for sid, row, question in questions]
    reply_store.insert(session, rows)
    skipped = sum(1 for r in csat_rows if r["subject"] in asked_csat and r["status"] == store.SKIPPED)
    if rows or skipped:
        log.info("surveys queued", crm=crm, asked=len(rows), skipped=skipped)
    return len(rows)


def _surveyed(close: Closed, policy: SurveyPolicy) -> bool:
    """Whether settings survey this case at all (its channel, its queue)."""
    channel = channel_of(close.conversation_key)
    csat = policy.csat.enabled and channel in policy.csat.channels and (
        policy.csat.queues is None or close.queue in policy.csat.queues)
    return close.record_id is not None and (csat or (policy.nps.enabled and channel in policy.nps.channels))


def _reasons_not_to_ask(session: Session, keys: set[str], latest: Mapping[str, Any], now: datetime
                        ) -> dict[str, str]:
    """Why a conversation must not get a question: opted out, X refused, outside WhatsApp's window."""
    reasons: dict[str, str] = {}
    twilio = {k for k in keys if channel_of(k) in TWILIO_CHANNELS}
    for key, words in store.keyword_messages(session, twilio, OPT_OUT_WORDS | OPT_IN_WORDS).items():
        if words[-1][1] in OPT_OUT_WORDS:
            reasons[key] = f"the customer opted out (texted {words[-1][1]} and not START since)"
    for key in store.refused_conversations(session, keys, [Channel.X_DM.value]):
        reasons.setdefault(key, "X refused an earlier direct message (the customer closed their DMs)")
    for key in keys:
        last = latest.get(key)
        if channel_of(key) == Channel.WHATSAPP.value and last is not None and last.occurred_at < now - WHATSAPP_WINDOW:
            reasons.setdefault(key, "outside WhatsApp's 24-hour window and no survey template is supported")
        if channel_of(key) == Channel.CALL.value:
            reasons.setdefault(key, "a phone call: crmhub cannot send a written question into it")
    return reasons


def _reply_row(survey_id: int, row: Mapping[str, Any], close: Closed, last: Any, text: str,
               now: datetime) -> dict[str, Any]:
    """The `replies` row that sends the question, addressed like an agent's reply to the conversation."""
    item = ledger.to_interaction(last, raw=False)
    answering = item.external_id if item.channel in THREADED else None
    return {
        "crm": row["crm"], "reply_ref": store.reply_ref(survey_id), "case_id": close.record_id,
        "conversation_key": close.conversation_key, "channel": item.channel.value,
        "to_kind": item.customer.kind.value, "to_address": item.customer.value,
        "from_kind": item.recipient.kind.value, "from_address": item.recipient.value, "in_reply_to": answering,
        "text": text, "author": "crmhub survey", "status": ReplyStatus.PENDING.value, "channel_status": "",
        "attempts": 0, "next_attempt_at": now, "written_at": now, "created_at": now, "status_at": now,
    }


# ---- 2. answers ------------------------------------------------------------------
def take_answers(session: Session, items: Sequence[tuple[int, Interaction]], crms: Sequence[str], *,
                 now: datetime) -> set[int]:
    """The batch's survey answers, recorded; returns their ledger ids (routing leaves them out)."""
    inbound = [(iid, item) for iid, item in items if item.direction is Direction.INBOUND]
    if not inbound:
        return set()
    open_ = store.awaiting(session, {item.conversation_key for _, item in inbound})
    answers: list[store.Answer] = []
    for iid, item in inbound:
        question = open_.get(item.conversation_key)
        # Channels date messages to the second (Twilio): the question's second counts as after it.
        if question is None or not question.asked_at.replace(microsecond=0) <= item.occurred_at <= question.answer_by:
            continue
        score = score_of(item.text, question.kind)
        if score is not None:
            answers.append(store.Answer(question, score, iid, item.occurred_at))
            del open_[item.conversation_key]  # one answer per question; what follows is an ordinary message
    store.record_answers(session, answers, crms, now=now)
    if answers:
        log.info("survey answers", answers=len(answers))
    return {a.interaction_id for a in answers}


# ---- 3. scores onto the cases ------------------------------------------------------
class ScoreWriter(Protocol):
    """A CRM connector that sets a survey's score on one of crmhub's cases."""

    name: str

    def set_survey_score(self, record_id: str, kind: str, score: int) -> None: ...


@dataclass(frozen=True)
class ScorePolicy:
    batch_size: int = 50
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=30)


def write_scores(store_: StateStore, writer: ScoreWriter, *, now: datetime,
                 policy: ScorePolicy = ScorePolicy()) -> int:
    """Set the due scores of `writer`'s CRM on their cases; returns how many were written."""
    with store_.transaction() as session:
        due = store.due_scores(session, writer.name, policy.batch_size, now=now)
    outcomes: dict[int, tuple[str, str | None, datetime | None]] = {}
    for write in due:
        try:
            writer.set_survey_score(write.record_id, write.kind, write.score)
            outcomes[write.survey_id] = (store.DONE, None, None)
        except ConnectorError as exc:
            last = isinstance(exc, PermanentError) or write.attempts + 1 >= policy.max_attempts
            reason = f"{write.kind} score onto {writer.name} case {write.record_id}: {exc.for_people}"
            outcomes[write.survey_id] = (store.DEAD if last else store.PENDING, reason,
                                         None if last else now + policy.retry_base * 2 ** write.attempts)
            log.warning("survey score not written", crm=writer.name, case=write.record_id, error=type(exc).__name__,
                        reason=reason[:300], retrying=not last)
    with store_.transaction() as session:
        store.record_scores(session, writer.name, outcomes, now=now)
    return sum(1 for status, _, _ in outcomes.values() if status == store.DONE)


def policy_of(settings: Any) -> SurveyPolicy:
    """The survey policy of `settings.yaml` (the `surveys:` and `languages:` sections)."""
    csat, nps = settings.surveys.csat, settings.surveys.nps
    return SurveyPolicy(
        csat=Question(csat.enabled, frozenset(csat.channels), dict(csat.texts), csat.window,
                      frozenset(csat.queues) if csat.queues is not None else None),
        nps=Question(nps.enabled, frozenset(nps.channels), dict(nps.texts), nps.window, every=nps.every),
        default_language=settings.languages.default)
