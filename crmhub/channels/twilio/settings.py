"""The `channels.twilio` settings block (the registry's `settings` for twilio)."""

from __future__ import annotations

from datetime import timedelta

from typing import Literal

from pydantic import Field, field_validator, model_validator

from crmhub.config._model import BASE_URL_HELP as _BASE_URL
from crmhub.config._model import Model
from crmhub.config._types import (
    Duration,
    LanguageCode,
    Phone,
    PositiveDuration,
    Region,
    SecretRef,
    Url,
    problem,
)

TemplateField = Literal["customer_name", "case_id"]
TEMPLATE_FIELDS = ("customer_name", "case_id")
"""What a template variable may show: the customer's name as WhatsApp reported it (their profile name), and
the CRM's id of the case or ticket the reply is on. Never the reply's text (see WhatsAppTemplate)."""
REPLY_TEXT_NAMES = frozenset({"text", "body", "reply", "excerpt", "message", "reply_text", "summary"})


class WhatsAppTemplate(Model):
    """An approved WhatsApp template (Twilio Content API), sent in place of a reply outside the 24-hour window.

    It tells the customer an answer is waiting (e.g. "Hi {{1}}, we have answered your request {{2}}: reply
    to this message to read it"): the reply's own text never goes into a variable, since WhatsApp approved
    the template's wording, not what an agent writes, and the text would reach the customer unreviewed.
    """

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="Your name for the template (lower case, digits, _), "
                                                                "shown in notes and logs.", examples=["answer_waiting"])
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$", description="Its Content SID: HX followed by 32 hex "
                             "digits, from the Content Template Builder.",
                             examples=["HX0123456789abcdef0123456789abcdef"])
    variables: dict[str, TemplateField] = Field({}, description="Each placeholder's number (1, 2...) and what fills "
                                                "it: customer_name or case_id. A reply whose value is unknown (no "
                                                "profile name) does not fit the template.",
                                                examples=[{"1": "customer_name", "2": "case_id"}])
    languages: list[LanguageCode] = Field([], description="The conversation languages it is written in (ISO 639-1); "
                                                          "empty: any conversation.")

    @field_validator("variables", mode="before")
    @classmethod
    def _numbered(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        keys = [str(key).strip() for key in value]
        if any(not key.isdigit() for key in keys) or sorted(map(int, keys)) != list(range(1, len(keys) + 1)):
            raise problem("template_variables", f"placeholders {', '.join(keys)}: number them 1, 2, 3... as in the "
                                                "template's {{1}}, {{2}}, without gaps")
        for field in value.values():
            if isinstance(field, str) and field.strip().lower() in REPLY_TEXT_NAMES:
                raise problem("template_variables", f"'{field}': the reply's text never goes into a template "
                                                    f"variable (WhatsApp approved the template's wording, not the "
                                                    f"agent's); use {' or '.join(TEMPLATE_FIELDS)}")
        return {key: field for key, field in zip(keys, value.values(), strict=True)}


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
    whatsapp_templates: list[WhatsAppTemplate] = Field(
        [], description="Approved WhatsApp templates, tried in order for a reply outside WhatsApp's 24-hour window "
                        "(the first whose languages and variables fit is sent instead). None fits: no send, and a "
                        "note on the case tells the agent.")

    @model_validator(mode="after")
    def _template_names_unique(self) -> TwilioSettings:
        names = [template.name for template in self.whatsapp_templates]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise problem("template_names", f"whatsapp_templates: {', '.join(twice)} named twice; give each "
                                            "template its own name")
        return self
