"""Ports picked for children to listen on later stay out of the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

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
