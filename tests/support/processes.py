"""Child processes for tests and benchmarks: their environment, start, readiness and stop.

Every child gets :func:`clean_env`: the caller's environment without any ``TRAILPAY_*``
variable (a developer's own settings must never reach a test's services), plus exactly what
the test gives it. Children run in a process group of their own, so stopping one stops what
it started too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from controlplane.stack.state import STACK_FILE, StackInfo
from tests.support.waits import wait_for_sync
from trailpay.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


#: Kept by :func:`clean_env`: where the Apache Kafka jars are is a fact of this machine, not
#: configuration of the stack under test.
MACHINE_VARIABLES = ("TRAILPAY_KAFKA_HOME", "TRAILPAY_KAFKA_VERSION")


#: Settings every test child starts with unless the caller names them: a customer decline
#: (Daraja 1/1032/2001, Airtel TF) leaves the payment waiting this long for a retry before
#: it ends ``failed``/``cancelled`` (180 s in production). 4 s keeps the suites that wait for
#: those ends fast; a test that retries after seeing the failed attempt sets a longer one.
TEST_DEFAULTS = {"TRAILPAY_MOBILE_RETRY_WINDOW_S": "4"}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``TRAILPAY_*`` variables (but
    :data:`MACHINE_VARIABLES`), plus :data:`TEST_DEFAULTS`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TRAILPAY_") or k in MACHINE_VARIABLES}
    env.update(TEST_DEFAULTS)
    env.update(extra)
    return env


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """:func:`clean_env` plus what a service needs to find the stack of ``settings``;
    ``extra`` adds to it or overrides it."""
    return clean_env(**{"TRAILPAY_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
                        "TRAILPAY_DATABASE_URL": settings.database_url or "",
                        "TRAILPAY_PARTITIONS": str(settings.partitions),
                        "TRAILPAY_DATA_DIR": str(settings.data_path),
                        "PYTHONUNBUFFERED": "1", **extra})


def trailpay_argv(*args: str) -> list[str]:
    """``trailpay <args>`` as this interpreter runs it (no installed script needed)."""
    return [sys.executable, "-m", "controlplane.cli.main", *args]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group, no goodbye (the crash tests inflict)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM the child's process group; SIGKILL it if it has not exited in ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)


def stop_tree(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM a supervisor and let it stop its children; then SIGKILL whatever is left."""
    kids = descendants(proc.pid) if proc.poll() is None else []
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _gone, alive = psutil.wait_procs(kids, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


@dataclass
class ChildProcess:
    """A child in its own process group, its output in a log file."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ChildProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=True)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 90, after: int = 0) -> None:
        """Until ``text`` is in the log (after byte ``after``); fails at once if the child exits."""
        def seen() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.argv[1:])} exited {self.proc.returncode}:\n"
                                   f"{self.log_text()[-3000:]}")
            return text in self.log_text()[after:]

        try:
            wait_for_sync(seen, timeout, f"{text!r} in {self.log_path.name}")
        except AssertionError:
            raise TimeoutError(f"{text!r} not seen after {timeout}s:\n{self.log_text()[-3000:]}") from None

    def kill(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is not None:
            stop_group(self.proc, timeout)


@dataclass
class StackProcess:
    """`trailpay up` on a data directory, once its stack.json names its processes."""

    data_dir: Path
    proc: subprocess.Popen[bytes]
    info: StackInfo
    settings: Settings

    def pids(self) -> dict[str, int]:
        """Service -> pid, as stack.json says now (the supervisor restarts services)."""
        with contextlib.suppress(Exception):
            self.info = StackInfo.read(self.data_dir)
        return {name: pid for name, pid in self.info.processes.items() if pid}


def start_stack_process(data_dir: Path, env: dict[str, str] | None = None,
                        timeout: float = 180, args: tuple[str, ...] = ()) -> StackProcess:
    """Start `trailpay up --port 0 [args]` on ``data_dir`` (output in up.log) and wait until it is up."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STACK_FILE).unlink(missing_ok=True)
    up_log = data_dir / "up.log"
    with up_log.open("ab") as log:
        proc = subprocess.Popen(trailpay_argv("up", "--data-dir", str(data_dir), "--port", "0", *args),
                                stdout=log, stderr=subprocess.STDOUT, env=clean_env(**(env or {})),
                                cwd=ROOT, start_new_session=True)

    def started() -> StackInfo | None:
        if proc.poll() is not None:
            raise RuntimeError(f"trailpay up exited {proc.returncode}:\n{up_log.read_text()[-4000:]}")
        if not (data_dir / STACK_FILE).exists():
            return None
        try:
            info = StackInfo.read(data_dir)
        except Exception:  # half written: read it again at the next poll
            return None
        return info if info.processes else None

    try:
        info = wait_for_sync(started, timeout, "trailpay up", interval=0.3)
    except AssertionError:
        proc.kill()
        raise TimeoutError(f"stack not up after {timeout}s:\n{up_log.read_text()[-4000:]}") from None
    settings = load_settings(**info.settings_overrides(), data_dir=data_dir)
    return StackProcess(data_dir, proc, info, settings)
