"""Loopback emulators of the APIs crmhub talks to, and a mail server (see docs/sandbox/).

`EMULATORS` maps each API to its emulator class, imported on first use so a
test of one API does not pay for the others.
"""

from __future__ import annotations

import importlib

from crmhub.sandbox._server import Emulator, EmulatorServer, Fault, SandboxClock

EMULATORS: dict[str, str] = {
    "salesforce": "crmhub.sandbox.salesforce:SalesforceEmulator",
    "zendesk": "crmhub.sandbox.zendesk:ZendeskEmulator",
    "hubspot": "crmhub.sandbox.hubspot:HubSpotEmulator",
    "twilio": "crmhub.sandbox.twilio:TwilioEmulator",
    "x": "crmhub.sandbox.x:XEmulator",
    "meta": "crmhub.sandbox.meta:MetaEmulator",
    "mail": "crmhub.sandbox.mail:MailEmulator",
}

# Every port of the demo layout: an API's HTTP port under its name, its other listeners as "<api>-<listener>".
DEFAULT_PORTS: dict[str, int] = {"salesforce": 8700, "zendesk": 8701, "hubspot": 8702, "twilio": 8703, "x": 8704,
                                 "meta": 8705, "mail": 8706, "mail-smtp": 8707, "mail-imap": 8708}


def emulator_class(api: str) -> type[Emulator]:
    """The emulator class of `api` (one of EMULATORS)."""
    module_name, _, class_name = EMULATORS[api].partition(":")
    cls: type[Emulator] = getattr(importlib.import_module(module_name), class_name)
    return cls


__all__ = ["DEFAULT_PORTS", "EMULATORS", "Emulator", "EmulatorServer", "Fault", "SandboxClock", "emulator_class"]
