"""`crmhub check` against the six emulators: the demo org passes, a broken one is named problem by problem.

Each test seeds the demo org (`crmhub.demo.org.seed_org`, what `crmhub sandbox`
starts with), writes the embedded settings pointed at the emulators, breaks
one thing the way an admin would (a mapping, a token, the org itself
through the emulators' control endpoints) and runs `crmhub check` as a
person would, through the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from crmhub.check import CHECK_RETRY, run_check
from crmhub.cli import app
from crmhub.config import load_config
from crmhub.connectors._retry import Retrier
from crmhub.demo import cast
from crmhub.demo.org import seed_org
from crmhub.logs import configure as configure_logs
from crmhub.sandbox import EMULATORS, EmulatorServer, Fault
from crmhub.sandbox.hubspot.catalog import object_type
from crmhub.sandbox.settings import write_sandbox_settings

PUBLIC_URL = "https://hooks.acme.test"


@pytest.fixture
def servers(salesforce_sandbox: EmulatorServer, zendesk_sandbox: EmulatorServer, hubspot_sandbox: EmulatorServer,
            twilio_sandbox: EmulatorServer, x_sandbox: EmulatorServer,
            meta_sandbox: EmulatorServer) -> dict[str, EmulatorServer]:
    running = {"salesforce": salesforce_sandbox, "zendesk": zendesk_sandbox, "hubspot": hubspot_sandbox,
               "twilio": twilio_sandbox, "x": x_sandbox, "meta": meta_sandbox}
    seed_org({api: server.emulator for api, server in running.items()})
    return running


@pytest.fixture
def settings(servers: dict[str, EmulatorServer], tmp_path: Path) -> Path:
    return write_sandbox_settings(tmp_path, {api: s.url for api, s in servers.items()}, enabled=EMULATORS)


def check(settings: Path, *args: str) -> Result:
    configure_logs()
    return CliRunner().invoke(app, ["check", "--config", str(settings), *args])


def edit(path: Path, change: Callable[[Any], None]) -> None:
    """Change a YAML file as an admin would (comments and order kept)."""
    yaml = YAML()
    tree = yaml.load(path.read_text())
    change(tree)
    with path.open("w") as out:
        yaml.dump(tree, out)


def line_of(path: Path, text: str) -> int:
    """The 1-based line of `path` holding `text`."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def control(server: EmulatorServer, action: str, body: dict[str, Any]) -> None:
    requests.post(f"{server.url}/_sandbox/{action}", json=body, timeout=10).raise_for_status()


def problem_lines(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_the_demo_org_passes_every_check(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    before = {api: len(s.emulator.snapshot().get("records", {}).get("Contact", {})) for api, s in servers.items()
              if api == "salesforce"}
    result = check(settings)
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.stdout
    for seen in ("Support_Queue", "Crmhub_Key__c", "user_fields.x_handle", "pipeline 0", cast.OUR_NUMBER,
                 "crmhub_support"):
        assert seen in result.stdout
    document = json.loads(check(settings, "--json").stdout)
    assert document["ok"] is True and document["problems"] == 0
    assert document["systems"] == sorted(servers)  # every CRM and channel (the mail server is no system of its own)
    # read-only: nothing was created (HubSpot's key properties appear only when crmhub first writes)
    assert {api: len(s.emulator.snapshot().get("records", {}).get("Contact", {})) for api, s in servers.items()
            if api == "salesforce"} == before
    assert "crmhub_key" not in servers["hubspot"].emulator.backend.definitions(object_type("notes"))


def test_misspelled_fields_properties_and_queues_are_named_with_the_orgs_own_names(
        settings: Path, servers: dict[str, EmulatorServer]) -> None:
    mappings = settings.parent / "mappings"

    def identities(tree: Any) -> None:
        tree["crms"]["salesforce"]["match"]["Contact"]["phone"] = ["Phone", "Mobile_Phone__c"]

    def history(tree: Any) -> None:
        tree["hubspot"]["ticket"] = {"subjet": "{channel_label} conversation with {sender}"}

    def routing(tree: Any) -> None:
        tree["queues"]["salesforce"]["billing"]["queue"] = "Billing_Queu"
        tree["queues"]["zendesk"]["billing"]["group"] = "Suport"
        tree["queues"]["hubspot"]["support"]["stage"] = "9"

    edit(mappings / "identities.yaml", identities)
    edit(mappings / "history.yaml", history)
    edit(mappings / "routing.yaml", routing)
    control(servers["zendesk"], "user_fields", {"key": "x_handle", "remove": True})  # the org lacks a custom field

    result = check(settings)
    assert result.exit_code == 1
    lines = problem_lines(result)
    shown = f"{mappings.relative_to(Path.cwd()) if mappings.is_relative_to(Path.cwd()) else mappings}"
    assert (f"salesforce: field Contact.Mobile_Phone__c named in {shown}/identities.yaml line "
            f"{line_of(mappings / 'identities.yaml', 'Mobile_Phone__c')} does not exist or is hidden from the "
            "integration user; did you mean MobilePhone? Fix: create the custom field Mobile_Phone__c on Contact"
            ) in "\n".join(lines)
    assert any(line.startswith("hubspot: property 'subjet' of tickets named in ") and "did you mean subject?" in line
               for line in lines), lines
    assert any(line.startswith("salesforce: queue Billing_Queu named in ") and "did you mean Billing_Queue?" in line
               and f"routing.yaml line {line_of(mappings / 'routing.yaml', 'Billing_Queu')}" in line
               for line in lines), lines
    assert any(line.startswith("zendesk: group 'Suport' named in ") and "did you mean Support?" in line
               for line in lines), lines
    assert any(line.startswith("hubspot: stage '9' named in ") and "1 (New)" in line for line in lines), lines
    assert any(line.startswith("zendesk: user field 'x_handle' named in ") and "Fix: create a text user field with "
               "key x_handle" in line for line in lines), lines
    assert len(lines) == 6, lines
    assert all(" Fix: " in line for line in lines)
    assert "6 problems found" in result.stderr


def test_bad_tokens_of_every_crm_and_channel_are_named(settings: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")

    def tokens(tree: Any) -> None:
        tree["crms"]["salesforce"]["auth"]["client_secret"] = f"file:{wrong}"
        tree["crms"]["zendesk"]["auth"]["token"] = f"file:{wrong}"
        tree["crms"]["hubspot"]["auth"]["access_token"] = f"file:{wrong}"
        tree["channels"]["twilio"]["auth_token"] = f"file:{wrong}"
        tree["channels"]["x"]["access_token_secret"] = f"file:{wrong}"
        tree["channels"]["meta"]["page_token"] = f"file:{wrong}"

    edit(settings, tokens)
    result = check(settings)
    assert result.exit_code == 1
    lines = problem_lines(result)
    for system, key in (("salesforce", "crms.salesforce.auth"), ("zendesk", "crms.zendesk.auth"),
                        ("hubspot", "crms.hubspot.auth.access_token"), ("twilio", "channels.twilio.account_sid"),
                        ("x", "channels.x"), ("meta", "channels.meta")):
        assert any(line.startswith(f"{system}: the credentials were refused") and f"Fix: check {key}" in line
                   for line in lines), (system, lines)
    assert len(lines) == 6, lines
    assert "not-the-token" not in result.output


def test_a_twilio_number_whose_webhook_points_elsewhere(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    edit(settings, lambda tree: tree["webhooks"].update(enabled=True, public_url=PUBLIC_URL))
    twilio: Any = servers["twilio"].emulator
    twilio.reset()
    twilio.add_number(cast.OUR_NUMBER, sms_url="https://old-helpdesk.example/sms",
                      voice_status_url=f"{PUBLIC_URL}/webhooks/twilio/calls")
    twilio.add_number(cast.OUR_WHATSAPP, sms_url=f"{PUBLIC_URL}/webhooks/twilio/messages")
    result = check(settings)
    assert result.exit_code == 1
    assert problem_lines(result) == [
        f"twilio: the SmsUrl of {cast.OUR_NUMBER} points at https://old-helpdesk.example/sms, not crmhub's "
        f"{PUBLIC_URL}/webhooks/twilio/messages; its webhooks do not reach crmhub (the reconcile poll still finds "
        f"them, minutes later). Fix: in the Twilio console (Phone numbers > {cast.OUR_NUMBER} > Configure), set "
        f"\"A message comes in\" to {PUBLIC_URL}/webhooks/twilio/messages (HTTP POST)"]


def test_a_number_missing_from_the_account(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    edit(settings, lambda tree: tree["channels"]["twilio"].update(numbers=["+14155550111"]))
    lines = problem_lines(check(settings))
    assert len(lines) == 1 and lines[0].startswith("twilio: number +14155550111 named in ")
    assert f"list one of its numbers: {cast.OUR_NUMBER}" in lines[0]


def test_missing_hubspot_scope_and_x_dm_access_are_named(settings: Path, servers: dict[str, EmulatorServer],
                                                         tmp_path: Path) -> None:
    limited = tmp_path / "limited-token"
    limited.write_text("limited-token\n")
    control(servers["hubspot"], "tokens", {"token": "limited-token", "scopes": [
        "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.schemas.contacts.read",
        "crm.schemas.contacts.write"]})  # no `tickets`
    control(servers["x"], "access", {"dm": False})
    edit(settings, lambda tree: tree["crms"]["hubspot"]["auth"].update(access_token=f"file:{limited}"))
    result = check(settings)
    lines = problem_lines(result)
    assert result.exit_code == 1
    scope_fix = ("Fix: add the scope to the private app (Settings > Integrations > Private apps > your app > "
                 "Scopes: crm.objects.contacts.read/write, crm.schemas.contacts.read/write, tickets, "
                 "crm.objects.owners.read) and commit; the token stays the same")
    assert [line for line in lines if line.startswith("hubspot:")] == [
        f"hubspot: the private app may not read tickets {what} (HTTP 403 MISSING_SCOPES: the private app lacks "
        f"scope tickets; add it to the app (Settings > Integrations > Private apps > Scopes)). {scope_fix}"
        for what in ("properties", "records", "pipelines")]
    assert any(line.startswith("x: X refuses to list our DMs") and "client-not-enrolled" in line for line in lines)


def test_json_names_every_check_and_problem(settings: Path) -> None:
    edit(settings.parent / "mappings" / "routing.yaml",
         lambda tree: tree["queues"]["salesforce"]["vip"].update(queue="VIP_Queues"))
    result = check(settings, "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["problems"] == 1
    assert set(document["checks"][0]) == {"system", "check", "detail", "problem", "fix", "ok"}
    [bad] = [c for c in document["checks"] if not c["ok"]]
    assert bad["system"] == "salesforce" and bad["check"] == "queue VIP_Queues"
    assert "did you mean VIP_Queue?" in bad["problem"] and bad["fix"]


def test_validate_online_runs_check_after_the_offline_checks(settings: Path) -> None:
    configure_logs()
    ok = CliRunner().invoke(app, ["validate", "--online", "--config", str(settings)])
    assert ok.exit_code == 0, ok.output
    assert ": OK (" in ok.stdout and "checks passed" in ok.stdout
    edit(settings.parent / "mappings" / "routing.yaml",
         lambda tree: tree["queues"]["zendesk"]["support"].update(group="Billing"))
    broken = CliRunner().invoke(app, ["validate", "--online", "--config", str(settings)])
    assert broken.exit_code == 1
    assert ": OK (" in broken.stdout  # the offline checks passed; the org did not
    assert any(line.startswith("zendesk: group 'Billing' named in ") for line in broken.stdout.splitlines())


def test_check_needs_settings_or_sandbox() -> None:
    result = CliRunner().invoke(app, ["check"], env={"CRMHUB_CONFIG": ""})
    assert result.exit_code == 1
    assert "no settings given" in result.stderr


def test_a_flaky_answer_is_retried_not_reported(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    faults = [servers["salesforce"].emulator.faults.add(Fault(kind="server_error", path="/describe$", status=503)),
              servers["hubspot"].emulator.faults.add(Fault(kind="server_error", path="/pipelines/", status=502))]
    report = run_check(load_config(settings), retrier=Retrier(CHECK_RETRY, sleep=lambda _: None))
    assert report.ok, report.lines()
    assert [fault.hits for fault in faults] == [1, 1]


def test_salesforce_fields_the_integration_user_cannot_see_or_edit(settings: Path,
                                                                   servers: dict[str, EmulatorServer]) -> None:
    salesforce = servers["salesforce"]
    control(salesforce, "field_security", {"sobject": "Contact", "field": "X_Handle__c", "access": "hidden"})
    control(salesforce, "field_security", {"sobject": "Task", "field": "Crmhub_Key__c", "access": "read"})
    lines = problem_lines(check(settings))
    identities = settings.parent / "mappings" / "identities.yaml"
    assert len(lines) == 2, lines
    assert lines[0].startswith("salesforce: field Contact.X_Handle__c named in ")
    assert f"identities.yaml line {line_of(identities, 'X_Handle__c')} does not exist or is hidden" in lines[0]
    assert "Fix: create the custom field X_Handle__c on Contact" in lines[0]
    assert lines[1] == ("salesforce: field Task.Crmhub_Key__c named in crmhub's own writes is not createable or "
                        "updateable by the integration user. Fix: make it editable in the run-as user's field-level "
                        "security (profile or permission set); crmhub writes it on every record of this kind")


def test_check_passes_against_a_running_crmhub_sandbox(tmp_path: Path) -> None:
    """The README's session: `crmhub sandbox` in one process, `crmhub check` in another, over real ports."""
    from tests.sandbox.test_playground import Sandbox, crmhub

    running = Sandbox()
    try:
        settings = write_sandbox_settings(tmp_path, {}, base_port=running.base, enabled=EMULATORS)
        done = crmhub("check", "--config", str(settings))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "checks passed" in done.stdout
    finally:
        running.stop()


def test_an_x_token_of_another_account_is_named(settings: Path) -> None:
    edit(settings, lambda tree: tree["channels"]["x"].update(account="acme_help"))
    lines = problem_lines(check(settings))
    assert lines == ["x: channels.x.account: 'acme_help' but the access token belongs to @crmhub_support; set the "
                     "account's handle or use its access token. Fix: check channels.x: the app's bearer token, "
                     "consumer key and secret, and the account's access token and secret (developer portal > your "
                     "app > Keys and tokens)"]


def test_a_hubspot_key_property_that_is_not_unique(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    made = requests.post(f"{servers['hubspot'].url}/crm/v3/properties/notes", timeout=10,
                         headers={"Authorization": "Bearer sandbox-token"},
                         json={"name": "crmhub_key", "label": "crmhub key", "type": "string", "fieldType": "text",
                               "groupName": "note"})
    assert made.status_code == 201, made.text
    lines = problem_lines(check(settings))
    assert len(lines) == 1, lines
    assert lines[0].startswith("hubspot: property 'crmhub_key' of notes exists but is not unique")
    assert "Fix: delete the property crmhub_key of notes" in lines[0]


def test_a_missing_key_field_says_how_to_create_it(settings: Path, servers: dict[str, EmulatorServer]) -> None:
    control(servers["salesforce"], "field_security", {"sobject": "Task", "field": "Crmhub_Key__c", "access": "hidden"})
    assert problem_lines(check(settings)) == [
        "salesforce: field Task.Crmhub_Key__c named in crmhub's own writes does not exist or is hidden from the "
        "integration user. Fix: create Crmhub_Key__c on Task: Text(255), External ID, Unique "
        "(docs/setup/salesforce.md), visible and editable for the run-as user"]


def test_a_zendesk_agent_is_not_enough(settings: Path, servers: dict[str, EmulatorServer], tmp_path: Path) -> None:
    zendesk: Any = servers["zendesk"].emulator
    zendesk.add_user("Pat Agent", "pat@sandbox.zendesk.test", role="agent")
    edit(settings, lambda tree: tree["crms"]["zendesk"]["auth"].update(email="pat@sandbox.zendesk.test"))
    lines = problem_lines(check(settings))
    assert len(lines) == 1 and lines[0].startswith("zendesk: the API user pat@sandbox.zendesk.test is an agent user, "
                                                   "not an admin;"), lines


def test_hubspot_pipelines_and_stages_may_be_named_by_label(settings: Path) -> None:
    edit(settings.parent / "mappings" / "routing.yaml",
         lambda tree: tree["queues"]["hubspot"]["support"].update(pipeline="Support Pipeline", stage="new"))
    result = check(settings)
    assert result.exit_code == 0, result.stdout
