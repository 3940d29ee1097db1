"""The `channels.meta` settings block (the registry's `settings` for meta): one Facebook Page, its Instagram account."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from crmhub.config._model import BASE_URL_HELP as _BASE_URL
from crmhub.config._model import Model
from crmhub.config._types import PositiveDuration, SecretRef, Url


class MetaSettings(Model):
    """One Facebook Page: its Messenger conversations and, with `instagram_id`, its Instagram account's DMs."""

    enabled: bool = Field(True, description="Set false to switch the channel off and keep its settings.")
    page_id: str = Field(pattern=r"^[0-9]{5,20}$", description="The Facebook Page's id (Page > About > Page ID).",
                         examples=["104000000000001"])
    instagram_id: str | None = Field(None, pattern=r"^[0-9]{5,20}$",
                                     description="The Page's linked Instagram professional account id; set it to "
                                                 "read and answer Instagram DMs too.", examples=["17841400000000001"])
    page_token: SecretRef = Field(description="A Page access token with pages_messaging (and "
                                              "instagram_manage_messages for Instagram).",
                                  examples=["env:META_PAGE_TOKEN"])
    app_secret: SecretRef = Field(description="The Meta app's secret: checks X-Hub-Signature-256 on webhooks.",
                                  examples=["env:META_APP_SECRET"])
    verify_token: SecretRef = Field(description="The verify token typed in the app's Webhooks settings; the "
                                                "subscription handshake must show it.",
                                    examples=["env:META_VERIFY_TOKEN"])
    human_agent: bool = Field(True, description="Answer 24 hours to 7 days after the customer's last message with "
                                                "the HUMAN_AGENT tag (needs Meta's Human Agent permission); off, "
                                                "such replies become a note on the case.")
    graph_version: str = Field("v21.0", pattern=r"^v[0-9]{1,2}\.[0-9]$",
                               description="The Graph API version in every path.")
    base_url: Url | None = Field(None, description=_BASE_URL)
    poll_every: PositiveDuration = Field(timedelta(minutes=5),
                                         description="How often to reconcile conversations (webhooks are the fast "
                                                     "path; the poll finds what they missed).")
