"""Salesforce's create-only TaskSubtype on every attempt (issue 13): lost answers, fresh stores, replays.

Tasks are upserted by `Crmhub_Key__c`; TaskSubtype may be set when the
upsert inserts, not when it updates. Whatever the outbox's attempt counter
says, a Task that already exists must be updated without it, never refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from crmhub.app import Hub, build_hub
from crmhub.config import load_config
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.settings import write_sandbox_settings
from crmhub.store.ledger import DeadLetter, open_dead_letters
from tests.ops.conftest import TEXTS, cli

TASK_UPSERTS = "/composite$"  # the batch's one Composite call, which carries the Task upsert


def _settings(directory: Path, salesforce: EmulatorServer, twilio: EmulatorServer,
              **sections: dict[str, Any]) -> Path:
    """Sandbox settings with their own state store in `directory`, `sections` merged over the defaults."""
    path = write_sandbox_settings(directory, {"salesforce": salesforce.url, "twilio": twilio.url})
    yaml = YAML()
    settings = yaml.load(path.read_text())
    for name, values in sections.items():
        settings[name].update(values)
    with path.open("w") as out:
        yaml.dump(settings, out)
    return path


@contextmanager
def _hub(settings: Path) -> Iterator[Hub]:
    with build_hub(load_config(settings)) as built:
        yield built


def _dead_letters(hub: Hub) -> list[DeadLetter]:
    """The open dead letters of deliveries (the empty message is one of the channel's)."""
    with hub.store.transaction() as session:
        return [d for d in open_dead_letters(session) if d.source.startswith("deliver:")]


def _tasks(sf: Any) -> list[dict[str, Any]]:
    return sorted(sf.records("Task"), key=lambda t: t["Description"])


def test_a_task_upsert_whose_answer_was_lost_lands_once_and_is_not_dead_lettered(
        org: dict[str, str], salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    # The Task upsert lands; its answer is lost. The in-call retry finds the Tasks there already.
    lost = sf.faults.add(Fault("reset", path=TASK_UPSERTS, after=True, times=1))
    with _hub(_settings(tmp_path, salesforce_sandbox, twilio_sandbox)) as hub:
        cycle = hub.sync_once()
        assert lost.hits == 1
        assert not cycle.failures, cycle.failures
        assert (cycle.deliveries[0].delivered, cycle.deliveries[0].dead) == (3, 0)
        assert _dead_letters(hub) == []
    tasks = _tasks(sf)
    assert [t["Description"] for t in tasks] == sorted(TEXTS)  # each message once
    assert {t["TaskSubtype"] for t in tasks} == {"Task"}  # as the first, lost, attempt created them
    assert len({t["Crmhub_Key__c"] for t in tasks}) == 3


def test_a_fresh_state_store_in_front_of_the_same_org_writes_nothing_twice(
        org: dict[str, str], salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    sf: Any = salesforce_sandbox.emulator
    with _hub(_settings(tmp_path / "first", salesforce_sandbox, twilio_sandbox)) as hub:
        assert hub.sync_once().deliveries[0].delivered == 3
    before = {kind: sorted(r["Id"] for r in sf.records(kind)) for kind in ("Task", "Case", "Contact")}
    # The state store is lost (a new host, a deleted file): a new one reads the channels from the start again.
    with _hub(_settings(tmp_path / "second", salesforce_sandbox, twilio_sandbox)) as hub:
        cycle = hub.sync_once()
        assert not cycle.failures, cycle.failures
        assert (cycle.deliveries[0].delivered, cycle.deliveries[0].dead) == (3, 0)
        assert _dead_letters(hub) == []
    assert {kind: sorted(r["Id"] for r in sf.records(kind)) for kind in ("Task", "Case", "Contact")} == before
    tasks = _tasks(sf)
    assert [t["Description"] for t in tasks] == sorted(TEXTS)
    assert {t["TaskSubtype"] for t in tasks} == {"Task"}


def test_replaying_a_dead_lettered_task_write_that_had_landed_succeeds(
        org: dict[str, str], salesforce_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer,
        tmp_path: Path) -> None:
    """As it arises: every answer of the Task upsert lost until the row runs out of rounds, then a replay.

    One attempt per call and one round per row make that take one sync instead of hours.
    """
    sf: Any = salesforce_sandbox.emulator
    settings = _settings(tmp_path, salesforce_sandbox, twilio_sandbox,
                         retry={"max_attempts": 1}, delivery={"max_attempts": 1})
    lost = sf.faults.add(Fault("reset", path=TASK_UPSERTS, after=True, times=1))
    with _hub(settings) as hub:
        assert hub.sync_once().deliveries[0].dead == 3
        dead = _dead_letters(hub)
    assert lost.hits == 1 and [d.source for d in dead] == ["deliver:salesforce"] * 3
    assert [t["Description"] for t in _tasks(sf)] == sorted(TEXTS)  # they landed: only the answer was lost

    for letter in dead:
        replayed = cli(settings, "deadletters", "replay", str(letter.id))
        assert replayed.exit_code == 0, replayed.output
        assert "is pending again" in replayed.stdout
    synced = cli(settings, "sync")
    assert synced.exit_code == 0, synced.output
    assert "delivered to salesforce: 3 written" in synced.output
    assert cli(settings, "deadletters", "list", "--source", "deliver").stdout.strip() == "No open dead letters."
    tasks = _tasks(sf)
    assert [t["Description"] for t in tasks] == sorted(TEXTS)  # updated, not written twice
    assert {t["TaskSubtype"] for t in tasks} == {"Task"}
