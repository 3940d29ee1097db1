"""The `channels.x` settings block (the registry's `settings` for x)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from crmhub.config._model import BASE_URL_HELP as _BASE_URL
from crmhub.config._model import Model
from crmhub.config._types import PositiveDuration, SecretRef, Url, problem


class XSettings(Model):
    """One X (Twitter) account: mentions and direct messages."""

    enabled: bool = Field(True, description="Set false to switch the channel off and keep its settings.")
    account: str = Field(pattern=r"^[A-Za-z0-9_]{1,15}$", description="Our handle, without @.",
                         examples=["acme_support"])
    bearer_token: SecretRef = Field(description="App bearer token (mentions).", examples=["env:X_BEARER_TOKEN"])
    consumer_key: SecretRef = Field(description="OAuth 1.0a consumer key.", examples=["env:X_CONSUMER_KEY"])
    consumer_secret: SecretRef = Field(description="OAuth 1.0a consumer secret.", examples=["env:X_CONSUMER_SECRET"])
    access_token: SecretRef = Field(description="OAuth 1.0a access token of the account (DMs, replies).",
                                    examples=["env:X_ACCESS_TOKEN"])
    access_token_secret: SecretRef = Field(description="OAuth 1.0a access token secret.",
                                           examples=["env:X_ACCESS_TOKEN_SECRET"])
    base_url: Url | None = Field(None, description=_BASE_URL)
    poll_every: PositiveDuration = Field(timedelta(seconds=60), description="How often to poll mentions and DMs.")
    mentions: bool = Field(True, description="Record mentions of the account.")
    direct_messages: bool = Field(True, description="Record direct messages.")
    own_replies: bool = Field(True, description="Record the account's own reply posts, so replies agents post in "
                                                "X itself (not through their CRM) join the customer's history.")

    @field_validator("account", mode="before")
    @classmethod
    def _no_at(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().startswith("@"):
            raise problem("x_handle", f"'{value.strip()}' starts with @; write the handle without it: {value.strip()[1:]}")
        return value
