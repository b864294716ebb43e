"""requirements.lock pins every requirement of pyproject.toml, within its bounds.

The offline half of the lock check; ``bash scripts/lock.sh --check`` (in scripts/test.sh)
re-resolves against PyPI and also catches a changed transitive pin.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
TARGET = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"]]
    for extra in ("embedded", "dev"):
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def test_every_requirement_is_pinned_within_its_bounds() -> None:
    pins = _pins()
    wrong = []
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate(TARGET):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"{req} (lock: {pinned})")
    assert wrong == []


def test_patched_libraries_have_upper_bounds() -> None:
    bounded = {canonicalize_name(r.name): r for r in _requirements()}
    for name in ("faust-streaming", "aiokafka"):
        assert any(spec.operator == "<" for spec in bounded[name].specifier), name
