"""`trailpay kafka install`: copies the broker's jars with Maven once; a second run keeps them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("java") and shutil.which("mvn")), reason="needs java and mvn"),
]


def _install(target: Path, version: str | None = None) -> subprocess.CompletedProcess[str]:
    """`trailpay kafka install --dir target` with TRAILPAY_KAFKA_VERSION=version (unset: the pin)."""
    env = {k: v for k, v in os.environ.items() if k != "TRAILPAY_KAFKA_VERSION"}
    if version is not None:
        env["TRAILPAY_KAFKA_VERSION"] = version
    return subprocess.run([sys.executable, "-m", "controlplane.cli.main", "kafka", "install",
                           "--dir", str(target)], capture_output=True, text=True, timeout=600, env=env)


def test_install_then_install_again_is_a_no_op(tmp_path: Path) -> None:
    target = tmp_path / "kafka"
    first = _install(target)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Installed" in first.stdout
    assert (target / "INSTALLED").read_text() == "3.9.2\n"
    assert (target / "libs" / "kafka_2.13-3.9.2.jar").exists()
    assert (target / "libs" / "reload4j-1.2.25.jar").exists()
    assert (target / "libs" / "slf4j-reload4j-1.7.36.jar").exists()
    jars = sorted(p.name for p in (target / "libs").iterdir())

    started = time.monotonic()
    second = _install(target)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already installed" in second.stdout
    assert sorted(p.name for p in (target / "libs").iterdir()) == jars
    assert time.monotonic() - started < 30


def test_install_without_mvn_says_what_to_do(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = shutil.which("java")
    assert java is not None
    (bin_dir / "java").symlink_to(java)
    result = subprocess.run([sys.executable, "-m", "controlplane.cli.main", "kafka", "install",
                             "--dir", str(tmp_path / "k")], capture_output=True, text=True,
                            timeout=120, env={"PATH": str(bin_dir), "HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no `mvn` on PATH" in result.stderr
    assert not (tmp_path / "k" / "INSTALLED").exists()


def test_kafka_4_installs_with_log4j2_and_replaces_another_version(tmp_path: Path) -> None:
    """TRAILPAY_KAFKA_VERSION=4.1.1: the pom's log4j2 profile instead of reload4j; a home that
    holds another version is reinstalled, not taken for installed."""
    target = tmp_path / "kafka"
    first = _install(target, "4.1.1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (target / "INSTALLED").read_text() == "4.1.1\n"
    jars = {p.name for p in (target / "libs").iterdir()}
    assert {"kafka_2.13-4.1.1.jar", "log4j-api-2.24.3.jar", "log4j-core-2.24.3.jar",
            "log4j-slf4j-impl-2.24.3.jar", "slf4j-api-1.7.36.jar"} <= jars
    assert not {j for j in jars if "reload4j" in j}

    back = _install(target)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "holds Apache Kafka 4.1.1; replacing it with 3.9.2" in back.stdout
    assert (target / "INSTALLED").read_text() == "3.9.2\n"
    jars = {p.name for p in (target / "libs").iterdir()}
    assert {"kafka_2.13-3.9.2.jar", "reload4j-1.2.25.jar", "slf4j-reload4j-1.7.36.jar"} <= jars
    assert not {j for j in jars if j.startswith("log4j-")}
