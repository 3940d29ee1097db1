"""Benchmark: API calls, CPU and memory per interaction, for each CRM.

Seeds the sandbox with N inbound SMS from C customers (half of them already
contacts in every CRM, phones in each CRM's messy formats), runs one sync
cycle delivering to every chosen CRM, and prints the figures users compare
us on. Not a test: nothing is asserted.

    .venv/bin/python bench/calls_per_interaction.py --messages 2000 --customers 400
    .venv/bin/python bench/calls_per_interaction.py --crms salesforce --messages 2000
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.logs import configure
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
FORMATS = ("({a}) {b}-{c}", "+1 {a}.{b}.{c}", "{a}-{b}-{c}", "+1{a}{b}{c}")
CRMS = ("salesforce", "zendesk", "hubspot")


def seed_contacts(servers: dict[str, Any], crms: tuple[str, ...], numbers: list[str], rng: random.Random) -> None:
    """Half the customers already exist in every chosen CRM, each phone written its own way."""
    emulators = {api: servers[api].emulator for api in crms}
    if "salesforce" in emulators:
        sf = emulators["salesforce"]
        sf.set_api_limit(1_000_000)
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            sf.add_queue(name.replace("_", " "), name)
    if "zendesk" in emulators:
        emulators["zendesk"].configure(rate_limit_per_minute=100_000)
    if "hubspot" in emulators:
        emulators["hubspot"].set_limits(ten_second_max=100_000, daily_max=10_000_000, search_per_second=100)
    for i, number in enumerate(numbers):
        shown = lambda: rng.choice(FORMATS).format(a=number[:3], b=number[3:6], c=number[6:])  # noqa: E731
        if "salesforce" in emulators:
            emulators["salesforce"].insert("Contact", LastName=f"Customer {i}", Phone=shown(),
                                           Tier__c=rng.choice(["Gold", "Standard"]))
        if "zendesk" in emulators:
            emulators["zendesk"].add_user(name=f"Customer {i}", phone=shown())
        if "hubspot" in emulators:
            emulators["hubspot"].add("contacts", lastname=f"Customer {i}", phone=shown())


def seed_traffic(servers: dict[str, Any], crms: tuple[str, ...], messages: int, customers: int,
                 rng: random.Random) -> Any:
    """`messages` inbound SMS over the last day from `customers` (half of them contacts already); returns Twilio."""
    numbers = [f"415555{i:04d}" for i in range(1000, 1000 + customers)]
    seed_contacts(servers, crms, numbers[: customers // 2], rng)
    twilio: Any = servers["twilio"].emulator
    twilio.add_number(OURS)
    twilio.clock.advance(120)  # Zendesk's export leaves out the last minute
    start = twilio.clock.now() - timedelta(days=1)
    for i in range(messages):
        body = rng.choice(["Where is my order?", "I need a refund", "Thanks!", "Can you call me back?"])
        twilio.receive_message(f"+1{rng.choice(numbers)}", OURS, body, at=start + timedelta(seconds=20 * i))
    return twilio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--crms", default=",".join(CRMS), help="comma-separated: salesforce,zendesk,hubspot")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    crms = tuple(c for c in args.crms.split(",") if c)
    configure("warning")
    rng = random.Random(args.seed)
    with running_sandbox(apis=(*crms, "twilio")) as servers, tempfile.TemporaryDirectory() as tmp:
        twilio = seed_traffic(servers, crms, args.messages, args.customers, rng)
        before = {api: s.emulator.total_calls for api, s in servers.items()}
        settings = write_sandbox_settings(Path(tmp), {api: s.url for api, s in servers.items()},
                                          enabled=(*crms, "twilio"))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with build_hub(load_config(settings)) as hub:
            cycle = hub.sync_once()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(f"messages={args.messages} customers={args.customers} (half known to each CRM) crms={','.join(crms)}")
        for report in cycle.deliveries:
            calls = servers[report.crm].emulator.total_calls - before[report.crm]
            print(f"{report.crm:<10} delivered={report.delivered:<5} dead={report.dead:<3} API calls={calls:<5} "
                  f"({calls / max(report.delivered, 1):.3f} per interaction, mirror load included)")
        tw_calls = twilio.total_calls - before["twilio"]
        print(f"{'twilio':<10} polled={cycle.polls[0].stored:<5} API calls={tw_calls:<5} "
              f"({tw_calls / max(cycle.polls[0].stored, 1):.3f} per interaction)")
        delivered = sum(r.delivered for r in cycle.deliveries)
        print(f"wall {wall:.1f} s; CPU {cpu:.1f} s = {1000 * cpu / max(delivered, 1):.2f} ms per CRM write "
              "(emulators run in the same process)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
