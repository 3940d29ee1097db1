"""Wiring of agents' replies: the hub's CRMs and channels to the reply steps of `crmhub.sync.replies`.

One run (`Replier.run`, the scheduler's `replies` job and the end of every
`crmhub sync`) reads new replies from each CRM, sends what is due (survey
questions too), asks the channels about deliveries no callback has settled,
writes failures back onto their cases and survey answers onto theirs. Each CRM's and channel's step runs on its own: one
system's failure is recorded and the others go on. Twilio's status callbacks
reach the reply rows through `on_twilio_status`, given to the webhook receiver.

A CRM may ask for its replies to be read less often than the job runs
(`reply_read_spacing` on the connector, seconds): the daemon's job then
skips its read of that CRM while the last one is younger (Zendesk, whose
export holds back the last minute anyway; issue 13). `crmhub sync` reads
every time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from crmhub import streams
from crmhub.connectors.twilio import REPLY_STATUSES
from crmhub.metrics import Metrics
from crmhub.model import Channel, Delivery
from crmhub.store import StateStore
from crmhub.sync.notes import NoteWriter
from crmhub.sync.surveys import ScoreWriter, write_scores
from crmhub.sync.replies import (
    ChannelSender,
    ReplyPolicy,
    ReplyReport,
    ReplySource,
    collect_replies,
    record_delivery,
    refresh_statuses,
    send_replies,
    write_back_failures,
)
from crmhub.webhooks import MessageStatuses

log = structlog.get_logger("crmhub.replying")
Step = Callable[[str], AbstractContextManager[None]]
TWILIO_CHANNELS = [Channel.SMS, Channel.WHATSAPP]


class ReplyCrm(ReplySource, NoteWriter, ScoreWriter, Protocol):
    """What the replies need of a CRM connector: reading replies, writing notes, setting survey scores."""


class Replier:
    """Runs the reply steps for one hub.

    Args:
        crms: the enabled CRM connectors by name (each reads replies and writes notes).
        senders: the channel connector serving each channel (Twilio: SMS and WhatsApp; X: mentions and DMs).
        owns: whether this process reads a stream now (`Hub.owns`): replies and statuses are read by
            one daemon at a time; sends and write-backs are claimed row by row, by any daemon.
    """

    def __init__(self, store: StateStore, crms: Mapping[str, ReplyCrm], senders: Mapping[Channel, ChannelSender],
                 policy: ReplyPolicy, metrics: Metrics, clock: Callable[[], datetime],
                 owns: Callable[[str], bool] = lambda stream: True) -> None:
        self.store = store
        self.owns = owns  # the periodic reads (replies, statuses) go to one daemon at a time (`crmhub.streams`)
        self.crms = dict(crms)
        self.senders = dict(senders)
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self._statuses = MessageStatuses()  # callbacks of messages that are no reply of ours
        self._read_at: dict[str, datetime] = {}  # CRM -> when the daemon's job last read its replies

    def run(self, step: Step, *, spaced: bool = False) -> ReplyReport:
        """Collect, send, follow and write back; each system's part inside `step(name)`.

        `spaced` (the daemon's job): a CRM's replies are not read again within its `reply_read_spacing`.
        """
        report = ReplyReport()
        for name, crm in self.crms.items():
            if self.owns(streams.replies(name)) and (not spaced or self._read_due(name, crm)):
                with step(f"replies:collect:{name}"):
                    collect_replies(self.store, crm, now=self.clock(), report=report)
        with step("replies:send"):
            send_replies(self.store, self.senders, self.policy, now=self.clock(), report=report)
        for channel, message_id in report.sent_ids:  # callbacks that came before the message id was recorded
            early = self._statuses.get(message_id) if channel in TWILIO_CHANNELS else None
            if early is not None:
                self.on_twilio_status(message_id, early)
        if self.owns(streams.REPLY_STATUSES):
            with step("replies:status"):
                refresh_statuses(self.store, self.senders, self.policy, now=self.clock(), report=report)
        for name, crm in self.crms.items():
            with step(f"replies:write-back:{name}"):
                write_back_failures(self.store, crm, self.senders, now=self.clock(), report=report,
                                    default_language=self.policy.default_language)
            with step(f"surveys:scores:{name}"):
                write_scores(self.store, crm, now=self.clock())
        self.metrics.record_replies(report)
        return report

    def _read_due(self, name: str, crm: ReplyCrm) -> bool:
        """Whether the job reads `name`'s replies now (noted as read when it does)."""
        now, last = self.clock(), self._read_at.get(name)
        spacing = timedelta(seconds=float(getattr(crm, "reply_read_spacing", 0.0)))
        if last is not None and now - last < spacing:
            return False
        self._read_at[name] = now
        return True

    def on_twilio_status(self, sid: str, status: str) -> bool:
        """A signed Twilio status callback: a reply moves forward; False for a repeat or a step back.

        Every status is also kept in memory: one that arrives before the send
        recorded the message id (Twilio is quick) is applied right after it.
        """
        fresh = self._statuses(sid, status)
        reply_status = REPLY_STATUSES.get(status)
        if reply_status is not None:
            moved = record_delivery(self.store, TWILIO_CHANNELS, sid, Delivery(reply_status, status), now=self.clock())
            if moved is not None:
                crm, channel, new = moved
                self.metrics.replies.labels(crm, channel, new).inc()
                return True
        return fresh


def senders_of(twilio: ChannelSender | None, x: ChannelSender | None) -> dict[Channel, ChannelSender]:
    """The channel connector serving each channel crmhub can reply on."""
    senders: dict[Channel, ChannelSender] = {}
    if twilio is not None:
        senders.update({Channel.SMS: twilio, Channel.WHATSAPP: twilio})
    if x is not None:
        senders.update({Channel.X_MENTION: x, Channel.X_DM: x})
    return senders
