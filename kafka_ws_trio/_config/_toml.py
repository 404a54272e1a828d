"""Reading the configuration from TOML: a file or text, into the classes of ``_model``.

The reader rejects unknown keys (suggesting the nearest known one), makes TLS
file paths absolute relative to the config file, reads ``*_env`` secrets from
the environment, and puts the file name and the key path, such as
``routes[0].nodes[1]``, in front of every problem the classes report.

It reads the whole document before it gives up: each value is checked on its
own, each table and route whatever the others hold, and the checks across
values run on the values that are fine, so one :class:`ConfigError` lists every
independent mistake in the order the keys stand in the file. A problem that
would only follow from another (a key missing because it is misspelt, a check
across two values one of which is wrong) is left out.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import attrs

from ._access import (
    AclRuleConfig,
    ApiKeyConfig,
    JwtConfig,
    KafkaCredentialsConfig,
    QuotaConfig,
    _jwt_problems,
    _kafka_credentials_problems,
)
from ._errors import ConfigError, ConfigProblem, _closest, _kind, _quote, _suggest
from ._model import (
    _NO_ROUTES,
    ProxyConfig,
    RouteConfig,
    RouteStoreConfig,
    SaslConfig,
    ServerConfig,
    TlsConfig,
    _route_problems,
    _same_uri,
    _server_tls_problems,
    _tls_problems,
)
from ._secret import Secret

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_route(table: Mapping[str, object], environ: Mapping[str, str] | None = None) -> RouteConfig:
    """Check one route given as a table (a TOML ``[[routes]]`` table, or the same keys in JSON).

    Relative file paths are taken from the current folder. Problems are keyed
    within the table (``nodes[1]``, ``sasl.mechanism``), every one found.

    Raises:
        ConfigError: the table is not a valid route.
    """
    reader = _Reader(Path.cwd(), os.environ if environ is None else environ)
    return reader.route(dict(table), 0, {})


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and check the TOML config file at *path*.

    Relative file paths inside it (``ca_file``, ``cert_file``, ``key_file``,
    ``tls_cert_file``, ``tls_key_file``) are taken relative to the folder
    holding the file (``~`` is expanded), and must be readable PEM files when
    it is loaded. Secrets named by
    ``*_env`` keys are read from ``os.environ``.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or holds values
            that are not allowed: every one found, a line each, each line
            starting with *path*.
    """
    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror or exc}", source=source) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"invalid TOML: not UTF-8 text (byte {exc.start})", source=source) from None
    return parse_config(text, source=source, base_dir=Path(source).parent)


def parse_config(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> ProxyConfig:
    """Check a config given as TOML text.

    Args:
        text: The TOML document.
        source: The name error messages start with.
        base_dir: Where relative file paths start; default the current folder.
        environ: Where ``*_env`` keys look; default ``os.environ``.

    Raises:
        ConfigError: The text is not TOML, or holds values that are not
            allowed (every one found).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names the line and column, never the text itself.
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    reader = _Reader(Path.cwd() if base_dir is None else Path(base_dir), os.environ if environ is None else environ)
    try:
        return reader.proxy(document)
    except ConfigError as exc:
        raise exc._within("", source) from None


_SERVER_KEYS: Final = (*(field.name for field in attrs.fields(ServerConfig)), "tls_key_password_env")
_SERVER_TLS_PATHS: Final = ("tls_cert_file", "tls_key_file")
_ROUTE_KEYS: Final = tuple(field.name for field in attrs.fields(RouteConfig))
_TLS_KEYS: Final = (*(field.name for field in attrs.fields(TlsConfig)), "key_password_env")
_SASL_KEYS: Final = (*(field.name for field in attrs.fields(SaslConfig)), "password_env")
_TLS_PATHS: Final = ("ca_file", "cert_file", "key_file")
_JWT_KEYS: Final = (*(field.name for field in attrs.fields(JwtConfig)), "secret_env")
_API_KEY_KEYS: Final = tuple(field.name for field in attrs.fields(ApiKeyConfig))
_ACL_KEYS: Final = tuple(field.name for field in attrs.fields(AclRuleConfig))
_QUOTA_KEYS: Final = tuple(field.name for field in attrs.fields(QuotaConfig))
_STORE_KEYS: Final = tuple(field.name for field in attrs.fields(RouteStoreConfig))
_KAFKA_CREDENTIALS_KEYS: Final = (*(field.name for field in attrs.fields(KafkaCredentialsConfig)), "text_env")
#: The route keys read by a table reader of their own.
_ROUTE_TABLES: Final = ("tls", "sasl", "api_keys", "jwt", "acl", "quotas", "kafka_credentials")

_T = TypeVar("_T")


class _Problems:
    """The problems found in one table, each kept at the place of the key it is about.

    tomllib keeps a table's keys in the order they stand in the file, so
    listing the problems by that place lists them in file order, whatever order
    the checks ran in. A problem about a key the table lacks goes last.
    """

    def __init__(self, table: Iterable[str] = ()) -> None:
        self._place = {key: index for index, key in enumerate(table)}
        self._found: list[tuple[int, ConfigProblem]] = []
        self._omitted = 0

    def __bool__(self) -> bool:
        return bool(self._found)

    def add(self, error: ConfigError, at: str | None = None) -> None:
        """Keep the problems of *error* at the place of key *at*, or else each at its own key's."""
        end = len(self._place)
        for problem in error.problems:
            self._found.append((self._place.get(problem.key if at is None else at, end), problem))
        self._omitted += error.omitted

    @contextmanager
    def at(self, key: str | None = None) -> Iterator[None]:
        """Keep a ConfigError raised inside, as it is, at the place of *key* (or each problem's own)."""
        try:
            yield
        except ConfigError as error:
            self.add(error, key)

    @contextmanager
    def within(self, key: str) -> Iterator[None]:
        """Keep a ConfigError raised inside with *key* in front of its key paths, at the place of *key*."""
        try:
            yield
        except ConfigError as error:
            self.add(error._within(key), key)

    def error(self) -> ConfigError | None:
        """One error with every problem kept, in file order; None when there are none."""
        if not self._found:
            return None
        problems = [problem for _, problem in sorted(self._found, key=lambda found: found[0])]
        return ConfigError._of(problems, omitted=self._omitted)

    def raise_any(self) -> None:
        error = self.error()
        if error is not None:
            raise error

    def unknown_keys(self, table: Mapping[str, object], known: tuple[str, ...]) -> set[str]:
        """Keep a problem for each key of *table* not in *known*; return the known keys they look misspelt from."""
        meant = set()
        for key in table:
            if key not in known:
                name = key if _BARE_KEY.fullmatch(key) else _quote(key)
                problem = f"unknown key; {_suggest(key, known)}known keys: {', '.join(known)}"
                self.add(ConfigError(problem, key=name), key)
                meant.add(_closest(key, known))
        return {key for key in meant if key is not None}

    def require(self, table: Mapping[str, object], key: str, hint: str, meant: set[str]) -> None:
        """Keep a problem if *table* lacks *key*, unless a misspelling of it is already reported."""
        if key not in table and key not in meant:
            self.add(ConfigError(f"missing; {hint}", key=key))


def _defaults(cls: type, table: Mapping[str, object]) -> dict[str, Any]:
    """The defaults of the fields of *cls* that *table* leaves out."""
    return {
        field.name: field.default
        for field in attrs.fields(cls)
        if field.name not in table and field.default is not attrs.NOTHING
    }


def _checked(cls: type, key: str, value: object) -> Any:
    """*value* converted and checked as field *key* of *cls* would be, on its own."""
    field = attrs.fields_dict(cls)[key]
    # attrs keeps the plain function it was given here (its stub says Converter).
    converter: Any = field.converter
    if converter is not None:
        value = converter(value)
    if field.validator is not None:
        field.validator(None, field, value)
    return value


def _fields(cls: type, table: Mapping[str, object], problems: _Problems, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The defaults and the values of *table* that are fields of *cls* and fine on their own.

    The problems of the others are kept in *problems*, and their keys left out.
    """
    values = _defaults(cls, table)
    names = attrs.fields_dict(cls)
    for key, value in table.items():
        if key in names and key not in skip:
            with problems.at(key):
                values[key] = _checked(cls, key, value)
    return values


def _build(
    cls: Callable[..., _T],
    values: dict[str, Any],
    problems: _Problems,
    across: Callable[[Mapping[str, Any]], Iterable[ConfigProblem]],
) -> _T:
    """Build *cls* from *values*, or raise every problem of its table.

    When some values are wrong already, the checks *across* values still run
    on the ones that are fine: a mistake there is a mistake of its own. (With
    every value fine, building runs those checks.)
    """
    if problems:
        for problem in across(values):
            problems.add(ConfigError(problem.problem, key=problem.key))
        problems.raise_any()
    try:
        return cls(**values)
    except ConfigError as error:
        problems.add(error)
        raise problems.error() or error from None


def _no_problems(_values: Mapping[str, Any]) -> Iterable[ConfigProblem]:
    return ()


@attrs.frozen
class _Reader:
    base_dir: Path
    environ: Mapping[str, str]

    def proxy(self, document: dict[str, Any]) -> ProxyConfig:
        problems = _Problems(document)
        meant = problems.unknown_keys(document, ("server", "routes"))
        server = ServerConfig()
        routes: list[RouteConfig] = []
        if "server" in document:
            with problems.within("server"):
                server = self.server(document["server"])
        if "routes" in document:
            with problems.within("routes"):
                routes = self.routes(document["routes"])
        elif "routes" not in meant:
            problems.add(ConfigError(_NO_ROUTES, key="routes"))
        problems.raise_any()
        return ProxyConfig(server, routes)

    def server(self, table: object) -> ServerConfig:
        if not isinstance(table, dict):
            raise ConfigError(f"expected a table ([server]), got {_kind(table)}")
        problems = _Problems(table)
        problems.unknown_keys(table, _SERVER_KEYS)
        paths = {key: self.path(item) if key in _SERVER_TLS_PATHS else item for key, item in table.items()}
        values = _fields(ServerConfig, paths, problems, skip=("tls_key_password", "admin_keys", "route_store"))
        if "route_store" in table:
            with problems.within("route_store"):
                values["route_store"] = self.route_store(table["route_store"])
        self.optional_secret(ServerConfig, table, "tls_key_password", values, problems)
        if "admin_keys" in table:
            with problems.within("admin_keys"):
                values["admin_keys"] = self.array(table["admin_keys"], "admin_keys", self.api_key, "server")
        return _build(ServerConfig, values, problems, _server_tls_problems)

    def routes(self, value: object) -> list[RouteConfig]:
        if not isinstance(value, list):
            raise ConfigError(f"expected an array of tables ([[routes]]), got {_kind(value)}")
        if not value:
            raise ConfigError(_NO_ROUTES)
        problems = _Problems()
        uris: dict[str, int] = {}
        built = []
        for index, table in enumerate(value):
            with problems.within(f"[{index}]"):
                built.append(self.route(table, index, uris))
        problems.raise_any()
        return built

    def route(self, table: object, index: int, uris: dict[str, int]) -> RouteConfig:
        """Read routes[*index*]; *uris* maps each good uri seen so far to its route's index."""
        if not isinstance(table, dict):
            raise ConfigError(f"expected a table, got {_kind(table)}")
        problems = _Problems(table)
        meant = problems.unknown_keys(table, _ROUTE_KEYS)
        problems.require(table, "uri", 'every route needs its WebSocket path, e.g. uri = "/kafka"', meant)
        problems.require(
            table, "nodes", 'every route needs its bootstrap brokers, e.g. nodes = ["127.0.0.1:9092"]', meant
        )
        values = _fields(RouteConfig, table, problems, skip=_ROUTE_TABLES)
        readers: dict[str, Callable[[object], object]] = {
            "tls": self.tls,
            "sasl": self.sasl,
            "api_keys": lambda v: self.array(v, "api_keys", self.api_key),
            "jwt": self.jwt,
            "acl": lambda v: self.array(v, "acl", self.acl_rule),
            "quotas": lambda v: self.simple(QuotaConfig, v, _QUOTA_KEYS, "quotas"),
            "kafka_credentials": self.kafka_credentials,
        }
        for key, read in readers.items():
            if key in table:
                with problems.within(key):
                    values[key] = read(table[key])
        uri = values.get("uri")
        if uri in uris:
            problems.add(ConfigError(_same_uri(uri, uris[uri]), key="uri"))
        elif uri is not None:
            uris[uri] = index
        return _build(RouteConfig, values, problems, _route_problems)

    def tls(self, value: object) -> TlsConfig | None:
        if value is False:
            return None
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table such as {{ verify = true }}, or true/false, got {_kind(value)}")
        problems = _Problems(value)
        problems.unknown_keys(value, _TLS_KEYS)
        table = {key: self.path(item) if key in _TLS_PATHS else item for key, item in value.items()}
        values = _fields(TlsConfig, table, problems, skip=("key_password",))
        self.optional_secret(TlsConfig, value, "key_password", values, problems)
        return _build(TlsConfig, values, problems, _tls_problems)

    def sasl(self, value: object) -> SaslConfig | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ username = "u", password_env = "KAFKA_PASSWORD" }}, got {_kind(value)}'
            )
        problems = _Problems(value)
        meant = problems.unknown_keys(value, _SASL_KEYS)
        problems.require(value, "username", "SASL needs a username", meant)
        values = _fields(SaslConfig, value, problems, skip=("password",))
        with problems.at():
            secret = self.secret(value, "password", required="password" not in meant)
            if secret is not None:
                values["password"] = _checked(SaslConfig, "password", secret)
        return _build(SaslConfig, values, problems, _no_problems)

    def array(self, value: object, name: str, read: Callable[[object], _T], table: str = "routes") -> tuple[_T, ...]:
        """An array of tables (``[[<table>.NAME]]``), each read by *read*."""
        if not isinstance(value, list):
            raise ConfigError(f"expected an array of tables ([[{table}.{name}]]), got {_kind(value)}")
        problems = _Problems()
        built = []
        for index, item in enumerate(value):
            with problems.within(f"[{index}]"):
                built.append(read(item))
        problems.raise_any()
        return tuple(built)

    def simple(self, cls: type[_T], value: object, known: tuple[str, ...], name: str) -> _T:
        """A table whose keys are the fields of *cls*, each read as it is."""
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table ([routes.{name}]), got {_kind(value)}")
        problems = _Problems(value)
        meant = problems.unknown_keys(value, known)
        required = [field.name for field in attrs.fields(cast(Any, cls)) if field.default is attrs.NOTHING]
        for key in required:
            problems.require(value, key, f"every {name} table needs {key}", meant)
        return _build(cls, _fields(cls, value, problems), problems, _no_problems)

    def api_key(self, value: object) -> ApiKeyConfig:
        return self.simple(ApiKeyConfig, value, _API_KEY_KEYS, "api_keys")

    def acl_rule(self, value: object) -> AclRuleConfig:
        return self.simple(AclRuleConfig, value, _ACL_KEYS, "acl")

    def jwt(self, value: object) -> JwtConfig:
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ algorithms = ["RS256"], jwks_file = "jwks.json" }}, got {_kind(value)}'
            )
        problems = _Problems(value)
        meant = problems.unknown_keys(value, _JWT_KEYS)
        problems.require(
            value, "algorithms", 'the algorithms tokens are signed with, e.g. algorithms = ["RS256"]', meant
        )
        table = dict(value)
        if isinstance(table.get("public_key_files"), list):
            table["public_key_files"] = [self.path(item) for item in table["public_key_files"]]
        if "jwks_file" in table:
            table["jwks_file"] = self.path(table["jwks_file"])
        values = _fields(JwtConfig, table, problems, skip=("secret",))
        self.optional_secret(JwtConfig, value, "secret", values, problems)
        return _build(JwtConfig, values, problems, _jwt_problems)

    def route_store(self, value: object) -> RouteStoreConfig:
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ topic = "kwt-routes", nodes = ["127.0.0.1:9092"] }}, got {_kind(value)}'
            )
        problems = _Problems(value)
        meant = problems.unknown_keys(value, _STORE_KEYS)
        problems.require(value, "topic", 'the compacted topic the routes live in, e.g. topic = "kwt-routes"', meant)
        problems.require(value, "nodes", 'the store\'s bootstrap brokers, e.g. nodes = ["127.0.0.1:9092"]', meant)
        values = _fields(RouteStoreConfig, value, problems, skip=("tls", "sasl"))
        for key, read in (("tls", self.tls), ("sasl", self.sasl)):
            if key in value:
                with problems.within(key):
                    values[key] = read(value[key])
        return _build(RouteStoreConfig, values, problems, _no_problems)

    def kafka_credentials(self, value: object) -> KafkaCredentialsConfig:
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ file = "kafka-logins.toml" }} or {{ text_env = "KAFKA_LOGINS" }}, '
                f"got {_kind(value)}"
            )
        problems = _Problems(value)
        problems.unknown_keys(value, _KAFKA_CREDENTIALS_KEYS)
        table = dict(value)
        if "file" in table:
            table["file"] = self.path(table["file"])
        values = _fields(KafkaCredentialsConfig, table, problems, skip=("text",))
        self.optional_secret(KafkaCredentialsConfig, value, "text", values, problems)
        return _build(KafkaCredentialsConfig, values, problems, _kafka_credentials_problems)

    def optional_secret(
        self, cls: type, table: Mapping[str, Any], key: str, values: dict[str, Any], problems: _Problems
    ) -> None:
        """Put the optional secret *key* (or *key*_env) of *table* into *values*, checked as field *key* of *cls*.

        Until the secret reads well the key is left out of *values*, so that no check runs with a
        default in the place of a secret that is there but wrong.
        """
        values.pop(key, None)
        with problems.at():
            secret = self.secret(table, key, required=False)
            values[key] = _checked(cls, key, secret)

    def path(self, value: object) -> object:
        """*value* as an absolute path, if it is one; anything else is left for the field's check to report."""
        if not isinstance(value, str) or not value:
            return value
        # abspath, not resolve(): a symlink (e.g. a Kubernetes secret mount) must stay a
        # symlink so that a rotated certificate is picked up where it is linked.
        return os.path.abspath(self.base_dir / Path(value).expanduser())

    def secret(self, table: Mapping[str, Any], key: str, *, required: bool) -> Secret | None:
        """The Secret that *table* gives as *key* or as *key*_env (an environment variable's name)."""
        env_key = f"{key}_env"
        if key in table and env_key in table:
            raise ConfigError(f"set {key} or {env_key}, not both", key=env_key)
        if env_key in table:
            name = table[env_key]
            if not isinstance(name, str):
                raise ConfigError(f"expected the name of an environment variable, got {_kind(name)}", key=env_key)
            if not _ENV_NAME.fullmatch(name):
                # Not echoed: a password pasted here by mistake must not reach the logs.
                raise ConfigError(
                    "is not the name of an environment variable (letters, digits and _, not starting with a digit)",
                    key=env_key,
                )
            try:
                return Secret.from_env(name, self.environ)
            except ConfigError as exc:
                raise exc._within(env_key) from None
        if key in table:
            value = table[key]
            if not isinstance(value, str):
                raise ConfigError(f"expected a string, got {_kind(value)}", key=key)
            return Secret(value)
        if required:
            raise ConfigError(
                f"missing; set {key}, or {env_key} to the name of an environment variable holding it", key=key
            )
        return None
