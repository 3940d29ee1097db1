"""X API v2 wire formats: query validation, fields, expansions, paging.

X returns a small default set of fields per object (`id`, `text`,
`edit_history_tweet_ids` for a post; `id`, `name`, `username` for a user;
`id`, `event_type`, `text` for a DM event) and adds others on request through
`tweet.fields`, `user.fields` and `dm_event.fields`. `expansions` put related
objects under `includes`. Unknown parameters and values are 400s that name
each culprit. References: docs.x.com/x-api/fundamentals/fields,
.../expansions, .../pagination.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from werkzeug.datastructures import MultiDict

from crmhub.sandbox.x.errors import ParamErrors
from crmhub.sandbox.x.models import XBackend, parse_iso

TWEET_FIELDS = (
    "article", "attachments", "author_id", "card_uri", "community_id", "context_annotations",
    "conversation_id", "created_at", "display_text_range", "edit_controls", "edit_history_tweet_ids",
    "entities", "geo", "id", "in_reply_to_user_id", "lang", "media_metadata", "non_public_metrics",
    "note_tweet", "organic_metrics", "possibly_sensitive", "promoted_metrics", "public_metrics",
    "referenced_tweets", "reply_settings", "scopes", "source", "text", "withheld",
)
USER_FIELDS = (
    "affiliation", "connection_status", "created_at", "description", "entities", "id",
    "is_identity_verified", "location", "most_recent_tweet_id", "name", "parody", "pinned_tweet_id",
    "profile_banner_url", "profile_image_url", "protected", "public_metrics", "receives_your_dm",
    "subscription", "subscription_type", "url", "username", "verified", "verified_followers_count",
    "verified_type", "withheld",
)
DM_EVENT_FIELDS = (
    "attachments", "cashtags", "created_at", "dm_conversation_id", "entities", "event_type", "hashtags",
    "id", "mentions", "participant_ids", "referenced_tweets", "sender_id", "text", "urls",
)
MEDIA_FIELDS = (
    "alt_text", "duration_ms", "height", "media_key", "non_public_metrics", "organic_metrics",
    "preview_image_url", "promoted_metrics", "public_metrics", "type", "url", "variants", "width",
)
PLACE_FIELDS = ("contained_within", "country", "country_code", "full_name", "geo", "id", "name", "place_type")
POLL_FIELDS = ("duration_minutes", "end_datetime", "id", "options", "voting_status")
TWEET_EXPANSIONS = (
    "article.cover_media", "article.media_entities", "attachments.media_keys", "attachments.media_source_tweet",
    "attachments.poll_ids", "author_id", "edit_history_tweet_ids", "entities.mentions.username",
    "entities.note.mentions.username", "geo.place_id", "in_reply_to_user_id", "referenced_tweets.id",
    "referenced_tweets.id.attachments.media_keys", "referenced_tweets.id.author_id",
)
USER_EXPANSIONS = ("affiliation.user_id", "most_recent_tweet_id", "pinned_tweet_id")
DM_EXPANSIONS = ("attachments.media_keys", "participant_ids", "referenced_tweets.id", "sender_id")
DM_EVENT_TYPES = ("MessageCreate", "ParticipantsJoin", "ParticipantsLeave")

TWEET_DEFAULTS = ("id", "text", "edit_history_tweet_ids")
USER_DEFAULTS = ("id", "name", "username")
DM_DEFAULTS = ("id", "event_type", "text")

ID_PATTERN = "^[0-9]{1,19}$"
USERNAME_PATTERN = "^[A-Za-z0-9_]{1,15}$"

FIELD_PARAMS: dict[str, tuple[str, ...]] = {
    "tweet.fields": TWEET_FIELDS, "user.fields": USER_FIELDS, "dm_event.fields": DM_EVENT_FIELDS,
    "media.fields": MEDIA_FIELDS, "place.fields": PLACE_FIELDS, "poll.fields": POLL_FIELDS,
}


class Query:
    """The query string of one request, checked the way X checks it.

    Methods read and validate one parameter each; problems are collected and
    `done()` raises a single 400 listing them all.
    """

    def __init__(self, args: MultiDict[str, str], allowed: Iterable[str]) -> None:
        self.args = args
        self.errors = ParamErrors()
        allowed = tuple(allowed)
        for name in args:
            if name not in allowed:
                self.errors.add(name, args.getlist(name),
                                f"The query parameter [{name}] is not one of [{','.join(allowed)}]")

    def csv(self, name: str, choices: Collection[str]) -> list[str]:
        """A comma-separated list whose items must all be among `choices`."""
        raw = self.args.get(name)
        if raw is None:
            return []
        items = [item for item in raw.split(",") if item]
        for item in items:
            if item not in choices:
                self.errors.add(name, [item], f"The `{name}` query parameter value [{item}] is not one of "
                                              f"[{','.join(choices)}]")
        return items

    def fields(self, name: str) -> list[str]:
        return self.csv(name, FIELD_PARAMS[name])

    def integer(self, name: str, low: int, high: int, default: int) -> int:
        raw = self.args.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            self.errors.add(name, [raw], f"The `{name}` query parameter value [{raw}] is not between {low} and {high}")
            return default
        return int(raw)

    def snowflake(self, name: str) -> int | None:
        raw = self.args.get(name)
        if raw is None or not self.matching(name, raw, ID_PATTERN):
            return None
        return int(raw)

    def matching(self, name: str, value: str, pattern: str) -> bool:
        """Check a (path or query) value against X's pattern for it."""
        if re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value):
            return True
        self.errors.add(name, [value], f"The `{name}` query parameter value [{value}] does not match {pattern}")
        return False

    def time(self, name: str) -> datetime | None:
        raw = self.args.get(name)
        if raw is None:
            return None
        try:
            return parse_iso(raw)
        except ValueError:
            self.errors.add(name, [raw], f"Invalid '{name}':'{raw}'. '{name}' must be a ISO 8601/RFC 3339 "
                                         "UTC timestamp, e.g. 2024-01-01T12:00:00Z")
            return None

    def page_token(self) -> PageToken | None:
        raw = self.args.get("pagination_token")
        if raw is None:
            return None
        token = PageToken.decode(raw)
        if token is None:
            self.errors.add("pagination_token", [raw], f"The `pagination_token` query parameter value [{raw}] "
                                                       "is not valid")
        return token

    def time_window(self) -> tuple[datetime | None, datetime | None]:
        """start_time and end_time; X refuses a start that is not before the end."""
        start, end = self.time("start_time"), self.time("end_time")
        if start and end and start >= end:
            raw = self.args["start_time"]
            self.errors.add("start_time", [raw], f"Invalid 'start_time':'{raw}'. 'start_time' must be before "
                                                 "'end_time'.")
        return start, end

    def done(self) -> None:
        self.errors.raise_if_any()


@dataclass(frozen=True)
class PageToken:
    """An opaque pagination token: which way to page from which boundary id."""

    direction: Literal["next", "previous"]
    boundary: int

    def encode(self) -> str:
        digit = "1" if self.direction == "next" else "2"
        return _base36(int(digit + str(self.boundary)))

    @classmethod
    def decode(cls, value: str) -> PageToken | None:
        if not re.fullmatch(r"[0-9a-z]{1,40}", value):
            return None
        digits = str(int(value, 36))
        if len(digits) < 2 or digits[0] not in "12":
            return None
        return cls("next" if digits[0] == "1" else "previous", int(digits[1:]))


def _base36(number: int) -> str:
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = alphabet[rest] + out
    return out or "0"


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_token: str | None
    previous_token: str | None


def paginate(items: list[dict[str, Any]], max_results: int, token: PageToken | None) -> Page:
    """One page of `items` (newest first), with tokens to the older and newer pages."""
    if token is None:
        window = items[:max_results]
        more_older = len(items) > max_results
        more_newer = False
    elif token.direction == "next":
        older = [i for i in items if int(i["id"]) < token.boundary]
        window, more_older, more_newer = older[:max_results], len(older) > max_results, True
    else:
        newer = [i for i in items if int(i["id"]) > token.boundary]
        window, more_older, more_newer = newer[-max_results:], True, len(newer) > max_results
    if not window:
        return Page([], None, None)
    return Page(
        window,
        PageToken("next", int(window[-1]["id"])).encode() if more_older else None,
        PageToken("previous", int(window[0]["id"])).encode() if more_newer else None,
    )


def dm_quirk(page: Page, token: PageToken | None) -> Page:
    """DM event lookups as X answers them: a `next_token` on the last page too, and after it an empty page.

    X's DM endpoints hand out a `next_token` whenever a page has events, even
    the oldest one; following it gives `result_count: 0`, no `data` and a
    `previous_token` back, and no `next_token`. A client must stop on the empty
    page, not on a missing token alone.
    """
    if page.items and page.next_token is None:
        return Page(page.items, PageToken("next", int(page.items[-1]["id"])).encode(), page.previous_token)
    if not page.items and token is not None and token.direction == "next":
        return Page([], None, PageToken("previous", token.boundary - 1).encode())
    return page


def page_meta(page: Page, *, with_ids: bool) -> dict[str, Any]:
    """The `meta` object of a list answer (posts also carry newest/oldest ids)."""
    meta: dict[str, Any] = {"result_count": len(page.items)}
    if with_ids and page.items:
        meta["newest_id"] = page.items[0]["id"]
        meta["oldest_id"] = page.items[-1]["id"]
    if page.next_token:
        meta["next_token"] = page.next_token
    if page.previous_token:
        meta["previous_token"] = page.previous_token
    return meta


def envelope(data: Any, includes: Includes | None = None, errors: list[dict[str, Any]] | None = None,
             meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """X's answer: no `data` key when there is nothing, as X does."""
    body: dict[str, Any] = {}
    if data:
        body["data"] = data
    if includes is not None and includes.body():
        body["includes"] = includes.body()
    if errors:
        body["errors"] = errors
    if meta is not None:
        body["meta"] = meta
    return body


# ---- rendering ---------------------------------------------------------------


def pick(record: Mapping[str, Any], defaults: Iterable[str], requested: Iterable[str]) -> dict[str, Any]:
    """The default fields plus those requested that the record has."""
    out = {name: record[name] for name in defaults if name in record}
    out.update({name: record[name] for name in requested if name in record})
    return out


class Renderer:
    """Renders posts, users and DM events with the requested fields and expansions."""

    def __init__(self, backend: XBackend, query: Query, *, expansions: Collection[str] = ()) -> None:
        self.backend = backend
        self.tweet_fields = query.fields("tweet.fields")
        self.user_fields = query.fields("user.fields")
        self.expansions = query.csv("expansions", expansions) if expansions else []
        self.includes = Includes(self)

    def tweet(self, tweet: dict[str, Any]) -> dict[str, Any]:
        out = pick(tweet, TWEET_DEFAULTS, self.tweet_fields)
        if "public_metrics" in self.tweet_fields:
            out["public_metrics"] = {"retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0,
                                     "bookmark_count": 0, "impression_count": 0}
        return out

    def user(self, user: dict[str, Any]) -> dict[str, Any]:
        out = pick(user, USER_DEFAULTS, self.user_fields)
        if "public_metrics" in self.user_fields:
            out["public_metrics"] = {"followers_count": user["followers_count"],
                                     "following_count": user["following_count"],
                                     "tweet_count": self.backend.tweet_count(user["id"]),
                                     "listed_count": 0, "like_count": 0}
        latest = self.backend.most_recent_tweet_id(user["id"]) if "most_recent_tweet_id" in self.user_fields else None
        if latest:
            out["most_recent_tweet_id"] = latest
        return out

    def expand_tweet(self, tweet: dict[str, Any]) -> None:
        """Add what this post's expansions point at to `includes`."""
        wanted = set(self.expansions)
        if "author_id" in wanted:
            self.includes.user(tweet["author_id"])
        if "in_reply_to_user_id" in wanted and "in_reply_to_user_id" in tweet:
            self.includes.user(tweet["in_reply_to_user_id"])
        if "entities.mentions.username" in wanted:
            for mention in tweet.get("entities", {}).get("mentions", []):
                self.includes.user(mention["id"])
        for ref in tweet.get("referenced_tweets", []):
            referenced = self.backend.tweet(ref["id"])
            if referenced is not None and "referenced_tweets.id" in wanted:
                self.includes.tweet(referenced)
            if referenced is not None and "referenced_tweets.id.author_id" in wanted:
                self.includes.user(referenced["author_id"])

    def expand_user(self, user: dict[str, Any]) -> None:
        if "most_recent_tweet_id" in self.expansions:
            latest = self.backend.most_recent_tweet_id(user["id"])
            if latest:
                self.includes.tweet(self.backend.state["tweets"][latest])


class DmRenderer(Renderer):
    """Adds DM events (their own field list and expansions) to the renderer."""

    def __init__(self, backend: XBackend, query: Query) -> None:
        super().__init__(backend, query, expansions=DM_EXPANSIONS)
        self.dm_fields = query.fields("dm_event.fields")

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        if "sender_id" in self.expansions:
            self.includes.user(event["sender_id"])
        return pick(event, DM_DEFAULTS, self.dm_fields)


class Includes:
    """The `includes` object: expanded users and posts, each once, in order."""

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer
        self.users: dict[str, dict[str, Any]] = {}
        self.tweets: dict[str, dict[str, Any]] = {}

    def user(self, user_id: str) -> None:
        found = self._renderer.backend.user(user_id)
        if found is not None and user_id not in self.users:
            self.users[user_id] = self._renderer.user(found)

    def tweet(self, tweet: dict[str, Any]) -> None:
        if tweet["id"] not in self.tweets:
            self.tweets[tweet["id"]] = self._renderer.tweet(tweet)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.users:
            body["users"] = list(self.users.values())
        if self.tweets:
            body["tweets"] = list(self.tweets.values())
        return body
