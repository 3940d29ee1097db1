"""What the X and Meta backends (and their webhook queues) hold of their emulator.

Both keep their state on the emulator that hosts them, not in themselves,
so a reset (which swaps `host.state`) reaches them without rewiring.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import RLock
from typing import Any, Protocol

from crmhub.sandbox._server import SandboxClock


class Host(Protocol):
    """What the backend needs from its emulator: state, clock and lock."""

    state: dict[str, Any]
    clock: SandboxClock
    lock: RLock


EventSink = Callable[[str, dict[str, Any]], None]
"""Told (kind, record) when the backend creates something its webhooks report."""


class HostedBackend:
    """Domain operations on the host's state; callers hold `host.lock`."""

    def __init__(self, host: Host, on_event: EventSink | None = None) -> None:
        self._host = host
        self._on_event = on_event

    @property
    def state(self) -> dict[str, Any]:
        return self._host.state

    def _emit(self, kind: str, record: dict[str, Any]) -> None:
        """Tell the event sink (the webhook queue) about a new record."""
        if self._on_event is not None:
            self._on_event(kind, record)
