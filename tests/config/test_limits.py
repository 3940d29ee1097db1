"""Hostile files through `crmhub validate` as an admin runs it: each gives problem lines, exit 1, no traceback.

Issue 12, finding 6: mutated files crashed the validator with a traceback or
made it hang. Each trigger runs the real command in a subprocess, so a
traceback, an encoding error on printing or a hang shows as it would to people.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from crmhub.config import _checks
from tests.config.conftest import ENV, ROUTING, SETTINGS, ConfigDir

BASE = textwrap.dedent(SETTINGS)
PROBLEM_LINE = re.compile(r"^[^\s:][^:]*:\d+:\d+: \S")


def validate(cfg: ConfigDir, *args: str) -> list[str]:
    """The problem lines of `crmhub validate`, after checking it failed the way people should see."""
    result = subprocess.run(
        [sys.executable, "-m", "crmhub", "validate", "--config", *(args or ("settings.yaml",))],
        cwd=cfg.root, env={**os.environ, **ENV}, capture_output=True, timeout=60, check=False)
    stdout, stderr = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")  # strict: must be printable
    assert "Traceback" not in stdout + stderr, stderr
    assert (result.returncode, stdout) == (1, ""), stderr
    *problems, summary = stderr.splitlines()
    assert summary == f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found; crmhub did not start."
    return problems


def settings_with(cfg: ConfigDir, extra: str = "", **replace: str) -> None:
    """settings.yaml: the valid base with `extra` lines appended and texts replaced."""
    text = BASE
    for old, new in replace.items():
        text = text.replace(old, new)
    cfg.write(settings=text + extra)


def test_an_integer_of_thousands_of_digits_names_its_key_and_range(cfg: ConfigDir) -> None:
    settings_with(cfg, "retry: { max_attempts: " + "7" * 5000 + " }\n",
                  instance_url="batch_size: " + "9" * 4301 + "\n    instance_url")
    assert validate(cfg) == [
        "settings.yaml:3:17: crms.salesforce.batch_size: '" + "9" * 57 + "...' is out of range; "
        "use a number from 1 to 200",
        "settings.yaml:13:24: retry.max_attempts: '" + "7" * 57 + "...' is out of range; "
        "use a number of at least 1 (at most 18 digits)",
    ]


def test_a_giant_hex_port_is_checked_against_the_port_range(cfg: ConfigDir) -> None:
    settings_with(cfg, "webhooks: { port: 0x" + "f" * 5000 + " }\n")
    assert validate(cfg) == [
        "settings.yaml:12:19: webhooks.port: '0x" + "f" * 55 + "...' is out of range; use a number from 1 to 65535",
    ]


def test_flow_sequences_nested_a_thousand_deep_are_refused(cfg: ConfigDir) -> None:
    settings_with(cfg, "log: " + "[" * 1000 + "]" * 1000 + "\n")
    assert validate(cfg) == [
        "settings.yaml:12:70: nested more than 64 levels deep; crmhub's files need a few levels, "
        "check the brackets and indentation here",
    ]


def test_durations_beyond_ten_years_are_refused(cfg: ConfigDir) -> None:
    settings_with(cfg, "delivery: { every: 1e308 }\nthreads: { reopen_window: .inf }\n",
                  numbers="poll_every: 9999999999999d\n    numbers")
    assert validate(cfg) == [
        "settings.yaml:11:17: channels.twilio.poll_every: '9999999999999d' is too long; use at most 3650d (10 years)",
        "settings.yaml:13:20: delivery.every: 1e+308 is too long; use at most 3650d (10 years)",
        "settings.yaml:14:27: threads.reopen_window: inf is too long; use at most 3650d (10 years)",
    ]


def test_a_mappings_directory_name_of_300_characters_is_refused(cfg: ConfigDir) -> None:
    settings_with(cfg, "mappings: " + "m" * 300 + "\n")
    assert validate(cfg) == [
        "settings.yaml:12:11: mappings: a name in the path is longer than 255 bytes; "
        "point mappings: at the directory of the mapping files (relative to the settings file)",
    ]


def test_a_settings_file_name_of_300_characters_is_refused(cfg: ConfigDir) -> None:
    name = "s" * 295 + ".yaml"
    assert validate(cfg, name) == [
        f"{name}: a name in the path is longer than 255 bytes; give the file a shorter name, or fix the path",
    ]


def test_a_nul_in_a_secret_file_path_is_refused(cfg: ConfigDir) -> None:
    settings_with(cfg, auth_token="auth_token", **{"env:TWILIO_AUTH_TOKEN": '"file:secrets/token\\0.txt"'})
    assert validate(cfg) == [
        "settings.yaml:10:17: channels.twilio.auth_token: holds the control character U+0000; remove it",
    ]


def test_a_lone_surrogate_is_refused_and_printed_escaped(cfg: ConfigDir) -> None:
    settings_with(cfg, 'log: { level: "\\ud800" }\n"\\udc00": 1\n',
                  **{"env:TWILIO_AUTH_TOKEN": '"file:\\ud800"'})
    assert validate(cfg) == [
        "settings.yaml:10:17: channels.twilio.auth_token: holds \\ud800, half of a UTF-16 surrogate pair; "
        "write the character itself or one \\U escape (e.g. \\U0001F600)",
        "settings.yaml:12:15: log.level: holds \\ud800, half of a UTF-16 surrogate pair; "
        "write the character itself or one \\U escape (e.g. \\U0001F600)",
        "settings.yaml:13:1: a key holds \\udc00, half of a UTF-16 surrogate pair; "
        "write the character itself or one \\U escape (e.g. \\U0001F600)",
    ]


LAUGHS = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else '"lol"'] * 9) + "]\n" for i in range(10))


@pytest.mark.timeout(20)
def test_a_billion_laughs_file_is_refused_quickly(cfg: ConfigDir) -> None:
    settings_with(cfg, LAUGHS)
    assert validate(cfg) == [
        "settings.yaml:15:30: more than 5000 values once aliases are expanded; "
        "write fewer aliases (or a smaller file)",
    ]


def test_an_unexpected_error_becomes_a_problem_line_naming_the_file(cfg: ConfigDir,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("a bug in a check, quoting a value: hunter2")

    monkeypatch.setattr(_checks, "check_routing", broken)
    problems = cfg.problems()
    assert problems == ["mappings/routing.yaml:1:1: internal error: RuntimeError while checking this file; "
                        "this is a bug in crmhub, please report it"]


def test_what_the_loader_refuses_before_validating(cfg: ConfigDir) -> None:
    cfg.write(routing=textwrap.dedent(ROUTING) + "rules:\n  - &loop { name: a, route: { salesforce: *loop } }\n",
              history="salesforce:\n  task: { Subject: !!int twelve, Description: \"" + "x" * 10_001 + "\" }\n")
    (cfg.root / "mappings" / "identities.yaml").write_bytes(b"crms:\n  salesforce:\x07 {}\n")
    assert cfg.problems() == [
        "mappings/identities.yaml:2:14: YAML syntax error: unacceptable character U+0007 "
        "(special characters are not allowed); remove it",
        "mappings/routing.yaml:8:43: alias *loop is used inside the value it names; write the value out instead",
        "mappings/history.yaml:2:20: the value cannot be read as !!int; "
        "remove the tag or fix the value",
    ]
    cfg.write(history="salesforce:\n  task: { Subject: \"" + "x" * 10_001 + "\" }\n")
    assert cfg.problems() == [
        "mappings/history.yaml:2:20: salesforce.task.Subject: is 10001 characters long; write at most 10000",
    ]


def test_files_past_their_size_or_not_regular_are_refused_unread(cfg: ConfigDir) -> None:
    (cfg.root / "mappings" / "history.yaml").write_text("# padding\n" * 30_000)
    (cfg.root / "mappings" / "routing.yaml").unlink()
    os.mkfifo(cfg.root / "mappings" / "routing.yaml")  # no writer: opening it would block
    assert cfg.problems() == [
        "mappings/routing.yaml: is not a regular file; point at the YAML file itself",
        "mappings/history.yaml: the file is larger than 256 KiB; crmhub's files are a few KiB, "
        "check that this is the right file",
    ]


def test_secret_files_must_be_regular_small_and_nameable(cfg: ConfigDir) -> None:
    (cfg.root / "big-token").write_text("x" * (64 * 1024 + 1))
    settings_with(cfg, **{"env:SF_CLIENT_ID": "file:/dev/zero", "env:SF_CLIENT_SECRET": "file:big-token",
                          "env:TWILIO_AUTH_TOKEN": "file:" + "t" * 256})
    assert cfg.problems() == [
        "settings.yaml:5:18: crms.salesforce.auth.client_id: cannot read secret file /dev/zero (not a regular file); "
        "create it or fix the path (relative paths start at the settings file's directory)",
        "settings.yaml:6:22: crms.salesforce.auth.client_secret: cannot read secret file big-token "
        "(larger than 64 KiB); create it or fix the path (relative paths start at the settings file's directory)",
        "settings.yaml:10:17: channels.twilio.auth_token: a name in the path is longer than 255 bytes; "
        "fix the path after file:",
    ]
