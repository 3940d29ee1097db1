"""Benchmark: the naive per-message recipe beside crmhub, on the same traffic in the same run.

The recipe most integrations start with, per message and per CRM: search
the contact by phone, create it if missing, find the customer's open case,
create it or add to it, and log the message as an activity. It runs with
the same SDKs (simple-salesforce, zenpy, hubspot-api-client) against a
fresh copy of the same emulators, seeded alike; crmhub runs one sync cycle
on its own copy. Calls are counted by the emulators; CPU is the thread
running each side (`time.thread_time()`, the emulators serve from other
threads). Not a test: nothing is asserted.

    .venv/bin/python bench/naive.py --messages 300 --customers 100
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _sandbox as sb
from hubspot import HubSpot
from simple_salesforce import Salesforce
from urllib3.util.retry import Retry
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket, User

from crmhub.connectors._http import build_session
from crmhub.logs import configure
from crmhub.sandbox.settings import SECRETS_DIR

Message = tuple[str, str]  # (customer's E.164 phone, text)


def _secret(name: str) -> str:
    return (SECRETS_DIR / name).read_text().strip()


class NaiveSalesforce:
    """SOQL for the Contact and the open Case, then one create (or update) per record."""

    def __init__(self, url: str) -> None:
        self.sf = Salesforce(session=build_session(base_url=url), consumer_key=_secret("salesforce-client-id"),
                             consumer_secret=_secret("salesforce-client-secret"), domain="sandbox.my")

    def handle(self, phone: str, text: str) -> None:
        found = self.sf.query(f"SELECT Id FROM Contact WHERE Phone = '{phone}' LIMIT 1")["records"]
        contact = found[0]["Id"] if found else self.sf.Contact.create({"LastName": phone, "Phone": phone})["id"]
        cases = self.sf.query(f"SELECT Id FROM Case WHERE ContactId = '{contact}' AND Status != 'Closed' "
                              "LIMIT 1")["records"]
        if cases:
            case = cases[0]["Id"]
            self.sf.Case.update(case, {"Status": "Working"})
        else:
            case = self.sf.Case.create({"Subject": f"SMS conversation with {phone}", "Origin": "SMS",
                                        "ContactId": contact, "Status": "New"})["id"]
        self.sf.Task.create({"Subject": f"SMS inbound from {phone}", "Description": text, "WhoId": contact,
                             "WhatId": case, "Status": "Completed"})


class NaiveZendesk:
    """User search by phone, ticket search by requester, then a ticket create or a comment."""

    def __init__(self, url: str) -> None:
        self.zd = Zenpy(subdomain="sandbox", email="agent@sandbox.zendesk.test", token=_secret("zendesk-token"),
                        session=build_session(base_url=url), disable_cache=True)

    def handle(self, phone: str, text: str) -> None:
        users = list(self.zd.users.search(query=f"phone:{phone}"))
        user = users[0] if users else self.zd.users.create(User(name=phone, phone=phone))
        tickets = list(self.zd.search(type="ticket", requester_id=user.id, status_less_than="solved"))
        if tickets:
            ticket = tickets[0]
            ticket.comment = Comment(body=text, public=False)
            self.zd.tickets.update(ticket)
        else:
            self.zd.tickets.create(Ticket(subject=f"SMS conversation with {phone}", requester_id=user.id,
                                          comment=Comment(body=text, public=False)))


class NaiveHubSpot:
    """Contact search, open-ticket search, then creates with their associations."""

    def __init__(self, url: str) -> None:
        client = HubSpot(access_token=_secret("hubspot-token"), host=url, base_url=url, retry=Retry(total=0))
        self.search, self.basic = client.crm.objects.search_api, client.crm.objects.basic_api

    def _find(self, object_type: str, filters: list[dict[str, str]]) -> str | None:
        found = self.search.do_search(object_type, {"filterGroups": [{"filters": filters}], "limit": 1})
        return found.results[0].id if found.results else None

    def _create(self, object_type: str, properties: dict[str, str], to: Sequence[tuple[str, int]] = ()) -> str:
        associations = [{"to": {"id": record}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                          "associationTypeId": type_id}]} for record, type_id in to]
        return str(self.basic.create(object_type, {"properties": properties, "associations": associations}).id)

    def handle(self, phone: str, text: str) -> None:
        contact = (self._find("contacts", [{"propertyName": "phone", "operator": "EQ", "value": phone}])
                   or self._create("contacts", {"lastname": phone, "phone": phone}))
        ticket = self._find("tickets", [{"propertyName": "associations.contact", "operator": "EQ", "value": contact},
                                        {"propertyName": "hs_pipeline_stage", "operator": "EQ", "value": "1"}])
        if ticket is None:
            ticket = self._create("tickets", {"subject": f"SMS conversation with {phone}", "hs_pipeline": "0",
                                              "hs_pipeline_stage": "1"}, [(contact, 16)])
        self._create("communications", {"hs_communication_channel_type": "SMS", "hs_communication_logged_from": "CRM",
                                        "hs_communication_body": text,
                                        "hs_timestamp": datetime.now(UTC).isoformat()},
                     [(contact, 81), (ticket, 83)])


NAIVE: dict[str, Callable[[str], Any]] = {"salesforce": NaiveSalesforce, "zendesk": NaiveZendesk,
                                          "hubspot": NaiveHubSpot}


def traffic(messages: int, customers: int, seed: int) -> tuple[list[str], list[str]]:
    """(senders in order, the half of the customers already known to every CRM), as ten-digit numbers."""
    rng = random.Random(seed)
    numbers = sb.phones(1000, customers)
    return [rng.choice(numbers) for _ in range(messages)], numbers[: customers // 2]


def crmhub_side(senders: Sequence[str], known: Sequence[str], seed: int) -> dict[str, Any]:
    """crmhub's calls per CRM and CPU for the traffic: one sync cycle on a fresh store."""
    rng = random.Random(seed)
    with sb.sandbox() as servers, tempfile.TemporaryDirectory(prefix="crmhub-bench-") as tmp:
        sb.seed_contacts(servers, sb.CRMS, known, rng)
        clock = servers["twilio"].emulator.clock
        clock.advance(120)  # Zendesk's export leaves out the last minute
        sb.send_messages(servers, senders, rng, start=clock.now() - timedelta(days=1))
        before = sb.calls(servers)
        with sb.hub_on(servers, Path(tmp)) as hub:
            cpu = sb.thread_cpu()
            cycle = hub.sync_once()
            cpu = sb.thread_cpu() - cpu
        after = sb.calls(servers)
    delivered = {r.crm: r.delivered for r in cycle.deliveries}
    if cycle.failures or any(delivered.get(crm) != len(senders) for crm in sb.CRMS):
        raise SystemExit(f"crmhub delivered {delivered} of {len(senders)} per CRM; failures: {cycle.failures}")
    return {"calls": {crm: after[crm] - before[crm] for crm in sb.CRMS}, "cpu": cpu}


def naive_side(senders: Sequence[str], known: Sequence[str], seed: int) -> dict[str, Any]:
    """The recipe's calls per CRM and CPU for the same traffic, on emulators seeded the same way."""
    rng = random.Random(seed)
    with sb.sandbox() as servers:
        sb.seed_contacts(servers, sb.CRMS, known, rng)
        clients = {crm: NAIVE[crm](servers[crm].url) for crm in sb.CRMS}
        text = random.Random(seed)
        before = sb.calls(servers)
        cpu = sb.thread_cpu()
        for number in senders:
            body = text.choice(sb.BODIES)
            for client in clients.values():
                client.handle(f"+1{number}", body)
        cpu = sb.thread_cpu() - cpu
        after = sb.calls(servers)
    return {"calls": {crm: after[crm] - before[crm] for crm in sb.CRMS}, "cpu": cpu}


def run(messages: int, customers: int, seed: int = 1) -> dict[str, Any]:
    senders, known = traffic(messages, customers, seed)
    ours, naive = crmhub_side(senders, known, seed), naive_side(senders, known, seed)
    rows = [{"crm": crm, "naive_calls": naive["calls"][crm], "crmhub_calls": ours["calls"][crm],
             "naive_per_message": round(naive["calls"][crm] / messages, 3),
             "crmhub_per_message": round(ours["calls"][crm] / messages, 3),
             "ratio": round(naive["calls"][crm] / max(ours["calls"][crm], 1), 1)} for crm in sb.CRMS]
    return {"bench": "naive", "messages": messages, "customers": customers, "rows": rows,
            "naive_cpu_ms_per_message": round(1000 * naive["cpu"] / messages, 2),
            "crmhub_cpu_ms_per_message": round(1000 * ours["cpu"] / messages, 2),
            "cpu_ratio": round(naive["cpu"] / max(ours["cpu"], 1e-9), 2)}


def cli(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the command line and run; the result (bench/run.py --smoke calls this in its own process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--customers", type=int, default=100, help="half of them already contacts in every CRM")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON line (for bench/run.py)")
    args = parser.parse_args(argv)
    configure("warning")
    return run(args.messages, args.customers, args.seed)


def main() -> None:
    sb.emit(cli(), "--json" in sys.argv)


if __name__ == "__main__":
    main()
