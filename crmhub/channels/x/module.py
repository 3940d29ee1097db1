"""X as a channel module: mentions, direct messages and our own replies of one account (`channels.x`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from crmhub.channels.contract import ChannelModule, PagesFn, StatusFn
from crmhub.channels.x.hooks import XHooks
from crmhub.config import Config
from crmhub.connectors._budget import Budget
from crmhub.connectors._retry import Retrier
from crmhub.connectors.x import XChannel
from crmhub.identities import normal_handle
from crmhub.model import Channel, Identity, IdentityKind
from crmhub.sync.replies import ChannelSender

STREAMS = (("mentions", "mentions"), ("dm_events", "direct_messages"), ("own_posts", "own_replies"))
"""Each poll stream and the setting that turns it on."""


class XModule(ChannelModule):
    name = "x"
    credentials_fix = ("check channels.x: the app's bearer token, consumer key and secret, and the account's access "
                       "token and secret (developer portal > your app > Keys and tokens)")

    def build(self, config: Config, retrier: Retrier) -> XChannel:
        x = self.settings(config)

        def secret(key: str) -> str:
            return config.secret(f"channels.x.{key}").get_secret_value()

        return XChannel(account=x.account, bearer_token=secret("bearer_token"), consumer_key=secret("consumer_key"),
                        consumer_secret=secret("consumer_secret"), access_token=secret("access_token"),
                        access_token_secret=secret("access_token_secret"), base_url=x.base_url, retrier=retrier)

    def budget(self, config: Config, common: Mapping[str, Any]) -> Budget:
        return Budget(self.name, **common)  # X counts each endpoint's window itself: its headers pace us

    def streams(self, block: Any) -> list[str]:
        return [name for name, setting in STREAMS if getattr(block, setting)]

    def pages(self, connector: XChannel) -> Mapping[str, PagesFn]:
        return {"mentions": connector.mention_pages, "dm_events": connector.dm_pages,
                "own_posts": connector.own_post_pages}

    def partition(self, connector: XChannel) -> str:
        return connector.account_handle

    def hooks(self, config: Config, connector: XChannel | None, on_status: StatusFn | None) -> XHooks:
        return XHooks(config.secret("channels.x.consumer_secret").get_secret_value(),
                      account=partial(connector.account, retry=False) if connector is not None else None)

    def senders(self, connector: XChannel) -> Mapping[Channel, ChannelSender]:
        return {Channel.X_MENTION: connector, Channel.X_DM: connector}

    def own_identities(self, block: Any) -> set[Identity]:
        return {Identity(IdentityKind.X_HANDLE, normal_handle(block.account))}


MODULE = XModule()
