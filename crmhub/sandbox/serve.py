"""`crmhub sandbox`: the five emulators on fixed ports until interrupted."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crmhub.sandbox.runner import fixed_ports, running_sandbox


def serve_forever(*, base_port: int | None = None, state_dir: Path | None = None, as_json: bool = False) -> None:
    """Start the sandbox, print where each API is, and wait for Ctrl-C or SIGTERM."""
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with running_sandbox(fixed_ports(base_port), state_dir=state_dir) as servers:
        urls = {api: server.url for api, server in servers.items()}
        if as_json:
            print(json.dumps(urls), flush=True)
        else:
            table = Table(title="crmhub sandbox", show_header=True)
            table.add_column("API")
            table.add_column("base URL")
            table.add_column("inspect")
            for api, url in urls.items():
                table.add_row(api, url, f"{url}/_sandbox/state")
            console = Console()
            console.print(table)
            console.print("Ctrl-C to stop. Point settings at it with [bold]sandbox: {enabled: true}[/].")
        stop.wait()
