"""Twilio preflight: the account, our numbers on it, and where they send their webhooks.

Reads the account (`Accounts/{sid}.json`) and its `IncomingPhoneNumbers.json`
through the connector's twilio client. Each number in `numbers` and
`whatsapp_senders` must be one of the account's; when webhooks are on and
`webhooks.public_url` is set, each number's `SmsUrl` must be crmhub's
`/webhooks/twilio/messages` and, with `calls: true`, its voice
`StatusCallback` crmhub's `/webhooks/twilio/calls`. Without a public URL
crmhub polls only, and no URL is checked. A WhatsApp sender approved on the
WhatsApp Business platform is not listed here by Twilio's API when it is not
also a Twilio number, so a missing sender is named with that in mind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crmhub.check._report import Finding, failed, listed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.twilio import TwilioChannel

SYSTEM = "twilio"
MESSAGES_PATH = "/webhooks/twilio/messages"
CALLS_PATH = "/webhooks/twilio/calls"


def check(channel: TwilioChannel, config: Config, where: Where) -> Iterator[Finding]:
    settings = config.settings.channels.twilio
    assert settings is not None
    account: Any = channel.call("check.account", lambda: channel.sdk.api.v2010.accounts(settings.account_sid).fetch())
    yield passed(SYSTEM, "credentials", f"account {account.friendly_name} ({account.status})")
    numbers = {str(n.phone_number): n for n in channel.call("check.numbers",
                                                              lambda: channel.sdk.incoming_phone_numbers.list())}
    public = config.settings.webhooks.public_url if config.settings.webhooks.enabled else None
    base = str(public).rstrip("/") if public else None
    if base is None:
        yield passed(SYSTEM, "webhook URLs", "not checked: webhooks off or webhooks.public_url unset (polling only)")
    for key, values in (("numbers", settings.numbers), ("whatsapp_senders", settings.whatsapp_senders)):
        for i, phone in enumerate(values):
            found = numbers.get(str(phone))
            if found is None:
                sender = " (a WhatsApp sender that is not a Twilio number cannot be listed; then ignore this)" \
                    if key == "whatsapp_senders" else ""
                yield failed(SYSTEM, f"number {phone}",
                             f"number {phone} named in {where('settings', ('channels', 'twilio', key, i))} is not "
                             f"a phone number of account {settings.account_sid}{sender}",
                             f"buy or port it into this account, or list one of its numbers: "
                             f"{listed(sorted(numbers))}")
                continue
            yield passed(SYSTEM, f"number {phone}", "on the account")
            if base is not None:
                yield from _webhooks(str(phone), found, base, settings.calls and key == "numbers")


def _webhooks(phone: str, number: Any, base: str, calls: bool) -> Iterator[Finding]:
    wanted = [("SmsUrl", "sms_url", base + MESSAGES_PATH, "A message comes in")]
    if calls:
        wanted.append(("StatusCallback", "status_callback", base + CALLS_PATH, "Call status changes"))
    for label, attribute, url, console in wanted:
        actual = str(getattr(number, attribute, "") or "")
        if actual == url:
            yield passed(SYSTEM, f"{label} of {phone}", url)
        else:
            now = f"points at {actual}" if actual else "is empty"
            yield failed(SYSTEM, f"{label} of {phone}",
                         f"the {label} of {phone} {now}, not crmhub's {url}; its webhooks do not reach crmhub "
                         "(the reconcile poll still finds them, minutes later)",
                         f"in the Twilio console (Phone numbers > {phone} > Configure), set \"{console}\" to {url} "
                         "(HTTP POST)")
