"""The config file: defaults, every kind of mistake and where its message points, secrets."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
from _support import OPENSSL_EC, openssl_in

from kafka_ws_trio import _config
from kafka_ws_trio._config import (
    ConfigError,
    ProxyConfig,
    RouteConfig,
    SaslConfig,
    Secret,
    ServerConfig,
    TlsConfig,
    _toml,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "proxy.toml"

ROUTE = '[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'
PASSWORD = "hunter2-do-not-print"
KEY_PASSWORD = "key-pass-do-not-print"


def fails(text: str, **kwargs: object) -> ConfigError:
    """The ConfigError that *text* (read as proxy.toml) raises."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="proxy.toml", **kwargs)  # type: ignore[arg-type]
    return info.value


def assert_points_at(error: ConfigError, key: str, *fragments: str) -> None:
    assert error.source == "proxy.toml"
    assert error.key == key
    assert str(error).startswith(f"proxy.toml: {key}: ")
    for fragment in fragments:
        assert fragment in str(error)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A CA certificate, a client certificate with its key, and that key encrypted."""
    folder = tmp_path_factory.mktemp("pem")
    openssl = openssl_in(folder)
    ec = OPENSSL_EC
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca")
    openssl("req", "-x509", *ec, "-keyout", "client.key", "-out", "client.pem", "-subj", "/CN=client")
    openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", "client-enc.key")
    (folder / "both.pem").write_bytes((folder / "client.pem").read_bytes() + (folder / "client.key").read_bytes())
    return SimpleNamespace(
        dir=folder,
        ca=folder / "ca.pem",
        cert=folder / "client.pem",
        key=folder / "client.key",
        enc_key=folder / "client-enc.key",
        both=folder / "both.pem",
        other_key=folder / "ca.key",
    )


# ---- defaults and the example -------------------------------------------------------------------


def test_minimal_config_takes_every_default() -> None:
    config = parse_config(ROUTE)
    assert config.server == ServerConfig()
    server = config.server
    assert server.host == _config.DEFAULT_HOST == "127.0.0.1"
    assert server.port == _config.DEFAULT_PORT == 9080
    assert server.max_message_size == _config.DEFAULT_MAX_MESSAGE_SIZE == 1_048_576
    assert server.grace_period == _config.DEFAULT_GRACE_PERIOD == 10
    assert server.queue_size == _config.DEFAULT_QUEUE_SIZE == 64
    assert server.workers == _config.DEFAULT_WORKERS == 8
    assert server.kafka_threads == _config.DEFAULT_KAFKA_THREADS == 32
    assert server.send_timeout == _config.DEFAULT_SEND_TIMEOUT == 30
    assert server.max_sessions == _config.DEFAULT_MAX_SESSIONS == 10_000
    assert server.log_level == _config.DEFAULT_LOG_LEVEL == "INFO"
    (route,) = config.routes
    assert route.uri == "/kafka"
    assert route.nodes == ("127.0.0.1:9092",)
    assert route.tls is None
    assert route.sasl is None
    assert route.request_timeout == _config.DEFAULT_REQUEST_TIMEOUT == 5
    assert route.fetch_max_wait == _config.DEFAULT_FETCH_MAX_WAIT == 0.1
    assert route.fetch_max_bytes == _config.DEFAULT_FETCH_MAX_BYTES == 1_048_576
    assert route.idle_timeout == _config.DEFAULT_IDLE_TIMEOUT == 60
    assert route.cache_records == _config.DEFAULT_CACHE_RECORDS == 10_000
    assert route.client_id == _config.DEFAULT_CLIENT_ID == "kafka-ws-trio"
    assert route.security_protocol == "PLAINTEXT"


def test_every_value_is_read() -> None:
    config = parse_config(
        """
        [server]
        host = "::"
        port = 0
        max_message_size = 1024
        grace_period = 0
        queue_size = 1
        workers = 2
        kafka_threads = 3
        send_timeout = 0.5
        max_sessions = 4
        log_level = "DEBUG"

        [[routes]]
        uri = "/a"
        nodes = ["kafka-1.example.com:9092", "[::1]:19092", "10.0.0.1:1"]
        request_timeout = 1
        fetch_max_wait = 0
        fetch_max_bytes = 1
        idle_timeout = 2.5
        cache_records = 1
        client_id = "proxy-7"
        sasl = { mechanism = "SCRAM-SHA-256", username = "u", password = "p" }

        [[routes]]
        uri = "/b"
        nodes = "127.0.0.1:9092"
        tls = true
        """
    )
    assert config.server == ServerConfig(
        host="::",
        port=0,
        max_message_size=1024,
        grace_period=0,
        queue_size=1,
        workers=2,
        kafka_threads=3,
        send_timeout=0.5,
        max_sessions=4,
        log_level="DEBUG",
    )
    first, second = config.routes
    assert first == RouteConfig(
        "/a",
        ("kafka-1.example.com:9092", "[::1]:19092", "10.0.0.1:1"),
        sasl=SaslConfig(mechanism="SCRAM-SHA-256", username="u", password="p"),
        request_timeout=1,
        fetch_max_wait=0,
        fetch_max_bytes=1,
        idle_timeout=2.5,
        cache_records=1,
        client_id="proxy-7",
    )
    assert first.security_protocol == "SASL_PLAINTEXT"
    assert second.nodes == ("127.0.0.1:9092",)
    assert second.tls == TlsConfig(verify=False)
    assert second.security_protocol == "SSL"
    assert config.route_for("/b") is second
    assert config.route_for("/b/") is None


def test_tls_false_means_no_tls() -> None:
    assert parse_config(ROUTE + "tls = false\n").routes[0].tls is None


def test_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.server == ServerConfig()
    assert config.routes == (RouteConfig("/kafka", ("127.0.0.1:9092",)),)


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    keys = [
        *_config._SERVER_KEYS,
        *_config._ROUTE_KEYS,
        *_config._TLS_KEYS,
        *_config._SASL_KEYS,
        *_toml._JWT_KEYS,
        *_toml._API_KEY_KEYS,
        *_toml._ACL_KEYS,
        *_toml._QUOTA_KEYS,
        *_toml._KAFKA_CREDENTIALS_KEYS,
    ]
    assert [key for key in keys if f"{key} = " not in text] == []
    for mechanism in _config.SASL_MECHANISMS:
        assert mechanism in text


def test_example_file_commented_route_is_valid(pem: SimpleNamespace) -> None:
    """The commented-out TLS and SASL route works once uncommented (with its files and variables)."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [[routes]]")
    block = [line[2:] for line in lines[start:] if line.startswith("# ")]
    certs = pem.dir / "certs"
    certs.mkdir(exist_ok=True)
    shutil.copy(pem.ca, certs / "ca.pem")
    shutil.copy(pem.cert, certs / "client.pem")
    shutil.copy(pem.enc_key, certs / "client.key")
    environ = {"KAFKA_KEY_PASSWORD": KEY_PASSWORD, "KAFKA_PASSWORD": PASSWORD}
    config = parse_config(ROUTE + "\n".join(block), base_dir=pem.dir, environ=environ)
    route = config.routes[1]
    assert route.security_protocol == "SASL_SSL"
    assert route.tls is not None
    assert route.tls.ca_file == str(certs / "ca.pem")
    assert route.sasl == SaslConfig(mechanism="SCRAM-SHA-512", username="proxy", password=PASSWORD)


# ---- one test per kind of mistake ----------------------------------------------------------------


def test_toml_syntax_error_names_the_line() -> None:
    error = fails(ROUTE + "[server]\nport = = 9080\n")
    assert error.key == ""
    assert str(error).startswith("proxy.toml: invalid TOML: ")
    assert "line 5" in str(error)


def test_unknown_key_suggests_the_closest() -> None:
    assert_points_at(
        fails("[server]\nprot = 9080\n" + ROUTE), "server.prot", 'did you mean "port"?', "known keys: host"
    )
    assert_points_at(fails(ROUTE.replace("[[routes]]", "[[route]]")), "route", 'did you mean "routes"?')
    assert_points_at(fails(ROUTE + "request_timout = 3\n"), "routes[0].request_timout", '"request_timeout"')
    error = fails(ROUTE + 'sasl = { mechansim = "PLAIN", username = "u", password = "p" }\n')
    assert_points_at(error, "routes[0].sasl.mechansim", 'did you mean "mechanism"?')
    assert_points_at(fails(ROUTE + "tls = { verfy = true }\n"), "routes[0].tls.verfy", '"verify"')
    assert_points_at(fails(ROUTE + '"my key" = 1\n'), 'routes[0]."my key"', "unknown key")


@pytest.mark.parametrize(
    ("line", "key", "got"),
    [
        ("[server]\nport = true", "server.port", "got a boolean"),
        ("[server]\nport = 9080.0", "server.port", "got a float"),
        ('[server]\nport = "9080"', "server.port", "got a string"),
        ("[server]\nworkers = false", "server.workers", "got a boolean"),
        ('[server]\ngrace_period = "10s"', "server.grace_period", "got a string"),
        ("[server]\nsend_timeout = true", "server.send_timeout", "got a boolean"),
        ("[server]\nhost = 127", "server.host", "got an integer"),
        ("[server]\nlog_level = 20", "server.log_level", "got an integer"),
        ("server = 1", "server", "got an integer"),
        ("routes = 1", "routes", "got an integer"),
        ("[[routes]]\nuri = 1\nnodes = []", "routes[0].uri", "got an integer"),
        ('[[routes]]\nuri = "/k"\nnodes = 9092', "routes[0].nodes", "got an integer"),
        ('[[routes]]\nuri = "/k"\nnodes = [9092]', "routes[0].nodes[0]", "got an integer"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\nrequest_timeout = 1979-05-27', "routes[0].request_timeout", "date"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\ncache_records = 1.5', "routes[0].cache_records", "got a float"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\ntls = "yes"', "routes[0].tls", "got a string"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\ntls = { verify = "yes" }', "routes[0].tls.verify", "true or false"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\ntls = { ca_file = 1 }', "routes[0].tls.ca_file", "got an integer"),
        ('[[routes]]\nuri = "/k"\nnodes = ["h:1"]\nsasl = "PLAIN"', "routes[0].sasl", "got a string"),
    ],
)
def test_wrong_type(line: str, key: str, got: str) -> None:
    text = line if "routes" in line else f"{line}\n{ROUTE}"
    assert_points_at(fails(text + "\n"), key, got)


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ("port = 65536", "server.port", "from 0 to 65535 (0 picks a free port)"),
        ("port = -1", "server.port", "from 0 to 65535"),
        ("max_message_size = 1023", "server.max_message_size", "from 1024 to 2147483647 bytes"),
        ("max_message_size = 2147483648", "server.max_message_size", "from 1024"),
        ("queue_size = 0", "server.queue_size", "from 1 to"),
        ("workers = 0", "server.workers", "from 1 to"),
        ("kafka_threads = -3", "server.kafka_threads", "from 1 to"),
        ("max_sessions = 0", "server.max_sessions", "from 1 to"),
        ("grace_period = -1", "server.grace_period", ">= 0 and <= 86400"),
        ("send_timeout = 0", "server.send_timeout", "> 0 and <= 86400"),
        ("send_timeout = inf", "server.send_timeout", "inf is out of range"),
        ("send_timeout = nan", "server.send_timeout", "nan is out of range"),
        ("send_timeout = 86401", "server.send_timeout", "<= 86400"),
    ],
)
def test_server_number_out_of_range(line: str, key: str, allowed: str) -> None:
    assert_points_at(fails(f"[server]\n{line}\n{ROUTE}"), key, "out of range", allowed)


@pytest.mark.parametrize(
    ("line", "key", "allowed"),
    [
        ("request_timeout = 0", "routes[0].request_timeout", "> 0"),
        ("fetch_max_wait = -0.1", "routes[0].fetch_max_wait", ">= 0"),
        ("fetch_max_bytes = 0", "routes[0].fetch_max_bytes", "from 1 to"),
        ("idle_timeout = 0", "routes[0].idle_timeout", "> 0"),
        ("cache_records = 0", "routes[0].cache_records", "from 1 to"),
    ],
)
def test_route_number_out_of_range(line: str, key: str, allowed: str) -> None:
    assert_points_at(fails(f"{ROUTE}{line}\n"), key, "out of range", allowed)


def test_fetch_max_wait_must_be_shorter_than_request_timeout() -> None:
    error = fails(ROUTE + "request_timeout = 1\nfetch_max_wait = 1\n")
    assert_points_at(error, "routes[0].fetch_max_wait", "less than request_timeout (1 s)")


def test_the_window_must_hold_at_least_one_poll() -> None:
    error = fails(ROUTE + "fetch_max_bytes = 2000\ncache_bytes = 1999\n")
    assert_points_at(error, "routes[0].cache_bytes", "at least fetch_max_bytes (2000)")
    assert parse_config(ROUTE + "fetch_max_bytes = 2000\ncache_bytes = 2000\n").routes[0].cache_bytes == 2000


@pytest.mark.parametrize("key", ["max_partition_readers", "cache_bytes"])
def test_route_bounds_must_be_positive(key: str) -> None:
    assert_points_at(fails(f"{ROUTE}{key} = 0\n"), f"routes[0].{key}", "out of range")


@pytest.mark.parametrize(
    ("line", "key"),
    [('host = "my host"', "server.host"), ('host = ""', "server.host"), ('log_level = "info"', "server.log_level")],
)
def test_bad_server_string(line: str, key: str) -> None:
    assert_points_at(fails(f"[server]\n{line}\n{ROUTE}"), key)


def test_log_level_suggests_the_spelling() -> None:
    assert_points_at(fails(f'[server]\nlog_level = "info"\n{ROUTE}'), "server.log_level", 'did you mean "INFO"?')


def test_duplicate_route_uris() -> None:
    error = fails(ROUTE + ROUTE.replace("/kafka", "/other") + ROUTE)
    assert_points_at(error, "routes[2].uri", '"/kafka" is already the uri of routes[0]')


@pytest.mark.parametrize("uri", ["kafka", "", "/kafka?x=1", "/ka fka", "/k#frag"])
def test_uri_must_be_a_path(uri: str) -> None:
    error = fails(ROUTE.replace('"/kafka"', f'"{uri}"'))
    assert_points_at(error, "routes[0].uri")
    if not uri.startswith("/"):
        assert 'must start with "/"' in str(error)


def test_missing_uri_or_nodes() -> None:
    assert_points_at(fails('[[routes]]\nnodes = ["h:1"]\n'), "routes[0].uri", "missing")
    assert_points_at(fails('[[routes]]\nuri = "/k"\n'), "routes[0].nodes", "missing")


def test_empty_nodes() -> None:
    assert_points_at(fails('[[routes]]\nuri = "/k"\nnodes = []\n'), "routes[0].nodes", "is empty", '"host:port"')


def test_node_that_is_not_host_port() -> None:
    error = fails('[[routes]]\nuri = "/k"\nnodes = ["127.0.0.1:9092", "localhost"]\n')
    assert str(error).startswith('proxy.toml: routes[0].nodes[1]: "localhost" is not host:port')


@pytest.mark.parametrize(
    "node",
    ["localhost", ":9092", "host:", "host:port", "::1:9092", "[::1]", "[zz]:9092", "host :9092", "h:0", "h:65536"],
)
def test_bad_nodes(node: str) -> None:
    error = fails(f'[[routes]]\nuri = "/k"\nnodes = ["a:1", "b:2", "{node}"]\n')
    assert_points_at(error, "routes[0].nodes[2]", f'"{node}"')


def test_node_listed_twice() -> None:
    error = fails('[[routes]]\nuri = "/k"\nnodes = ["a:1", "b:2", "a:1"]\n')
    assert_points_at(error, "routes[0].nodes[2]", "listed twice (also at nodes[0])")


def test_unknown_sasl_mechanism() -> None:
    text = ROUTE + ROUTE.replace("/kafka", "/b") + 'sasl = { mechanism = "GSSAPI", username = "u", password = "p" }\n'
    error = fails(text)
    assert_points_at(error, "routes[1].sasl.mechanism", '"GSSAPI" is not supported')
    assert '"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"' in str(error)
    lower = fails(ROUTE + 'sasl = { mechanism = "scram-sha-512", username = "u", password = "p" }\n')
    assert_points_at(lower, "routes[0].sasl.mechanism", 'did you mean "SCRAM-SHA-512"?')


def test_sasl_mechanism_defaults_to_plain() -> None:
    sasl = parse_config(ROUTE + 'sasl = { username = "u", password = "p" }\n').routes[0].sasl
    assert sasl == SaslConfig(mechanism=_config.DEFAULT_SASL_MECHANISM, username="u", password="p")
    assert _config.DEFAULT_SASL_MECHANISM == "PLAIN"


def test_sasl_needs_username_and_exactly_one_password() -> None:
    assert_points_at(fails(ROUTE + 'sasl = { password = "p" }\n'), "routes[0].sasl.username", "missing")
    neither = fails(ROUTE + 'sasl = { username = "u" }\n')
    assert_points_at(neither, "routes[0].sasl.password", "missing", "password_env")
    both = fails(ROUTE + 'sasl = { username = "u", password = "p", password_env = "P" }\n', environ={"P": "x"})
    assert_points_at(both, "routes[0].sasl.password_env", "not both")
    empty = fails(ROUTE + 'sasl = { username = "u", password = "" }\n')
    assert_points_at(empty, "routes[0].sasl.password", "must not be empty")


def test_password_env_not_set() -> None:
    error = fails(ROUTE + 'sasl = { username = "u", password_env = "KWT_TEST_UNSET" }\n', environ={})
    assert_points_at(error, "routes[0].sasl.password_env", 'environment variable "KWT_TEST_UNSET" is not set')
    empty = fails(ROUTE + 'sasl = { username = "u", password_env = "P" }\n', environ={"P": ""})
    assert_points_at(empty, "routes[0].sasl.password_env", 'environment variable "P" is empty')
    for name in ["", "not a name", "1ABC"]:
        unnamed = fails(ROUTE + f'sasl = {{ username = "u", password_env = "{name}" }}\n', environ={})
        assert_points_at(unnamed, "routes[0].sasl.password_env", "name of an environment variable")
    wrong_type = fails(ROUTE + 'sasl = { username = "u", password_env = 1 }\n', environ={})
    assert_points_at(wrong_type, "routes[0].sasl.password_env", "got an integer")


def test_password_env_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = ROUTE + 'sasl = { username = "u", password_env = "KWT_TEST_PASSWORD" }\n'
    sasl = parse_config(text, environ={"KWT_TEST_PASSWORD": PASSWORD}).routes[0].sasl
    assert sasl is not None
    assert sasl.password.reveal() == PASSWORD
    (tmp_path / "proxy.toml").write_text(text)
    monkeypatch.setenv("KWT_TEST_PASSWORD", "from-os-environ")
    sasl = load_config(tmp_path / "proxy.toml").routes[0].sasl
    assert sasl is not None
    assert sasl.password.reveal() == "from-os-environ"


def test_no_routes_at_all() -> None:
    assert_points_at(fails("[server]\nport = 1\n"), "routes", "no routes", "[[routes]]")
    assert_points_at(fails("routes = []\n"), "routes", "no routes")
    assert_points_at(fails(""), "routes", "no routes")


# ---- every mistake at once -----------------------------------------------------------------------

SERVER_KEYS = ", ".join(_config._SERVER_KEYS)


def test_three_mistakes_are_reported_together() -> None:
    error = fails(
        "[server]\nprot = 9080\n"
        '[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:99999"]\n'
        'sasl = { mechanism = "MD5", username = "u", password = "p" }\n'
    )
    assert str(error) == (
        f'proxy.toml: server.prot: unknown key; did you mean "port"? known keys: {SERVER_KEYS}\n'
        'proxy.toml: routes[0].nodes[0]: "127.0.0.1:99999": port 99999 is out of range; expected 1 to 65535\n'
        'proxy.toml: routes[0].sasl.mechanism: "MD5" is not supported; '
        'expected one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"'
    )
    assert [problem.key for problem in error.problems] == [
        "server.prot",
        "routes[0].nodes[0]",
        "routes[0].sasl.mechanism",
    ]
    assert error.omitted == 0
    # The single-problem attributes name the first, for callers written before.
    assert (error.key, error.problem) == error.problems[0]
    assert error.source == "proxy.toml"


def test_one_mistake_reads_as_before() -> None:
    error = fails(f"[server]\nprot = 9080\n{ROUTE}")
    assert str(error) == f'proxy.toml: server.prot: unknown key; did you mean "port"? known keys: {SERVER_KEYS}'
    assert error.problems == (_config.ConfigProblem("server.prot", error.problem),)
    assert error.args == (str(error),)


# Independent mistakes, each (the good line, the bad line, the line reported for it), in file order.
MISTAKES = [
    (
        "[server]\nport = 9080",
        "[server]\nprot = 9080",
        f'server.prot: unknown key; did you mean "port"? known keys: {SERVER_KEYS}',
    ),
    ("workers = 2", "workers = 0", "server.workers: 0 is out of range; expected an integer from 1 to 2147483647"),
    (
        'log_level = "INFO"',
        'log_level = "info"',
        'server.log_level: "info" is not supported; did you mean "INFO"? '
        'expected one of "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"',
    ),
    (
        '[[routes]]\nuri = "/kafka"',
        '[[routes]]\nuri = "kafka"',
        'routes[0].uri: "kafka" must start with "/" (e.g. "/kafka")',
    ),
    (
        'nodes = ["127.0.0.1:9092"]',
        'nodes = ["127.0.0.1:99999"]',
        'routes[0].nodes[0]: "127.0.0.1:99999": port 99999 is out of range; expected 1 to 65535',
    ),
    (
        "request_timeout = 5",
        "request_timeout = 0",
        "routes[0].request_timeout: 0 is out of range; expected a number of seconds > 0 and <= 86400",
    ),
    (
        'sasl = { mechanism = "PLAIN",',
        'sasl = { mechanism = "MD5",',
        'routes[0].sasl.mechanism: "MD5" is not supported; expected one of "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"',
    ),
    (
        'username = "u", password = "p" }',
        'username = "", password = "p" }',
        "routes[0].sasl.username: expected a non-empty string, got an empty string",
    ),
    (
        '[[routes]]\nuri = "/other"\nnodes = ["127.0.0.1:9092"]\ncache_records = 1',
        '[[routes]]\nuri = "/other"\nnodes = ["127.0.0.1:9092"]\ncache_records = 0',
        "routes[1].cache_records: 0 is out of range; expected an integer from 1 to 2147483647",
    ),
    (
        "tls = { verify = true }",
        'tls = { verify = "yes" }',
        "routes[1].tls.verify: expected true or false, got a string",
    ),
]


def test_every_set_of_independent_mistakes_is_reported_exactly() -> None:
    """Each of the 2**10 choices of mistakes reports exactly the chosen ones, in file order."""
    for chosen in itertools.product((False, True), repeat=len(MISTAKES)):
        lines = [bad if wrong else good for wrong, (good, bad, _) in zip(chosen, MISTAKES, strict=True)]
        # The sasl table is one TOML line made of two mistakes' halves.
        text = "\n".join(lines).replace(",\nusername", ", username") + "\n"
        expected = [f"proxy.toml: {line}" for wrong, (_, _, line) in zip(chosen, MISTAKES, strict=True) if wrong]
        if not expected:
            parse_config(text)
            continue
        assert str(fails(text)).split("\n") == expected, chosen


def test_problems_are_listed_in_file_order() -> None:
    """By where the keys stand, not by which table or check came first."""
    error = fails(
        ROUTE + 'request_timeout = 1\nfetch_max_wait = 2\nclient_id = "a b"\n[server]\nworkers = 0\nprot = 1\n'
    )
    assert [problem.key for problem in error.problems] == [
        "routes[0].fetch_max_wait",
        "routes[0].client_id",
        "server.workers",
        "server.prot",
    ]
    assert "2 is too long; it must be less than request_timeout (1 s)" in error.problems[0].problem


def test_each_bad_node_is_reported() -> None:
    error = fails('[[routes]]\nuri = "/k"\nnodes = ["a:1", "b", "a:1", "c:0"]\n')
    assert [problem.key for problem in error.problems] == [
        "routes[0].nodes[1]",
        "routes[0].nodes[2]",
        "routes[0].nodes[3]",
    ]
    with pytest.raises(ConfigError) as info:
        ProxyConfig.single_route(["b", "c"])
    assert str(info.value) == (
        'nodes[0]: "b" is not host:port (e.g. "127.0.0.1:9092" or "[::1]:9092")\n'
        'nodes[1]: "c" is not host:port (e.g. "127.0.0.1:9092" or "[::1]:9092")'
    )


def test_a_bad_route_does_not_hide_the_others() -> None:
    error = fails(
        'routes = [1, { uri = "/k", nodes = ["a:1"] }, { uri = "/k", nodes = ["a:1"] }, { uri = "/k", nodes = [] }]\n'
    )
    assert [problem.key for problem in error.problems] == [
        "routes[0]",
        "routes[2].uri",
        "routes[3].uri",
        "routes[3].nodes",
    ]


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        # A misspelt key is not also missing.
        ('[[routes]]\nurl = "/k"\nnodes = ["a:1"]\n', ["routes[0].url"]),
        (ROUTE + 'sasl = { username = "u", pasword = "p" }\n', ["routes[0].sasl.pasword"]),
        (ROUTE.replace("[[routes]]", "[[route]]"), ["route"]),
        # A check across two values is left out when one of them is wrong already.
        (ROUTE + "request_timeout = 0\nfetch_max_wait = 9\n", ["routes[0].request_timeout"]),
        (ROUTE + "fetch_max_bytes = 0\ncache_bytes = 1\n", ["routes[0].fetch_max_bytes"]),
        (ROUTE + 'tls = { ca_file = "nope.pem" }\n', ["routes[0].tls.ca_file"]),
        (ROUTE + 'tls = { cert_file = "nope.pem", key_password = "x" }\n', ["routes[0].tls.cert_file"]),
        # Routes whose uris are wrong are no duplicates of each other.
        (ROUTE.replace("/kafka", "kafka") * 2, ["routes[0].uri", "routes[1].uri"]),
    ],
)
def test_no_problem_that_only_follows_from_another(text: str, keys: list[str], tmp_path: Path) -> None:
    error = fails(text, base_dir=tmp_path)
    assert [problem.key for problem in error.problems] == keys


def test_an_unset_key_password_hides_the_encrypted_key(pem: SimpleNamespace) -> None:
    tls = f'tls = {{ cert_file = "{pem.cert}", key_file = "{pem.enc_key}", key_password_env = "K" }}\n'
    error = fails(ROUTE + tls, environ={})
    assert str(error) == 'proxy.toml: routes[0].tls.key_password_env: environment variable "K" is not set'


def test_the_report_is_bounded() -> None:
    bound = _config.MAX_REPORTED_PROBLEMS
    assert bound == 20
    routes = "".join(f'[[routes]]\nuri = "/r{index}"\nnodes = ["h:0"]\n' for index in range(bound + 5))
    error = fails(routes + "[server]\nworkers = 0\n")
    lines = str(error).split("\n")
    assert len(lines) == bound + 1
    assert lines[0] == 'proxy.toml: routes[0].nodes[0]: "h:0": port 0 is out of range; expected 1 to 65535'
    assert lines[bound - 1].startswith(f"proxy.toml: routes[{bound - 1}].nodes[0]: ")
    assert lines[-1] == f"proxy.toml: and 6 more problems; only the first {bound} are listed"
    assert (len(error.problems), error.omitted) == (bound, 6)
    one_more = fails(routes.replace('"h:0"', '"h:1"', 5) + "[server]\nworkers = 0\n")
    assert str(one_more).split("\n")[-1] == f"proxy.toml: and 1 more problem; only the first {bound} are listed"


def test_a_syntax_error_stays_one_problem() -> None:
    error = fails("[server]\nprot = 1\nport = = 2\n" + ROUTE)
    assert len(error.problems) == 1
    assert str(error).startswith("proxy.toml: invalid TOML: ")


# ---- files ---------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = fails(ROUTE + 'tls = { verify = true, ca_file = "nope/ca.pem" }\n', base_dir=tmp_path)
    assert_points_at(error, "routes[0].tls.ca_file", f"no such file: {tmp_path / 'nope' / 'ca.pem'}")


def test_file_that_is_a_folder(tmp_path: Path) -> None:
    error = fails(ROUTE + 'tls = { verify = true, ca_file = "." }\n', base_dir=tmp_path)
    assert_points_at(error, "routes[0].tls.ca_file", "is not a regular file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path: Path, pem: SimpleNamespace) -> None:
    ca = tmp_path / "ca.pem"
    shutil.copy(pem.ca, ca)
    ca.chmod(0)
    error = fails(ROUTE + 'tls = { verify = true, ca_file = "ca.pem" }\n', base_dir=tmp_path)
    assert_points_at(error, "routes[0].tls.ca_file", "cannot read", "ermission denied")


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, pem: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "certs").mkdir(parents=True)
    for source, name in [(pem.ca, "ca.pem"), (pem.cert, "client.pem"), (pem.key, "client.key")]:
        shutil.copy(source, folder / "certs" / name)
    (folder / "proxy.toml").write_text(
        ROUTE + 'tls = { verify = true, ca_file = "certs/ca.pem", cert_file = "certs/client.pem", '
        f'key_file = "{folder / "certs" / "client.key"}" }}\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    tls = load_config(Path("..") / "etc" / "proxy.toml").routes[0].tls
    assert tls == TlsConfig(
        verify=True,
        ca_file=str(folder / "certs" / "ca.pem"),
        cert_file=str(folder / "certs" / "client.pem"),
        key_file=str(folder / "certs" / "client.key"),
    )
    assert tls is not None
    assert tls.ca_file is not None
    assert os.path.isabs(tls.ca_file)


def test_symlinked_file_keeps_its_link(tmp_path: Path, pem: SimpleNamespace) -> None:
    (tmp_path / "ca.pem").symlink_to(pem.ca)
    tls = parse_config(ROUTE + 'tls = { verify = true, ca_file = "ca.pem" }\n', base_dir=tmp_path).routes[0].tls
    assert tls is not None
    assert tls.ca_file == str(tmp_path / "ca.pem")


def test_ca_file_is_checked_as_pem(tmp_path: Path, pem: SimpleNamespace) -> None:
    error = fails(ROUTE + f'tls = {{ verify = true, ca_file = "{pem.key}" }}\n')
    assert_points_at(error, "routes[0].tls.ca_file", f"{pem.key} holds no PEM CA certificate")


def test_ca_file_without_verify_is_refused(pem: SimpleNamespace) -> None:
    error = fails(ROUTE + f'tls = {{ ca_file = "{pem.ca}" }}\n')
    assert_points_at(error, "routes[0].tls.ca_file", "verify is false", "verify = true")


def test_client_certificate(pem: SimpleNamespace) -> None:
    separate = parse_config(ROUTE + f'tls = {{ cert_file = "{pem.cert}", key_file = "{pem.key}" }}\n')
    assert separate.routes[0].tls == TlsConfig(cert_file=str(pem.cert), key_file=str(pem.key))
    together = parse_config(ROUTE + f'tls = {{ cert_file = "{pem.both}" }}\n')
    assert together.routes[0].tls == TlsConfig(cert_file=str(pem.both))


def test_client_key_that_does_not_match(pem: SimpleNamespace) -> None:
    error = fails(ROUTE + f'tls = {{ cert_file = "{pem.cert}", key_file = "{pem.other_key}" }}\n')
    assert_points_at(error, "routes[0].tls.key_file", f"cannot load the client certificate {pem.cert}")


def test_key_file_needs_cert_file(pem: SimpleNamespace) -> None:
    error = fails(ROUTE + f'tls = {{ key_file = "{pem.key}" }}\n')
    assert_points_at(error, "routes[0].tls.key_file", "needs cert_file")
    unused = fails(ROUTE + 'tls = { key_password = "x" }\n')
    assert_points_at(unused, "routes[0].tls.key_password", "no cert_file")


def test_encrypted_key(pem: SimpleNamespace) -> None:
    tls = f'tls = {{ cert_file = "{pem.cert}", key_file = "{pem.enc_key}"'
    no_password = fails(f"{ROUTE}{tls} }}\n")
    assert_points_at(no_password, "routes[0].tls.key_file", "is encrypted; set key_password or key_password_env")
    wrong = fails(f'{ROUTE}{tls}, key_password = "wrong" }}\n')
    assert_points_at(wrong, "routes[0].tls.key_file", "key_password must be right")
    env = parse_config(f'{ROUTE}{tls}, key_password_env = "K" }}\n', environ={"K": KEY_PASSWORD}).routes[0].tls
    assert env is not None
    assert env.key_password == Secret(KEY_PASSWORD)
    inline = parse_config(f'{ROUTE}{tls}, key_password = "{KEY_PASSWORD}" }}\n').routes[0].tls
    assert inline == env
    unset = fails(f'{ROUTE}{tls}, key_password_env = "K" }}\n', environ={})
    assert_points_at(unset, "routes[0].tls.key_password_env", '"K" is not set')


def test_load_config_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value).startswith(f"{missing}: cannot read the config file")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[server]\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(binary))
    assert str(info.value).startswith(f"{binary}: invalid TOML: not UTF-8")
    bad = tmp_path / "proxy.toml"
    bad.write_text('[[routes]]\nuri = "/k"\nnodes = ["localhost"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f'{bad}: routes[0].nodes[0]: "localhost" is not host:port')


# ---- secrets -------------------------------------------------------------------------------------


def test_secret_hides_its_value() -> None:
    secret = Secret(PASSWORD)
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('***')"
    assert secret.reveal() == PASSWORD
    assert secret == Secret(PASSWORD)
    assert secret != Secret("other")


def test_secrets_never_show_in_repr(pem: SimpleNamespace) -> None:
    config = parse_config(
        ROUTE + f'sasl = {{ username = "u", password = "{PASSWORD}" }}\n'
        f'tls = {{ cert_file = "{pem.cert}", key_file = "{pem.enc_key}", key_password = "{KEY_PASSWORD}" }}\n'
    )
    sasl, tls = config.routes[0].sasl, config.routes[0].tls
    assert sasl is not None
    assert tls is not None
    shown = [repr(config), str(config), repr(sasl), repr(tls), repr(attrs.asdict(config)), str(attrs.astuple(config))]
    for text in shown:
        assert PASSWORD not in text
        assert KEY_PASSWORD not in text
    assert "password=Secret('***')" in repr(sasl)
    assert "key_password=Secret('***')" in repr(tls)


@pytest.mark.parametrize(
    "sasl",
    [
        f'sasl = {{ username = "u", password = "{PASSWORD}", mechanism = "NOPE" }}',
        f'sasl = {{ username = "", password = "{PASSWORD}" }}',
        f'sasl = {{ username = "u", pasword = "{PASSWORD}" }}',
        f'sasl = {{ username = "u", password = "{PASSWORD}", password_env = "X" }}',
        f'sasl = {{ username = "u", password = ["{PASSWORD}"] }}',
        f'sasl = {{ username = "u", password = "{PASSWORD}" }}\nnodes = ["x"]',
        f'sasl = {{ username = "u", password = "{PASSWORD} }}',
        f'sasl = {{ username = "u", password_env = "{PASSWORD}" }}\n',
        f'sasl = {{ username = "u", password = "{PASSWORD}" }}\ntls = {{ key_password = "{KEY_PASSWORD}" }}',
    ],
)
def test_secrets_never_show_in_error_messages(sasl: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(ROUTE + sasl + "\n", environ={})
    shown = [str(info.value), repr(info.value), info.value.problem]
    for text in shown:
        assert PASSWORD not in text
        assert KEY_PASSWORD not in text
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_secrets_are_not_in_the_code_built_error() -> None:
    with pytest.raises(ConfigError) as info:
        SaslConfig(mechanism="NOPE", username="u", password=PASSWORD)
    assert PASSWORD not in str(info.value)
    with pytest.raises(ConfigError) as info:
        SaslConfig(username="u", password=1234)  # type: ignore[arg-type]
    assert str(info.value) == "password: expected a string, got an integer"


# ---- building a config in code --------------------------------------------------------------------


def test_single_route() -> None:
    config = ProxyConfig.single_route("127.0.0.1:9092")
    assert config == ProxyConfig(ServerConfig(), (RouteConfig(_config.DEFAULT_URI, ("127.0.0.1:9092",)),))
    assert _config.DEFAULT_URI == "/kafka"
    sasl = SaslConfig(username="u", password=Secret("p"))
    custom = ProxyConfig.single_route(
        ["a:1", "b:2"], "/x", sasl=sasl, server=ServerConfig(port=0), request_timeout=1.0, client_id="t"
    )
    route = custom.routes[0]
    assert (route.uri, route.nodes, route.sasl, route.request_timeout, route.client_id) == (
        "/x",
        ("a:1", "b:2"),
        sasl,
        1.0,
        "t",
    )
    assert custom.server.port == 0
    assert custom.route_for("/x") is route


def test_code_built_config_is_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        ProxyConfig.single_route(["a:1", "nohost"])
    assert str(info.value).startswith('nodes[1]: "nohost" is not host:port')
    with pytest.raises(ConfigError, match=r"^port: "):
        ServerConfig(port=True)
    with pytest.raises(ConfigError, match=r"^routes: no routes"):
        ProxyConfig(ServerConfig(), [])
    route = RouteConfig("/k", "a:1")
    with pytest.raises(ConfigError, match=r"^routes\[1\]\.uri: "):
        ProxyConfig(ServerConfig(), [route, route])
    with pytest.raises(ConfigError, match=r"^request_timeout: "):
        attrs.evolve(route, request_timeout=-1)
    with pytest.raises(ConfigError, match=r"^tls: expected a TlsConfig or None, got a table"):
        RouteConfig("/k", "a:1", tls={"verify": True})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ProxyConfig.single_route("a:1", no_such_option=1)
