"""Twilio as a channel module: SMS, WhatsApp and calls of one account (`channels.twilio`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from crmhub.channels.contract import Attachment, ChannelModule, PagesFn, StatusFn
from crmhub.channels.twilio.hooks import TwilioHooks
from crmhub.config import Config
from crmhub.connectors._retry import Retrier
from crmhub.connectors.twilio import REPLY_STATUSES, ReconcileWindow, TwilioChannel, conversation_key
from crmhub.connectors.twilio_hooks import status_advances
from crmhub.connectors.whatsapp_window import Template
from crmhub.model import Channel, CodeRoute, Identity, IdentityKind, ReplyStatus
from crmhub.sync.replies import ChannelSender

CODE_TEXT = ("Your code is {code}. Reply with it from this phone to link it with the conversation you mentioned it "
             "in. If that was not you, ignore this message.")


class TwilioModule(ChannelModule):
    name = "twilio"
    credentials_fix = "check channels.twilio.account_sid and auth_token (Twilio console > Account info)"

    def build(self, config: Config, retrier: Retrier) -> TwilioChannel:
        twilio = self.settings(config)
        public_url = config.settings.webhooks.public_url if config.settings.webhooks.enabled else None
        return TwilioChannel(account_sid=twilio.account_sid,
                             auth_token=config.secret("channels.twilio.auth_token").get_secret_value(),
                             base_url=twilio.base_url, default_region=twilio.default_region,
                             page_size=twilio.page_size, overlap=twilio.overlap, retrier=retrier,
                             status_callback=f"{str(public_url).rstrip('/')}/webhooks/twilio/status"
                             if public_url else None,
                             whatsapp_templates=[Template(t.name, t.content_sid, dict(t.variables), tuple(t.languages))
                                                 for t in twilio.whatsapp_templates],
                             default_language=config.settings.languages.default)

    def block_problems(self, block: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
        if block.get("numbers") or block.get("whatsapp_senders"):
            return []
        return [((), "no numbers; list your Twilio numbers under numbers (e.g. numbers: [\"+14155550100\"]) or "
                     "whatsapp_senders")]

    def attach(self, connector: TwilioChannel, wiring: Attachment) -> None:
        connector.window = reconcile_window(self.settings(wiring.config), wiring.monotonic)
        connector.known = wiring.known

    def streams(self, block: Any) -> list[str]:
        return ["messages", "calls"] if block.calls else ["messages"]

    def pages(self, connector: TwilioChannel) -> Mapping[str, PagesFn]:
        return {"messages": connector.message_pages, "calls": connector.call_pages}

    def partition(self, connector: TwilioChannel) -> str:
        return connector.account_sid

    def hooks(self, config: Config, connector: TwilioChannel | None, on_status: StatusFn | None) -> TwilioHooks:
        public_url = config.settings.webhooks.public_url
        statuses = on_status if on_status is not None else _memory()
        return TwilioHooks(config.secret("channels.twilio.auth_token").get_secret_value(),
                           public_url=str(public_url) if public_url else None, on_status=statuses,
                           default_region=self.settings(config).default_region)

    def webhook_outcome(self, connector: TwilioChannel, route: str, outcome: str) -> None:
        if route == "twilio.messages":  # the message webhooks' health sets how far the reconcile poll re-reads
            connector.window.webhook(outcome)

    def senders(self, connector: TwilioChannel) -> Mapping[Channel, ChannelSender | Any]:
        return {Channel.SMS: connector, Channel.WHATSAPP: connector}

    def reply_status(self, status: str) -> ReplyStatus | None:
        return REPLY_STATUSES.get(status)

    def status_advances(self, previous: str | None, status: str) -> bool:
        return status_advances(previous, status)

    def own_identities(self, block: Any) -> set[Identity]:
        return {Identity(IdentityKind.PHONE, n) for n in (*block.numbers, *block.whatsapp_senders)}

    def code_routes(self, block: Any) -> list[CodeRoute]:
        """A claimed phone gets its code by SMS from our first number (`IdentityGraph` prefers the number the
        claim came in on)."""
        if not (block.enabled and block.numbers):
            return []
        return [CodeRoute(IdentityKind.PHONE, Channel.SMS, Identity(IdentityKind.PHONE, block.numbers[0]), CODE_TEXT,
                          lambda ours, target, _key: conversation_key(Channel.SMS, ours, target))]


def reconcile_window(twilio: Any, clock: Any) -> ReconcileWindow:
    """The message poll's overlap: in full, or, while the webhooks are healthy, two poll intervals
    (a minute at least; never more than `overlap`)."""
    quiet = min(twilio.overlap, max(2 * twilio.poll_every, timedelta(minutes=1)))
    return ReconcileWindow(full=twilio.overlap, quiet=quiet, clock=clock)


def _memory() -> StatusFn:
    from crmhub.webhooks import MessageStatuses

    return MessageStatuses(advances=status_advances)


MODULE = TwilioModule()
