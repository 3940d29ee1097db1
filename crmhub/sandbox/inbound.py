"""`crmhub sandbox inbound`: play a customer against a running sandbox, over HTTP.

Each kind is one `POST /_sandbox/...` seed action of the Twilio, X or Meta
emulator or the mail server (docs/sandbox/twilio.md, x.md, meta.md, mail.md);
the emulator then delivers the item as the real service would: to the
number's webhook URL, the Account Activity webhook or the Meta app's callback
URL when one is set, and in any case to the API lists crmhub polls; an email
lands in the support mailbox, where IMAP finds it. A customer the emulator
does not know yet (a phone number, an X handle, a Messenger name, an email
address) needs no setup. Our side defaults to the embedded settings' first
number, WhatsApp sender, X account, Page (or its Instagram account) and
support address, which `crmhub sandbox` seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from ruamel.yaml import YAML

from crmhub.config import DEFAULT_SETTINGS
from crmhub.sandbox.runner import SandboxError, fixed_ports

KINDS = ("sms", "whatsapp", "call", "x-mention", "x-dm", "messenger", "instagram", "email")
WHATSAPP = "whatsapp:"
SUPPORT_ADDRESS = "support@crmhub.test"  # the sandbox mail server's account (crmhub.sandbox.mail.DEFAULT_ADDRESS)


@dataclass(frozen=True)
class Played:
    """What the sandbox made of it: the API, the item's id, and a line for people."""

    api: str
    item_id: str
    line: str


def play_inbound(kind: str, sender: str, text: str | None, *, to: str | None = None, subject: str | None = None,
                 base_port: int | None = None, timeout: float = 10.0) -> Played:
    """Send one customer item to the sandbox on `base_port` (default 8700); raises SandboxError on any problem."""
    if kind not in KINDS:
        raise SandboxError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind != "call" and not (text or "").strip():
        raise SandboxError(f"{kind} needs --text (only a call goes without)")
    if subject is not None and kind != "email":
        raise SandboxError(f"--subject is for an email; {kind} has none")
    ours = _our_side()
    api, what, body = _request(kind, sender.strip(), text or "", to or ours[kind])
    if subject is not None:
        body["subject"] = subject
    url = f"http://127.0.0.1:{fixed_ports(base_port)[api]}/_sandbox/{what}"
    try:
        answer = requests.post(url, json=body, timeout=timeout)
    except requests.RequestException:
        raise SandboxError(f"no sandbox answers at {url.rsplit('/_sandbox', 1)[0]}; start one with `crmhub sandbox"
                           + (f" --base-port {base_port}`" if base_port is not None else "`")
                           + " in another terminal") from None
    payload: dict[str, Any] = answer.json() if answer.headers.get("Content-Type", "").startswith(
        "application/json") else {}
    if answer.status_code >= 400:
        raise SandboxError(f"the {api} sandbox refused it: {payload.get('error') or answer.text}")
    item_id = str(payload.get("sid") or payload.get("id"))
    return Played(api, item_id, f"{kind} from {body['from']} to {body.get('to') or to or ours[kind]}: {item_id}")


def _request(kind: str, sender: str, text: str, to: str) -> tuple[str, str, dict[str, Any]]:
    """(API, control action, JSON body) of one kind."""
    if kind == "sms":
        return "twilio", "inbound", {"from": sender, "to": to, "body": text}
    if kind == "whatsapp":
        return "twilio", "inbound", {"from": _whatsapp(sender), "to": _whatsapp(to), "body": text}
    if kind == "call":
        return "twilio", "calls", {"from": sender, "to": to}
    if kind == "x-mention":
        return "x", "mentions", {"from": sender, "text": text}
    if kind in ("messenger", "instagram"):  # `from`: a person's name (new ones made on the fly) or scoped id
        return "meta", "inbound", {"platform": kind, "from": sender, "text": text}
    if kind == "email":
        return "mail", "inbound", {"from": sender, "to": to, "text": text}
    return "x", "dms", {"from": sender, "to": to, "text": text}


def _whatsapp(address: str) -> str:
    return address if address.startswith(WHATSAPP) else WHATSAPP + address


def _our_side() -> dict[str, str]:
    """Our number, WhatsApp sender and X account per kind, from the embedded default settings."""
    channels = YAML(typ="safe").load(DEFAULT_SETTINGS.read_text())["channels"]
    number = str(channels["twilio"]["numbers"][0])
    return {"sms": number, "call": number, "whatsapp": str(channels["twilio"]["whatsapp_senders"][0]),
            "x-mention": str(channels["x"]["account"]), "x-dm": str(channels["x"]["account"]),
            "messenger": str(channels["meta"]["page_id"]), "instagram": str(channels["meta"]["instagram_id"]),
            "email": SUPPORT_ADDRESS}
