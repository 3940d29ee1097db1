"""X preflight: the access token's account, the app's bearer token, and DM access (tweepy).

`GET /2/users/me` (user context) must answer with our `account`; a user
lookup with the app-only bearer token checks that token (mentions are read
with it). With `direct_messages: true`, one page of `GET /2/dm_events` tells
whether the app's access tier and the token's permissions allow DMs: X
answers 403 (`client-not-enrolled`, or `Forbidden` for a token without DM
permission) when they do not. Account Activity (webhook) access has no read
that tells it without registering a webhook, so it is not checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from crmhub.check._report import Finding, failed, passed
from crmhub.check._where import Where
from crmhub.config import Config
from crmhub.connectors.x import XChannel
from crmhub.errors import AuthError

SYSTEM = "x"


def check(channel: XChannel, config: Config, where: Where) -> Iterator[Finding]:
    settings = config.settings.channels.x
    assert settings is not None
    me = channel.account()  # AuthError for bad tokens, ConfigError for another account's
    yield passed(SYSTEM, "credentials", f"access token of @{me.display} (id {me.value})")
    try:
        channel.call("check.bearer", lambda: channel.sdk.get_user(username=settings.account, user_auth=False))
    except AuthError as exc:
        yield failed(SYSTEM, "bearer token", f"the app's bearer token was refused ({exc}); mentions cannot be read",
                     "set channels.x.bearer_token to the app's current Bearer token (developer portal > your app "
                     "> Keys and tokens)")
    else:
        yield passed(SYSTEM, "bearer token", "user lookup works")
    if not settings.direct_messages:
        return
    try:
        channel.call("check.dm_events", lambda: channel.sdk.get_direct_message_events(max_results=1))
    except AuthError as exc:
        yield failed(SYSTEM, "direct messages", f"X refuses to list our DMs ({exc}): the app's access tier does "
                                                "not include DMs (client-not-enrolled), or the access token was "
                                                "made without the Direct Messages permission",
                     "in the developer portal attach the app to a project on a tier with DM access, set its "
                     "permissions to \"Read and write and Direct message\" and generate the access token again; or "
                     "set channels.x.direct_messages: false")
    else:
        yield passed(SYSTEM, "direct messages", "dm_events readable")
