"""Each principal reaches Kafka with its own SASL login, and Kafka's own ACLs decide (issue 13).

The test broker runs Kafka's StandardAuthorizer: a topic no ACL names is open
to everyone, the route's super user passes every check, and the ordinary
users ``kwt-alice`` and ``kwt-bob`` get only what an ACL gives them. Here the
proxy's own rules let every admitted principal do everything, so each answer
below is Kafka's decision about the caller's own login.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from _support import running_proxy, settled
from trio_websocket import ConnectionRejected

from kafka_ws_trio import ErrorCode, ProxyConfig, ServerConfig
from kafka_ws_trio._auth import new_key
from kafka_ws_trio._config import ConfigError, RouteConfig, SaslConfig
from kafka_ws_trio._config._access import ApiKeyConfig, KafkaCredentialsConfig
from kafka_ws_trio.client import ConnectFailed, NotWritten, PubSubError, open_client
from kafka_ws_trio.testing import KafkaBroker, create_topic, delete_topic, produce

pytestmark = pytest.mark.timeout(90)

#: The principals the proxy admits (one API key each), and the Kafka user each one logs in as.
LOGINS: Final = {"alice": "kwt-alice", "bob": "kwt-bob"}
UNMAPPED: Final = "carol"


@attrs.frozen
class Bed:
    broker: KafkaBroker
    topic: str
    keys: dict[str, str]
    entries: tuple[ApiKeyConfig, ...]
    logins_file: Path


def _kafka_admin(broker: KafkaBroker) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(**broker.client_config("SASL_PLAINTEXT"), request_timeout_ms=30_000)


def _allow(broker: KafkaBroker, user: str, operation: str, resource: str, name: str) -> None:
    """Give ``user`` one Kafka ACL (as the super user), and wait until the authorizer applies it."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern
    from kafka.admin import ResourceType as Kind

    admin = _kafka_admin(broker)
    try:
        acl = ACL(
            principal=f"User:{user}",
            host="*",
            operation=ACLOperation[operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(Kind[resource], name, ACLResourcePatternType.LITERAL),
        )
        result = admin.create_acls([acl])
        assert not result["failed"], result["failed"]
    finally:
        admin.close()


def _login_lines(broker: KafkaBroker, logins: dict[str, str]) -> str:
    password = broker.sasl_password
    return "".join(f'{who} = {{ username = "{user}", password = "{password}" }}\n' for who, user in logins.items())


@pytest.fixture
def bed(kafka_broker: KafkaBroker, tmp_path: Path) -> Iterator[Bed]:
    if set(LOGINS.values()) - set(kafka_broker.acl_users) or kafka_broker.sasl_password is None:
        pytest.fail(
            f"the broker has no ordinary SASL users {sorted(LOGINS.values())} (it has {kafka_broker.acl_users}); "
            "a broker started by scripts/kafka up has them"
        )
    topic = create_topic(kafka_broker, partitions=1)
    produce(kafka_broker, topic, [b"one", b"two"])
    _allow(kafka_broker, LOGINS["alice"], "READ", "TOPIC", topic)  # alice reads; bob gets nothing
    keys: dict[str, str] = {}
    entries = []
    for principal in (*LOGINS, UNMAPPED):
        key, stored = new_key(principal)
        keys[principal] = key
        entries.append(ApiKeyConfig(id=principal, principal=principal, hash=stored))
    logins_file = tmp_path / "kafka-logins.toml"
    logins_file.write_text(_login_lines(kafka_broker, LOGINS))
    logins_file.chmod(0o600)
    yield Bed(kafka_broker, topic, keys, tuple(entries), logins_file)
    delete_topic(kafka_broker, topic)


def _config(bed: Bed, **credentials: Any) -> ProxyConfig:
    broker = bed.broker
    assert broker.sasl_username is not None and broker.sasl_password is not None
    route = RouteConfig(
        "/kafka",
        broker.address("SASL_PLAINTEXT"),
        # The route's own login is the super user: a caller answered "not authorized" was not served with it.
        sasl=SaslConfig(username=broker.sasl_username, password=broker.sasl_password),
        auth=("api_key",),
        api_keys=bed.entries,
        kafka_credentials=KafkaCredentialsConfig(file=str(bed.logins_file), **credentials),
        produce=True,
    )
    return ProxyConfig(ServerConfig(port=0), (route,))


async def _status(url: str, key: str) -> int | None:
    """None when the handshake succeeds, else the HTTP status it was refused with."""
    try:
        async with open_client(url, token=key):
            return None
    except ConnectFailed as exc:
        return exc.status
    except ConnectionRejected as exc:
        return exc.status_code


async def test_each_principal_is_served_with_its_own_kafka_login_and_kafka_acls_decide(
    bed: Bed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kafka_ws_trio")
    async with running_proxy(_config(bed)) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=bed.keys["alice"]) as alice:
            assert await alice.list_offset(bed.topic, 0, -1) == 2
            assert [r.value for r in await alice.fetch(bed.topic, 0, 0)] == [b"one", b"two"]
            (result,) = await alice.produce(bed.topic, [b"three"])  # Kafka gives kwt-alice no WRITE
            assert isinstance(result, NotWritten)
            assert result.code == ErrorCode.NOT_AUTHORIZED, result
            assert "TOPIC_AUTHORIZATION_FAILED" in result.message
        async with open_client(url, token=bed.keys["bob"]) as bob:
            with pytest.raises(PubSubError) as denied:
                await bob.list_offset(bed.topic, 0, -1)
            assert denied.value.code == ErrorCode.NOT_AUTHORIZED
            assert denied.value.message.endswith("err: not authorized by Kafka (TOPIC_AUTHORIZATION_FAILED)")
            with pytest.raises(PubSubError) as denied:
                await bob.fetch(bed.topic, 0, 0)
            assert denied.value.code == ErrorCode.NOT_AUTHORIZED
        upstreams = server.statistics().upstreams
        assert upstreams["/kafka as alice"].consumers_created >= 1
        assert "/kafka as bob" in upstreams
        # Nothing went through the route's own (super user) login.
        assert upstreams["/kafka"].consumers_created == 0
        # A principal with no login of its own is refused at the handshake, not served as the route.
        assert await _status(url, bed.keys[UNMAPPED]) == 403
        # The logins' password is in no log line, statistics or repr of the config.
        password = bed.broker.sasl_password
        assert password is not None
        seen = [record.getMessage() for record in caplog.records]
        seen += [repr(server.config), repr(server.statistics())]
        assert not [text for text in seen if password in text]
        assert any("kwt-alice" in text for text in seen)  # the scan did see the logins' traces


async def test_unmapped_route_serves_principals_without_a_login_with_the_route_s_own(bed: Bed) -> None:
    async with running_proxy(_config(bed, unmapped="route")) as server:
        async with open_client(f"{server.url}/kafka", token=bed.keys[UNMAPPED]) as carol:
            assert await carol.list_offset(bed.topic, 0, -1) == 2  # as the route's super user
        assert server.statistics().upstreams["/kafka"].consumers_created >= 1


async def test_the_logins_file_is_read_again_when_it_changes(bed: Bed) -> None:
    async with running_proxy(_config(bed)) as server:
        url = f"{server.url}/kafka"
        assert await _status(url, bed.keys[UNMAPPED]) == 403
        bed.logins_file.write_text(_login_lines(bed.broker, {**LOGINS, UNMAPPED: LOGINS["alice"]}))
        stat = bed.logins_file.stat()
        os.utime(bed.logins_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        async with open_client(url, token=bed.keys[UNMAPPED]) as carol:
            assert await carol.list_offset(bed.topic, 0, -1) == 2  # now as kwt-alice
        # A file that no longer reads keeps the logins read before.
        bed.logins_file.write_text("carol = [")
        os.utime(bed.logins_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        async with open_client(url, token=bed.keys[UNMAPPED]) as carol:
            assert await carol.list_offset(bed.topic, 0, -1) == 2


async def test_logins_in_use_are_bounded_by_max_identities_and_an_idle_one_makes_room(bed: Bed) -> None:
    async with running_proxy(_config(bed, max_identities=1)) as server:
        url = f"{server.url}/kafka"
        async with open_client(url, token=bed.keys["alice"]) as alice:
            assert await alice.list_offset(bed.topic, 0, -1) == 2
            assert await _status(url, bed.keys["bob"]) == 503  # alice's login holds the one place
            assert await alice.list_offset(bed.topic, 0, -1) == 2  # and alice is not disturbed
        # alice's session is over: her login is idle, and makes room for bob's.
        async with open_client(url, token=bed.keys["bob"]) as bob:
            with pytest.raises(PubSubError) as denied:
                await bob.list_offset(bed.topic, 0, -1)
            assert denied.value.code == ErrorCode.NOT_AUTHORIZED
        assert await settled(lambda: "/kafka as alice" not in server.statistics().upstreams)


async def test_a_group_kafka_refuses_the_login_is_group_not_authorized(bed: Bed) -> None:
    _allow(bed.broker, LOGINS["bob"], "READ", "TOPIC", bed.topic)  # bob may read the topic
    _allow(bed.broker, LOGINS["alice"], "READ", "GROUP", "guarded")  # the group is alice's alone
    async with running_proxy(_config(bed)) as server:
        async with open_client(f"{server.url}/kafka", token=bed.keys["bob"]) as bob:
            assert await bob.list_offset(bed.topic, 0, -1) == 2
            assert await _group_offsets_code(bob, "guarded", bed.topic) == ErrorCode.GROUP_NOT_AUTHORIZED
        async with open_client(f"{server.url}/kafka", token=bed.keys["alice"]) as alice:
            assert await _group_offsets_code(alice, "guarded", bed.topic) is None  # answered: alice may read it


async def _group_offsets_code(client: Any, group: str, topic: str) -> int | None:
    """None when the group's offsets are answered, else the error code.

    Asked again while a fresh broker makes its offsets topic (COORDINATOR_NOT_AVAILABLE, a KAFKA_ERROR).
    """
    with trio.fail_after(30):
        while True:
            try:
                await client.group_offsets(group, topic)
            except PubSubError as exc:
                if exc.code != ErrorCode.KAFKA_ERROR:
                    return exc.code
            else:
                return None
            await trio.sleep(0.2)


def test_a_credentials_table_names_its_problems_and_never_a_password(tmp_path: Path) -> None:
    path = tmp_path / "logins.toml"
    path.write_text('alice = { username = "kwt-alice", password = "hunter2-secret" }\nbob = { username = "b" }\n')
    with pytest.raises(ConfigError) as bad:
        KafkaCredentialsConfig(file=str(path))
    assert "bob: no password" in str(bad.value)
    assert "hunter2" not in str(bad.value)
    good = KafkaCredentialsConfig(text='alice = { username = "kwt-alice", password = "hunter2-secret" }')
    assert "hunter2" not in repr(good) and "hunter2" not in repr(good.logins())
    with pytest.raises(ConfigError, match="one of the two"):
        KafkaCredentialsConfig()
