"""Children of the embedded stack: ports picked for them, and starts that fail at first."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from controlplane.stack import processes
from controlplane.stack.processes import free_port


def test_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    """A port from the ephemeral range can be taken by any outgoing connection before the
    child binds it (CI: Kafka's controller failed to bind 127.0.0.1:48023)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert all(20000 <= p < low for p in ports)
    assert len(set(ports)) == 300


def test_a_seeded_random_does_not_make_two_processes_pick_alike() -> None:
    random.seed(9)
    first = [free_port() for _ in range(5)]
    random.seed(9)
    second = [free_port() for _ in range(5)]
    assert set(first).isdisjoint(second)


def test_a_port_something_listens_on_is_not_picked(monkeypatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        calls = iter([taken, taken + 1])
        monkeypatch.setattr(processes, "_ephemeral_low", lambda: 65000)
        monkeypatch.setattr(processes._pick, "randrange", lambda a, b: next(calls))
        assert free_port() == taken + 1


def test_a_service_that_exits_at_start_is_started_again(tmp_path: Path) -> None:
    """A stream worker exited at start while a just-started Kafka elected its controller
    (CI under load): ``trailpay up`` starts it again instead of failing."""
    marker, ready = tmp_path / "started-once", tmp_path / "ready"
    script = f"if [ -f {marker} ]; then touch {ready}; exec sleep 30; fi; touch {marker}; exit 3"
    child = processes.ChildProcess("flaky", ["sh", "-c", script], log_path=tmp_path / "flaky.log")
    child.start()
    try:
        processes.wait_started(child, ready.exists, timeout=20)
        assert child.running()
    finally:
        child.stop(timeout=5)


def test_a_service_that_cannot_start_fails_after_its_last_start(tmp_path: Path) -> None:
    child = processes.ChildProcess("broken", ["sh", "-c", "echo cannot start; exit 3"],
                                   log_path=tmp_path / "broken.log")
    child.start()
    with pytest.raises(RuntimeError, match=r"broken exited at start \(3 starts\); its log:\n.*cannot start"):
        processes.wait_started(child, lambda: False, timeout=20)
    assert (tmp_path / "broken.log").read_text().count("cannot start") == 3
