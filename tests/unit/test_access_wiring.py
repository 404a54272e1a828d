"""How a route's access control is put together and asked (issue 13), without I/O or a broker.

The connection asks a principal's rights before each command and never looks a
topic up first; a route's access takes its credentials, origins and quotas from
its config; the handshake counter keeps its bounds. Fakes stand in for the
clock; the real pieces (ACL, JWT, keys, buckets) are used as they are.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Final

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._auth import Principal, hash_key
from kafka_ws_trio._auth._credentials import Credential
from kafka_ws_trio._auth._route import RouteAccess, Unauthorized
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, JwtConfig, QuotaConfig
from kafka_ws_trio._http import HandshakeCount
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    Command,
    ErrorCode,
    ProduceAction,
    Reply,
    ServerConnection,
    StreamAction,
    decode_response,
    encode_fetch_request,
    encode_list_offset_request,
    encode_produce_request,
)
from kafka_ws_trio._proto._events import ErrorAnswer, OutRecord

NODES: Final = "127.0.0.1:9092"
CHEAP: Final = 4  # log2 n of the key hashes made here: fast, and as good for the logic


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def route(**options: object) -> RouteConfig:
    return RouteConfig("/kafka", NODES, **options)  # type: ignore[arg-type]


READER: Final = AclRuleConfig(principals=("reader",), operations=("read",), topics=("orders.*",))
WRITER: Final = AclRuleConfig(
    principals=("writer",), operations=("read", "write", "group"), topics=("orders.*",), groups=("dash-*",)
)


def connection_for(principal: str, **options: object) -> tuple[ServerConnection, FakeClock]:
    access = RouteAccess(route(acl=(READER, WRITER), **options))
    clock = FakeClock()
    session = access.session_access(Principal(principal), clock)
    return ServerConnection(1 << 20, streams=True, produce=True, groups=True, access=session), clock


def error_of(reply: object) -> ErrorAnswer:
    assert isinstance(reply, Reply), reply
    answer = decode_response(reply.frame)
    assert isinstance(answer, ErrorAnswer), answer
    return answer


def subscribe_frame(sequence: int, topic: str, group: str = "") -> bytes:
    request = pb.PubSubReq(sequence=sequence)
    request.cmd_subscribe.topic = topic
    if group:
        request.cmd_subscribe.group = group
    return request.SerializeToString()


@given(topic=st.text("abcdefghijklmnopqrstuvwxyz.-_", min_size=1, max_size=20))
def test_a_denied_read_is_refused_before_any_kafka_work_and_says_the_same_for_any_topic(topic: str) -> None:
    connection, _ = connection_for("reader")
    for frame in (encode_list_offset_request(1, topic, 0, -1), encode_fetch_request(2, topic, 0, 0)):
        action = connection.receive(frame)
        if topic.startswith("orders."):
            assert isinstance(action, Command)
        else:
            refused = error_of(action)
            assert refused.code == ErrorCode.NOT_AUTHORIZED
            assert refused.message.endswith("err: not authorized")
            assert isinstance(action, Reply) and action.denied


def test_a_read_right_does_not_write_or_join_groups() -> None:
    connection, _ = connection_for("reader")
    assert isinstance(connection.receive(subscribe_frame(1, "orders.eu")), StreamAction)
    produce = encode_produce_request(2, "orders.eu", [OutRecord(value=b"x")])
    assert error_of(connection.receive(produce)).code == ErrorCode.NOT_AUTHORIZED
    assert error_of(connection.receive(subscribe_frame(3, "orders.eu", "dash-1"))).code == (
        ErrorCode.GROUP_NOT_AUTHORIZED
    )
    assert connection.errors == 2


def test_a_group_right_names_its_groups() -> None:
    connection, _ = connection_for("writer")
    assert isinstance(connection.receive(subscribe_frame(1, "orders.eu", "dash-1")), StreamAction)
    refused = error_of(connection.receive(subscribe_frame(2, "orders.eu", "ops")))
    assert (refused.code, refused.message) == (ErrorCode.GROUP_NOT_AUTHORIZED, "not authorized to use group ops")


def test_a_produce_over_its_quota_takes_nothing_and_says_when_to_retry() -> None:
    connection, clock = connection_for("writer", quotas=QuotaConfig(produce_records_per_second=10, burst_seconds=1))
    records = [OutRecord(value=b"x")] * 8
    assert isinstance(connection.receive(encode_produce_request(1, "orders.eu", records)), ProduceAction)
    refused = error_of(connection.receive(encode_produce_request(2, "orders.eu", records)))
    assert refused.code == ErrorCode.QUOTA_EXCEEDED
    assert refused.message == "quota exceeded (produce), retry_after_ms=600"
    clock.now += 0.61
    assert isinstance(connection.receive(encode_produce_request(3, "orders.eu", records)), ProduceAction)


def test_records_and_bytes_quotas_are_taken_together_or_not_at_all() -> None:
    quotas = QuotaConfig(produce_records_per_second=100, produce_bytes_per_second=10)
    access = RouteAccess(route(quotas=quotas))
    session = access.session_access(Principal("p"), FakeClock())
    assert session.produce_wait(1, 10) == 0.0
    assert session.produce_wait(99, 5) == pytest.approx(0.5)  # the bytes are not there
    assert session.produce_wait(99, 0) == 0.0, "the records refused above were given back"


def test_a_command_larger_than_the_burst_passes_on_a_full_bucket_and_is_owed() -> None:
    clock = FakeClock()
    session = RouteAccess(route(quotas=QuotaConfig(produce_bytes_per_second=100))).session_access(Principal("p"), clock)
    assert session.produce_wait(1, 300) == 0.0
    assert session.produce_wait(1, 1) == pytest.approx(2.01)  # 200 owed, then 1 more


def test_consumed_bytes_are_charged_and_say_how_long_delivery_waits() -> None:
    clock = FakeClock()
    access = RouteAccess(route(quotas=QuotaConfig(consume_bytes_per_second=1000)))
    assert access.paces_consumers
    session = access.session_access(Principal("p"), clock)
    assert session.consume_wait(1000) == 0.0
    assert session.consume_wait(500) == pytest.approx(0.5)
    clock.now += 0.5
    assert session.consume_wait(0) == 0.0
    assert not RouteAccess(route()).paces_consumers


def test_connections_at_once_and_per_second_are_counted_per_principal() -> None:
    access = RouteAccess(route(quotas=QuotaConfig(connections=2, connections_per_second=3, burst_seconds=1)))
    alice, bob = Principal("alice"), Principal("bob")
    for _ in range(2):
        assert access.connection_refused(alice, 0.0) is None
        access.opened(alice)
    assert access.connection_refused(alice, 0.0) == ("connections", 1.0)
    access.closed(alice)
    assert access.connection_refused(alice, 0.0) is None  # the 3rd new connection this second
    access.opened(alice)
    access.closed(alice)
    over = access.connection_refused(alice, 0.0)  # the 4th
    assert over is not None and over[0] == "connections_per_second"
    assert access.connection_refused(bob, 0.0) is None


def test_an_open_route_needs_nothing_and_a_secured_one_refuses_what_it_does_not_take() -> None:
    assert RouteAccess(route()).open
    assert not RouteAccess(route(quotas=QuotaConfig(connections=1))).open
    with pytest.raises(Unauthorized, match="a credential is required"):
        RouteAccess(route(auth="jwt", jwt=JwtConfig(algorithms=("HS256",), secret="k" * 32))).authenticate(None)


def test_an_api_key_names_its_principal_and_a_wrong_one_is_unauthorized() -> None:
    secret = "s3cret-s3cret"
    entry = ApiKeyConfig(id="app", principal="dashboard", hash=hash_key(secret, log2_n=CHEAP))
    access = RouteAccess(route(auth=("api_key",), api_keys=(entry,)))
    assert access.authenticate(Credential(f"kwt_app_{secret}", "header")).name == "dashboard"
    for wrong in (f"kwt_app_{secret}x", f"kwt_other_{secret}", secret):
        with pytest.raises(Unauthorized, match="invalid API key"):
            access.authenticate(Credential(wrong, "header"))


def test_origins_are_checked_only_for_browsers_and_the_route_list_wins_over_the_server_list() -> None:
    def refused(access: RouteAccess, origin: str | None) -> str | None:
        return access.origin_refused([(b"origin", origin.encode())] if origin is not None else [])

    server_list = RouteAccess(route(), ("https://a.example",))
    assert refused(server_list, "https://a.example") is None
    assert refused(server_list, "HTTPS://A.EXAMPLE") is None
    assert refused(server_list, "https://b.example") == "origin not allowed"
    assert refused(server_list, None) is None
    own = RouteAccess(route(allowed_origins=("https://b.example",)), ("https://a.example",))
    assert refused(own, "https://b.example") is None
    assert refused(own, "https://a.example") == "origin not allowed"
    assert refused(RouteAccess(route()), "https://anything.example") is None


def test_a_jwks_file_is_read_again_when_it_changes_and_a_broken_one_keeps_the_keys(tmp_path: Path) -> None:
    def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, object]:
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        as_jwk = json.loads(
            jwt.algorithms.ECAlgorithm.to_jwk(
                jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).prepare_key(public)
            )
        )
        return {**as_jwk, "kid": kid, "alg": "ES256", "use": "sig"}

    first, second = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk(first, "one")]}))
    access = RouteAccess(route(auth="jwt", jwt=JwtConfig(algorithms=("ES256",), jwks_file=str(jwks))))

    def token(key: ec.EllipticCurvePrivateKey, kid: str) -> Credential:
        body = {"sub": "p", "exp": int(time.time()) + 60}
        return Credential(jwt.encode(body, key, algorithm="ES256", headers={"kid": kid}), "header")

    assert access.authenticate(token(first, "one")).name == "p"
    with pytest.raises(Unauthorized):
        access.authenticate(token(second, "two"))
    jwks.write_text(json.dumps({"keys": [jwk(first, "one"), jwk(second, "two")]}) + " ")
    assert access.authenticate(token(second, "two")).name == "p"
    jwks.write_text("{ half-written")
    assert access.authenticate(token(second, "two")).name == "p", "the last good keys stay"


def test_handshakes_are_bounded_in_all_and_per_address() -> None:
    count = HandshakeCount(max_total=3, max_per_address=2)
    assert count.enter("a") is None
    assert count.enter("a") is None
    refused = count.enter("a")
    assert refused is not None and refused.status == 429
    count.leave("a", refused)  # a refused one was never counted
    assert count.enter("b") is None
    refused = count.enter("c")
    assert refused is not None and refused.status == 503
    count.leave("c", refused)
    for address in ("a", "a", "b"):
        count.leave(address, None)
    assert count.total == 0 and count.by_address == {}
