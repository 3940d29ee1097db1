"""Several daemons on one PostgreSQL store share the reading and the API budget (issue 15 item 6).

Three `crmhub run` processes deliver to all three CRMs. Each reaches every
emulator under a path of its own (`/d0/...`, `/d1/...`), which a recorder
in front of the emulator strips and notes, so the emulators' request logs
say which daemon made each request. The daemon polling Twilio's messages
is SIGKILLed once it has delivered a share of the traffic, and restarted
once another has taken the stream over. Then:

* each stream's requests (Twilio's message and call polls, the Salesforce
  and Zendesk contact mirrors, Zendesk's case states) come from one daemon at
  a time: the reader changes only after its daemon was killed;
* the message poll was taken over by another daemon after the kill;
* no window of each CRM's pace held more calls than one daemon's budget
  allows, counted by the emulators (the budgets are set low enough that
  three daemons pacing alone would exceed them);
* `crmhub status` names the daemon holding each stream;
* every message is in every CRM once.

In-process tests show a second daemon skipping what the first holds (and
the `crmhub_stream_owned` metric), a daemon taking over within the pace the
first one spent (sandbox time), and the webhook receivers of two daemons
behind one load balancer: either accepts any webhook, stores it once, and
answers X's CRC the same.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.connectors.x_signing import crc_response
from crmhub.sandbox import EmulatorServer, SandboxClock
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.twilio.models import DEFAULT_AUTH_TOKEN
from crmhub.serving import HttpServer
from crmhub.store import open_store
from crmhub.store.leases import stream_owners
from crmhub.store.ledger import ledger_counts
from tests.crm_views import OURS, VIEWS, assert_each_message_once, sms_traffic
from tests.daemons import Daemon, drain_and_stop, tune_settings, wait_for
from tests.test_budgets import KNOWN, delivered_bodies, send, simulated_hub
from tests.test_webhooks import signed

DAEMONS = 3
MESSAGES = 24
SEED = 5
# Low enough that three daemons each pacing alone could exceed them (see the printed counts).
PACES = {"salesforce": ("crms.salesforce.budget.requests_per_minute", 15, 60.0),
         "zendesk": ("crms.zendesk.budget.requests_per_minute", 40, 60.0),
         "hubspot": ("crms.hubspot.budget.requests_per_10s", 6, 10.0)}
# The periodic readers whose requests the recorders can tell apart by method and path.
STREAMS: dict[str, tuple[str, Callable[[Request], bool]]] = {
    "poll:twilio:messages": ("twilio", lambda r: r.method == "GET" and r.path.endswith("/Messages.json")),
    "poll:twilio:calls": ("twilio", lambda r: r.method == "GET" and r.path.endswith("/Calls.json")),
    "mirror:salesforce": ("salesforce", lambda r: "/queryAll" in r.path and "FROM+Contact" in r.query),
    "mirror:zendesk": ("zendesk", lambda r: "/incremental/users" in r.path),
    "cases:zendesk": ("zendesk", lambda r: "/incremental/tickets" in r.path),
}


@dataclass(frozen=True)
class Request:
    daemon: int | None
    method: str
    path: str
    query: str
    at: float  # time.monotonic() when the emulator got it


class Recorder:
    """An emulator served under `/d<n>/` for daemon n: strips the prefix and notes who asked."""

    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self.name = emulator.name
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        found = re.match(r"^/d(\d+)(/.*)$", environ.get("PATH_INFO", ""))
        daemon = int(found[1]) if found else None
        if found:
            environ["PATH_INFO"] = found[2]
        with self._lock:
            self.requests.append(Request(daemon, environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                         environ.get("QUERY_STRING", ""), time.monotonic()))
        return cast(Iterable[bytes], self.emulator(environ, start_response))

    def of(self, matches: Callable[[Request], bool]) -> list[Request]:
        with self._lock:
            return sorted((r for r in self.requests if matches(r)), key=lambda r: r.at)


@pytest.mark.slow
@pytest.mark.postgres
def test_three_daemons_read_each_stream_once_and_keep_one_budget(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, fresh_postgres_url: str, tmp_path: Path) -> None:
    servers = {"salesforce": salesforce_sandbox, "zendesk": zendesk_sandbox, "hubspot": hubspot_sandbox,
               "twilio": twilio_sandbox}
    views = [VIEWS[name](servers[name]) for name in PACES]
    traffic = sms_traffic(twilio_sandbox, views, known=12, unknown=3, messages=MESSAGES, seed=SEED)
    zd: Any = zendesk_sandbox.emulator
    zd.configure(job_reads_per_step=0, job_autocomplete_seconds=0.5, incremental_per_minute=100)
    recorders = {name: Recorder(server.emulator) for name, server in servers.items()}
    fronts = {name: EmulatorServer(cast(Any, recorder)).start() for name, recorder in recorders.items()}
    daemons, settings = [], []
    for n in range(DAEMONS):
        path = write_sandbox_settings(tmp_path / f"d{n}", {name: f"{front.url}/d{n}" for name, front in fronts.items()},
                                      state_url=fresh_postgres_url, enabled=list(servers), every="1s")
        tune_settings(path, {"delivery.batch_size": 5, "delivery.lease": "10s", "run.shutdown_grace": "10s",
                             **{key: limit for key, limit, _ in PACES.values()}})
        settings.append(path)
        daemons.append(Daemon(path, tmp_path / f"daemon-{n}.log"))
    total = MESSAGES * len(views)

    def delivered() -> int:
        return sum(len(view.written()) for view in views)

    def owner_of(stream: str) -> int | None:
        """The daemon holding `stream` now, as the store says."""
        owner = stream_owners(watching, [stream])[stream]
        pids = {d.process.pid: n for n, d in enumerate(daemons) if d.process is not None and d.alive}
        return None if owner is None else pids.get(int(owner.daemon.rsplit(":", 1)[1]))

    messages = STREAMS["poll:twilio:messages"][1]
    watching = open_store(fresh_postgres_url)  # migrated here first, so owner_of can ask before a daemon runs
    try:
        for daemon in daemons:
            daemon.start()
        wait_for(lambda: delivered() >= total // 3 and owner_of("poll:twilio:messages") is not None, 240,
                 "a third of the messages delivered", daemons)
        victim = owner_of("poll:twilio:messages")
        assert victim is not None
        status = json.loads(subprocess.run([sys.executable, "-m", "crmhub", "status", "--config", str(settings[0]),
                                            "--json"], capture_output=True, check=True, text=True).stdout)
        held = {row["stream"]: row["daemon"] for row in status["streams"]}
        assert held["poll:twilio:messages"].endswith(f":{daemons[victim].process.pid}")  # type: ignore[union-attr]
        assert set(STREAMS) <= set(held), held
        daemons[victim].kill()
        killed_at = time.monotonic()
        wait_for(lambda: any(r.daemon != victim and r.at > killed_at for r in recorders["twilio"].of(messages)),
                 60, "another daemon polling the messages", daemons)
        daemons[victim].start()
        stopped = drain_and_stop(daemons, fresh_postgres_url, lambda: delivered() >= total, deadline=300)
    finally:
        for daemon in daemons:
            daemon.ensure_dead()
        for front in fronts.values():
            front.stop()
        watching.close()

    for view in views:
        assert_each_message_once(view, traffic.senders)
    with (tmp_path / "requests.txt").open("w") as out:  # for a failure's post-mortem
        for system, recorder in recorders.items():
            out.writelines(f"{system} {r}\n" for r in recorder.of(lambda r: True))
            out.write(f"{system} counted at {list(servers[system].emulator.call_times)}\n")
    ends = {n: [stopped[n]] + ([killed_at] if n == victim else []) for n in range(DAEMONS)}  # killed or stopped
    readers = {}
    for stream, (system, matches) in STREAMS.items():
        requests = recorders[system].of(matches)
        assert requests, f"no request of {stream} seen"
        owner, since = requests[0].daemon, requests[0].at
        for request in requests[1:]:  # the reader changes only when its daemon ended (killed, stopped) meanwhile
            if request.daemon != owner:
                assert owner is not None and any(since <= end <= request.at for end in ends[owner]), (
                    f"{stream}: daemon {request.daemon} read it while daemon {owner} held it (victim {victim}): "
                    f"{_runs([r.daemon for r in requests])}; {request}")
                owner, since = request.daemon, request.at
        readers[stream] = [r.daemon for r in requests]
    polled = [r for r in recorders["twilio"].of(messages) if r.at < min(stopped)]
    assert polled[0].daemon == victim and polled[-1].daemon != victim  # taken over after the kill
    busiest = {name: servers[name].emulator.busiest(window) for name, (_, _, window) in PACES.items()}
    calls = {name: servers[name].emulator.total_calls for name in PACES}
    print(f"\nshared streams: victim daemon {victim}; readers of each stream in order: "
          f"{ {s: _runs(r) for s, r in readers.items()} }; calls per CRM {calls}; busiest windows {busiest} "
          f"(allowed { {name: limit for name, (_, limit, _) in PACES.items()} })")
    for name, (_, limit, window) in PACES.items():
        assert busiest[name] <= limit, f"{name}: {busiest[name]} calls in {window:g} s, allowed {limit}"


def _runs(daemons: list[int | None]) -> list[tuple[int | None, int]]:
    """[(daemon, requests in a row), ...]: who read a stream, in order."""
    runs: list[tuple[int | None, int]] = []
    for daemon in daemons:
        if runs and runs[-1][0] == daemon:
            runs[-1] = (daemon, runs[-1][1] + 1)
        else:
            runs.append((daemon, 1))
    return runs


@pytest.mark.postgres
def test_a_second_daemon_leaves_the_streams_the_first_holds_until_it_stops(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.receive_message("+14155550123", OURS, "hello")
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url)
    config = load_config(settings)
    polls = "GET /2010-04-01/Accounts/<account_sid>/Messages.json"
    with build_hub(config) as a:
        b = build_hub(config)
        try:
            a.sync_once()
            polled = tw.calls[polls]
            mirrored = salesforce_sandbox.emulator.total_calls
            b.sync_once()  # every stream is a's: b reads none of them
            assert tw.calls[polls] == polled
            assert a.metrics.sample("crmhub_stream_owned", {"stream": "poll:twilio:messages"}) == 1
            assert b.metrics.sample("crmhub_stream_owned", {"stream": "poll:twilio:messages"}) == 0
            assert b.metrics.sample("crmhub_stream_owned", {"stream": "mirror:salesforce"}) == 0
            a.leases.close()  # a stops (or dies): its session ends, its locks go with it
            wait_for(lambda: b.owns("poll:twilio:messages"), 30, "the server ending a's session")
            b.polls()["twilio"]()
            assert tw.calls[polls] > polled
            assert b.metrics.sample("crmhub_stream_owned", {"stream": "poll:twilio:messages"}) == 1
            assert salesforce_sandbox.emulator.total_calls >= mirrored
        finally:
            b.close()
        with a.store.transaction() as session:
            assert ledger_counts(session) == {"sms": 1}


@pytest.mark.postgres
def test_a_daemon_taking_over_keeps_within_the_pace_the_first_one_spent(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, sandbox_clock: SandboxClock,
        fresh_postgres_url: str, tmp_path: Path) -> None:
    """Daemon a delivers paced at 6 calls a minute (sandbox time); b takes over the moment a stops and
    delivers more. Pacing alone, b would spend a fresh 6 in a's last minute; sharing, no minute holds more."""
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    tw.add_number(OURS)
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url)
    tune_settings(settings, {"crms.salesforce.budget.requests_per_minute": 6, "delivery.batch_size": 2})
    first, then = send(tw, sandbox_clock, KNOWN, 8), send(tw, sandbox_clock, KNOWN, 8, first=8)
    with simulated_hub(settings, sandbox_clock) as a:
        assert not a.sync_once().failures
    with simulated_hub(settings, sandbox_clock) as b:
        wait_for(lambda: all(b.owns(stream) for stream in ("poll:twilio:messages", "mirror:salesforce")), 30,
                 "the server ending a's session")
        assert not b.sync_once().failures
    assert delivered_bodies("salesforce", sf) == Counter(first + then)
    print(f"\ntwo daemons in turn: {sf.total_calls} Salesforce calls, at most {sf.busiest(60.0)} in a minute "
          f"(allowed 6)")
    assert sf.total_calls > 2 * 6
    assert sf.busiest(60.0) <= 6


@pytest.mark.postgres
def test_either_daemons_webhook_receiver_takes_any_webhook_once(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    """Two daemons' receivers behind one load balancer (same settings, same public URL): a Twilio message
    retried onto the other receiver is stored once, and X's CRC gets the same answer from both."""
    public = "https://hooks.example.com"
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                                      state_url=fresh_postgres_url, enabled=("salesforce", "twilio", "x"),
                                      webhooks_port=8080)  # enabled; each receiver below gets a free port
    tune_settings(settings, {"webhooks.public_url": public})
    config = load_config(settings)
    params = {"MessageSid": "SM" + "a" * 32, "AccountSid": config.settings.channels.twilio.account_sid,  # type: ignore[union-attr]
              "From": "+14155550123", "To": OURS, "Body": "hello from behind the balancer", "NumMedia": "0"}
    headers = signed(params, f"{public}/webhooks/twilio/messages", DEFAULT_AUTH_TOKEN)
    with build_hub(config) as a, build_hub(config) as b:
        servers = [HttpServer(hub.webhook_app(), port=0).start() for hub in (a, b)]
        try:
            answers = [httpx.post(f"{s.url}/webhooks/twilio/messages", data=params, headers=headers) for s in servers]
            crc = [httpx.get(f"{s.url}/webhooks/x", params={"crc_token": "challenge-123"}) for s in servers]
        finally:
            for server in servers:
                server.stop()
        with a.store.transaction() as session:
            stored = ledger_counts(session)
    assert [r.status_code for r in answers] == [200, 200]
    assert stored == {"sms": 1}
    secret = config.secret("channels.x.consumer_secret").get_secret_value()
    assert [r.json() for r in crc] == [{"response_token": crc_response(secret, "challenge-123")}] * 2
