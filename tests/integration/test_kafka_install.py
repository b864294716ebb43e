"""`trailpay kafka install`: copies the broker's jars with Maven once; a second run keeps them."""

from __future__ import annotations

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


def _install(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlplane.cli.main", "kafka", "install",
                           "--dir", str(target)], capture_output=True, text=True, timeout=600)


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
