"""Profile delivery alone: SQL statements and the delivering thread's CPU per interaction, per CRM.

Seeds N inbound SMS (as `calls_per_interaction.py` does), polls, mirrors and
routes them, then delivers to each CRM in this thread while counting the SQL
statements it issues (SQLAlchemy's `before_cursor_execute`) and its CPU
(`time.thread_time`, which leaves out the emulators' threads). Runs in seconds.
Not a test: nothing is asserted.

    .venv/bin/python bench/profile_delivery.py --messages 1000
    .venv/bin/python bench/profile_delivery.py --messages 1000 --profile 25   # cProfile's top 25, by own time
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

import _sandbox as sb
from crmhub.logs import configure
from crmhub.sync.deliver import deliver
from crmhub.sync.process import process_pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions of delivery")
    parser.add_argument("--callers", default="", help="with --profile: print what calls the functions matching this")
    args = parser.parse_args()
    configure("warning")
    rng = random.Random(1)
    with sb.sandbox(sb.CRMS) as servers, tempfile.TemporaryDirectory() as tmp:
        numbers = sb.phones(1000, args.customers)
        sb.seed_contacts(servers, sb.CRMS, numbers[: args.customers // 2], rng)
        clock = servers["twilio"].emulator.clock
        clock.advance(120)  # Zendesk's export leaves out the last minute
        sb.send_messages(servers, [rng.choice(numbers) for _ in range(args.messages)], rng,
                         start=clock.now() - timedelta(days=1))
        with sb.hub_on(servers, Path(tmp)) as hub:  # on sandbox time: waits (pacing, job polls) pass at once
            for poll in hub.polls().values():
                poll()
            for name in hub.crms:
                hub.refresh_mirror(name)
            process_pending(hub.store, hub.router, list(hub.crms), now=hub.clock(), identity=hub.identity,
                            reopen_window=hub.config.settings.threads.reopen_window)
            me, statements = threading.get_ident(), [0]

            def count(*_: Any) -> None:
                if threading.get_ident() == me:
                    statements[0] += 1

            event.listen(hub.store.engine, "before_cursor_execute", count)
            profile = cProfile.Profile() if args.profile else None
            total_cpu, total_statements, total_delivered = 0.0, 0, 0
            for name, crm in hub.crms.items():
                connector_cpu = _time_connector(crm)
                statements[0] = 0
                cpu0 = time.thread_time()
                if profile:
                    profile.enable()
                report = deliver(hub.store, crm, hub.policies[name], now=hub.clock(), clock=hub.clock)
                if profile:
                    profile.disable()
                cpu = time.thread_time() - cpu0
                total_cpu, total_statements = total_cpu + cpu, total_statements + statements[0]
                total_delivered += report.delivered
                per = max(report.delivered, 1)
                print(f"{name:<10} delivered={report.delivered:<5} dead={report.dead:<3} "
                      f"SQL statements={statements[0]:<5} ({statements[0] / per:.2f} per interaction) "
                      f"CPU {1000 * cpu / per:.2f} ms per interaction, of which crmhub's own "
                      f"{1000 * (cpu - connector_cpu[0]) / per:.2f} ms (the rest inside the connector)")
            per = max(total_delivered, 1)
            print(f"{'all':<10} delivered={total_delivered:<5} SQL statements={total_statements / per:.2f} per write, "
                  f"CPU {1000 * total_cpu:.0f} ms = {1000 * total_cpu / per:.2f} ms per write, "
                  f"{1000 * len(hub.crms) * total_cpu / per:.2f} ms per interaction written to {len(hub.crms)} CRMs")
            if profile:
                pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
                pstats.Stats(profile).sort_stats("cumulative").print_stats("crmhub/(sync|store)", args.profile)
                if args.callers:
                    pstats.Stats(profile).sort_stats("cumulative").print_callers(args.callers)
                    pstats.Stats(profile).sort_stats("cumulative").print_callees(args.callers)


def _time_connector(crm: Any) -> list[float]:
    """Time the connector's `write_history` (thread CPU) apart from the engine's own work."""
    spent, write = [0.0], crm.write_history

    def timed(writes: Any, **options: Any) -> Any:
        start = time.thread_time()
        try:
            return write(writes, **options)
        finally:
            spent[0] += time.thread_time() - start

    crm.write_history = timed
    return spent


if __name__ == "__main__":
    main()
