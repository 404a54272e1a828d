"""Who a client is and what it may do, as pure policy: no I/O, no Trio, no Kafka.

The HTTP front (``_http``) will decide with these before the upgrade, and the
session before each command (docs/ARCHITECTURE.md, "Where the coming
capabilities live"). One module per concern: ``_credentials`` (where a
handshake carries its credential, PROTOCOL.md 5.6, and keeping it out of
logs), ``_keys`` (API keys: salted hashes, compared in constant time),
``_jwt`` (tokens verified with PyJWT), ``_acl`` (topic and group rules
per principal) and ``_quotas`` (token buckets per principal, bounded).
"""

from ._acl import Acl as Acl
from ._acl import AclRule as AclRule
from ._acl import Operation as Operation
from ._acl import Pattern as Pattern
from ._acl import Principal as Principal
from ._credentials import ACCESS_TOKEN_PARAMETER as ACCESS_TOKEN_PARAMETER
from ._credentials import BEARER_SUBPROTOCOL_PREFIX as BEARER_SUBPROTOCOL_PREFIX
from ._credentials import Credential as Credential
from ._credentials import CredentialError as CredentialError
from ._credentials import find_credential as find_credential
from ._credentials import redact_target as redact_target
from ._jwt import JwtSettings as JwtSettings
from ._jwt import JwtVerifier as JwtVerifier
from ._jwt import TokenRefused as TokenRefused
from ._keys import ApiKeys as ApiKeys
from ._keys import KeyEntry as KeyEntry
from ._keys import hash_key as hash_key
from ._keys import new_key as new_key
from ._keys import verify_key as verify_key
from ._quotas import Quota as Quota
from ._quotas import Quotas as Quotas
from ._quotas import TokenBucket as TokenBucket
