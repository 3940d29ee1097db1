"""Real `crmhub run` processes for the crash tests: start, SIGKILL at observed progress, restart, drain.

A daemon's stderr goes to a file, never to a pipe: a pipe nobody reads while
the daemon runs fills up and blocks its logging, and then its shutdown.
Every wait polls with a deadline and, when it times out, says what the
daemons logged last.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ruamel.yaml import YAML

from crmhub.store import open_store
from crmhub.store.outbox import outbox_counts


class Daemon:
    """One `crmhub run --config <settings>`, restartable; every run appends to the same log file.

    Args:
        env: added to the environment of every run (e.g. for `env:` secrets of its own).
    """

    def __init__(self, settings: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.settings, self.log = settings, log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._log_size = 0  # the log's size when this run started

    def start(self) -> None:
        assert not self.alive, "already running"
        self._close()
        self._out = self.log.open("ab")
        self._log_size = self.log.stat().st_size
        self.process = subprocess.Popen([sys.executable, "-m", "crmhub", "run", "--config", str(self.settings)],
                                        stdout=subprocess.DEVNULL, stderr=self._out, env=self.env)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logged(self) -> bool:
        """Whether this run has logged anything but its listeners yet (it is past its imports and first poll)."""
        with self.log.open("rb") as log:
            log.seek(self._log_size)
            return any(b"] listening " not in line for line in log.read().splitlines())

    def running(self) -> bool:
        """Whether this run has caught up and scheduled its jobs (its SIGTERM handler is in place)."""
        with self.log.open("rb") as log:
            log.seek(self._log_size)
            return b"] running " in log.read()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or given back."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status (the daemon's `run.shutdown_grace` must be shorter than `timeout`)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            self._close()

    def ensure_dead(self) -> None:
        """Kill a run still going (a test failed midway), so no daemon outlives its test."""
        if self.alive:
            self.kill()
        self._close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def wait_for(condition: Callable[[], bool], deadline: float, what: str, daemons: Sequence[Daemon] = ()) -> None:
    """Poll `condition` until true; fail after `deadline` seconds, showing the daemons' last log lines."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)  # polling with a deadline
    logs = "\n".join(f"--- {d.log.name}:\n{d.tail()}" for d in daemons)
    raise AssertionError(f"timed out after {deadline:.0f}s waiting for {what}\n{logs}")


def _counts(db_url: str) -> dict[tuple[str, str], int]:
    """Outbox rows per (crm, status), read from the daemons' state store."""
    store = open_store(db_url, migrate_schema=False)
    try:
        with store.transaction() as session:
            return outbox_counts(session)
    finally:
        store.close()


def pending(db_url: str) -> int:
    """Outbox rows not yet written (any CRM)."""
    return sum(n for (_, status), n in _counts(db_url).items() if status == "pending")


def dead_outbox_rows(db_url: str) -> dict[str, int]:
    """Dead outbox rows per CRM (none when nothing was dead-lettered)."""
    return {crm: n for (crm, status), n in _counts(db_url).items() if status == "dead"}


def tune_settings(settings: Path, values: Mapping[str, object]) -> None:
    """Set values in a written settings.yaml by dotted path (e.g. `{"delivery.lease": "3s"}`)."""
    yaml = YAML()
    data = yaml.load(settings.read_text())
    for path, value in values.items():
        *parents, key = path.split(".")
        node = data
        for parent in parents:
            node = node[parent]
        node[key] = value
    with settings.open("w") as out:
        yaml.dump(data, out)


@dataclass
class KillLoop:
    """What a kill loop did: kills, and the progress (e.g. records written) seen at each."""

    kills: int = 0
    progress_at_kill: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def kill_loop(daemons: Sequence[Daemon], *, kills: int, rng: random.Random, progress: Callable[[], int],
              finished: Callable[[], bool], total: int, moment: tuple[float, float] = (0.2, 1.5)) -> KillLoop:
    """Start every daemon; then, up to `kills` times, SIGKILL a random one and restart it.

    The first kill comes `moment` seconds (uniform) after the victim's run
    first logged, so one lands while it starts, mirrors or routes, or sooner
    once the CRM holds a first share of `total`. Each victim is one of the
    daemons already running (on a loaded machine a daemon just restarted may
    start so late that the others write everything before it could be
    killed). Every
    later kill is triggered by observed progress, never by time: the loop
    draws a target between the progress seen at the last kill and `total`,
    waits until the CRM holds that many records, and kills at once, so the
    kill lands while the daemon is writing, however loaded the machine. The
    loop ends early once `finished()`; the daemons are left running for the
    test to drain and stop.
    """
    loop = KillLoop()
    for daemon in daemons:
        daemon.start()
    for n in range(kills):
        if finished():
            break
        wait_for(lambda: any(d.logged() or not d.alive for d in daemons), 120, "a daemon to start", daemons)  # a bound on failure only: a loaded machine starts Python slowly
        victim = rng.choice([d for d in daemons if d.logged() or not d.alive])
        assert victim.alive, f"{victim.log.name} exited by itself:\n{victim.tail()}"
        if n == 0:
            # An early moment, to land in start-up work, cut short by progress: not a synchronisation.
            first, until = rng.randint(1, max(1, total // (kills + 1))), time.monotonic() + rng.uniform(*moment)
            wait_for(lambda: progress() >= first or time.monotonic() >= until or not victim.alive, 90,
                     "the first kill's moment", daemons)
            assert victim.alive, f"{victim.log.name} exited by itself:\n{victim.tail()}"
        else:
            seen = progress()
            step = max(1, (total - seen) // (kills - n + 1))
            target = min(total - 1, seen + rng.randint(1, step))
            if seen >= total - 1:
                break  # nothing left to be written mid-way
            wait_for(lambda: progress() >= target or finished() or not victim.alive, 90,
                     f"{target} of {total} records written", daemons)
            assert victim.alive, f"{victim.log.name} exited by itself:\n{victim.tail()}"
            if finished():
                break
        victim.kill()
        loop.kills += 1
        loop.progress_at_kill.append(progress())
        victim.start()
    return loop


def drain_and_stop(daemons: Sequence[Daemon], db_url: str, done: Callable[[], bool],
                   deadline: float = 60) -> list[float]:
    """Wait until `done()`, the outbox holds no pending row and every daemon runs its jobs (a run restarted
    after the last kill may still be importing), then SIGTERM each: each exits 0, logging it.

    Returns:
        When each daemon was asked to stop (`time.monotonic()`), in the order of `daemons`.
    """
    wait_for(lambda: done() and all(d.running() for d in daemons) and pending(db_url) == 0, deadline,
             "the outbox to drain", daemons)
    stopped = []
    for daemon in daemons:
        stopped.append(time.monotonic())
        status = daemon.stop()
        assert status == 0 and "stopped" in daemon.tail(3), f"{daemon.log.name}: exit {status}\n{daemon.tail()}"
    return stopped
