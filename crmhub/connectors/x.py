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

Sending (`send`, agents' replies), with the account's user token:

* a DM conversation gets a DM, `POST /2/dm_conversations/with/:participant_id/messages`.
  A DM is not idempotent: later attempts of the send, and any send after an
  uncertain earlier one, first read the conversation's events
  (`GET /2/dm_conversations/with/:participant_id/dm_events`) and take our
  message with the same text created since then instead of sending again;
* a mention thread gets a reply post, `POST /2/tweets` with
  `reply.in_reply_to_tweet_id` = the customer's newest post in the thread.
  After an uncertain try, our post timeline (`GET /2/users/:id/tweets`
  from the first try on) is read for our reply to that post with that text;
  and X refuses a post that repeats one of ours word for word (403), which
  on a retry also means the earlier try went out.

Our own reply posts are also polled (`own_post_pages`, the same
`since_id` cursor as mentions), so replies agents post in X's own app, not
through their CRM, still join the customer's history.

A 403 on a send is this reply's problem, not the credentials': the customer
does not take our DMs, or the post to answer is gone. It is `Rejected`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import requests
import tweepy

from crmhub.connectors._base import Connector, classify_status
from crmhub.connectors._http import build_session
from crmhub.connectors._retry import Retrier
from crmhub.errors import AuthError, ConfigError, ConnectorError, PermanentError, Rejected
from crmhub.identities import InvalidIdentity, normal_handle, x_account
from crmhub.model import (
    Channel,
    Delivery,
    Direction,
    Identity,
    Interaction,
    Malformed,
    OutboundMessage,
    ReplyStatus,
    SentMessage,
)

# The fields and expansions each translation reads (docs.x.com/x-api/fundamentals/fields).
MENTION_EXPANSIONS = ["author_id", "referenced_tweets.id", "in_reply_to_user_id"]
MENTION_FIELDS = ["created_at", "conversation_id", "author_id", "in_reply_to_user_id", "referenced_tweets"]
DM_EVENT_FIELDS = ["id", "text", "event_type", "created_at", "sender_id", "dm_conversation_id", "attachments",
                   "participant_ids"]
USER_FIELDS = ["username"]
SOURCE = "x"  # dead letters' source, whichever path read the item
MESSAGE_CREATE = "MessageCreate"  # the only DM event type that carries a message
MENTIONS_MAX_RESULTS = (5, 100)  # bounds of max_results, per endpoint (the post timeline's too)
DM_MAX_RESULTS = (1, 100)
DUPLICATE = "duplicate content"  # X's 403 detail for a post repeating one of the author's own

Translate = Callable[[Any, Mapping[int, str]], Interaction | None]


@dataclass(frozen=True)
class XPage:
    """One page, translated; `cursor` is the newest X id seen so far in the run."""

    interactions: Sequence[Interaction]
    malformed: Sequence[Malformed]
    cursor: str | None
    last: bool
    known: int = 0  # X pages skip nothing: the ledger drops repeats


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
    tracks_delivery = False  # X reports no delivery of posts or DMs: a sent reply stays `sent`

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
                                             before=self.before_http, after=self.after_http)
        self._me: Identity | None = None

    @property
    def sdk(self) -> tweepy.Client:
        """The tweepy client, for read-only calls made through `call` (`crmhub check`)."""
        return self._client

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

    def account(self, *, retry: bool = True) -> Identity:
        """Our account (the access token's owner), looked up once.

        Args:
            retry: False asks X once, without the retry layer's waits (the webhook
                receiver, which must answer within X's few seconds).

        Raises:
            ConfigError: the token belongs to another account than `account`.
            ConnectorError: X could not be asked.
        """
        if self._me is None:
            me = partial(self._client.get_me, user_fields=USER_FIELDS)
            if retry:
                user = self.call("users.me", me).data
            else:
                with self.map_errors("users.me"):
                    user = me().data
            if user is None or normal_handle(user.username) != self.account_handle:
                owner = f"@{user.username}" if user is not None else "no account"
                raise ConfigError([f"channels.x.account: '{self.account_handle}' but the access token belongs to "
                                   f"{owner}; set the account's handle or use its access token"])
            self._me = x_account(str(user.id), user.username)
        return self._me

    def mention_pages(self, cursor: str | None) -> Iterator[XPage]:
        """Posts mentioning us newer than `cursor` (a post id; None: as far back as X reaches), page by page."""
        return self._post_pages("mentions.page", self._client.get_users_mentions, cursor, self._mention)

    def own_post_pages(self, cursor: str | None) -> Iterator[XPage]:
        """Our account's reply posts newer than `cursor`, page by page: replies agents post on X itself.

        Our posts that answer no customer (announcements, threads of our own)
        are skipped, not dead-lettered. Replies crmhub sent are read back too;
        the ledger already holds them (their echo), so they count as known.
        """
        return self._post_pages("own_posts.page", self._client.get_users_tweets, cursor, self._own_post,
                                exclude=["retweets"])

    def _post_pages(self, operation: str, timeline: Callable[..., Any], cursor: str | None, translate: Translate,
                    **options: Any) -> Iterator[XPage]:
        """One of our account's post timelines (mentions, our own posts) after `cursor`, as `x_mention` items."""
        fetch = partial(timeline, self.account().value, since_id=cursor,
                        max_results=_clamp(self.page_size, MENTIONS_MAX_RESULTS), expansions=MENTION_EXPANSIONS,
                        tweet_fields=MENTION_FIELDS, user_fields=USER_FIELDS, **options)
        return self._pages(operation, Channel.X_MENTION, fetch, cursor, translate)

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

    # ---- sending -------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SentMessage:
        """Send one reply: a DM in a DM conversation, a reply post in a mention thread (see the module doc).

        Raises:
            Rejected: X refused this reply (403: DMs closed to us, the post gone), with what to do.
            TransientError: no answer or a 429/5xx after the retry layer's attempts.
        """
        me = self.account()
        try:
            if message.channel is Channel.X_DM:
                return self._send_dm(message, me)
            if message.channel is Channel.X_MENTION:
                return self._send_post(message, me)
        except AuthError as exc:
            if exc.status != 403:
                raise
            raise Rejected(_refusal(message, exc, self.account_handle), system=self.name, status=403,
                           code=exc.code) from exc
        raise Rejected(f"crmhub cannot send on channel {message.channel} through X", system=self.name)

    def _send_dm(self, message: OutboundMessage, me: Identity) -> SentMessage:
        customer = int(message.recipient.value)
        def send() -> SentMessage:
            data = self._client.create_direct_message(participant_id=customer, text=message.text).data
            return self._dm_sent(message, me, str(data["dm_event_id"]), str(data["dm_conversation_id"]),
                                 None, found=False)

        def find_sent(floor: datetime) -> SentMessage | None:
            earlier = self._dm_since(customer, message, me, floor)
            if earlier is None:
                return None
            return self._dm_sent(message, me, str(earlier.id), str(earlier.dm_conversation_id),
                                 earlier.created_at, found=True)

        return self.send_checked("dm.create", message.uncertain_since, find_sent, send)

    def _dm_since(self, customer: int, message: OutboundMessage, me: Identity, floor: datetime) -> Any | None:
        """Our DM to the customer created since `floor` with the reply's text (raw SDK: inside an attempt)."""
        response = self._client.get_direct_message_events(
            participant_id=customer, event_types=[MESSAGE_CREATE], dm_event_fields=DM_EVENT_FIELDS,
            max_results=DM_MAX_RESULTS[1])
        for event in response.data or []:
            if (str(event.sender_id) == me.value and event.text == message.text
                    and str(event.id) not in message.already_sent
                    and (event.created_at is None or event.created_at >= floor)):
                return event
        return None

    def _dm_sent(self, message: OutboundMessage, me: Identity, event_id: str, conversation: str,
                 created: datetime | None, *, found: bool) -> SentMessage:
        echo = Interaction(channel=Channel.X_DM, direction=Direction.OUTBOUND, external_id=event_id,
                           conversation_key=f"{Channel.X_DM}:{conversation}", sender=me,
                           recipient=message.recipient, text=message.text,
                           occurred_at=created or datetime.now(UTC),
                           raw={"id": event_id, "dm_conversation_id": conversation, "sender_id": me.value})
        return SentMessage(event_id, ReplyStatus.SENT, echo=echo, found_earlier=found)

    def _send_post(self, message: OutboundMessage, me: Identity) -> SentMessage:
        if not message.in_reply_to:
            raise Rejected("no post of the customer's to answer in this thread", system=self.name)
        attempts = 0

        def find_sent(floor: datetime) -> SentMessage | None:
            """Our reply to the same post with the same text, posted since `floor` (our post timeline)."""
            response = self._client.get_users_tweets(
                me.value, start_time=floor, exclude=["retweets"], max_results=MENTIONS_MAX_RESULTS[1],
                tweet_fields=MENTION_FIELDS)
            for post in response.data or []:
                replied_to = {str(r.id) for r in post.referenced_tweets or () if r.type == "replied_to"}
                if (message.in_reply_to in replied_to and post.text.endswith(message.text)
                        and str(post.id) not in message.already_sent):
                    return SentMessage(str(post.id), ReplyStatus.SENT, echo=self._post_echo(post.id, post.text,
                                       message, me, post.created_at), found_earlier=True)
            return None

        def attempt() -> SentMessage:
            nonlocal attempts
            attempts += 1
            try:
                data = self._client.create_tweet(text=message.text, in_reply_to_tweet_id=message.in_reply_to).data
            except tweepy.Forbidden as exc:
                repeat = any(DUPLICATE in str(m).lower() for m in exc.api_messages)
                if repeat and (attempts > 1 or message.uncertain_since is not None):
                    return SentMessage(None, ReplyStatus.SENT, found_earlier=True)  # our earlier try went out
                raise
            echo = self._post_echo(data["id"], str(data.get("text") or message.text), message, me, None)
            return SentMessage(str(data["id"]), ReplyStatus.SENT, echo=echo)

        return self.send_checked("tweets.create", message.uncertain_since, find_sent, attempt)

    @staticmethod
    def _post_echo(post_id: Any, text: str, message: OutboundMessage, me: Identity,
                   created: datetime | None) -> Interaction:
        """The sent reply post as a ledger item, so the timeline poll that reads it back finds it known."""
        return Interaction(channel=Channel.X_MENTION, direction=Direction.OUTBOUND, external_id=str(post_id),
                           conversation_key=message.conversation_key, sender=me, recipient=message.recipient,
                           text=text, occurred_at=created or datetime.now(UTC),
                           raw={"id": str(post_id), "in_reply_to": message.in_reply_to})

    def delivery(self, message_id: str) -> Delivery:
        """X reports no delivery: a sent post or DM stays sent."""
        return Delivery(ReplyStatus.SENT)


    def _mention(self, post: Any, handles: Mapping[int, str]) -> Interaction:
        return mention_interaction(post, handles, self.account())

    def _own_post(self, post: Any, handles: Mapping[int, str]) -> Interaction | None:
        me = self.account()
        if post.in_reply_to_user_id is None or str(post.in_reply_to_user_id) == me.value:
            return None  # not an answer to a customer
        return mention_interaction(post, handles, me)

    def _dm(self, event: Any, handles: Mapping[int, str]) -> Interaction | None:
        return dm_interaction(event, handles, self.account())


def _refusal(message: OutboundMessage, exc: ConnectorError, handle: str) -> str:
    """Why X refused a reply (a 403), and what to do."""
    if message.channel is Channel.X_DM:
        return (f"X refused the direct message ({exc}): the customer does not accept DMs from @{handle} (they "
                "closed DMs to accounts they do not follow, or blocked us); answer with a public reply or on "
                "another channel")
    return (f"X refused the reply post ({exc}): the customer's post is deleted or no longer visible to "
            f"@{handle}, or the text repeats one of our posts; write to the customer again in a new post")


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
