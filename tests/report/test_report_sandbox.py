"""`crmhub report` on a run through the sandbox: figures known from the plan, asserted exactly.

The emulators and the hub share a clock that stands still unless the test
moves it, starting on a Monday 08:45 UTC, so every time in the plan below is
known to the second and the figures are worked out by hand from it (business
hours 09:00-17:00 UTC on weekdays, reopen window 2 h):

- 08:45 Jane texts; Bob texts about a refund; Ann texts "Hello", then STOP.
- 09:15 agents' replies on the three cases go out: Jane's and Bob's are sent,
  Ann's fails (she opted out).
- 09:45 an agent closes Jane's and Bob's cases.
- 10:15 Bob writes again (within the window): his case reopens.
- 10:45 an agent replies to Bob again, then closes his case.
- 14:45 the report (Ann's case still open).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from simple_salesforce import Salesforce
from typer.testing import CliRunner

from crmhub.app import Hub, build_hub
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.report.build import report_for
from crmhub.sandbox import EmulatorServer, SandboxClock, emulator_class
from crmhub.sandbox.postgres import PostgresAbsent, throwaway_database
from crmhub.sandbox.settings import write_sandbox_settings

OURS = "+14155550100"
JANE, BOB, ANN = "+14155550123", "+14155550124", "+14155550125"
T0 = datetime(2026, 11, 30, 8, 45, tzinfo=UTC)  # a Monday, before opening time


class StillClock(SandboxClock):
    """Sandbox time that moves only when the test moves it."""

    def __init__(self, start: datetime) -> None:
        super().__init__()
        self._start = start.timestamp()

    def time(self) -> float:
        with self._lock:
            return self._start + self._offset


@dataclass
class Run:
    hub: Hub
    clock: StillClock
    sf: Any
    tw: Any
    agent: Any
    settings: Path

    def at(self, minutes: float) -> None:
        """Move the shared clock to T0 + minutes."""
        self.clock.advance((T0 + timedelta(minutes=minutes) - self.clock.now()).total_seconds())

    def sync(self) -> None:
        cycle = self.hub.sync_once()
        assert cycle.failures == [], cycle.failures

    def case_of(self, phone: str) -> str:
        [case] = [c["Id"] for c in self.sf.records("Case") if phone in c["Crmhub_Conversation__c"]]
        return str(case)

    def reply(self, phone: str, body: str) -> None:
        self.agent.CaseComment.create({"ParentId": self.case_of(phone), "CommentBody": body, "IsPublished": True})

    def close(self, phone: str) -> None:
        self.agent.Case.update(self.case_of(phone), {"Status": "Closed"})


def _tune(settings: Path) -> None:
    """Reopen window 2 h; business hours 09:00-17:00 UTC on weekdays."""
    yaml = YAML()
    data = yaml.load(settings.read_text())
    data["threads"]["reopen_window"] = "2h"
    settings.write_text(_dump(yaml, data))
    routing_path = settings.parent / "mappings" / "routing.yaml"
    routing = yaml.load(routing_path.read_text())
    routing["timezone"] = "UTC"
    routing["business_hours"] = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
    routing_path.write_text(_dump(yaml, routing))


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The plan played once per store (the day and JSON expressions differ between SQLite and PostgreSQL)."""
    with ExitStack() as stack:
        state_url = None
        if request.param == "postgresql":
            try:
                state_url = stack.enter_context(throwaway_database("crmhub_report"))
            except PostgresAbsent as exc:
                pytest.skip(str(exc))
        yield from _played(tmp_path_factory, state_url)


@contextmanager
def salesforce_and_twilio(clock: SandboxClock) -> Iterator[tuple[EmulatorServer, EmulatorServer, Any]]:
    """The Salesforce (three queues, an agent) and Twilio (our number) emulators on `clock`, and the agent's
    Salesforce session."""
    with EmulatorServer(emulator_class("salesforce")(clock=clock)) as sf_server, \
            EmulatorServer(emulator_class("twilio")(clock=clock)) as tw_server:
        sf: Any = sf_server.emulator
        for name in ("Support_Queue", "Billing_Queue", "VIP_Queue"):
            sf.add_queue(name, name)
        sf.add_user("alice@acme.test", "alice-password", name="Alice Agent")
        agent = Salesforce(instance_url=sf_server.url, session_id=sf.issue_token("alice@acme.test"),
                           session=build_session(base_url=sf_server.url))
        tw_server.emulator.add_number(OURS)
        yield sf_server, tw_server, agent


def _played(tmp_path_factory: pytest.TempPathFactory, state_url: str | None) -> Iterator[Run]:
    clock = StillClock(T0)
    with salesforce_and_twilio(clock) as (sf_server, tw_server, agent):
        sf: Any = sf_server.emulator
        tw: Any = tw_server.emulator
        settings = write_sandbox_settings(tmp_path_factory.mktemp("report"),
                                          {"salesforce": sf_server.url, "twilio": tw_server.url}, state_url=state_url)
        _tune(settings)
        with build_hub(load_config(settings), clock=clock.now) as hub:
            told = Run(hub, clock, sf, tw, agent, settings)
            _play(told)
            yield told


def _play(run: Run) -> None:
    run.tw.receive_message(JANE, OURS, "My parcel is late", at=run.clock.now())
    run.tw.receive_message(BOB, OURS, "Refund please", at=run.clock.now())
    run.tw.receive_message(ANN, OURS, "Hello", at=run.clock.now())
    run.tw.receive_message(ANN, OURS, "STOP", at=run.clock.now())
    run.at(10)
    run.sync()
    for phone, body in ((JANE, "It is on its way"), (BOB, "Refund sent"), (ANN, "Hi Ann")):
        run.reply(phone, body)
    run.at(30)
    run.sync()
    run.at(60)
    run.close(JANE)
    run.close(BOB)
    run.sync()
    run.at(90)
    run.tw.receive_message(BOB, OURS, "Refund not received", at=run.clock.now())
    run.sync()
    run.at(120)
    run.reply(BOB, "Refund checked")
    run.sync()
    run.close(BOB)
    run.at(121)
    run.sync()
    run.at(360)
    run.sync()


def test_the_figures_are_those_of_the_plan(run: Run) -> None:
    now = T0 + timedelta(hours=6)
    report = report_for(run.hub.config, run.hub.store, since=T0 - timedelta(days=1), now=now, by=("queue",))
    assert report.business_hours
    # Cases: Jane's and Bob's answered 30 min after their first message (15 of them in business hours);
    # Jane's closed 1 h after (45 min in business hours), Bob's 2 h after (1 h 45 min), once reopened.
    assert report.totals == {
        "inbound": 5, "outbound": 3, "cases": 3,
        "first_response_s": 1800.0, "first_response_business_s": 900.0,
        "resolution_s": 5400.0, "resolution_business_s": 4500.0,
        "fcr_rate": 0.5,  # Jane's: one reply, never reopened; Bob's reopened (both past the window)
        "reopen_rate": 0.5,
        "backlog_open": 1, "backlog_age_max_s": 21600.0, "backlog_age_median_s": 21600.0,  # Ann's, 6 h old
        "replies_sent": 3, "replies_failed": 1, "reply_failure_rate": 0.25,
        "csat_asked": 0, "csat_answers": 0, "csat_average": None, "csat_response_rate": None,  # surveys off
        "nps_asked": 0, "nps_answers": 0, "nps": None,
    }
    support, billing = report.rows[("support",)], report.rows[("billing",)]
    assert (support["inbound"], support["outbound"], support["cases"]) == (3, 1, 2)
    assert (billing["inbound"], billing["outbound"], billing["cases"]) == (2, 2, 1)
    assert (support["first_response_s"], support["resolution_s"], support["fcr_rate"]) == (1800.0, 3600.0, 1.0)
    assert (billing["resolution_s"], billing["reopen_rate"], billing["fcr_rate"]) == (7200.0, 1.0, 0.0)
    assert (support["backlog_open"], billing["backlog_open"]) == (1, 0)
    assert (support["replies_failed"], support["reply_failure_rate"]) == (1, 0.5)
    assert (billing["replies_sent"], billing["reply_failure_rate"]) == (2, 0.0)


def test_a_case_closed_within_the_window_is_not_yet_counted_for_first_contact_resolution(run: Run) -> None:
    """At 11:45 Jane's case (closed 09:45) is past the 2 h window; Bob's (closed 10:45) is not."""
    report = report_for(run.hub.config, run.hub.store, since=T0 - timedelta(days=1), now=T0 + timedelta(hours=3),
                        by=("channel",))
    assert report.totals["fcr_rate"] == 1.0
    assert list(report.rows) == [("sms",)]


def _cli(run: Run, *args: str) -> Any:
    result = CliRunner().invoke(app, ["report", "--config", str(run.settings), "--since", "3650d", *args],
                                env={"COLUMNS": "240"})
    return result


def test_json_csv_and_table_carry_the_same_figures(run: Run) -> None:
    result = _cli(run, "--json", "--by", "crm")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"since", "until", "by", "business_hours", "rows", "totals", "csat_distribution"}
    assert data["by"] == ["crm"] and data["business_hours"] is True
    [row] = data["rows"]
    assert row["group"] == {"crm": "salesforce"}
    assert (row["inbound"], row["outbound"], row["cases"], row["replies_failed"]) == (5, 3, 3, 1)

    result = _cli(run, "--csv", "--by", "day")
    assert result.exit_code == 0, result.output
    lines = list(csv.reader(io.StringIO(result.output)))
    assert lines[0][:4] == ["day", "inbound", "outbound", "cases"]
    assert lines[1][:4] == ["2026-11-30", "5", "3", "3"]
    assert lines[-1][0] == "total"

    result = _cli(run)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "channel" in lines[2] and "sms" in lines[2] and "total" in lines[2]
    assert [line for line in lines if "first response (median)" in line and line.count("30m 00s") == 2]
    assert [line for line in lines if "reply failure rate" in line and line.count("25.0%") == 2]


def test_the_html_report_is_one_file_with_its_charts(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = _cli(run, "--html", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text()
    assert page.count("<svg") == 2 and 'class="chart"' in page
    assert "Messages per channel and day" in page and "First response per channel and day" in page
    # Nothing to fetch: no script, no linked file or font (the SVG namespaces are names, never loaded).
    assert "<script" not in page and "href=\"http" not in page and "src=" not in page and "@import" not in page


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "soon"], "error: --since: bad duration 'soon'; write e.g. 30s, 10m, 1h"),
    (["--by", "agent"], "error: --by: unknown grouping 'agent'; use one of channel, queue, crm, day"),
    (["--json", "--csv"], "error: --json and --csv: pick one"),
])
def test_bad_options_are_errors_for_people(run: Run, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["report", "--config", str(run.settings), *args])
    assert result.exit_code == 1
    assert result.output.strip() == message


def test_metrics_has_the_same_figures_as_gauges(run: Run) -> None:
    """The hub's clock stands at 14:45, as the report of the first test; the gauges cover the last 7 days."""
    sample = run.hub.metrics.sample
    assert sample("crmhub_support_first_response_seconds", {"by": "channel", "group": "sms"}) == 1800.0
    assert sample("crmhub_support_first_response_business_seconds", {"by": "queue", "group": "support"}) == 900.0
    assert sample("crmhub_support_resolution_seconds", {"by": "queue", "group": "billing"}) == 7200.0
    assert sample("crmhub_support_inbound", {"by": "crm", "group": "salesforce"}) == 5.0
    assert sample("crmhub_support_reply_failure_ratio", {"by": "channel", "group": "sms"}) == 0.25
    assert sample("crmhub_support_backlog_open", {"by": "queue", "group": "support"}) == 1.0
    assert sample("crmhub_support_fcr_ratio", {"by": "channel", "group": "sms"}) == 0.5
    assert sample("crmhub_support_backlog_age_max_seconds", {"by": "queue", "group": "billing"}) is None  # none open


def test_agents_replies_are_never_written_back_and_closed_cases_stay_closed(run: Run) -> None:
    """The sent copy of a reply is settled for the CRM it came from, even once crmhub created the customer's
    Contact in between (that first link used to relink the settled echo, write it as a Task and reopen the case)."""
    tasks = [t["Description"] for t in run.sf.records("Task")]
    assert tasks.count("It is on its way") == 0 and tasks.count("Refund sent") == 0
    assert tasks.count("Refund checked") == 0
    states = {c["Crmhub_Conversation__c"]: c["IsClosed"] for c in run.sf.records("Case")}
    assert states == {f"sms:{OURS}:{JANE}#1": True, f"sms:{OURS}:{BOB}#1": True, f"sms:{OURS}:{ANN}#1": False}
