"""TLS on the proxy's listener (wss://): serving, trust, the handshake deadline, reloading the certificate.

Each test makes its own CA and a server certificate for 127.0.0.1 and localhost with openssl.
The tests that read Kafka use the real broker; the ones about TLS alone only ping, which the
proxy answers without Kafka, so their routes get a backend that is never called.
"""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, cast

import attrs
import pytest
import trio
from _support import running_proxy, settled, stop_process
from trio_websocket import ConnectionRejected

from kafka_ws_trio._config import ProxyConfig, RouteConfig, ServerConfig
from kafka_ws_trio._ports import Backend
from kafka_ws_trio._server import BackendFactory
from kafka_ws_trio.client import EARLIEST, LATEST, ConnectFailed, PubSubClient, open_client
from kafka_ws_trio.testing import KafkaBroker, produce

pytestmark = pytest.mark.timeout(90)

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
#: Seconds any one step may take.
WAIT: Final = 20.0
#: The handshake deadline the deadline tests patch in (seconds).
SHORT_DEADLINE: Final = 0.5


@attrs.frozen
class Pki:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost, with its key."""

    ca: Path
    cert: Path
    key: Path


def make_pki(folder: Path, name: str) -> Pki:
    """A new CA called ``name`` and a server certificate signed by it, in ``folder``."""
    if shutil.which("openssl") is None:  # ./scripts/test installs it: missing, it is a failure, never a skip
        pytest.fail("needs openssl on PATH (Debian: apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    # A CA with the extensions Python 3.13's strict verification (VERIFY_X509_STRICT) asks for.
    openssl(
        "req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", "server.ext", "-out", "server.pem",
    )  # fmt: skip
    return Pki(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "first", "kafka-ws-trio test CA one")


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "second", "kafka-ws-trio test CA two")


@pytest.fixture
def served(tmp_path: Path, pki: Pki) -> Pki:
    """The files the proxy serves: a copy of ``pki``'s, which a test may replace."""
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(pki.cert, folder / "proxy.pem")
    shutil.copy(pki.key, folder / "proxy.key")
    return Pki(ca=pki.ca, cert=folder / "proxy.pem", key=folder / "proxy.key")


def trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


def tls_server(served: Pki) -> ServerConfig:
    return ServerConfig(port=0, tls_cert_file=str(served.cert), tls_key_file=str(served.key))


class _NoKafka:
    """The backend of a route whose tests only ping: it has nothing, so any call to it fails the test."""


def _no_kafka(_route: RouteConfig, _limiter: trio.CapacityLimiter) -> Backend:
    return cast("Backend", _NoKafka())


NO_KAFKA: Final[BackendFactory] = _no_kafka


def without_kafka(server: ServerConfig) -> ProxyConfig:
    return ProxyConfig.single_route("127.0.0.1:9", server=server)


async def ping(url: str, context: ssl.SSLContext) -> bytes:
    async with open_client(url, ssl_context=context) as client:
        return await client.ping(b"over tls")


# ---- serving ------------------------------------------------------------------------------------


async def test_a_client_trusting_the_ca_reads_kafka_over_wss(
    kafka_broker: KafkaBroker, kafka_topic: str, served: Pki
) -> None:
    produce(kafka_broker, kafka_topic, [b"one", b"two"])
    config = ProxyConfig.single_route(kafka_broker.bootstrap, server=tls_server(served))
    async with running_proxy(config) as proxy:
        assert proxy.url.startswith("wss://127.0.0.1:")
        with trio.fail_after(WAIT):
            async with open_client(proxy.url + "/kafka", ssl_context=trusting(served)) as client:
                assert await client.list_offset(kafka_topic, 0, EARLIEST) == 0
                assert await client.list_offset(kafka_topic, 0, LATEST) == 2
                records = await client.fetch(kafka_topic, 0, 0)
                assert [record.value for record in records] == [b"one", b"two"]
                await _pushed_and_parked_answers_arrive(client, kafka_broker, kafka_topic)


async def _pushed_and_parked_answers_arrive(client: PubSubClient, broker: KafkaBroker, topic: str) -> None:
    """The answers a session writes straight into a plain socket (a stream's pushes, a fetch parked
    at the log end) go the normal way over TLS."""
    parked: list[bytes | None] = []

    async def fetch_at_the_end() -> None:
        while not parked:  # each fetch waits at the log end for fetch_max_wait, then answers empty
            parked.extend(record.value for record in await client.fetch(topic, 0, 2))

    async with client.subscribe(topic, start=EARLIEST) as stream, trio.open_nursery() as nursery:
        batches = aiter(stream)
        pushed: list[bytes | None] = []
        while len(pushed) < 2:
            pushed.extend(record.value for record in (await anext(batches)).records)
        assert pushed == [b"one", b"two"]
        nursery.start_soon(fetch_at_the_end)
        await trio.sleep(0.5)  # a fetch is parked by now, most likely (one that is not gets it too)
        await trio.to_thread.run_sync(functools.partial(produce, broker, topic, [b"three"]))
        assert [record.value for record in (await anext(batches)).records] == [b"three"]
        await batches.aclose()  # type: ignore[attr-defined]
    assert parked == [b"three"]


async def test_a_client_not_trusting_the_certificate_is_told_so(served: Pki) -> None:
    async with running_proxy(without_kafka(tls_server(served)), backend_factory=NO_KAFKA) as proxy:
        with trio.fail_after(WAIT):
            with pytest.raises(ConnectFailed) as refused:
                await ping(proxy.url + "/kafka", ssl.create_default_context())
            assert "its TLS certificate is not trusted" in str(refused.value)
            # The failed handshake did not stop the server.
            assert await ping(proxy.url + "/kafka", trusting(served)) == b"over tls"


async def test_a_plain_ws_client_on_the_tls_port_is_told_to_use_wss(served: Pki) -> None:
    async with running_proxy(without_kafka(tls_server(served)), backend_factory=NO_KAFKA) as proxy:
        plain = proxy.url.replace("wss://", "ws://", 1)
        with trio.fail_after(WAIT):
            with pytest.raises(ConnectionRejected) as refused:
                async with open_client(plain + "/kafka"):
                    pass
            assert refused.value.status_code == 400
            assert refused.value.body is not None
            assert b"connect with wss://" in refused.value.body
            assert await ping(proxy.url + "/kafka", trusting(served)) == b"over tls"


# ---- the handshake deadline ---------------------------------------------------------------------


async def _dropped_after(port: int, first_bytes: bytes) -> float:
    """Seconds until the proxy drops a TCP client that sends ``first_bytes`` and then nothing."""
    started = trio.current_time()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        if first_bytes:
            await stream.send_all(first_bytes)
        with trio.fail_after(WAIT):
            try:
                while await stream.receive_some():
                    pass  # a TLS alert would be fine too
            except trio.BrokenResourceError:
                pass  # reset
    return trio.current_time() - started


async def test_a_client_that_sends_nothing_or_stalls_in_the_tls_handshake_is_dropped_at_the_deadline(
    served: Pki,
) -> None:
    # The start of a ClientHello record: the server waits for the rest, which never comes.
    half_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    server = attrs.evolve(tls_server(served), handshake_timeout=SHORT_DEADLINE)
    async with running_proxy(without_kafka(server), backend_factory=NO_KAFKA) as proxy:
        for first_bytes in (b"", half_hello):
            took = await _dropped_after(proxy.port, first_bytes)
            assert SHORT_DEADLINE * 0.9 <= took < SHORT_DEADLINE + 5, first_bytes
        with trio.fail_after(WAIT):
            assert await ping(proxy.url + "/kafka", trusting(served)) == b"over tls"


# ---- reloading the certificate ------------------------------------------------------------------


def replace(served: Pki, by: Pki) -> None:
    """Put ``by``'s certificate and key where the proxy reads its own (as a renewal does)."""
    shutil.copy(by.cert, served.cert)
    shutil.copy(by.key, served.key)


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kafka_ws_trio.server")
    return caplog


async def test_reload_serves_the_new_certificate_to_new_clients_and_open_sessions_go_on(
    served: Pki, other_pki: Pki, server_log: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(without_kafka(tls_server(served)), backend_factory=NO_KAFKA) as proxy:
        route = proxy.url + "/kafka"
        with trio.fail_after(WAIT):
            async with open_client(route, ssl_context=trusting(served)) as before:
                assert await before.ping(b"before") == b"before"
                replace(served, other_pki)
                assert proxy.reload_tls()
                assert f"reloaded TLS certificate from {served.cert}" in server_log.messages
                assert await ping(route, trusting(other_pki)) == b"over tls"
                with pytest.raises(ConnectFailed, match="its TLS certificate is not trusted"):
                    await ping(route, trusting(served))  # the first CA's
                assert await before.ping(b"still here") == b"still here"


@pytest.mark.parametrize("damage", ["garbage key", "key of another certificate", "missing key"])
async def test_a_reload_that_fails_keeps_the_certificate_in_use_and_names_the_file(
    damage: str, served: Pki, other_pki: Pki, server_log: pytest.LogCaptureFixture
) -> None:
    async with running_proxy(without_kafka(tls_server(served)), backend_factory=NO_KAFKA) as proxy:
        route = proxy.url + "/kafka"
        if damage == "garbage key":
            served.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        elif damage == "key of another certificate":
            shutil.copy(other_pki.cert, served.cert)
        else:
            served.key.unlink()
        assert not proxy.reload_tls()
        [record] = [r for r in server_log.records if r.levelno == logging.ERROR]
        assert record.getMessage().startswith("could not reload the TLS certificate")
        assert str(served.key) in record.getMessage()
        assert "reloaded" not in server_log.text
        with trio.fail_after(WAIT):
            assert await ping(route, trusting(served)) == b"over tls"


async def test_reload_on_a_plain_server_says_there_is_nothing_to_reload(
    server_log: pytest.LogCaptureFixture,
) -> None:
    async with running_proxy(without_kafka(ServerConfig(port=0)), backend_factory=NO_KAFKA) as proxy:
        assert proxy.url.startswith("ws://")
        assert not proxy.reload_tls()
    assert "no TLS certificate to reload" in server_log.text


# ---- the command line ---------------------------------------------------------------------------


@attrs.define
class _Served:
    """A ``kafka-ws-trio serve`` process and what it has written to stderr so far."""

    process: trio.Process
    url: str
    stderr: bytearray = attrs.field(factory=bytearray)

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk

    async def wait_for_log(self, text: str) -> None:
        assert await settled(lambda: text.encode() in self.stderr, WAIT), bytes(self.stderr).decode()


@pytest.fixture
async def serve_tls(kafka_broker: KafkaBroker, served: Pki) -> AsyncIterator[_Served]:
    args = [COMMAND, "serve", "--kafka", kafka_broker.bootstrap, "--port", "0"]
    args += ["--tls-cert", str(served.cert), "--tls-key", str(served.key)]
    async with trio.open_nursery() as nursery:
        run = functools.partial(trio.run_process, args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        process: trio.Process = await nursery.start(run)
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(30):
            while b"listening on wss://" not in seen or not seen.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, f"the server exited before listening: {seen!r}"
                seen += chunk
        served_process = _Served(process, seen.split(b"listening on ", 1)[1].split()[0].decode())
        nursery.start_soon(served_process.read_stderr)
        try:
            yield served_process
        finally:
            await stop_process(process, 15)


async def offsets(url: str, topic: str, *options: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [COMMAND, "offsets", url, "--topic", topic, "--at", "earliest", *options],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_serve_with_tls_reloads_the_certificate_on_sighup_and_offsets_takes_a_ca_file(
    serve_tls: _Served, kafka_topic: str, served: Pki, other_pki: Pki
) -> None:
    route = serve_tls.url + "/kafka"
    first = await offsets(route, kafka_topic, "--ca-file", str(served.ca))
    assert (first.returncode, first.stdout, first.stderr) == (0, b"0\n", b"")
    untrusted = await offsets(route, kafka_topic)
    assert untrusted.returncode == 1
    assert b"its TLS certificate is not trusted" in untrusted.stderr

    replace(served, other_pki)
    serve_tls.process.send_signal(signal.SIGHUP)
    await serve_tls.wait_for_log(f"reloaded TLS certificate from {served.cert}")
    assert serve_tls.process.returncode is None, "SIGHUP stopped the server"
    second = await offsets(route, kafka_topic, "--ca-file", str(other_pki.ca))
    assert (second.returncode, second.stdout) == (0, b"0\n"), second.stderr

    serve_tls.process.send_signal(signal.SIGINT)
    with trio.fail_after(WAIT):
        assert await serve_tls.process.wait() == 0
    assert b"Traceback" not in serve_tls.stderr
