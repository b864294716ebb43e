"""How long a record produced into an idle partition takes to reach a consumer, by the
consumer's ``fetch_max_wait_ms``, on a tansu broker of its own (memory storage).

    python benchmarks/results/profiles/fetch_wait_latency.py
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from controlplane.stack.embedded import tansu_binary

RECORDS = 30


async def measure(bootstrap: str, wait_ms: int) -> list[float]:
    topic = f"latency-{wait_ms}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, fetch_max_wait_ms=wait_ms,
                                group_id=None, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    seen: list[float] = []

    async def consume() -> None:
        while len(seen) < RECORDS:
            for records in (await consumer.getmany(timeout_ms=2000)).values():
                now = time.time()
                seen.extend((now - float(r.value or b"0")) * 1000 for r in records)

    task = asyncio.create_task(consume())
    await asyncio.sleep(1)
    for _ in range(RECORDS):
        await asyncio.sleep(random.uniform(0.05, 0.3))  # idle gaps, not a backlog
        await producer.send_and_wait(topic, str(time.time()).encode())
    await task
    await consumer.stop()
    await producer.stop()
    return sorted(seen)


async def main(bootstrap: str) -> None:
    print(f"{'fetch_max_wait_ms':>17} {'p50 ms':>7} {'max ms':>7}")
    for wait_ms in (1500, 500, 100, 20):
        seen = await measure(bootstrap, wait_ms)
        print(f"{wait_ms:>17} {seen[len(seen) // 2]:>7.0f} {seen[-1]:>7.0f}")


if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", address,
                               "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        asyncio.run(main(f"127.0.0.1:{port}"))
    finally:
        broker.kill()
