"""The report's volume and case figures on generated traffic equal those worked out from the plan alone.

A seeded plan's SMS, WhatsApp and call traffic is replayed into the Twilio
emulator in six-hour steps, with crmhub syncing into Salesforce after each.
The expected figures come from the plan's events (which ones the replay
delivered and which are valid), never from crmhub's tables: messages per
channel and day, and one case per channel conversation (nobody closes one).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.report.build import report_for
from crmhub.sandbox import EmulatorServer, SandboxClock
from crmhub.sandbox.replay import replay_events, seed_crms
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.traffic import generate

SEED, PERSONS, DAYS = 5, 12, 3
STEP = timedelta(hours=6)
TWILIO_CHANNELS = ("sms", "whatsapp", "call")


def test_volume_and_cases_per_channel_and_day_are_the_plans(salesforce_sandbox: EmulatorServer,
                                                            twilio_sandbox: EmulatorServer,
                                                            sandbox_clock: SandboxClock, tmp_path: Path) -> None:
    start = sandbox_clock.now().replace(second=0, microsecond=0) - timedelta(days=DAYS + 1)
    plan = generate(SEED, persons=PERSONS, days=DAYS, start=start)
    emus: dict[str, Any] = {"salesforce": salesforce_sandbox.emulator, "twilio": twilio_sandbox.emulator}
    emus["salesforce"].set_api_limit(1_000_000)
    seed_crms(plan, emus)
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url,
                                                 "twilio": twilio_sandbox.url})
    ours = plan.endpoints
    settings.write_text(settings.read_text()
                        .replace("numbers: ['+14155550100']", f"numbers: ['{ours.sms_number}']")
                        .replace("whatsapp_senders: ['+14155550199']", f"whatsapp_senders: ['{ours.whatsapp_number}']"))
    replayed: set[str] = set()
    with build_hub(load_config(settings)) as hub:
        previous = None
        moment = plan.start
        while moment < plan.end + STEP:
            seed_crms(plan, emus, until=moment, start_after=previous or plan.start - timedelta(seconds=1))
            replayed |= set(replay_events(plan, emus, until=moment, start_after=previous).ids)
            cycle = hub.sync_once()
            assert not cycle.failures, cycle.failures
            previous, moment = moment, moment + STEP
        report = report_for(hub.config, hub.store, since=plan.start - timedelta(days=1),
                            now=sandbox_clock.now() + timedelta(minutes=1), by=("channel", "day"))

    # What Twilio reported: the replayed events, less those it cannot carry (empty, junk time). One to a number
    # of the account that is not in settings ("unknown_address") is still a message the account received.
    delivered = [e for e in plan.iter_events() if e.event_id in replayed and e.channel in TWILIO_CHANNELS
                 and (e.valid or e.reason == "unknown_address")]
    assert delivered, "the plan must give the test something to count"
    volume = Counter((e.channel, e.occurred_at.date().isoformat(), e.direction) for e in delivered)
    conversations: dict[tuple[str, str, str], str] = {}  # (channel, ours, customer) -> day of its first message
    for event in delivered:
        ours = event.to_addr if event.direction == "inbound" else event.from_addr
        conversations.setdefault((event.channel, ours, event.their_key), event.occurred_at.date().isoformat())
    cases = Counter((channel, day) for (channel, _, _), day in conversations.items())

    got_volume = Counter({(channel, day, direction): figures[direction]
                          for (channel, day), figures in report.rows.items()
                          for direction in ("inbound", "outbound") if figures[direction]})
    assert got_volume == volume
    assert Counter({key: figures["cases"] for key, figures in report.rows.items() if figures["cases"]}) == cases
    assert report.totals["backlog_open"] == len(conversations)  # no agent closed any
    assert report.totals["reopen_rate"] is None and report.totals["fcr_rate"] is None
