"""X Account Activity webhooks: event payloads into the canonical types, exactly as the poller makes them.

X POSTs, for each subscribed account (`for_user_id`), events in the v1.1
object shapes (developer.x.com .../account-activity-api/guides/account-activity-data-objects):

- `tweet_create_events`: posts by, to or mentioning the account. Only posts
  that mention our account become Interactions (channel `x_mention`), since
  those are what the poller's mentions timeline holds; our own replies, which
  mention the customer and not us, are left to the poller's own-posts
  timeline (`own_post_pages`);
- `direct_message_events` of type `message_create` -> `x_dm` Interactions.

Each event is rebuilt as the v2 object the poller reads (`GET
/2/users/:id/mentions`, `GET /2/dm_events`) and translated by the poller's
own functions (`mention_interaction`, `dm_interaction` in `connectors/x.py`),
so an item that arrives both ways has the same channel, external id,
conversation key, identities and text, and the ledger stores it once.

One fact is not in a v1.1 post: its `conversation_id` (the thread's root
post id). A post that replies to nothing is its own root; a reply takes its
parent's root, which `XAccountActivity` remembers for the posts it has seen
(ours included). A reply whose parent it has not seen (e.g. since a restart)
is *deferred*: not stored, so the next poll stores it with X's own
`conversation_id`, rather than under a guessed thread.

The signature is checked by the receiver (`crmhub.webhooks`) before any of
this runs; what is signed but cannot be translated comes back as `Malformed`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import tweepy

from crmhub.connectors.x import SOURCE, Translate, dm_interaction, mention_interaction, translate_items
from crmhub.model import Channel, Identity, Interaction, Malformed

V1_TIME = "%a %b %d %H:%M:%S %z %Y"  # a v1.1 `created_at`, e.g. "Mon Jan 05 08:00:00 +0000 2026"
# v1.1 media ids as v2 media keys ("<type>_<id>"), which the poller stores for DM attachments.
MEDIA_KEY_PREFIX = {"photo": "3", "video": "7", "animated_gif": "16"}
MESSAGE_CREATE_V1 = "message_create"


@dataclass
class XEventBatch:
    """What one payload holds for us.

    Attributes:
        interactions: the poller's Interactions for the payload's posts and DMs.
        malformed: events signed by X that cannot be translated (dead letters).
        ignored: events that are not ours to store (another account's, other event kinds,
            posts that do not mention us, DM events other than messages).
        deferred: replies whose thread root is unknown here; the next poll stores them.
    """

    interactions: list[Interaction] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    ignored: int = 0
    deferred: int = 0


class _Bad(ValueError):
    """A field of a signed event that is missing or of the wrong type."""


class XAccountActivity:
    """Translates Account Activity payloads for our account; thread-safe.

    Args:
        capacity: how many posts' thread roots to remember (oldest forgotten first).
    """

    def __init__(self, *, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._roots: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def translate(self, payload: Mapping[str, Any], me: Identity) -> XEventBatch:
        """The payload's Interactions and dead letters for us; never raises on bad input.

        Args:
            me: our account as X told us (`XChannel.account`: id, handle). A payload whose
                `for_user_id` is another id is ignored whole: who "we" are is never taken
                from the payload, which only X's signature vouches for, not its subject.
        """
        batch = XEventBatch()
        kinds = [key for key in payload if key.endswith("_events")]
        if str(payload.get("for_user_id")) != me.value:
            batch.ignored = sum(len(v) if isinstance(v, list) else 1 for k, v in payload.items() if k in kinds)
            return batch
        handles = _payload_handles(payload)
        for kind in kinds:
            events = payload[kind]
            if kind not in ("tweet_create_events", "direct_message_events"):
                batch.ignored += len(events) if isinstance(events, list) else 1
                continue
            if not isinstance(events, list):
                batch.malformed.append(_malformed(kind, None, f"{kind} is not a list", {kind: events}))
                continue
            for event in events:
                if kind == "tweet_create_events":
                    self._post(event, handles, me, batch)
                else:
                    self._dm(event, handles, me, batch)
        return batch

    # ---- posts -------------------------------------------------------------------------
    def _post(self, event: Any, handles: Mapping[int, str], me: Identity, batch: XEventBatch) -> None:
        try:
            post_id = _id(event, "id_str")
            parent = _optional_id(event, "in_reply_to_status_id_str")
            mentions = event.get("entities", {}).get("user_mentions", [])
            mentioned = {str(m.get("id_str")) for m in mentions if isinstance(m, dict)}
        except (_Bad, AttributeError, KeyError, TypeError) as exc:
            batch.malformed.append(_malformed("tweet_create_events", _raw_id(event), str(exc), event))
            return
        root = post_id if parent is None else self._root(parent)
        if root is not None:
            self._remember(post_id, root)
        if me.value not in mentioned:
            batch.ignored += 1  # not on our mentions timeline, so not something the poller stores
            return
        if root is None:
            batch.deferred += 1
            return
        try:
            post = tweepy.Tweet(_v2_post(event, post_id, parent, root))
        except (_Bad, AttributeError, KeyError, TypeError, ValueError) as exc:
            batch.malformed.append(_malformed("tweet_create_events", post_id, str(exc), event))
            return
        self._add(batch, Channel.X_MENTION, post, handles, partial(mention_interaction, me=me))

    def _root(self, post_id: str) -> str | None:
        with self._lock:
            return self._roots.get(post_id)

    def _remember(self, post_id: str, root: str) -> None:
        with self._lock:
            self._roots[post_id] = root
            self._roots.move_to_end(post_id)
            while len(self._roots) > self.capacity:
                self._roots.popitem(last=False)

    # ---- direct messages -----------------------------------------------------------------
    def _dm(self, event: Any, handles: Mapping[int, str], me: Identity, batch: XEventBatch) -> None:
        if isinstance(event, dict) and event.get("type") != MESSAGE_CREATE_V1:
            batch.ignored += 1
            return
        try:
            message = _v2_dm(event)
        except (_Bad, AttributeError, KeyError, TypeError, ValueError) as exc:
            batch.malformed.append(_malformed("direct_message_events", _raw_id(event), str(exc), event))
            return
        if me.value not in str(message["dm_conversation_id"]).split("-"):
            batch.ignored += 1  # neither sent nor received by us
            return
        self._add(batch, Channel.X_DM, tweepy.DirectMessageEvent(message), handles, partial(dm_interaction, me=me))

    @staticmethod
    def _add(batch: XEventBatch, channel: Channel, item: Any, handles: Mapping[int, str],
             translate: Translate) -> None:
        good, bad = translate_items(channel, [item], handles, translate)
        batch.interactions += good
        batch.malformed += bad


# ---- v1.1 -> v2 ----------------------------------------------------------------------------


def _v2_post(event: Mapping[str, Any], post_id: str, parent: str | None, root: str) -> dict[str, Any]:
    """The v2 post the mentions timeline returns with the poller's `tweet.fields`."""
    user = event.get("user")
    if not isinstance(user, dict):
        raise _Bad("no user")
    extended = event.get("extended_tweet")
    text = extended.get("full_text") if event.get("truncated") and isinstance(extended, dict) else event.get("text")
    if not isinstance(text, str):
        raise _Bad("no text")
    post: dict[str, Any] = {"id": post_id, "text": text, "author_id": _id(user, "id_str"),
                            "created_at": _iso(_post_time(event)), "conversation_id": root,
                            "edit_history_tweet_ids": [post_id]}
    reply_to = _optional_id(event, "in_reply_to_user_id_str")
    if reply_to is not None:
        post["in_reply_to_user_id"] = reply_to
    if parent is not None:
        post["referenced_tweets"] = [{"type": "replied_to", "id": parent}]
    return post


def _v2_dm(event: Any) -> dict[str, Any]:
    """The v2 `MessageCreate` event `GET /2/dm_events` returns with the poller's `dm_event.fields`."""
    create = event["message_create"]
    sender = _id(create, "sender_id")
    recipient = _id(create["target"], "recipient_id")
    data = create.get("message_data") or {}
    text = data.get("text", "")
    if not isinstance(text, str):
        raise _Bad("text is not a string")
    low, high = sorted((sender, recipient), key=int)
    message: dict[str, Any] = {"id": _id(event, "id"), "event_type": "MessageCreate", "text": text,
                               "sender_id": sender, "dm_conversation_id": f"{low}-{high}",
                               "created_at": _iso(_millis(event.get("created_timestamp")))}
    media = (data.get("attachment") or {}).get("media") if data.get("attachment") else None
    if isinstance(media, dict):
        message["attachments"] = {"media_keys": [_media_key(media)]}
    return message


def _media_key(media: Mapping[str, Any]) -> str:
    key = media.get("media_key")
    if isinstance(key, str) and key:
        return key
    prefix = MEDIA_KEY_PREFIX.get(str(media.get("type")))
    if prefix is None:
        raise _Bad(f"attachment of unknown media type {str(media.get('type'))[:20]!r}")
    return f"{prefix}_{_id(media, 'id_str')}"


def _post_time(event: Mapping[str, Any]) -> datetime:
    """`timestamp_ms` (milliseconds), else the v1.1 `created_at` (seconds)."""
    if event.get("timestamp_ms") is not None:
        return _millis(event.get("timestamp_ms"))
    created = event.get("created_at")
    if not isinstance(created, str):
        raise _Bad("no created_at")
    try:
        return datetime.strptime(created, V1_TIME).astimezone(UTC)
    except ValueError as exc:
        raise _Bad("created_at is not a v1.1 time") from exc
    except OverflowError as exc:  # a valid-looking time whose offset leaves the years 1-9999
        raise _Bad("created_at is out of range") from exc


def _millis(value: Any) -> datetime:
    if not isinstance(value, str | int) or not str(value).isdigit() or len(str(value)) > 15:
        raise _Bad("no epoch milliseconds timestamp")
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:  # past year 9999
        raise _Bad("epoch milliseconds timestamp out of range") from exc


def _iso(when: datetime) -> str:
    """X's v2 time format (milliseconds, Z), which tweepy parses into `created_at`."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _id(obj: Any, key: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 20:
        raise _Bad(f"no {key}")
    return value


def _optional_id(obj: Mapping[str, Any], key: str) -> str | None:
    return None if obj.get(key) is None else _id(obj, key)


def _payload_handles(payload: Mapping[str, Any]) -> dict[int, str]:
    """Every user id -> handle the payload shows: DM `users`, post authors, replied-to users, mentions."""
    handles: dict[int, str] = {}

    def add(user_id: Any, handle: Any) -> None:
        if isinstance(user_id, str | int) and str(user_id).isascii() and str(user_id).isdigit() \
                and isinstance(handle, str) and handle:
            handles.setdefault(int(user_id), handle)

    users = payload.get("users")
    for user_id, user in (users.items() if isinstance(users, dict) else ()):
        if isinstance(user, dict):
            add(user_id, user.get("screen_name"))
    for post in _dicts(payload.get("tweet_create_events")):
        user = post.get("user")
        if isinstance(user, dict):
            add(user.get("id_str"), user.get("screen_name"))
        add(post.get("in_reply_to_user_id_str"), post.get("in_reply_to_screen_name"))
        entities = post.get("entities")
        for mention in _dicts(entities.get("user_mentions") if isinstance(entities, dict) else None):
            add(mention.get("id_str"), mention.get("screen_name"))
    return handles


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    return (item for item in (value if isinstance(value, list) else ()) if isinstance(item, dict))


def _raw_id(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    value = event.get("id_str", event.get("id"))
    return str(value) if isinstance(value, str | int) and str(value).isdigit() else None


def unusable_payload(body: bytes, why: str) -> Malformed:
    """A signed body that is no usable payload (not JSON, too deep...): a dead letter keyed by its digest.

    The payload kept is a placeholder (digest and size): the body itself may be
    what broke the parser, and it holds no item to replay.
    """
    digest = hashlib.sha256(body).hexdigest()
    return Malformed(SOURCE, f"x-webhook-{digest[:24]}", f"X webhook: {why}", {"body_sha256": digest,
                                                                              "body_bytes": len(body)})


def _malformed(kind: str, item_id: str | None, reason: str, raw: Any) -> Malformed:
    """A dead letter keyed like the poller's (`<channel>:<id>`), or by a digest when there is no id."""
    channel = Channel.X_MENTION if kind == "tweet_create_events" else Channel.X_DM
    payload = raw if isinstance(raw, dict) else {"event": raw}
    ref = f"{channel}:{item_id}" if item_id else "x-webhook-" + hashlib.sha256(
        json.dumps(payload, sort_keys=True, default=str).encode("utf-8", "replace")).hexdigest()[:24]
    return Malformed(SOURCE, ref, f"{channel.label} webhook: {reason}", payload)
