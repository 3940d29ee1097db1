"""WhatsApp's customer service window: free text within 24 hours of the customer's last message, else a template.

WhatsApp takes a business's free-form message only within 24 hours of the
customer's last message to that sender; outside it, only a template Meta
approved (Twilio: error 63016). The engine gives each send when the customer
last wrote (`OutboundMessage.last_inbound_at`, from the ledger, one query per
batch) and when the send was claimed (`asked_at`); this module decides from
them, and picks the first configured template whose languages and variables
fit. The window is taken as closing `MARGIN` early: a webhook's item is
timed when crmhub received it, a little after WhatsApp did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from crmhub.model import OutboundMessage

WINDOW = timedelta(hours=24)
MARGIN = timedelta(minutes=2)


@dataclass(frozen=True)
class Template:
    """An approved template (settings `channels.twilio.whatsapp_templates`)."""

    name: str
    content_sid: str
    variables: Mapping[str, str]  # placeholder number -> field (customer_name, case_id)
    languages: tuple[str, ...] = ()


def window_open(message: OutboundMessage) -> bool:
    """Whether free text may go to the customer now (they wrote less than 24 hours ago, less the margin)."""
    if message.last_inbound_at is None or message.asked_at is None:
        return False
    return message.asked_at - message.last_inbound_at < WINDOW - MARGIN


def fitting(templates: Sequence[Template], message: OutboundMessage,
            default_language: str | None = None) -> tuple[Template, str] | None:
    """The first template that fits the reply, with its ContentVariables (JSON); None when none fits.

    A template fits when every one of its variables has a value for this reply and it is written in the
    conversation's language or names none; failing that, one in `default_language` (settings
    `languages.default`, as the failed-reply note falls back).
    """
    values = {"customer_name": message.customer_name.strip(), "case_id": message.case_id.strip()}
    for wanted in (message.language, default_language):
        for template in templates:
            if template.languages and wanted not in template.languages:
                continue
            filled = {number: values.get(field, "") for number, field in template.variables.items()}
            if all(filled.values()):
                return template, json.dumps(filled, ensure_ascii=False, sort_keys=True)
    return None


def closed_reason(templates: Sequence[Template], message: OutboundMessage) -> str:
    """Why a reply outside the window was not sent, and what the agent or admin can do."""
    when = ("the customer has never written on WhatsApp from this number" if message.last_inbound_at is None
            else "the customer last wrote more than 24 hours ago")
    if message.survey:
        return f"WhatsApp's 24-hour window is closed ({when}); survey questions are only sent inside it"
    if not templates:
        why = ("no approved template is configured: add one under channels.twilio.whatsapp_templates in "
               "settings.yaml")
    else:
        why = (f"none of the configured templates ({', '.join(t.name for t in templates)}) fits this conversation "
               "(none in its language, or a value a variable needs, such as the customer's name, is unknown)")
    return (f"WhatsApp's 24-hour window is closed ({when}) and WhatsApp then takes only approved templates; {why}. "
            "The reply was not sent: send it again once the customer writes, or reach them another way")
