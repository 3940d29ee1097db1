"""X: mentions and direct messages into canonical Interactions (tweepy `Client`, API v2).

Retries: tweepy's own waiting is off (`wait_on_rate_limit=False`); the shared
layer in `_retry` retries, waiting out `x-rate-limit-reset` in full. tweepy
reaches the sandbox, or any other base URL, through its public `session`.

Cursors are X ids, not times (snowflake ids grow with creation time):

* mentions: the cursor is the newest post id seen, sent back as `since_id`
  (exclusive), so a poll reads only newer posts, newest first, paging with
  `pagination_token`. The timeline reaches back 800 posts at most.
* DMs: `GET /2/dm_events` has no `since_id`; it lists the last 30 days,
  newest first. The cursor is the newest event id seen, and paging stops at
  the first page that reaches it, so a quiet poll costs one call of the 15
  that X allows per 15 minutes.

Each page reports the newest id seen so far in the run. The ingest loop
saves it with the run's last page, so a crash mid-run re-reads and the
ledger drops the repeats. See docs/channels.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests
import tweepy

from crmhub.connectors._base import Connector, classify_status
from crmhub.connectors._http import build_session
from crmhub.connectors._retry import Retrier
from crmhub.errors import ConfigError, ConnectorError, PermanentError
from crmhub.identities import InvalidIdentity, normal_handle, x_account
from crmhub.model import Channel, Direction, Identity, Interaction, Malformed

# The fields and expansions each translation reads (docs.x.com/x-api/fundamentals/fields).
MENTION_EXPANSIONS = ["author_id", "referenced_tweets.id", "in_reply_to_user_id"]
MENTION_FIELDS = ["created_at", "conversation_id", "author_id", "in_reply_to_user_id", "referenced_tweets"]
DM_EVENT_FIELDS = ["id", "text", "event_type", "created_at", "sender_id", "dm_conversation_id", "attachments",
                   "participant_ids"]
USER_FIELDS = ["username"]
SOURCE = "x"  # dead letters' source, whichever path read the item
MESSAGE_CREATE = "MessageCreate"  # the only DM event type that carries a message
MENTIONS_MAX_RESULTS = (5, 100)  # bounds of max_results, per endpoint
DM_MAX_RESULTS = (1, 100)

Translate = Callable[[Any, Mapping[int, str]], Interaction | None]


@dataclass(frozen=True)
class XPage:
    """One page, translated; `cursor` is the newest X id seen so far in the run."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool


class _Unusable(Exception):
    """An item that cannot become an Interaction; the message says why."""


class XChannel(Connector):
    """Reads one X account's mentions (app Bearer token) and DMs (the account's OAuth 1.0a token).

    Args:
        account: our handle, with or without @; checked against the access token's owner.
        page_size: items per call, clamped to each endpoint's bounds (mentions 5-100, DMs 1-100).
        clock: epoch seconds on X's clock, which `x-rate-limit-reset` is read against
            (the sandbox clock in tests, where sandbox time runs ahead of real time).
    """

    name = "x"

    def __init__(self, *, account: str, bearer_token: str, consumer_key: str, consumer_secret: str,
                 access_token: str, access_token_secret: str, base_url: str | None = None,
                 page_size: int = 100, timeout: float = 30.0, retrier: Retrier | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(retrier)
        self.account_handle = normal_handle(account)
        self.page_size = page_size
        self._clock = clock
        self._client = tweepy.Client(bearer_token=bearer_token, consumer_key=consumer_key,
                                     consumer_secret=consumer_secret, access_token=access_token,
                                     access_token_secret=access_token_secret, wait_on_rate_limit=False)
        self._client.session = build_session(base_url=base_url, observer=self.observe_http, timeout=timeout,
                                             before=self.before_http)
        self._me: Identity | None = None

    def translate(self, exc: Exception) -> ConnectorError | None:
        """tweepy's HTTP errors by status; a 429 carries the wait until `x-rate-limit-reset`.

        A 429 for X's monthly usage cap is permanent: waiting for the 15-minute
        window would only spend retries on the same answer.
        """
        if not isinstance(exc, tweepy.HTTPException):
            return None
        response: requests.Response = exc.response
        detail = "; ".join(str(m) for m in exc.api_messages) or str(response.reason)
        message = f"HTTP {response.status_code}: {detail}"[:300]
        code = str(exc.api_codes[0]) if exc.api_codes else ""
        if response.status_code == 429 and _usage_capped(response):
            return PermanentError(f"{message} (X's usage cap for the period is used up; reads resume in the next "
                                  "period or with a higher access tier)", system=self.name, status=429,
                                  code="usage-capped")
        retry_after = None
        if isinstance(exc, tweepy.TooManyRequests) and exc.reset_time:
            retry_after = exc.reset_time - self._clock()
        return classify_status(response.status_code, message, system=self.name, code=code,
                               retry_after=retry_after if retry_after and retry_after > 0 else None)

    def account(self) -> Identity:
        """Our account (the access token's owner), looked up once.

        Raises:
            ConfigError: the token belongs to another account than `account`.
        """
        if self._me is None:
            user = self.call("users.me", partial(self._client.get_me, user_fields=USER_FIELDS)).data
            if user is None or normal_handle(user.username) != self.account_handle:
                owner = f"@{user.username}" if user is not None else "no account"
                raise ConfigError([f"channels.x.account: '{self.account_handle}' but the access token belongs to "
                                   f"{owner}; set the account's handle or use its access token"])
            self._me = x_account(str(user.id), user.username)
        return self._me

    def mention_pages(self, cursor: str | None) -> Iterator[XPage]:
        """Posts mentioning us newer than `cursor` (a post id; None: as far back as X reaches), page by page."""
        fetch = partial(self._client.get_users_mentions, self.account().value, since_id=cursor,
                        max_results=_clamp(self.page_size, MENTIONS_MAX_RESULTS), expansions=MENTION_EXPANSIONS,
                        tweet_fields=MENTION_FIELDS, user_fields=USER_FIELDS)
        return self._pages("mentions.page", Channel.X_MENTION, fetch, cursor, self._mention)

    def dm_pages(self, cursor: str | None) -> Iterator[XPage]:
        """DM events newer than `cursor` (an event id; None: the last 30 days), page by page."""
        self.account()  # fail fast on another account's token, even when no message is new
        fetch = partial(self._client.get_direct_message_events, event_types=[MESSAGE_CREATE],
                        dm_event_fields=DM_EVENT_FIELDS, expansions=["sender_id"], user_fields=USER_FIELDS,
                        max_results=_clamp(self.page_size, DM_MAX_RESULTS))
        return self._pages("dm_events.page", Channel.X_DM, fetch, cursor, self._dm)

    def _pages(self, operation: str, channel: Channel, fetch: Callable[..., Any], cursor: str | None,
               translate: Translate) -> Iterator[XPage]:
        """Page newest first until X has no more or a page reaches `cursor` (those are stored already)."""
        floor = int(cursor) if cursor else 0
        newest = floor
        token: str | None = None
        used: set[str] = set()
        while True:
            response = self.call(operation, partial(fetch, pagination_token=token))
            items = list(response.data or [])
            handles = {int(user.id): str(user.username) for user in response.includes.get("users", [])}
            fresh = [item for item in items if item.id > floor]
            good, bad = self._translate_all(channel, fresh, handles, translate)
            newest = max([newest, *(item.id for item in items)])
            token = response.meta.get("next_token")
            last = token is None or len(fresh) < len(items)
            yield XPage(good, bad, str(newest) if newest else None, last)
            if last:
                return
            if token in used:
                raise PermanentError(f"{operation}: X returned pagination token {token} twice", system=self.name)
            used.add(token)

    def _translate_all(self, channel: Channel, items: list[Any], handles: Mapping[int, str],
                       translate: Translate) -> tuple[list[Interaction], list[Malformed]]:
        return translate_items(channel, items, handles, translate)

    def _mention(self, post: Any, handles: Mapping[int, str]) -> Interaction:
        return mention_interaction(post, handles, self.account())

    def _dm(self, event: Any, handles: Mapping[int, str]) -> Interaction | None:
        return dm_interaction(event, handles, self.account())


# ---- translation, shared with the Account Activity webhook (`x_hooks`) -------------------


def translate_items(channel: Channel, items: Sequence[Any], handles: Mapping[int, str],
                    translate: Translate) -> tuple[list[Interaction], list[Malformed]]:
    """Translate v2 items (tweepy `Tweet` / `DirectMessageEvent`); an unusable one becomes a dead letter.

    The dead letter's ref is `<channel>:<id>` whichever path read the item, so a
    poll and a webhook that both fail on it leave one open dead letter.
    """
    good: list[Interaction] = []
    bad: list[Malformed] = []
    for item in items:
        try:
            interaction = translate(item, handles)
        except (_Unusable, InvalidIdentity) as exc:
            bad.append(Malformed(SOURCE, f"{channel}:{item.id}", f"{channel.label} {item.id}: {exc}",
                                 dict(item.data)))
            continue
        if interaction is not None:
            good.append(interaction)
    return good, bad


def mention_interaction(post: Any, handles: Mapping[int, str], me: Identity) -> Interaction:
    """A post at us: inbound from its author, or outbound when we wrote it (to whom we replied)."""
    if post.author_id is not None and str(post.author_id) == me.value:
        direction, sender = Direction.OUTBOUND, me
        recipient = _user(post.in_reply_to_user_id, handles, "replied-to user")
        if recipient == me:
            raise _Unusable("our own post, not a reply to a customer")
    else:
        direction, sender, recipient = Direction.INBOUND, _user(post.author_id, handles, "author"), me
    return Interaction(
        channel=Channel.X_MENTION,
        direction=direction,
        external_id=str(post.id),
        conversation_key=f"{Channel.X_MENTION}:{_required(post.conversation_id, 'conversation_id')}",
        sender=sender,
        recipient=recipient,
        text=post.text,
        occurred_at=_required(post.created_at, "created_at"),
        raw=dict(post.data),
    )


def dm_interaction(event: Any, handles: Mapping[int, str], me: Identity) -> Interaction | None:
    """A message event; the customer is the sender, or for ours the conversation's other participant."""
    if event.event_type != MESSAGE_CREATE:
        return None  # joins and leaves of group conversations carry no message
    sender_id = _required(event.sender_id, "sender_id")
    conversation = _required(event.dm_conversation_id, "dm_conversation_id")
    media = tuple(str(key) for key in (event.attachments or {}).get("media_keys", ()))
    if not (event.text or "").strip() and not media:
        raise _Unusable("empty message: no text and no attachments")
    if str(sender_id) == me.value:
        others = _participants(event) - {sender_id}
        if len(others) != 1:
            raise _Unusable("our message in a conversation without a single other participant")
        (customer_id,) = others
        direction, sender = Direction.OUTBOUND, me
        recipient = x_account(str(customer_id), handles.get(customer_id, ""))
    else:
        direction, recipient = Direction.INBOUND, me
        sender = x_account(str(sender_id), handles.get(sender_id, ""))
    return Interaction(
        channel=Channel.X_DM,
        direction=direction,
        external_id=str(event.id),
        conversation_key=f"{Channel.X_DM}:{conversation}",
        sender=sender,
        recipient=recipient,
        text=event.text or "",
        occurred_at=_required(event.created_at, "created_at"),
        media=media,
        raw=dict(event.data),
    )


def _user(user_id: int | None, handles: Mapping[int, str], role: str) -> Identity:
    """An account the answer's `includes.users` resolves; anything else is unusable."""
    if user_id is None:
        raise _Unusable(f"no {role}")
    handle = handles.get(user_id)
    if handle is None:
        raise _Unusable(f"{role} {user_id} is not among the answer's users (suspended or deleted?)")
    return x_account(str(user_id), handle)


def _required(value: Any, field: str) -> Any:
    if value is None:
        raise _Unusable(f"no {field}")
    return value


def _participants(event: Any) -> set[int]:
    """Who is in the event's conversation: `participant_ids`, else the one-to-one id `<low>-<high>`."""
    if event.participant_ids:
        return set(event.participant_ids)
    low, sep, high = str(event.dm_conversation_id).partition("-")
    return {int(low), int(high)} if sep and low.isdigit() and high.isdigit() else set()


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def _usage_capped(response: requests.Response) -> bool:
    """X's usage-cap answer, a 429 whose problem type is `.../usage-capped`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and (str(body.get("type", "")).endswith("/usage-capped")
                                       or body.get("title") == "UsageCapExceeded")
