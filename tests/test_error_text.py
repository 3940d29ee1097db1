"""No customer text in errors: long messages are cut to the CRM's field length, and vendor errors lose their values.

Salesforce quotes a refused value in its error (`STRING_TOO_LONG: Comments:
data value too large: <the text> (max length=32000)`); with a `{text}`
history template that value is the customer's message, which must reach
neither the log, nor a dead letter, nor what `crmhub deadletters` and
`crmhub explain` print.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import update
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.connectors._base import TRUNCATED
from crmhub.connectors._redact import vendor_error
from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store import open_store
from crmhub.store.schema import DeadLetterRow, OutboxRow
from tests.crm_views import SalesforceView

OURS = "+14155550100"
START = datetime.now(UTC) - timedelta(hours=1)
SECRET = "my card number is 4111 1111 1111 1111"


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def setup(salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Path:
    SalesforceView(salesforce_sandbox).seed()
    twilio_sandbox.emulator.add_number(OURS)  # type: ignore[attr-defined]
    return write_sandbox_settings(tmp_path, {"salesforce": salesforce_sandbox.url, "twilio": twilio_sandbox.url})


def set_templates(settings: Path, **by_object: dict[str, str]) -> None:
    yaml = YAML()
    path = settings.parent / "mappings" / "history.yaml"
    history = yaml.load(path.read_text())
    for sobject, fields in by_object.items():
        history["salesforce"][sobject].update(fields)
    yaml.dump(history, path)


def test_a_message_longer_than_the_field_lands_cut_to_fit_with_a_marker(
        setup: Path, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    set_templates(setup, case={"Description": "{text}"})  # the Task's Description is "{text}" already
    text = "".join(f"line {n:05d} of a very long complaint\n" for n in range(1200))
    assert len(text) > 40_000
    twilio_sandbox.emulator.receive_message("+14155550123", OURS, text, at=START)  # type: ignore[attr-defined]

    result = cli("sync", "--config", str(setup))

    assert "1 written, 0 to retry, 0 dead-lettered" in result.output
    sf: Any = salesforce_sandbox.emulator
    [task], [case] = sf.records("Task"), sf.records("Case")
    for description in (task["Description"], case["Description"]):
        assert len(description) == 32_000  # Salesforce's textarea length for both
        assert description.endswith(TRUNCATED)
        assert text.startswith(description.removesuffix(TRUNCATED))


def test_a_vendor_error_quoting_the_text_is_dead_lettered_without_it_everywhere(
        setup: Path, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    """A custom field crmhub knows no length of: Salesforce refuses it with STRING_TOO_LONG, quoting the text."""
    sf: Any = salesforce_sandbox.emulator
    sf.define_field("Task", "Summary__c", "string")  # 255 characters
    set_templates(setup, task={"Summary__c": "{text}"})
    text = f"{SECRET}. " + "Please call me back about the refund. " * 10
    sid = twilio_sandbox.emulator.receive_message("+14155550123", OURS, text, at=START)  # type: ignore[attr-defined]

    synced = cli("sync", "--config", str(setup))
    listed = cli("deadletters", "list", "--config", str(setup))
    shown = cli("deadletters", "show", "1", "--config", str(setup))
    explained = cli("explain", f"sms:{sid}", "--config", str(setup))

    assert "1 dead-lettered" in synced.output and sf.records("Task") == []
    for output in (synced.output, listed.output, shown.output, explained.output):  # the log is in synced's
        assert "4111" not in output and "refund" not in output, output
    assert "STRING_TOO_LONG on Summary__c" in shown.output and "(value redacted)" in shown.output
    assert "STRING_TOO_LONG" in explained.output and f"sms:{sid}" in listed.output


def test_stored_reasons_holding_the_text_are_not_printed(
        setup: Path, salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer) -> None:
    """Defence in depth: a reason stored by an older crmhub, vendor message and all, is shown without the text."""
    salesforce_sandbox.emulator.define_field("Task", "Summary__c", "string")  # type: ignore[attr-defined]
    set_templates(setup, task={"Summary__c": "{text}"})
    text = f"{SECRET}. " + "Please call me back about the refund. " * 10
    sid = twilio_sandbox.emulator.receive_message("+14155550123", OURS, text, at=START)  # type: ignore[attr-defined]
    cli("sync", "--config", str(setup))
    raw = (f"sms:{sid} -> salesforce: STRING_TOO_LONG: Summary: data value too large: {text} (max length=255)")
    store = open_store(f"sqlite:///{setup.parent / 'crmhub.db'}")
    try:
        with store.transaction() as session:
            session.execute(update(DeadLetterRow).values(reason=raw))
            session.execute(update(OutboxRow).values(last_error=raw))
    finally:
        store.close()

    outputs = [cli(*args, "--config", str(setup)).output for args in (
        ("deadletters", "list"), ("deadletters", "show", "1"), ("explain", f"sms:{sid}"))]

    for output in outputs:
        assert "4111" not in output and "refund" not in output, output
        assert "STRING_TOO_LONG" in output


@pytest.mark.parametrize(("code", "message", "fields", "labelled", "expected"), [
    ("STRING_TOO_LONG", f"Comments: data value too large: {SECRET}: more (max length=32000)", ["Description"], True,
     "STRING_TOO_LONG on Description: data value too large (value redacted)"),
    ("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {SECRET}", ["Email"], True,
     "INVALID_EMAIL_ADDRESS on Email: invalid email address (value redacted)"),
    ("NOT_FOUND", "The requested resource does not exist", [], True,
     "NOT_FOUND: The requested resource does not exist"),
    ("DuplicateValue", f"Email: {SECRET} is already being used by another user", [], False,
     "DuplicateValue: Email (value redacted)"),
    ("VALIDATION_ERROR", f'Property values were not valid: [{{"message":"{SECRET} was not a valid number"}}]',
     ["num"], False, "VALIDATION_ERROR on num: Property values were not valid (value redacted)"),
    ("", SECRET * 10, [], False, None),  # no colon, but too long to be only wording: cut
])
def test_vendor_errors_keep_code_fields_and_wording_but_no_value(
        code: str, message: str, fields: list[str], labelled: bool, expected: str | None) -> None:
    """The error shapes of the three CRMs' emulators (`crmhub/sandbox/*/errors.py`)."""
    said = vendor_error(code, message, fields, labelled=labelled)
    assert "4111" not in said
    if expected is not None:
        assert said == expected
    else:
        assert said.endswith("(value redacted)") and len(said) < 160
