"""Child processes of the embedded stack: start, wait for readiness, stop, leave nothing behind."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Run in the child before exec: the kernel sends SIGTERM when the supervisor dies,
    so a killed ``trailpay up`` leaves no orphan behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


#: Where listening ports are picked when the kernel's ephemeral range cannot be read.
_FALLBACK_EPHEMERAL_LOW = 32768
#: The lowest port picked: above the registered services most machines run.
_LOWEST_PICKED = 20000
_handed_out: set[int] = set()
#: Its own generator: a test that seeds ``random`` must not make parallel processes pick alike.
_pick = random.SystemRandom()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' local ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a child to listen on later.

    Picked below the kernel's ephemeral range: a port the kernel hands out (``bind`` to 0)
    is free only until the next outgoing connection takes it as its local port, and a child
    that binds it seconds later then fails (seen in CI: Kafka's controller "failed to bind
    to 127.0.0.1:48023: Address already in use"). Ports below the range are only ever taken
    by an explicit bind; random picks keep parallel test processes apart, and one process
    never hands out the same port twice."""
    low = _ephemeral_low()
    if low - _LOWEST_PICKED >= 1000:
        for _ in range(200):
            port = _pick.randrange(_LOWEST_PICKED, low)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s")


class ChildProcess:
    """One supervised child: its command, its log file, and how to stop it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.stop_signal = stop_signal
        self.user = user
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                user=self.user,
                cwd=self.cwd,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        finally:
            logfile.close()
        log.info("started %s (pid %s), log %s", self.name, self.proc.pid, self.log_path)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        # Anything the child left in its process group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        log.info("stopped %s", self.name)

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


#: Starts of a service that exits before it is ready, before ``trailpay up`` gives up.
START_ATTEMPTS = 3


def wait_started(child: ChildProcess, ready: Callable[[], bool], timeout: float,
                 attempts: int = START_ATTEMPTS) -> None:
    """Until ``child`` runs and ``ready()``; a child that exits first is started again, up to
    ``attempts`` starts in all (seen in CI under load: a stream worker exited at start with
    "Controller node not found" while a just-started Kafka still elected its controller).
    A service that cannot start at all still fails, with its log, after the last one."""
    started = [1]

    def check() -> bool:
        if not child.running():
            if started[0] >= attempts:
                raise RuntimeError(f"{child.name} exited at start ({attempts} starts); "
                                   f"its log:\n{child.tail()}")
            started[0] += 1
            log.warning("%s exited at start with %s; starting it again (start %d of %d). Last lines:\n%s",
                        child.name, child.exit_code(), started[0], attempts, child.tail(5))
            child.start()
            return False
        return ready()

    wait_until(check, timeout, child.name, interval=0.25)
