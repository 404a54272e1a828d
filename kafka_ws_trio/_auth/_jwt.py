"""JSON Web Tokens, verified with PyJWT: who the token names, and the claims rules may match.

A verifier takes one family of algorithms: HMAC (``HS256`` ...) with a shared
secret, or public-key (``RS256``, ``ES256`` ...) with public keys in PEM or a
JWKS. Mixing the two families is refused when the verifier is made: with an
RSA public key known to everyone, a token signed with it as an HMAC secret
would otherwise pass (the classic algorithm confusion). ``alg: none`` is never
accepted, since it is in no allowed list. ``exp`` is required; ``iss`` and
``aud`` are required and checked when configured; ``nbf`` is checked when
present; all with a small leeway. No reason given for a refusal quotes the
token or any of its claims' values.

Reading key files and JWKS files (and reloading them) is the caller's I/O:
this module takes their contents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import jwt

from .._config._defaults import (
    DEFAULT_JWT_LEEWAY,
    DEFAULT_JWT_PRINCIPAL_CLAIM,
    DEFAULT_JWT_RIGHTS_CLAIMS,
    JWT_HMAC_ALGORITHMS,
    JWT_PUBLIC_KEY_ALGORITHMS,
)
from ._acl import Principal

DEFAULT_LEEWAY: Final = DEFAULT_JWT_LEEWAY
DEFAULT_PRINCIPAL_CLAIM: Final = DEFAULT_JWT_PRINCIPAL_CLAIM
DEFAULT_RIGHTS_CLAIMS: Final = DEFAULT_JWT_RIGHTS_CLAIMS
HMAC_ALGORITHMS: Final = frozenset(JWT_HMAC_ALGORITHMS)
PUBLIC_KEY_ALGORITHMS: Final = frozenset(JWT_PUBLIC_KEY_ALGORITHMS)


class TokenRefused(Exception):
    """A token that does not verify; the message is the reason, and never holds the token."""


@attrs.frozen
class JwtSettings:
    """How a route verifies tokens."""

    algorithms: tuple[str, ...]
    issuer: str | None = None
    audience: str | None = None
    leeway: float = DEFAULT_LEEWAY
    principal_claim: str = DEFAULT_PRINCIPAL_CLAIM
    rights_claims: tuple[str, ...] = DEFAULT_RIGHTS_CLAIMS

    def __attrs_post_init__(self) -> None:
        chosen = set(self.algorithms)
        unknown = chosen - HMAC_ALGORITHMS - PUBLIC_KEY_ALGORITHMS
        if not chosen or unknown:
            raise ValueError(
                f"jwt algorithms must be some of {sorted(HMAC_ALGORITHMS | PUBLIC_KEY_ALGORITHMS)}"
                + (f"; unknown: {sorted(unknown)}" if unknown else "")
            )
        if chosen & HMAC_ALGORITHMS and chosen & PUBLIC_KEY_ALGORITHMS:
            raise ValueError("jwt algorithms must be all HMAC (HS*) or all public-key (RS*, PS*, ES*, EdDSA), not both")

    @property
    def hmac(self) -> bool:
        return bool(set(self.algorithms) & HMAC_ALGORITHMS)


def _rights(claims: Mapping[str, Any], names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The claims rules may match, each as a tuple of strings (a space-separated scope is split)."""
    found: dict[str, tuple[str, ...]] = {}
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            found[name] = tuple(value.split())
        elif isinstance(value, list | tuple):
            found[name] = tuple(str(item) for item in value if isinstance(item, str | int))
    return found


class JwtVerifier:
    """Verifies a route's tokens against its settings and keys (a secret, PEM public keys, or a JWKS)."""

    def __init__(
        self,
        settings: JwtSettings,
        *,
        secret: bytes | None = None,
        public_keys: Sequence[bytes] = (),
        jwks: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self._keys: list[Any] = []
        self._by_kid: dict[str, Any] = {}
        if settings.hmac:
            if not secret or public_keys or jwks:
                raise ValueError("HMAC algorithms take a secret, and only a secret")
            self._keys.append(secret)
        else:
            if secret:
                raise ValueError("public-key algorithms take public keys or a JWKS, not a secret")
            # PEM keys stay bytes: PyJWT prepares one for the algorithm a token names (an RSA
            # key for an ES256 token is refused as a bad key, not misread).
            self._keys.extend(public_keys)
            if jwks is not None:
                for key in jwt.PyJWKSet.from_dict(dict(jwks)).keys:
                    if key.key_id:
                        self._by_kid[key.key_id] = key
                    else:
                        self._keys.append(key)
            if not self._keys and not self._by_kid:
                raise ValueError("public-key algorithms need at least one public key or a JWKS with keys")

    def verify(self, token: str) -> Principal:
        """The principal ``token`` names, with its rights claims and expiry.

        Raises:
            TokenRefused: with the reason (a bad signature, expired, not yet valid, wrong issuer or
            audience, an algorithm not allowed, not a JWT, a claim missing).
        """
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:  # not decodable, or a header PyJWT refuses (a kid not a string, a crit)
            raise TokenRefused("not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in settings.algorithms:
            raise TokenRefused(f"algorithm {str(algorithm)[:16]!r} is not allowed")
        kid = header.get("kid")
        keys = [self._by_kid[kid]] if isinstance(kid, str) and kid in self._by_kid else self._keys
        if not keys:
            raise TokenRefused("no key for this token's kid")
        required = ["exp"] + (["iss"] if settings.issuer else []) + (["aud"] if settings.audience else [])
        claims: dict[str, Any] | None = None
        problem = "bad signature"
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=list(settings.algorithms),
                    audience=settings.audience,
                    issuer=settings.issuer,
                    leeway=settings.leeway,
                    options={"require": required, "verify_aud": settings.audience is not None},
                )
                break
            except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
                continue  # perhaps another key of the set
            except jwt.ExpiredSignatureError:
                problem = "token expired"
            except jwt.ImmatureSignatureError:
                problem = "token not yet valid"
            except jwt.InvalidIssuerError:
                problem = "wrong issuer"
            except jwt.InvalidAudienceError:
                problem = "wrong audience"
            except jwt.MissingRequiredClaimError as exc:
                problem = f"missing claim {exc.claim!r}"
            except jwt.InvalidAlgorithmError:
                problem = "algorithm not allowed"
            except jwt.PyJWTError:
                problem = "invalid token"
            break
        if claims is None:
            raise TokenRefused(problem)
        name = claims.get(settings.principal_claim)
        if not isinstance(name, str) or not name:
            raise TokenRefused(f"missing claim {settings.principal_claim!r}")
        expires = claims.get("exp")
        return Principal(
            name,
            _rights(claims, settings.rights_claims),
            expires_at=float(expires) if isinstance(expires, int | float) else None,
        )
