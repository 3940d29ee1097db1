"""CSAT and NPS surveys through the sandbox: asked once on a case's close, answered without opening a case,
the score on the case in the CRM, never to a customer who opted out.

The emulators and the hub share a clock that moves only when the test moves it.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.report.build import report_for
from crmhub.report.html import to_html
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox._server import Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.schema import ReplyRow, RouteDecisionRow, SurveyRow
from crmhub.sync.survey_answers import score_of
from tests.daemons import tune_settings
from tests.report.test_report_sandbox import StillClock, salesforce_and_twilio
from tests.test_threads import AGENTS, Agent

OURS = "+14155550100"
JANE, ANN = "+14155550123", "+14155550125"
T0 = datetime(2026, 11, 30, 8, 45, tzinfo=UTC)
CSAT_QUESTION = "How did we do?"


@dataclass
class Run:
    hub: Hub
    clock: StillClock
    sf: Any
    tw: Any
    agent: Any
    urls: dict[str, str]

    def later(self, minutes: float) -> None:
        self.clock.advance(minutes * 60)

    def sync(self) -> None:
        cycle = self.hub.sync_once()
        assert cycle.failures == [], cycle.failures

    def cases_of(self, phone: str) -> list[dict[str, Any]]:
        return [c for c in self.sf.records("Case") if phone in c["Crmhub_Conversation__c"]]

    def case_of(self, phone: str) -> str:
        return str(self.cases_of(phone)[-1]["Id"])

    def reply(self, phone: str, body: str) -> None:
        self.agent.CaseComment.create({"ParentId": self.case_of(phone), "CommentBody": body, "IsPublished": True})

    def close(self, phone: str) -> None:
        self.agent.Case.update(self.case_of(phone), {"Status": "Closed"})

    def texts(self, phone: str, body: str) -> None:
        self.tw.receive_message(phone, OURS, body, at=self.clock.now())

    def sent_to(self, phone: str) -> list[str]:
        messages = [m for m in self.tw.snapshot()["messages"].values()
                    if m["direction"] == "outbound-api" and m["to"] == phone]
        return [m["body"] for m in sorted(messages, key=lambda m: m["_seq"])]

    def surveys(self) -> list[SurveyRow]:
        with self.hub.store.transaction() as session:
            return list(session.scalars(select(SurveyRow).order_by(SurveyRow.id)))

    def handled_to_close(self, phone: str, first: str = "My parcel is late") -> None:
        """The customer writes, an agent answers and closes the case, crmhub reads the close back."""
        self.texts(phone, first)
        self.later(5)
        self.sync()
        self.reply(phone, "It is on its way")
        self.later(5)
        self.sync()
        self.close(phone)
        self.later(5)
        self.sync()


def _settings(directory: Path, urls: dict[str, str], **surveys: Any) -> Path:
    path = write_sandbox_settings(directory, urls, surveys=True)
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["threads"]["reopen_window"] = "30m"
    data["retry"].update({"initial_wait": "10ms", "max_wait": "50ms", "max_total": "10s", "max_attempts": 1})
    for kind, values in surveys.items():
        data["surveys"][kind].update(values)
    out = io.StringIO()
    yaml.dump(data, out)
    path.write_text(out.getvalue())
    return path


@pytest.fixture
def run(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    surveys = getattr(request, "param", {})
    clock = StillClock(T0)
    with salesforce_and_twilio(clock) as (sf_server, tw_server, agent):
        settings = _settings(tmp_path, {"salesforce": sf_server.url, "twilio": tw_server.url}, **surveys)
        with build_hub(load_config(settings), clock=clock.now) as hub:
            yield Run(hub, clock, sf_server.emulator, tw_server.emulator, agent,
                      {"salesforce": sf_server.url, "twilio": tw_server.url})


def test_a_closed_case_gets_one_survey_and_its_answer_lands_on_the_case_without_opening_one(run: Run) -> None:
    run.handled_to_close(JANE)
    assert [body for body in run.sent_to(JANE) if CSAT_QUESTION in body] == [
        "How did we do? Reply with a number from 1 (bad) to 5 (great)."]
    run.later(5)
    run.sync()  # the close read again, a second refresh: still one question
    assert len([b for b in run.sent_to(JANE) if CSAT_QUESTION in b]) == 1
    run.texts(JANE, "5 stars, thanks!")
    run.later(5)
    run.sync()
    [case] = run.cases_of(JANE)
    assert case["Status"] == "Closed" and case["Crmhub_CSAT__c"] == 5
    [survey] = run.surveys()
    assert (survey.kind, survey.status, survey.score) == ("csat", "answered", 5)
    with run.hub.store.transaction() as session:  # `crmhub explain` tells why neither went to a case
        rules = {rule: targets for rule, targets in session.execute(
            select(RouteDecisionRow.rule, RouteDecisionRow.targets).where(RouteDecisionRow.rule.like("survey%")))}
    assert rules == {"survey question": {}, "survey answer": {}}
    # the question's copy and the answer are on no case as history: the closed case got no new Task
    tasks = [t for t in run.sf.records("Task") if t.get("WhatId") == case["Id"]]
    assert len(tasks) == 1  # the customer's first message (the agent's reply is its own CaseComment)


def test_a_new_store_adopting_a_closed_case_asks_no_survey_for_its_old_close(run: Run, tmp_path: Path) -> None:
    run.handled_to_close(JANE)
    assert [t for t in run.sent_to(JANE) if CSAT_QUESTION in t] != []
    sent = run.sent_to(JANE)
    # The store is lost; a new one in front of the same org adopts the case, closed as an earlier store saw it.
    with build_hub(load_config(_settings(tmp_path / "fresh", run.urls)), clock=run.clock.now) as fresh:
        for _ in range(2):
            run.later(5)
            assert fresh.sync_once().failures == []
        with fresh.store.transaction() as session:
            assert list(session.scalars(select(SurveyRow))) == []
    assert run.sent_to(JANE) == sent


def test_a_message_that_is_no_answer_reopens_the_case_as_usual(run: Run) -> None:
    run.handled_to_close(JANE)
    run.texts(JANE, "5 days and still no parcel?")
    run.later(5)
    run.sync()
    [case] = run.cases_of(JANE)
    assert case["Status"] != "Closed" and case.get("Crmhub_CSAT__c") is None
    [survey] = run.surveys()
    assert survey.status == "asked"


def test_a_customer_who_opted_out_is_never_surveyed(run: Run) -> None:
    run.texts(ANN, "Hello")
    run.texts(ANN, "STOP")
    run.later(5)
    run.sync()
    run.close(ANN)
    run.later(5)
    run.sync()
    run.later(5)
    run.sync()
    assert run.sent_to(ANN) == []
    [survey] = run.surveys()
    assert survey.status == "skipped" and "opted out" in (survey.reason or "")
    with run.hub.store.transaction() as session:
        assert session.scalars(select(ReplyRow.reply_ref)).all() == []


def test_a_survey_whose_send_answer_was_lost_goes_out_once(run: Run) -> None:
    run.texts(JANE, "My parcel is late")
    run.later(5)
    run.sync()
    run.reply(JANE, "It is on its way")
    run.later(5)
    run.sync()
    run.close(JANE)
    run.tw.faults.add(Fault("reset", method="POST", path="Messages.json$", after=True))
    run.later(5)
    run.hub.sync_once()  # the question reached Twilio, its answer was lost
    [question] = [r for r in _replies(run) if r.reply_ref.startswith("survey:")]
    assert (question.status, question.channel_message_id) == ("sending", None)
    run.later(10)  # the retry is due: it finds the sent message instead of sending again
    run.sync()
    assert len([b for b in run.sent_to(JANE) if CSAT_QUESTION in b]) == 1
    [question] = [r for r in _replies(run) if r.reply_ref.startswith("survey:")]
    assert question.status in ("sent", "delivered") and question.channel_message_id is not None


@pytest.mark.parametrize("run", [{"nps": {"enabled": True, "every": "90d"}}], indirect=True)
def test_nps_is_asked_once_per_person_per_period_and_csat_otherwise(run: Run) -> None:
    run.handled_to_close(JANE)
    run.texts(JANE, "9")
    run.later(5)
    run.sync()
    run.later(60)  # past the reopen window, within the NPS period: a new case closes
    run.handled_to_close(JANE, first="Another question")
    kinds = [(s.kind, s.status, s.score) for s in run.surveys()]
    assert kinds == [("nps", "answered", 9), ("csat", "asked", None)]
    cases = run.cases_of(JANE)
    assert len(cases) == 2 and cases[0]["Crmhub_NPS__c"] == 9


def test_a_case_reopened_and_closed_again_is_not_asked_again(run: Run) -> None:
    run.handled_to_close(JANE)
    run.texts(JANE, "One more thing: the address")  # within the window: reopens the case
    run.later(5)
    run.sync()
    run.close(JANE)
    run.later(5)
    run.sync()
    assert len(run.cases_of(JANE)) == 1
    assert len([b for b in run.sent_to(JANE) if CSAT_QUESTION in b]) == 1
    assert [s.status for s in run.surveys()] == ["asked"]


@pytest.mark.parametrize(("text", "kind", "score"), [
    ("5", "csat", 5), ("five", "csat", 5), ("Excellent!", "csat", 5), ("👍", "csat", 5), ("😡", "csat", 1),
    ("cinco", "csat", 5), ("4/5", "csat", 4), ("⭐⭐⭐", "csat", 3), ("пять", "csat", 5), ("kötü", "csat", 2),
    ("9", "nps", 9), ("10/10", "nps", 10), ("cero", "nps", 0),
    ("6", "csat", None), ("Where is my refund?", "csat", None), ("5 days late", "csat", None), ("thanks", "csat", None),
    ("11", "nps", None), ("4 or 5", "csat", None),
])
def test_answers_are_read_in_digits_words_and_emoji(text: str, kind: str, score: int | None) -> None:
    assert score_of(text, kind) == score


def _replies(run: Run) -> list[ReplyRow]:
    with run.hub.store.transaction() as session:
        return list(session.scalars(select(ReplyRow).order_by(ReplyRow.id)))


ANSWERS = [("5", 5), ("five", 5), ("Excellent!", 5), ("👍", 5), ("4", 4), ("bueno", 4), ("3", 3), ("bad", 2),
           ("😡", 1), ("1", 1), ("Where is my refund?", None), ("And the invoice?", None)]


def test_the_report_s_csat_is_the_plan_s(run: Run) -> None:
    """A seeded plan of customers (opted out, silent, answering or writing something else) and the report's
    CSAT worked out from the plan alone, never from crmhub's tables."""
    rng = random.Random(1)  # a mix: opted out, silent, answering, writing something else
    plan = [(f"+1415555{200 + i:04d}", rng.random() < 0.2, rng.choice([*ANSWERS, None])) for i in range(10)]
    for phone, opted_out, _ in plan:
        run.texts(phone, "My parcel is late")
        if opted_out:
            run.texts(phone, "STOP")
    run.later(5)
    run.sync()
    for phone, _, _ in plan:
        run.reply(phone, "It is on its way")
    run.later(5)
    run.sync()
    for phone, _, _ in plan:
        run.close(phone)
    run.later(5)
    run.sync()
    for phone, opted_out, answer in plan:
        if answer is not None and not opted_out:
            run.texts(phone, answer[0])
    run.later(5)
    run.sync()

    asked = [answer for _, opted_out, answer in plan if not opted_out]
    scores = [answer[1] for answer in asked if answer is not None and answer[1] is not None]
    report = report_for(run.hub.config, run.hub.store, since=T0 - timedelta(days=1), now=run.clock.now(),
                        by=("channel",))
    assert {k: report.totals[k] for k in ("csat_asked", "csat_answers", "csat_average", "csat_response_rate")} == {
        "csat_asked": len(asked), "csat_answers": len(scores),
        "csat_average": round(sum(scores) / len(scores), 2) if scores else None,
        "csat_response_rate": round(len(scores) / len(asked), 4) if asked else None}
    assert report.csat_distribution == dict(sorted(Counter(scores).items()))
    assert report.totals["replies_sent"] == len(asked)  # agents' replies only: the questions are not counted
    daily = report_for(run.hub.config, run.hub.store, since=T0 - timedelta(days=1), now=run.clock.now(),
                       by=("channel", "day"))
    page = to_html(report, daily, csat=report.csat_distribution)
    assert ("CSAT answers by score" in page) == bool(scores)
    # an answer opens no case; a message that is no answer reopens the closed one
    for phone, opted_out, answer in plan:
        [case] = run.cases_of(phone)
        reopened = answer is not None and answer[1] is None and not opted_out
        assert (case["Status"] != "Closed") == reopened, (phone, answer)
        expected = answer[1] if answer is not None and not opted_out else None
        assert case.get("Crmhub_CSAT__c") == expected, (phone, answer)


def _score_in(agent: Agent, case_id: str) -> object:
    """The CSAT score the CRM holds on the case: Salesforce's custom field, Zendesk's ticket field (id in the
    sandbox settings), HubSpot's ticket property."""
    if agent.crm == "salesforce":
        return agent.em.record(case_id).get("Crmhub_CSAT__c")
    if agent.crm == "zendesk":
        [ticket] = [t for t in agent.em.tickets() if str(t["id"]) == case_id]
        return next((f["value"] for f in ticket["custom_fields"] if f["id"] == 9000001), None)
    [ticket] = [t for t in agent.em.objects("tickets") if t["id"] == case_id]
    return ticket["properties"].get("crmhub_csat")


@pytest.mark.parametrize("crm", list(AGENTS))
def test_the_answer_lands_on_the_case_in_each_crm_and_opens_none(crm: str, request: pytest.FixtureRequest,
                                                                 twilio_sandbox: EmulatorServer,
                                                                 sandbox_clock: Any, tmp_path: Path) -> None:
    server: EmulatorServer = request.getfixturevalue(f"{crm}_sandbox")
    agent = AGENTS[crm](server)
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    agent.seed()
    settings = _settings(tmp_path, {crm: server.url, "twilio": twilio_sandbox.url})
    tune_settings(settings, {f"crms.{name}.enabled": name == crm for name in AGENTS})

    def sync() -> None:
        sandbox_clock.advance(120)  # Zendesk's exports leave out the last minute's changes
        cycle = hub.sync_once()
        assert cycle.failures == [], cycle.failures

    with build_hub(load_config(settings), clock=sandbox_clock.now) as hub:
        tw.receive_message(JANE, OURS, "My parcel is late", at=sandbox_clock.now())
        sync()
        [case] = agent.cases().values()
        agent.set_state(case["id"], "closed")
        sync()
        sync()  # the question goes out in the run after the close is read (or the same one)
        questions = [m for m in tw.snapshot()["messages"].values()
                     if m["direction"] == "outbound-api" and CSAT_QUESTION in m["body"]]
        assert len(questions) == 1
        tw.receive_message(JANE, OURS, "👍", at=sandbox_clock.now())
        sync()
        sync()
    [after] = agent.cases().values()
    assert not after["open"], "the answer reopened the case"
    assert str(_score_in(agent, case["id"])) in ("5", "5.0")


def test_a_case_closed_in_two_crms_gets_one_question_and_the_answer_lands_in_both(
        salesforce_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        sandbox_clock: Any, tmp_path: Path) -> None:
    agents = [AGENTS["salesforce"](salesforce_sandbox), AGENTS["hubspot"](hubspot_sandbox)]
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    for agent in agents:
        agent.seed()
    settings = _settings(tmp_path, {"salesforce": salesforce_sandbox.url, "hubspot": hubspot_sandbox.url,
                                    "twilio": twilio_sandbox.url})
    tune_settings(settings, {"crms.hubspot.enabled": True})
    with build_hub(load_config(settings), clock=sandbox_clock.now) as hub:
        def sync() -> None:
            sandbox_clock.advance(120)
            cycle = hub.sync_once()
            assert cycle.failures == [], cycle.failures

        tw.receive_message(JANE, OURS, "My parcel is late", at=sandbox_clock.now())
        sync()
        cases = [next(iter(agent.cases().values()))["id"] for agent in agents]
        for agent, case_id in zip(agents, cases, strict=True):
            agent.set_state(case_id, "closed")
            sync()  # each CRM's close read in its own refresh
        sync()
        questions = [m for m in tw.snapshot()["messages"].values()
                     if m["direction"] == "outbound-api" and CSAT_QUESTION in m["body"]]
        assert len(questions) == 1
        tw.receive_message(JANE, OURS, "four", at=sandbox_clock.now())
        sync()
        sync()
    assert [str(_score_in(agent, case_id)) for agent, case_id in zip(agents, cases, strict=True)] == ["4.0", "4"]
    assert all(not next(iter(agent.cases().values()))["open"] for agent in agents)
