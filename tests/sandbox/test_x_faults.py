"""The X emulator's rate limits and injected faults, as tweepy sees them."""

from __future__ import annotations

import time

import pytest
import requests
import tweepy

from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.x import DEFAULT_ACCOUNT_ID, XEmulator
from tests.sandbox.test_x_conformance import make_client

ME = DEFAULT_ACCOUNT_ID
MENTIONS = "GET /2/users/:id/mentions"


@pytest.fixture
def x(x_sandbox: EmulatorServer) -> XEmulator:
    emulator = x_sandbox.emulator
    assert isinstance(emulator, XEmulator)
    return emulator


@pytest.fixture
def client(x_sandbox: EmulatorServer) -> tweepy.Client:
    client = make_client(x_sandbox)
    client.return_type = requests.Response  # to read the headers of successful answers too
    return client


def _limits(response: requests.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (int(headers["x-rate-limit-limit"]), int(headers["x-rate-limit-remaining"]),
            int(headers["x-rate-limit-reset"]))


# ---- rate limits -----------------------------------------------------------------------


def test_every_answer_carries_the_endpoint_limits(client: tweepy.Client, x: XEmulator) -> None:
    start = int(x.clock.time())
    first, second = _limits(client.get_users_mentions(ME)), _limits(client.get_users_mentions(ME))
    assert first[:2] == (450, 449) and second[:2] == (450, 448)  # per app, Bearer
    assert start + 900 <= first[2] <= start + 901
    assert _limits(client.get_users_mentions(ME, user_auth=True))[:2] == (300, 299)  # per user, its own window
    assert _limits(client.get_direct_message_events())[:2] == (15, 14)
    with pytest.raises(tweepy.BadRequest) as caught:
        client.get_users_mentions(ME, max_results=1)
    assert _limits(caught.value.response)[:2] == (450, 447)  # invalid requests count too


def test_dm_reads_exhaust_after_15_and_reset_when_the_window_passes(client: tweepy.Client, x: XEmulator) -> None:
    for _ in range(15):
        client.get_direct_message_events()
    with pytest.raises(tweepy.TooManyRequests) as caught:
        client.get_direct_message_events()
    response = caught.value.response
    assert response.json() == {"title": "Too Many Requests", "type": "about:blank", "status": 429,
                               "detail": "Too Many Requests"}
    limit, remaining, reset = _limits(response)
    assert (limit, remaining, caught.value.reset_time) == (15, 0, reset)
    x.clock.advance(reset - x.clock.time() + 1)
    assert _limits(client.get_direct_message_events())[:2] == (15, 14)
    assert x.calls["GET /2/dm_events"] == 17


def test_each_app_has_its_own_bearer_window(x_sandbox: EmulatorServer, client: tweepy.Client, x: XEmulator) -> None:
    x.set_rate_limit(MENTIONS, app=2)
    client.get_users_mentions(ME)
    client.get_users_mentions(ME)
    with pytest.raises(tweepy.TooManyRequests):
        client.get_users_mentions(ME)
    x.add_app("other-key", "other-secret", "other-bearer")
    assert make_client(x_sandbox, bearer_token="other-bearer").get_users_mentions(ME).meta["result_count"] == 0
    assert client.get_users_mentions(ME, user_auth=True).status_code == 200  # user context is counted apart


def test_dm_sends_exhaust_after_15_per_user(client: tweepy.Client, x: XEmulator) -> None:
    alice = x.add_user("alice")
    answers = [client.create_direct_message(participant_id=alice, text=f"message {n}") for n in range(15)]
    assert [_limits(a)[:2] for a in answers[::7]] == [(15, 14), (15, 7), (15, 0)]  # tightest of the three windows
    with pytest.raises(tweepy.TooManyRequests):
        client.create_direct_message(participant_id=alice, text="one too many")
    assert len(x.dm_events()) == 15


# ---- injected faults ----------------------------------------------------------------------


def test_rate_limit_fault_is_a_429_with_x_headers(client: tweepy.Client, x: XEmulator) -> None:
    x.faults.add(Fault("rate_limit", path="/mentions$", retry_after=30))
    now = int(x.clock.time())
    with pytest.raises(tweepy.TooManyRequests) as caught:
        client.get_users_mentions(ME)
    limit, remaining, reset = _limits(caught.value.response)
    assert (limit, remaining) == (450, 0)
    assert now + 30 <= reset <= now + 31 and caught.value.reset_time == reset
    assert "Retry-After" not in caught.value.response.headers  # X sends none
    assert client.get_users_mentions(ME).status_code == 200


def test_daily_limit_fault_is_a_usage_cap_429(client: tweepy.Client, x: XEmulator) -> None:
    x.faults.add(Fault("daily_limit", path="/mentions$"))
    with pytest.raises(tweepy.TooManyRequests) as caught:
        client.get_users_mentions(ME)
    assert caught.value.response.json() == {
        "title": "UsageCapExceeded", "detail": "Usage cap exceeded: Monthly product cap",
        "type": "https://api.twitter.com/2/problems/usage-capped", "period": "Monthly", "scope": "Product"}
    assert _limits(caught.value.response)[:2] == (450, 449)  # not a rate limit: the window has room


def test_server_error_fault_keeps_the_rate_headers(client: tweepy.Client, x: XEmulator) -> None:
    x.faults.add(Fault("server_error", status=503))
    with pytest.raises(tweepy.TwitterServerError) as caught:
        client.get_users_mentions(ME)
    assert caught.value.response.json() == {"title": "Service Unavailable", "type": "about:blank", "status": 503,
                                            "detail": "Service Unavailable"}
    assert _limits(caught.value.response)[0] == 450


def test_reset_fault_drops_the_connection_before_any_write(client: tweepy.Client, x: XEmulator) -> None:
    x.faults.add(Fault("reset", method="POST", path="^/2/tweets$"))
    with pytest.raises(requests.ConnectionError):
        client.create_tweet(text="lost in transit")
    assert x.tweets() == []
    assert client.create_tweet(text="lost in transit").status_code == 201


def test_slow_fault_delays_the_answer(client: tweepy.Client, x: XEmulator) -> None:
    x.faults.add(Fault("slow", delay=0.05))
    started = time.monotonic()
    assert client.get_me().status_code == 200
    assert time.monotonic() - started >= 0.05


def test_expire_token_fault_revokes_every_issued_token(x_sandbox: EmulatorServer, client: tweepy.Client,
                                                       x: XEmulator) -> None:
    x.faults.add(Fault("expire_token"))
    with pytest.raises(tweepy.Unauthorized):
        client.get_me()
    with pytest.raises(tweepy.Unauthorized):
        client.get_user(id=ME)
    x.add_access_token(ME, "fresh-token", "fresh-secret")
    assert make_client(x_sandbox, access_token="fresh-token", access_token_secret="fresh-secret").get_me().data.id \
        == int(ME)


def test_partial_failure_fault_suspends_the_users_at_reject(client: tweepy.Client, x: XEmulator) -> None:
    ids = [x.add_user(f"user{n}") for n in range(3)]
    x.faults.add(Fault("partial_failure", path="^/2/users$", reject=[1]))
    body = client.get_users(ids=ids).json()
    assert [u["id"] for u in body["data"]] == [ids[0], ids[2]]
    assert body["errors"] == [{
        "value": ids[1], "detail": f"User has been suspended: [{ids[1]}].", "title": "Forbidden",
        "resource_type": "user", "parameter": "ids", "resource_id": ids[1],
        "type": "https://api.twitter.com/2/problems/resource-not-found"}]
    assert len(client.get_users(ids=ids).json()["data"]) == 3


def test_call_counter_counts_every_request_per_endpoint(x_sandbox: EmulatorServer, client: tweepy.Client,
                                                        x: XEmulator) -> None:
    client.get_me()
    client.get_users_mentions(ME)
    x.faults.add(Fault("server_error"))
    with pytest.raises(tweepy.TwitterServerError):
        client.get_users_mentions(ME)
    calls = requests.get(f"{x_sandbox.url}/_sandbox/calls", timeout=5).json()
    assert calls == {"total": 3, "by_endpoint": {"GET /2/users/me": 1, "GET /2/users/<id>/mentions": 2}}


def test_reset_restores_credentials_limits_and_seeds(x_sandbox: EmulatorServer, client: tweepy.Client,
                                                     x: XEmulator) -> None:
    x.add_user("temporary")
    x.set_rate_limit(MENTIONS, app=1)
    client.get_users_mentions(ME)
    x.faults.add(Fault("expire_token"))
    with pytest.raises(tweepy.Unauthorized):
        client.get_me()
    requests.post(f"{x_sandbox.url}/_sandbox/reset", timeout=5)
    assert _limits(client.get_users_mentions(ME))[:2] == (450, 449)
    assert client.get_user(username="temporary").json()["errors"][0]["title"] == "Not Found Error"
