"""The incident: the embedded broker restarts empty (its records, the consumer offsets and the
state machine's table changelog were in memory). PostgreSQL and ClickHouse keep their data.

`trailpay up` (issue 19; by hand: `trailpay replay --from-archive --into pipeline`) puts the
archived state changes back on payments.state.v1: the sinks' tables come out equal to before, and the restore agent gives
the state machine its payments back, so a late M-Pesa callback for a payment left pending
before the restart is applied. Then the automatic deadline sweep settles a payment whose
callback never comes (the second `up` runs with 5 s deadlines).

Runs its own stack (stopped and started again on the same data directory; on Apache Kafka,
which keeps its records, the broker's log directory is deleted in between).
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from tests.integration.ingressutil import make_user
from tests.integration.opsutil import OPEN, create_card, create_mobile, snapshot, trailpay, wait_rows
from tests.integration.test_ops_observability import leaks
from tests.stackutil import RunningStack, start_stack, stop_stack
from tests.support.analytics import service_headers
from tests.support.rows import scalar
from tests.support.waits import wait_caught_up, wait_for
from trailpay import topics

pytestmark = pytest.mark.integration

SETTLED = {"succeeded", "failed", "cancelled", "expired", "refunded", "partially_refunded"}
#: What `replay --from-archive` re-publishes, and the sinks' groups on those topics.
REPLAYED = (topics.PAYMENT_STATE, topics.WEBHOOKS_RAW)
SINKS = {topics.POSTGRES_SINK_GROUP: REPLAYED, topics.CLICKHOUSE_SINK_GROUP: REPLAYED}


async def _clickhouse_counts(stack: RunningStack) -> dict[str, int]:
    url = stack.dashboard_url
    async with httpx.AsyncClient(timeout=30, headers=service_headers(stack.settings)) as client:
        body = (await client.get(f"{url}/api/sink/clickhouse/counts")).json()
    return {table: v["final"] for table, v in body["tables"].items()}


async def _metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _late_mpesa_success(checkout_request_id: str, amount: int, phone: str) -> bytes:
    return json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "29115-34620561-1", "CheckoutRequestID": checkout_request_id,
        "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": amount}, {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
            {"Name": "TransactionDate", "Value": 20261126102115}, {"Name": "PhoneNumber", "Value": int(phone)},
        ]}}}}).encode()


async def test_archive_replay_after_broker_restart_restores_sinks_and_state_machine(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("ops-restart")
    stack = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": "DEBUG"})
    try:
        user = await make_user(stack.settings)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            done_refs = [await create_mobile(api, user, "mpesa", "0712345670"),
                         await create_mobile(api, user, "airtel", "0733000008"),
                         await create_mobile(api, user, "mpesa", "0712345671"),  # insufficient funds
                         await create_card(api, user)]
            waiting = await create_mobile(api, user, "mpesa", "0712345673")  # no callback ever
        refs = [*done_refs, waiting]
        await wait_rows(stack.settings, done_refs, lambda r: r["status"] in SETTLED, timeout=90)
        rows = await wait_rows(stack.settings, [waiting],
                               lambda r: r["status"] == "pending" and r["provider_reference"], timeout=60)
        await wait_caught_up(stack.settings, SINKS, 60, "the last sink batches (webhook archive, ClickHouse)")
        before = await snapshot(stack.settings, refs)
        ch_before = await _clickhouse_counts(stack)
        assert ch_before["payments"] >= 5
    finally:
        stop_stack(stack)

    # The incident: same data directory, the broker starts empty. Shorter deadlines this time.
    # (Apache Kafka keeps its log directory across restarts: lose it, as tansu loses its memory.)
    shutil.rmtree(data_dir / "kafka", ignore_errors=True)
    stack = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": "DEBUG", "TRAILPAY_PENDING_DEADLINE_S": "5",
                                       "TRAILPAY_PROCESSING_DEADLINE_S": "5"})
    try:
        assert await snapshot(stack.settings, refs) == before  # PostgreSQL kept everything
        # `up` restored the pipeline from the archive by itself (issue 19): the broker holds
        # the archived payments again. The runbook's replay on top of it changes nothing.
        lag = await trailpay(stack, "lag", "--json")
        # the newest change of each payment (controlplane.ops.records.latest_for_pipeline)
        archived = await scalar(stack.settings, "SELECT count(DISTINCT reference) FROM payment_events")
        assert archived == len(refs)
        assert sum(r["end"] for r in json.loads(lag.stdout) if r["topic"] == "payments.state.v1"
                   and r["group"] == stack.settings.worker_id) == archived

        replayed = await trailpay(stack, "replay", "--from-archive", "--into", "pipeline")
        assert "payments.state.v1" in replayed.stdout and "webhooks.raw.v1" in replayed.stdout
        worker_metrics = stack.refresh().metrics_urls["worker"]
        await wait_for(lambda: _restored(stack), 60, "the restore agent's log line", interval=0.5)
        # Nothing changes: the worker and the sinks have committed every replayed record.
        await wait_caught_up(stack.settings, {stack.settings.worker_id: REPLAYED, **SINKS}, 60,
                             "the replayed archive through the worker and the sinks")
        assert await snapshot(stack.settings, refs) == before
        assert await _clickhouse_counts(stack) == ch_before

        # The late callback for the payment left pending before the restart is applied.
        pending_row = rows[waiting]
        body = _late_mpesa_success(pending_row["provider_reference"], pending_row["amount_minor"] // 100,
                                   "254712345673")
        token = stack.settings.mpesa_callback_token.get_secret_value()
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            resp = await api.post(f"/api/payments/callback/mpesa/?token={token}&reference={waiting}",
                                  content=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 200, resp.text
            after = await wait_rows(stack.settings, [waiting], lambda r: r["status"] not in OPEN, timeout=60)
            assert after[waiting]["status"] == "succeeded", after[waiting]
            assert after[waiting]["version"] == pending_row["version"] + 1
            assert after[waiting]["settled_by"] == "callback"

            # A new payment whose callback never comes ends terminal through the automatic sweep.
            lost = await create_mobile(api, user, "mpesa", "0712345603")
        swept = await wait_rows(stack.settings, [lost], lambda r: r["status"] not in OPEN, timeout=60)
        assert swept[lost]["status"] == "expired" and swept[lost]["settled_by"] == "sweep", swept[lost]
        assert swept[lost]["provider_code"] == "1037"
        assert await _metric(worker_metrics, 'trailpay_sweep_actions_total{action="query",provider="mpesa"}') >= 1
    finally:
        stop_stack(stack)
    # Both runs logged at DEBUG: still no phone number, secret, token or card number anywhere.
    problems = [f"{path.name}: {leak}: {line[:160]}"
                for path in sorted((data_dir / "logs").glob("*.log"))
                for line in path.read_text(errors="replace").splitlines()
                for leak in leaks(line, [stack.settings.mpesa_callback_token.get_secret_value(),
                                         stack.settings.stripe_api_key.get_secret_value()])]
    assert not problems, "\n".join(problems[:30])


async def _restored(stack) -> bool:
    log = (stack.data_dir / "logs" / "worker.log").read_text(errors="replace")
    return "restored" in log.split("Worker ready")[-1] or "restored" in log[-20000:]
