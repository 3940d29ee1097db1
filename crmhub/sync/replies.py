"""Agent replies: read them from each CRM by cursor, send them over the customer's channel, follow them.

Four steps, each safe to repeat and each on its own (one CRM or channel
failing holds up no other):

1. `collect_replies`: a CRM's public agent replies since its cursor (stream
   `replies`). Only replies on crmhub's own cases count (the case is in
   `threads`); where each one goes comes from its conversation in the
   ledger: the channel, our side (the number, WhatsApp sender or X account the
   customer wrote to) and the customer. New rows are inserted once per
   (CRM, reply) and the cursor advances in the same transaction.
2. `send_replies`: claim due rows with a lease, send each through its
   channel, record the channel's message id and the sent copy (the "echo")
   in the ledger. A transient failure retries with backoff; a permanent one
   (an invalid number, X refusing the DM) is a dead reply. Never twice: after
   a try whose outcome is unknown (a timeout, a crash), the next try first
   asks the channel for a message sent since the first claim with the same
   text, and sends only if there is none. When the channel says something
   stood in for the reply (WhatsApp's template outside its window), the
   reply is `held` instead: `release_held` makes it due again once the
   customer writes back in the conversation, or gives it up after
   `ReplyPolicy.hold_for` (then step 4 notes it).
3. `refresh_statuses`: ask the channel again about sent replies no status
   callback has settled (Twilio), statuses only moving forward.
4. `write_back_failures`: a failed or dead reply becomes a dead letter and an
   internal note on its case naming the error and the fix, once.

The echo of a sent reply reaches the ledger like any outbound item, and so
every CRM's history, except the CRM the reply came from: the routing step
(`process.py`) marks that CRM's write done, since the agent's own comment is
already there (matched by the channel message id recorded here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crmhub.channels import registry
from crmhub.errors import AuthError, ConnectorError, PermanentError, TransientError
from crmhub.errors import Timeout as UnknownOutcome
from crmhub.model import (
    REPLY_STATUS_RANK,
    AgentReply,
    CaseNote,
    Channel,
    Delivery,
    Direction,
    OutboundMessage,
    ReplyPage,
    ReplyStatus,
    SentMessage,
)
from crmhub.store import StateStore, ledger
from crmhub.store import replies as store
from crmhub.store.schema import ThreadRow
from crmhub.store.surveys import is_survey
from crmhub.sync.notes import NoteOutcome, NoteWriter, put_note
from crmhub.sync.renewal import LeaseRenewal
from crmhub.texts import DEFAULT_LANGUAGE, pick

log = structlog.get_logger("crmhub.replies")
STREAM = "replies"
# Channels crmhub can answer in writing; a call conversation has none.
WRITABLE = frozenset(Channel(value) for value in registry.writable_values())  # the channel modules say
THREADED = frozenset(Channel(value) for value in registry.threaded_values())  # replies that name what they answer


class ReplySource(Protocol):
    """A CRM connector that reads agents' public replies."""

    name: str

    def reply_pages(self, cursor: str | None, *, start: datetime) -> Iterator[ReplyPage]:
        """Replies since `cursor` (None: since `start`), page by page, oldest first."""
        ...


class ChannelSender(Protocol):
    """A channel connector that sends replies and, if `tracks_delivery`, reports their delivery."""

    name: str
    tracks_delivery: bool

    def send(self, message: OutboundMessage) -> SentMessage: ...

    def delivery(self, message_id: str) -> Delivery: ...


@dataclass(frozen=True)
class ReplyPolicy:
    """Batching, leases, retries and status polling of replies."""

    batch_size: int = 20
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    max_claims: int = 10  # claims cut short in a row (the daemon stopped holding the reply) before it is dead
    retry_base: timedelta = timedelta(seconds=30)
    status_every: timedelta = timedelta(minutes=2)
    status_give_up: timedelta = timedelta(days=3)
    status_batch: int = 50
    default_language: str = DEFAULT_LANGUAGE  # settings `languages.default`: the note's language when unknown
    # A reply held behind its stand-in (a template) waits this long for the customer to write back, then is
    # given up with a note on the case (docs/channels.md "WhatsApp's 24-hour window").
    hold_for: timedelta = timedelta(days=7)


@dataclass
class ReplyReport:
    """What one run of the reply steps did; `moves` counts replies entering a status, by (crm, channel, status)."""

    collected: Counter[str] = field(default_factory=Counter)  # crm -> new replies
    ignored: Counter[str] = field(default_factory=Counter)  # crm -> replies not on crmhub's cases
    sent: int = 0
    retrying: int = 0
    dead: int = 0
    noted: int = 0
    moves: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    sent_ids: list[tuple[Channel, str]] = field(default_factory=list)  # (channel, message id) sent in this run

    def moved(self, crm: str, channel: str, status: ReplyStatus) -> None:
        self.moves[(crm, channel, status.value)] += 1

    def lines(self) -> list[str]:
        """What the run did, for `crmhub sync` (nothing when it did nothing)."""
        out = [f"replies from {crm}: {self.collected[crm]} new, {self.ignored[crm]} not on crmhub's cases"
               for crm in sorted(set(self.collected) | set(self.ignored)) if self.collected[crm] or self.ignored[crm]]
        if self.sent or self.retrying or self.dead:
            out.append(f"replies sent: {self.sent}, {self.retrying} to retry, {self.dead} dead")
        if self.noted:
            out.append(f"replies written back to their case as not delivered: {self.noted}")
        return out


# ---- 1. collect ----------------------------------------------------------------
def collect_replies(store_: StateStore, source: ReplySource, *, now: datetime,
                    report: ReplyReport | None = None) -> ReplyReport:
    """Read `source`'s agent replies since its cursor into the replies table, once each."""
    report = report or ReplyReport()
    with store_.transaction() as session:
        cursor = ledger.load_cursor(session, source.name, STREAM)
        # Where the very first read starts (`ix_threads_opened`); once a cursor exists it is not needed.
        start = (None if cursor is not None else
                 session.scalar(select(func.min(ThreadRow.opened_at)).where(ThreadRow.crm == source.name)))
    if cursor is None and start is None:
        return report  # crmhub has opened no case there yet: no reply can be ours
    for page in source.reply_pages(cursor, start=start or now):
        with store_.transaction() as session:
            rows = []
            for reply in page.replies:
                row = _reply_row(session, reply, now)
                if row is None:
                    report.ignored[source.name] += 1
                else:
                    rows.append(row)
            new = store.insert(session, rows)
            if page.cursor:
                ledger.save_cursor(session, source.name, STREAM, "", page.cursor, now=now)
        report.collected[source.name] += len(new)
        for channel in new:
            report.moved(source.name, channel, ReplyStatus.PENDING)
    with store_.transaction() as session:
        ledger.touch_cursors(session, source.name, [STREAM], now=now)
    log.info("replies collected", crm=source.name, new=report.collected[source.name],
             ignored=report.ignored[source.name])
    return report


def _reply_row(session: Session, reply: AgentReply, now: datetime) -> dict[str, Any] | None:
    """The row to insert for a reply on one of crmhub's cases; None for a case that is not crmhub's."""
    thread = session.scalar(select(ThreadRow).where(ThreadRow.crm == reply.crm, ThreadRow.record_id == reply.case_id))
    if thread is None or not reply.text.strip():
        return None
    return addressed_reply(session, thread.conversation_key, crm=reply.crm, reply_ref=reply.reply_ref,
                           case_id=reply.case_id, text=reply.text, author=reply.author,
                           written_at=reply.written_at, now=now)


def addressed_reply(session: Session, conversation_key: str, *, crm: str, reply_ref: str, case_id: str, text: str,
                    author: str, written_at: datetime, now: datetime) -> dict[str, Any] | None:
    """A `replies` row answering the conversation where the customer last wrote, from our side of it.

    None when the ledger holds nothing of the conversation. Used for agents' CRM replies and the panel's.
    """
    latest = store.latest_of_conversation(session, conversation_key)
    if latest is None:
        return None
    item = ledger.to_interaction(latest)
    ours = item.recipient if item.direction is Direction.INBOUND else item.sender
    customer = item.customer
    answering = item.external_id if item.channel in THREADED and item.direction is Direction.INBOUND else None
    return {
        "crm": crm, "reply_ref": reply_ref[:128], "case_id": case_id,
        "conversation_key": conversation_key, "channel": item.channel.value,
        "to_kind": customer.kind.value, "to_address": customer.value,
        "from_kind": ours.kind.value, "from_address": ours.value, "in_reply_to": answering,
        "text": text, "author": author[:255], "status": ReplyStatus.PENDING.value, "channel_status": "",
        "attempts": 0, "next_attempt_at": now, "written_at": written_at, "created_at": now, "status_at": now,
    }


# ---- 2. send -------------------------------------------------------------------
def send_replies(store_: StateStore, senders: Mapping[Channel, ChannelSender], policy: ReplyPolicy, *,
                 now: datetime, report: ReplyReport | None = None,
                 clock: Callable[[], datetime] | None = None) -> ReplyReport:
    """Send every due reply through its channel, batch after batch, until none is due.

    A batch's lease is renewed while its replies go out (`crmhub.sync.renewal`; a sender paced at a segment
    a second can outlast it), so no other daemon claims a reply still being sent. `clock` times the
    renewals (None: `now` throughout, so the lease stays where the claim put it).
    """
    report = report or ReplyReport()
    release_held(store_, policy, now=now, report=report)
    while True:
        with store_.transaction() as session:
            claims = store.claim_due(session, policy.batch_size, now=now, lease=policy.lease)
        renewal = LeaseRenewal(store_, store.renew, {c.reply_id: c.lease_until for c in claims if c.lease_until},
                               lease=policy.lease, clock=clock or (lambda: now), what="replies",
                               crm=",".join(sorted({c.crm for c in claims})),
                               keys={c.reply_id: c.message.key for c in claims})
        with renewal:
            for claim in claims:
                if claim.claims > policy.max_claims:
                    with renewal.settling([claim.reply_id]), store_.transaction() as session:
                        _stopped_too_often(session, claim, report, now=now)
                    continue
                outcome = _send(senders, claim)
                with renewal.settling([claim.reply_id]), store_.transaction() as session:
                    _record(session, claim, outcome, policy, report, now=now)
        if len(claims) < policy.batch_size:
            return report


def release_held(store_: StateStore, policy: ReplyPolicy, *, now: datetime, report: ReplyReport) -> None:
    """Held replies: due again once the customer has written back; given up after `policy.hold_for`.

    One statement each, however many replies are held (no query per reply).
    """
    days = policy.hold_for.total_seconds() / 86400
    reason = (f"the customer did not write back within {days:g} days of the message that stood in for this reply "
              "(outside the channel's window): it was never sent; send the answer again when they next write")
    with store_.transaction() as session:
        released = store.release_held(session, now=now)
        given_up = store.give_up_held(session, reason, now=now, older_than=now - policy.hold_for)
    for crm, channel in released:
        report.moved(crm, channel, ReplyStatus.PENDING)
    for crm, channel in given_up:
        report.dead += 1
        report.moved(crm, channel, ReplyStatus.DEAD)
    if released or given_up:
        log.info("held replies", released=len(released), given_up=len(given_up))


def _stopped_too_often(session: Session, claim: store.Claim, report: ReplyReport, *, now: datetime) -> None:
    """A reply whose every claim ended with the daemon gone (it may crash it): dead, not sent again."""
    stopped = claim.claims - 1
    reason = (f"not sent again: the daemon stopped while sending it {stopped} times in a row (killed, crashed or "
              "shut down before the channel answered); an earlier try may have reached the customer")
    store.mark_dead(session, claim.reply_id, reason, now=now, attempted=False)
    report.dead += 1
    report.moved(claim.crm, claim.message.channel.value, ReplyStatus.DEAD)
    log.error("reply dead: the daemon stopped while sending it too often", reply=claim.message.key, claims=stopped)


def _send(senders: Mapping[Channel, ChannelSender], claim: store.Claim) -> SentMessage | Exception:
    message = claim.message
    if message.channel not in WRITABLE:
        return PermanentError(f"the conversation is a {message.channel.label.lower()}: crmhub cannot send a written "
                              "reply into it; call the customer back or write to them on another channel")
    sender = senders.get(message.channel)
    if sender is None:
        return PermanentError(f"channel {message.channel.label} is not enabled in settings.yaml; enable it, then "
                              "replay the dead letter (`crmhub deadletters replay ID`)")
    try:
        return sender.send(message)
    except ConnectorError as exc:
        return exc


def _record(session: Session, claim: store.Claim, outcome: SentMessage | Exception, policy: ReplyPolicy,
            report: ReplyReport, *, now: datetime) -> None:
    message = claim.message
    channel = message.channel.value
    if isinstance(outcome, SentMessage) and outcome.stood_in:
        store.mark_held(session, claim.reply_id, outcome.message_id, now=now)
        if outcome.echo is not None:
            ledger.ingest_page(session, [outcome.echo], now=now)
        report.moved(claim.crm, channel, ReplyStatus.HELD)
        log.info("reply held: something stood in for it", reply=message.key, channel=channel,
                 message=outcome.message_id, found_earlier=outcome.found_earlier)
        return
    if isinstance(outcome, SentMessage):
        store.mark_sent(session, claim.reply_id, outcome.message_id, outcome.status, now=now)
        if outcome.echo is not None:
            ledger.ingest_page(session, [outcome.echo], now=now)
        report.sent += 1
        if outcome.message_id:
            report.sent_ids.append((message.channel, outcome.message_id))
        report.moved(claim.crm, channel, max(outcome.status, ReplyStatus.SENT, key=REPLY_STATUS_RANK.__getitem__))
        log.info("reply sent", reply=message.key, channel=channel, message=outcome.message_id,
                 found_earlier=outcome.found_earlier)
        return
    reason = _for_people(outcome)
    # A try that may have gone out keeps the reply `sending`, so the next one checks the channel first.
    uncertain = isinstance(outcome, UnknownOutcome) or claim.uncertain
    # A refused login or a 429 is no fault of this reply: wait like a transient failure.
    retry = isinstance(outcome, TransientError | AuthError)
    if retry and claim.attempts < policy.max_attempts:
        store.mark_retry(session, claim.reply_id, reason, uncertain=uncertain,
                         retry_at=now + policy.retry_base * 2 ** (claim.attempts - 1))
        report.retrying += 1
    else:
        if uncertain:
            reason += " (an earlier try timed out: it may have reached the customer)"
        store.mark_dead(session, claim.reply_id, reason, now=now)
        report.dead += 1
        report.moved(claim.crm, channel, ReplyStatus.DEAD)
    log.warning("reply not sent", reply=message.key, channel=channel, error=type(outcome).__name__,
                reason=reason[:300], retrying=retry and claim.attempts < policy.max_attempts)


def _for_people(exc: Exception) -> str:
    return exc.for_people if isinstance(exc, ConnectorError) else str(exc)


# ---- 3. delivery statuses --------------------------------------------------------
def refresh_statuses(store_: StateStore, senders: Mapping[Channel, ChannelSender], policy: ReplyPolicy, *,
                     now: datetime, report: ReplyReport | None = None) -> ReplyReport:
    """Ask the channels about sent replies whose delivery no callback has settled yet."""
    report = report or ReplyReport()
    tracked = [channel.value for channel, sender in senders.items() if sender.tracks_delivery]
    with store_.transaction() as session:
        rows = [(r.id, r.crm, Channel(r.channel), str(r.channel_message_id))
                for r in store.to_check(session, tracked, policy.status_batch, now=now, every=policy.status_every,
                                        give_up_after=policy.status_give_up)]
    for reply_id, crm, channel, message_id in rows:
        try:
            delivery = senders[channel].delivery(message_id)
        except ConnectorError as exc:
            log.warning("delivery status not read", channel=channel.value, message=message_id,
                        error=type(exc).__name__, reason=str(exc)[:200])
            continue
        with store_.transaction() as session:
            moved = store.record_status(session, [channel.value], message_id, delivery.status, now=now,
                                        channel_status=delivery.channel_status, error=delivery.error)
            if moved is None:
                store.touch(session, reply_id, now=now)
            else:
                report.moved(crm, channel.value, delivery.status)
    return report


def record_delivery(store_: StateStore, channels: list[Channel], message_id: str, delivery: Delivery, *,
                    now: datetime) -> tuple[str, str, str] | None:
    """A status callback: move the reply forward; (crm, channel, status) when it moved, else None."""
    with store_.transaction() as session:
        moved = store.record_status(session, [c.value for c in channels], message_id, delivery.status, now=now,
                                    channel_status=delivery.channel_status, error=delivery.error)
        return None if moved is None else (moved.crm, moved.channel, moved.status)


# ---- 4. write back failures ------------------------------------------------------
@dataclass(frozen=True)
class _Failure:
    reply_id: int
    reply_ref: str
    case_id: str
    channel: Channel
    status: ReplyStatus
    to_address: str
    message_id: str | None
    reason: str | None
    language: str | None = None  # the conversation's, so the note speaks the language of the agents it routed to


def write_back_failures(store_: StateStore, writer: NoteWriter, senders: Mapping[Channel, ChannelSender], *,
                        now: datetime, limit: int = 50, report: ReplyReport | None = None,
                        default_language: str = DEFAULT_LANGUAGE) -> ReplyReport:
    """Each failed or dead reply of `writer`'s CRM: a dead letter, then an internal note on its case, once.

    The note is in the conversation's language (`crmhub.texts.pick`), else `default_language`.
    """
    report = report or ReplyReport()
    with store_.transaction() as session:
        rows = store.failures_to_note(session, writer.name, limit)
        languages = ledger.conversation_languages(session, {r.conversation_key for r in rows})
        failures = [_Failure(r.id, r.reply_ref, r.case_id, Channel(r.channel), ReplyStatus(r.status), r.to_address,
                             r.channel_message_id, r.last_error, languages.get(r.conversation_key))
                    for r in rows]
    for failure in failures:
        reason = failure.reason or _ask_why(senders.get(failure.channel), failure.message_id)
        with store_.transaction() as session:
            ledger.add_dead_letter(session, f"reply:{writer.name}", failure.reply_ref,
                                   f"{writer.name}:{failure.reply_ref} -> {failure.channel.value}: {reason}",
                                   {"reply_id": failure.reply_id}, now=now)
            if is_survey(failure.reply_ref):  # crmhub's own question: no agent waits for a note about it
                store.mark_noted(session, failure.reply_id, now=now, error=reason)
                continue
        note = CaseNote(case_id=failure.case_id, key=f"crmhub-reply:{writer.name}:{failure.reply_ref}",
                        text=_note_text(failure, reason, default_language))
        outcome = put_note(writer, note, about=f"reply {failure.reply_ref}")
        if outcome is NoteOutcome.RETRY:  # the next run tries again
            continue
        if outcome is NoteOutcome.REFUSED:  # the dead letter stays; do not try this note for ever
            with store_.transaction() as session:
                store.mark_noted(session, failure.reply_id, now=now)
            continue
        with store_.transaction() as session:
            store.mark_noted(session, failure.reply_id, now=now, error=reason)
        report.noted += 1
    return report


def _ask_why(sender: ChannelSender | None, message_id: str | None) -> str:
    """Why the channel could not deliver a message, asking it once (a status callback carries no reason)."""
    if sender is not None and message_id is not None and sender.tracks_delivery:
        try:
            error = sender.delivery(message_id).error
        except ConnectorError as exc:
            error = None
            log.warning("failure reason not read", message=message_id, error=type(exc).__name__)
        if error:
            return error
    return "the channel reported the message undelivered and gave no reason"


# The note after a failed reply, per language: (template, "could not be delivered", "was not sent", "the customer").
NOTE_TEXTS: dict[str, tuple[str, str, str, str]] = {
    "en": ("crmhub: the reply above {outcome} to {to} over {channel}; the customer has not received it.\n"
           "Reason: {reason}\n"
           "(crmhub dead letter for reply {ref}; see `crmhub deadletters list --source reply`.)",
           "could not be delivered", "was not sent", "the customer"),
    "es": ("crmhub: la respuesta anterior {outcome} a {to} por {channel}; el cliente no la ha recibido.\n"
           "Motivo: {reason}\n"
           "(carta muerta de crmhub para la respuesta {ref}; ver `crmhub deadletters list --source reply`.)",
           "no se pudo entregar", "no se envió", "el cliente"),
    "fr": ("crmhub : la réponse ci-dessus {outcome} à {to} par {channel} ; le client ne l'a pas reçue.\n"
           "Raison : {reason}\n"
           "(lettre morte crmhub pour la réponse {ref} ; voir `crmhub deadletters list --source reply`.)",
           "n'a pas pu être remise", "n'a pas été envoyée", "le client"),
    "de": ("crmhub: Die Antwort oben {outcome} an {to} über {channel}; der Kunde hat sie nicht erhalten.\n"
           "Grund: {reason}\n"
           "(crmhub-Dead-Letter für Antwort {ref}; siehe `crmhub deadletters list --source reply`.)",
           "konnte nicht zugestellt werden", "wurde nicht gesendet", "den Kunden"),
    "pt": ("crmhub: a resposta acima {outcome} para {to} por {channel}; o cliente não a recebeu.\n"
           "Motivo: {reason}\n"
           "(dead letter do crmhub para a resposta {ref}; veja `crmhub deadletters list --source reply`.)",
           "não pôde ser entregue", "não foi enviada", "o cliente"),
    "tr": ("crmhub: yukarıdaki yanıt {channel} üzerinden {to} alıcısına {outcome}; müşteri yanıtı almadı.\n"
           "Neden: {reason}\n"
           "(yanıt {ref} için crmhub dead letter kaydı; bkz. `crmhub deadletters list --source reply`.)",
           "teslim edilemedi", "gönderilmedi", "müşteri"),
    "ru": ("crmhub: ответ выше {outcome} ({to}, {channel}); клиент его не получил.\n"
           "Причина: {reason}\n"
           "(dead letter crmhub для ответа {ref}; см. `crmhub deadletters list --source reply`.)",
           "не удалось доставить", "не был отправлен", "клиент"),
}


def _note_text(failure: _Failure, reason: str, default_language: str = DEFAULT_LANGUAGE) -> str:
    """The note in the conversation's language, else the default (`crmhub.texts.pick` chooses)."""
    code = pick({code: code for code in NOTE_TEXTS}, failure.language, default_language)
    template, failed, unsent, customer = NOTE_TEXTS[code]
    to = failure.to_address if failure.channel in (Channel.SMS, Channel.WHATSAPP) else customer
    outcome = failed if failure.status is ReplyStatus.FAILED else unsent
    return template.format(outcome=outcome, to=to, channel=failure.channel.label, reason=reason,
                           ref=failure.reply_ref)
