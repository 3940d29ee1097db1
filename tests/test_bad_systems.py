"""One bad system never stops the others, and one row that fails in an unexpected way never stops its batch.

A vendor may answer in a shape its SDK does not expect, and the SDK then
raises whatever Python raises (KeyError, AttributeError...), not one of its
own errors. That is one step's failure, reported by name and type, while
every other CRM's steps run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from tests.crm_views import VIEWS, SalesforceView

OURS = "+14155550100"
START = datetime.now(UTC) - timedelta(hours=1)


def sync(settings: Path) -> Any:
    """`crmhub sync`, as an admin runs it (a new process: the CRMs are logged in to afresh)."""
    return CliRunner().invoke(app, ["sync", "--config", str(settings)])


def test_salesforce_answering_its_login_in_an_unexpected_shape_stops_neither_zendesk_nor_hubspot(
        salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
        twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    servers = {"salesforce": salesforce_sandbox, "zendesk": zendesk_sandbox, "hubspot": hubspot_sandbox}
    views = {name: VIEWS[name](server) for name, server in servers.items()}
    for view in views.values():
        view.seed()
        view.ready()
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    tw.receive_message("+14155550123", OURS, "my parcel is late", at=START)
    settings = write_sandbox_settings(tmp_path, {**{n: s.url for n, s in servers.items()}, "twilio": twilio_sandbox.url},
                                      enabled=(*servers, "twilio"))
    first = sync(settings)
    assert first.exit_code == 0, first.output
    # A proxy, or a changed token endpoint, answers Salesforce's login with a 200 simple-salesforce cannot read.
    salesforce_sandbox.emulator.faults.add(Fault("odd_answer", path="/services/oauth2/token", times=None))
    tw.receive_message("+14155550123", OURS, "any news?", at=START + timedelta(minutes=5))

    second = sync(settings)

    assert second.exit_code == 1, second.output
    assert isinstance(second.exception, SystemExit)  # a reported failure, not a crash
    failed = {line.removeprefix("failed ").split(": ")[0]: line for line in second.output.splitlines()
              if line.startswith("failed ")}
    assert set(failed) == {"mirror:salesforce", "deliver:salesforce", "replies:collect:salesforce"}
    assert all("AttributeError in" in line for line in failed.values())  # type and place, no message
    assert "simple_salesforce/login.py" in failed["mirror:salesforce"]
    for name in ("zendesk", "hubspot"):
        assert sorted(w.text for w in views[name].written()) == ["any news?", "my parcel is late"], name
    assert [w.text for w in views["salesforce"].written()] == ["my parcel is late"]


def test_a_row_that_fails_in_an_unexpected_way_is_dead_lettered_and_its_batch_goes_on(
        salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> None:
    """`{duration:d}` renders for calls and raises ValueError for messages (whose duration is empty)."""
    view = SalesforceView(salesforce_sandbox)
    view.seed()
    tw: Any = twilio_sandbox.emulator
    tw.add_number(OURS)
    sms = tw.receive_message("+14155550123", OURS, "my parcel is late", at=START)
    tw.add_call("+14155550124", OURS, duration=125, start=START + timedelta(minutes=1))
    settings = write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})
    yaml = YAML()
    history = tmp_path / "mappings" / "history.yaml"
    templates = yaml.load(history.read_text())
    templates["salesforce"]["task"]["Subject"] = "{channel_label} of {duration:d}s from {sender}"
    yaml.dump(templates, history)

    result = sync(settings)

    assert result.exit_code == 0, result.output
    assert "delivered to salesforce: 1 written, 0 to retry, 1 dead-lettered" in result.output
    [task] = salesforce_sandbox.emulator.records("Task")  # type: ignore[attr-defined]
    assert task["Subject"] == "Call of 125s from +14155550124"
    letters = CliRunner().invoke(app, ["deadletters", "list", "--config", str(settings)])
    assert letters.exit_code == 0, letters.output
    assert f"sms:{sms}" in letters.output and "ValueError" in letters.output and "salesforce" in letters.output
