"""Start the emulators together (for `crmhub sandbox` and `crmhub demo`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from crmhub.config.settings import base_port_problem
from crmhub.errors import CrmhubError
from crmhub.sandbox import DEFAULT_PORTS, EMULATORS, EmulatorServer, SandboxClock, emulator_class


class SandboxError(CrmhubError):
    """A sandbox that cannot start or be reached; the message says what to do."""


@contextmanager
def running_sandbox(ports: Mapping[str, int] | None = None, *, state_dir: Path | None = None,
                    apis: tuple[str, ...] = tuple(EMULATORS)) -> Iterator[dict[str, EmulatorServer]]:
    """All emulators up on `ports` (0 = any free port), stopped when the block ends.

    Args:
        ports: port per API, and per listener as "<api>-<listener>" (DEFAULT_PORTS); missing ones take port 0.
        state_dir: when set, each emulator persists its state to `<api>.json` there.
    """
    clock = SandboxClock()
    with ExitStack() as stack:
        servers: dict[str, EmulatorServer] = {}
        for api in apis:
            state_file = state_dir / f"{api}.json" if state_dir else None
            emulator = emulator_class(api)(clock=clock, state_file=state_file)
            port = (ports or {}).get(api, 0)
            listener_ports = {name: (ports or {}).get(f"{api}-{name}", 0) for name in emulator.listeners}
            servers[api] = stack.enter_context(EmulatorServer(emulator, port=port, listener_ports=listener_ports))
        yield servers


def fixed_ports(base: int | None = None) -> dict[str, int]:
    """The demo ports (8700-8708), or the same layout from another base port."""
    if base is None:
        return dict(DEFAULT_PORTS)
    wrong = base_port_problem(base)
    if wrong is not None:
        raise SandboxError(f"--base-port {wrong}")
    return {api: base + i for i, api in enumerate(DEFAULT_PORTS)}
