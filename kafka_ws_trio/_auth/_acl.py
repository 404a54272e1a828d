"""Topic and group rules per principal: who may read, write or join groups on which topics.

A rule names who it is for (a principal's name, ``*`` for everyone, or
``claim:<name>=<value>`` for principals whose token carries that value), the
operations it allows, the topics, and for ``group`` the group names. A
pattern is a literal name, a prefix (``orders.*``: a trailing ``*`` and no
other wildcard) or a glob (``*``, ``?`` and ``[...]`` anywhere, as
``fnmatch`` reads them, case-sensitive). Rules only allow: whatever no rule
allows is denied, so an empty list denies everything. A denial must not
tell whether the topic exists, so callers ask before they look the topic up.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

#: Who a rule is for when it names everyone.
EVERYONE: Final = "*"
#: How a rule names the principals whose token carries a claim value.
CLAIM_PREFIX: Final = "claim:"
_GLOB_CHARACTERS: Final = frozenset("*?[")


class Operation(enum.Enum):
    """What a command does to a topic (issue 13): read (ListOffset, Fetch, streams), write
    (produce, transactions), group (joining a group, committing, reading its offsets)."""

    READ = "read"
    WRITE = "write"
    GROUP = "group"


@attrs.frozen
class Pattern:
    """A topic or group name pattern: literal, prefix (``name*``) or glob."""

    text: str

    @property
    def kind(self) -> str:
        wildcards = [c for c in self.text if c in _GLOB_CHARACTERS]
        if not wildcards:
            return "literal"
        if wildcards == ["*"] and self.text.endswith("*"):
            return "prefix"
        return "glob"

    def matches(self, name: str) -> bool:
        kind = self.kind
        if kind == "literal":
            return name == self.text
        if kind == "prefix":
            return name.startswith(self.text[:-1])
        return fnmatch.fnmatchcase(name, self.text)


@attrs.frozen
class Principal:
    """Who a session is: a name, the claims of its token that rules may match (each a tuple of values),
    and when its credential expires (seconds since the epoch; None: it does not)."""

    name: str
    claims: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, eq=False)
    expires_at: float | None = attrs.field(default=None, kw_only=True, eq=False)


def _who_matches(who: str, principal: Principal) -> bool:
    if who == EVERYONE:
        return True
    if who.startswith(CLAIM_PREFIX):
        claim, _, value = who.removeprefix(CLAIM_PREFIX).partition("=")
        return value in principal.claims.get(claim, ())
    return who == principal.name


@attrs.frozen
class AclRule:
    """Allows ``operations`` on ``topics`` (and, for ``group``, on ``groups``) to whoever ``who`` names."""

    who: tuple[str, ...]
    operations: frozenset[Operation]
    topics: tuple[Pattern, ...]
    #: The groups a ``group`` operation may use; none named: any group.
    groups: tuple[Pattern, ...] = ()

    def names(self, principal: Principal) -> bool:
        """Whether the rule is for ``principal``."""
        return any(_who_matches(who, principal) for who in self.who)

    def allows(self, principal: Principal, operation: Operation, topic: str, group: str | None = None) -> bool:
        if operation not in self.operations or not self.names(principal):
            return False
        if not any(pattern.matches(topic) for pattern in self.topics):
            return False
        if operation is Operation.GROUP and self.groups:
            return group is not None and any(pattern.matches(group) for pattern in self.groups)
        return True


class Acl:
    """A route's rules: an operation is allowed when some rule allows it, denied otherwise."""

    def __init__(self, rules: Iterable[AclRule]) -> None:
        self.rules = tuple(rules)

    def allows(self, principal: Principal, operation: Operation, topic: str, group: str | None = None) -> bool:
        """Whether ``principal`` may do ``operation`` on ``topic`` (with ``group``, for a group operation)."""
        return any(rule.allows(principal, operation, topic, group) for rule in self.rules)
