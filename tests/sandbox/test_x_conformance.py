"""The X emulator, driven through tweepy's `Client` exactly as crmhub uses it.

tweepy is pointed at the sandbox only through its public `session`
attribute (replaced by a session whose adapter sends every request to the
emulator); it still builds and OAuth-signs https://api.twitter.com URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import tweepy

from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.x import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_ACCESS_TOKEN_SECRET,
    DEFAULT_ACCOUNT,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_BEARER_TOKEN,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
    XEmulator,
)
from crmhub.sandbox.x.urls import ENDPOINTS
from tests.http_receiver import LocalServer, QuietHandler

ME = DEFAULT_ACCOUNT_ID


def make_client(server: EmulatorServer, **overrides: Any) -> tweepy.Client:
    """A tweepy Client with the sandbox credentials (or `overrides`), sent to `server`."""
    options: dict[str, Any] = {
        "bearer_token": DEFAULT_BEARER_TOKEN, "consumer_key": DEFAULT_CONSUMER_KEY,
        "consumer_secret": DEFAULT_CONSUMER_SECRET, "access_token": DEFAULT_ACCESS_TOKEN,
        "access_token_secret": DEFAULT_ACCESS_TOKEN_SECRET, "wait_on_rate_limit": False, **overrides,
    }
    client = tweepy.Client(**options)
    client.session = build_session(base_url=server.url)
    return client


@pytest.fixture
def x(x_sandbox: EmulatorServer) -> XEmulator:
    emulator = x_sandbox.emulator
    assert isinstance(emulator, XEmulator)
    return emulator


@pytest.fixture
def client(x_sandbox: EmulatorServer) -> tweepy.Client:
    return make_client(x_sandbox)


@pytest.fixture
def alice(x: XEmulator) -> str:
    return x.add_user("alice", "Alice Doe", description="loves tea")


# ---- users -----------------------------------------------------------------------


def test_get_me_is_the_support_account_with_requested_fields(client: tweepy.Client, x: XEmulator) -> None:
    x.post_mention(x.add_user("bob"), "hello")
    me = client.get_me(user_fields=["created_at", "public_metrics", "description"]).data
    assert (me.id, me.username) == (int(ME), DEFAULT_ACCOUNT)
    assert me.created_at == datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
    assert me.public_metrics["tweet_count"] == 0
    assert set(me.data) == {"id", "name", "username", "created_at", "public_metrics", "description"}


def test_user_lookups_by_id_username_and_lists(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    bob = x.add_user("bob", "Bob")
    assert client.get_user(id=alice).data.username == "alice"
    assert client.get_user(username="ALICE", user_fields="description").data.description == "loves tea"
    assert [u.username for u in client.get_users(ids=[alice, bob]).data] == ["alice", "bob"]
    by_name = client.get_users(usernames=["bob", "nobody"], user_auth=True)
    assert [u.id for u in by_name.data] == [int(bob)]
    assert by_name.errors == [{
        "value": "nobody", "detail": "Could not find user with usernames: [nobody].", "title": "Not Found Error",
        "resource_type": "user", "parameter": "usernames", "resource_id": "nobody",
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }]


def test_missing_user_is_a_200_with_errors_not_an_exception(client: tweepy.Client) -> None:
    answer = client.get_user(id="42")
    assert answer.data is None
    assert answer.errors[0]["detail"] == "Could not find user with id: [42]."


def test_user_ids_are_snowflakes_that_grow_with_sandbox_time(x: XEmulator) -> None:
    first = x.add_user("first")
    x.clock.advance(1)
    second = x.add_user("second")
    assert int(ME) < int(first) < int(second)
    assert (int(second) >> 22) - (int(first) >> 22) >= 1000  # milliseconds since the Twitter epoch


# ---- mentions ------------------------------------------------------------------------


def test_mentions_are_newest_first_and_since_id_excludes_older(client: tweepy.Client, x: XEmulator,
                                                               alice: str) -> None:
    first, second, third = (x.post_mention(alice, f"help {n}") for n in range(3))
    answer = client.get_users_mentions(ME, since_id=first)
    assert [str(t.id) for t in answer.data] == [third, second]
    assert answer.meta == {"result_count": 2, "newest_id": third, "oldest_id": second}
    assert answer.data[0].text == "@crmhub_support help 2"
    assert set(answer.data[0].data) == {"id", "text", "edit_history_tweet_ids"}


def test_mentions_paginate_across_pages(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    posted = [x.post_mention(alice, f"issue {n}") for n in range(12)]
    pages = list(tweepy.Paginator(client.get_users_mentions, ME, max_results=5))
    assert [len(p.data) for p in pages] == [5, 5, 2]
    assert [str(t.id) for p in pages for t in p.data] == posted[::-1]
    assert "next_token" not in pages[-1].meta and "previous_token" in pages[-1].meta
    back = client.get_users_mentions(ME, max_results=5, pagination_token=pages[-1].meta["previous_token"])
    assert [t.id for t in back.data] == [t.id for t in pages[1].data]
    assert x.calls["GET /2/users/<id>/mentions"] == 4


def test_mention_fields_and_expansions_resolve_authors(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    bob = x.add_user("bob", "Bob B")
    root = x.post_mention(alice, "my order is late #late")
    reply = x.post_mention(bob, "same here", in_reply_to=root)
    answer = client.get_users_mentions(
        ME, user_auth=True, expansions=["author_id", "in_reply_to_user_id", "referenced_tweets.id"],
        tweet_fields=["created_at", "author_id", "conversation_id", "in_reply_to_user_id", "referenced_tweets",
                      "entities"], user_fields=["username", "created_at"])
    newest = answer.data[0]
    assert (str(newest.id), newest.author_id, newest.conversation_id) == (reply, int(bob), int(root))
    assert newest.in_reply_to_user_id == int(alice)
    assert [(r.type, str(r.id)) for r in newest.referenced_tweets] == [("replied_to", root)]
    assert newest.text == "@alice @crmhub_support same here"
    assert [m["username"] for m in newest.entities["mentions"]] == ["alice", "crmhub_support"]
    assert answer.data[1].entities["hashtags"] == [{"start": 33, "end": 38, "tag": "late"}]
    assert {u.username for u in answer.includes["users"]} == {"alice", "bob"}
    assert [str(t.id) for t in answer.includes["tweets"]] == [root]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", newest.data["created_at"])


def test_mentions_time_window_and_until_id(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    noon = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    ids = [x.post_mention(alice, f"at {h}", at=noon + timedelta(hours=h)) for h in range(4)]
    window = client.get_users_mentions(ME, start_time=noon + timedelta(hours=1), end_time="2024-01-01T14:00:00.000Z")
    assert [str(t.id) for t in window.data] == [ids[2], ids[1]]
    assert client.get_users_mentions(ME, until_id=ids[1]).meta == {
        "result_count": 1, "newest_id": ids[0], "oldest_id": ids[0]}
    tweet = client.get_tweet(ids[0], tweet_fields="created_at").data
    assert tweet.data["created_at"] == "2024-01-01T12:00:00.000Z"


def test_a_users_posts_timeline_holds_own_posts_and_replies_newest_first(
        client: tweepy.Client, x: XEmulator, alice: str) -> None:
    question = x.post_mention(alice, "is the shop open?")
    announcement = x.post(ME, "We are open until 8pm today")
    reply = x.post(ME, "yes, until 8pm!", in_reply_to=question)
    answer = client.get_users_tweets(ME, since_id=question, tweet_fields=["author_id", "conversation_id",
                                                                          "in_reply_to_user_id", "created_at"])
    assert [str(t.id) for t in answer.data] == [reply, announcement]
    newest = answer.data[0]
    assert newest.text == "@alice yes, until 8pm!"  # X's reply metadata
    assert (newest.author_id, newest.conversation_id, newest.in_reply_to_user_id) == (int(ME), int(question),
                                                                                      int(alice))
    assert answer.meta == {"result_count": 2, "newest_id": reply, "oldest_id": announcement}
    no_replies = client.get_users_tweets(ME, exclude=["replies", "retweets"])
    assert [str(t.id) for t in no_replies.data] == [announcement]
    assert [str(t.id) for t in client.get_users_tweets(alice).data] == [question]  # only the user's own
    assert x.calls["GET /2/users/<id>/tweets"] == 3


def test_mentions_reach_back_800_posts(x_sandbox: EmulatorServer, x: XEmulator, alice: str) -> None:
    client = make_client(x_sandbox, return_type=dict)
    oldest = x.post_mention(alice, "the very first")
    for n in range(804):
        x.post_mention(alice, f"post {n}")
    seen = list(tweepy.Paginator(client.get_users_mentions, ME, max_results=100).flatten())
    assert len(seen) == 800
    assert oldest not in {t["id"] for t in seen}
    assert len(client.get_users_mentions(ME, since_id=oldest, max_results=100)["data"]) == 100


def test_empty_timeline_has_no_data_key(x_sandbox: EmulatorServer) -> None:
    client = make_client(x_sandbox, return_type=dict)
    assert client.get_users_mentions(ME) == {"meta": {"result_count": 0}}
    assert client.get_direct_message_events() == {"meta": {"result_count": 0}}


def test_mentions_of_an_unknown_user_answer_not_found_in_errors(client: tweepy.Client) -> None:
    answer = client.get_users_mentions("12345")
    assert answer.data is None
    assert answer.errors[0]["resource_type"] == "user"


# ---- posts --------------------------------------------------------------------------------


def test_create_tweet_reply_threads_under_the_mention(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    mention = x.post_mention(alice, "where is my parcel?")
    created = client.create_tweet(text="Sorry! Checking now.", in_reply_to_tweet_id=mention).data
    assert created["text"] == "@alice Sorry! Checking now."
    assert created["edit_history_tweet_ids"] == [created["id"]]
    stored = x.tweets()[-1]
    assert stored["id"] == created["id"]
    assert (stored["author_id"], stored["in_reply_to_user_id"], stored["conversation_id"]) == (ME, alice, mention)
    assert stored["referenced_tweets"] == [{"type": "replied_to", "id": mention}]
    looked_up = client.get_tweet(created["id"], expansions="author_id", tweet_fields="conversation_id")
    assert (looked_up.data.conversation_id, looked_up.includes["users"][0].username) == (int(mention), DEFAULT_ACCOUNT)


def test_create_tweet_answers_201_with_location(client: tweepy.Client) -> None:
    client.return_type = requests.Response
    answer = client.create_tweet(text="status update")
    assert answer.status_code == 201
    assert answer.headers["Location"] == f"https://api.twitter.com/2/tweets/{answer.json()['data']['id']}"


def test_missing_tweet_is_a_200_with_a_not_found_error(client: tweepy.Client) -> None:
    answer = client.get_tweet("1234")
    assert answer.data is None
    assert answer.errors == [{
        "value": "1234", "detail": "Could not find tweet with id: [1234].", "title": "Not Found Error",
        "resource_type": "tweet", "parameter": "id", "resource_id": "1234",
        "type": "https://api.twitter.com/2/problems/resource-not-found",
    }]


# ---- direct messages ---------------------------------------------------------------------


@pytest.fixture
def conversations(x: XEmulator, alice: str) -> dict[str, list[str]]:
    """Three DMs with alice, two with bob (ids oldest first), one between others."""
    bob = x.add_user("bob")
    with_alice = [x.send_dm(alice, ME, "my card was charged twice"), x.send_dm(ME, alice, "let me check"),
                  x.send_dm(alice, ME, "thanks")]
    with_bob = [x.send_dm(bob, ME, "hi"), x.send_dm(bob, ME, "anyone?")]
    x.send_dm(alice, bob, "not for the support account")
    return {"alice": with_alice, "bob": with_bob, "bob_id": [bob]}


def _ids(answer: Any) -> list[str]:
    return [str(e.id) for e in answer.data or []]


def test_dm_events_all_with_participant_and_by_conversation(client: tweepy.Client, alice: str,
                                                            conversations: dict[str, list[str]]) -> None:
    everything = client.get_direct_message_events(dm_event_fields=["sender_id", "dm_conversation_id", "created_at"])
    assert set(_ids(everything)) == set(conversations["alice"] + conversations["bob"])
    assert _ids(everything) == sorted(_ids(everything), key=int, reverse=True)
    assert _ids(client.get_direct_message_events(participant_id=alice)) == conversations["alice"][::-1]
    bob = conversations["bob_id"][0]
    conversation = f"{min(ME, bob, key=int)}-{max(ME, bob, key=int)}"
    by_id = client.get_direct_message_events(dm_conversation_id=conversation, dm_event_fields="dm_conversation_id")
    assert _ids(by_id) == conversations["bob"][::-1]
    assert {e.dm_conversation_id for e in by_id.data} == {conversation}
    assert set(by_id.data[0].data) == {"id", "event_type", "text", "dm_conversation_id"}


def test_dm_events_page_through_paginator(client: tweepy.Client, conversations: dict[str, list[str]]) -> None:
    pages = list(tweepy.Paginator(client.get_direct_message_events, max_results=2))
    # As X does: the oldest page still carries a next_token; it leads to an empty page with only a previous_token.
    assert [p.meta["result_count"] for p in pages] == [2, 2, 1, 0]
    assert "next_token" in pages[-2].meta and pages[-1].data is None
    assert set(pages[-1].meta) == {"result_count", "previous_token"}
    back = client.get_direct_message_events(max_results=2, pagination_token=pages[-1].meta["previous_token"])
    assert back.data[-1].id == pages[-2].data[-1].id  # back to the oldest events
    assert sorted(int(e.id) for p in pages[:-1] for e in p.data) == sorted(
        int(i) for i in conversations["alice"] + conversations["bob"])


def test_dm_expansion_resolves_senders(client: tweepy.Client, alice: str,
                                       conversations: dict[str, list[str]]) -> None:
    answer = client.get_direct_message_events(participant_id=alice, expansions="sender_id",
                                              dm_event_fields="sender_id", user_fields="created_at")
    assert {u.username for u in answer.includes["users"]} == {"alice", DEFAULT_ACCOUNT}
    assert answer.data[0].sender_id == int(alice)


def test_dm_events_older_than_30_days_are_not_returned(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    old = x.send_dm(alice, ME, "ancient", at=x.clock.now() - timedelta(days=31))
    recent = x.send_dm(alice, ME, "recent", at=x.clock.now() - timedelta(days=29))
    assert _ids(client.get_direct_message_events()) == [recent]
    assert old in [e["id"] for e in x.dm_events()]


def test_dm_event_types_filter(client: tweepy.Client, alice: str, conversations: dict[str, list[str]]) -> None:
    assert len(client.get_direct_message_events(event_types="MessageCreate").data) == 5
    assert client.get_direct_message_events(event_types="ParticipantsJoin").data is None


def test_create_direct_message_by_participant_and_by_conversation(client: tweepy.Client, x: XEmulator,
                                                                  alice: str) -> None:
    first = client.create_direct_message(participant_id=alice, text="Hello from support").data
    conversation = f"{min(ME, alice, key=int)}-{max(ME, alice, key=int)}"
    assert first["dm_conversation_id"] == conversation
    second = client.create_direct_message(dm_conversation_id=conversation, text="Anything else?").data
    assert [(e["id"], e["sender_id"], e["text"]) for e in x.dm_events()] == [
        (first["dm_event_id"], ME, "Hello from support"), (second["dm_event_id"], ME, "Anything else?")]


def test_create_direct_message_answers_201(client: tweepy.Client, alice: str) -> None:
    client.return_type = requests.Response
    answer = client.create_direct_message(participant_id=alice, text="hi")
    assert answer.status_code == 201
    assert answer.headers["Location"] == f"https://api.twitter.com/2/dm_events/{answer.json()['data']['dm_event_id']}"


def test_conversation_ids_compare_user_ids_as_numbers(client: tweepy.Client, x: XEmulator) -> None:
    veteran = x.add_user("veteran", user_id="1234567")  # an early account: fewer digits
    sent = client.create_direct_message(participant_id=veteran, text="hi").data
    assert sent["dm_conversation_id"] == f"1234567-{ME}"
    assert _ids(client.get_direct_message_events(dm_conversation_id=f"1234567-{ME}")) == [sent["dm_event_id"]]
    with pytest.raises(ValueError, match="taken"):
        x.add_user("impostor", user_id="1234567")


# ---- vendor errors as tweepy exceptions ----------------------------------------------------


UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}


def test_unknown_bearer_token_is_401(x_sandbox: EmulatorServer) -> None:
    with pytest.raises(tweepy.Unauthorized) as caught:
        make_client(x_sandbox, bearer_token="wrong").get_user(id=ME)
    assert caught.value.response.json() == UNAUTHORIZED
    assert caught.value.response.headers["Content-Type"] == "application/problem+json"


def test_oauth1_signature_is_checked_for_real(x_sandbox: EmulatorServer) -> None:
    with pytest.raises(tweepy.Unauthorized) as caught:
        make_client(x_sandbox, access_token_secret="not-the-secret").get_me()
    assert caught.value.response.json() == UNAUTHORIZED
    with pytest.raises(tweepy.Unauthorized):
        make_client(x_sandbox, consumer_secret="not-the-secret").get_me()
    with pytest.raises(tweepy.Unauthorized):
        make_client(x_sandbox, access_token="unknown-token").get_me()


def test_oauth1_signature_over_query_parameters(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    x.post_mention(alice, "with spaces & symbols")
    answer = client.get_users_mentions(ME, user_auth=True, tweet_fields=["created_at", "entities"], max_results=5)
    assert answer.data[0].text == "@crmhub_support with spaces & symbols"


def test_seeded_access_token_acts_as_its_user(x_sandbox: EmulatorServer, x: XEmulator, alice: str) -> None:
    x.add_access_token(alice, "alice-token", "alice-secret")
    assert make_client(x_sandbox, access_token="alice-token", access_token_secret="alice-secret").get_me().data.id \
        == int(alice)


def test_bad_parameters_are_400_listing_each(client: tweepy.Client) -> None:
    with pytest.raises(tweepy.BadRequest) as caught:
        client.get_users_mentions(ME, max_results=1000, tweet_fields="created_at,colour")
    body = caught.value.response.json()
    assert body["title"] == "Invalid Request"
    assert body["detail"] == "One or more parameters to your request was invalid."
    assert body["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert {next(iter(e["parameters"])) for e in body["errors"]} == {"max_results", "tweet.fields"}
    assert "The `max_results` query parameter value [1000] is not between 5 and 100" in caught.value.api_messages


@pytest.mark.parametrize(("call", "parameter"), [
    (lambda c: c.get_user(id="abc"), "id"),
    (lambda c: c.get_users_mentions(ME, pagination_token="not a token"), "pagination_token"),
    (lambda c: c.get_users_mentions(ME, start_time="yesterday"), "start_time"),
    (lambda c: c.get_direct_message_events(max_results=0), "max_results"),
    (lambda c: c.get_direct_message_events(dm_conversation_id="not-a-conversation"), "dm_conversation_id"),
])
def test_each_invalid_parameter_is_named(client: tweepy.Client, call: Any, parameter: str) -> None:
    with pytest.raises(tweepy.BadRequest) as caught:
        call(client)
    assert [next(iter(e["parameters"])) for e in caught.value.response.json()["errors"]] == [parameter]


def test_bearer_token_on_a_user_context_endpoint_is_403(client: tweepy.Client) -> None:
    with pytest.raises(tweepy.Forbidden) as caught:
        client.get_direct_message_events(user_auth=False)
    assert caught.value.response.json()["type"] == "https://api.twitter.com/2/problems/unsupported-authentication"


def test_refused_writes_are_403(client: tweepy.Client, x: XEmulator, alice: str) -> None:
    client.create_tweet(text="same text")
    with pytest.raises(tweepy.Forbidden) as duplicate:
        client.create_tweet(text="same text")
    assert duplicate.value.response.json() == {
        "title": "Forbidden", "type": "about:blank", "status": 403,
        "detail": "You are not allowed to create a Tweet with duplicate content."}
    with pytest.raises(tweepy.Forbidden, match="deleted or not visible"):
        client.create_tweet(text="reply", in_reply_to_tweet_id="999")
    closed = x.add_user("closed", receives_your_dm=False)
    with pytest.raises(tweepy.Forbidden):
        client.create_direct_message(participant_id=closed, text="hi")
    with pytest.raises(tweepy.Forbidden):
        client.create_direct_message(dm_conversation_id=f"{alice}-{closed}", text="not my conversation")
    assert len(x.tweets()) == 1 and x.dm_events() == []


def test_unknown_routes_are_404_naming_what_is_not_emulated(client: tweepy.Client, x: XEmulator) -> None:
    tweet_id = client.create_tweet(text="to delete").data["id"]
    with pytest.raises(tweepy.NotFound) as caught:
        client.delete_tweet(tweet_id)
    body = caught.value.response.json()
    assert (body["method"], body["path"]) == ("DELETE", f"/2/tweets/{tweet_id}")
    assert "does not emulate DELETE" in body["detail"]
    assert len(x.tweets()) == 1


def test_docs_name_every_emulated_endpoint() -> None:
    page = (Path(__file__).parents[2] / "docs" / "sandbox" / "x.md").read_text()
    assert [e.name for e in ENDPOINTS if f"`{e.name}`" not in page] == []


def test_route_table_lists_every_emulated_endpoint(x_sandbox: EmulatorServer) -> None:
    routes = requests.get(f"{x_sandbox.url}/_sandbox/routes", timeout=5).json()
    assert {(r["methods"][0], r["path"]) for r in routes} == {
        ("GET", "/2/users/me"), ("GET", "/2/users"), ("GET", "/2/users/by"),
        ("GET", "/2/users/by/username/<username>"), ("GET", "/2/users/<id>"), ("GET", "/2/users/<id>/mentions"),
        ("GET", "/2/users/<id>/tweets"),
        ("GET", "/2/tweets/<id>"), ("POST", "/2/tweets"), ("GET", "/2/dm_events"),
        ("GET", "/2/dm_conversations/with/<participant_id>/dm_events"),
        ("GET", "/2/dm_conversations/<dm_conversation_id>/dm_events"),
        ("POST", "/2/dm_conversations/with/<participant_id>/messages"),
        ("POST", "/2/dm_conversations/<dm_conversation_id>/messages"),
    }


# ---- Account Activity webhooks -------------------------------------------------------------


class Receiver:
    """A tiny webhook endpoint on port 0 that answers CRCs and records signed events."""

    def __init__(self, consumer_secret: str = DEFAULT_CONSUMER_SECRET) -> None:
        self.secret = consumer_secret.encode()
        self.events: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self.fail_next = 0  # answer 500 to this many POSTs first
        receiver = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # http.server's naming
                token = parse_qs(urlsplit(self.path).query)["crc_token"][0]
                digest = hmac.new(receiver.secret, token.encode(), hashlib.sha256).digest()
                self._answer(200, {"response_token": "sha256=" + base64.b64encode(digest).decode()})

            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self._answer(500, {})
                    return
                expected = base64.b64encode(hmac.new(receiver.secret, body, hashlib.sha256).digest()).decode()
                receiver.signatures_ok.append(self.headers["x-twitter-webhooks-signature"] == f"sha256={expected}")
                receiver.events.append(json.loads(body))
                self._answer(200, {})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                self.answer(status, json.dumps(body).encode(), "application/json")

        self.local = LocalServer(Handler)
        self.url = f"{self.local.base_url}/webhooks/x"
        self.local.start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.local.stop()


def test_crc_then_signed_mention_event(x: XEmulator, receiver: Receiver, alice: str) -> None:
    assert x.set_webhook(receiver.url) is True
    mention = x.post_mention(alice, "help!")
    assert x.wait_for_deliveries()
    assert receiver.signatures_ok == [True]
    [event] = receiver.events
    assert (event["for_user_id"], event["user_has_blocked"]) == (ME, False)
    [tweet] = event["tweet_create_events"]
    assert (tweet["id_str"], tweet["text"], tweet["user"]["screen_name"]) == (mention, "@crmhub_support help!", "alice")
    assert tweet["entities"]["user_mentions"][0]["id_str"] == ME
    crc, delivery = x.webhook_attempts()
    assert (crc["kind"], crc["ok"], delivery["kind"], delivery["status"]) == ("crc", True, "tweet_create_events", 200)


def test_crc_and_events_reach_a_loopback_receiver_whatever_proxy_the_environment_names(
        x: XEmulator, receiver: Receiver, alice: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator calls receivers on loopback directly: a proxy from the environment (nothing listens on
    port 9) would swallow them."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert x.set_webhook(receiver.url) is True
    x.post_mention(alice, "through no proxy")
    assert x.wait_for_deliveries()
    assert receiver.signatures_ok == [True]


def test_direct_message_events_are_delivered_for_both_directions(client: tweepy.Client, x: XEmulator,
                                                                 receiver: Receiver, alice: str) -> None:
    x.set_webhook(receiver.url)
    incoming = x.send_dm(alice, ME, "hello?")
    outgoing = client.create_direct_message(participant_id=alice, text="hi Alice").data["dm_event_id"]
    assert x.wait_for_deliveries()
    events = [e["direct_message_events"][0] for e in receiver.events]
    assert [(e["id"], e["message_create"]["sender_id"], e["message_create"]["target"]["recipient_id"])
            for e in events] == [(incoming, alice, ME), (outgoing, ME, alice)]
    assert events[0]["message_create"]["message_data"]["text"] == "hello?"
    assert receiver.events[0]["users"][alice]["screen_name"] == "alice"
    assert all(receiver.signatures_ok)


def test_own_reply_is_delivered_without_user_has_blocked(client: tweepy.Client, x: XEmulator,
                                                         receiver: Receiver, alice: str) -> None:
    mention = x.post_mention(alice, "question")
    x.set_webhook(receiver.url)
    client.create_tweet(text="answer", in_reply_to_tweet_id=mention)
    assert x.wait_for_deliveries()
    [event] = receiver.events
    assert "user_has_blocked" not in event
    assert event["tweet_create_events"][0]["in_reply_to_status_id_str"] == mention


def test_failed_delivery_is_retried_and_logged(x: XEmulator, receiver: Receiver, alice: str) -> None:
    x.set_webhook(receiver.url)
    receiver.fail_next = 1
    x.post_mention(alice, "retry me")
    assert x.wait_for_deliveries()
    assert [(a["attempt"], a["status"], a["ok"]) for a in x.webhook_attempts()[1:]] == [(1, 500, False), (2, 200, True)]
    assert len(receiver.events) == 1


def test_webhook_failing_crc_gets_no_events(x: XEmulator, receiver: Receiver, alice: str) -> None:
    assert x.set_webhook(receiver.url, consumer_secret="another-secret") is False
    x.post_mention(alice, "lost?")
    assert x.wait_for_deliveries()
    assert receiver.events == []
    assert x.webhook_attempts()[-1]["error"] == "webhook has not passed its CRC check"


def test_unreachable_webhook_is_given_up_after_max_attempts(x: XEmulator, receiver: Receiver, alice: str) -> None:
    x.set_webhook(receiver.url, max_attempts=2)
    receiver.fail_next = 5
    x.post_mention(alice, "nobody home")
    assert x.wait_for_deliveries()
    assert [a["ok"] for a in x.webhook_attempts()[1:]] == [False, False]
