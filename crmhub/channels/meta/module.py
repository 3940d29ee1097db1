"""Meta as a channel module: Messenger conversations of one Page and its Instagram account's DMs (`channels.meta`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from crmhub.channels.contract import ChannelModule, PagesFn, StatusFn
from crmhub.channels.meta.hooks import MetaHooks
from crmhub.config import Config
from crmhub.connectors._budget import Budget
from crmhub.connectors._retry import Retrier
from crmhub.connectors.meta import MetaChannel
from crmhub.model import Channel, Identity, IdentityKind
from crmhub.sync.replies import ChannelSender


class MetaModule(ChannelModule):
    name = "meta"
    credentials_fix = ("check channels.meta: the Page id and a Page access token with pages_messaging (Meta app > "
                       "Messenger > Settings > Access tokens), and instagram_manage_messages for Instagram")

    def build(self, config: Config, retrier: Retrier) -> MetaChannel:
        meta = self.settings(config)
        return MetaChannel(page_id=meta.page_id, instagram_id=meta.instagram_id,
                           page_token=config.secret("channels.meta.page_token").get_secret_value(),
                           human_agent=meta.human_agent, graph_version=meta.graph_version, base_url=meta.base_url,
                           retrier=retrier)

    def budget(self, config: Config, common: Mapping[str, Any]) -> Budget:
        return Budget(self.name, **common)  # Meta's usage headers (percent of the hour) pace us

    def streams(self, block: Any) -> list[str]:
        return ["messenger", "instagram"] if block.instagram_id else ["messenger"]

    def pages(self, connector: MetaChannel) -> Mapping[str, PagesFn]:
        return {"messenger": partial(connector.conversation_pages, Channel.MESSENGER),
                "instagram": partial(connector.conversation_pages, Channel.INSTAGRAM)}

    def partition(self, connector: MetaChannel) -> str:
        return connector.page_id

    def hooks(self, config: Config, connector: MetaChannel | None, on_status: StatusFn | None) -> MetaHooks:
        meta = self.settings(config)
        return MetaHooks(config.secret("channels.meta.app_secret").get_secret_value(),
                         config.secret("channels.meta.verify_token").get_secret_value(),
                         page_id=meta.page_id, instagram_id=meta.instagram_id, connector=connector)

    def senders(self, connector: MetaChannel) -> Mapping[Channel, ChannelSender]:
        return {channel: connector for channel in connector.channels()}

    def own_identities(self, block: Any) -> set[Identity]:
        ours = {Identity(IdentityKind.MESSENGER, block.page_id)}
        return ours | ({Identity(IdentityKind.INSTAGRAM, block.instagram_id)} if block.instagram_id else set())


MODULE = MetaModule()
