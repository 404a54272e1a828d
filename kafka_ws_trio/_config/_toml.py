"""Reading the configuration from TOML: a file or text, into the classes of ``_model``.

The reader rejects unknown keys (suggesting the nearest known one), makes TLS
file paths absolute relative to the config file, reads ``*_env`` secrets from
the environment, and puts the file name and the key path, such as
``routes[0].nodes[1]``, in front of every problem the classes report.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import attrs

from ._errors import ConfigError, _kind, _quote, _suggest
from ._model import ProxyConfig, RouteConfig, SaslConfig, ServerConfig, TlsConfig
from ._secret import Secret

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    """Read and check the TOML config file at *path*.

    Relative file paths inside it (``ca_file``, ``cert_file``, ``key_file``)
    are taken relative to the folder holding the file (``~`` is expanded),
    and must be readable PEM files when it is loaded. Secrets named by
    ``*_env`` keys are read from ``os.environ``.

    Raises:
        ConfigError: The file cannot be read, is not TOML, or holds a value
            that is not allowed. The message starts with *path*.
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
        ConfigError: The text is not TOML, or holds a value that is not allowed.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message names the line and column, never the text itself.
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    reader = _Reader(Path.cwd() if base_dir is None else Path(base_dir), os.environ if environ is None else environ)
    with _at("", source=source):
        return reader.proxy(document)


_SERVER_KEYS: Final = tuple(field.name for field in attrs.fields(ServerConfig))
_ROUTE_KEYS: Final = tuple(field.name for field in attrs.fields(RouteConfig))
_TLS_KEYS: Final = (*(field.name for field in attrs.fields(TlsConfig)), "key_password_env")
_SASL_KEYS: Final = (*(field.name for field in attrs.fields(SaslConfig)), "password_env")
_TLS_PATHS: Final = ("ca_file", "cert_file", "key_file")


@contextmanager
def _at(key: str, *, source: str = "") -> Iterator[None]:
    """Put *key* in front of the key path of a ConfigError raised inside (and *source*)."""
    try:
        yield
    except ConfigError as exc:
        if exc.source:
            raise
        raise exc._within(key, source) from None


def _check_keys(table: Mapping[str, object], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            name = key if _BARE_KEY.fullmatch(key) else _quote(key)
            raise ConfigError(f"unknown key; {_suggest(key, known)}known keys: {', '.join(known)}", key=name)


def _require(table: Mapping[str, object], key: str, hint: str) -> None:
    if key not in table:
        raise ConfigError(f"missing; {hint}", key=key)


@attrs.frozen
class _Reader:
    base_dir: Path
    environ: Mapping[str, str]

    def proxy(self, document: dict[str, Any]) -> ProxyConfig:
        _check_keys(document, ("server", "routes"))
        server_table = document.get("server", {})
        with _at("server"):
            if not isinstance(server_table, dict):
                raise ConfigError(f"expected a table ([server]), got {_kind(server_table)}")
            _check_keys(server_table, _SERVER_KEYS)
            server = ServerConfig(**server_table)
        routes = document.get("routes", [])
        if not isinstance(routes, list):
            raise ConfigError(f"expected an array of tables ([[routes]]), got {_kind(routes)}", key="routes")
        built = []
        for index, table in enumerate(routes):
            with _at(f"routes[{index}]"):
                built.append(self.route(table))
        return ProxyConfig(server, built)

    def route(self, table: object) -> RouteConfig:
        if not isinstance(table, dict):
            raise ConfigError(f"expected a table, got {_kind(table)}")
        _check_keys(table, _ROUTE_KEYS)
        _require(table, "uri", 'every route needs its WebSocket path, e.g. uri = "/kafka"')
        _require(table, "nodes", 'every route needs its bootstrap brokers, e.g. nodes = ["127.0.0.1:9092"]')
        options = dict(table)
        with _at("tls"):
            options["tls"] = self.tls(options.get("tls", False))
        with _at("sasl"):
            options["sasl"] = self.sasl(options.get("sasl"))
        return RouteConfig(**options)

    def tls(self, value: object) -> TlsConfig | None:
        if value is False:
            return None
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table such as {{ verify = true }}, or true/false, got {_kind(value)}")
        _check_keys(value, _TLS_KEYS)
        options = dict(value)
        for key in _TLS_PATHS:
            if key in options:
                options[key] = self.path(options[key], key)
        options["key_password"] = self.secret(options, "key_password", required=False)
        return TlsConfig(**options)

    def sasl(self, value: object) -> SaslConfig | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f'expected a table such as {{ username = "u", password_env = "KAFKA_PASSWORD" }}, got {_kind(value)}'
            )
        _check_keys(value, _SASL_KEYS)
        _require(value, "username", "SASL needs a username")
        options = dict(value)
        options["password"] = self.secret(options, "password", required=True)
        return SaslConfig(**options)

    def path(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"expected a file path, got {_kind(value)}", key=key)
        # abspath, not resolve(): a symlink (e.g. a Kubernetes secret mount) must stay a
        # symlink so that a rotated certificate is picked up where it is linked.
        return os.path.abspath(self.base_dir / Path(value).expanduser())

    def secret(self, options: dict[str, Any], key: str, *, required: bool) -> Secret | None:
        """Take *key* or *key*_env out of *options*, as a Secret."""
        env_key = f"{key}_env"
        if key in options and env_key in options:
            raise ConfigError(f"set {key} or {env_key}, not both", key=env_key)
        if env_key in options:
            name = options.pop(env_key)
            if not isinstance(name, str):
                raise ConfigError(f"expected the name of an environment variable, got {_kind(name)}", key=env_key)
            if not _ENV_NAME.fullmatch(name):
                # Not echoed: a password pasted here by mistake must not reach the logs.
                raise ConfigError(
                    "is not the name of an environment variable (letters, digits and _, not starting with a digit)",
                    key=env_key,
                )
            with _at(env_key):
                return Secret.from_env(name, self.environ)
        if key in options:
            value = options.pop(key)
            if not isinstance(value, str):
                raise ConfigError(f"expected a string, got {_kind(value)}", key=key)
            return Secret(value)
        if required:
            raise ConfigError(
                f"missing; set {key}, or {env_key} to the name of an environment variable holding it", key=key
            )
        return None
