"""Benchmark: does a warm cycle cost more when the store holds more history?

Builds a state store holding `--history` delivered interactions (SQLAlchemy
Core bulk inserts, `crmhub.sandbox.history`), lets a first cycle load the
contact mirrors and deliver a few messages (the warm-up), then times one
routing + delivery cycle (`Hub.route_and_deliver`) of `--new` new SMS to
Salesforce, Zendesk and HubSpot: the CPU of the cycle's own thread
(`time.thread_time`, so the in-process emulators' threads do not count) and
the SQL statements it ran. Not a test: nothing is asserted.

    .venv/bin/python bench/history_scans.py --history 100000 --new 500
    .venv/bin/python bench/history_scans.py --history 100000 --new 500 --state postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.logs import configure
from crmhub.sandbox.history import seed_history
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import open_store

OURS = "+14155550100"
CRMS = ("salesforce", "zendesk", "hubspot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000, help="interactions already in the store")
    parser.add_argument("--new", type=int, default=500, help="new interactions routed and delivered by the cycle")
    parser.add_argument("--customers", type=int, default=100, help="new customers writing them")
    parser.add_argument("--state", default=None, help="state store URL (default: a new SQLite file)")
    args = parser.parse_args()
    configure("warning")
    with running_sandbox(apis=(*CRMS, "twilio")) as servers, tempfile.TemporaryDirectory() as tmp:
        sf, zd, hs, tw = (servers[api].emulator for api in (*CRMS, "twilio"))
        sf.set_api_limit(1_000_000)
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            sf.add_queue(name.replace("_", " "), name)
        zd.configure(rate_limit_per_minute=100_000)
        hs.set_limits(ten_second_max=100_000, daily_max=10_000_000, search_per_second=100)
        tw.add_number(OURS)
        state = args.state or f"sqlite:///{Path(tmp) / 'state.db'}"
        seeded = open_store(state)
        started = time.perf_counter()
        seed_history(seeded.engine, args.history, CRMS)
        seeded.close()
        print(f"history: {args.history} interactions seeded in {time.perf_counter() - started:.1f} s ({state.split(':')[0]})")

        numbers = [f"+1415666{i:04d}" for i in range(args.customers)]
        start = tw.clock.now() - timedelta(hours=2)
        for i, number in enumerate(numbers):  # the warm-up: one message per new customer
            tw.receive_message(number, OURS, "Hello", at=start + timedelta(seconds=i))
        zd.clock.advance(120)  # Zendesk's incremental export leaves out the last minute
        settings = write_sandbox_settings(Path(tmp), {api: s.url for api, s in servers.items()},
                                          state_url=state, enabled=(*CRMS, "twilio"))
        with build_hub(load_config(settings)) as hub:
            warm = hub.sync_once()
            assert not warm.failures, warm.failures
            for i in range(args.new):
                tw.receive_message(numbers[i % len(numbers)], OURS, "Where is my order?",
                                   at=start + timedelta(minutes=30, seconds=i))
            zd.clock.advance(120)
            for poll in hub.polls().values():
                poll()
            for crm in hub.crms:
                hub.refresh_mirror(crm)
            statements = [0]
            event.listen(hub.store.engine, "before_cursor_execute",
                         lambda *_: statements.__setitem__(0, statements[0] + 1))
            cpu, wall = time.thread_time(), time.perf_counter()
            cycle = hub.route_and_deliver()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        _report(args, cycle, cpu, wall, statements[0])


def _report(args: Any, cycle: Any, cpu: float, wall: float, statements: int) -> None:
    delivered = {report.crm: report.delivered for report in cycle.deliveries}
    print(f"cycle: routed {cycle.processed}, delivered {delivered}, failures {cycle.failures or 'none'}")
    per = max(cycle.processed, 1)
    print(f"cycle thread CPU {cpu:.2f} s = {1000 * cpu / per:.1f} ms per interaction (3 CRMs); wall {wall:.1f} s; "
          f"{statements} SQL statements = {statements / per:.0f} per interaction")


if __name__ == "__main__":
    main()
