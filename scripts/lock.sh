#!/usr/bin/env bash
# The pinned versions every install uses (requirements.lock, a pip constraints file).
#   bash scripts/lock.sh          re-resolve pyproject.toml, keeping the pins that still fit
#   bash scripts/lock.sh --check  fail (exit 1, with the diff) when the lock no longer matches
#                                 pyproject.toml; run by scripts/test.sh
#   bash scripts/lock.sh --upgrade  move every pin to the newest release that fits
# Needs uv (a dev dependency) and PyPI. One target: CPython 3.11 on linux x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
if ! command -v "$UV" >/dev/null 2>&1 && [ -x .venv/bin/uv ]; then
  UV=.venv/bin/uv
fi
compile() {
  "$UV" pip compile pyproject.toml --extra embedded --extra dev \
    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command "bash scripts/lock.sh" --quiet "$@"
}
case "${1:-}" in
  --check)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # uv keeps the pins it finds in the output file, so a lock that still fits comes out as is.
    cp requirements.lock "$tmp/requirements.lock"
    compile -o "$tmp/requirements.lock"
    if ! diff -u requirements.lock "$tmp/requirements.lock"; then
      echo "requirements.lock does not match pyproject.toml: run 'bash scripts/lock.sh' and commit it" >&2
      exit 1
    fi
    ;;
  --upgrade) compile --upgrade -o requirements.lock ;;
  "") compile -o requirements.lock ;;
  *) echo "usage: $0 [--check|--upgrade]" >&2; exit 2 ;;
esac
