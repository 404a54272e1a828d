"""The admin API's pure parts (issue 14): route tables out and back, admin credentials, request bodies."""

from __future__ import annotations

import pytest

from kafka_ws_trio._config import ConfigError, RouteConfig, SaslConfig, TlsConfig
from kafka_ws_trio._config._access import AclRuleConfig, QuotaConfig
from kafka_ws_trio._config._export import route_table
from kafka_ws_trio._config._toml import parse_route
from kafka_ws_trio._http import BodyReader, HeadReader, RequestHead, Respond
from kafka_ws_trio._ops._admin import credential, route_id


def test_a_route_table_reads_back_as_the_same_route_once_its_secrets_are_given_again() -> None:
    route = RouteConfig(
        "/orders",
        ("a:9092", "b:9092"),
        sasl=SaslConfig(mechanism="SCRAM-SHA-512", username="u", password="secret-1"),
        tls=TlsConfig(verify=False),
        acl=(AclRuleConfig(principals=("*",), operations=("read",), topics=("orders.*",)),),
        quotas=QuotaConfig(produce_records_per_second=5),
        produce=True,
    )
    table = route_table(route)
    assert "password" not in table["sasl"] and "secret-1" not in repr(table)
    table["sasl"]["password"] = "secret-1"
    assert parse_route(table) == route


def test_an_empty_acl_stays_deny_all_and_no_acl_stays_allow_all() -> None:
    assert parse_route(route_table(RouteConfig("/a", "h:1", acl=()))).acl == ()
    assert parse_route(route_table(RouteConfig("/a", "h:1"))).acl is None


def test_a_route_table_s_mistakes_are_keyed_within_the_table() -> None:
    with pytest.raises(ConfigError) as bad:
        parse_route({"uri": "/a", "nodes": ["h:99999"], "sasl": {"username": "u", "password": "p", "mechanism": "X"}})
    assert [key for key, _ in bad.value.problems] == ["nodes[0]", "sasl.mechanism"]


@pytest.mark.parametrize(("uri", "expected"), [("/kafka", "kafka"), ("/a/b", "a%2Fb"), ("/", "")])
def test_a_route_id_is_its_uri_without_the_slash_percent_encoded(uri: str, expected: str) -> None:
    assert route_id(uri) == expected


def test_the_admin_key_comes_from_x_api_key_first_then_a_bearer_token() -> None:
    assert credential([(b"x-api-key", b" k1 "), (b"authorization", b"Bearer k2")]) == "k1"
    assert credential([(b"authorization", b"Bearer k2")]) == "k2"
    assert credential([(b"authorization", b"Basic abc")]) is None
    assert credential([(b"x-api-key", b"")]) is None
    assert credential([]) is None


def _after_head(request: bytes, max_body: int) -> BodyReader:
    reader = HeadReader()
    head = reader.feed(request)
    assert isinstance(head, RequestHead)
    return BodyReader(reader, max_body)


def test_a_body_is_read_whether_it_came_with_the_head_or_after_it() -> None:
    head = b"PUT /admin/routes/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
    assert _after_head(head + b"abcd", 10).feed(None) == b"abcd"
    later = _after_head(head, 10)
    assert later.feed(None) is None
    assert later.feed(b"ab") is None
    assert later.feed(b"cd") == b"abcd"


def test_a_body_over_the_bound_gets_413_and_one_cut_short_400() -> None:
    head = b"PUT /admin/routes/a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
    too_large = _after_head(head + b"x" * 40, 10).feed(None)
    assert isinstance(too_large, Respond) and too_large.status == 413
    cut = _after_head(head + b"x" * 5, 100)
    assert cut.feed(None) is None
    ended = cut.feed(b"")
    assert isinstance(ended, Respond) and ended.status == 400
