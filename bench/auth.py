"""The access scenarios (issue 13): what checking a credential adds to a handshake, and whether a throttled
principal slows another one down.

* ``auth_handshake``: sessions opened one after another (connect, handshake,
  one ListOffset answered, close: the time to the first byte) and then
  handshakes AUTH_CONCURRENCY at a time (handshakes a second), on three
  routes, each served by a fresh proxy: ``auth = "none"`` (no credential, no
  rules: the proxy's open path), ``auth = "jwt"`` (RS256 tokens checked
  against a public key file, issuer and audience required, one ACL rule
  letting the tokens' scope read the topic) and ``auth = "api_key"`` (one
  key, checked with scrypt at every handshake, one rule for its principal).
  Every JWT session presents a token of its own, naming a principal of its own.
* ``quota_isolation``: principal A streams a topic a paced producer writes to
  and measures each record's latency (receipt minus CreateTime) while
  principal B, on the same route, produces over its
  ``produce_records_per_second`` quota as fast as it is answered, ignoring
  ``retry_after`` (every command past the quota refused QUOTA_EXCEEDED; the
  proxy holds such a client until the retry_after it was told, so B gets about
  two refusals per retry_after a session); then the same measurement without B,
  on a fresh proxy. Both principals present API keys; the ACL lets A read its
  topic and B write another.

Keys and tokens are made here, in the orchestrator, and written into the
run's folder (the logs' folder, readable by its owner only): the public key
file the proxy reads, and the tokens and API keys the load clients read. No
secret stands on a command line; a key's hash does (in the proxy's spec).
"""

from __future__ import annotations

import collections
import math
import time
from pathlib import Path
from typing import Any, Final

from .children import Child, say
from .context import Bench
from .plan import (
    AUTH_CONCURRENCY,
    AUTH_WARMUP,
    BUCKET_MS,
    CHILD_START_TIMEOUT,
    FANOUT_RECORD_BYTES,
    QUOTA_PRODUCE_RATE,
    QUOTA_READER_SESSIONS,
    QUOTA_WRITER_IN_FLIGHT,
    QUOTA_WRITER_RECORDS_PER_SECOND,
    QUOTA_WRITER_SESSIONS,
    READ_TIMEOUT,
    REQUEST_TIMEOUT,
    SMALL_RECORD_BYTES,
    SMALL_TOPIC_RECORDS,
    STREAM_CREDIT_RECORDS,
    BenchError,
    histogram_percentile,
    percentile,
)
from .probe import Probe
from .proxy import Proxy
from .report import late
from .targets import QUOTA_P99_FACTOR, QUOTA_P99_SLACK_MS

#: What the bench's tokens say, and what the JWT route requires of them.
JWT_ISSUER: Final = "https://kwt-bench.invalid"
JWT_AUDIENCE: Final = "kafka-ws-trio-bench"
JWT_ALGORITHM: Final = "RS256"
RSA_KEY_BITS: Final = 2048
READ_SCOPE: Final = "bench:read"
#: Tokens expire this long after they are made: well after any run, never during one.
TOKEN_SECONDS: Final = 3600
#: The routes auth_handshake compares, in the order they run.
AUTH_ROUTES: Final = ("none", "jwt", "api_key")
#: Seconds of py-spy samples (--profile) from the start of each auth_handshake run.
AUTH_PROFILE_SECONDS: Final = 5.0
#: quota_isolation: the principals' names (their API keys' ids too).
READER: Final = "reader-a"
WRITER: Final = "writer-b"
#: quota_isolation: seconds to wait after the window for A's records still on their way.
QUOTA_LATE_WAIT: Final = 15.0


def _secret_file(path: Path, lines: list[str]) -> Path:
    """Write ``lines`` to ``path``, readable by its owner only."""
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def _api_key(principal: str) -> tuple[str, dict[str, str]]:
    """A new API key naming ``principal`` (its id is the principal's name) and its ``[[routes.api_keys]]`` table."""
    from kafka_ws_trio._auth._keys import new_key

    key, stored = new_key(principal)
    return key, {"id": principal, "principal": principal, "hash": stored}


def _read_rule(principals: list[str], topic: str) -> dict[str, list[str]]:
    return {"principals": principals, "operations": ["read"], "topics": [topic]}


class _Signer:
    """An RSA key pair made for the run: the public half in a PEM file the proxy reads, tokens signed with the other."""

    def __init__(self, folder: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        self.public_file = folder / "auth-jwt-public.pem"
        self.public_file.write_bytes(
            self._key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def tokens(self, count: int) -> list[str]:
        """``count`` tokens, each naming a principal of its own, all with the scope the route's rule reads."""
        import jwt

        now = int(time.time())
        claims = {"scope": READ_SCOPE, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + TOKEN_SECONDS}
        key, algorithm = self._key, JWT_ALGORITHM
        return [jwt.encode({"sub": f"bench-user-{i}", **claims}, key, algorithm=algorithm) for i in range(count)]

    def route(self, topic: str) -> dict[str, Any]:
        """The JWT route's settings, as the tables of a TOML file."""
        return {
            "auth": ["jwt"],
            "jwt": {
                "algorithms": [JWT_ALGORITHM],
                "public_key_files": [str(self.public_file)],
                "issuer": JWT_ISSUER,
                "audience": JWT_AUDIENCE,
            },
            "acl": [_read_rule([f"claim:scope={READ_SCOPE}"], topic)],
        }


def _cpu(proxy: Proxy) -> float:
    times = proxy.process.cpu_times()
    return float(times.user + times.system)


# ------------------------------------------------------------------ handshakes


def handshakes_once(
    bench: Bench,
    method: str,
    route: dict[str, Any],
    tokens: list[str],
    topic: str,
    sequential: int,
    concurrent: int,
    bootstrap: str | None = None,
) -> dict[str, Any]:
    """One route on a fresh proxy: AUTH_WARMUP untimed sessions, ``sequential`` timed ones, then the handshakes.

    ``method`` names the run's files and processes; ``bootstrap``: another listener of the broker.
    With ``concurrent`` 0 only the sequential figures are measured.
    """
    extra: dict[str, Any] = {}
    if tokens:
        extra["token_file"] = str(_secret_file(bench.logdir / f"auth-{method}-tokens.txt", tokens))
    proxy = bench.proxy(f"proxy-auth-{method}", route=route, bootstrap=bootstrap)
    try:
        spec = bench.spec(
            proxy,
            kind="auth_handshake",
            topic=topic,
            warmup=AUTH_WARMUP,
            sequential=sequential,
            concurrent=concurrent,
            concurrency=AUTH_CONCURRENCY,
            **extra,
        )
        (worker,) = bench.workers(f"auth-{method}", [spec])
        try:
            worker.expect("ready", CHILD_START_TIMEOUT)
            probe = Probe(proxy, bench.broker_pid)
            probe.add_clients([worker])
            probe.start()
            with bench.profiled(proxy, f"auth_handshake_{method}", AUTH_PROFILE_SECONDS):
                worker.send("go")
                one_by_one = worker.expect("sequential", READ_TIMEOUT)
                cpu0 = _cpu(proxy)
                worker.send("concurrent")
                at_once = worker.expect("result", READ_TIMEOUT)
                cpu1 = _cpu(proxy)
            resources = probe.stop()
        finally:
            worker.stop()
        stats = proxy.stats()
    finally:
        proxy.stop()
    if at_once["failed"]:
        raise BenchError(
            f"auth_handshake ({method}): {at_once['failed']} of {concurrent} concurrent handshakes failed; "
            f"the first: {at_once['first_error']}"
        )
    first = sorted(one_by_one["first_byte_ms"])
    handshake = sorted(one_by_one["handshake_ms"])
    crowd = sorted(at_once["handshake_ms"])
    alone = {
        "auth": method,
        "sequential": len(first),
        # Unrounded: checked against the targets.
        "first_byte_p50_ms": percentile(first, 0.50),
        "first_byte_p99_ms": round(percentile(first, 0.99), 2),
        "first_byte_max_ms": round(first[-1], 2),
        "handshake_p50_ms": round(percentile(handshake, 0.50), 2),
        "handshake_p99_ms": round(percentile(handshake, 0.99), 2),
        "proxy_sessions_total": stats["sessions_total"],
        "proxy_sessions_rejected": stats["sessions_rejected"],
        "fresh_proxy": True,
        **resources,
    }
    if not crowd:
        return alone
    return {
        **alone,
        "concurrent": len(crowd),
        "concurrency": AUTH_CONCURRENCY,
        "handshakes_per_s": len(crowd) / at_once["seconds"],
        "concurrent_handshake_p50_ms": round(percentile(crowd, 0.50), 2),
        "concurrent_handshake_p99_ms": round(percentile(crowd, 0.99), 2),
        # The proxy's CPU (all its threads) over the concurrent part, per handshake.
        "proxy_cpu_us_per_handshake": round(1e6 * (cpu1 - cpu0) / len(crowd), 1),
        "client_cpu_pct": round(100 * at_once["cpu_seconds"] / at_once["seconds"], 1),
    }


def run_auth_handshake(bench: Bench) -> None:
    from kafka_ws_trio._auth._keys import SCRYPT_LOG2_N, SCRYPT_P, SCRYPT_R

    topic, _ = bench.create_topic("small", SMALL_TOPIC_RECORDS, SMALL_RECORD_BYTES)
    plan = bench.plan
    signer = _Signer(bench.logdir)
    key, entry = _api_key("bench-key")
    setups: dict[str, tuple[dict[str, Any], list[str], int, int]] = {
        "none": ({"auth": ["none"]}, [], plan.auth_sequential, plan.auth_concurrent),
        "jwt": (
            signer.route(topic),
            signer.tokens(AUTH_WARMUP + plan.auth_sequential + plan.auth_concurrent),
            plan.auth_sequential,
            plan.auth_concurrent,
        ),
        "api_key": (
            {"auth": ["api_key"], "api_keys": [entry], "acl": [_read_rule([entry["principal"]], topic)]},
            [key],
            plan.auth_key_sequential,
            plan.auth_key_concurrent,
        ),
    }
    runs: dict[str, dict[str, Any]] = {}
    for method in AUTH_ROUTES:
        route, tokens, sequential, concurrent = setups[method]
        run = runs[method] = handshakes_once(bench, method, route, tokens, topic, sequential, concurrent)
        say(
            f"auth handshake ({method}): first byte p50 {run['first_byte_p50_ms']:.2f} ms, "
            f"p99 {run['first_byte_p99_ms']:.2f} ms; {run['handshakes_per_s']:,.0f} handshakes/s "
            f"{AUTH_CONCURRENCY} at a time, proxy CPU {run['proxy_cpu_us_per_handshake']:,.0f} us/handshake"
        )
    none, jwt, keyed = runs["none"], runs["jwt"], runs["api_key"]
    bench.results["auth_handshake"] = {
        # Unrounded: checked against its target.
        "jwt_first_byte_p50_ms": jwt["first_byte_p50_ms"],
        "jwt_first_byte_p99_ms": jwt["first_byte_p99_ms"],
        "none_first_byte_p50_ms": round(none["first_byte_p50_ms"], 2),
        "none_first_byte_p99_ms": none["first_byte_p99_ms"],
        "api_key_first_byte_p50_ms": round(keyed["first_byte_p50_ms"], 2),
        "api_key_first_byte_p99_ms": keyed["first_byte_p99_ms"],
        "jwt_handshakes_per_s": round(jwt["handshakes_per_s"], 1),
        "none_handshakes_per_s": round(none["handshakes_per_s"], 1),
        "api_key_handshakes_per_s": round(keyed["handshakes_per_s"], 1),
        "jwt_vs_none_handshakes_per_s": round(jwt["handshakes_per_s"] / none["handshakes_per_s"], 3),
        "sequential": plan.auth_sequential,
        "concurrent": plan.auth_concurrent,
        "api_key_sequential": plan.auth_key_sequential,
        "api_key_concurrent": plan.auth_key_concurrent,
        "concurrency": AUTH_CONCURRENCY,
        "warmup_sessions": AUTH_WARMUP,
        "jwt": f"{JWT_ALGORITHM}, {RSA_KEY_BITS}-bit key from a public key file, issuer and audience required, "
        "one token (and principal) per session, in the query (access_token)",
        "api_key": f"scrypt log2 n {SCRYPT_LOG2_N}, r {SCRYPT_R}, p {SCRYPT_P}; one key for every session",
        "what": "first byte: TCP connect, WebSocket handshake with the credential, ListOffset(latest) answered, "
        "one session after another; handshakes/s: connect, handshake, close, "
        f"{AUTH_CONCURRENCY} at a time",
        "fresh_proxy_per_run": True,
        "by_auth": runs,
    }


# ------------------------------------------------------------------ quota isolation


def _isolation_once(
    bench: Bench,
    name: str,
    route: dict[str, Any],
    topic: str,
    reader_keys: Path,
    writer: tuple[str, Path] | None,
) -> dict[str, Any]:
    """Principal A's stream latency over one window on a fresh proxy; with ``writer``, B hammering produce meanwhile."""
    proxy = bench.proxy(f"proxy-quota-{name}", route=route)
    children: list[Child] = []
    writing: dict[str, Any] | None = None
    try:
        (producer,) = bench.workers(
            f"quota-producer-{name}",
            [
                {
                    "kind": "producer",
                    "bootstrap": bench.bootstrap,
                    "topic": topic,
                    "rate": QUOTA_PRODUCE_RATE,
                    "value_bytes": FANOUT_RECORD_BYTES,
                }
            ],
        )
        children.append(producer)
        producer.expect("ready", CHILD_START_TIMEOUT)
        producer.send("go")
        spec = bench.spec(
            proxy,
            kind="fanout",
            via="stream",
            topic=topic,
            sessions=QUOTA_READER_SESSIONS,
            sample_every=1,
            first_index=0,
            place_timeout=REQUEST_TIMEOUT,
            token_file=str(reader_keys),
        )
        (reader,) = bench.workers(f"quota-reader-{name}", [spec])
        children.append(reader)
        ready = reader.expect("ready", CHILD_START_TIMEOUT + 2 * REQUEST_TIMEOUT)
        if ready["placed"] < QUOTA_READER_SESSIONS:
            raise BenchError(
                f"quota_isolation ({name}): {ready['placed']} of {QUOTA_READER_SESSIONS} streams of {READER} "
                f"opened: {ready['first_error']}"
            )
        hammer: Child | None = None
        if writer is not None:
            writer_topic, writer_keys = writer
            spec = bench.spec(
                proxy,
                kind="quota_hammer",
                topic=writer_topic,
                sessions=QUOTA_WRITER_SESSIONS,
                in_flight=QUOTA_WRITER_IN_FLIGHT,
                value_bytes=FANOUT_RECORD_BYTES,
                token_file=str(writer_keys),
            )
            (hammer,) = bench.workers(f"quota-writer-{name}", [spec])
            children.append(hammer)
            opened = hammer.expect("ready", CHILD_START_TIMEOUT + REQUEST_TIMEOUT)
            if opened["opened"] < QUOTA_WRITER_SESSIONS:
                raise BenchError(f"quota_isolation: {WRITER}'s sessions did not open: {opened['first_error']}")
            hammer.send("go")
        time.sleep(bench.plan.quota_warmup)
        t0 = math.ceil(time.time())
        t1 = t0 + round(bench.plan.quota_window)
        time.sleep(max(0.0, t0 - time.time()))
        probe = Probe(proxy, bench.broker_pid)
        probe.add_clients(children)
        before = proxy.stats()
        probe.start()
        reader.send("go")
        with bench.profiled(proxy, f"quota_isolation_{name}", t1 - time.time()):
            time.sleep(max(0.0, t1 - time.time()))
        after = proxy.stats()
        resources = probe.stop()
        if hammer is not None:
            hammer.send("finish")
            writing = hammer.expect("result", CHILD_START_TIMEOUT)
        producer.send("stop", t0=t0, t1=t1)
        produced = producer.expect("result", CHILD_START_TIMEOUT)
        reader.send("finish", end=produced["last_offset"] + 1, t0=t0, t1=t1, wait=QUOTA_LATE_WAIT)
        result = reader.expect("result", QUOTA_LATE_WAIT + CHILD_START_TIMEOUT)
    finally:
        for child in children:
            child.stop()
        proxy.stop()
    if result["broken"]:
        first = result["first_broken"]
        raise BenchError(f"quota_isolation ({name}): {result['broken']} wrong batches or answers; the first: {first}")
    hist: collections.Counter[int] = collections.Counter({bucket: count for bucket, count in result["hist"]})
    received = sum(hist.values())
    missing = max(0, produced["in_window"] * result["sampled"] - received)
    seconds = after["t"] - before["t"]
    run: dict[str, Any] = {
        "p50_ms": histogram_percentile(hist, missing, 0.50),
        "p99_ms": histogram_percentile(hist, missing, 0.99),
        "max_ms": round(max(hist) * BUCKET_MS, 1) if hist else None,
        "mean_ms": round(sum(b * c for b, c in hist.items()) * BUCKET_MS / received, 1)
        if received and not missing
        else None,
        "deliveries": received,
        "deliveries_missing": missing,
        "records_in_window": produced["in_window"],
        "produce_rate_achieved": round(produced["rate"], 1),
        "sessions_lagging_at_end": result["lagging"],
        "stream_error_events": result["errors"],
        "window_seconds": t1 - t0,
        "wait_seconds": QUOTA_LATE_WAIT,
        "proxy_commands_per_s": round((after["commands_total"] - before["commands_total"]) / seconds, 1),
        "proxy_errors_per_s": round((after["errors_total"] - before["errors_total"]) / seconds, 1),
        "reader_client_cpu_pct": round(100 * result["cpu_seconds"] / max(result["wall_seconds"], 1e-9), 1),
        "fresh_proxy": True,
        **resources,
    }
    if writing is not None:
        span = writing["wall_seconds"]
        run["writer"] = {
            "sessions": writing["sessions"],
            "sessions_lost": writing["sessions_lost"],
            "commands_per_s": round(writing["sent"] / span, 1),
            "refused_per_s": round(writing["refused"] / span, 1),
            "written_per_s": round(writing["written"] / span, 1),
            "other_answers": writing["other"],
            "first_other_answer": writing["first_other"],
            "client_cpu_pct": round(100 * writing["cpu_seconds"] / span, 1),
            "seconds": round(span, 1),
        }
        if not writing["refused"]:
            raise BenchError(f"quota_isolation: {WRITER} was never refused QUOTA_EXCEEDED; its quota did not apply")
    return run


def run_quota_isolation(bench: Bench) -> None:
    reader_topic, _ = bench.create_topic("quota-read", 0, FANOUT_RECORD_BYTES)
    writer_topic, _ = bench.create_topic("quota-write", 0, FANOUT_RECORD_BYTES)
    reader_key, reader_entry = _api_key(READER)
    writer_key, writer_entry = _api_key(WRITER)
    reader_keys = _secret_file(bench.logdir / f"quota-{READER}.key", [reader_key])
    writer_keys = _secret_file(bench.logdir / f"quota-{WRITER}.key", [writer_key])
    route = {
        "auth": ["api_key"],
        "api_keys": [reader_entry, writer_entry],
        "acl": [
            _read_rule([READER], reader_topic),
            {"principals": [WRITER], "operations": ["write"], "topics": [writer_topic]},
        ],
        "quotas": {"produce_records_per_second": QUOTA_WRITER_RECORDS_PER_SECOND},
    }
    # The throttled run first: the baseline, second, gets whatever the broker has warmed up by then,
    # which can only make the target stricter.
    throttled = _isolation_once(bench, "throttled", route, reader_topic, reader_keys, (writer_topic, writer_keys))
    baseline = _isolation_once(bench, "baseline", route, reader_topic, reader_keys, None)
    for name, run in (("throttled", throttled), ("baseline", baseline)):
        say(
            f"quota isolation ({name}): {READER}'s p50 {late(run, 'p50_ms')} ms, p99 {late(run, 'p99_ms')} ms, "
            f"proxy CPU {run['proxy_cpu_pct']}%, {run['proxy_commands_per_s']:,.0f} commands/s"
        )
    base_p99 = baseline["p99_ms"]
    bound = base_p99 * QUOTA_P99_FACTOR + QUOTA_P99_SLACK_MS if base_p99 is not None else None
    writer = throttled["writer"]
    bench.results["quota_isolation"] = {
        "p50_ms": throttled["p50_ms"],
        "p99_ms": throttled["p99_ms"],
        "baseline_p50_ms": baseline["p50_ms"],
        "baseline_p99_ms": base_p99,
        "p99_bound_ms": round(bound, 2) if bound is not None else None,
        "reader_sessions": QUOTA_READER_SESSIONS,
        "produce_rate": QUOTA_PRODUCE_RATE,
        "record_bytes": FANOUT_RECORD_BYTES,
        "credit_window_records": STREAM_CREDIT_RECORDS,
        "writer_quota_records_per_s": QUOTA_WRITER_RECORDS_PER_SECOND,
        "writer_sessions": QUOTA_WRITER_SESSIONS,
        "writer_in_flight": QUOTA_WRITER_IN_FLIGHT,
        "writer_commands_per_s": writer["commands_per_s"],
        "writer_refused_per_s": writer["refused_per_s"],
        "writer_written_per_s": writer["written_per_s"],
        "writer_other_answers": writer["other_answers"],
        "auth": "api_key (one key per principal), ACL: A reads its topic, B writes another",
        "warmup_seconds": bench.plan.quota_warmup,
        "window_seconds": bench.plan.quota_window,
        "order": ["throttled", "baseline"],
        "fresh_proxy_per_run": True,
        "runs": {"throttled": throttled, "baseline": baseline},
    }
