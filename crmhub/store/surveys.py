"""Surveys in the store: the questions asked on closes, the open ones an inbound message may answer, the scores
to write onto the cases.

Every function takes a whole batch and costs a fixed number of statements
(`among` for the lookups, executemany for the writes), whatever its size.
A question and its `replies` row are inserted in the transaction that
records the close, so a crash either asks both or neither, and the unique
(`kind`, `subject`) makes a repeat (another CRM's close of the same case, the
same page read again) a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from crmhub.model import Direction, ReplyStatus
from crmhub.store import replies
from crmhub.store.ledger import dialect_insert, insert_ignoring_conflicts
from crmhub.store.ledger import latest_inbound as latest_inbound  # the surveys' window reads it here
from crmhub.store.schema import LedgerRow, ReplyRow, SupportCaseRow, SurveyRow, SurveyScoreRow
from crmhub.store.sets import among

ASKED, SKIPPED, ANSWERED = "asked", "skipped", "answered"
PENDING, DONE, DEAD = "pending", "done", "dead"
REPLY_PREFIX = replies.SURVEY_PREFIX  # `replies.reply_ref` of a survey question: survey:<id>
_SCORES = cast(Table, SurveyScoreRow.__table__)
_SENT = (ReplyStatus.SENT.value, ReplyStatus.DELIVERED.value)


def reply_ref(survey_id: int) -> str:
    return f"{REPLY_PREFIX}{survey_id}"


def is_survey(reply_ref_: str) -> bool:
    """Whether a reply row is a survey question (crmhub's own text, not an agent's)."""
    return reply_ref_.startswith(REPLY_PREFIX)


def keyword_messages(session: Session, conversations: Iterable[str], words: Iterable[str]
                     ) -> dict[str, list[tuple[datetime, str]]]:
    """Inbound messages of the conversations that are exactly one of `words` (case and spaces aside), by time."""
    keys = sorted(set(conversations))
    if not keys:
        return {}
    query = (select(LedgerRow.conversation_key, LedgerRow.occurred_at, func.upper(func.trim(LedgerRow.text)))
             .where(among(LedgerRow.conversation_key, keys), LedgerRow.direction == Direction.INBOUND.value,
                    func.upper(func.trim(LedgerRow.text)).in_(sorted(words)))
             .order_by(LedgerRow.occurred_at, LedgerRow.id))
    found: dict[str, list[tuple[datetime, str]]] = {}
    for key, at, word in session.execute(query):
        found.setdefault(key, []).append((at, word))
    return found


def refused_conversations(session: Session, conversations: Iterable[str], channels: Sequence[str]) -> set[str]:
    """Conversations on `channels` where a reply was refused for good (X: the customer closed their DMs)."""
    keys = sorted(set(conversations))
    if not keys:
        return set()
    query = select(ReplyRow.conversation_key).where(
        among(ReplyRow.conversation_key, keys), ReplyRow.channel.in_(list(channels)),
        ReplyRow.status.in_(list(replies.FAILED))).distinct()
    return set(session.scalars(query))


def surveyed_cases(session: Session, conversations: Iterable[str]) -> set[tuple[str, int]]:
    """(conversation, seq) of the conversations' cases that already have a question of any kind."""
    keys = sorted(set(conversations))
    if not keys:
        return set()
    query = select(SurveyRow.conversation_key, SurveyRow.seq).where(among(SurveyRow.conversation_key, keys))
    return {(key, seq) for key, seq in session.execute(query)}


def insert_questions(session: Session, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Insert questions; one already there (same kind and subject) is left alone. Returns the new ids by subject."""
    if not rows:
        return {}
    statement = insert_ignoring_conflicts(session, SurveyRow, rows, ("kind", "subject"))
    return {subject: sid for sid, subject in session.execute(statement.returning(SurveyRow.id, SurveyRow.subject))}


@dataclass(frozen=True)
class Awaiting:
    """A question sent and not answered yet."""

    id: int
    kind: str
    conversation_key: str
    seq: int
    asked_at: datetime
    answer_by: datetime


def awaiting(session: Session, conversations: Iterable[str]) -> dict[str, Awaiting]:
    """Each conversation's newest question that went out and waits for its answer.

    Two lookups by index: the conversations' open questions (`ix_surveys_conversation`), then which of them
    the channel took (`uq_replies_crm_ref`).
    """
    keys = sorted(set(conversations))
    if not keys:
        return {}
    survey = SurveyRow
    rows = session.execute(
        select(survey.id, survey.kind, survey.conversation_key, survey.seq, survey.asked_at, survey.answer_by,
               survey.crm)
        .where(among(survey.conversation_key, keys), survey.status == ASKED)
        .order_by(survey.asked_at, survey.id)).all()
    if not rows:
        return {}
    sent = set(session.execute(select(ReplyRow.crm, ReplyRow.reply_ref).where(
        ReplyRow.crm.in_(sorted({row.crm for row in rows})),
        among(ReplyRow.reply_ref, sorted({reply_ref(row.id) for row in rows})), ReplyRow.status.in_(_SENT))))
    return {row.conversation_key: Awaiting(*row[:6]) for row in rows if (row.crm, reply_ref(row.id)) in sent}


@dataclass(frozen=True)
class Answer:
    survey: Awaiting
    score: int
    interaction_id: int
    answered_at: datetime


def record_answers(session: Session, answers: Sequence[Answer], crms: Sequence[str], *, now: datetime) -> None:
    """The answers onto their questions, and one score write per CRM case of the surveyed case (three statements).

    `crms` are the enabled CRMs: the cases are read by (crm, conversation), along `uq_support_cases_case`.
    """
    if not answers:
        return
    table = cast(Table, SurveyRow.__table__)
    session.connection().execute(
        update(table).where(table.c.id == bindparam("sid"), table.c.status == ASKED)
        .values(status=ANSWERED, score=bindparam("new_score"), answered_at=bindparam("at"),
                answer_id=bindparam("iid")),
        [{"sid": a.survey.id, "new_score": a.score, "at": a.answered_at, "iid": a.interaction_id} for a in answers])
    cases = SupportCaseRow
    wanted = {(a.survey.conversation_key, a.survey.seq): a.survey.id for a in answers}
    rows = session.execute(select(cases.crm, cases.conversation_key, cases.seq, cases.record_id).where(
        cases.crm.in_(list(crms)), among(cases.conversation_key, sorted({key for key, _ in wanted})),
        cases.record_id.is_not(None)))
    scores = [{"survey_id": wanted[(key, seq)], "crm": crm, "record_id": record, "status": PENDING, "attempts": 0,
               "next_attempt_at": now} for crm, key, seq, record in rows if (key, seq) in wanted]
    if scores:
        session.execute(dialect_insert(session)(_SCORES).on_conflict_do_nothing(
            index_elements=["survey_id", "crm"]), scores)


@dataclass(frozen=True)
class ScoreWrite:
    """A score to set on a CRM's case."""

    survey_id: int
    crm: str
    record_id: str
    kind: str
    score: int
    attempts: int


def due_scores(session: Session, crm: str, limit: int, *, now: datetime) -> list[ScoreWrite]:
    """Pending score writes of `crm` that are due (`ix_survey_scores_pending`)."""
    scores = SurveyScoreRow
    query = (select(scores.survey_id, scores.crm, scores.record_id, SurveyRow.kind, SurveyRow.score, scores.attempts)
             .join(SurveyRow, SurveyRow.id == scores.survey_id)
             .where(scores.crm == crm, scores.status == PENDING, scores.next_attempt_at <= now)
             .order_by(scores.next_attempt_at, scores.survey_id).limit(limit))
    return [ScoreWrite(*row) for row in session.execute(query)]


def record_scores(session: Session, crm: str, outcomes: Mapping[int, tuple[str, str | None, datetime | None]], *,
                  now: datetime) -> None:
    """Outcomes by survey: (status, error, retry at); one executemany."""
    if outcomes:
        table = _SCORES
        session.connection().execute(
            update(table).where(table.c.survey_id == bindparam("sid"), table.c.crm == crm)
            .values(status=bindparam("new_status"), attempts=table.c.attempts + 1, last_error=bindparam("error"),
                    next_attempt_at=func.coalesce(bindparam("retry_at", type_=table.c.next_attempt_at.type),
                                                  table.c.next_attempt_at),
                    done_at=bindparam("finished", type_=table.c.done_at.type)),
            [{"sid": sid, "new_status": status, "error": error, "retry_at": retry_at,
              "finished": now if status != PENDING else None}
             for sid, (status, error, retry_at) in outcomes.items()])


def period_of(moment: datetime, every: timedelta) -> int:
    """The NPS period `moment` falls in: periods of `every` counted from 1970-01-01 UTC."""
    return int(moment.timestamp() // every.total_seconds())
