"""The sans-IO authorization policy (``_auth``, issue 13): where a handshake's credential is found
(PROTOCOL.md 5.6) and how it is kept out of logs, API key hashes, and ACL matching as properties."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import string
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kafka_ws_trio._auth import (
    Acl,
    AclRule,
    ApiKeys,
    Credential,
    CredentialError,
    JwtSettings,
    JwtVerifier,
    KeyEntry,
    Operation,
    Pattern,
    Principal,
    Quota,
    Quotas,
    TokenBucket,
    TokenRefused,
    find_credential,
    hash_key,
    new_key,
    redact_target,
    verify_key,
)
from kafka_ws_trio._auth._keys import parse_hash

#: A cheap scrypt cost for the tests (the default's is tens of ms a hash).
CHEAP = 4

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"

# ------------------------------------------------------------ credentials


def test_a_bearer_header_is_a_credential() -> None:
    found, offered = find_credential("/kafka", [(b"authorization", f"Bearer {TOKEN}".encode())])
    assert found == Credential(TOKEN, "header") and offered == ()


def test_the_access_token_query_parameter_is_a_credential() -> None:
    found, _ = find_credential(f"/kafka?x=1&access_token={TOKEN}", [])
    assert found == Credential(TOKEN, "query")


def test_a_bearer_subprotocol_is_a_credential_and_is_never_offered_back() -> None:
    headers = [(b"sec-websocket-protocol", f"kafka-ws.v1, bearer.{TOKEN}".encode())]
    found, offered = find_credential("/kafka", headers)
    assert found == Credential(TOKEN, "subprotocol")
    assert offered == ("kafka-ws.v1",)


def test_no_credential_is_none_and_the_subprotocols_are_kept() -> None:
    assert find_credential("/kafka?a=b", [(b"sec-websocket-protocol", b"one, two")]) == (None, ("one", "two"))


def test_the_same_token_in_several_places_is_one_credential_from_the_first() -> None:
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"sec-websocket-protocol", f"bearer.{TOKEN}".encode())]
    found, _ = find_credential(f"/kafka?access_token={TOKEN}", headers)
    assert found == Credential(TOKEN, "header")


@pytest.mark.parametrize(
    ("target", "headers", "problem"),
    [
        ("/kafka", [(b"authorization", b"Basic YWxpY2U6cHc=")], "the Authorization header must be 'Bearer <token>'"),
        ("/kafka?access_token=", [], "an empty token"),
        ("/kafka", [(b"sec-websocket-protocol", b"bearer.")], "an empty token"),
        ("/kafka?access_token=a", [(b"authorization", b"Bearer b")], "more than one token, and they differ"),
    ],
)
def test_a_credential_that_cannot_be_used_is_refused_without_naming_it(
    target: str, headers: list[tuple[bytes, bytes]], problem: str
) -> None:
    with pytest.raises(CredentialError) as refused:
        find_credential(target, headers)
    assert str(refused.value) == problem


def test_a_credential_repr_holds_no_token() -> None:
    assert TOKEN not in repr(Credential(TOKEN, "query"))


QUERY_TEXT = st.text(string.ascii_letters + string.digits + "-._~%+=&;/", max_size=40)


@given(before=QUERY_TEXT, token=st.text(string.ascii_letters + string.digits + "-._", min_size=8, max_size=40))
@example(before="", token=TOKEN)
@example(before="access_token=first", token=TOKEN)
def test_redaction_replaces_every_access_token_and_keeps_every_other_parameter(before: str, token: str) -> None:
    target = f"/kafka?{before}&access_token={token}&after=1"
    pairs = parse_qsl(urlsplit(target).query, keep_blank_values=True)
    redacted = redact_target(target)
    assert parse_qsl(urlsplit(redacted).query, keep_blank_values=True) == [
        (name, "REDACTED" if name == "access_token" else value) for name, value in pairs
    ]
    assert urlsplit(redacted).path == "/kafka"


def test_a_target_without_a_token_is_left_as_it_is() -> None:
    assert redact_target("/kafka?topic=a%20b") == "/kafka?topic=a%20b"
    assert redact_target("/kafka") == "/kafka"


# -------------------------------------------------------------- API keys


def test_a_hash_verifies_its_own_secret_only_and_holds_its_parameters() -> None:
    stored = hash_key("s3cret", log2_n=CHEAP)
    assert stored.startswith(f"scrypt${CHEAP}$8$1$")
    assert verify_key("s3cret", stored)
    assert not verify_key("s3cret ", stored)
    assert hash_key("s3cret", log2_n=CHEAP) != stored, "each hash has a salt of its own"


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ("plain-text-key", "is not a key hash; expected scrypt$"),
        ("scrypt$x$8$1$c2FsdHNhbHQ$ZGln", "not a number or not base64url"),
        ("scrypt$40$8$1$c2FsdHNhbHQ$ZGln", "a cost out of range"),
        ("scrypt$4$8$1$c2FsdA$ZGln", "a salt of 8 bytes or more"),
    ],
)
def test_a_stored_hash_this_module_did_not_make_is_refused(stored: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("$", r"\$")):
        parse_hash(stored)


def test_a_new_key_names_its_principal_and_nothing_else_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kafka_ws_trio._auth._keys.SCRYPT_LOG2_N", CHEAP)
    key, stored = new_key("billing-1")
    assert key.startswith("kwt_billing-1_")
    keys = ApiKeys([KeyEntry("billing-1", "billing", hash_key(key.rpartition("_")[2], log2_n=CHEAP))])
    assert keys.principal(key) == "billing"
    assert verify_key(key.rpartition("_")[2], stored)
    assert keys.principal(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.principal("kwt_other_" + key.rpartition("_")[2]) is None, "another id"
    assert keys.principal(key.rpartition("_")[2]) is None, "the secret alone"
    assert stored not in repr(KeyEntry("billing-1", "billing", stored)), "a hash stays out of reprs"


def test_a_key_id_must_be_plain() -> None:
    with pytest.raises(ValueError, match="a key id is ASCII letters, digits and '-'"):
        new_key("a_b")


# ------------------------------------------------------------------- ACLs

NAMES = st.text(string.ascii_lowercase + string.digits + ".-_", min_size=1, max_size=12)


@given(name=NAMES, other=NAMES)
def test_a_literal_pattern_matches_its_name_only(name: str, other: str) -> None:
    assert Pattern(name).kind == "literal"
    assert Pattern(name).matches(name)
    assert Pattern(name).matches(other) == (name == other)


@given(prefix=NAMES, rest=st.text(string.ascii_lowercase + ".-_", max_size=8), other=NAMES)
def test_a_prefix_pattern_matches_exactly_the_names_that_start_with_it(prefix: str, rest: str, other: str) -> None:
    pattern = Pattern(prefix + "*")
    assert pattern.kind == "prefix"
    assert pattern.matches(prefix + rest)
    assert pattern.matches(other) == other.startswith(prefix)


GLOBS = st.builds(
    lambda head, middle, tail: head + middle + tail,
    st.text(string.ascii_lowercase + ".", max_size=4),
    st.sampled_from(["?", "*?", "?*", "*.*", "x*y", "[ab]", "*[0-9]"]),
    st.text(string.ascii_lowercase + "*?.", max_size=4),
)


@given(glob=GLOBS, name=NAMES)
@example(glob="o?ders", name="orders")
def test_a_glob_pattern_matches_as_fnmatch_does_case_sensitively(glob: str, name: str) -> None:
    pattern = Pattern(glob)
    assert pattern.kind == "glob"
    assert pattern.matches(name) == fnmatch.fnmatchcase(name, glob)
    assert not Pattern("orders.*x").matches("ORDERS.ax")


ALICE = Principal("alice", {"roles": ("reader",), "scope": ("orders:write",)})


def test_no_rule_denies_everything() -> None:
    assert not Acl([]).allows(ALICE, Operation.READ, "orders")


def test_a_rule_allows_its_operations_on_its_topics_to_whom_it_names() -> None:
    rule = AclRule(("alice",), frozenset({Operation.READ}), (Pattern("orders.*"),))
    acl = Acl([rule])
    assert acl.allows(ALICE, Operation.READ, "orders.eu")
    assert not acl.allows(ALICE, Operation.WRITE, "orders.eu"), "another operation"
    assert not acl.allows(ALICE, Operation.READ, "payments"), "another topic"
    assert not acl.allows(Principal("bob"), Operation.READ, "orders.eu"), "another principal"


def test_a_rule_may_name_everyone_or_a_claim_value() -> None:
    everyone = AclRule(("*",), frozenset({Operation.READ}), (Pattern("public"),))
    writers = AclRule(("claim:scope=orders:write",), frozenset({Operation.WRITE}), (Pattern("orders"),))
    acl = Acl([everyone, writers])
    assert acl.allows(Principal("anyone"), Operation.READ, "public")
    assert acl.allows(ALICE, Operation.WRITE, "orders")
    assert not acl.allows(Principal("bob", {"scope": ("orders:read",)}), Operation.WRITE, "orders")


def test_a_group_rule_names_the_groups_it_allows() -> None:
    rule = AclRule(("alice",), frozenset({Operation.GROUP}), (Pattern("orders"),), (Pattern("billing-*"),))
    acl = Acl([rule])
    assert acl.allows(ALICE, Operation.GROUP, "orders", "billing-eu")
    assert not acl.allows(ALICE, Operation.GROUP, "orders", "audit")
    assert not acl.allows(ALICE, Operation.GROUP, "orders", None)
    any_group = Acl([AclRule(("alice",), frozenset({Operation.GROUP}), (Pattern("orders"),))])
    assert any_group.allows(ALICE, Operation.GROUP, "orders", "whatever")


RULES = st.builds(
    AclRule,
    who=st.lists(st.sampled_from(["*", "alice", "bob", "claim:roles=reader"]), min_size=1, max_size=2).map(tuple),
    operations=st.frozensets(st.sampled_from(Operation), min_size=1),
    topics=st.lists(st.sampled_from(["orders", "orders.*", "o?ders", "pay*"]).map(Pattern), min_size=1, max_size=2).map(
        tuple
    ),
)


@given(
    rules=st.lists(RULES, max_size=4),
    extra=RULES,
    operation=st.sampled_from(Operation),
    topic=st.sampled_from(["orders", "orders.eu", "oRders", "payments", "audit"]),
)
def test_adding_a_rule_never_takes_a_permission_away(
    rules: list[AclRule], extra: AclRule, operation: Operation, topic: str
) -> None:
    before = Acl(rules).allows(ALICE, operation, topic, "g")
    after = Acl([*rules, extra]).allows(ALICE, operation, topic, "g")
    assert after >= before
    assert after == (before or extra.allows(ALICE, operation, topic, "g"))


# ------------------------------------------------------------------- JWTs

NOW = 1_900_000_000
SECRET = b"a shared secret of the route, long enough"


def rsa_pair() -> tuple[Any, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def ec_pair() -> tuple[Any, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


RSA_PRIVATE, RSA_PUBLIC = rsa_pair()
EC_PRIVATE, EC_PUBLIC = ec_pair()


def claims(**changes: Any) -> dict[str, Any]:
    base = {"sub": "alice", "iss": "https://issuer.example", "aud": "kafka-ws", "exp": NOW + 600, "scope": "read write"}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


SETTINGS = {"issuer": "https://issuer.example", "audience": "kafka-ws"}


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWT reads the time through datetime.now(tz=utc): the tokens are checked at NOW."""
    import datetime as real

    class Frozen(real.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> real.datetime:  # type: ignore[override]
            return real.datetime.fromtimestamp(NOW, tz)

    monkeypatch.setattr("jwt.api_jwt.datetime", Frozen)


def test_a_valid_hs256_token_names_its_principal_with_its_scopes_and_expiry() -> None:
    verifier = JwtVerifier(JwtSettings(("HS256",), **SETTINGS), secret=SECRET)
    principal = verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert principal == Principal("alice")
    assert principal.claims == {"scope": ("read", "write")}
    assert principal.expires_at == NOW + 600


def test_rs256_and_es256_tokens_verify_against_their_public_keys() -> None:
    verifier = JwtVerifier(JwtSettings(("RS256", "ES256"), **SETTINGS), public_keys=[RSA_PUBLIC, EC_PUBLIC])
    assert verifier.verify(jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256")).name == "alice"
    assert verifier.verify(jwt.encode(claims(sub="bob"), EC_PRIVATE, algorithm="ES256")).name == "bob"


def test_a_jwks_key_is_chosen_by_kid() -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_PRIVATE.public_key()))
    verifier = JwtVerifier(JwtSettings(("RS256",), **SETTINGS), jwks={"keys": [{**jwk, "kid": "k1", "use": "sig"}]})
    token = jwt.encode(claims(), RSA_PRIVATE, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(token).name == "alice"


def other_rsa_token() -> str:
    other, _ = rsa_pair()
    return jwt.encode(claims(), other, algorithm="RS256")


def unsigned_token(header: dict[str, Any]) -> str:
    """A token with ``header`` as it is (PyJWT would refuse to make some) and no real signature."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims())}.c2ln"


def none_token() -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=").decode()
    return f"{header}.{body}."


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (other_rsa_token, "bad signature"),
        (none_token, "algorithm 'none' is not allowed"),
        (lambda: jwt.encode(claims(), SECRET, algorithm="HS256"), "algorithm 'HS256' is not allowed"),
        (lambda: jwt.encode(claims(exp=NOW - 120), RSA_PRIVATE, algorithm="RS256"), "token expired"),
        (lambda: jwt.encode(claims(nbf=NOW + 120), RSA_PRIVATE, algorithm="RS256"), "token not yet valid"),
        (lambda: jwt.encode(claims(iss="https://evil.example"), RSA_PRIVATE, algorithm="RS256"), "wrong issuer"),
        (lambda: jwt.encode(claims(aud="someone-else"), RSA_PRIVATE, algorithm="RS256"), "wrong audience"),
        (lambda: jwt.encode(claims(exp=None), RSA_PRIVATE, algorithm="RS256"), "missing claim 'exp'"),
        (lambda: jwt.encode(claims(sub=None), RSA_PRIVATE, algorithm="RS256"), "missing claim 'sub'"),
        (lambda: "not.a.token", "not a JWT"),
        (lambda: unsigned_token({"alg": "RS256", "kid": 7}), "not a JWT"),
        (lambda: unsigned_token({"alg": "RS256", "crit": "exp"}), "not a JWT"),
    ],
    ids=[
        "bad signature",
        "alg none",
        "wrong algorithm",
        "expired",
        "not yet valid",
        "wrong issuer",
        "wrong audience",
        "no exp",
        "no sub",
        "garbage",
        "kid not a string",
        "crit not a list",
    ],
)
def test_every_bad_token_is_refused_with_its_reason_and_never_quoted(make: Any, reason: str) -> None:
    verifier = JwtVerifier(JwtSettings(("RS256",), **SETTINGS), public_keys=[RSA_PUBLIC])
    token = make()
    with pytest.raises(TokenRefused) as refused:
        verifier.verify(token)
    assert str(refused.value) == reason
    assert token not in str(refused.value)


def test_expiry_and_not_before_have_a_leeway() -> None:
    verifier = JwtVerifier(JwtSettings(("RS256",), **SETTINGS, leeway=30), public_keys=[RSA_PUBLIC])
    assert verifier.verify(jwt.encode(claims(exp=NOW - 20), RSA_PRIVATE, algorithm="RS256")).name == "alice"
    assert verifier.verify(jwt.encode(claims(nbf=NOW + 20), RSA_PRIVATE, algorithm="RS256")).name == "alice"


def test_an_rsa_public_key_used_as_an_hmac_secret_does_not_pass() -> None:
    """Algorithm confusion: a token signed HS256 with the (public) RSA key as its secret."""
    with pytest.raises(ValueError, match="not both"):
        JwtSettings(("RS256", "HS256"))
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = hmac.new(RSA_PUBLIC, header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()
    verifier = JwtVerifier(JwtSettings(("RS256",), **SETTINGS), public_keys=[RSA_PUBLIC])
    with pytest.raises(TokenRefused, match="algorithm 'HS256' is not allowed"):
        verifier.verify(forged)


def test_a_verifier_takes_the_keys_of_its_family_only() -> None:
    with pytest.raises(ValueError, match="HMAC algorithms take a secret"):
        JwtVerifier(JwtSettings(("HS256",)), public_keys=[RSA_PUBLIC])
    with pytest.raises(ValueError, match="not a secret"):
        JwtVerifier(JwtSettings(("RS256",)), secret=SECRET)
    with pytest.raises(ValueError, match="unknown"):
        JwtSettings(("HS999",))


# ----------------------------------------------------------------- quotas

TEN_A_SECOND = Quota(rate=10, burst=20)


def test_a_bucket_starts_full_refills_at_its_rate_and_never_past_its_burst() -> None:
    bucket = TokenBucket.full(TEN_A_SECOND, now=0)
    assert bucket.try_take(20, now=0) == 0.0
    assert bucket.try_take(1, now=0) == pytest.approx(0.1)
    assert bucket.try_take(5, now=0.5) == 0.0
    assert bucket.try_take(1, now=100) == 0.0
    assert bucket.tokens == 19, "refilled to the burst only"


def test_a_refused_take_takes_nothing_and_says_when_it_would_pass() -> None:
    bucket = TokenBucket.full(TEN_A_SECOND, now=0)
    bucket.try_take(18, now=0)
    assert bucket.try_take(5, now=0) == pytest.approx(0.3)
    assert bucket.tokens == 2
    assert bucket.try_take(5, now=0.3) == 0.0
    assert bucket.try_take(21, now=50) == float("inf"), "more than the burst never passes at once"


def test_charging_goes_into_debt_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket.full(TEN_A_SECOND, now=0)
    assert bucket.charge(15, now=0) == 0.0
    assert bucket.charge(15, now=0) == pytest.approx(1.0), "10 tokens owed at 10 a second"
    assert bucket.charge(0, now=1.0) == 0.0


@given(
    rate=st.floats(0.1, 1e6),
    burst=st.floats(1, 1e6),
    steps=st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1e6)), max_size=30),
)
def test_what_a_bucket_lets_through_never_exceeds_its_burst_plus_its_rate_times_the_time(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    quota = Quota(rate=rate, burst=burst)
    bucket = TokenBucket.full(quota, now=0)
    now = taken = 0.0
    for gap, amount in steps:
        now += gap
        if bucket.try_take(amount, now) == 0.0:
            taken += amount
    assert taken <= burst + rate * now + 1e-6 * (burst + rate * now)


def test_principals_past_the_bound_are_forgotten_least_recently_used_first() -> None:
    quotas = Quotas({"connections": TEN_A_SECOND}, max_principals=2)
    quotas.bucket("alice", "connections", 0)
    quotas.bucket("bob", "connections", 0)
    alice = quotas.bucket("alice", "connections", 1)  # alice is used again: bob is the oldest
    assert alice is not None
    quotas.bucket("carol", "connections", 2)
    assert len(quotas) == 2
    assert quotas.bucket("alice", "connections", 3) is alice, "alice is remembered"
    assert quotas.bucket("nobody", "no such quota", 3) is None
