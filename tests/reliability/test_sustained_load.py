"""Sustained load: many sessions for a while, with zero error responses and zero dropped
connections.

The proxy runs as ``kafka-ws-trio serve``; the sessions come from client processes of
their own (``_load_client.py``), each checking every answer: Fetch at random offsets of
a topic whose contents are known, ListOffset of its end, Ping. Fast mode: 100 sessions
for 10 s, each planning five requests a second. Long mode: 1,000 sessions for 60 s from
four processes, one request every two seconds each.

The test asserts correctness only: every session connected, asked and was answered,
with no error, no wrong answer, no drop and no loss. How many requests went through is
printed, never asserted: on a busy machine the clients fall behind their plan and that
is no fault of the proxy. Throughput and latency are measured by ``scripts/bench``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import _reliability
import pytest
import trio
from _load_client import record_value
from _reliability import mode, settled

from kafka_ws_trio.testing import KafkaBroker, create_topic, produce

pytestmark = pytest.mark.reliability

CLIENT: Final = Path(__file__).with_name("_load_client.py")
RECORDS: Final = 200
#: Seconds the clients get to connect, beyond the run itself, and to close at the end.
CONNECT_ALLOWANCE: Final = 60.0
CLOSE_ALLOWANCE: Final = 30.0


async def run_client(args: list[str], results: list[dict[str, Any]], log: Path) -> None:
    with await trio.to_thread.run_sync(log.open, "wb") as stderr:
        done = await trio.run_process(
            _reliability.spawn_python(CLIENT, args),
            capture_stdout=True,
            stderr=stderr,
            check=False,
            env=_reliability.child_environment(),
        )
    text = await trio.Path(log).read_text(errors="replace")
    assert done.returncode == 0, f"a load client failed ({done.returncode}):\n{text[-3000:]}"
    results.append(json.loads(done.stdout.decode().strip().splitlines()[-1]))


@pytest.mark.timeout(mode().limit(180, 600))
async def test_sustained_load_without_errors_or_dropped_connections(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    run = mode()
    topic = await trio.to_thread.run_sync(create_topic, kafka_broker)
    await trio.to_thread.run_sync(produce, kafka_broker, topic, [record_value(n) for n in range(RECORDS)])
    config = _reliability.write_config(tmp_path / "proxy.toml", kafka_broker.bootstrap)
    per_process = [run.load_sessions // run.load_processes] * run.load_processes
    per_process[0] += run.load_sessions - sum(per_process)
    results: list[dict[str, Any]] = []
    open_during_run: list[int] = []
    rss: list[int] = []
    async with _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy:
        cpu_before, started = proxy.cpu_seconds(), trio.current_time()
        with trio.fail_after(CONNECT_ALLOWANCE + run.load_seconds + CLOSE_ALLOWANCE):
            async with trio.open_nursery() as nursery:
                for n, sessions in enumerate(per_process):
                    args = [
                        proxy.url,
                        topic,
                        str(RECORDS),
                        str(sessions),
                        str(run.load_seconds),
                        str(run.load_interval),
                    ]
                    nursery.start_soon(run_client, args, results, tmp_path / f"client-{n}.log")
                # Sample while the load runs: the sessions the proxy holds, and its memory.
                assert await settled(lambda: proxy.established() >= run.load_sessions, CONNECT_ALLOWANCE), (
                    f"only {proxy.established()} of {run.load_sessions} sessions connected"
                )
                while len(results) < len(per_process):
                    open_during_run.append(proxy.established())
                    rss.append(proxy.rss())
                    await trio.sleep(0.5)
        proxy_cpu = (proxy.cpu_seconds() - cpu_before) / (trio.current_time() - started)
        assert await settled(lambda: proxy.established() == 0), f"{proxy.established()} connections left open"
        assert proxy.process.returncode is None, "the proxy exited"
    log = proxy.log_text()

    total = {key: sum(r[key] for r in results) for key in results[0] if isinstance(results[0][key], int)}
    examples = [e for r in results for e in r["examples"]]
    expected = run.load_sessions * run.load_seconds / run.load_interval
    print(
        f"\nsustained load: {run.load_sessions} sessions for {run.load_seconds:.0f}s from {run.load_processes} "
        f"process(es): {total['requests']} requests of {expected:.0f} planned "
        f"({total['requests'] / run.load_seconds:.0f}/s), "
        f"{total['answers']} answers, {total['error_responses']} error responses, {total['wrong_answers']} wrong, "
        f"{total['timeouts']} timeouts, {total['dropped']} dropped, {total['connect_failures']} failed to connect; "
        f"latency p50 {max(r['p50_ms'] for r in results)} ms, p99 {max(r['p99_ms'] for r in results)} ms, "
        f"max {max(r['max_ms'] for r in results)} ms; connecting took {max(r['connect_seconds'] for r in results)}s; "
        f"proxy held {min(open_during_run, default=0)}..{max(open_during_run, default=0)} connections, "
        f"RSS up to {max(rss, default=0) / 2**20:.0f} MiB, CPU {proxy_cpu:.0%} of one core"
    )
    assert total["connected"] == run.load_sessions, examples
    assert total["connect_failures"] == 0, examples
    assert total["error_responses"] == 0, examples
    assert total["wrong_answers"] == 0, examples
    assert total["timeouts"] == 0, examples
    assert total["dropped"] == 0, examples
    assert total["closed_cleanly"] == run.load_sessions, examples
    assert total["answers"] == total["requests"]
    # Each session did something (its first request goes out whatever the clock says); no rate is asserted.
    assert total["answered_sessions"] == run.load_sessions, examples
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
