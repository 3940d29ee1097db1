"""Loopback emulator of the Twilio REST API 2010-04-01 (see docs/sandbox/twilio.md)."""

from __future__ import annotations

from crmhub.sandbox.twilio.emulator import TwilioEmulator
from crmhub.sandbox.twilio.models import DEFAULT_ACCOUNT_SID, DEFAULT_API_KEY_SECRET, DEFAULT_AUTH_TOKEN
from crmhub.sandbox.twilio.webhooks import signature

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_API_KEY_SECRET", "DEFAULT_AUTH_TOKEN", "TwilioEmulator", "signature"]
