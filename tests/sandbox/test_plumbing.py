"""The shared emulator plumbing: routing, not-emulated answers, faults, counters, clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from crmhub.sandbox import Emulator, EmulatorServer, Fault
from crmhub.sandbox._server import Route, json_response


class CounterEmulator(Emulator):
    name = "counter"

    def initial_state(self) -> dict[str, int]:
        return {"n": 0}

    def routes(self) -> list[Route]:
        def bump(request: object) -> object:
            self.state["n"] += 1
            return json_response({"n": self.state["n"]})

        return [Route(("GET", "POST"), "/bump", bump), Route(("POST",), "/token", bump, billable=False)]


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(CounterEmulator()) as s:
        yield s


def test_unknown_endpoint_says_not_emulated_with_method_and_path(server: EmulatorServer) -> None:
    response = requests.delete(f"{server.url}/nowhere")
    assert response.status_code == 501
    assert response.json()["method"] == "DELETE"
    assert response.json()["path"] == "/nowhere"


def test_calls_are_counted_per_endpoint_and_free_ones_are_not(server: EmulatorServer) -> None:
    requests.get(f"{server.url}/bump")
    requests.post(f"{server.url}/bump")
    requests.post(f"{server.url}/token")
    calls = requests.get(f"{server.url}/_sandbox/calls").json()
    assert calls == {"total": 2, "by_endpoint": {"GET /bump": 1, "POST /bump": 1}}


def test_rate_limit_fault_answers_429_with_retry_after_then_recovers(server: EmulatorServer) -> None:
    requests.post(f"{server.url}/_sandbox/faults", json={"kind": "rate_limit", "retry_after": 2.5, "times": 1})
    first = requests.get(f"{server.url}/bump")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "3")
    assert requests.get(f"{server.url}/bump").json() == {"n": 1}


def test_server_error_fault_honours_status_count_and_skip(server: EmulatorServer) -> None:
    server.emulator.faults.add(Fault("server_error", status=502, times=2, skip=1))
    codes = [requests.get(f"{server.url}/bump").status_code for _ in range(4)]
    assert codes == [200, 502, 502, 200]


def test_reset_fault_drops_the_connection(server: EmulatorServer) -> None:
    server.emulator.faults.add(Fault("reset", path="^/bump$"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/bump")
    assert server.emulator.state["n"] == 0


def test_reset_after_fault_does_the_work_and_loses_the_answer(server: EmulatorServer) -> None:
    server.emulator.faults.add(Fault("reset", path="^/bump$", after=True))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/bump")
    assert server.emulator.state["n"] == 1
    assert requests.get(f"{server.url}/bump").status_code == 200 and server.emulator.state["n"] == 2


def test_fault_bounded_by_sandbox_time_ends_when_clock_passes(server: EmulatorServer) -> None:
    clock = server.emulator.clock
    server.emulator.faults.add(Fault("server_error", times=None, until=clock.time() + 600))
    assert requests.get(f"{server.url}/bump").status_code == 503
    requests.post(f"{server.url}/_sandbox/clock", json={"advance": 601})
    assert requests.get(f"{server.url}/bump").status_code == 200


def test_reset_endpoint_empties_state_faults_and_counters(server: EmulatorServer) -> None:
    requests.get(f"{server.url}/bump")
    server.emulator.faults.add(Fault("rate_limit", times=None))
    requests.post(f"{server.url}/_sandbox/reset")
    assert requests.get(f"{server.url}/_sandbox/state").json() == {"n": 0}
    assert requests.get(f"{server.url}/_sandbox/faults").json() == []
    assert requests.get(f"{server.url}/bump").status_code == 200


def test_state_persists_to_file_and_reloads(tmp_path: object) -> None:
    path = tmp_path / "state.json"  # type: ignore[operator]  # pytest's tmp_path is a Path
    with EmulatorServer(CounterEmulator(state_file=path)) as s:
        requests.post(f"{s.url}/bump")
    assert CounterEmulator(state_file=path).state == {"n": 1}
