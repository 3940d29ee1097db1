"""The X emulator's backend: state and domain operations, no HTTP.

Everything lives in the emulator's `state` (plain JSON-able dicts) and every
timestamp comes from the sandbox clock, so tests can move time. Records are
stored in the X API v2 shape (ids as strings, ISO 8601 times with
milliseconds) so the wire layer only picks fields.

IDs are snowflakes, as X's are: the creation time in milliseconds since the
Twitter epoch, shifted left 22 bits, plus a sequence number. They increase
with sandbox time, so `since_id` / `until_id` mean "newer" / "older".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from crmhub.sandbox._hosted import HostedBackend

TWITTER_EPOCH_MS = 1288834974657
SEQUENCE_BITS = 22

DEFAULT_ACCOUNT = "crmhub_support"
DEFAULT_APP_ID = "29000001"
DEFAULT_CONSUMER_KEY = "sandbox-consumer-key"
DEFAULT_CONSUMER_SECRET = "sandbox-consumer-secret"
DEFAULT_BEARER_TOKEN = "sandbox-bearer"
DEFAULT_ACCESS_TOKEN = "sandbox-access-token"
DEFAULT_ACCESS_TOKEN_SECRET = "sandbox-access-secret"

MENTIONS_REACH = 800  # the mentions timeline reaches back this many posts
TIMELINE_REACH = 3200  # a user's post timeline reaches back this many posts
TIMELINE_REACH_WITHOUT_REPLIES = 800  # ... and this many with exclude=replies
DM_RETENTION = timedelta(days=30)  # DM event lookups return the last 30 days

_MENTION = re.compile(r"(?<![A-Za-z0-9_])@([A-Za-z0-9_]{1,15})")
_HASHTAG = re.compile(r"(?<![A-Za-z0-9_&])#([A-Za-z0-9_]+)")


def snowflake(when: datetime, sequence: int = 0) -> str:
    """A Twitter-style id for an object created at `when`."""
    millis = int(when.timestamp() * 1000) - TWITTER_EPOCH_MS
    return str((millis << SEQUENCE_BITS) | (sequence % (1 << SEQUENCE_BITS)))


def iso(when: datetime) -> str:
    """X's timestamp format: UTC with milliseconds, e.g. 2024-01-01T12:00:00.000Z."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_iso(value: str) -> datetime:
    """Parse an RFC 3339 timestamp ('Z' or an offset; milliseconds optional)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed.astimezone(UTC)


def conversation_id(user_a: str, user_b: str) -> str:
    """The id of the one-to-one DM conversation: '<smaller id>-<larger id>'."""
    low, high = sorted((user_a, user_b), key=int)
    return f"{low}-{high}"


def conversation_members(dm_conversation_id: str) -> tuple[str, str] | None:
    """The two participants of a one-to-one conversation id, or None."""
    first, sep, second = dm_conversation_id.partition("-")
    if not sep or not first.isdigit() or not second.isdigit():
        return None
    return first, second


DEFAULT_ACCOUNT_CREATED = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
DEFAULT_ACCOUNT_ID = snowflake(DEFAULT_ACCOUNT_CREATED)


def initial_state() -> dict[str, Any]:
    """A fresh X: one app with the sandbox credentials and its support account."""
    return {
        "apps": {
            DEFAULT_CONSUMER_KEY: {
                "app_id": DEFAULT_APP_ID,
                "name": "crmhub-sandbox",
                "consumer_secret": DEFAULT_CONSUMER_SECRET,
                "bearer_token": DEFAULT_BEARER_TOKEN,
                "bearer_revoked": False,
            }
        },
        "access_tokens": {
            DEFAULT_ACCESS_TOKEN: {
                "secret": DEFAULT_ACCESS_TOKEN_SECRET,
                "user_id": DEFAULT_ACCOUNT_ID,
                "consumer_key": DEFAULT_CONSUMER_KEY,
                "revoked": False,
            }
        },
        "users": {DEFAULT_ACCOUNT_ID: _user_record(DEFAULT_ACCOUNT_ID, DEFAULT_ACCOUNT, "crmhub support",
                                                   DEFAULT_ACCOUNT_CREATED)},
        "tweets": {},
        "dm_events": {},
        "sequence": 0,
        "rate_windows": {},
        "rate_limit_overrides": {},
        "webhook": None,
        "webhook_attempts": [],
    }


def _user_record(user_id: str, username: str, name: str, created: datetime) -> dict[str, Any]:
    return {
        "id": user_id,
        "name": name,
        "username": username,
        "created_at": iso(created),
        "description": "",
        "location": "",
        "url": "",
        "protected": False,
        "verified": False,
        "verified_type": "none",
        "profile_image_url": "https://abs.twimg.com/sticky/default_profile_images/default_profile_normal.png",
        "receives_your_dm": True,
        "followers_count": 0,
        "following_count": 0,
    }


class XBackend(HostedBackend):
    """Domain operations on the emulator's state; events: 'tweet' and 'dm' records as created."""

    def now(self) -> datetime:
        return self._host.clock.now()

    def new_id(self, when: datetime | None = None) -> str:
        """A fresh snowflake for an object created at `when` (default: now)."""
        self.state["sequence"] += 1
        return snowflake(when or self.now(), self.state["sequence"])

    # ---- credentials ---------------------------------------------------------
    def add_app(self, consumer_key: str, consumer_secret: str, bearer_token: str, name: str) -> str:
        app_id = str(int(DEFAULT_APP_ID) + len(self.state["apps"]))
        self.state["apps"][consumer_key] = {"app_id": app_id, "name": name, "consumer_secret": consumer_secret,
                                            "bearer_token": bearer_token, "bearer_revoked": False}
        return app_id

    def add_access_token(self, user_id: str, token: str, secret: str, consumer_key: str) -> None:
        self.require_user(user_id)
        if consumer_key not in self.state["apps"]:
            raise KeyError(f"no app with consumer key {consumer_key!r}")
        self.state["access_tokens"][token] = {"secret": secret, "user_id": user_id,
                                              "consumer_key": consumer_key, "revoked": False}

    def app_by_bearer(self, token: str) -> tuple[str, dict[str, Any]] | None:
        for consumer_key, app in self.state["apps"].items():
            if app["bearer_token"] == token:
                return consumer_key, app
        return None

    def revoke_all_tokens(self) -> None:
        """Every Bearer and access token issued so far stops working."""
        for app in self.state["apps"].values():
            app["bearer_revoked"] = True
        for token in self.state["access_tokens"].values():
            token["revoked"] = True

    # ---- users -----------------------------------------------------------------
    def add_user(self, username: str, name: str | None = None, user_id: str | None = None, **profile: Any) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", username):
            raise ValueError(f"not a valid X username: {username!r}")
        if self.user_by_username(username) is not None:
            raise ValueError(f"username already taken: {username!r}")
        if user_id is not None and (not re.fullmatch(r"[1-9][0-9]{0,18}", user_id) or user_id in self.state["users"]):
            raise ValueError(f"user id taken or not a 1-19 digit number: {user_id!r}")
        created = self.now()
        user_id = user_id or self.new_id(created)
        record = _user_record(user_id, username, name or username, created)
        unknown = set(profile) - set(record)
        if unknown:
            raise TypeError(f"unknown user fields: {sorted(unknown)}")
        record.update(profile)
        self.state["users"][user_id] = record
        return user_id

    def rename_user(self, user_id: str, username: str) -> None:
        """The account takes a new username (X keeps its id; the old name is free for others to take)."""
        if not re.fullmatch(r"[A-Za-z0-9_]{1,15}", username):
            raise ValueError(f"not a valid X username: {username!r}")
        holder = self.user_by_username(username)
        if holder is not None and holder["id"] != user_id:
            raise ValueError(f"username already taken: {username!r}")
        self.require_user(user_id)["username"] = username

    def user(self, user_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.state["users"].get(user_id)
        return found

    def require_user(self, user_id: str) -> dict[str, Any]:
        user = self.user(user_id)
        if user is None:
            raise KeyError(f"no user with id {user_id!r}")
        return user

    def user_by_username(self, username: str) -> dict[str, Any] | None:
        wanted = username.lower()
        return next((u for u in self.state["users"].values() if u["username"].lower() == wanted), None)

    def tweet_count(self, user_id: str) -> int:
        return sum(1 for t in self.state["tweets"].values() if t["author_id"] == user_id)

    def most_recent_tweet_id(self, user_id: str) -> str | None:
        ids = [int(t["id"]) for t in self.state["tweets"].values() if t["author_id"] == user_id]
        return str(max(ids)) if ids else None

    # ---- posts -------------------------------------------------------------------
    def tweet(self, tweet_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.state["tweets"].get(tweet_id)
        return found

    def create_tweet(self, author_id: str, text: str, in_reply_to: str | None = None,
                     at: datetime | None = None) -> dict[str, Any]:
        """Store a post; a reply is threaded under its parent and mentions its author."""
        self.require_user(author_id)
        created = _aware(at) if at else self.now()
        tweet_id = self.new_id(created)
        tweet: dict[str, Any] = {"id": tweet_id, "author_id": author_id, "created_at": iso(created),
                                 "conversation_id": tweet_id, "edit_history_tweet_ids": [tweet_id],
                                 "lang": "en", "possibly_sensitive": False, "reply_settings": "everyone"}
        if in_reply_to is not None:
            parent = self.require_tweet(in_reply_to)
            tweet["conversation_id"] = parent["conversation_id"]
            tweet["in_reply_to_user_id"] = parent["author_id"]
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": parent["id"]}]
        tweet["text"] = text = self.reply_text(author_id, text, in_reply_to)
        tweet["entities"] = self._entities(text)
        self.state["tweets"][tweet_id] = tweet
        self._emit("tweet", tweet)
        return tweet

    def require_tweet(self, tweet_id: str) -> dict[str, Any]:
        tweet = self.tweet(tweet_id)
        if tweet is None:
            raise KeyError(f"no post with id {tweet_id!r}")
        return tweet

    def reply_text(self, author_id: str, text: str, in_reply_to: str | None) -> str:
        """A reply's stored text starts with the @handles of the parent's author and mentions,
        as X fills in reply metadata (the replier and names already in the text are skipped)."""
        if in_reply_to is None:
            return text
        parent = self.require_tweet(in_reply_to)
        handles = [self.require_user(parent["author_id"])["username"]]
        handles += [m["username"] for m in parent.get("entities", {}).get("mentions", [])]
        own = self.require_user(author_id)["username"].lower()
        missing = [h for h in dict.fromkeys(handles) if h.lower() != own and not _mentions_name(text, h)]
        return " ".join([*(f"@{h}" for h in missing), text])

    def post_mention(self, author_id: str, text: str, in_reply_to: str | None = None,
                     at: datetime | None = None) -> str:
        """A customer's post at the support account (mentioned unless the text mentions someone)."""
        text = self.reply_text(author_id, text, in_reply_to)
        if not self._entities(text).get("mentions"):
            text = f"@{DEFAULT_ACCOUNT} {text}"
        tweet_id: str = self.create_tweet(author_id, text, in_reply_to, at)["id"]
        return tweet_id

    def is_duplicate(self, author_id: str, text: str) -> bool:
        """X refuses a post whose text repeats one of the author's own posts."""
        return any(t["author_id"] == author_id and t["text"] == text for t in self.state["tweets"].values())

    def mentions(self, user_id: str) -> list[dict[str, Any]]:
        """Posts mentioning `user_id`, newest first, as far back as X reaches."""
        hits = [t for t in self.state["tweets"].values()
                if any(m.get("id") == user_id for m in t.get("entities", {}).get("mentions", []))]
        return newest_first(hits)[:MENTIONS_REACH]

    def posts_by(self, user_id: str, exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """The user's own posts, newest first, as far back as X reaches; `exclude` may hold "replies"
        (no retweets are emulated, so "retweets" removes nothing)."""
        hits = [t for t in self.state["tweets"].values() if t["author_id"] == user_id
                and not ("replies" in exclude and t.get("in_reply_to_user_id"))]
        return newest_first(hits)[:TIMELINE_REACH_WITHOUT_REPLIES if "replies" in exclude else TIMELINE_REACH]

    def _entities(self, text: str) -> dict[str, Any]:
        entities: dict[str, Any] = {}
        mentions = []
        for match in _MENTION.finditer(text):
            user = self.user_by_username(match.group(1))
            if user is not None:
                mentions.append({"start": match.start(), "end": match.end(),
                                 "username": user["username"], "id": user["id"]})
        if mentions:
            entities["mentions"] = mentions
        hashtags = [{"start": m.start(), "end": m.end(), "tag": m.group(1)} for m in _HASHTAG.finditer(text)]
        if hashtags:
            entities["hashtags"] = hashtags
        return entities

    # ---- direct messages -------------------------------------------------------------
    def send_dm(self, sender_id: str, recipient_id: str, text: str, at: datetime | None = None) -> dict[str, Any]:
        """Add a MessageCreate event to the one-to-one conversation of the two users."""
        self.require_user(sender_id)
        self.require_user(recipient_id)
        if sender_id == recipient_id:
            raise ValueError("a one-to-one conversation needs two different users")
        created = _aware(at) if at else self.now()
        event = {"id": self.new_id(created), "event_type": "MessageCreate", "text": text,
                 "sender_id": sender_id, "dm_conversation_id": conversation_id(sender_id, recipient_id),
                 "created_at": iso(created)}
        self.state["dm_events"][event["id"]] = event
        self._emit("dm", event)
        return event

    def dm_events(self, user_id: str, dm_conversation_id: str | None = None) -> list[dict[str, Any]]:
        """The user's DM events of the last 30 days (of one conversation if given), newest first."""
        oldest = self.now() - DM_RETENTION
        events = [e for e in self.state["dm_events"].values()
                  if user_id in (conversation_members(e["dm_conversation_id"]) or ())
                  and (dm_conversation_id is None or e["dm_conversation_id"] == dm_conversation_id)
                  and parse_iso(e["created_at"]) >= oldest]
        return newest_first(events)


def newest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by snowflake id, newest first (X's order for timelines and DMs)."""
    return sorted(records, key=lambda r: int(r["id"]), reverse=True)


def _aware(when: datetime) -> datetime:
    """Seeds may pass naive datetimes; X times are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _mentions_name(text: str, username: str) -> bool:
    return any(m.group(1).lower() == username.lower() for m in _MENTION.finditer(text))
