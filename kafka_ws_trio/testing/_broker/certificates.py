"""The broker's TLS material: a test CA, a broker keystore signed by it, and a client certificate."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Final

from .base import BrokerError

#: Days every certificate made here stays valid: long enough that a cached run folder never expires.
VALIDITY_DAYS: Final = 3650
#: RSA key size of every key made here.
KEY_BITS: Final = 2048
#: Names a certificate for this host is valid for.
SUBJECT_ALT_NAMES: Final = "DNS:localhost,IP:127.0.0.1"


def _run(what: str, template: str, **values: object) -> None:
    """Run ``template`` split into words, each word formatted with ``values``.

    Formatting after splitting keeps a value with spaces in one argument.
    """
    cmd = [word.format(**values) for word in shlex.split(template)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"{what} failed ({cmd[0]} exited {result.returncode}):\n{result.stderr.strip()}")


def make_certificates(certs: Path, store_password: str) -> dict[str, Path]:
    """Create a CA, a broker keystore signed by it, and a client certificate.

    openssl makes the CA and signs; keytool makes the broker's key pair and
    the PKCS12 key and trust stores the broker reads. Returns the paths by
    role: ``ca``, ``keystore``, ``truststore``, ``client_cert``, ``client_key``.
    """
    for tool in ("openssl", "keytool"):
        if shutil.which(tool) is None:
            raise BrokerError(f"'{tool}' is not on PATH; it is needed to make the broker's certificates")
    certs.mkdir(parents=True, exist_ok=True)
    p = {
        name: certs / name
        for name in (
            "ca.key",
            "ca.pem",
            "broker.p12",
            "trust.p12",
            "broker.csr",
            "broker.pem",
            "san.ext",
            "client.key",
            "client.csr",
            "client.pem",
        )
    }
    p["san.ext"].write_text(f"subjectAltName={SUBJECT_ALT_NAMES}\n")
    pw = store_password
    days = VALIDITY_DAYS
    bits = KEY_BITS
    sign = f"openssl x509 -req -in {{csr}} -CA {{ca}} -CAkey {{key}} -CAcreateserial -days {days} -sha256 -out {{out}}"
    _run(
        "creating the test CA",
        f"openssl req -x509 -newkey rsa:{bits} -nodes -days {days} -subj '/CN=kafka-ws-trio test CA' "
        "-keyout {key} -out {out}",
        key=p["ca.key"],
        out=p["ca.pem"],
    )
    _run(
        "creating the broker key pair",
        "keytool -genkeypair -keystore {ks} -storetype PKCS12 -storepass {pw} -keypass {pw} -alias broker "
        f"-keyalg RSA -keysize {bits} -validity {days} -dname CN=localhost -ext SAN={SUBJECT_ALT_NAMES}",
        ks=p["broker.p12"],
        pw=pw,
    )
    _run(
        "creating the broker CSR",
        "keytool -certreq -keystore {ks} -storepass {pw} -alias broker -file {csr}",
        ks=p["broker.p12"],
        pw=pw,
        csr=p["broker.csr"],
    )
    _run(
        "signing the broker certificate",
        sign + " -extfile {ext}",
        csr=p["broker.csr"],
        ca=p["ca.pem"],
        key=p["ca.key"],
        out=p["broker.pem"],
        ext=p["san.ext"],
    )
    for store, alias, pem in (
        ("broker.p12", "ca", "ca.pem"),
        ("broker.p12", "broker", "broker.pem"),
        ("trust.p12", "ca", "ca.pem"),
    ):
        _run(
            f"importing {pem} into {store}",
            "keytool -importcert -noprompt -keystore {ks} -storetype PKCS12 -storepass {pw} -alias {alias} -file {pem}",
            ks=p[store],
            pw=pw,
            alias=alias,
            pem=p[pem],
        )
    # A client key pair for mutual TLS, signed by the same CA.
    _run(
        "creating the client key",
        f"openssl req -newkey rsa:{bits} -nodes -subj '/CN=kafka-ws-trio client' -keyout {{key}} -out {{csr}}",
        key=p["client.key"],
        csr=p["client.csr"],
    )
    _run(
        "signing the client certificate",
        sign,
        csr=p["client.csr"],
        ca=p["ca.pem"],
        key=p["ca.key"],
        out=p["client.pem"],
    )
    return {
        "ca": p["ca.pem"],
        "keystore": p["broker.p12"],
        "truststore": p["trust.p12"],
        "client_cert": p["client.pem"],
        "client_key": p["client.key"],
    }
