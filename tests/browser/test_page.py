"""The README's browser page, examples/browser/index.html, in a real browser against a real
proxy and broker: Debian's Chromium driven headless by playwright-core (read_page.mjs).

The page is loaded from its file exactly as written. The only thing standing in for the
outside world is its import from the CDN, which read_page.mjs answers from the
@bufbuild/protobuf that package-lock.json installs (this machine reaches no CDN).

Run with ``tox -e browser`` (``./scripts/test`` does), which needs ``npm ci`` in this
folder first; the py3x environments leave this folder out. A missing node, Chromium or
node_modules fails the test, naming what to install: it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import running_proxy, stop_process

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio.testing import KafkaBroker, Record, produce, unique_topic_name

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent.parent
PAGE: Final = REPO / "examples" / "browser" / "index.html"
SCRIPT: Final = HERE / "read_page.mjs"
CHROMIUM: Final = Path("/usr/bin/chromium")
#: The oldest Node.js that playwright-core (package.json) supports: its "engines" field.
NODE_MAJOR_MIN: Final = 20
ROUTE: Final = "/kafka"
#: Seconds for read_page.mjs to report one state: it waits up to 20 s itself, so this
#: only catches a script or browser that hangs.
STATE_WAIT: Final = 40.0
#: Seconds node has to close the browser and exit after SIGTERM before it is killed.
STOP_GRACE: Final = 10.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def node() -> str:
    """The node binary; fails, naming every missing piece and how to install it."""
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node (Debian: apt-get install nodejs npm)")
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
        major = re.match(r"v(\d+)\.", version)
        if major is None or int(major.group(1)) < NODE_MAJOR_MIN:
            missing.append(
                f"Node.js {NODE_MAJOR_MIN} or newer for playwright-core (found {version.strip() or 'nothing'})"
            )
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian: apt-get install chromium)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules (run 'npm ci' in tests/browser; tox -e browser does)")
    if missing:
        pytest.fail("the browser test needs " + "; ".join(missing), pytrace=False)
    assert node is not None
    return node


class OpenPage:
    """read_page.mjs running: each call of :meth:`state` is its next report."""

    def __init__(self, process: trio.Process) -> None:
        self._process = process
        self._buffer = b""
        self.stderr = bytearray()

    async def state(self) -> dict[str, Any]:
        """The next ``{"lines": [...], "problems": [...]}`` the script prints."""
        assert self._process.stdout is not None
        with trio.fail_after(STATE_WAIT):
            while b"\n" not in self._buffer:
                chunk = await self._process.stdout.receive_some()
                if not chunk:
                    pytest.fail(f"read_page.mjs stopped without a report; its stderr:\n{self.stderr.decode()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        report: dict[str, Any] = json.loads(line)
        return report

    async def drain_stderr(self) -> None:
        assert self._process.stderr is not None
        async for chunk in self._process.stderr:
            self.stderr += chunk


@asynccontextmanager
async def open_page(node: str, url: str, topic: str, *counts: int) -> AsyncIterator[OpenPage]:
    """Open the page on ``url`` and ``topic``; read_page.mjs reports once each count of
    lines is shown. The browser is stopped on leaving, whatever happened."""
    args = [node, str(SCRIPT), str(PAGE), url, topic, *map(str, counts)]
    # Its own session, so that nothing but this test signals it; Chromium runs in a process
    # group of its own that node kills on SIGTERM, and exits by itself when node is gone.
    process = await trio.lowlevel.open_process(
        args, cwd=HERE, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    page = OpenPage(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(page.drain_stderr)
            yield page
            nursery.cancel_scope.cancel()
    finally:
        await stop_process(process, STOP_GRACE, group=True)


def _config(broker: KafkaBroker) -> ProxyConfig:
    return ProxyConfig.single_route(broker.bootstrap, ROUTE, server=ServerConfig(port=0))


async def test_page_shows_every_record_and_then_new_ones(
    node: str, kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    records = [Record(b'{"n": 1}'), Record("größe ✓".encode()), Record(b"third", key=b"k")]
    await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, records)
    expected = ['0: {"n": 1}', "1: größe ✓", "2: third"]
    async with (
        running_proxy(_config(kafka_broker)) as server,
        open_page(node, server.url + ROUTE, kafka_topic, 3, 4) as page,
    ):
        assert await page.state() == {"lines": expected, "problems": []}
        # The page now waits at the log end; a record produced now must show up.
        await trio.to_thread.run_sync(produce, kafka_broker, kafka_topic, [b"tailed"])
        assert await page.state() == {"lines": [*expected, "3: tailed"], "problems": []}


async def test_page_shows_the_proxys_error_for_a_missing_topic(node: str, kafka_broker: KafkaBroker) -> None:
    topic = unique_topic_name("missing")
    async with running_proxy(_config(kafka_broker)) as server, open_page(node, server.url + ROUTE, topic, 1) as page:
        state = await page.state()
    message = f"failed to list offset, topic: {topic}, partition: 0, err: not found topic"
    assert state == {"lines": [f"error: {message}"], "problems": []}


def test_readme_shows_the_page_byte_for_byte() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Reading it from a browser\n(.*?)(?=^## )", readme, re.DOTALL | re.MULTILINE)
    assert section, "README.md lost its section 'Reading it from a browser'"
    blocks = re.findall(r"^```html\n(.*?)^```", section.group(1), re.DOTALL | re.MULTILINE)
    assert blocks == [PAGE.read_text(encoding="utf-8")], "the README's page differs from examples/browser/index.html"


def test_page_imports_the_protobuf_version_the_test_installs() -> None:
    """read_page.mjs serves the CDN import from node_modules, so the two must agree."""
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["@bufbuild/protobuf"]
    imports = re.findall(r'from "https://esm\.sh/@bufbuild/protobuf@([^/"]+)/', PAGE.read_text())
    assert imports == [pinned]
