"""``trailpay kafka install``: the Apache Kafka broker's jars, from Maven Central.

The broker runs from the runtime jars of ``org.apache.kafka:kafka_2.13`` (plus the SLF4J
backend Kafka's POM leaves out), listed in ``kafka/pom.xml``. Maven copies them into a cache
directory, by default ``~/.cache/trailpay/kafka/<version>`` (``TRAILPAY_KAFKA_HOME``
overrides it). The version is the pom's pin unless ``TRAILPAY_KAFKA_VERSION`` names another:
Maven then gets ``-Dkafka.version`` and, for Kafka 4 (log4j 2, not reload4j), the pom's
``log4j2`` logging profile. A marker file written last says the copy is complete, so a second install
is a no-op and an interrupted one is redone. Each jar Maven downloads is shown as it comes.
Measured here: 8-12 s with an empty ``~/.m2`` (46 MB of jars), 3 s when Maven has them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trailpay.domain.errors import ConfigurationError
from trailpay.settings import Settings

POM = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"
MARKER = "INSTALLED"
MIN_JAVA = 17
JAVA_HINT = ("install a Java 17+ runtime (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) "
             "or run on tansu: trailpay up --broker tansu")
MVN_HINT = ("install Apache Maven (Debian/Ubuntu: apt-get install maven), "
            "or run on tansu: trailpay up --broker tansu")


def pom_version(pom: Path = POM) -> str:
    """The Kafka version ``kafka/pom.xml`` pins (the one source of that number)."""
    try:
        text = pom.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"{pom} is missing; run TrailPay from its source checkout") from None
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", text)
    if found is None:
        raise ConfigurationError(f"{pom} has no <kafka.version> property")
    return found.group(1).strip()


def selected_version(settings: Settings) -> str:
    """The Kafka version to install and run: ``TRAILPAY_KAFKA_VERSION``, else the pom's pin."""
    return settings.kafka_version or pom_version()


def major(version: str) -> int:
    return int(version.split(".", 1)[0])


def logging_backend(version: str) -> str:
    """The SLF4J backend of ``version``: Kafka 4 moved from reload4j to log4j 2 (KIP-653)."""
    return "log4j2" if major(version) >= 4 else "reload4j"


def default_home(version: str) -> Path:
    return Path.home() / ".cache" / "trailpay" / "kafka" / version


def kafka_home(settings: Settings, version: str | None = None) -> Path:
    """Where the jars of ``version`` (default: the selected one) are, or go."""
    return settings.kafka_home or default_home(version or selected_version(settings))


def installed_version(home: Path) -> str | None:
    """The version a complete install in ``home`` holds, or None when there is none."""
    try:
        return (home / MARKER).read_text().strip() or None
    except FileNotFoundError:
        return None


def installed(home: Path, version: str | None = None) -> bool:
    """A complete install is in ``home`` (of ``version``, when given)."""
    found = installed_version(home)
    return found is not None and (version is None or found == version)


@dataclass(frozen=True)
class Java:
    path: str
    major: int


def find_java() -> Java | None:
    """The ``java`` on PATH and its major version, or None when there is none."""
    path = shutil.which("java")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    if major == 1 and found.group(2):  # "1.8.0_x" is Java 8
        major = int(found.group(2))
    return Java(path, major)


def require_java() -> Java:
    java = find_java()
    if java is None:
        raise ConfigurationError(f"no `java` on PATH; Apache Kafka needs Java {MIN_JAVA}+: {JAVA_HINT}")
    if java.major < MIN_JAVA:
        raise ConfigurationError(f"{java.path} is Java {java.major}; Apache Kafka {pom_version()} "
                                 f"needs Java {MIN_JAVA}+: {JAVA_HINT}")
    return java


def _maven(argv: list[str], echo: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run Maven, showing one line per file it downloads; (exit code, its last lines)."""
    tail: deque[str] = deque(maxlen=15)
    downloads = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            # "[INFO] Downloaded from central: https://.../kafka_2.13-3.9.2.jar (6.5 MB at 3 MB/s)"
            text = line.removeprefix("[INFO] ")
            url = text.split(": ", 1)[-1].split(" ")[0]
            if text.startswith("Downloaded from") and url.endswith(".jar"):
                downloads += 1
                echo(f"  [{downloads}] {url.rsplit('/', 1)[-1]}")
    return proc.returncode, list(tail)


def maven_argv(mvn: str, version: str, jars: Path) -> list[str]:
    """Maven's command line for ``version``: the pinned 3.9.2 exactly as the pom has it; the
    pom's log4j2 profile for any 4.x (pinned one day too: Maven cannot pick a profile by a
    version range, so this does)."""
    argv = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={jars}"]
    if version != pom_version():
        argv.append(f"-Dkafka.version={version}")
    if logging_backend(version) == "log4j2":
        argv.append("-Dkafka.logging=log4j2")
    return argv


def install(home: Path, *, version: str | None = None, echo: Callable[[str], None] = print,
            force: bool = False) -> bool:
    """Copy the runtime jars of ``version`` (default: the pom's) into ``home``; False when
    they were there already. Another version's install in ``home`` is replaced."""
    version = version or pom_version()
    if installed(home, version) and not force:
        echo(f"Apache Kafka {version} is already installed in {home}")
        return False
    if (other := installed_version(home)) is not None and other != version:
        echo(f"{home} holds Apache Kafka {other}; replacing it with {version}")
    require_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigurationError(f"no `mvn` on PATH; installing Apache Kafka needs Maven: {MVN_HINT}")
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).unlink(missing_ok=True)
    jars = home / "libs"
    shutil.rmtree(jars, ignore_errors=True)
    echo(f"Installing Apache Kafka {version} from Maven Central into {home} (about 50 MB)...")
    started = time.monotonic()
    code, tail = _maven(maven_argv(mvn, version, jars), echo)
    if code != 0:
        raise ConfigurationError(
            f"Maven could not fetch Apache Kafka {version} (exit {code}); check "
            "that Maven Central is reachable (proxy settings in ~/.m2/settings.xml). Maven said:\n"
            + "\n".join(tail))
    if not (jars / f"kafka_2.13-{version}.jar").exists():
        raise ConfigurationError(f"Maven finished but {jars} has no kafka_2.13-{version}.jar")
    count = len(list(jars.glob("*.jar")))
    (home / MARKER).write_text(f"{version}\n")
    echo(f"Installed {count} jars in {time.monotonic() - started:.0f}s.")
    return True
