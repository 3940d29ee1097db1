"""`crmhub demo`: the story it tells is what the emulators hold afterwards.

The story runs against the test's own emulators (free ports), so every claim
the demo prints is checked here against the CRM's and the channels' state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.demo import cast
from crmhub.demo.story import tell
from crmhub.sandbox import EmulatorServer, SandboxClock, emulator_class
from crmhub.store import open_store
from crmhub.store.schema import DeadLetterRow, LedgerRow, OutboxRow


@pytest.fixture
def demo_sandbox() -> Iterator[dict[str, EmulatorServer]]:
    """Emulators of the demo's own, on a clock of their own, as `crmhub demo` runs them: the test session's
    shared clock has moved days ahead of crmhub's, which no real channel does (a survey answer's time, for one,
    is compared with when crmhub asked)."""
    clock = SandboxClock()
    with ExitStack() as stack:
        yield {api: stack.enter_context(EmulatorServer(emulator_class(api)(clock=clock)))
               for api in ("salesforce", "twilio", "x", "meta", "mail")}


def test_the_story_lands_every_item_once_in_its_queue_merges_and_replies(
        demo_sandbox: dict[str, EmulatorServer], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the commands' tables, unwrapped
    console = Console(width=200)  # prints to stdout, where the in-process `crmhub` commands print too
    servers = demo_sandbox
    salesforce_sandbox, twilio_sandbox = servers["salesforce"], servers["twilio"]
    settings = tell(servers, tmp_path, console)
    output = capsys.readouterr().out
    sf: Any = salesforce_sandbox.emulator
    tw: Any = twilio_sandbox.emulator

    records = {r["Id"]: r for kind in ("Contact", "Lead", "Case", "Group") for r in sf.records(kind)}
    [jane] = [r["Id"] for r in sf.records("Contact") if r.get("LastName") == "Doe"]
    [bob] = [r["Id"] for r in sf.records("Contact") if r.get("LastName") == "Lee"]
    tasks = sf.records("Task")

    def queue_of(task: dict[str, Any]) -> str:
        return str(records[records[task["WhatId"]]["OwnerId"]]["Name"])

    by_text = {t["Description"]: t for t in tasks}
    # Every item with content is history exactly once (the empty SMS is not), each in its routed queue.
    texts = [t.body for t in cast.FIRST_TEXTS if t.body] + [cast.JANE_STATES_HANDLE.body]
    assert Counter(t["Description"] for t in tasks if t["Description"] in texts) == Counter(texts)
    assert len(tasks) == len(texts) + 4  # plus Bob's call, Jane's X mention, Sam's Messenger message and her email
    assert queue_of(by_text[cast.FIRST_TEXTS[0].body]) == "VIP Queue"  # Jane is Gold
    assert queue_of(by_text[cast.FIRST_TEXTS[1].body]) == "Billing Queue"  # a refund
    assert queue_of(by_text[cast.FIRST_TEXTS[2].body]) == "Support Queue"  # the stranger: default
    [call] = [t for t in tasks if t["Subject"].startswith("Call")]
    assert call["WhoId"] == bob and queue_of(call) == "Support Queue"
    # The mention was dead-lettered for the missing queue, replayed into it, then moved onto Jane by the merge.
    [mention] = [t for t in tasks if t["Subject"].startswith("X mention")]
    assert queue_of(mention) == "Social Queue"
    assert mention["WhoId"] == jane and records[mention["WhatId"]]["ContactId"] == jane
    assert by_text[cast.JANE_STATES_HANDLE.body]["WhatId"] == by_text[cast.FIRST_TEXTS[0].body]["WhatId"]
    # Her claim was only a suggestion until the admin confirmed it: one internal note on her case says so.
    [note] = [c for c in sf.records("CaseComment") if not c["IsPublished"]]
    assert note["ParentId"] == by_text[cast.JANE_STATES_HANDLE.body]["WhatId"]
    assert cast.JANE_PHONE in note["CommentBody"] and "X handle @janeonx" in note["CommentBody"]
    assert "crmhub links confirm 1" in note["CommentBody"] and "Any update" not in note["CommentBody"]

    # The agent's comment reached Jane once, by SMS from the number she wrote to.
    sent = [m for m in tw.snapshot()["messages"].values() if m["direction"] == "outbound-api"]
    questions = [m for m in sent if m["body"].startswith("How did we do?")]
    assert [(m["from"], m["to"], m["body"]) for m in sent if m not in questions] == [
        (cast.OUR_NUMBER, cast.JANE_PHONE, cast.AGENT_REPLY)]
    # Act 6: one question to each customer whose case closed; the answers are on their cases, which stay closed.
    assert sorted(m["to"] for m in questions) == sorted(phone for phone, _ in cast.SURVEY_ANSWERS)
    closed = [records[by_text[t.body]["WhatId"]] for t in cast.FIRST_TEXTS[:2]]
    assert [(c["IsClosed"], c["Crmhub_CSAT__c"]) for c in closed] == [(True, 5), (True, 4)]  # "5", "good, thanks"
    assert not any(t["Description"] == cast.AGENT_REPLY for t in tasks)  # never echoed back to Salesforce
    # Sam's Messenger message opened its own case (no CRM record knows him); the agent's answer went out once,
    # on Messenger, as the Page, inside Meta's 24-hour window; Meta's echo of it is not a second Task.
    sam = by_text[cast.SAM_MESSAGE]
    assert sam["Subject"] == f"Messenger inbound from {cast.SAM_ON_MESSENGER}"
    assert records[sam["WhatId"]]["Origin"] == "Messenger"
    meta: Any = servers["meta"].emulator
    [answer] = [m for m in meta.messages() if m["is_echo"]]
    assert (answer["text"], answer["messaging_type"]) == (cast.SAM_REPLY, "RESPONSE")
    assert not any(t["Description"] == cast.SAM_REPLY for t in tasks)

    # Act 7: Jane's email is history on her own Contact (matched by its address), in Billing (an invoice)...
    [emailed] = [t for t in tasks if cast.JANE_EMAIL_TEXT in t["Description"]]
    assert emailed["WhoId"] == jane and queue_of(emailed) == "Billing Queue"
    # ...and the agent's answer went out once by SMTP, threaded to her message, read back from the mail server.
    mail: Any = servers["mail"].emulator
    [asked] = mail.snapshot()["accounts"][cast.SUPPORT_EMAIL]["mailboxes"]["INBOX"]["messages"][:1]
    [answer] = mail.outbound()
    assert (answer["rcpt_tos"], answer["in_reply_to"]) == ([cast.JANE_EMAIL], asked["message_id"])
    assert answer["subject"] == f"Re: {cast.JANE_EMAIL_SUBJECT}" and cast.EMAIL_REPLY in answer["raw"]
    assert not any(cast.EMAIL_REPLY in t["Description"] for t in tasks)

    store = open_store(f"sqlite:///{(tmp_path / 'crmhub.db').resolve()}", migrate_schema=False)
    try:
        with store.transaction() as session:
            dead = {d.source: d.resolved_at is None for d in session.scalars(select(DeadLetterRow))}
            [echo] = [row.id for row in session.scalars(select(LedgerRow)) if row.text == cast.AGENT_REPLY]
            echo_writes = [(row.crm, row.status, row.result_ref[:6]) for row in session.scalars(
                select(OutboxRow).where(OutboxRow.interaction_id == echo))]
    finally:
        store.close()
    assert dead == {"twilio": True, "deliver:salesforce": False}  # the empty SMS stays; the replayed one is done
    assert echo_writes == [("salesforce", "done", "reply:")]  # settled as the agent's own comment, not written

    # What the demo printed matches: the two dead letters, the replay, the conflict, the reply, a quiet rerun.
    assert "empty message" in output and "'Social_Queue' (routing name 'social') does not exist" in output
    assert "is pending again" in output
    act_three = output.split("3. Two identities, one customer")[1].split("4. An agent answers")[0]
    assert "1 link suggestion(s) noted on their case" in act_three and "Link suggestions (1)" in act_three
    assert "Link 1 confirmed: X handle @janeonx is now the same customer as phone +14155550123" in act_three
    assert "Any update" not in act_three  # the claim is shown, never the message
    assert "Conflicts (1)" in output and "x_handle:janeonx" in output
    assert "replies sent: 2, 0 to retry, 0 dead" in output  # Jane by SMS, Sam on Messenger
    act_seven = output.split("7. Email, through the same path")[1]
    assert "polled email/inbox: 1 page(s), 1 new" in act_seven and "replies sent: 1, 0 to retry, 0 dead" in act_seven
    assert cast.JANE_EMAIL_TEXT not in act_seven  # the story names what happened, never what she wrote
    last_cycle = output.split("5. Run it again")[1].split("6. What the support lead reads")[0]
    assert "0 new" in last_cycle and "delivered to salesforce: 0 written" in last_cycle
    assert "Routing: rule 'vip-customers'" in last_cycle  # `crmhub explain` of Jane's first SMS
    report = output.split("6. What the support lead reads")[1]
    assert "first response (median)" in report and "HTML report written to" in report
    assert "CSAT (average, 1-5)" in report
    assert (settings.parent / "report.html").read_text().count("<svg") == 3  # volume, first response, CSAT
    assert settings.exists()


@pytest.mark.slow
def test_crmhub_demo_runs_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    for queue in ("VIP Queue", "Billing Queue", "Support Queue", "Social Queue"):
        assert queue in result.output
    assert "API calls used: salesforce" in result.output
    assert (tmp_path / ".crmhub/demo/crmhub.db").exists()
