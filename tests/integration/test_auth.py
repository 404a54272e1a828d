"""Authentication, rights and quotas at the handshake and per command, against a real broker (issue 13).

Row 13 of PROTOCOL.md section 6 first, then every place a credential may come
from, API keys, browser origins, ACL denials that do not reveal a topic, group
rights, quotas, and a scan for secrets in everything the proxy says.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import jwt
import pytest
import trio
from _support import running_proxy, settled
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig
from kafka_ws_trio._config import RouteConfig, Secret
from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, JwtConfig, QuotaConfig
from kafka_ws_trio._proto import ErrorAnswer, OutRecord, decode_response, encode_auth_request, encode_produce_request
from kafka_ws_trio.client import EARLIEST, ConnectFailed, PubSubError, Written, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce

pytestmark = pytest.mark.timeout(90)

ISSUER: Final = "https://id.test"
AUDIENCE: Final = "kafka-ws"
READ_SCOPE: Final = "orders:read"
WRITE_SCOPE: Final = "orders:write"


@attrs.frozen
class Keys:
    private: bytes
    public_file: Path
    other_private: bytes


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    def pem(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_file = tmp_path_factory.mktemp("jwt") / "public.pem"
    public_file.write_bytes(
        signing.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Keys(pem(signing), public_file, pem(other))


def token(keys: Keys, *, sub: str = "alice", scope: str = READ_SCOPE, expires_in: float = 600, **claims: Any) -> str:
    """An RS256 token for the test route (``_signer``: sign with another key)."""
    signer = claims.pop("_signer", None) or keys.private
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "scope": scope, "iss": ISSUER, "aud": AUDIENCE, "iat": now}
    body["exp"] = int(now + expires_in)
    body.update(claims)
    return jwt.encode(body, signer, algorithm="RS256")


def rules(topic: str) -> tuple[AclRuleConfig, ...]:
    return (
        AclRuleConfig(principals=(f"claim:scope={READ_SCOPE}",), operations=("read",), topics=(topic,)),
        AclRuleConfig(
            principals=(f"claim:scope={WRITE_SCOPE}", "dashboard"),
            operations=("read", "write", "group"),
            topics=(topic,),
            groups=("dash-*",),
        ),
    )


def secured(broker: KafkaBroker, keys: Keys, topic: str, **route: Any) -> ProxyConfig:
    options: dict[str, Any] = {
        "auth": ("jwt",),
        "jwt": JwtConfig(
            algorithms=("RS256",), public_key_files=(str(keys.public_file),), issuer=ISSUER, audience=AUDIENCE
        ),
        "acl": rules(topic),
    }
    options.update(route)
    return ProxyConfig(ServerConfig(port=0), (RouteConfig("/kafka", broker.bootstrap, **options),))


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Iterator[str]:
    name = create_topic(kafka_broker, partitions=1)
    produce(kafka_broker, name, [b"one", b"two"])
    yield name
    delete_topic(kafka_broker, name)


async def refused_status(url: str, **options: Any) -> int:
    """The HTTP status a connection attempt is refused with."""
    try:
        async with open_client(url, **options):
            pass
    except ConnectFailed as exc:
        status = exc.status
    except ConnectionRejected as exc:
        status = exc.status_code
    else:
        raise AssertionError("the connection was accepted")
    assert status is not None, "refused, but not with an HTTP status"
    return status


async def test_row_13_auth_401_403_not_authorized_and_1008_on_expiry(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    async with running_proxy(secured(kafka_broker, keys, topic)) as server:
        url = f"{server.url}/kafka"
        assert await refused_status(url) == 401  # no token
        bad_signature = token(keys, _signer=keys.other_private)
        assert await refused_status(url, token=bad_signature) == 401
        assert await refused_status(url, token=token(keys, aud="someone-else")) == 401
        assert await refused_status(url, token=token(keys, expires_in=-120)) == 401
        assert await refused_status(url, token=token(keys, scope="billing:read")) == 403  # no rights here

        async with open_client(url, token=token(keys)) as reader:  # read-only rights
            assert await reader.list_offset(topic, 0, -1) == 2
            assert [r.value for r in await reader.fetch(topic, 0, 0)] == [b"one", b"two"]
            with pytest.raises(PubSubError) as denied:
                await reader.produce(topic, [b"three"])
            assert denied.value.code == ErrorCode.NOT_AUTHORIZED
            assert denied.value.message == f"not authorized to write topic {topic}"

        async with open_client(url, token=token(keys, scope=WRITE_SCOPE)) as writer:
            results = await writer.produce(topic, [b"three"])
            assert [r.offset for r in results] == [2]

        expiring = token(keys, expires_in=2)
        async with open_websocket_url(url, extra_headers=[("Authorization", f"Bearer {expiring}")]) as ws:
            with trio.fail_after(10):
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            assert closed.value.reason.code == 1008
            assert closed.value.reason.reason == "token expired"


async def test_a_token_is_taken_from_the_header_the_query_and_a_subprotocol_never_echoed(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    good = token(keys)
    async with running_proxy(secured(kafka_broker, keys, topic)) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=good) as client:
            assert await client.list_offset(topic, 0, -1) == 2
        async with open_client(f"{url}?access_token={good}") as client:
            assert await client.list_offset(topic, 0, -1) == 2
        async with open_websocket_url(url, subprotocols=["kafka-ws-trio", f"bearer.{good}"]) as ws:
            assert ws.subprotocol == "kafka-ws-trio"
        async with open_client(url, subprotocols=["kafka-ws-trio", f"bearer.{good}"]) as client:
            assert await client.list_offset(topic, 0, -1) == 2
        # The same token twice is one credential; two different ones are refused.
        async with open_client(f"{url}?access_token={good}", token=good) as client:
            assert await client.list_offset(topic, 0, -1) == 2
        other = token(keys, sub="bob")
        assert await refused_status(f"{url}?access_token={other}", token=good) == 401
        assert await refused_status(f"{url}?access_token=") == 401


def hash_key(principal: str) -> tuple[str, ApiKeyConfig]:
    """A key made by the CLI, and the config entry it printed."""
    made = subprocess.run(
        [str(Path(sys.executable).parent / "kafka-ws-trio"), "hash-key", "--id", principal, "--principal", principal],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    stored = next(line for line in made.stderr.splitlines() if line.startswith("hash = "))
    return made.stdout.strip(), ApiKeyConfig(id=principal, principal=principal, hash=json.loads(stored[7:]))


async def test_api_keys_from_hash_key_name_their_principal_and_wrong_ones_get_401(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    key, entry = hash_key("dashboard")
    assert entry.hash.startswith("scrypt$") and key.split("_")[-1] not in entry.hash
    config = secured(kafka_broker, keys, topic, auth=("jwt", "api_key"), api_keys=(entry,))
    async with running_proxy(config) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=key) as client:
            assert await client.produce(topic, [b"k"])  # "dashboard" may write
        assert await refused_status(url, token=key[:-2] + "xx") == 401
        assert await refused_status(url, token="kwt_nobody_" + key.split("_")[-1]) == 401
        async with open_client(url, token=token(keys)) as client:  # a JWT still works beside keys
            assert await client.list_offset(topic, 0, -2) == 0


async def test_a_browser_origin_must_be_listed_and_programs_without_one_pass(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    config = secured(kafka_broker, keys, topic, allowed_origins=("https://app.example.com",))
    async with running_proxy(config) as server:
        url = f"{server.url}/kafka?access_token={token(keys)}"
        async with open_websocket_url(url, extra_headers=[("Origin", "https://app.example.com")]):
            pass
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(url, extra_headers=[("Origin", "https://evil.example.net")]):
                pass
        assert refused.value.status_code == 403
        assert b"origin not allowed" in (refused.value.body or b"")
        async with open_client(url) as client:  # no Origin: not a browser
            assert await client.list_offset(topic, 0, -1) >= 2


async def test_a_denial_is_the_same_whether_the_topic_exists_or_not(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    hidden = create_topic(kafka_broker, partitions=1)
    try:
        async with (
            running_proxy(secured(kafka_broker, keys, topic)) as server,
            open_client(f"{server.url}/kafka", token=token(keys)) as client,
        ):
            answers = []
            for name in (hidden, "no-such-topic-anywhere"):
                for call in (client.list_offset(name, 0, -1), client.fetch(name, 0, 0)):
                    with pytest.raises(PubSubError) as denied:
                        await call
                    answers.append((denied.value.code, denied.value.message.replace(name, "T")))
                with pytest.raises(PubSubError) as denied:
                    async with client.subscribe(name):
                        pass
                answers.append((denied.value.code, denied.value.message.replace(name, "T")))
            assert answers[:3] == answers[3:]
            assert {code for code, _ in answers} == {ErrorCode.NOT_AUTHORIZED}
            assert answers[0][1] == "failed to list offset, topic: T, partition: 0, err: not authorized"
            assert await client.list_offset(topic, 0, -1) == 2, "the session goes on after a denial"
    finally:
        delete_topic(kafka_broker, hidden)


async def _group_offsets_or_code(client: Any, group: str, topic: str) -> dict[int, int] | int:
    """The group's committed offsets, or the code of the error answering the request."""
    try:
        offsets: dict[int, int] = await client.group_offsets(group, topic)
    except PubSubError as exc:
        return exc.code
    return offsets


async def test_a_group_must_match_the_rule_s_group_patterns(kafka_broker: KafkaBroker, keys: Keys, topic: str) -> None:
    async with running_proxy(secured(kafka_broker, keys, topic)) as server:
        async with open_client(f"{server.url}/kafka", token=token(keys, scope=WRITE_SCOPE)) as client:
            with pytest.raises(PubSubError) as denied:
                async with client.subscribe(topic, group="other-group"):
                    pass
            assert denied.value.code == ErrorCode.GROUP_NOT_AUTHORIZED
            with pytest.raises(PubSubError) as denied:
                await client.group_offsets("other-group", topic)
            assert denied.value.code == ErrorCode.GROUP_NOT_AUTHORIZED
            # Allowed: answered, once a fresh broker has its group coordinator (COORDINATOR_NOT_AVAILABLE before).
            with trio.fail_after(30):
                while (answer := await _group_offsets_or_code(client, "dash-1", topic)) != {}:
                    assert answer != ErrorCode.GROUP_NOT_AUTHORIZED
                    await trio.sleep(0.5)
        async with open_client(f"{server.url}/kafka", token=token(keys)) as reader:  # read only: no group rights
            with pytest.raises(PubSubError) as denied:
                async with reader.subscribe(topic, group="dash-1"):
                    pass
            assert denied.value.code == ErrorCode.GROUP_NOT_AUTHORIZED


async def test_a_produce_over_the_quota_gets_retry_after_and_is_taken_after_it(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    quotas = QuotaConfig(produce_records_per_second=4)
    async with (
        running_proxy(secured(kafka_broker, keys, topic, quotas=quotas)) as server,
        open_client(f"{server.url}/kafka", token=token(keys, scope=WRITE_SCOPE)) as client,
    ):
        assert len(await client.produce(topic, [b"a", b"b", b"c", b"d"])) == 4
        with pytest.raises(PubSubError) as over:
            await client.produce(topic, [b"e", b"f"])
        assert over.value.code == ErrorCode.QUOTA_EXCEEDED
        wait_ms = int(over.value.message.rsplit("retry_after_ms=", 1)[1])
        assert 100 <= wait_ms <= 600, over.value.message
        await trio.sleep(wait_ms / 1000 + 0.05)
        assert len(await client.produce(topic, [b"e", b"f"])) == 2
        assert await client.list_offset(topic, 0, -1) == 8, "nothing refused was written"


async def test_a_session_held_after_ignoring_retry_after_is_drained_at_once_by_a_route_change(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    """The hold lasts the retry_after the client was told (about 5 s here); a drain does not wait for it."""
    quotas = QuotaConfig(produce_records_per_second=0.2)
    config = secured(kafka_broker, keys, topic, quotas=quotas)
    async with (
        running_proxy(config) as server,
        open_client(f"{server.url}/kafka", token=token(keys, scope=WRITE_SCOPE)) as client,
    ):
        assert len(await client.produce(topic, [b"a"])) == 1  # the burst: one record
        with pytest.raises(PubSubError) as over:
            await client.produce(topic, [b"b"])
        assert int(over.value.message.rsplit("retry_after_ms=", 1)[1]) >= 4000, over.value.message
        await client.websocket.send_message(encode_produce_request(1000, topic, [OutRecord(value=b"c")]))
        assert await settled(lambda: server.statistics().commands_refused.get(62) == 2)
        changed = attrs.evolve(config.routes[0], fetch_max_wait=0.3)
        started = trio.current_time()
        await server.update_routes([changed])
        assert await settled(lambda: server.statistics().sessions_open == 0, 3.0), "the hold delayed the drain"
        assert server.statistics().sessions_closed == {1001: 1}
        assert trio.current_time() - started < 3.0


async def test_connections_over_the_quota_get_429(kafka_broker: KafkaBroker, keys: Keys, topic: str) -> None:
    quotas = QuotaConfig(connections=1)
    async with running_proxy(secured(kafka_broker, keys, topic, quotas=quotas)) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=token(keys)):
            assert await refused_status(url, token=token(keys)) == 429
            async with open_client(url, token=token(keys, sub="bob")):  # another principal has its own
                pass
        async with open_client(url, token=token(keys)):  # the first one's session is over
            pass


async def test_streams_over_the_quota_get_too_many_streams_naming_the_quota(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    quotas = QuotaConfig(streams_per_connection=1)
    config = secured(kafka_broker, keys, topic, quotas=quotas)
    async with running_proxy(config) as server, open_client(f"{server.url}/kafka", token=token(keys)) as client:
        async with client.subscribe(topic, start=EARLIEST):
            with pytest.raises(PubSubError) as refused:
                async with client.subscribe(topic, start=EARLIEST):
                    pass
        assert refused.value.code == ErrorCode.TOO_MANY_STREAMS
        assert "the most quotas.streams_per_connection (1) allows" in refused.value.message
        async with client.subscribe(topic, start=EARLIEST):  # the first one is closed: room again
            pass


async def test_no_log_line_error_or_repr_holds_a_secret(
    kafka_broker: KafkaBroker, keys: Keys, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "kafka_ws_trio")
    key, entry = hash_key("dashboard")
    hmac_secret = "hmac-secret-never-logged-4711-0123456789"
    jwt_token = token(keys)
    expired = token(keys, expires_in=-300)
    secrets = [jwt_token, expired, key, key.split("_")[-1], hmac_secret, keys.private.decode().splitlines()[1]]
    config = secured(kafka_broker, keys, topic, auth=("jwt", "api_key"), api_keys=(entry,))
    hmac_route = RouteConfig(
        "/hmac",
        kafka_broker.bootstrap,
        auth="jwt",
        jwt=JwtConfig(algorithms=("HS256",), secret=Secret(hmac_secret)),
    )
    config = attrs.evolve(config, routes=(*config.routes, hmac_route))
    said: list[str] = [repr(config), str(config)]
    async with running_proxy(config) as server:
        url = f"{server.url}/kafka"
        for options in (
            {"token": jwt_token},
            {"token": key},
            {"subprotocols": ["kafka-ws-trio", f"bearer.{jwt_token}"]},
        ):
            async with open_client(url, **options) as client:  # type: ignore[arg-type]
                for call in (client.produce("elsewhere", [b"x"]), client.fetch("elsewhere", 0, 0)):
                    try:
                        await call
                    except PubSubError as exc:
                        said.append(str(exc))
        for bad in ({"token": expired}, {"token": key + "x"}):
            try:
                async with open_client(url, **bad):  # type: ignore[arg-type]
                    pass
            except ConnectFailed as exc:
                said.append(str(exc))
                said.append(repr(exc))
        try:
            async with open_client(f"{url}?access_token={expired}"):
                pass
        except ConnectFailed as exc:
            said.append(str(exc))
        hmac_token = jwt.encode({"sub": "x", "exp": int(time.time()) - 300}, hmac_secret, algorithm="HS256")
        secrets.append(hmac_token)
        try:
            async with open_client(f"{server.url}/hmac", token=hmac_token):
                pass
        except ConnectFailed as exc:
            said.append(str(exc))
        said.append(repr(server.statistics()))
    said.extend(record.getMessage() for record in caplog.records)
    said.extend(repr(record.__dict__) for record in caplog.records)
    assert any("handshake refused" in line for line in said), "the audit log has the refusals"
    assert any("command refused" in line for line in said), "the audit log has the denied commands"
    for secret in secrets:
        leaked = [line for line in said if secret in line]
        assert leaked == [], f"a secret shows in {leaked[0][:200]!r}"


async def test_consumed_bytes_over_the_quota_slow_delivery_and_lose_nothing(
    kafka_broker: KafkaBroker, keys: Keys
) -> None:
    name = create_topic(kafka_broker, partitions=1)
    try:
        produce(kafka_broker, name, [bytes([i]) * 1000 for i in range(60)])  # about 60 KB
        quotas = QuotaConfig(consume_bytes_per_second=20_000)
        config = secured(kafka_broker, keys, name, quotas=quotas)
        async with running_proxy(config) as server, open_client(f"{server.url}/kafka", token=token(keys)) as client:
            started = trio.current_time()
            got: list[bytes] = []
            async with client.subscribe(name, start=EARLIEST, follow=False) as stream:
                async for batch in stream:
                    got.extend(record.value or b"" for record in batch.records)
            took = trio.current_time() - started
            assert got == [bytes([i]) * 1000 for i in range(60)], "every record, in order, once"
            # 60 KB at 20 KB/s after a 20 KB burst: at least 2 s (a fast read takes well under 0.5 s).
            assert took >= 1.8, took
            async with open_client(f"{server.url}/kafka", token=token(keys, sub="bob")) as other:
                with trio.fail_after(1.0):  # another principal is not slowed by alice's debt
                    assert len(await other.fetch(name, 0, 0)) > 0
    finally:
        delete_topic(kafka_broker, name)


async def test_a_fresh_token_in_band_keeps_the_session_open_with_the_new_token_s_rights(
    kafka_broker: KafkaBroker, keys: Keys, topic: str
) -> None:
    """CmdAuth (schema/README.md, "Refreshing a token"): same principal, new expiry, new rights; a refused one
    changes nothing, and the session still ends when the token in force expires."""
    async with running_proxy(secured(kafka_broker, keys, topic)) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=token(keys, expires_in=3)) as client:
            for refused, reason in (
                (token(keys, sub="bob", expires_in=600), "token refused: it names another principal"),
                (token(keys, expires_in=600, _signer=keys.other_private), "token refused: bad signature"),
                (token(keys, expires_in=-120), "token refused: token expired"),
                (token(keys, scope="billing:read", expires_in=600), "token refused: not allowed on this route"),
            ):
                with pytest.raises(PubSubError) as answer:
                    await client.refresh_token(refused)
                assert (answer.value.code, answer.value.message) == (ErrorCode.TOKEN_REFUSED, reason)
            with pytest.raises(PubSubError) as denied:
                await client.produce(topic, [b"not yet"])  # still the read-only token's rights
            assert denied.value.code == ErrorCode.NOT_AUTHORIZED
            await client.refresh_token(token(keys, scope=WRITE_SCOPE, expires_in=600))
            await trio.sleep(4)  # past the first token's expiry
            assert await client.list_offset(topic, 0, -1) == 2  # still open
            (written,) = await client.produce(topic, [b"three"])  # with the new token's rights
            assert isinstance(written, Written)

        # Refused, the old token stays in force, and its expiry still closes the session.
        async with open_websocket_url(
            url, extra_headers=[("Authorization", f"Bearer {token(keys, expires_in=2)}")]
        ) as ws:
            await ws.send_message(encode_auth_request(7, token(keys, sub="bob", expires_in=600)))
            answer = decode_response(await ws.get_message())
            assert isinstance(answer, ErrorAnswer) and answer.code == ErrorCode.TOKEN_REFUSED
            with trio.fail_after(10):
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
            assert closed.value.reason.code == 1008
            assert closed.value.reason.reason == "token expired"


async def test_a_route_that_takes_no_credentials_does_not_know_cmd_auth(kafka_broker: KafkaBroker, topic: str) -> None:
    config = ProxyConfig(ServerConfig(port=0), (RouteConfig("/kafka", kafka_broker.bootstrap),))
    async with running_proxy(config) as server, open_client(f"{server.url}/kafka") as client:
        with pytest.raises(PubSubError) as answer:
            await client.refresh_token("anything")
        assert answer.value.code == ErrorCode.UNKNOWN_COMMAND
