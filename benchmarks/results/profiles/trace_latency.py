import asyncio, json, time, httpx, uuid
from pathlib import Path
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.stackutil import start_stack, stop_stack, stack_dir
from tests.integration.ingressutil import make_user
from tests.integration.opsutil import create_mobile, wait_rows
from benchmarks.e2e import mpesa_success

async def main():
    d = stack_dir("trace")
    st = start_stack(d, env={"TRAILPAY_LOG_LEVEL": "WARNING"})
    try:
        user = await make_user(st.settings)
        async with httpx.AsyncClient(base_url=st.api_url, timeout=30) as api:
            refs = [await create_mobile(api, user, "mpesa", "0712345673") for _ in range(5)]
            rows = await wait_rows(st.settings, refs, lambda r: r["status"] == "pending" and r["provider_reference"])
            await asyncio.sleep(2)
            token = st.settings.mpesa_callback_token.get_secret_value()
            sent = {}
            for ref in refs:
                sent[ref] = time.time()*1000
                r = await api.post(f"/api/payments/callback/mpesa/?token={token}&reference={ref}", content=mpesa_success(rows[ref]["provider_reference"], 150), headers={"Content-Type": "application/json"})
                assert r.status_code == 200
                await asyncio.sleep(1.0)
        await wait_rows(st.settings, refs, lambda r: r["status"] == "succeeded")
        c = AIOKafkaConsumer("webhooks.raw.v1", "provider.events.v1", "payments.state.v1", bootstrap_servers=st.settings.kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
        await c.start()
        ts = {r: {} for r in refs}
        end = time.monotonic() + 5
        while time.monotonic() < end:
            b = await c.getmany(timeout_ms=300)
            for tp, recs in b.items():
                for rec in recs:
                    k = (rec.key or b"").decode()
                    if k in ts:
                        v = json.loads(rec.value)
                        label = tp.topic + (":" + str(v.get("to_status") or v.get("status") or v.get("kind")))
                        ts[k].setdefault(label, rec.timestamp)
        await c.stop()
        e = create_async_engine(st.settings.sqlalchemy_async_url())
        async with e.connect() as conn:
            for ref in refs:
                rec = (await conn.execute(text("select extract(epoch from recorded_at)*1000 from payment_events where reference=:r and to_status='succeeded'"), {"r": ref})).scalar()
                rcv = (await conn.execute(text("select extract(epoch from min(received_at))*1000 from provider_callbacks where reference=:r"), {"r": ref})).scalar()
                t0 = sent[ref]
                print(ref, {k: int(v - t0) for k, v in sorted(ts[ref].items(), key=lambda x: x[1]) if v >= t0 - 10}, "received", int(float(rcv) - t0), "pg", int(float(rec) - t0))
        await e.dispose()
    finally:
        stop_stack(st)
asyncio.run(main())
