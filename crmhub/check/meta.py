"""Meta preflight: the Page access token reads the Page, its Messenger conversations and, when set, Instagram's.

`GET /{page-id}` with the token must answer with our Page (a token of
another Page is refused as Graph refuses it: code 200, or 100/33); one
page of `GET /{page-id}/conversations?platform=messenger` (and
`instagram` when `instagram_id` is set) tells whether the token carries
`pages_messaging` (and `instagram_manage_messages`). The webhook's
subscription has no read with a Page token that tells it, so it is not
checked here; its handshake is answered by the receiver.
"""

from __future__ import annotations

from collections.abc import Iterator

from crmhub.check._report import Finding, failed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.meta import PLATFORMS, MetaChannel
from crmhub.errors import AuthError, NotFound, Rejected

SYSTEM = "meta"


def check(channel: MetaChannel, config: Config, where: Where) -> Iterator[Finding]:
    page = channel.get("check.page", channel.page_id, fields="name")  # AuthError for a bad token
    yield passed(SYSTEM, "credentials", f"page access token of {page.get('name', '?')} (id {channel.page_id})")
    for channel_kind in channel.channels():
        platform = PLATFORMS[channel_kind]
        try:
            channel.get(f"check.{platform}", f"{channel.page_id}/conversations", platform=platform, limit=1)
        except (AuthError, NotFound, Rejected) as exc:
            needs = "instagram_manage_messages" if platform == "instagram" else "pages_messaging"
            yield failed(SYSTEM, f"{platform} conversations", f"Meta refuses to list the {platform} conversations "
                                                                f"({exc})",
                         f"generate the Page access token again with {needs} granted (Meta app > Messenger > "
                         "Messenger API Settings > Access tokens), or leave out channels.meta.instagram_id")
        else:
            yield passed(SYSTEM, f"{platform} conversations", "readable")
