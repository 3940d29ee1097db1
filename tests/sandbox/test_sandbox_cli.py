"""`crmhub sandbox --json`: every emulator up, their URLs printed, clean stop on SIGTERM."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from crmhub.sandbox import DEFAULT_PORTS


def free_base_port() -> int:
    """A base port with every sandbox port free after it, away from the demo's 8700-8708.

    Below the kernel's ephemeral range: every port-0 server and outgoing connection of the other test
    workers takes its port from that range, and one did take a port between this check and the sandbox's
    bind ("Address already in use" in CI).
    """
    rng = random.Random()
    highest = _ephemeral_low() - len(DEFAULT_PORTS)
    if highest <= 20_001:  # an ephemeral range reaching that low leaves no quiet block: take any free one
        highest = 60_000
    for _ in range(50):
        base = rng.randrange(20000, highest)
        sockets = []
        try:
            for port in range(base, base + len(DEFAULT_PORTS)):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {len(DEFAULT_PORTS)} consecutive free ports found")


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for port 0 (Linux's default where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def test_sandbox_json_prints_every_api_and_stops_on_sigterm() -> None:
    base = free_base_port()
    process = subprocess.Popen([sys.executable, "-m", "crmhub", "sandbox", "--json", "--base-port", str(base)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed only once every server listens
        urls = json.loads(line)
        assert urls == {api: f"{api.partition('-')[2] or 'http'}://127.0.0.1:{base + i}"
                        for i, api in enumerate(DEFAULT_PORTS)}
        for api, url in urls.items():
            if url.startswith("http:"):
                routes = requests.get(f"{url}/_sandbox/routes", timeout=10)
                assert routes.status_code == 200 and (routes.json() or api == "mail"), api  # mail: only /_sandbox/
            else:  # a listener of another protocol (the mail server's SMTP and IMAP) takes a connection
                socket.create_connection(("127.0.0.1", base + list(DEFAULT_PORTS).index(api)), timeout=10).close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
