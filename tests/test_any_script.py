"""Any script end to end (issue 19): right-to-left, Cyrillic, CJK, emoji and combining marks land byte for byte.

Each message goes in through the Twilio emulator and out through the real
SDKs into the three CRM emulators; what each CRM holds is compared with what
the customer wrote, code point for code point (no normalisation on the way).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import zendesk_bodies

OURS = "+14155550100"
TEXTS = {
    "+14155550131": "مرحبا، أين طلبي؟ \u200f(رقم 42)",  # Arabic, with a right-to-left mark
    "+14155550132": "Здравствуйте, где мой заказ? Ёё",  # Cyrillic
    "+14155550133": "你好，我的订单在哪里？𠮟",  # CJK, one character outside the BMP
    "+14155550134": "👩‍👩‍👧 🇹🇷 👍🏽 ok",  # emoji: a ZWJ family, a flag, a skin tone
    "+14155550135": "नमस्ते, मेरा ऑर्डर कहाँ है? e\u0301 \u1100\u1161",  # Devanagari, a combining acute, NFD Hangul
    "+14155550136": "سلام، سفارش من کجاست؟ می‌خواهم",  # Persian, with a zero-width non-joiner
}


def _every_crm(salesforce: EmulatorServer, zendesk: EmulatorServer, hubspot: EmulatorServer,
               twilio: EmulatorServer, directory: Path, texts: dict[str, str]) -> Path:
    """The org's queues, our number, one SMS per sender a minute apart, and settings for all three CRMs."""
    sf: Any = salesforce.emulator
    tw: Any = twilio.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(hours=1)
    for n, (sender, text) in enumerate(texts.items()):
        tw.receive_message(sender, OURS, text, at=start + timedelta(minutes=n))
    urls = {"salesforce": salesforce.url, "zendesk": zendesk.url, "hubspot": hubspot.url, "twilio": twilio.url}
    return write_sandbox_settings(directory, urls, enabled=("salesforce", "zendesk", "hubspot", "twilio"))


def test_a_message_in_each_script_lands_intact_in_every_crm(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    settings = _every_crm(salesforce_sandbox, zendesk_sandbox, hubspot_sandbox, twilio_sandbox, tmp_path, TEXTS)
    with build_hub(load_config(settings)) as hub:
        report = hub.sync_once()
    assert [d.delivered for d in report.deliveries] == [len(TEXTS)] * 3

    assert sorted(t["Description"] for t in sf.records("Task")) == sorted(TEXTS.values())
    zendesk = [body for ticket in zd.tickets() for body in zendesk_bodies(zd, ticket["id"])]
    assert all(zendesk.count(text) == 1 for text in TEXTS.values()), zendesk
    bodies = sorted(m["properties"]["hs_communication_body"] for m in hs.objects("communications"))
    assert bodies == sorted(TEXTS.values())


HISTORY = """\
salesforce:
  task: { Subject: "{channel_label} {direction} from {sender}", Description: "{text}" }
  case: { Subject: "{channel_label} conversation with {sender}", Origin: "{channel_label}", Language__c: "{language}" }
zendesk:
  ticket: { subject: "{channel_label} conversation with {sender}", "custom_field:360001234": "{language}" }
hubspot:
  ticket: { subject: "{channel_label} conversation with {sender}", customer_language: "{language}" }
"""


def test_the_detected_language_lands_on_each_crms_case_through_the_mapped_field(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    zd: Any = zendesk_sandbox.emulator
    hs: Any = hubspot_sandbox.emulator
    sf.define_field("Case", "Language__c", "string")
    hs.define_property("tickets", "customer_language")
    said = {"+14155550141": ("aboneliğimi iptal etmek istiyorum", "tr"),
            "+14155550142": ("Можете перезвонить мне завтра?", "ru"),
            "+14155550143": ("我想取消订阅", "zh")}
    settings = _every_crm(salesforce_sandbox, zendesk_sandbox, hubspot_sandbox, twilio_sandbox, tmp_path,
                          {sender: text for sender, (text, _) in said.items()})
    settings.write_text(settings.read_text() + "languages:\n  expected: [en, tr, ru, zh]\n")
    (tmp_path / "mappings" / "history.yaml").write_text(HISTORY)
    with build_hub(load_config(settings)) as hub:
        report = hub.sync_once()
    assert [d.delivered for d in report.deliveries] == [3, 3, 3]
    expected = sorted(code for _, code in said.values())
    assert sorted(c["Language__c"] for c in sf.records("Case")) == expected
    assert sorted(f["value"] for t in zd.tickets() for f in t["custom_fields"] if f["id"] == 360001234) == expected
    assert sorted(t["properties"]["customer_language"] for t in hs.objects("tickets")) == expected
