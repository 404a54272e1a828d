"""A route's access control, as configured: API keys, JWT settings, ACL rules, quotas (issue 13).

Plain checked data, like the rest of ``_config``: the server builds the
policy objects of ``_auth`` from it. The stored form of an API key's hash is
read here (:func:`parse_key_hash`), so a config with a mistyped hash is
refused when it is loaded, naming the key path, not at the first handshake.
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ._checks import _check_secret, _choice, _integer, _readable_file, _seconds, _string, _to_optional_secret
from ._defaults import (
    ACL_OPERATIONS,
    DEFAULT_JWT_LEEWAY,
    DEFAULT_JWT_PRINCIPAL_CLAIM,
    DEFAULT_JWT_RIGHTS_CLAIMS,
    DEFAULT_KAFKA_IDENTITIES,
    DEFAULT_KAFKA_UNMAPPED,
    DEFAULT_QUOTA_BURST_SECONDS,
    DEFAULT_QUOTA_PRINCIPALS,
    JWT_HMAC_ALGORITHMS,
    JWT_PUBLIC_KEY_ALGORITHMS,
    KAFKA_UNMAPPED,
    SASL_MECHANISMS,
)
from ._errors import ConfigError, ConfigProblem, _kind, _quote, _raise_all
from ._secret import Secret

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

#: The most a key hash's cost may ask for: a config cannot make every handshake take seconds.
MAX_KEY_HASH_LOG2_N: Final = 20
KEY_HASH_DIGEST_BYTES: Final = 32
_KEY_HASH_FORMAT: Final = "scrypt$<log2 n>$<r>$<p>$<salt>$<digest> (make one with: kafka-ws-trio hash-key)"
_KEY_ID: Final = re.compile(r"[A-Za-z0-9-]+")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """A stored key hash's scrypt parameters (log2 n, r, p), salt and digest.

    Raises:
        ValueError: not a hash ``kafka-ws-trio hash-key`` makes; the message says which part is wrong
        and never quotes the text.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError(f"is not a key hash; expected {_KEY_HASH_FORMAT}")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError(f"has a part that is not a number or not base64url; expected {_KEY_HASH_FORMAT}") from None
    if not 1 <= log2_n <= MAX_KEY_HASH_LOG2_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError(f"asks for a cost out of range (log2 n 1..{MAX_KEY_HASH_LOG2_N}, r 1..32, p 1..16)")
    if len(salt) < 8 or len(digest) != KEY_HASH_DIGEST_BYTES:
        raise ValueError(f"needs a salt of 8 bytes or more and a digest of {KEY_HASH_DIGEST_BYTES}")
    return log2_n, r, p, salt, digest


def _check_key_hash(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {_kind(value)}", key=attribute.name)
    try:
        parse_key_hash(value)
    except ValueError as exc:
        raise ConfigError(str(exc), key=attribute.name) from None


def _check_key_id(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise ConfigError("expected a key id: ASCII letters, digits and '-'", key=attribute.name)


def _to_tuple(value: object) -> object:
    """A TOML array (a list) as a tuple, a single string as a tuple of it; anything else as it is, to be reported."""
    if isinstance(value, str):
        return (value,)
    return tuple(value) if isinstance(value, list) else value


def _instances_of(cls: type, what: str) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, tuple) or not all(isinstance(item, cls) for item in value):
            raise ConfigError(f"expected an array of {what}, got {_kind(value)}", key=attribute.name)

    return check


_ORIGIN: Final = re.compile(r"(?:https?)://[A-Za-z0-9.-]+(?::[0-9]{1,5})?|null")


def _check_origins(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"expected an array of origins, got {_kind(value)}", key=attribute.name)
    for item in value:
        if not _ORIGIN.fullmatch(item):
            raise ConfigError(
                f'{_quote(item)} is not an origin; expected scheme://host[:port], e.g. "https://app.example.com"',
                key=attribute.name,
            )


def _strings(*, choices: tuple[str, ...] | None = None, allow_empty: bool = False, what: str = "strings") -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, tuple) or not all(isinstance(item, str) and item for item in value):
            raise ConfigError(f"expected an array of non-empty {what}, got {_kind(value)}", key=attribute.name)
        if not value and not allow_empty:
            raise ConfigError(f"expected at least one of {what}", key=attribute.name)
        if choices is not None:
            for item in value:
                if item not in choices:
                    allowed = ", ".join(_quote(c) for c in choices)
                    raise ConfigError(f"{_quote(item)} is not one of {allowed}", key=attribute.name)
        if len(set(value)) != len(value):
            raise ConfigError("names the same value twice", key=attribute.name)

    return check


@attrs.frozen(kw_only=True)
class ApiKeyConfig:
    """One ``[[routes.api_keys]]`` table: a key's id, the principal it names, and its hash (never the key)."""

    id: str = attrs.field(validator=_check_key_id)
    principal: str = attrs.field(validator=_string(spaces=False))
    hash: str = attrs.field(validator=_check_key_hash, repr=False)


_ALL_JWT_ALGORITHMS: Final = JWT_HMAC_ALGORITHMS + JWT_PUBLIC_KEY_ALGORITHMS


@attrs.frozen(kw_only=True)
class JwtConfig:
    """A route's ``jwt`` table: how tokens are verified.

    One family of algorithms: HMAC (``HS*``) with ``secret`` (best from the
    environment, ``secret_env``), or public-key with ``public_key_files`` (PEM)
    and/or a ``jwks_file`` (reloaded when it changes). ``issuer`` and
    ``audience``, when set, must be in every token.
    """

    algorithms: tuple[str, ...] = attrs.field(
        converter=_to_tuple, validator=_strings(choices=_ALL_JWT_ALGORITHMS, what="JWT algorithms")
    )
    secret: Secret | None = attrs.field(default=None, converter=_to_optional_secret, repr=False)
    public_key_files: tuple[str, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=_strings(allow_empty=True, what="file paths")
    )
    jwks_file: str | None = attrs.field(default=None, validator=_readable_file)
    issuer: str | None = attrs.field(default=None, validator=attrs.validators.optional(_string(spaces=True)))
    audience: str | None = attrs.field(default=None, validator=attrs.validators.optional(_string(spaces=True)))
    leeway: float = attrs.field(default=DEFAULT_JWT_LEEWAY, validator=_seconds(0, inclusive=True))
    principal_claim: str = attrs.field(default=DEFAULT_JWT_PRINCIPAL_CLAIM, validator=_string(spaces=False))
    rights_claims: tuple[str, ...] = attrs.field(
        default=DEFAULT_JWT_RIGHTS_CLAIMS, converter=_to_tuple, validator=_strings(allow_empty=True, what="claims")
    )

    def __attrs_post_init__(self) -> None:
        _raise_all(_jwt_problems(attrs.asdict(self, recurse=False)))

    @property
    def hmac(self) -> bool:
        return any(algorithm in JWT_HMAC_ALGORITHMS for algorithm in self.algorithms)


def _jwt_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    algorithms = values.get("algorithms")
    for path in values.get("public_key_files", ()):
        try:
            _readable_file(None, attrs.fields(JwtConfig).public_key_files, path)
        except ConfigError as exc:
            yield ConfigProblem("public_key_files", exc.problem)
    if not isinstance(algorithms, tuple):
        return
    hmac = [a for a in algorithms if a in JWT_HMAC_ALGORITHMS]
    if hmac and len(hmac) != len(algorithms):
        yield ConfigProblem(
            "algorithms", "mixes HMAC (HS*) and public-key algorithms; a route verifies with one family only"
        )
        return
    keys = values.get("public_key_files") or values.get("jwks_file")
    if hmac:
        if "secret" in values and values["secret"] is None:
            yield ConfigProblem("secret", f"missing; {'/'.join(hmac)} needs secret_env, the variable holding it")
        if keys:
            yield ConfigProblem("public_key_files", "is set, but HMAC algorithms verify with the secret only")
    else:
        if values.get("secret") is not None:
            yield ConfigProblem("secret", "is set, but public-key algorithms verify with public keys, not a secret")
        if "public_key_files" in values and "jwks_file" in values and not keys:
            yield ConfigProblem("public_key_files", "missing; public-key algorithms need public_key_files or jwks_file")


@attrs.frozen(kw_only=True)
class AclRuleConfig:
    """One ``[[routes.acl]]`` rule: allows ``operations`` on ``topics`` (and ``groups``) to ``principals``.

    A principal is a name, ``*`` for everyone, or ``claim:<name>=<value>``;
    a topic or group pattern is literal, a prefix (``orders.*``) or a glob.
    """

    principals: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_strings(what="principals"))
    operations: tuple[str, ...] = attrs.field(
        converter=_to_tuple, validator=_strings(choices=ACL_OPERATIONS, what="operations")
    )
    topics: tuple[str, ...] = attrs.field(converter=_to_tuple, validator=_strings(what="topic patterns"))
    groups: tuple[str, ...] = attrs.field(
        default=(), converter=_to_tuple, validator=_strings(allow_empty=True, what="group patterns")
    )

    def __attrs_post_init__(self) -> None:
        if self.groups and "group" not in self.operations:
            raise ConfigError("is set, but the rule does not allow the group operation", key="groups")


def _rate(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"expected a number above 0 per second, got {_kind(value)}", key=attribute.name)
    if not 0 < value < 1e12:
        raise ConfigError(f"{value!r} is out of range; expected a number above 0 per second", key=attribute.name)


@attrs.frozen(kw_only=True)
class QuotaConfig:
    """A route's ``quotas`` table: per principal, each as a rate a second; a missing key is no quota.

    ``connections`` (at once) and ``streams_per_connection`` are counts, not rates.

    A bucket holds ``burst_seconds`` of its rate (at least one unit), so a
    principal may spend that much at once after a quiet spell.
    """

    connections: int | None = attrs.field(default=None, validator=attrs.validators.optional(_integer(1)))
    connections_per_second: float | None = attrs.field(default=None, validator=_rate)
    produce_records_per_second: float | None = attrs.field(default=None, validator=_rate)
    produce_bytes_per_second: float | None = attrs.field(default=None, validator=_rate)
    consume_bytes_per_second: float | None = attrs.field(default=None, validator=_rate)
    #: Streams one session of the principal may have open at once (below the route's ``max_streams``).
    streams_per_connection: int | None = attrs.field(default=None, validator=attrs.validators.optional(_integer(1)))
    burst_seconds: float = attrs.field(default=DEFAULT_QUOTA_BURST_SECONDS, validator=_seconds(0, inclusive=False))
    max_principals: int = attrs.field(default=DEFAULT_QUOTA_PRINCIPALS, validator=_integer(1))


def check_key_ids(keys: Iterable[ApiKeyConfig]) -> Iterator[ConfigProblem]:
    """Each key id may stand once in a route (the id finds the key's hash)."""
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key.id in seen:
            yield ConfigProblem(
                f"api_keys[{index}].id", f"{_quote(key.id)} is already the id of api_keys[{seen[key.id]}]"
            )
        else:
            seen[key.id] = index


@attrs.frozen
class KafkaLogin:
    """The SASL username and password one principal reaches Kafka with."""

    username: str = attrs.field(validator=_string(spaces=True))
    password: Secret = attrs.field(validator=_check_secret, repr=False)


_LOGIN_EXAMPLE: Final = 'alice = { username = "kafka-alice", password = "..." }'


def parse_kafka_logins(text: str) -> tuple[tuple[str, KafkaLogin], ...]:
    """The principal-to-login pairs of a Kafka credentials document (TOML), in the order they stand.

    Each top-level key is a principal, each value a table with ``username`` and
    ``password``. Messages name the principal and the key, never a password.

    Raises:
        ConfigError: not TOML, or an entry that is not such a table.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from None
    problems: list[ConfigProblem] = []
    logins = []
    for principal, entry in document.items():
        if not isinstance(entry, dict):
            problems.append(ConfigProblem(principal, f"expected a table such as {_LOGIN_EXAMPLE}, got {_kind(entry)}"))
            continue
        unknown = sorted(set(entry) - {"username", "password"})
        missing = [key for key in ("username", "password") if key not in entry]
        if unknown or missing:
            said = [f"unknown key {_quote(key)}" for key in unknown] + [f"no {key}" for key in missing]
            problems.append(ConfigProblem(principal, f"{', '.join(said)}; expected a table such as {_LOGIN_EXAMPLE}"))
            continue
        password = entry["password"]
        try:
            login = KafkaLogin(entry["username"], Secret(password) if isinstance(password, str) else password)
        except ConfigError as exc:
            problems.append(ConfigProblem(f"{principal}.{exc.key}", exc.problem))
            continue
        logins.append((principal, login))
    _raise_all(iter(problems))
    return tuple(logins)


def read_kafka_logins(path: str) -> tuple[tuple[str, KafkaLogin], ...]:
    """:func:`parse_kafka_logins` of the file at ``path``.

    Raises:
        ConfigError: the file cannot be read or is not such a document; the message names the file.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_kafka_logins(text)
    except ConfigError as exc:
        said = "; ".join(f"{key}: {problem}" if key else problem for key, problem in exc.problems)
        raise ConfigError(f"{path}: {said}") from None


@attrs.frozen(kw_only=True)
class KafkaCredentialsConfig:
    """A route's ``kafka_credentials`` table: each principal reaches Kafka with a SASL login of its own.

    Kafka's own ACLs and quotas then apply to each caller. The logins come
    from ``file`` (TOML, read again when it changes) or ``text`` (the same
    document, best from the environment: ``text_env``), one of the two.
    ``mechanism`` defaults to the route's ``sasl`` mechanism, else PLAIN. A
    principal with no login is refused at the handshake (``unmapped =
    "refuse"``) or uses the route's own connection (``"route"``).
    ``max_identities`` bounds the logins with Kafka clients open at once.
    """

    file: str | None = attrs.field(default=None, validator=_readable_file)
    text: Secret | None = attrs.field(default=None, converter=_to_optional_secret, repr=False)
    mechanism: str | None = attrs.field(default=None, validator=attrs.validators.optional(_choice(SASL_MECHANISMS)))
    unmapped: str = attrs.field(default=DEFAULT_KAFKA_UNMAPPED, validator=_choice(KAFKA_UNMAPPED))
    max_identities: int = attrs.field(default=DEFAULT_KAFKA_IDENTITIES, validator=_integer(1))

    def __attrs_post_init__(self) -> None:
        _raise_all(_kafka_credentials_problems(attrs.asdict(self, recurse=False)))

    def logins(self) -> tuple[tuple[str, KafkaLogin], ...]:
        """The logins as they are now: the file is read again at each call.

        Raises:
            ConfigError: the file no longer reads as a credentials document.
        """
        if self.file is not None:
            return read_kafka_logins(self.file)
        assert self.text is not None
        return parse_kafka_logins(self.text.reveal())


def _kafka_credentials_problems(values: Mapping[str, Any]) -> Iterator[ConfigProblem]:
    if "file" not in values or "text" not in values:
        return
    file, text = values["file"], values["text"]
    if (file is None) == (text is None):
        yield ConfigProblem("file", "set file, or text (text_env), the Kafka logins of the principals; one of the two")
        return
    try:
        if file is not None:
            read_kafka_logins(file)
        elif isinstance(text, Secret):
            parse_kafka_logins(text.reveal())
    except ConfigError as exc:
        yield ConfigProblem("file" if file is not None else "text", str(exc))
