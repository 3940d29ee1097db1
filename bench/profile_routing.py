"""Profile routing alone: SQL statements and CPU per interaction of `process_pending` (a dev aid, seconds).

    .venv/bin/python bench/profile_routing.py --messages 2000 --customers 400 [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.logs import configure
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sync.process import process_pending

from calls_per_interaction import CRMS, OURS, seed_contacts  # type: ignore[import-not-found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--warm", action="store_true", help="route the same traffic once first, measure a second lot")
    args = parser.parse_args()
    configure("warning")
    rng = random.Random(1)
    with running_sandbox(apis=(*CRMS, "twilio")) as servers, tempfile.TemporaryDirectory() as tmp:
        numbers = [f"415555{i:04d}" for i in range(1000, 1000 + args.customers)]
        seed_contacts(servers, CRMS, numbers[: args.customers // 2], rng)
        twilio: Any = servers["twilio"].emulator
        twilio.add_number(OURS)
        twilio.clock.advance(120)
        start = twilio.clock.now() - timedelta(days=1)
        for i in range(args.messages):
            body = rng.choice(["Where is my order?", "I need a refund", "Thanks!", "Can you call me back?"])
            twilio.receive_message(f"+1{rng.choice(numbers)}", OURS, body, at=start + timedelta(seconds=20 * i))
        settings = write_sandbox_settings(Path(tmp), {api: s.url for api, s in servers.items()},
                                          enabled=(*CRMS, "twilio"))
        with build_hub(load_config(settings)) as hub:
            for poll in hub.polls().values():
                poll()
            for name in hub.crms:
                hub.refresh_mirror(name)
            if args.warm:
                process_pending(hub.store, hub.router, list(hub.crms), now=hub.clock(), identity=hub.identity)
                for i in range(args.messages):
                    body = rng.choice(["Where is my order?", "I need a refund", "Thanks!", "Can you call me back?"])
                    twilio.receive_message(f"+1{rng.choice(numbers)}", OURS, body,
                                           at=start + timedelta(hours=12, seconds=10 * i))
                for poll in hub.polls().values():
                    poll()
            statements = [0]
            event.listen(hub.store.engine, "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
            profiler = cProfile.Profile() if args.profile else None
            cpu0 = time.thread_time()
            if profiler:
                profiler.enable()
            done = process_pending(hub.store, hub.router, list(hub.crms), now=hub.clock(), identity=hub.identity,
                                   reopen_window=hub.config.settings.threads.reopen_window)
            if profiler:
                profiler.disable()
            cpu = time.thread_time() - cpu0
            print(f"routed {done}: {statements[0] / done:.2f} SQL statements and {1000 * cpu / done:.3f} ms CPU "
                  "per interaction")
            if profiler:
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
