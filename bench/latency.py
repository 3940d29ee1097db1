"""Benchmark: webhook -> CRM record latency under `crmhub run`, with all three CRMs (issue 13, item 4c).

For each store (SQLite file, throw-away PostgreSQL database) and each rate,
a fresh sandbox (emulators in this process, port 0) is seeded like a contact
centre's accounts, `crmhub run` starts as a subprocess (webhooks on, all
three CRMs, default intervals), and an open-loop sender POSTs signed Twilio
SMS webhooks at R msg/s for D seconds. A watcher thread reads the emulators'
state every `--watch-period` seconds and notes when each message first shows
up as a Salesforce Task, a Zendesk ticket comment and a HubSpot
communication. After the last send it drains up to `--drain` seconds, then
prints latency percentiles per CRM, what is missing, CRM API calls per
interaction (writes and reads: read-backs, mirror, replies), the rows per
delivery run (from the daemon's `delivery run` log lines), and the
daemon's CPU per interaction and peak RSS.

Not a test: nothing is asserted, nothing is timed against a target. It exits
non-zero only when the bench itself cannot run (the daemon never listens, or
dies).

    .venv/bin/python bench/latency.py                          # 5, 10 and 50 msg/s, 60 s, SQLite and PostgreSQL
    .venv/bin/python bench/latency.py --stores sqlite --rates 10 --seconds 30 --json out.json
    .venv/bin/python bench/latency.py --smoke --json out.json   # seconds: 3 s at 5 msg/s on SQLite
    .venv/bin/python bench/latency.py --stores sqlite --rates 5 --set delivery.max_wait=20s   # a setting changed
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import requests
from ruamel.yaml import YAML
from twilio.request_validator import RequestValidator

from crmhub.connectors.zendesk_comments import keys_of
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.postgres import PostgresAbsent, throwaway_database
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.twilio.models import DEFAULT_ACCOUNT_SID  # the sandbox settings' account

OURS = "+14155550100"  # the sandbox settings' Twilio number
CRMS = ("salesforce", "zendesk", "hubspot")
PHONE_FORMATS = ("({a}) {b}-{c}", "+1 {a}.{b}.{c}", "{a}-{b}-{c}", "+1{a}{b}{c}")
TEXTS = ("Where is my order?", "I need a refund", "Thanks!", "Can you call me back?", "My parcel arrived damaged")
WEBHOOK_PATH = "/webhooks/twilio/messages"
READ_PATHS = re.compile(r"/search\b|/batch/read\b")  # POSTs that only read (HubSpot)
DELIVERY_RUN = re.compile(r"delivery run .*?job=deliver:(\w+) .*?rows=(\d+)")  # the workers' log line
WEBHOOK_TIMEOUT = 15.0  # seconds, as Twilio waits for a webhook's answer
VERSION_PART = re.compile(r"v\d+(\.\d+)?")  # /api/v2, /crm/v3, /services/data/v59.0
ZENDESK_JOB_SECONDS = 1.0  # a bulk job's run time in the background ("a second or two"; docs/latency-bench.md)
START_DEADLINE = 180.0  # seconds for `crmhub run` to listen and schedule its jobs on a loaded machine


# ---- results ---------------------------------------------------------------------------------------------------

@dataclass
class CrmFigures:
    """What one CRM showed of one run."""

    crm: str
    seen: int
    missing: int
    p50: float | None  # seconds from the webhook's send to the record first seen; None: that rank is missing
    p95: float | None
    p99: float | None
    max: float | None
    api_calls: int
    calls_per_interaction: float
    writes_per_interaction: float  # POST/PATCH/PUT/DELETE, searches and batch reads aside
    reads_per_interaction: float  # GET, searches, batch reads: read-backs, job polls, the mirror, replies
    busiest_endpoints: dict[str, int]
    steady_calls_per_interaction: float | None = None  # calls in the steady window over the items sent in it
    steady_endpoints: dict[str, int] = field(default_factory=dict)  # calls in the steady window, by endpoint
    delivery_runs: int = 0
    rows_per_run: dict[str, float] = field(default_factory=dict)  # p50, p90, max of the rows a run delivered


@dataclass
class RunFigures:
    """One (store, rate) run."""

    store: str
    rate: float
    seconds: float
    sent: int
    customers: int
    webhook_statuses: dict[str, int]
    ack_p50: float | None
    ack_p95: float | None
    send_late_p99: float | None  # how late the sender was against its schedule
    send_late_max: float | None
    drained_in: float  # seconds from the last send until everything was seen (or the drain ran out)
    daemon_cpu_seconds: float
    daemon_cpu_ms_per_interaction: float
    daemon_peak_rss_mb: float
    daemon_exit: int | None
    load_average: tuple[float, float]  # the machine's 1-minute load at the start and at the end of the load
    crms: list[CrmFigures] = field(default_factory=list)


def percentile(values: list[float], pct: float, missing: int = 0) -> float | None:
    """Nearest-rank percentile over `values` plus `missing` values never seen (ranked last, as None)."""
    total = len(values) + missing
    if total == 0:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    ordered = sorted(values)
    return ordered[rank - 1] if rank <= len(ordered) else None


# ---- the sandbox -----------------------------------------------------------------------------------------------

def seed_accounts(servers: dict[str, EmulatorServer], known: list[str], rng: random.Random,
                  zendesk_jobs: float = 0.0) -> None:
    """Queues, our Twilio number, limits too high to throttle, and the known customers in every CRM,
    each phone written in its own messy format; Zendesk's bulk jobs complete `zendesk_jobs` seconds
    after their submission, whoever reads them (0: the emulator's default, a step per status read)."""
    sf: Any = servers["salesforce"].emulator
    zd: Any = servers["zendesk"].emulator
    hs: Any = servers["hubspot"].emulator
    sf.set_api_limit(10_000_000)
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name.replace("_", " "), name)
    zd.configure(rate_limit_per_minute=100_000)
    if zendesk_jobs > 0:
        zd.configure(job_reads_per_step=None, job_autocomplete_seconds=zendesk_jobs)
    hs.set_limits(ten_second_max=100_000, daily_max=10_000_000, search_per_second=100)
    twilio: Any = servers["twilio"].emulator
    twilio.add_number(OURS)  # no sms_url: this bench sends the webhooks itself
    for i, number in enumerate(known):
        sf.insert("Contact", LastName=f"Customer {i}", Phone=messy(number, rng),
                  Tier__c=rng.choice(["Gold", "Standard"]))
        zd.add_user(name=f"Customer {i}", phone=messy(number, rng))
        hs.add("contacts", lastname=f"Customer {i}", phone=messy(number, rng))
    zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute: let the seed be seen


def messy(e164: str, rng: random.Random) -> str:
    """A US number written as people type it into a CRM."""
    return rng.choice(PHONE_FORMATS).format(a=e164[2:5], b=e164[5:8], c=e164[8:])


@contextmanager
def state_database(store: str, directory: Path) -> Iterator[str | None]:
    """The state store's URL: a SQLite file in `directory`, or a PostgreSQL database created here and
    dropped afterwards (None, said on stderr, when PostgreSQL is not reachable)."""
    if store == "sqlite":
        yield f"sqlite:///{(directory / 'crmhub.db').resolve()}"
        return
    try:
        with throwaway_database("crmhub_bench") as url:
            yield url
    except PostgresAbsent as exc:
        print(f"{exc}; skipped", file=sys.stderr)
        yield None


# ---- the daemon ------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """`crmhub run` in a subprocess, its log in a file (never an unread pipe, which would block it)."""

    def __init__(self, settings: Path, log: Path, profile: Path | None = None) -> None:
        self.log = log
        command = [sys.executable, "-m", "crmhub"]
        if profile is not None:  # yappi over every thread (bench/profiled_daemon.py)
            command = [sys.executable, str(Path(__file__).with_name("profiled_daemon.py")), str(profile)]
        with log.open("ab") as out:
            self.process = subprocess.Popen([*command, "run", "--config", str(settings)],
                                            stdout=subprocess.DEVNULL, stderr=out)

    def wait_ready(self, webhook_url: str) -> None:
        """Until the webhook receiver answers and the jobs are scheduled (the start-up catch-up is done)."""
        end = time.monotonic() + START_DEADLINE
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise SystemExit(f"crmhub run exited with {self.process.returncode}:\n{self.tail()}")
            if "] running " in self.log.read_text(errors="replace") and _answers(webhook_url):
                return
            time.sleep(0.1)  # polling with a deadline
        raise SystemExit(f"crmhub run did not become ready in {START_DEADLINE:.0f} s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the daemon so far (/proc/<pid>/stat utime + stime)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        """The daemon's peak resident set (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> int | None:
        """SIGTERM and wait for the drain (the default grace is 30 s); SIGKILL past 60 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (any status)."""
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


# ---- the watcher -----------------------------------------------------------------------------------------------

class Watcher:
    """Reads the emulators' state in place at a fixed period and notes when each interaction key first
    shows up in each CRM. Reads only what was added since the last look, under each emulator's lock;
    in-process reads are not HTTP requests, so the emulators' call counts never include them."""

    def __init__(self, servers: dict[str, EmulatorServer], period: float) -> None:
        self.period = period
        self.first_seen: dict[str, dict[str, float]] = {crm: {} for crm in CRMS}
        sf: Any = servers["salesforce"].emulator
        hs: Any = servers["hubspot"].emulator
        self._readers: dict[str, Callable[[], list[str]]] = {
            "salesforce": self._appended_reader(sf, lambda: sf.state["records"]["Task"],
                                                lambda task: task.get("Crmhub_Key__c")),
            "zendesk": self._zendesk_reader(servers["zendesk"].emulator),
            "hubspot": self._appended_reader(hs, lambda: hs.state["objects"]["communications"],
                                             lambda record: record["properties"].get("crmhub_key")),
        }
        self._stop = threading.Event()
        self._looking = threading.Lock()
        self.failure: Exception | None = None  # why the watcher stopped early
        self._thread = threading.Thread(target=self._run, name="latency-watcher", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.failure is not None:
            raise SystemExit(f"the watcher could not read the emulators' state: {self.failure!r}")

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.period):
                self.look()
        except (KeyError, TypeError, AttributeError) as exc:  # a state of another shape: fail, not "all missing"
            self.failure = exc

    def look(self) -> None:
        """One look at every CRM (from the watcher thread, or once more at the end)."""
        with self._looking:  # each reader remembers how far it read: one look at a time
            now = time.monotonic()
            for crm, read in self._readers.items():
                seen = self.first_seen[crm]
                for key in read():
                    seen.setdefault(key.rpartition(":")[2], now)  # crmhub's key is `<channel>:<MessageSid>`

    @staticmethod
    def _appended_reader(em: Any, records: Callable[[], dict[str, Any]],
                         key: Callable[[dict[str, Any]], object]) -> Callable[[], list[str]]:
        """The keys of the records appended to `records()` (a dict in creation order) since the last read."""
        done = 0

        def read() -> list[str]:
            nonlocal done
            with em.lock:
                new = list(records().values())[done:]
            done += len(new)
            return [str(k) for k in map(key, new) if k]
        return read

    @staticmethod
    def _zendesk_reader(em: Any) -> Callable[[], list[str]]:
        """Ticket comments (audits, appended per ticket) by the crmhub keys of their metadata (`keys_of`).

        Bulk jobs old enough are completed first, as Zendesk's background worker would have done by then
        (the emulator otherwise does it on the next request).
        """
        done: Counter[str] = Counter()

        def read() -> list[str]:
            new: list[Any] = []
            with em.lock:
                em.run_due_jobs()  # what Zendesk's background worker has done by now
                for ticket, audits in em.state["audits"].items():
                    if len(audits) > done[ticket]:
                        new.extend(audits[done[ticket]:])
                        done[ticket] = len(audits)
            return [key for a in new if any(e.get("type") == "Comment" for e in a.get("events", ()))
                    for key in keys_of((a.get("metadata") or {}).get("custom"))]  # a folded comment holds several
        return read


# ---- the sender ------------------------------------------------------------------------------------------------

@dataclass
class Sent:
    """One webhook: when it was due, when its request went out, and its answer."""

    due: float
    at: float = 0.0
    status: str = "pending"
    ack: float | None = None


class Sender:
    """Open loop: message i is due at start + i / rate, whatever the receiver answered before. Each message
    is stored in the Twilio emulator first (as Twilio holds every message it delivers) and then POSTed,
    signed, in the form Twilio sends; its send time is when its request goes out, late sends included."""

    def __init__(self, twilio: EmulatorServer, webhook_url: str, senders: list[str], rng: random.Random) -> None:
        tw: Any = twilio.emulator
        self.tw = tw
        self.url = webhook_url
        self.validator = RequestValidator(tw.auth_token(DEFAULT_ACCOUNT_SID))
        self.senders = senders
        self.rng = rng
        self.sent: dict[str, Sent] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def run(self, rate: float, seconds: float) -> None:
        count = max(1, round(rate * seconds))
        plan = [(self.rng.choice(self.senders), self.rng.choice(TEXTS)) for _ in range(count)]
        start = time.monotonic()
        threads = max(8, math.ceil(rate * WEBHOOK_TIMEOUT))  # each may wait its full timeout, delaying no other
        with ThreadPoolExecutor(threads, thread_name_prefix="latency-sender") as pool:
            futures = []
            for i, (phone, text) in enumerate(plan):
                due = start + i / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the open-loop schedule, not a synchronisation
                futures.append(pool.submit(self._send, due, phone, f"{text} (#{i})"))
        for future in futures:
            future.result()  # a send that could not even be made is the bench's own failure: say it

    def _send(self, due: float, phone: str, body: str) -> None:
        sid = self.tw.receive_message(phone, OURS, body)
        params = {
            "ToCountry": "US", "ToState": "CA", "ToCity": "", "ToZip": "", "FromCountry": "US", "FromState": "",
            "FromCity": "", "FromZip": "", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
            "SmsStatus": "received", "Body": body, "To": OURS, "NumSegments": "1", "MessageSid": sid,
            "AccountSid": DEFAULT_ACCOUNT_SID,
            "From": phone, "ApiVersion": "2010-04-01",
        }
        headers = {"X-Twilio-Signature": self.validator.compute_signature(self.url, params),
                   "I-Twilio-Idempotency-Token": uuid.uuid4().hex, "User-Agent": "TwilioProxy/1.1"}
        record = Sent(due=due)
        with self._lock:
            self.sent[sid] = record
        record.at = time.monotonic()
        try:
            answer = self._session().post(self.url, data=params, headers=headers, timeout=WEBHOOK_TIMEOUT,
                                          allow_redirects=False)
            record.status = str(answer.status_code)
        except requests.RequestException as exc:
            record.status = type(exc).__name__
        record.ack = time.monotonic() - record.at

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy from the environment for loopback calls
            self._local.session = session
        return session


# ---- one run ---------------------------------------------------------------------------------------------------

def set_values(settings: Path, values: dict[str, str]) -> None:
    """Change settings.yaml by dotted key (`delivery.max_wait` -> "20s"), as an admin's edit would."""
    yaml = YAML()
    data = yaml.load(settings.read_text())
    for path, value in values.items():
        *parents, key = path.split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    with settings.open("w") as out:
        yaml.dump(data, out)


def run_once(store: str, state_url: str, rate: float, seconds: float, drain: float, period: float,
             customers: int, seed: int, workdir: Path, profile: Path | None = None,
             zendesk_jobs: float = 0.0, values: dict[str, str] | None = None) -> RunFigures:
    """A fresh sandbox, daemon and store; load at `rate` for `seconds`; drain; the figures."""
    rng = random.Random(seed)
    pool = [f"+1415{5_000_000 + i:07d}" for i in range(customers)]
    known = pool[: customers // 2]  # half the customers are already contacts in every CRM; the rest are new
    with running_sandbox(apis=(*CRMS, "twilio")) as servers:
        seed_accounts(servers, known, rng, zendesk_jobs)
        port = free_port()
        settings = write_sandbox_settings(workdir, {api: s.url for api, s in servers.items()}, state_url=state_url,
                                          enabled=(*CRMS, "twilio"), webhooks_port=port)
        set_values(settings, values or {})
        webhook_url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        daemon = Daemon(settings, workdir / "crmhub.log", profile)
        try:
            daemon.wait_ready(webhook_url)
            sender = Sender(servers["twilio"], webhook_url, pool, rng)
            calls_before = {crm: Counter(servers[crm].emulator.calls) for crm in CRMS}
            sending_from = {crm: servers[crm].emulator.clock.time() for crm in CRMS}
            cpu_before, load_before = daemon.cpu_seconds(), os.getloadavg()[0]
            with Watcher(servers, period) as watcher:
                sender.run(rate, seconds)  # returns once every request has its answer or timed out
                steady = {crm: _steady(servers[crm].emulator, sending_from[crm], rate, seconds) for crm in CRMS}
                last_send = max(s.at for s in sender.sent.values())
                end = last_send + drain
                while time.monotonic() < end and not _all_seen(watcher, sender) and watcher.failure is None:
                    if daemon.process.poll() is not None:
                        raise SystemExit(f"crmhub run died during the run:\n{daemon.tail()}")
                    time.sleep(period)  # polling with a deadline
                watcher.look()
                drained_in = time.monotonic() - last_send
            cpu, load = daemon.cpu_seconds() - cpu_before, (load_before, os.getloadavg()[0])
            rss = daemon.peak_rss_mb()
            calls = {crm: Counter(servers[crm].emulator.calls) - calls_before[crm] for crm in CRMS}
        finally:
            exit_code = daemon.stop()
    run = _figures(store, rate, seconds, customers, sender, watcher, calls, cpu, rss, drained_in, exit_code, load)
    for figures in run.crms:
        figures.steady_calls_per_interaction, endpoints = steady[figures.crm]
        figures.steady_endpoints = dict(endpoints.most_common())
    _delivery_runs(run, daemon.log.read_text(errors="replace"))
    return run


def _steady(emulator: Any, sending_from: float, rate: float, seconds: float) -> tuple[float | None, Counter[str]]:
    """Calls per interaction in the steady window, and its calls by endpoint: from a third of the sending
    time (at most 20 s) after it began to its end, over the items sent in that window; start-up and the
    drain are left out.

    Writes trail their items by at most `delivery.max_wait`, so the window's writes are about its items'.
    """
    warm = min(20.0, seconds / 3)
    start, end = sending_from + warm, emulator.clock.time()
    if end - start <= 0:
        return None, Counter()
    with emulator.lock:
        calls = Counter(key for at, key in emulator.call_log if start <= at < end)
    return sum(calls.values()) / (rate * (end - start)), calls


def is_read(endpoint: str) -> bool:
    """Whether an emulator call key (`METHOD /path`) only reads."""
    method, _, path = endpoint.partition(" ")
    return method == "GET" or bool(READ_PATHS.search(path))


def _delivery_runs(run: RunFigures, log: str) -> None:
    """Rows per delivery run, per CRM, from the daemon's log (the start-up catch-up has no such line)."""
    rows: dict[str, list[float]] = {crm: [] for crm in CRMS}
    for crm, count in DELIVERY_RUN.findall(log):
        rows.setdefault(crm, []).append(float(count))
    for figures in run.crms:
        sizes = rows.get(figures.crm, [])
        figures.delivery_runs = len(sizes)
        if sizes:
            figures.rows_per_run = {"p50": percentile(sizes, 50) or 0.0, "p90": percentile(sizes, 90) or 0.0,
                                    "max": max(sizes)}


def _all_seen(watcher: Watcher, sender: Sender) -> bool:
    sids = set(sender.sent)
    return all(len(sids - watcher.first_seen[crm].keys()) == 0 for crm in CRMS)


def _figures(store: str, rate: float, seconds: float, customers: int, sender: Sender, watcher: Watcher,
             calls: dict[str, Counter[str]], cpu: float, rss: float, drained_in: float,
             exit_code: int | None, load: tuple[float, float]) -> RunFigures:
    sent = sender.sent
    n = len(sent)
    acks = [s.ack for s in sent.values() if s.ack is not None]
    late = [max(0.0, s.at - s.due) for s in sent.values()]
    run = RunFigures(
        store=store, rate=rate, seconds=seconds, sent=n, customers=customers,
        webhook_statuses=dict(Counter(s.status for s in sent.values())),
        ack_p50=percentile(acks, 50), ack_p95=percentile(acks, 95),
        send_late_p99=percentile(late, 99), send_late_max=max(late, default=None),
        drained_in=drained_in, daemon_cpu_seconds=cpu, daemon_cpu_ms_per_interaction=1000 * cpu / max(n, 1),
        daemon_peak_rss_mb=rss, daemon_exit=exit_code, load_average=load)
    for crm in CRMS:
        first = watcher.first_seen[crm]
        latencies = [first[sid] - s.at for sid, s in sent.items() if sid in first]
        missing = n - len(latencies)
        total = sum(calls[crm].values())
        reads = sum(count for endpoint, count in calls[crm].items() if is_read(endpoint))
        run.crms.append(CrmFigures(
            crm=crm, seen=len(latencies), missing=missing,
            p50=percentile(latencies, 50, missing), p95=percentile(latencies, 95, missing),
            p99=percentile(latencies, 99, missing), max=max(latencies) if not missing and latencies else None,
            api_calls=total, calls_per_interaction=total / max(n, 1),
            writes_per_interaction=(total - reads) / max(n, 1), reads_per_interaction=reads / max(n, 1),
            busiest_endpoints=dict(calls[crm].most_common(6))))
    return run


# ---- output ----------------------------------------------------------------------------------------------------

def _s(value: float | None) -> str:
    return "missing" if value is None else f"{value:.2f}"


def _s3(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _short(endpoint: str) -> str:
    """`GET /api/v2/job_statuses/show_many.json` as `GET job_statuses/show_many`: the table stays readable."""
    method, _, path = endpoint.partition(" ")
    parts = [p for p in path.removesuffix(".json").split("/") if p and not VERSION_PART.fullmatch(p)]
    return f"{method} {'/'.join(parts[-2:])}"


def markdown(runs: list[RunFigures]) -> str:
    """Two tables: latency and calls per CRM, then the daemon and the sender per run."""
    lines = [("| store | msg/s | CRM | p50 s | p95 s | p99 s | max s | missing | API calls/interaction "
              "| writes | reads | steady calls/interaction | delivery runs | rows/run p50/p90/max |"),
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs:
        for c in run.crms:
            sizes = "/".join(f"{c.rows_per_run[k]:g}" for k in ("p50", "p90", "max")) if c.rows_per_run else "-"
            lines.append(f"| {run.store} | {run.rate:g} | {c.crm} | {_s(c.p50)} | {_s(c.p95)} | {_s(c.p99)} | "
                         f"{_s(c.max)} | {c.missing} of {run.sent} | {c.calls_per_interaction:.3f} "
                         f"| {c.writes_per_interaction:.3f} | {c.reads_per_interaction:.3f} "
                         f"| {_s3(c.steady_calls_per_interaction)} | {c.delivery_runs} "
                         f"| {sizes} |")
    lines += ["", "| store | msg/s | CRM | calls in the steady window, by endpoint |", "| --- | ---: | --- | --- |"]
    for run in runs:
        for c in run.crms:
            split = ", ".join(f"{_short(e)} {n}" for e, n in c.steady_endpoints.items()) or "-"
            lines.append(f"| {run.store} | {run.rate:g} | {c.crm} | {split} |")
    lines += ["", ("| store | msg/s | sent | webhook answers | ack p50/p95 s | send late p99/max s | drained in s "
                   "| daemon CPU ms/interaction | daemon peak RSS MB | load avg start/end |"),
              "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(run.webhook_statuses.items()))
        lines.append(f"| {run.store} | {run.rate:g} | {run.sent} | {answers} | {_s(run.ack_p50)}/{_s(run.ack_p95)} "
                     f"| {_s(run.send_late_p99)}/{_s(run.send_late_max)} | {run.drained_in:.1f} "
                     f"| {run.daemon_cpu_ms_per_interaction:.1f} | {run.daemon_peak_rss_mb:.0f} "
                     f"| {run.load_average[0]:.1f}/{run.load_average[1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,10,50", help="comma-separated messages per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each rate is sent")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for stragglers after sending")
    parser.add_argument("--stores", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--customers", type=int, default=0,
                        help="customer pool (default: a quarter of the messages, at least 20; half already known)")
    parser.add_argument("--watch-period", type=float, default=0.1, help="seconds between looks at the CRMs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures there")
    parser.add_argument("--logs", type=Path, help="keep each run's daemon log there, as <store>-<rate>.log")
    parser.add_argument("--profile", type=Path, help="profile the daemon with yappi (a dev tool: pip install "
                        "yappi) into DIR/<store>-<rate>.prof and .txt")
    parser.add_argument("--zendesk-jobs", type=float, default=ZENDESK_JOB_SECONDS,
                        help="seconds a Zendesk bulk job takes to complete in the background, whoever reads it "
                        "(0: the emulator's default, one step per status read, so a job is done at its second read)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a setting of the daemon's settings.yaml by dotted key, e.g. "
                        "delivery.max_wait=20s (repeatable)")
    parser.add_argument("--smoke", action="store_true",
                        help="3 s at 5 msg/s on SQLite, up to 20 s drain (a trickle waits up to delivery.max_wait)")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds, args.drain, args.stores = "5", 3.0, 20.0, "sqlite"
    rates = [float(r) for r in args.rates.split(",") if r]
    values = dict(item.split("=", 1) for item in args.set)
    runs: list[RunFigures] = []
    for store in [s for s in args.stores.split(",") if s]:
        for rate in rates:
            customers = args.customers or max(20, round(rate * args.seconds / 4))
            with tempfile.TemporaryDirectory(prefix="crmhub-latency-") as tmp, \
                    state_database(store, Path(tmp)) as url:
                if url is None:
                    continue
                print(f"{store}: {rate:g} msg/s for {args.seconds:g} s ...", file=sys.stderr, flush=True)
                try:
                    profile = None
                    if args.profile:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = (args.profile / f"{store}-{rate:g}.prof").resolve()
                    runs.append(run_once(store, url, rate, args.seconds, args.drain, args.watch_period, customers,
                                         args.seed, Path(tmp), profile, args.zendesk_jobs, values))
                finally:
                    if args.logs:
                        args.logs.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(Path(tmp) / "crmhub.log", args.logs / f"{store}-{rate:g}.log")
    jobs = f"Zendesk jobs done {args.zendesk_jobs:g} s after submission" if args.zendesk_jobs > 0 else (
        "Zendesk jobs done at their second status read")
    print(f"webhook -> record latency under `crmhub run` ({os.cpu_count()} cores; "
          f"{args.seconds:g} s per rate, drain {args.drain:g} s; {jobs}; "
          + "".join(f"{key}: {value}; " for key, value in values.items()) +
          "percentiles count missing messages as 'missing')")
    print(markdown(runs))
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "runs": [asdict(r) for r in runs]},
                                        indent=2))


if __name__ == "__main__":
    main()
