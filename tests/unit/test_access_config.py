"""The access-control keys of a route in TOML (issue 13): read whole, every mistake named by its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafka_ws_trio._auth import hash_key
from kafka_ws_trio._config import ConfigError, RouteConfig, parse_config
from kafka_ws_trio._config._access import AclRuleConfig, ApiKeyConfig, JwtConfig, QuotaConfig

ROUTE = '[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'


def problems(text: str, **environ: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_config(ROUTE + text, source="p.toml", environ=environ)
    return str(error.value).splitlines()


def test_every_access_table_reads_into_its_class(tmp_path: Path) -> None:
    stored = hash_key("s3cret", log2_n=4)
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    config = parse_config(
        ROUTE
        + 'auth = ["jwt", "api_key"]\nallowed_origins = ["https://app.example.com"]\n'
        + '[routes.jwt]\nalgorithms = "RS256"\njwks_file = "jwks.json"\naudience = "kafka"\n'
        + f'[[routes.api_keys]]\nid = "app"\nprincipal = "dashboard"\nhash = "{stored}"\n'
        + '[[routes.acl]]\nprincipals = "dashboard"\noperations = ["read", "group"]\ntopics = ["orders.*"]\n'
        + 'groups = ["dash-*"]\n'
        + "[routes.quotas]\nconnections = 5\nproduce_records_per_second = 100.5\n",
        base_dir=tmp_path,
    )
    route = config.routes[0]
    assert route.auth == ("jwt", "api_key")
    assert route.jwt == JwtConfig(algorithms=("RS256",), jwks_file=str(tmp_path / "jwks.json"), audience="kafka")
    assert route.api_keys == (ApiKeyConfig(id="app", principal="dashboard", hash=stored),)
    assert route.acl == (
        AclRuleConfig(
            principals=("dashboard",), operations=("read", "group"), topics=("orders.*",), groups=("dash-*",)
        ),
    )
    assert route.quotas == QuotaConfig(connections=5, produce_records_per_second=100.5)
    assert route.allowed_origins == ("https://app.example.com",)
    assert stored not in repr(route), "a key hash stays out of reprs"


def test_the_hmac_secret_comes_from_the_environment_and_is_never_shown() -> None:
    config = parse_config(
        ROUTE + 'auth = "jwt"\n[routes.jwt]\nalgorithms = ["HS256"]\nsecret_env = "JWT_SECRET"\n',
        environ={"JWT_SECRET": "x" * 40},
    )
    jwt = config.routes[0].jwt
    assert jwt is not None and jwt.secret is not None and jwt.secret.reveal() == "x" * 40
    assert "x" * 40 not in repr(config)


def test_every_mistake_in_the_access_tables_is_named_by_its_key_path() -> None:
    assert problems(
        'auth = ["jwt", "apikey"]\n'
        '[routes.jwt]\nalgorithms = ["HS256", "RS256"]\n'
        '[[routes.api_keys]]\nid = "a b"\nprincipal = "p"\nhash = "plain"\n'
        '[[routes.acl]]\nprincipal = "p"\noperations = ["read", "delete"]\ntopics = ["t"]\n'
        "[routes.quotas]\nproduce_records_per_second = -1\nbursts = 2\n"
    ) == [
        'p.toml: routes[0].auth: "apikey" is not one of "none", "api_key", "jwt"',
        "p.toml: routes[0].jwt.algorithms: mixes HMAC (HS*) and public-key algorithms; "
        "a route verifies with one family only",
        "p.toml: routes[0].api_keys[0].id: expected a key id: ASCII letters, digits and '-'",
        "p.toml: routes[0].api_keys[0].hash: is not a key hash; expected "
        "scrypt$<log2 n>$<r>$<p>$<salt>$<digest> (make one with: kafka-ws-trio hash-key)",
        'p.toml: routes[0].acl[0].principal: unknown key; did you mean "principals"? '
        "known keys: principals, operations, topics, groups",
        'p.toml: routes[0].acl[0].operations: "delete" is not one of "read", "write", "group"',
        "p.toml: routes[0].quotas.produce_records_per_second: -1 is out of range; expected a number above 0 per second",
        'p.toml: routes[0].quotas.bursts: unknown key; did you mean "burst_seconds"? known keys: connections, '
        "connections_per_second, produce_records_per_second, produce_bytes_per_second, "
        "consume_bytes_per_second, streams_per_connection, burst_seconds, max_principals",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('auth = "api_key"\n', "routes[0].auth: takes 'api_key', but the route has no api_keys"),
        ('auth = "jwt"\n', "routes[0].auth: takes 'jwt', but the route has no jwt"),
        (
            f'[routes.jwt]\nalgorithms = ["RS256"]\njwks_file = "{Path(__file__).as_posix()}"\n',
            "routes[0].jwt: is set, but auth does not take 'jwt'",
        ),
        (
            'auth = "jwt"\n[routes.jwt]\nalgorithms = ["HS256"]\n',
            "routes[0].jwt.secret: missing; HS256 needs secret_env",
        ),
        ('auth = "jwt"\n[routes.jwt]\nalgorithms = ["ES256"]\n', "public_key_files: missing"),
        ('auth = "jwt"\n[routes.jwt]\nalgorithms = ["RS256"]\npublic_key_files = ["nope.pem"]\n', "no such file"),
        ('allowed_origins = ["app.example.com"]\n', "is not an origin; expected scheme://host[:port]"),
        (
            '[[routes.acl]]\nprincipals = ["*"]\noperations = ["read"]\ntopics = ["t"]\ngroups = ["g"]\n',
            "routes[0].acl[0].groups: is set, but the rule does not allow the group operation",
        ),
    ],
)
def test_a_method_needs_its_settings_and_settings_need_their_method(text: str, problem: str) -> None:
    found = problems(text)
    assert any(problem in line for line in found), found


def test_two_keys_with_one_id_are_refused() -> None:
    stored = hash_key("s", log2_n=4)
    entry = ApiKeyConfig(id="app", principal="p", hash=stored)
    with pytest.raises(ConfigError, match=r"api_keys\[1\].id: \"app\" is already the id of api_keys\[0\]"):
        RouteConfig("/k", "127.0.0.1:9092", auth="api_key", api_keys=(entry, entry))


def test_the_secured_example_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "secured.toml"
    config = parse_config(example.read_text(), source=str(example), environ={"JWT_SECRET": "s" * 40})
    route = config.routes[0]
    assert "none" not in route.auth and route.acl and route.quotas is not None
    assert config.server.allowed_origins == ("https://app.example.com",)
