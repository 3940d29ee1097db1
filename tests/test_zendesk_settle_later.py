"""Issue 13: the daemon's Zendesk delivery submits bulk jobs and settles them in a later run.

Each test drives one delivery worker's runs (`Hub.delivery_job`) on a clock
the test moves, with the emulator's jobs held queued until the test finishes
them (`configure(job_reads_per_step=None)`, `finish_jobs()`), and asserts on
what Zendesk holds and on the calls the emulator counted per run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import open_dead_letters
from tests.daemons import tune_settings

OURS = "+14155550100"
KNOWN = ("+14155550123", "+14155550124")
NEW = ("+14155550131", "+14155550132", "+14155550133")
SHOW_MANY = "GET /api/v2/job_statuses/show_many.json"
UPDATE_MANY = "PUT /api/v2/tickets/update_many.json"
CREATE_TICKETS = "POST /api/v2/tickets/create_many.json"
CREATE_USERS = "POST /api/v2/users/create_many.json"
GROUPS = "GET /api/v2/groups.json"


class Daemon:
    """Daemons on one state store, one after another, on a clock the test moves."""

    def __init__(self, tmp_path: Path, zendesk: EmulatorServer, twilio: EmulatorServer) -> None:
        self.settings = write_sandbox_settings(tmp_path, {"zendesk": zendesk.url, "twilio": twilio.url},
                                               enabled=("zendesk", "twilio"))
        self.zd: Any = zendesk.emulator
        self.now = datetime.now(UTC)
        self.hub: Hub | None = None

    def start(self) -> Hub:
        self.stop()
        self.hub = build_hub(load_config(self.settings), clock=lambda: self.now, sleep=lambda _: None)
        return self.hub

    def stop(self) -> None:
        """Gone without a word (nothing settled on the way out), as a killed daemon."""
        if self.hub is not None:
            self.hub.close()
            self.hub = None

    def collect(self) -> None:
        """Poll Twilio and route what came, delivering nothing."""
        assert self.hub is not None
        for poll in self.hub.polls().values():
            poll()
        self.hub.refresh_mirror("zendesk")
        self.hub.route_job()

    def deliver(self, after: float = 30) -> Counter[str]:
        """One run of the Zendesk delivery worker, `after` seconds on (by default past any settle wait); the
        Zendesk calls it made."""
        assert self.hub is not None
        self.now += timedelta(seconds=after)
        self.zd.calls.clear()
        self.hub.delivery_job("zendesk")
        return Counter(self.zd.calls)

    def dead(self) -> list[Any]:
        assert self.hub is not None
        with self.hub.store.sessions() as session:
            return open_dead_letters(session)


@pytest.fixture
def daemon(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Daemon]:
    """Two known customers, each with an open crmhub ticket; jobs then stay queued until the test finishes them."""
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    zd: Any = zendesk_sandbox.emulator
    for n, phone in enumerate(KNOWN):
        zd.add_user(name=f"Known {n}", phone=phone)
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute's changes
    d = Daemon(tmp_path, zendesk_sandbox, twilio_sandbox)
    for phone in KNOWN:
        tw.receive_message(phone, OURS, f"first from {phone}", at=d.now - timedelta(minutes=30))
    d.start().sync_once()  # waits for its jobs: the tickets exist
    assert len(zd.tickets()) == 2 and d.dead() == []
    zd.configure(job_reads_per_step=None, job_autocomplete_seconds=None)
    yield d
    d.stop()


def _on_tickets(zd: Any, texts: list[str]) -> Counter[str]:
    """How often each text is on Zendesk's tickets (inside folded comments too); no text contains another."""
    bodies = [c["body"] for t in zd.tickets() for c in zd.comments(t["id"])]
    return Counter({text: sum(body.count(text) for body in bodies) for text in texts})


def _once(texts: list[str]) -> Counter[str]:
    return Counter(texts)


def _receive(twilio: EmulatorServer, d: Daemon, messages: list[tuple[str, str]]) -> list[str]:
    tw: Any = twilio.emulator
    for n, (phone, text) in enumerate(messages):
        tw.receive_message(phone, OURS, text, at=d.now - timedelta(minutes=20) + timedelta(seconds=n))
    return [text for _, text in messages]


def test_a_batch_of_new_customers_and_follow_ups_costs_one_submit_per_stage_and_one_poll(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    texts = _receive(twilio_sandbox, daemon, [(phone, f"new from {phone}") for phone in NEW]
                     + [(KNOWN[0], "more from known 0"), (KNOWN[1], "more from known 1")]
                     + [(phone, f"new again from {phone}") for phone in NEW])
    daemon.collect()

    first = daemon.deliver()  # the new customers' users (read once in the run: still queued), the comments
    assert first == {CREATE_USERS: 1, SHOW_MANY: 1, UPDATE_MANY: 1}
    zd.finish_jobs()
    second = daemon.deliver()  # one read settles both jobs; the new tickets go out, carrying both messages
    assert second == {SHOW_MANY: 1, CREATE_TICKETS: 1}
    zd.finish_jobs()
    third = daemon.deliver()  # one read settles the tickets
    assert third == {SHOW_MANY: 1}
    assert daemon.deliver() == {}  # nothing left waiting

    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    assert len(zd.tickets()) == 5 and len([u for u in zd.users() if u["role"] == "end-user"]) == 5


def _known_without_ticket(d: Daemon) -> str:
    """A customer Zendesk knows (the mirror has read it) who has no ticket yet."""
    phone = "+14155550125"
    d.zd.add_user(name="Known 2", phone=phone)
    d.zd.clock.advance(120)  # past the export's lag
    return phone


def test_a_users_job_done_within_the_run_sends_every_ticket_of_the_batch_in_it(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    """Issue 13: a new customer's user, its ticket and the batch's other writes cost one run and one read."""
    zd = daemon.zd
    zd.configure(job_reads_per_step=0)  # a job is done by its first status read (as one a second old is)
    known = _known_without_ticket(daemon)
    texts = _receive(twilio_sandbox, daemon, [(NEW[0], "new from the newcomer"), (known, "new from known 2"),
                                             (KNOWN[0], "more from known 0")])
    daemon.collect()
    # Users, then one read (users done), then both new tickets in one job and the follow-up: all in one run.
    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1, CREATE_TICKETS: 1, UPDATE_MANY: 1}
    assert daemon.hub is not None and daemon.hub.due_count("zendesk", 10) == 0  # waiting rows fill no batch
    assert daemon.deliver() == {SHOW_MANY: 1}  # the next run reads the last jobs, settling every row
    assert daemon.deliver() == {}
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    assert len(zd.tickets()) == 4


def test_a_known_customer_s_new_ticket_waits_for_the_batch_s_users_job_to_go_in_one_tickets_job(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    known = _known_without_ticket(daemon)
    texts = _receive(twilio_sandbox, daemon, [(NEW[0], "new from the newcomer"), (known, "new from known 2")])
    daemon.collect()
    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1}  # the users job still queued: no ticket yet
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1, CREATE_TICKETS: 1}  # both tickets, one job
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1}
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    assert len(zd.tickets()) == 4


def test_the_next_batch_goes_out_while_the_first_batch_s_job_is_still_queued(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    texts = _receive(twilio_sandbox, daemon, [(KNOWN[0], "one more from known 0")])
    daemon.collect()
    assert daemon.deliver() == {UPDATE_MANY: 1}  # job 1 queued, nobody waits for it

    texts += _receive(twilio_sandbox, daemon, [(KNOWN[1], "more from known 1"), (KNOWN[0], "two more from known 0")])
    daemon.collect()
    # Job 1 is read once (still queued); known 1's message goes out at once; known 0's waits for job 1.
    assert daemon.deliver() == {SHOW_MANY: 1, UPDATE_MANY: 1}
    assert sum(_on_tickets(zd, texts).values()) == 0  # both jobs still queued

    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1, UPDATE_MANY: 1}  # both settled; known 0's second goes out now
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1}
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    ticket0 = next(t for t in zd.tickets() if zd.comments(t["id"])[0]["body"] == f"first from {KNOWN[0]}")
    assert [c["body"] for c in zd.comments(ticket0["id"])] == [
        f"first from {KNOWN[0]}", "one more from known 0", "two more from known 0"]  # in order, once each


def test_a_daemon_killed_with_its_job_open_settles_it_once_at_the_next_start(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    texts = _receive(twilio_sandbox, daemon, [(phone, f"new from {phone}") for phone in NEW[:2]]
                     + [(KNOWN[0], "more from known 0")])
    daemon.collect()
    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1, UPDATE_MANY: 1}
    daemon.stop()  # killed: the jobs are open, their ids stored with the rows

    zd.finish_jobs()
    daemon.start()
    # Settled from the stored ids, nothing submitted again (a fresh daemon lists the groups once).
    assert daemon.deliver() == {SHOW_MANY: 1, CREATE_TICKETS: 1, GROUPS: 1}
    daemon.stop()
    zd.finish_jobs()
    daemon.start()
    assert daemon.deliver() == {SHOW_MANY: 1}
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)


@pytest.mark.parametrize("path", [r"/tickets/update_many\.json", r"/job_statuses/show_many\.json"])
def test_a_lost_answer_on_submit_or_on_the_status_read_still_writes_each_message_once(
        daemon: Daemon, twilio_sandbox: EmulatorServer, path: str) -> None:
    zd = daemon.zd
    zd.configure(job_reads_per_step=1)  # jobs run as they are read (the lost submit is found by listing)
    texts = _receive(twilio_sandbox, daemon, [(KNOWN[0], "more from known 0"), (KNOWN[1], "more from known 1")])
    daemon.collect()
    zd.faults.add(Fault("reset", after=True, path=path, times=1))
    calls = sum((daemon.deliver() for _ in range(4)), Counter[str]())
    assert calls[UPDATE_MANY] == 1  # the lost submit is found by its keys, never sent again
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)


def test_a_follow_up_claimed_while_its_customer_s_user_is_being_made_waits_for_that_job(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    texts = _receive(twilio_sandbox, daemon, [(NEW[0], "new from the newcomer")])
    daemon.collect()
    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1}
    texts += _receive(twilio_sandbox, daemon, [(NEW[0], "more from the newcomer")])
    daemon.collect()
    # Both rows are due: the first still waits in its users job, the follow-up waits after it (no second user).
    assert daemon.deliver() == {SHOW_MANY: 1}
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1, CREATE_TICKETS: 1}  # one ticket carrying both messages
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1}
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    assert len(zd.tickets()) == 3 and len([u for u in zd.users() if u["role"] == "end-user"]) == 3


def test_a_sync_cycle_after_a_worker_left_jobs_open_waits_for_them_and_writes_nothing_twice(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    zd = daemon.zd
    texts = _receive(twilio_sandbox, daemon, [(NEW[0], "new from the newcomer"), (KNOWN[0], "more from known 0")])
    daemon.collect()
    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1, UPDATE_MANY: 1}
    zd.configure(job_reads_per_step=1)  # the jobs run as they are read
    daemon.now += timedelta(seconds=30)
    assert daemon.hub is not None
    daemon.hub.sync_once()  # `crmhub sync` (or a catch-up cycle): waits for the stored jobs, then checks by key
    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)
    assert len([u for u in zd.users() if u["role"] == "end-user"]) == 3


def _small_batches(d: Daemon, size: int) -> None:
    """Batches of `size` outbox rows and Zendesk jobs of `size` items, the daemon started again on them."""
    tune_settings(d.settings, {"delivery.batch_size": size, "crms.zendesk.batch_size": size})
    d.start()


def test_a_full_batch_with_no_other_full_one_due_leaves_the_stragglers_to_fill_their_own(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    """Issue 13: a worker's run after a full batch does not send the few rows behind it as a batch of its own
    (they would cost a batch's jobs): they are rung for and wait for theirs. A cycle drains them."""
    zd = daemon.zd
    _small_batches(daemon, 3)
    texts = _receive(twilio_sandbox, daemon, [(KNOWN[n // 3], f"follow-up {n}") for n in range(4)])
    daemon.collect()

    assert daemon.deliver() == {UPDATE_MANY: 1}  # three rows (a full batch); the fourth (another ticket) waits
    zd.finish_jobs()
    assert _on_tickets(zd, texts) == _once(texts[:3]) + Counter({texts[3]: 0})
    zd.configure(job_reads_per_step=0)  # jobs done when read: the cycle waits for its own
    daemon.hub.sync_once()  # type: ignore[union-attr]  # a cycle drains everything, stragglers included

    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)


def test_a_full_batch_of_new_customers_waits_for_their_users_in_the_run_when_nothing_is_due_behind(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    """Issue 13: their tickets go in the same run (users, one read, tickets), not in a settling run."""
    zd = daemon.zd
    zd.configure(job_reads_per_step=0)  # a job is done by its first status read (as one a second old is)
    _small_batches(daemon, 3)
    texts = _receive(twilio_sandbox, daemon, [(phone, f"hello from {phone}") for phone in NEW])
    daemon.collect()

    assert daemon.deliver() == {CREATE_USERS: 1, SHOW_MANY: 1, GROUPS: 1, CREATE_TICKETS: 1}
    zd.finish_jobs()

    assert daemon.dead() == []
    assert _on_tickets(zd, texts) == _once(texts)


def test_a_batch_reads_the_jobs_that_come_due_during_its_own_wait_instead_of_a_settling_run_after_it(
        daemon: Daemon, twilio_sandbox: EmulatorServer) -> None:
    """Issue 13 (50 msg/s): rows whose job is read a moment after a batch is claimed go with that batch."""
    zd = daemon.zd
    first = _receive(twilio_sandbox, daemon, [(KNOWN[0], "first follow-up")])
    daemon.collect()
    assert daemon.deliver() == {UPDATE_MANY: 1}  # its row waits on the job: read again a second on
    zd.finish_jobs()
    later = _receive(twilio_sandbox, daemon, [(KNOWN[0], "second follow-up")])
    daemon.collect()

    # Half a second on, the first job is not due for its read, but comes due within the batch's own wait:
    # one read settles it and the follow-up goes on the same ticket at once, not after a run of its own.
    assert daemon.deliver(after=0.5) == {SHOW_MANY: 1, UPDATE_MANY: 1}
    zd.finish_jobs()
    assert daemon.deliver() == {SHOW_MANY: 1}
    assert daemon.dead() == []
    assert _on_tickets(zd, first + later) == _once(first + later)
