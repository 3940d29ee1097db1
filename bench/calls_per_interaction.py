"""Benchmark: API calls, CPU and memory per interaction, for each CRM (the README scenario).

Seeds the sandbox with N inbound SMS from C customers (half of them already
contacts in every CRM, phones in each CRM's messy formats), runs one sync
cycle delivering to every chosen CRM on sandbox time (waits between Zendesk
job polls move the sandbox clock instead of sleeping), and prints the
figures users compare us on. Not a test: nothing is asserted.

    .venv/bin/python bench/calls_per_interaction.py --messages 2000 --customers 400
    .venv/bin/python bench/calls_per_interaction.py --crms salesforce --messages 2000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import _sandbox as sb
from crmhub.logs import configure


def run(messages: int, customers: int, crms: tuple[str, ...] = sb.CRMS, seed: int = 1) -> dict[str, Any]:
    """One cold sync cycle of `messages` SMS to `crms`: calls per interaction per system, CPU, memory."""
    rng = random.Random(seed)
    with sb.sandbox(crms) as servers, tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp:
        numbers = sb.phones(1000, customers)
        sb.seed_contacts(servers, crms, numbers[: customers // 2], rng)
        clock = servers["twilio"].emulator.clock
        clock.advance(120)  # Zendesk's export leaves out the last minute
        start = clock.now() - timedelta(days=1)
        sb.send_messages(servers, [rng.choice(numbers) for _ in range(messages)], rng, start=start)
        before = sb.calls(servers)
        with sb.hub_on(servers, Path(tmp), crms=crms) as hub:
            cpu, wall = sb.thread_cpu(), time.perf_counter()
            cycle = hub.sync_once()
            cpu, wall = sb.thread_cpu() - cpu, time.perf_counter() - wall
        after = sb.calls(servers)
    polled = sum(p.stored for p in cycle.polls)
    rows = [{"system": r.crm, "delivered": r.delivered, "dead": r.dead, "calls": after[r.crm] - before[r.crm],
             "per_interaction": round((after[r.crm] - before[r.crm]) / max(r.delivered, 1), 3)}
            for r in cycle.deliveries]
    rows.append({"system": "twilio", "delivered": polled, "dead": 0, "calls": after["twilio"] - before["twilio"],
                 "per_interaction": round((after["twilio"] - before["twilio"]) / max(polled, 1), 3)})
    delivered = sum(r.delivered for r in cycle.deliveries)
    return {"bench": "calls_per_interaction", "messages": messages, "customers": customers, "crms": list(crms),
            "rows": rows, "wall_s": round(wall, 1), "cpu_ms_per_interaction": round(1000 * cpu / max(messages, 1), 2),
            "cpu_ms_per_write": round(1000 * cpu / max(delivered, 1), 2), "peak_rss_mb": round(sb.peak_rss_mb()),
            "failures": cycle.failures}


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; the result (bench/run.py --smoke calls this in its own process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--crms", default=",".join(sb.CRMS), help="comma-separated: salesforce,zendesk,hubspot")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON line (for bench/run.py)")
    args = parser.parse_args(argv)
    configure("warning")
    return run(args.messages, args.customers, tuple(c for c in args.crms.split(",") if c), args.seed)


def main() -> None:
    result = cli()
    if "--json" in sys.argv:
        sb.emit(result, True)
        return
    print(f"messages={result['messages']} customers={result['customers']} (half known to each CRM) "
          f"crms={','.join(result['crms'])}")
    for row in result["rows"]:
        if row["system"] == "twilio":
            print(f"{'twilio':<10} polled={row['delivered']:<5} API calls={row['calls']:<5} "
                  f"({row['per_interaction']:.3f} per interaction)")
            continue
        print(f"{row['system']:<10} delivered={row['delivered']:<5} dead={row['dead']:<3} API calls={row['calls']:<5} "
              f"({row['per_interaction']:.3f} per interaction, mirror load included)")
    print(f"wall {result['wall_s']} s; hub CPU {result['cpu_ms_per_write']:.2f} ms per CRM write, "
          f"{result['cpu_ms_per_interaction']:.2f} ms per interaction (the cycle's thread; emulators excluded)")
    print(f"peak RSS {result['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
