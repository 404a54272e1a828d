"""API keys: the config holds salted hashes only, and a key is checked in constant time.

A key reads ``kwt_<id>_<secret>``: the id (not secret) finds its entry, so a
handshake costs one hash, not one per configured key; the secret is checked
against the entry's scrypt hash. A hash reads
``scrypt$<log2 n>$<r>$<p>$<salt>$<digest>`` (salt and digest in unpadded
base64url), so its cost can be raised later without breaking older hashes.
``kafka-ws-trio hash-key`` makes a key and its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from .._config._access import KEY_HASH_DIGEST_BYTES, parse_key_hash

#: scrypt's cost: 2**14 rounds of 8-block mixing, one lane (about 16 MiB and tens of ms a check).
SCRYPT_LOG2_N: Final = 14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
#: Bytes of salt, of digest, and of a new key's secret.
SALT_BYTES: Final = 16
DIGEST_BYTES: Final = KEY_HASH_DIGEST_BYTES
SECRET_BYTES: Final = 24
#: How a key starts; the id and the secret follow, separated by "_".
KEY_PREFIX: Final = "kwt_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _scrypt(secret: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=2**log2_n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=DIGEST_BYTES
    )


def hash_key(secret: str, *, salt: bytes | None = None, log2_n: int = SCRYPT_LOG2_N) -> str:
    """The stored form of a key's secret: salted scrypt, with its parameters."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(secret, salt, log2_n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${log2_n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


#: Reads a stored hash (its format is checked when the config is loaded).
parse_hash: Final = parse_key_hash


def verify_key(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from; the digests are compared in constant time."""
    log2_n, r, p, salt, digest = parse_hash(stored)
    return hmac.compare_digest(_scrypt(secret, salt, log2_n, r, p), digest)


def new_key(key_id: str) -> tuple[str, str]:
    """A new key for ``key_id`` and the hash of its secret: (``kwt_<id>_<secret>``, hash)."""
    if not key_id or not all(c.isascii() and (c.isalnum() or c == "-") for c in key_id):
        raise ValueError("a key id is ASCII letters, digits and '-'")
    secret = secrets.token_urlsafe(SECRET_BYTES).replace("_", "-")
    return f"{KEY_PREFIX}{key_id}_{secret}", hash_key(secret)


@attrs.frozen
class KeyEntry:
    """One configured key: its id, the principal it names, and the hash of its secret."""

    key_id: str
    principal: str
    hash: str = attrs.field(repr=False)


class ApiKeys:
    """The keys of a route, found by id; each check costs one hash whether or not the id is known."""

    def __init__(self, entries: Iterable[KeyEntry]) -> None:
        self._entries: Mapping[str, KeyEntry] = {entry.key_id: entry for entry in entries}
        for entry in self._entries.values():
            parse_hash(entry.hash)  # refused at start, not at the first handshake
        # Checked against when the id is unknown, so that a miss costs what a hit does.
        self._decoy = hash_key(secrets.token_urlsafe(SECRET_BYTES), log2_n=SCRYPT_LOG2_N)

    def __len__(self) -> int:
        return len(self._entries)

    def principal(self, key: str) -> str | None:
        """The principal ``key`` names, or None when it is not a valid key (CPU-bound: run it in a thread)."""
        key_id, secret = "", key
        if key.startswith(KEY_PREFIX):
            key_id, _, secret = key.removeprefix(KEY_PREFIX).rpartition("_")
        entry = self._entries.get(key_id)
        matched = verify_key(secret, entry.hash if entry is not None else self._decoy)
        return entry.principal if entry is not None and matched else None
