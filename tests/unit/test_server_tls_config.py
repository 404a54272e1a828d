"""TLS on the listener, as configured: ``[server] tls_cert_file``/``tls_key_file``, and serve's --tls-cert/--tls-key.

The files are checked when the ServerConfig is built (both or neither, readable PEM that load
together), with the key paths in the messages; the TOML reader makes them absolute. The
client commands' --ca-file and --token are refused before connecting when they cannot work.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from _support import OPENSSL_EC, openssl_in

from kafka_ws_trio import _cli
from kafka_ws_trio._config import ConfigError, Secret, ServerConfig, parse_config

ROUTE = '[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'
KEY_PASSWORD = "server-key-pass-do-not-print"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two self-signed server certificates with their keys, and the first key encrypted."""
    folder = tmp_path_factory.mktemp("server-pem")
    openssl = openssl_in(folder)
    ec = OPENSSL_EC
    for name in ("proxy", "other"):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}")
    openssl("pkey", "-in", "proxy.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", "proxy-enc.key")
    (folder / "garbage.pem").write_text("not PEM at all\n")
    return SimpleNamespace(
        dir=folder,
        cert=folder / "proxy.pem",
        key=folder / "proxy.key",
        enc_key=folder / "proxy-enc.key",
        other_key=folder / "other.key",
        garbage=folder / "garbage.pem",
    )


def fails(**fields: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ServerConfig(**fields)  # type: ignore[arg-type]
    return info.value


def toml_fails(text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text + ROUTE, source="proxy.toml", **kwargs)  # type: ignore[arg-type]
    return info.value


# ---- the class ----------------------------------------------------------------------------------


def test_no_tls_by_default() -> None:
    server = ServerConfig()
    assert (server.tls_cert_file, server.tls_key_file, server.tls_key_password) == (None, None, None)
    assert not server.tls


def test_a_certificate_and_its_key_turn_tls_on(pem: SimpleNamespace) -> None:
    server = ServerConfig(tls_cert_file=str(pem.cert), tls_key_file=str(pem.key))
    assert server.tls
    assert server.tls_cert_file == str(pem.cert)


def test_a_certificate_without_its_key_or_a_key_without_its_certificate_is_refused(pem: SimpleNamespace) -> None:
    error = fails(tls_cert_file=str(pem.cert))
    assert error.key == "tls_cert_file"
    assert "needs tls_key_file" in error.problem
    assert "set both, or neither" in error.problem
    error = fails(tls_key_file=str(pem.key))
    assert error.key == "tls_key_file"
    assert "needs tls_cert_file" in error.problem


def test_files_that_do_not_load_together_are_refused_naming_both(pem: SimpleNamespace) -> None:
    error = fails(tls_cert_file=str(pem.cert), tls_key_file=str(pem.other_key))
    assert error.key == "tls_key_file"
    assert f"cannot load the server certificate {pem.cert} with the private key in {pem.other_key}" in error.problem
    error = fails(tls_cert_file=str(pem.garbage), tls_key_file=str(pem.key))
    assert error.key == "tls_key_file"
    assert str(pem.garbage) in error.problem


def test_a_missing_file_is_named(pem: SimpleNamespace) -> None:
    error = fails(tls_cert_file=str(pem.dir / "nope.pem"), tls_key_file=str(pem.key))
    assert error.key == "tls_cert_file"
    assert error.problem == f"no such file: {pem.dir / 'nope.pem'}"


def test_an_encrypted_key_needs_its_password_which_is_never_shown(pem: SimpleNamespace) -> None:
    error = fails(tls_cert_file=str(pem.cert), tls_key_file=str(pem.enc_key))
    assert error.key == "tls_key_file"
    assert "is encrypted; set tls_key_password or tls_key_password_env" in error.problem
    error = fails(tls_cert_file=str(pem.cert), tls_key_file=str(pem.enc_key), tls_key_password="wrong")
    assert "tls_key_password must be right" in error.problem
    server = ServerConfig(tls_cert_file=str(pem.cert), tls_key_file=str(pem.enc_key), tls_key_password=KEY_PASSWORD)
    assert server.tls_key_password == Secret(KEY_PASSWORD)
    assert KEY_PASSWORD not in repr(server)


def test_a_password_without_files_is_refused() -> None:
    error = fails(tls_key_password="pw")
    assert error.key == "tls_key_password"
    assert "no tls_cert_file/tls_key_file" in error.problem


# ---- the TOML reader ----------------------------------------------------------------------------


def test_toml_paths_are_relative_to_the_config_file(pem: SimpleNamespace, tmp_path: Path) -> None:
    text = '[server]\ntls_cert_file = "proxy.pem"\ntls_key_file = "proxy.key"\n'
    config = parse_config(text + ROUTE, base_dir=pem.dir)
    assert config.server.tls_cert_file == str(pem.cert)
    assert config.server.tls_key_file == str(pem.key)
    elsewhere = toml_fails(text, base_dir=tmp_path)
    assert str(elsewhere).startswith(f"proxy.toml: server.tls_cert_file: no such file: {tmp_path / 'proxy.pem'}")


def test_toml_reads_the_key_password_from_the_environment(pem: SimpleNamespace) -> None:
    text = '[server]\ntls_cert_file = "proxy.pem"\ntls_key_file = "proxy-enc.key"\n'
    config = parse_config(
        text + 'tls_key_password_env = "PROXY_KEY_PASSWORD"\n' + ROUTE,
        base_dir=pem.dir,
        environ={"PROXY_KEY_PASSWORD": KEY_PASSWORD},
    )
    assert config.server.tls_key_password == Secret(KEY_PASSWORD)
    error = toml_fails(text + 'tls_key_password_env = "UNSET_PASSWORD"\n', base_dir=pem.dir, environ={})
    assert str(error) == 'proxy.toml: server.tls_key_password_env: environment variable "UNSET_PASSWORD" is not set'
    both = toml_fails(text + 'tls_key_password = "x"\ntls_key_password_env = "X"\n', base_dir=pem.dir)
    assert both.key == "server.tls_key_password_env"
    assert "set tls_key_password or tls_key_password_env, not both" in str(both)


def test_toml_reports_each_tls_mistake_with_the_others(pem: SimpleNamespace) -> None:
    error = toml_fails(
        '[server]\nprot = 1\ntls_cert_file = "proxy.pem"\ntls_key_file = "other.key"\n'
        f'tls_key_password = "{KEY_PASSWORD}"\n',
        base_dir=pem.dir,
    )
    assert [problem.key for problem in error.problems] == ["server.prot", "server.tls_key_file"]
    assert "cannot load the server certificate" in str(error)
    assert KEY_PASSWORD not in str(error)
    half = toml_fails('[server]\ntls_key_file = "proxy.key"\n', base_dir=pem.dir)
    assert [problem.key for problem in half.problems] == ["server.tls_key_file"]


def test_toml_a_wrong_file_leaves_out_the_checks_it_would_spoil(pem: SimpleNamespace) -> None:
    """A key that is not there is one mistake; "needs tls_key_file" would only follow from it."""
    error = toml_fails('[server]\ntls_cert_file = "proxy.pem"\ntls_key_file = "missing.key"\n', base_dir=pem.dir)
    assert [problem.key for problem in error.problems] == ["server.tls_key_file"]
    assert "no such file" in str(error)


# ---- the command line ---------------------------------------------------------------------------


def test_serve_takes_tls_cert_and_tls_key_together_only(pem: SimpleNamespace) -> None:
    for half in (["--tls-cert", str(pem.cert)], ["--tls-key", str(pem.key)]):
        with pytest.raises(SystemExit) as info:
            _cli.main(["serve", "--kafka", "127.0.0.1:9092", *half])
        assert str(info.value.code) == (
            "kafka-ws-trio: error: --tls-cert and --tls-key go together: give both (the certificate "
            "and its private key) or neither"
        )


def test_serve_options_make_the_paths_absolute_and_errors_name_the_option(
    pem: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pem.dir)
    parser = _cli._build_parser()
    args = parser.parse_args(
        ["serve", "--kafka", "127.0.0.1:9092", "--tls-cert", "proxy.pem", "--tls-key", "proxy.key"]
    )
    server = _cli._serve_config(args).server
    assert (server.tls_cert_file, server.tls_key_file) == (str(pem.cert), str(pem.key))  # absolute
    args = parser.parse_args(
        ["serve", "--kafka", "127.0.0.1:9092", "--tls-cert", "proxy.pem", "--tls-key", "other.key"]
    )
    with pytest.raises(ConfigError) as info:
        _cli._serve_config(args)
    assert info.value.key == "--tls-key"
    assert "cannot load the server certificate" in info.value.problem


def test_ca_file_is_for_wss_urls_and_must_load(pem: SimpleNamespace) -> None:
    parser = _cli._build_parser()
    plain = parser.parse_args(["offsets", "ws://127.0.0.1:1/kafka", "--topic", "t", "--ca-file", str(pem.cert)])
    with pytest.raises(SystemExit, match=r"--ca-file is for wss:// URLs"):
        _cli._open_client(plain)
    missing = parser.parse_args(["offsets", "wss://127.0.0.1:1/kafka", "--topic", "t", "--ca-file", "/no/ca.pem"])
    with pytest.raises(SystemExit, match=r"--ca-file: cannot load CA certificates \(PEM\) from /no/ca.pem"):
        _cli._open_client(missing)


def test_the_token_comes_from_the_option_or_the_environment_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parser = _cli._build_parser()
    secret = "tok en-do-not-print"
    monkeypatch.setenv(_cli.TOKEN_ENV, secret)
    from_env = parser.parse_args(["offsets", "ws://127.0.0.1:1/kafka", "--topic", "t"])
    with pytest.raises(SystemExit) as info:
        _cli._open_client(from_env)
    assert str(info.value.code).startswith(f"kafka-ws-trio: error: {_cli.TOKEN_ENV}: ")
    assert secret not in str(info.value.code)
    given = parser.parse_args(["offsets", "ws://127.0.0.1:1/kafka", "--topic", "t", "--token", secret])
    with pytest.raises(SystemExit) as info:
        _cli._open_client(given)
    assert str(info.value.code).startswith("kafka-ws-trio: error: --token: ")
    assert secret not in str(info.value.code)


@pytest.mark.parametrize("command", ["offsets", "tail", "produce"])
def test_every_client_command_takes_ca_file_and_token(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--ca-file FILE" in text
    assert "--token TOKEN" in text
    assert _cli.TOKEN_ENV in text
