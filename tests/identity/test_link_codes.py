"""`statements: confirm_by_code`: a claimed phone gets a one-time code by SMS; answered from it, the claim joins.

The hub runs against the Salesforce and Twilio emulators. A stranger texts
that Jane's number is theirs too; crmhub texts a code to Jane's number
through the replies path, once even when the answer to the send is lost.
Only that code, from that phone, before it expires, joins the two: a wrong
code or an expired one does not. The code is never in a log or in the CRM.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select
from structlog.testing import capture_logs

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.store.schema import LinkCodeRow, LinkSuggestionRow
from tests.test_replies import Clock, sent_messages, settings_for

OURS = "+14155550100"
STRANGER = "+14155550124"
JANE = "+14155550177"  # not one of the sandbox settings own numbers (+14155550199 is our WhatsApp sender)


@dataclass
class Kit:
    hub: Hub
    sf: Any
    tw: Any
    clock: Clock
    jane: str  # her Contact

    def say(self, sender: str, text: str) -> None:
        self.tw.receive_message(sender, OURS, text, at=self.tw.clock.now() - timedelta(seconds=30))

    def sync(self) -> None:
        cycle = self.hub.sync_once()
        assert not cycle.failures, cycle.failures

    def suggestion(self) -> tuple[str, str | None]:
        with self.hub.store.transaction() as session:
            [row] = session.scalars(select(LinkSuggestionRow))
            return row.status, row.decided_by

    def code_statuses(self) -> list[str]:
        with self.hub.store.transaction() as session:
            return list(session.scalars(select(LinkCodeRow.status).order_by(LinkCodeRow.id)))

    def the_code(self) -> str:
        [message] = sent_messages(self.tw, to=JANE)
        assert message["from"] == OURS
        found = re.search(r"\b(\d{6})\b", message["body"])
        assert found, "the SMS carries a six-digit code"
        return found.group(1)

    def stranger_holders(self) -> set[str]:
        """The records the stranger's first message (a Task and its Case) sit on."""
        [task] = [t for t in self.sf.records("Task") if "my other number" in (t.get("Description") or "")]
        [case] = [c for c in self.sf.records("Case") if c["Id"] == task["WhatId"]]
        return {task["WhoId"], case["ContactId"]}


@pytest.fixture
def kit(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Kit]:
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
        sf.add_queue(name, name)
    jane = sf.insert("Contact", LastName="Doe", FirstName="Jane", Phone=JANE)
    tw.add_number(OURS)
    tw.clock.advance(3600)  # the channel's clock runs ahead of crmhub's: a code expires by crmhub's clock only
    settings = settings_for(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url},
                            ("salesforce", "twilio"))
    identities = tmp_path / "mappings" / "identities.yaml"
    yaml = YAML()
    tree = yaml.load(identities.read_text())
    tree["statements"] = "confirm_by_code"
    with identities.open("w") as out:
        yaml.dump(tree, out)
    clock = Clock()
    with build_hub(load_config(settings), clock=clock) as hub:
        yield Kit(hub, sf, tw, clock, jane)


def _claim(kit: Kit) -> None:
    kit.say(STRANGER, f"Hi, my other number is {JANE[:2]} {JANE[2:5]} {JANE[5:8]} {JANE[8:]}, order 12345678")
    kit.sync()
    kit.sync()


def test_the_right_code_from_the_claimed_phone_joins_and_the_code_is_never_logged(kit: Kit) -> None:
    with capture_logs() as logs:
        _claim(kit)
        assert kit.suggestion() == ("pending", None)
        code = kit.the_code()
        assert kit.jane not in kit.stranger_holders()  # a code sent proves nothing yet
        # The code's SMS goes into no CRM: no Task, no Case for it.
        assert not [t for t in kit.sf.records("Task") if code in (t.get("Description") or "")]

        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        kit.say(JANE, f"is it {wrong}?")
        kit.sync()
        assert kit.suggestion() == ("pending", None)
        assert kit.jane not in kit.stranger_holders()

        kit.say(JANE, f"here it is: {code[:3]} {code[3:]}")
        kit.sync()
        kit.sync()
    assert kit.suggestion() == ("confirmed", f"one-time code answered from phone {JANE}")
    assert kit.code_statuses() == ["used"]
    assert kit.stranger_holders() == {kit.jane}  # the history lands on her one record
    assert len(sent_messages(kit.tw, to=JANE)) == 1
    assert not [entry for entry in logs if code in repr(entry)]

    kit.say(JANE, f"{code} again")  # single use: nothing more happens
    kit.sync()
    assert kit.code_statuses() == ["used"]


def test_an_answer_that_is_only_the_code_joins_and_writes_nothing_for_an_agent_to_read(kit: Kit) -> None:
    _claim(kit)
    code = kit.the_code()
    kit.say(JANE, f" {code[:3]}-{code[3:]}\n")
    kit.sync()
    kit.sync()
    assert kit.suggestion() == ("confirmed", f"one-time code answered from phone {JANE}")
    assert not [t for t in kit.sf.records("Task") if code[:3] in (t.get("Description") or "")]

    kit.say(JANE, "Thanks, and my parcel is still late")  # anything with words of hers lands as usual
    kit.sync()
    kit.sync()
    assert [t for t in kit.sf.records("Task") if "parcel is still late" in (t.get("Description") or "")]


def test_an_expired_code_never_joins(kit: Kit) -> None:
    _claim(kit)
    code = kit.the_code()
    kit.clock.advance(minutes=16)  # identities.yaml codes.expire_after: 15m by default
    kit.say(JANE, code)
    kit.sync()
    kit.sync()
    assert kit.suggestion() == ("pending", None)
    assert kit.code_statuses() == ["expired"]
    assert kit.jane not in kit.stranger_holders()


def test_wrong_codes_void_the_code_after_max_tries(kit: Kit) -> None:
    _claim(kit)
    code = kit.the_code()
    wrong = f"{(int(code) + 7) % 1_000_000:06d}"
    for _ in range(5):  # codes.max_tries
        kit.say(JANE, wrong)
        kit.sync()
    assert kit.code_statuses() == ["void"]
    kit.say(JANE, code)  # even the right one, now
    kit.sync()
    assert kit.suggestion() == ("pending", None)
    assert kit.jane not in kit.stranger_holders()


def test_a_lost_answer_to_the_code_send_never_sends_a_second_code(kit: Kit) -> None:
    kit.tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
    kit.say(STRANGER, f"Hi, my other number is {JANE}, order 12345678")
    kit.sync()  # sent, but the answer was lost
    assert [f["hits"] for f in kit.tw.faults.list()] == [1]
    kit.clock.advance(minutes=2)  # the retry is due: it finds the message at Twilio first
    kit.sync()
    kit.sync()
    code = kit.the_code()  # exactly one SMS to her
    kit.say(JANE, code)
    kit.sync()
    assert kit.suggestion()[0] == "confirmed"
    assert kit.stranger_holders() == {kit.jane}
