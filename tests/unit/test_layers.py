"""The pure domain imports nothing but the domain, the standard library and pydantic.

import-linter (``lint-imports``, contracts in pyproject.toml) keeps the layers; this test
states the domain's rule as an allowlist, which a forbidden-list contract cannot."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "trailpay" / "domain"
THIRD_PARTY_ALLOWED = {"pydantic"}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_domain_imports_only_domain_stdlib_and_pydantic() -> None:
    offending: list[str] = []
    files = sorted(DOMAIN.glob("*.py"))
    assert len(files) >= 8, "the domain package moved: update DOMAIN"
    for path in files:
        for name in _imported(path):
            top = name.split(".")[0]
            if name == "trailpay.domain" or name.startswith("trailpay.domain."):
                continue
            if top in sys.stdlib_module_names or top == "__future__" or top in THIRD_PARTY_ALLOWED:
                continue
            offending.append(f"{path.name}: {name}")
    assert offending == []
