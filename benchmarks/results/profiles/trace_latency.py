"""Where one callback's time goes: Kafka timestamps of each stage, then the PostgreSQL write.

    PYTHONPATH=. python benchmarks/results/profiles/trace_latency.py
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.e2e import mpesa_success
from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_mobile, wait_rows
from tests.stackutil import stack_dir, start_stack, stop_stack

STAGES = ("webhooks.raw.v1", "provider.events.v1", "payments.state.v1")


async def main() -> None:
    data_dir = stack_dir("trace")
    stack = start_stack(data_dir, env={"TRAILPAY_LOG_LEVEL": "WARNING"})
    try:
        user = await make_user(stack.settings)
        sent: dict[str, float] = {}
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            refs = [await create_mobile(api, user, "mpesa", "0712345673") for _ in range(5)]
            rows = await wait_rows(stack.settings, refs,
                                   lambda r: r["status"] == "pending" and r["provider_reference"])
            await asyncio.sleep(2)
            token = stack.settings.mpesa_callback_token.get_secret_value()
            for ref in refs:
                sent[ref] = time.time() * 1000
                resp = await api.post(f"/api/payments/callback/mpesa/?token={token}&reference={ref}",
                                      content=mpesa_success(rows[ref]["provider_reference"], 150),
                                      headers={"Content-Type": "application/json"})
                assert resp.status_code == 200
                await asyncio.sleep(1.0)
        await wait_rows(stack.settings, refs, lambda r: r["status"] == "succeeded")
        consumer = AIOKafkaConsumer(*STAGES, bootstrap_servers=stack.settings.kafka_bootstrap,
                                    group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        stamps: dict[str, dict[str, int]] = {r: {} for r in refs}
        end = time.monotonic() + 5
        while time.monotonic() < end:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                for rec in records:
                    key = (rec.key or b"").decode()
                    if key in stamps:
                        value = json.loads(rec.value)
                        label = f"{tp.topic}:{value.get('to_status') or value.get('status')}"
                        stamps[key].setdefault(label, rec.timestamp)
        await consumer.stop()
        engine = create_async_engine(stack.settings.sqlalchemy_async_url())
        async with engine.connect() as conn:
            for ref in refs:
                written = (await conn.execute(text(
                    "SELECT extract(epoch FROM recorded_at) * 1000 FROM payment_events "
                    "WHERE reference = :r AND to_status = 'succeeded'"), {"r": ref})).scalar()
                t0 = sent[ref]
                stages = {k: int(v - t0) for k, v in sorted(stamps[ref].items(), key=lambda x: x[1])
                          if v >= t0 - 10}
                print(ref, stages, "postgres", int(float(written) - t0))
        await engine.dispose()
    finally:
        stop_stack(stack)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
