"""`crmhub sandbox`: the emulators on fixed ports until interrupted."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crmhub.sandbox import Emulator
from crmhub.sandbox.runner import SandboxError, fixed_ports, running_sandbox

Prepare = Callable[[Mapping[str, Emulator]], list[str]]
"""Seeds fresh emulators before anyone connects; returns lines telling what it did."""


def serve_forever(*, base_port: int | None = None, state_dir: Path | None = None, as_json: bool = False,
                  prepare: Prepare | None = None) -> None:
    """Start the sandbox, seed it (`prepare`, only when no saved state is loaded), print where each API is,
    and wait for Ctrl-C or SIGTERM."""
    ports = fixed_ports(base_port)
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    fresh = state_dir is None or not any((state_dir / f"{api}.json").exists() for api in ports)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sandbox = running_sandbox(ports, state_dir=state_dir)
        servers = sandbox.__enter__()
    except OSError as exc:
        raise SandboxError(f"cannot listen on 127.0.0.1 ports {min(ports.values())}-{max(ports.values())} "
                           f"({exc.strerror or exc}); is a sandbox already running? Pick others with --base-port N"
                           ) from None
    try:
        notes = prepare({api: server.emulator for api, server in servers.items()}) if prepare and fresh else []
        urls = {api: server.url for api, server in servers.items()}
        urls |= {f"{api}-{name}": url for api, server in servers.items() for name, url in server.listener_urls.items()}
        if as_json:
            print(json.dumps(urls), flush=True)  # one line, once every server listens and is seeded
            for note in notes:
                print(note, file=sys.stderr, flush=True)
        else:
            _print_table(urls, notes, base_port)
        stop.wait()
    finally:
        sandbox.__exit__(None, None, None)


def _print_table(urls: Mapping[str, str], notes: list[str], base_port: int | None) -> None:
    table = Table(title="crmhub sandbox", show_header=True)
    table.add_column("API")
    table.add_column("base URL")
    table.add_column("inspect")
    for api, url in urls.items():
        table.add_row(api, url, f"{url}/_sandbox/state" if url.startswith("http") else "")
    console = Console()
    console.print(table)
    for note in notes:
        console.print(note, highlight=False)
    pointer = "{enabled: true}" if base_port is None else f"{{enabled: true, base_port: {base_port}}}"
    more = "" if base_port is None else f" --base-port {base_port}"
    console.print(f"Ctrl-C to stop. Point settings at it with [bold]sandbox: {pointer}[/]; play a customer with "
                  f"[bold]crmhub sandbox inbound sms --from +14155550123 --text hello{more}[/], or an email with "
                  f"[bold]crmhub sandbox inbound email --from ana@example.net --subject hi --text hello{more}[/] "
                  "(IMAP/SMTP login support@crmhub.test, password sandbox-mail-password).", highlight=False)
