"""Wiring of agents' replies: the hub's CRMs and channels to the reply steps of `crmhub.sync.replies`.

One run (`Replier.run`, the scheduler's `replies` job and the end of every
`crmhub sync`) reads new replies from each CRM, sends what is due (survey
questions too), asks the channels about deliveries no callback has settled,
writes failures back onto their cases and survey answers onto theirs. Each CRM's and channel's step runs on its own: one
system's failure is recorded and the others go on. A channel's status callbacks
reach the reply rows through `on_status(channel module, id, status)`, given to
its webhook routes; its module says what each vendor status means.

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
from typing import Any, Protocol

import structlog

from crmhub import streams
from crmhub.channels.contract import ChannelModule
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


class ReplyCrm(ReplySource, NoteWriter, ScoreWriter, Protocol):
    """What the replies need of a CRM connector: reading replies, writing notes, setting survey scores."""


class Replier:
    """Runs the reply steps for one hub.

    Args:
        crms: the enabled CRM connectors by name (each reads replies and writes notes).
        modules: the enabled channel modules by name; `connectors` their built connectors (each module's
            `senders` says which connector replies on which of its channels).
        owns: whether this process reads a stream now (`Hub.owns`): replies and statuses are read by
            one daemon at a time; sends and write-backs are claimed row by row, by any daemon.
    """

    def __init__(self, store: StateStore, crms: Mapping[str, ReplyCrm], modules: Mapping[str, ChannelModule],
                 connectors: Mapping[str, Any], policy: ReplyPolicy, metrics: Metrics, clock: Callable[[], datetime],
                 owns: Callable[[str], bool] = lambda stream: True) -> None:
        self.store = store
        self.owns = owns  # the periodic reads (replies, statuses) go to one daemon at a time (`crmhub.streams`)
        self.crms = dict(crms)
        self.modules = dict(modules)
        self.senders = senders_of(modules, connectors)
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        # Callbacks of messages not known as replies (yet), per channel module.
        self._statuses = {name: MessageStatuses(advances=module.status_advances) for name, module in modules.items()}
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
            send_replies(self.store, self.senders, self.policy, now=self.clock(), report=report,
                         clock=self.clock)
        for channel, message_id in report.sent_ids:  # callbacks that came before the message id was recorded
            source = channel.source
            early = self._statuses[source].get(message_id) if source in self._statuses else None
            if early is not None:
                self.on_status(source, message_id, early)
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

    def on_status(self, source: str, message_id: str, status: str) -> bool:
        """A signed status callback of channel module `source`: a reply moves forward; False for a repeat or a
        step back.

        Every status is also kept in memory: one that arrives before the send
        recorded the message id (Twilio is quick) is applied right after it.
        """
        module = self.modules[source]
        fresh = self._statuses[source](message_id, status)
        reply_status = module.reply_status(status)
        if reply_status is not None:
            moved = record_delivery(self.store, list(module.channels), message_id, Delivery(reply_status, status),
                                    now=self.clock())
            if moved is not None:
                crm, channel, new = moved
                self.metrics.replies.labels(crm, channel, new).inc()
                return True
        return fresh


def senders_of(modules: Mapping[str, ChannelModule], connectors: Mapping[str, Any]) -> dict[Channel, ChannelSender]:
    """The connector serving each channel crmhub can reply on, as the channel modules say."""
    return {channel: sender for name, module in modules.items()
            for channel, sender in module.senders(connectors[name]).items()}
