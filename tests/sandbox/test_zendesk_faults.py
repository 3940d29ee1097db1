"""Limits, injected faults and job timing of the Zendesk emulator, seen through zenpy and raw HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded

from crmhub.sandbox import EmulatorServer, Fault
from tests.sandbox.test_zendesk_clients import Kit

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def kit(zendesk_sandbox: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kit]:
    with Kit(zendesk_sandbox, monkeypatch) as kit:
        yield kit


def create_many(zd: Zenpy, count: int) -> str:
    job = zd.tickets.create([Ticket(subject=f"B{i}", comment=Comment(body="x")) for i in range(count)])
    return str(job.id)


# ---- rate limits ----------------------------------------------------------------

def test_account_limit_counts_down_then_answers_429_until_the_window_passes(kit: Kit) -> None:
    zdk = kit.emu
    zdk.configure(rate_limit_per_minute=3)
    me = kit.url("users/me.json")
    answers = [kit.http.get(me) for _ in range(3)]
    assert [a.headers["X-Rate-Limit-Remaining"] for a in answers] == ["2", "1", "0"]
    assert {a.headers["X-Rate-Limit"] for a in answers} == {"3"}
    assert answers[0].headers["ratelimit-limit"] == "3"
    refused = kit.http.get(me)
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert refused.text == "Number of allowed API requests per minute exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-Rate-Limit-Remaining"] == "0"
    with pytest.raises(RatelimitBudgetExceeded):
        kit.zd.users.me()
    zdk.clock.advance(60)
    assert kit.zd.users.me().email == "agent@sandbox.zendesk.test"


def test_incremental_exports_allow_ten_requests_a_minute(kit: Kit) -> None:
    export = kit.url("incremental/tickets/cursor.json")
    codes = [kit.http.get(export, params={"start_time": 0}).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]
    refused = kit.http.get(export, params={"start_time": 0})
    assert refused.text == "Number of allowed incremental export API requests per minute exceeded"
    assert kit.http.get(kit.url("users/me.json")).status_code == 200
    kit.emu.clock.advance(60)
    assert kit.http.get(export, params={"start_time": 0}).status_code == 200


def test_rate_limit_fault_is_zendesk_shaped_and_zenpy_does_not_sleep(kit: Kit) -> None:
    kit.emu.faults.add(Fault("rate_limit", path=r"/users/me\.json$", retry_after=7, times=2))
    refused = kit.http.get(kit.url("users/me.json"))
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "7")
    assert refused.text == "Number of allowed API requests per minute exceeded"
    started = time.monotonic()
    with pytest.raises(RatelimitBudgetExceeded):
        kit.zd.users.me()
    assert time.monotonic() - started < 1
    assert kit.zd.users.me().role == "admin"


def test_daily_limit_is_a_long_429_storm_until_the_fault_ends(kit: Kit) -> None:
    zdk = kit.emu
    zdk.faults.add(Fault("daily_limit", times=None, until=zdk.clock.time() + 3600))
    refused = [kit.http.get(kit.url("users/me.json")) for _ in range(3)]
    assert {r.status_code for r in refused} == {429}
    assert 3590 <= int(refused[-1].headers["Retry-After"]) <= 3600
    zdk.clock.advance(3601)
    assert kit.http.get(kit.url("users/me.json")).status_code == 200


# ---- generic faults ---------------------------------------------------------------

def test_server_error_fault_surfaces_as_api_exception_then_recovers(kit: Kit) -> None:
    kit.emu.faults.add(Fault("server_error", status=503))
    with pytest.raises(APIException) as caught:
        kit.zd.users.me()
    assert caught.value.response.status_code == 503
    assert caught.value.response.json()["error"] == "ServiceUnavailable"
    assert kit.zd.users.me().role == "admin"


def test_reset_fault_drops_the_connection_and_nothing_is_created(kit: Kit) -> None:
    kit.emu.faults.add(Fault("reset", method="POST", path=r"/tickets\.json$"))
    with pytest.raises(requests.ConnectionError):
        kit.zd.tickets.create(Ticket(subject="lost", comment=Comment(body="x")))
    assert kit.emu.tickets() == []


def test_slow_fault_delays_the_answer(kit: Kit) -> None:
    kit.emu.faults.add(Fault("slow", delay=0.05))
    started = time.monotonic()
    assert kit.zd.users.me().role == "admin"
    assert time.monotonic() - started >= 0.05


def test_expired_tokens_are_refused_until_a_new_one_is_issued(kit: Kit) -> None:
    zdk = kit.emu
    zdk.faults.add(Fault("expire_token"))
    with pytest.raises(APIException) as caught:
        kit.zd.users.me()
    assert caught.value.response.status_code == 401
    zdk.add_api_token("sandbox-token")
    assert kit.zd.users.me().role == "admin"


# ---- bulk jobs --------------------------------------------------------------------

def test_partial_failure_rejects_the_chosen_items_of_the_next_create_many(kit: Kit) -> None:
    zdk = kit.emu
    zdk.faults.add(Fault("partial_failure", reject=[1]))
    job_id = create_many(kit.zd, 3)
    zdk.finish_jobs(job_id)
    results = sorted(kit.zd.job_status(id=job_id).results, key=lambda r: r.index)
    assert (results[1].success, results[1].status, results[1].error) == (False, "Failed", "RecordInvalid")
    created = {t["subject"]: t["id"] for t in zdk.tickets()}
    assert created == {"B0": results[0].id, "B2": results[2].id}


def test_partial_failure_on_update_many_names_the_refused_ticket(kit: Kit) -> None:
    zdk = kit.emu
    ids = [zdk.add_ticket(f"T{i}", "body") for i in range(2)]
    zdk.faults.add(Fault("partial_failure", path="update_many", reject=[0]))
    zdk.configure(job_reads_per_step=0)
    job = kit.zd.tickets.update([Ticket(id=ticket_id, status="open") for ticket_id in ids])
    results = sorted(kit.zd.job_status(id=job.id).results, key=lambda r: r.index)
    assert [(r.id, r.action, r.success) for r in results] == [(ids[0], "update", False), (ids[1], "update", True)]
    assert [t["status"] for t in zdk.tickets()] == ["new", "open"]


def test_failed_items_carry_the_vendor_error(kit: Kit) -> None:
    kit.emu.configure(job_reads_per_step=0)
    job = kit.zd.tickets.update([Ticket(id=424242, status="open")])
    result = kit.zd.job_status(id=job.id).results[0]
    assert (result.error, result.details, result.success) == ("RecordNotFound", "Not found", False)


@pytest.mark.parametrize(("reads_per_step", "statuses"), [
    (0, ["completed"]),
    (1, ["working", "completed"]),
    (2, ["queued", "working", "working", "completed"]),
])
def test_job_moves_one_step_every_n_reads(kit: Kit, reads_per_step: int, statuses: list[str]) -> None:
    kit.emu.configure(job_reads_per_step=reads_per_step)
    job_id = create_many(kit.zd, 1)
    assert [kit.zd.job_status(id=job_id).status for _ in statuses] == statuses


def test_manual_jobs_wait_for_finish_and_unpolled_jobs_complete_on_their_own(kit: Kit) -> None:
    zdk = kit.emu
    zdk.configure(job_reads_per_step=None)
    manual = create_many(kit.zd, 1)
    assert [kit.zd.job_status(id=manual).status for _ in range(3)] == ["queued"] * 3
    zdk.finish_jobs(manual)
    assert kit.zd.job_status(id=manual).status == "completed"
    forgotten = create_many(kit.zd, 2)
    zdk.clock.advance(59)
    kit.zd.users.me()  # any request lets the background worker run: too young yet
    assert len(zdk.snapshot()["tickets"]) == 1
    zdk.clock.advance(2)
    assert len(zdk.snapshot()["tickets"]) == 1  # nobody asked yet
    assert len(zdk.tickets()) == 3  # old enough: done once anyone looks, a request or the state
    assert kit.zd.job_status(id=forgotten).status == "completed"


def test_calls_are_counted_even_when_a_fault_answers(kit: Kit) -> None:
    zdk = kit.emu
    zdk.faults.add(Fault("server_error", status=500))
    with pytest.raises(APIException):
        kit.zd.users.me()
    kit.zd.users.me()
    assert zdk.total_calls == 2
    assert zdk.calls["GET /api/v2/users/me.json"] == 2


def test_listing_job_statuses_shows_a_job_whose_answer_was_lost(kit: Kit) -> None:
    kit.emu.faults.add(Fault("reset", after=True, path=r"/tickets/create_many\.json", times=1))
    with pytest.raises(requests.ConnectionError):
        create_many(kit.zd, 2)
    listed = kit.zd.job_status()["job_statuses"]
    assert [(j.status, j.total) for j in listed] == [("working", 2)]  # listing reads it: queued -> working
    assert [j.status for j in kit.zd.job_status()["job_statuses"]] == ["completed"]
    assert len(kit.emu.tickets()) == 2
