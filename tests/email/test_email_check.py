"""`crmhub check` on the email channel, against the real Dovecot and Postfix: read only, with the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from crmhub.check import CHECK_RETRY, run_check
from crmhub.config import load_config
from crmhub.connectors._retry import Retrier
from crmhub.sandbox import EmulatorServer
from tests.email.mailserver import MailServer
from tests.email.test_email_end_to_end import email_settings


def check_lines(path: Path, **change: Any) -> tuple[list[str], list[str]]:
    yaml = YAML()
    settings = yaml.load(path.read_text())
    settings["channels"]["email"].update(change)
    with path.open("w") as out:
        yaml.dump(settings, out)
    report = run_check(load_config(path), retrier=Retrier(CHECK_RETRY, sleep=lambda _: None))
    return report.lines(), [f"{f.check}: {f.detail}" for f in report.findings if f.ok and f.system == "email"]


def test_a_good_mailbox_passes_and_nothing_in_it_changes(mail_server: MailServer,
                                                         salesforce_sandbox: EmulatorServer, tmp_path: Path) -> None:
    salesforce_sandbox.emulator.add_queue("Support_Queue", "Support_Queue")
    path = email_settings(tmp_path, {"salesforce": salesforce_sandbox.url}, mail_server, ("salesforce",))
    problems, passes = check_lines(path)
    assert not [p for p in problems if p.startswith("email")]
    assert "IMAP IDLE: supported: new mail is seen as it arrives" in passes
    assert "folder INBOX: exists" in passes
    assert mail_server.messages("jane@customers.test") == []  # nothing was sent


def test_a_missing_folder_and_a_wrong_password_say_what_to_fix(mail_server: MailServer,
                                                               salesforce_sandbox: EmulatorServer,
                                                               tmp_path: Path) -> None:
    path = email_settings(tmp_path, {"salesforce": salesforce_sandbox.url}, mail_server, ("salesforce",))
    problems, _ = check_lines(path, sent_folder="Sent Items")
    assert any(p.startswith("email: folder 'Sent Items' named in ") and "settings.yaml line" in p
               and p.endswith("is not in the mailbox. Fix: name one of its folders: INBOX") for p in problems), problems
    (tmp_path / "email-password").write_text("wrong")
    problems, _ = check_lines(path)
    assert any(p.startswith("email:") and "check channels.email" in p for p in problems), problems
    assert not any("wrong" in p.split("Fix:")[0].replace("wrong password", "") for p in problems)
