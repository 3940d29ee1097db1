"""Benchmark of the first slice: API calls, CPU and memory per interaction.

Seeds the sandbox with N inbound SMS from C customers (half of them already
Salesforce contacts, phones in the CRM's messy formats), runs one sync cycle
and prints the figures users compare us on. Not a test: nothing is asserted.

    .venv/bin/python bench/slice.py --messages 2000 --customers 400
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.logs import configure
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
FORMATS = ("({a}) {b}-{c}", "+1 {a}.{b}.{c}", "{a}-{b}-{c}", "+1{a}{b}{c}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure("warning")
    rng = random.Random(args.seed)
    with running_sandbox(apis=("salesforce", "twilio")) as servers, tempfile.TemporaryDirectory() as tmp:
        sf: Any = servers["salesforce"].emulator
        tw: Any = servers["twilio"].emulator
        sf.set_api_limit(1_000_000)
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            sf.add_queue(name.replace("_", " "), name)
        tw.add_number(OURS)
        numbers = [f"415555{i:04d}" for i in range(1000, 1000 + args.customers)]
        for i, number in enumerate(numbers[: args.customers // 2]):
            shown = rng.choice(FORMATS).format(a=number[:3], b=number[3:6], c=number[6:])
            sf.insert("Contact", LastName=f"Customer {i}", Phone=shown, Tier__c=rng.choice(["Gold", "Silver"]))
        start = datetime.now(UTC) - timedelta(days=1)
        for i in range(args.messages):
            body = rng.choice(["Where is my order?", "I need a refund", "Thanks!", "Can you call me back?"])
            tw.receive_message(f"+1{rng.choice(numbers)}", OURS, body, at=start + timedelta(seconds=20 * i))
        sf_before, tw_before = sf.total_calls, tw.total_calls
        settings = write_sandbox_settings(Path(tmp), {api: s.url for api, s in servers.items()})
        config = load_config(settings)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with build_hub(config) as hub:
            cycle = hub.sync_once()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        delivered = sum(d.delivered for d in cycle.deliveries)
        sf_calls, tw_calls = sf.total_calls - sf_before, tw.total_calls - tw_before
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"messages={args.messages} customers={args.customers} delivered={delivered} "
              f"tasks={len(sf.records('Task'))} cases={len(sf.records('Case'))}")
        print(f"salesforce API calls: {sf_calls} ({sf_calls / delivered:.3f} per interaction)")
        print(f"twilio API calls:     {tw_calls} ({tw_calls / delivered:.3f} per interaction)")
        print(f"wall {wall:.2f} s, CPU {cpu:.2f} s ({1000 * cpu / delivered:.2f} ms CPU per interaction, "
              "emulators in the same process)")
        print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
