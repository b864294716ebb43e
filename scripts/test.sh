#!/usr/bin/env bash
# Sets up a virtualenv, installs TrailPay with its embedded and dev extras, then runs
# lint (ruff), type checks (mypy) and the whole pytest suite. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[embedded,dev]'
echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== pytest"
mkdir -p test-artifacts
python -m pytest -p no:cacheprovider -q -rs --durations=15 "$@"
