"""`crmhub sandbox --json`: six emulators up, their URLs printed, clean stop on SIGTERM."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys

import requests

from crmhub.sandbox import DEFAULT_PORTS


def free_base_port() -> int:
    """A base port with six free ports after it, away from the demo's 8700-8705."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000)
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
    raise RuntimeError("no five consecutive free ports found")


def test_sandbox_json_prints_every_api_and_stops_on_sigterm() -> None:
    base = free_base_port()
    process = subprocess.Popen([sys.executable, "-m", "crmhub", "sandbox", "--json", "--base-port", str(base)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed only once every server listens
        urls = json.loads(line)
        assert urls == {api: f"http://127.0.0.1:{base + i}" for i, api in enumerate(DEFAULT_PORTS)}
        for api, url in urls.items():
            routes = requests.get(f"{url}/_sandbox/routes", timeout=10)
            assert routes.status_code == 200 and routes.json(), api
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
