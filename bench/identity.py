"""The ``kafka_identity`` scenario (issue 13): what it costs to serve each principal with its own Kafka login.

Three runs, each on a fresh proxy reaching the broker's SASL_PLAINTEXT
listener, each timing sessions one after another (connect, JWT handshake,
ListOffset(latest) answered, close: the time to the first byte):

* ``route_login``: the route's own SASL login serves every session (the
  baseline: one shared set of Kafka clients, warm after the warm-up);
* ``own_login_cold``: ``kafka_credentials`` maps every principal to an
  ordinary Kafka user, and each session is a principal never seen before, so
  each first byte includes opening that principal's Kafka clients (a SASL
  login, a metadata request, a consumer for the ListOffset);
* ``own_login_warm``: the same route, with a few principals whose logins are
  open already (the warm-up opened them): what a returning user pays.

The logins file and the route's password stay out of every command line: the
file is in the run's folder (readable by its owner only) and the password is
handed to the proxy in its environment.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

from .auth import READ_SCOPE, _read_rule, _secret_file, _Signer, handshakes_once
from .children import say
from .context import Bench
from .plan import (
    AUTH_WARMUP,
    SMALL_RECORD_BYTES,
    SMALL_TOPIC_RECORDS,
    BenchError,
)

#: The variable the proxy reads the route's SASL password from (set in the orchestrator's environment).
PASSWORD_ENV: Final = "KWT_BENCH_SASL_PASSWORD"
#: own_login_warm: principals whose logins the warm-up opens; the timed sessions take turns among them.
WARM_PRINCIPALS: Final = 4
#: The runs, in the order they go.
IDENTITY_RUNS: Final = ("route_login", "own_login_cold", "own_login_warm")


def _broker_logins(bench: Bench) -> tuple[str, str, str]:
    """The SASL listener, the super user and one ordinary user (whose password is the same)."""
    env = bench.broker_env
    address, user, password = (
        env.get("KAFKA_BOOTSTRAP_SASL"),
        env.get("KAFKA_SASL_USERNAME"),
        env.get("KAFKA_SASL_PASSWORD"),
    )
    ordinary = [name for name in env.get("KAFKA_ACL_USERS", "").split(",") if name]
    if not (address and user and password and ordinary):
        raise BenchError(
            "kafka_identity needs the broker's SASL listener and users (KAFKA_BOOTSTRAP_SASL, KAFKA_SASL_USERNAME, "
            'KAFKA_SASL_PASSWORD, KAFKA_ACL_USERS); run without --bootstrap, or eval "$(scripts/kafka up)" first'
        )
    os.environ[PASSWORD_ENV] = password  # inherited by the proxy processes started from here on
    return address, user, ordinary[0]


def run_kafka_identity(bench: Bench) -> None:
    address, super_user, ordinary = _broker_logins(bench)
    topic, _ = bench.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
    sequential = bench.plan.identity_sequential
    signer = _Signer(bench.logdir)
    cold_tokens = signer.tokens(AUTH_WARMUP + sequential)  # a principal of its own for every session
    principals = [f"bench-user-{i}" for i in range(len(cold_tokens))]
    # Every principal logs in as the one ordinary user: each still gets Kafka clients of its own.
    logins = _secret_file(
        bench.logdir / "identity-kafka-logins.toml",
        [f'"{who}" = {{ username = "{ordinary}", password = "{os.environ[PASSWORD_ENV]}" }}' for who in principals],
    )
    shared: dict[str, Any] = {
        **signer.route(topic),
        "sasl": {"username": super_user, "password_env": PASSWORD_ENV},
        "acl": [_read_rule([f"claim:scope={READ_SCOPE}"], topic)],
    }
    own = {**shared, "kafka_credentials": {"file": str(logins)}}
    setups = {
        "route_login": (shared, cold_tokens),
        "own_login_cold": (own, cold_tokens),
        "own_login_warm": (own, cold_tokens[:WARM_PRINCIPALS]),
    }
    runs: dict[str, dict[str, Any]] = {}
    for name in IDENTITY_RUNS:
        route, tokens = setups[name]
        started = time.monotonic()
        run = runs[name] = handshakes_once(bench, f"identity-{name}", route, tokens, topic, sequential, 0, address)
        say(
            f"kafka identity ({name}): first byte p50 {run['first_byte_p50_ms']:.2f} ms, "
            f"p99 {run['first_byte_p99_ms']:.2f} ms ({time.monotonic() - started:.0f} s)"
        )
    base, cold, warm = runs["route_login"], runs["own_login_cold"], runs["own_login_warm"]
    bench.results["kafka_identity"] = {
        "route_login_first_byte_p50_ms": base["first_byte_p50_ms"],
        "cold_first_byte_p50_ms": cold["first_byte_p50_ms"],
        "cold_first_byte_p99_ms": cold["first_byte_p99_ms"],
        "warm_first_byte_p50_ms": warm["first_byte_p50_ms"],
        "warm_first_byte_p99_ms": warm["first_byte_p99_ms"],
        "warm_vs_route_p50": round(warm["first_byte_p50_ms"] / base["first_byte_p50_ms"], 3),
        "cold_vs_route_p50": round(cold["first_byte_p50_ms"] / base["first_byte_p50_ms"], 3),
        "sequential": sequential,
        "warmup_sessions": AUTH_WARMUP,
        "warm_principals": WARM_PRINCIPALS,
        "what": "first byte: TCP connect, WebSocket handshake with a JWT (RS256, in the query), ListOffset(latest) "
        "answered, one session after another, through the broker's SASL_PLAINTEXT listener (PLAIN); cold: a "
        "principal never seen, whose Kafka clients open for it; warm: one of a few principals whose clients are open",
        "fresh_proxy_per_run": True,
        "runs": runs,
    }
