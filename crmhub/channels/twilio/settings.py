"""The `channels.twilio` settings block (the registry's `settings` for twilio)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from crmhub.config._model import BASE_URL_HELP as _BASE_URL
from crmhub.config._model import Model
from crmhub.config._types import Duration, Phone, PositiveDuration, Region, SecretRef, Url


class TwilioSettings(Model):
    """One Twilio account: SMS, WhatsApp and calls."""

    enabled: bool = Field(True, description="Set false to switch the channel off and keep its settings.")
    account_sid: str = Field(pattern=r"^AC[0-9a-f]{32}$", description="Account SID: AC followed by 32 hex digits "
                             "(not a secret).", examples=["AC0123456789abcdef0123456789abcdef"])
    auth_token: SecretRef = Field(description="Auth token; also verifies webhook signatures.",
                                  examples=["env:TWILIO_AUTH_TOKEN"])
    base_url: Url | None = Field(None, description=_BASE_URL)
    # Before the numbers: they are parsed in this region.
    default_region: Region = Field("US", description="Region for numbers written without +country code "
                                                     "(ISO 3166 alpha-2).")
    numbers: list[Phone] = Field([], description="Our SMS/voice numbers, any format parsable in default_region; "
                                               "stored as E.164. Quote them.", examples=[["+14155550100"]])
    whatsapp_senders: list[Phone] = Field([], description="Our WhatsApp sender numbers (E.164 after load).",
                                        examples=[["+14155550199"]])
    poll_every: PositiveDuration = Field(timedelta(seconds=30), description="How often to poll messages and calls.")
    overlap: Duration = Field(timedelta(minutes=10), description="How far before the last cursor each poll re-reads "
                                                                 "(repeats are dropped by the ledger).")
    page_size: int = Field(100, ge=1, le=1000, description="Items per page when polling (1..1000).")
    calls: bool = Field(True, description="Also record phone calls.")
