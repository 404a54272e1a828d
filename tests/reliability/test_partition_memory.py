"""What reading one partition costs the proxy in memory, by the config's bounds.

A partition's records are cached once per route (the window: at most ``cache_records``
records and 16 MiB); a session holds at most ``workers + 2`` responses of at most
``max_message_size``. A client reading a partition from many offsets, one at a time,
must cost the proxy no more than that, whatever else the proxy keeps to answer faster.
The proxy runs as ``kafka-ws-trio serve`` and its resident memory is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import _reliability
import pytest
import trio
from _reliability import WAIT

from kafka_ws_trio.client import open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, produce

pytestmark = pytest.mark.reliability

MiB: Final = 1024 * 1024
RECORD_SIZE: Final = 256 * 1024
#: 15 MiB of records: all of them fit in the partition's window (16 MiB).
RECORDS: Final = 60
WINDOW_BYTES: Final = RECORDS * RECORD_SIZE
#: Large, so that one response holds 16 records.
MAX_MESSAGE_SIZE: Final = 4 * MiB
WORKERS: Final = 8
#: Allocator and interpreter noise, kafka-python's fetch buffers (1 MiB a poll).
SLACK: Final = 32 * MiB


@pytest.mark.timeout(120)
async def test_reading_a_partition_from_many_offsets_costs_at_most_its_window(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = await trio.to_thread.run_sync(create_topic, kafka_broker)
    await trio.to_thread.run_sync(produce, kafka_broker, topic, [bytes([n]) * RECORD_SIZE for n in range(RECORDS)])
    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"max_message_size": MAX_MESSAGE_SIZE, "workers": WORKERS},
    )
    async with (
        _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy,
        open_client(proxy.url, request_timeout=WAIT, max_message_size=MAX_MESSAGE_SIZE) as client,
    ):
        assert await client.list_offset(topic, 0, -1) == RECORDS  # the partition's reader is open
        await trio.sleep(0.5)
        baseline = proxy.rss()
        peak = baseline
        offset = 0
        while offset < RECORDS:  # read it all once, as a client does: the window fills
            offset = (await client.fetch(topic, 0, offset))[-1].offset + 1
            peak = max(peak, proxy.rss())
        for offset in range(RECORDS):  # then from every offset, one request at a time, each answer read
            records = await client.fetch(topic, 0, offset)
            assert records[0].offset == offset
            assert records[0].value == bytes([offset]) * RECORD_SIZE
            peak = max(peak, proxy.rss())
    bound = baseline + WINDOW_BYTES + (WORKERS + 2) * MAX_MESSAGE_SIZE + SLACK
    print(
        f"\npartition memory: {RECORDS} fetches (after reading it once) of a {WINDOW_BYTES // MiB} MiB partition, "
        f"one at a time; proxy RSS "
        f"{baseline / MiB:.0f} MiB before, peak {peak / MiB:.0f} MiB (+{(peak - baseline) / MiB:.0f}), "
        f"bound {bound / MiB:.0f} MiB"
    )
    assert peak <= bound, (
        f"reading one partition raised the proxy's memory by {(peak - baseline) / MiB:.0f} MiB, more than its "
        f"window ({WINDOW_BYTES // MiB} MiB) and one session's responses "
        f"({(WORKERS + 2) * MAX_MESSAGE_SIZE // MiB} MiB) and {SLACK // MiB} MiB to spare"
    )
