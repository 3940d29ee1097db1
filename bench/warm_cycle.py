"""Benchmark: one warm sync cycle over a store holding N interactions of history.

The store comes from `bench/history.py` (SQLite: a copy of the cached file;
PostgreSQL: a fresh `crmhub_bench_<pid>` database, dropped afterwards). The
emulators hold the contacts of the warm traffic's known customers. A first,
small cycle warms up (caches, the first mirror load) and opens one
conversation per follow-up customer; the measured cycle then takes K new
inbound SMS, a third each from new customers, from known ones (contacts in
every CRM, mirrored) and follow-ups to the open conversations, and polls,
routes and delivers them to all three CRMs. Not a test: nothing is asserted.

Reported: hub CPU per interaction (`time.thread_time()` of the thread
running the cycle; the emulators serve from threads of their own), SQL
statements per interaction, API calls per CRM and the process's peak RSS
(run one size per process, as `bench/run.py` does, so it is that size's).

    .venv/bin/python bench/warm_cycle.py --size 100000 --store sqlite --interactions 300
"""

from __future__ import annotations

import argparse
import cProfile
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import _sandbox as sb
import history
from crmhub.logs import configure
from crmhub.sandbox.postgres import throwaway_database

HISTORY = Path(__file__).with_name("history.py")


@contextmanager
def history_store(size: int, store: str, directory: Path, *, child: bool = True) -> Iterator[str]:
    """The URL of a store holding `size` interactions of history, made in a child process (its memory is not ours).

    `child=False` builds it in this process: quicker to start (the smoke run), but the peak RSS then includes it.
    """
    def build(*args: str) -> None:
        if child:
            subprocess.run([sys.executable, str(HISTORY), *args], check=True, stdout=subprocess.DEVNULL)
        elif "--url" in args:
            history.build(args[-1], size)
        else:
            history.sqlite_history(size)

    if store == "sqlite":
        build("--size", str(size))
        copy = directory / "crmhub.db"
        shutil.copyfile(history.cached_path(size), copy)
        yield f"sqlite:///{copy}"
        return
    with throwaway_database("crmhub_bench") as url:
        build("--size", str(size), "--url", url)
        yield url


# Detection on, as a multilingual contact centre runs it (issue 19): its CPU and memory are in the figures.
LANGUAGES = ("en", "es", "fr", "de", "pt", "tr", "az", "ru", "ar", "fa", "hi", "zh")


def run(size: int, store: str, interactions: int, seed: int = 1, *, child: bool = True,
        profile: str | None = None, languages: Sequence[str] = LANGUAGES) -> dict[str, Any]:
    """One warm cycle of `interactions` new SMS over `size` interactions of history; its figures."""
    rng = random.Random(seed)
    third = max(1, interactions // 3)
    known, following = sb.phones(1000, third), sb.phones(3000, third)
    new = sb.phones(5000, interactions - 2 * third)
    with tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp, \
            history_store(size, store, Path(tmp), child=child) as url, sb.sandbox() as servers:
        sb.seed_contacts(servers, sb.CRMS, known, rng)
        clock = servers["twilio"].emulator.clock
        clock.advance(120)  # Zendesk's export leaves out the last minute
        sb.send_messages(servers, following, rng, start=clock.now() - timedelta(hours=1))
        with sb.hub_on(servers, Path(tmp), state_url=url, languages=languages) as hub:
            warm = hub.sync_once()
            _check(warm, len(following), "warm-up")
            clock.advance(120)
            senders = known + following + new
            rng.shuffle(senders)
            sb.send_messages(servers, senders, rng, start=clock.now() - timedelta(seconds=5 * len(senders)), step=5)
            clock.advance(120)
            counter = sb.SqlCounter().attach(hub.store.engine)
            before, cases = sb.calls(servers), len(servers["salesforce"].emulator.records("Case"))
            profiler = cProfile.Profile(time.thread_time) if profile else None  # CPU, as measured
            cpu = sb.thread_cpu()
            if profiler is not None:
                profiler.enable()
            cycle = hub.sync_once()
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(profile)
            cpu = sb.thread_cpu() - cpu
            after = sb.calls(servers)
            _check(cycle, len(senders), "measured")
            cases = len(servers["salesforce"].emulator.records("Case")) - cases
            if cases != len(known) + len(new):  # the follow-ups thread onto the cases the warm-up opened
                raise SystemExit(f"measured cycle opened {cases} Salesforce cases, expected {len(known) + len(new)}")
    per_crm = {crm: after[crm] - before[crm] for crm in sb.CRMS}
    return {"bench": "warm_cycle", "size": size, "store": store, "interactions": len(senders),
            "cpu_ms_per_interaction": round(1000 * cpu / len(senders), 2),
            "sql_per_interaction": round(counter.statements / len(senders), 1),
            "calls_per_interaction": {crm: round(n / len(senders), 3) for crm, n in per_crm.items()},
            "peak_rss_mb": round(sb.peak_rss_mb()),
            "delivered": {r.crm: r.delivered for r in cycle.deliveries}}


def _check(cycle: Any, expected: int, label: str) -> None:
    """A cycle that failed a step or did not deliver everything measures nothing worth printing."""
    delivered = {r.crm: r.delivered for r in cycle.deliveries}
    if cycle.failures or any(delivered.get(crm) != expected for crm in sb.CRMS):
        raise SystemExit(f"{label} cycle: expected {expected} writes per CRM, delivered {delivered}; "
                         f"failures: {cycle.failures}")


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; the result (bench/run.py --smoke calls this in its own process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="interactions of history in the store")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--interactions", type=int, default=300, help="K: new interactions in the measured cycle")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--same-process", action="store_true",
                        help="build the history in this process (quicker; the peak RSS then includes it)")
    parser.add_argument("--json", action="store_true", help="one JSON line (for bench/run.py)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the measured cycle's thread here")
    parser.add_argument("--languages", default=",".join(LANGUAGES),
                        help="settings languages.expected, comma-separated ('' turns detection off)")
    args = parser.parse_args(argv)
    configure("warning")
    return run(args.size, args.store, args.interactions, args.seed, child=not args.same_process,
               profile=args.profile, languages=[c for c in args.languages.split(",") if c])


def main() -> None:
    sb.emit(cli(), "--json" in sys.argv)


if __name__ == "__main__":
    main()
