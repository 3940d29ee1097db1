"""How long `crmhub report` (and a /metrics refresh of the support gauges) takes over a long history.

Fills a store with `--days` of synthetic history (ledger rows, routing
decisions, outbox rows, cases and replies written straight into the tables,
as the engine would have left them), then times the report of the last 7
days by channel, queue, CRM and day. The cost should follow the window, not
the history: run it with --days 30 and --days 300 and compare.

    .venv/bin/python bench/report_figures.py --days 300 --per-day 500
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crmhub.report.figures import compute
from crmhub.report.hours import BusinessHours
from crmhub.store import open_store
from crmhub.store.schema import LedgerRow, OutboxRow, ReplyRow, RouteDecisionRow, SupportCaseRow

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CHANNELS = ("sms", "whatsapp", "x_dm")
QUEUES = ("support", "billing", "vip")


def fill(url: str, days: int, per_day: int, seed: int = 1) -> None:
    """`per_day` messages a day (a case for every fourth, a reply for every third) over `days` days."""
    rng = random.Random(seed)
    store = open_store(url)
    ledger, decisions, outbox, cases, replies = [], [], [], [], []
    n = 0
    for day in range(days):
        for i in range(per_day):
            n += 1
            at = NOW - timedelta(days=day, seconds=rng.randrange(86400))
            channel, queue = rng.choice(CHANNELS), rng.choice(QUEUES)
            conversation = f"{channel}:ours:{n // 4}"
            ledger.append({"id": n, "channel": channel, "external_id": f"m{n}", "direction": "inbound",
                           "conversation_key": conversation, "sender_kind": "phone", "sender_value": f"+1{n}",
                           "recipient_kind": "phone", "recipient_value": "+1", "occurred_at": at, "ingested_at": at,
                           "processed_at": at, "raw": {}, "media": []})
            decisions.append({"interaction_id": n, "rule": "default", "targets": {"salesforce": {"queue": queue}},
                              "tried": [], "decided_at": at})
            outbox.append({"idempotency_key": f"k{n}", "interaction_id": n, "crm": "salesforce", "status": "done",
                           "next_attempt_at": at, "created_at": at, "done_at": at})
            if n % 4 == 0:
                closed = at + timedelta(hours=rng.randrange(1, 48)) if rng.random() < 0.9 else None
                cases.append({"crm": "salesforce", "conversation_key": conversation, "seq": 1, "channel": channel,
                              "queue": queue, "record_id": f"c{n}", "first_message_at": at, "opened_at": at,
                              "closed_at": closed, "reopens": int(rng.random() < 0.1)})
            if n % 3 == 0:
                sent = at + timedelta(minutes=rng.randrange(5, 600))
                replies.append({"crm": "salesforce", "reply_ref": f"r{n}", "case_id": f"c{n - n % 4}",
                                "conversation_key": conversation, "channel": channel, "to_kind": "phone",
                                "to_address": "+1", "from_kind": "phone", "from_address": "+1", "text": "",
                                "status": "delivered" if rng.random() < 0.95 else "failed", "next_attempt_at": sent,
                                "written_at": sent, "created_at": sent, "sent_at": sent, "status_at": sent})
    with store.transaction() as session:
        for table, rows in ((LedgerRow, ledger), (RouteDecisionRow, decisions), (OutboxRow, outbox),
                            (SupportCaseRow, cases), (ReplyRow, replies)):
            session.execute(table.__table__.insert(), rows)  # type: ignore[attr-defined]  # a mapped table
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=500)
    parser.add_argument("--url", help="a store URL (default: a new SQLite file)")
    args = parser.parse_args()
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'report.db'}"
    fill(url, args.days, args.per_day)
    store = open_store(url)
    hours = BusinessHours(frozenset({"mon", "tue", "wed", "thu", "fri"}), datetime.min.time().replace(hour=8),
                          datetime.min.time().replace(hour=18), UTC)  # type: ignore[arg-type]  # UTC is a tzinfo
    print(f"history: {args.days} days x {args.per_day} messages")
    for by in ("channel", "queue", "crm", "day"):
        began = time.perf_counter()
        with store.transaction() as session:
            report = compute(session, since=NOW - timedelta(days=7), now=NOW, by=(by,), crms=("salesforce",),
                             reopen_window=timedelta(days=3), hours=hours)
        print(f"  report by {by:8s} {time.perf_counter() - began:6.3f} s  ({report.totals['cases']} cases, "
              f"{report.totals['inbound']} messages in the window)")
    store.close()


if __name__ == "__main__":
    main()
