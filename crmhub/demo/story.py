"""`crmhub demo`: the whole product on the sandbox, told in seven short acts.

It starts the Salesforce, Twilio, X and Meta emulators and the sandbox mail
server on free ports, seeds a small org, then lets customers write in over
SMS, WhatsApp, a phone call, an X mention, Facebook Messenger and email. Each act runs real sync cycles through the real SDKs and the
same commands ops would type (`crmhub deadletters`, `conflicts`, `explain`,
`status`), so what the demo shows is what the product does:

1. everything lands, routed to different queues; bad input is dead-lettered;
2. the admin fixes a missing queue and replays the dead letter;
3. a customer states her X handle: crmhub only suggests the link (a
   message is no proof) and notes it on her case; once an admin confirms
   it, her two identities merge and the X history moves onto her Contact;
4. agents answer in Salesforce: one customer gets an SMS, another a
   Messenger message, inside Meta's 24-hour window;
5. a run over the same items writes nothing twice;
6. an agent closes two cases, the customers answer crmhub's satisfaction
   question, and `crmhub report` prints the support figures and writes the
   HTML report, CSAT included;
7. Jane emails support; crmhub reads the mailbox by IMAP, knows her by the
   address on her Contact, routes it to Billing, and the agent's answer goes
   back by SMTP, threaded to her email, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from ruamel.yaml import YAML

from crmhub.app import Cycle, Hub, build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.demo import cast
from crmhub.demo.org import seed_org
from crmhub.demo.tables import calls_line, landed_table, sent_table
from crmhub.ops.deadletters import list_open
from crmhub.ops.links import list_links
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.runner import running_sandbox
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.sandbox.x.models import DEFAULT_ACCOUNT_ID
from crmhub.status import print_cycle
from crmhub.store.links import LinkStatus

DEMO_DIR = Path(".crmhub/demo")
APIS = ("salesforce", "twilio", "x", "meta", "mail")
CHANNELS_ON = ("salesforce", "twilio", "x", "meta", "email")  # what the demo's settings switch on


def run_demo(*, keep_state: bool = False, directory: Path = DEMO_DIR, console: Console | None = None) -> None:
    """Run the story; every table and listing is read back from the emulators and the state store."""
    console = console or Console()
    if not keep_state:
        for stale in directory.glob("crmhub.db*"):
            stale.unlink()
    with running_sandbox(apis=APIS) as servers:
        settings = tell(servers, directory, console)
    console.print("\n[bold]Where to look next[/]")
    for command, what in ((f"crmhub status --config {settings}", "cursors, ledger, outbox, dead letters"),
                          (f"crmhub run --config {settings}", "the same as a service (README, Operations)"),
                          ("crmhub sandbox", "the emulators and the mail server on 8700-8708, to explore"),
                          ("docs/configuration.md", "every setting, with its default")):
        console.print(f"  {command}\n      {what}", highlight=False)


def tell(servers: Mapping[str, EmulatorServer], directory: Path, console: Console) -> Path:
    """Seed the running emulators, write the settings, tell the six acts; returns the settings path."""
    start = datetime.now(UTC) - timedelta(hours=1)
    seed(servers, start)
    urls = {api: servers[api].url for api in APIS}
    urls |= {f"mail-{name}": url for name, url in servers["mail"].listener_urls.items()}
    settings = write_sandbox_settings(directory, urls, enabled=CHANNELS_ON, surveys=True)
    _route_social_to(settings.parent / "mappings" / "routing.yaml", cast.LATE_QUEUE)
    console.rule("[bold]crmhub demo[/]: SMS, WhatsApp, calls, X, Messenger and email -> Salesforce, on the local "
                 "sandbox")
    console.print(f"sandbox: {', '.join(f'{api} {url}' for api, url in urls.items())}")
    console.print(f"settings: {settings}   state: {directory / 'crmhub.db'}")
    with build_hub(load_config(settings)) as hub:
        Story(hub, servers, settings, console, start).tell()
    _epilogue(servers, console)
    return settings


def seed(servers: Mapping[str, EmulatorServer], start: datetime) -> None:
    """The org (`seed_org`: three queues, two Contacts, a Lead, an agent, our numbers) and act 1's inbound items."""
    seed_org({api: server.emulator for api, server in servers.items()})
    twilio: Any = servers["twilio"].emulator
    for text in cast.FIRST_TEXTS:
        twilio.receive_message(text.sender, text.to, text.body, at=start + timedelta(minutes=text.minutes))
    twilio.add_call(cast.BOB_PHONE, cast.OUR_NUMBER, status="no-answer", duration=0,
                    start=start + timedelta(minutes=cast.BOB_CALL_MINUTES))
    x: Any = servers["x"].emulator
    jane = x.add_user(cast.JANE_ON_X, "Jane D")
    x.post_mention(jane, cast.JANE_MENTION, at=start + timedelta(minutes=cast.JANE_MENTION_MINUTES))
    meta: Any = servers["meta"].emulator
    sam = meta.add_person("messenger", cast.SAM_ON_MESSENGER)
    meta.inbound("messenger", sam, cast.SAM_MESSAGE, at=start + timedelta(minutes=cast.SAM_MESSAGE_MINUTES))


class Story:
    """The acts, in order; each says what happens, runs it, and shows what crmhub reported."""

    def __init__(self, hub: Hub, servers: Mapping[str, EmulatorServer], settings: Path, console: Console,
                 start: datetime) -> None:
        self.hub = hub
        self.salesforce: Any = servers["salesforce"].emulator
        self.twilio: Any = servers["twilio"].emulator
        self.mail: Any = servers["mail"].emulator
        self.salesforce_url = servers["salesforce"].url
        self.settings = settings
        self.console = console
        self.start = start

    def tell(self) -> None:
        self.act_one()
        self.act_two()
        self.act_three()
        self.act_four()
        self.act_five()
        self.act_six()
        self.act_seven()

    def act_one(self) -> None:
        self._act(1, "Customers write in",
                  "Jane (a Gold customer) and Bob text, Bob also calls, Ana writes on WhatsApp, a stranger asks a "
                  "question, someone sends an empty SMS, @JaneOnX, whom nobody knows yet, mentions us on X, and "
                  f"{cast.SAM_ON_MESSENGER} asks on Facebook Messenger.")
        self._sync()
        self._command("deadletters", "list")
        self.console.print("Two dead letters, nothing else held up: the empty SMS cannot become history, and "
                           f"routing.yaml sends X mentions to {cast.LATE_QUEUE}, which the org does not have yet.")

    def act_two(self) -> None:
        self._act(2, "The admin creates the queue and replays",
                  f"An admin adds {cast.LATE_QUEUE} in Salesforce and replays the dead letter; the next sync "
                  "delivers it. Nothing was lost while the queue was missing.")
        self.salesforce.add_queue(cast.LATE_QUEUE.replace("_", " "), cast.LATE_QUEUE)
        with self.hub.store.transaction() as session:
            [refused] = [d.id for d in list_open(session, source="deliver")]
        self._command("deadletters", "replay", str(refused))
        self._sync()

    def act_three(self) -> None:
        self._act(3, "Two identities, one customer",
                  f"Jane texts again and says she is @{cast.JANE_ON_X} on X. Anyone could write that, so crmhub "
                  "only suggests the link and leaves an internal note on Jane's case for the agent.")
        text = cast.JANE_STATES_HANDLE
        self.twilio.receive_message(text.sender, text.to, text.body, at=self.start + timedelta(minutes=text.minutes))
        self._sync()
        self._command("links", "list", "--status", "pending")
        self.console.print("The agent checks with Jane and the admin confirms. crmhub joins the two identities, "
                           "moves the X history onto her own Contact, and flags the twin Contact it had created "
                           "for the handle for an admin to decide.", highlight=False)
        with self.hub.store.transaction() as session:
            [suggestion] = [view.id for view in list_links(session, LinkStatus.PENDING)]
        self._command("links", "confirm", str(suggestion))
        self._sync()
        self.console.print("One write: her X mention's Task and Case moved onto her Contact.")
        self._command("conflicts", "list")

    def act_four(self) -> None:
        self._act(4, "An agent answers in Salesforce",
                  f"{cast.AGENT[1]} posts a public comment on Jane's case and one on Sam's. crmhub sends Jane's by "
                  "SMS, from the number she wrote to, and Sam's on Messenger as the Page, inside Meta's 24-hour "
                  "window; each once.")
        self._agent_comment(self._case_of(cast.FIRST_TEXTS[0].body), cast.AGENT_REPLY)
        self._agent_comment(self._case_of(cast.SAM_MESSAGE), cast.SAM_REPLY)
        self._sync()

    def act_five(self) -> None:
        self._act(5, "Run it again", "A restart re-reads the same items; nothing may be written twice.")
        self._sync()
        self.console.print("The one item routed is the agent's reply, read back from Twilio: it is history for "
                           "the other CRMs, never written back to the Salesforce it came from.")
        jane_first = self._ledger_ref(cast.FIRST_TEXTS[0].body)
        self._command("explain", jane_first)

    def act_six(self) -> None:
        self._act(6, "What the support lead reads",
                  f"{cast.AGENT[1]} closes Jane's and Bob's cases. crmhub texts each of them one short question; "
                  "their answers land on the case in Salesforce (Crmhub_CSAT__c) and open no new case. crmhub "
                  "holds every message, reply, case state and answer, so it reports the figures support leads "
                  "staff by: volume, first response, resolution, reopens, backlog, reply failures, CSAT.")
        for text in cast.FIRST_TEXTS[:2]:
            self._agent_close(self._case_of(text.body))
        self._sync()
        answered = self.twilio.clock.now()  # Twilio's time (a shared emulator's may run ahead of the wall's)
        for phone, answer in cast.SURVEY_ANSWERS:
            self.twilio.receive_message(phone, cast.OUR_NUMBER, answer, at=answered)
        self._sync()
        self._command("report", "--since", "1d", "--html", str(self.settings.parent / "report.html"))

    def act_seven(self) -> None:
        self._act(7, "Email, through the same path",
                  f"Jane emails {cast.SUPPORT_EMAIL} about her invoice. crmhub reads the mailbox by IMAP, knows "
                  "her by the address on her Contact, and opens a case where routing.yaml sends invoices; "
                  f"{cast.AGENT[1]} answers on it, and crmhub sends the answer by SMTP, threaded to her email.")
        asked = self.mail.receive_email(f"Jane Doe <{cast.JANE_EMAIL}>", cast.JANE_EMAIL_TEXT,
                                        subject=cast.JANE_EMAIL_SUBJECT)
        self._sync()
        [task] = [t for t in self.salesforce.records("Task") if cast.JANE_EMAIL_TEXT in (t.get("Description") or "")]
        self._agent_comment(str(task["WhatId"]), cast.EMAIL_REPLY)
        self._sync()
        for sent in self.mail.outbound():
            self.console.print(f"Sent by SMTP: to {', '.join(sent['rcpt_tos'])}, \"{sent['subject']}\", "
                               f"In-Reply-To {sent['in_reply_to']} (her {asked['id']})", highlight=False)

    # ---- helpers -----------------------------------------------------------------------------------
    def _act(self, number: int, title: str, what: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{number}. {title}[/]", align="left")
        self.console.print(what, highlight=False)

    def _sync(self) -> Cycle:
        self.console.print("\n[bold]$ crmhub sync[/]")
        cycle = self.hub.sync_once()
        print_cycle(cycle, self.console)
        return cycle

    def _command(self, *args: str) -> None:
        """Run a real `crmhub` command in-process, as ops would type it."""
        from crmhub.cli import app

        self.console.print(f"\n[bold]$ crmhub {' '.join(args)}[/]")
        app([*args, "--config", str(self.settings)], standalone_mode=False)

    def _case_of(self, body: str) -> str:
        [task] = [t for t in self.salesforce.records("Task") if t.get("Description") == body]
        return str(task["WhatId"])

    def _ledger_ref(self, body: str) -> str:
        """`sms:<sid>` of the inbound message with this text (what `crmhub explain` takes)."""
        [message] = [m for m in self.twilio.snapshot()["messages"].values()
                     if m["body"] == body and m["direction"] == "inbound"]
        return f"sms:{message['sid']}"

    def _agent(self) -> Any:
        """The agent's Salesforce session, through Salesforce's own API, as a logged-in human user works."""
        from simple_salesforce.api import Salesforce

        return Salesforce(instance_url=self.salesforce_url, session_id=self.salesforce.issue_token(cast.AGENT[0]),
                          session=build_session(base_url=self.salesforce_url))

    def _agent_comment(self, case_id: str, body: str) -> None:
        self._agent().CaseComment.create({"ParentId": case_id, "CommentBody": body, "IsPublished": True})

    def _agent_close(self, case_id: str) -> None:
        self._agent().Case.update(case_id, {"Status": "Closed"})


def _epilogue(servers: Mapping[str, EmulatorServer], console: Console) -> None:
    console.print()
    console.rule("[bold]What the systems now hold[/] (read back from the emulators)", align="left")
    console.print(landed_table(servers["salesforce"].emulator))
    console.print(sent_table(servers["twilio"].emulator, servers["x"].emulator, DEFAULT_ACCOUNT_ID,
                             servers["meta"].emulator, servers["mail"].emulator))
    console.print(calls_line({api: servers[api] for api in APIS if api != "mail"}))  # mail is not billed per call


def _route_social_to(routing: Path, queue: str) -> None:
    """The admin's edit: X mentions get their own Salesforce queue (the org does not have it yet)."""
    yaml = YAML()
    data = yaml.load(routing.read_text())
    data["queues"]["salesforce"]["social"]["queue"] = queue
    with routing.open("w") as out:
        yaml.dump(data, out)
