"""Handlers: parse an X API v2 request, call the backend, answer in X's shape.

The caller is already authenticated and counted against the rate limits
(see XEmulator.authenticate), and is found in `request.environ[PRINCIPAL]`.
Missing resources in lookups answer 200 with `errors`, as X does; refused
writes answer 403 with X's generic problem body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from crmhub.sandbox._server import Fault, FaultKind, json_response
from crmhub.sandbox.x.errors import Forbidden, InvalidRequest, not_found_item
from crmhub.sandbox.x.fields import (
    DM_EVENT_TYPES,
    ID_PATTERN,
    TWEET_EXPANSIONS,
    USER_EXPANSIONS,
    USERNAME_PATTERN,
    DmRenderer,
    Query,
    Renderer,
    envelope,
    page_meta,
    dm_quirk,
    paginate,
)
from crmhub.sandbox.x.limits import Principal
from crmhub.sandbox.x.models import XBackend, conversation_id, conversation_members, parse_iso

PRINCIPAL = "crmhub.x.principal"
API = "https://api.twitter.com"

DM_CONVERSATION_PATTERN = "^([0-9]{1,19}-[0-9]{1,19}|[0-9]{15,19})$"
LOOKUP_PARAMS = ("expansions", "tweet.fields", "user.fields")
TWEET_PARAMS = ("expansions", "media.fields", "place.fields", "poll.fields", "tweet.fields", "user.fields")
MENTIONS_PARAMS = (*TWEET_PARAMS, "end_time", "max_results", "pagination_token", "since_id", "start_time", "until_id")
TIMELINE_PARAMS = (*MENTIONS_PARAMS, "exclude")
TIMELINE_EXCLUDES = frozenset({"replies", "retweets"})
DM_PARAMS = ("dm_event.fields", "event_types", "expansions", "max_results", "media.fields", "pagination_token",
             "tweet.fields", "user.fields")
TWEET_BODY_KEYS = ("text", "reply", "reply_settings")
DM_TEXT_LIMIT = 10_000

TakeFault = Callable[[FaultKind, Request], Fault | None]


def principal(request: Request) -> Principal:
    """The authenticated caller of this request."""
    found: Principal = request.environ[PRINCIPAL]
    return found


class XHandlers:
    """One method per endpoint of `urls.ENDPOINTS`."""

    def __init__(self, backend: XBackend, take_fault: TakeFault) -> None:
        self.backend = backend
        self.take_fault = take_fault

    # ---- users ---------------------------------------------------------------
    def me(self, request: Request) -> Response:
        query = Query(request.args, LOOKUP_PARAMS)
        return self._user_lookup(query, "id", [(principal(request).user_id, None)], self.backend.user, single=True)

    def user_by_id(self, request: Request, id: str) -> Response:  # noqa: A002  # X's path parameter name
        query = Query(request.args, LOOKUP_PARAMS)
        query.matching("id", id, ID_PATTERN)
        return self._user_lookup(query, "id", [(id, None)], self.backend.user, single=True)

    def user_by_username(self, request: Request, username: str) -> Response:
        query = Query(request.args, LOOKUP_PARAMS)
        query.matching("username", username, USERNAME_PATTERN)
        return self._user_lookup(query, "username", [(username, None)], self.backend.user_by_username, single=True)

    def users_by_ids(self, request: Request) -> Response:
        query = Query(request.args, ("ids", *LOOKUP_PARAMS))
        keys = _value_list(query, "ids", ID_PATTERN)
        return self._user_lookup(query, "ids", self._suspended(request, keys), self.backend.user, single=False)

    def users_by_usernames(self, request: Request) -> Response:
        query = Query(request.args, ("usernames", *LOOKUP_PARAMS))
        keys = _value_list(query, "usernames", USERNAME_PATTERN)
        return self._user_lookup(query, "usernames", self._suspended(request, keys), self.backend.user_by_username,
                                 single=False)

    def _suspended(self, request: Request, keys: list[str]) -> list[tuple[str, str | None]]:
        """Fault `partial_failure`: the users at `reject` come back as suspended."""
        fault = self.take_fault("partial_failure", request)
        rejected = set(fault.reject) if fault else set()
        return [(key, f"User has been suspended: [{key}]." if i in rejected else None) for i, key in enumerate(keys)]

    def _user_lookup(self, query: Query, parameter: str, keys: list[tuple[str, str | None]],
                     find: Callable[[str], dict[str, Any] | None], *, single: bool) -> Response:
        """Found users in `data`, misses (and `refusal`s) in `errors`, as X's lookups answer."""
        renderer = Renderer(self.backend, query, expansions=USER_EXPANSIONS)
        query.done()
        data, errors = [], []
        for key, refusal in keys:
            user = None if refusal else find(key)
            if user is None:
                item = not_found_item("user", parameter, key, refusal)
                errors.append({**item, "title": "Forbidden"} if refusal else item)
                continue
            data.append(renderer.user(user))
            renderer.expand_user(user)
        return json_response(envelope(data[0] if single and data else data, renderer.includes, errors))

    # ---- posts ---------------------------------------------------------------
    def tweet(self, request: Request, id: str) -> Response:  # noqa: A002  # X's path parameter name
        query = Query(request.args, TWEET_PARAMS)
        query.matching("id", id, ID_PATTERN)
        renderer = _tweet_renderer(self.backend, query)
        query.done()
        found = self.backend.tweet(id)
        if found is None:
            return json_response(envelope(None, errors=[not_found_item("tweet", "id", id)]))
        data = renderer.tweet(found)
        renderer.expand_tweet(found)
        return json_response(envelope(data, renderer.includes))

    def mentions(self, request: Request, id: str) -> Response:  # noqa: A002  # X's path parameter name
        return self._timeline(Query(request.args, MENTIONS_PARAMS), id, lambda: self.backend.mentions(id))

    def user_tweets(self, request: Request, id: str) -> Response:  # noqa: A002  # X's path parameter name
        """GET /2/users/:id/tweets: the user's own posts (up to 3,200), `exclude=replies,retweets`."""
        query = Query(request.args, TIMELINE_PARAMS)
        exclude = frozenset(query.csv("exclude", TIMELINE_EXCLUDES))
        return self._timeline(query, id, lambda: self.backend.posts_by(id, exclude))

    def _timeline(self, query: Query, id: str,  # noqa: A002  # X's path parameter name
                  posts: Callable[[], list[dict[str, Any]]]) -> Response:
        """A post timeline of one user, newest first: id windows, time windows and pages as X applies them."""
        query.matching("id", id, ID_PATTERN)
        renderer = _tweet_renderer(self.backend, query)
        max_results = query.integer("max_results", 5, 100, 10)
        since_id, until_id = query.snowflake("since_id"), query.snowflake("until_id")
        start, end = query.time_window()
        token = query.page_token()
        query.done()
        if self.backend.user(id) is None:
            return json_response(envelope(None, errors=[not_found_item("user", "id", id)]))
        tweets = [t for t in posts() if _within(t, since_id, until_id, start, end)]
        page = paginate(tweets, max_results, token)
        data = [renderer.tweet(t) for t in page.items]
        for tweet in page.items:
            renderer.expand_tweet(tweet)
        return json_response(envelope(data, renderer.includes, meta=page_meta(page, with_ids=True)))

    def create_tweet(self, request: Request) -> Response:
        Query(request.args, ()).done()
        body = _json_body(request, TWEET_BODY_KEYS)
        text = _required_text(body, "text")
        reply = body.get("reply") or {}
        parent = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
        if reply and not isinstance(parent, str):
            raise InvalidRequest([{"parameters": {}, "message": "$.reply.in_reply_to_tweet_id: is missing but it "
                                                                "is required"}])
        author = principal(request).user_id
        if parent is not None and self.backend.tweet(parent) is None:
            raise Forbidden("You attempted to reply to a Tweet that is deleted or not visible to you.")
        if self.backend.is_duplicate(author, self.backend.reply_text(author, text, parent)):
            raise Forbidden("You are not allowed to create a Tweet with duplicate content.")
        tweet = self.backend.create_tweet(author, text, parent)
        data = {key: tweet[key] for key in ("id", "text", "edit_history_tweet_ids")}
        return json_response({"data": data}, 201, {"Location": f"{API}/2/tweets/{tweet['id']}"})

    # ---- direct messages -------------------------------------------------------
    def dm_events(self, request: Request) -> Response:
        query = Query(request.args, DM_PARAMS)
        return self._dm_list(query, principal(request).user_id, None)

    def dm_events_with(self, request: Request, participant_id: str) -> Response:
        query = Query(request.args, DM_PARAMS)
        me = principal(request).user_id
        valid = query.matching("participant_id", participant_id, ID_PATTERN)
        return self._dm_list(query, me, conversation_id(me, participant_id) if valid else None)

    def dm_events_in(self, request: Request, dm_conversation_id: str) -> Response:
        query = Query(request.args, DM_PARAMS)
        query.matching("dm_conversation_id", dm_conversation_id, DM_CONVERSATION_PATTERN)
        me = principal(request).user_id
        members = conversation_members(dm_conversation_id)
        if members is not None and me not in members:
            raise Forbidden()
        return self._dm_list(query, me, dm_conversation_id)

    def _dm_list(self, query: Query, user_id: str, dm_conversation_id: str | None) -> Response:
        renderer = DmRenderer(self.backend, query)
        query.fields("media.fields")
        event_types = query.csv("event_types", DM_EVENT_TYPES)
        max_results = query.integer("max_results", 1, 100, 100)
        token = query.page_token()
        query.done()
        events = [e for e in self.backend.dm_events(user_id, dm_conversation_id)
                  if not event_types or e["event_type"] in event_types]
        page = dm_quirk(paginate(events, max_results, token), token)
        data = [renderer.event(e) for e in page.items]
        return json_response(envelope(data, renderer.includes, meta=page_meta(page, with_ids=False)))

    def send_dm_with(self, request: Request, participant_id: str) -> Response:
        query = Query(request.args, ())
        query.matching("participant_id", participant_id, ID_PATTERN)
        query.done()
        return self._send_dm(request, participant_id)

    def send_dm_in(self, request: Request, dm_conversation_id: str) -> Response:
        query = Query(request.args, ())
        query.matching("dm_conversation_id", dm_conversation_id, DM_CONVERSATION_PATTERN)
        query.done()
        me = principal(request).user_id
        members = conversation_members(dm_conversation_id)
        if members is None or me not in members:
            raise Forbidden()  # group conversations are not emulated; others' are not ours
        return self._send_dm(request, members[1] if members[0] == me else members[0])

    def _send_dm(self, request: Request, recipient_id: str) -> Response:
        text = _required_text(_json_body(request, ("text",)), "text")
        if len(text) > DM_TEXT_LIMIT:
            raise InvalidRequest([{"parameters": {"text": [text[:20] + "..."]},
                                   "message": f"$.text: may only be {DM_TEXT_LIMIT} characters long"}])
        me = principal(request).user_id
        recipient = self.backend.user(recipient_id)
        if recipient is None or recipient_id == me or not recipient["receives_your_dm"]:
            raise Forbidden()
        event = self.backend.send_dm(me, recipient_id, text)
        data = {"dm_conversation_id": event["dm_conversation_id"], "dm_event_id": event["id"]}
        return json_response({"data": data}, 201, {"Location": f"{API}/2/dm_events/{event['id']}"})


def _tweet_renderer(backend: XBackend, query: Query) -> Renderer:
    renderer = Renderer(backend, query, expansions=TWEET_EXPANSIONS)
    for name in ("media.fields", "place.fields", "poll.fields"):
        query.fields(name)  # validated; no media, places or polls are emulated
    return renderer


def _value_list(query: Query, name: str, pattern: str) -> list[str]:
    """A comma-separated list of 1..100 ids or usernames."""
    raw = query.args.get(name, "")
    items = [item for item in raw.split(",") if item]
    if not 1 <= len(items) <= 100:
        query.errors.add(name, items, f"The number of values in the `{name}` query parameter list [{len(items)}] "
                                      "is not between 1 and 100")
    return [item for item in items if query.matching(name, item, pattern)]


def _within(tweet: dict[str, Any], since_id: int | None, until_id: int | None, start: datetime | None,
            end: datetime | None) -> bool:
    """since_id/until_id are exclusive; start_time/end_time inclusive."""
    tweet_id, created = int(tweet["id"]), parse_iso(tweet["created_at"])
    return ((since_id is None or tweet_id > since_id) and (until_id is None or tweet_id < until_id)
            and (start is None or created >= start) and (end is None or created <= end))


def _json_body(request: Request, known: tuple[str, ...]) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidRequest([{"parameters": {}, "message": "Requests with bodies must have content-type of "
                                                            "application/json."}])
    for key in body:
        if key not in known:
            raise InvalidRequest([{"parameters": {key: [str(body[key])]},
                                   "message": f"the crmhub sandbox does not emulate `{key}` in this request"}])
    return body


def _required_text(body: dict[str, Any], key: str) -> str:
    text = body.get(key)
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest([{"parameters": {}, "message": f"$.{key}: is missing but it is required"}])
    return text
