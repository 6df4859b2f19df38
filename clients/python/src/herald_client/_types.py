"""The request and answer bodies of Herald's HTTP API (docs/api.md).

Requests are TypedDicts whose keys are the hub's own field names, so a
body reads like the API reference; answers are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence, TypedDict, Union


class AudienceFilter(TypedDict, total=False):
    """Restricts an event by every field it sets (all must match).

    An empty list matches nobody; the hub refuses ``{}`` as ambiguous.
    """

    tenant: str
    users: Sequence[str]
    sessions: Sequence[str]
    roles: Sequence[str]
    groups: Sequence[str]


Audience = Union[Literal["public"], AudienceFilter]
"""``"public"`` (everyone allowed on the topic) or an :class:`AudienceFilter`."""


class _EventRequired(TypedDict):
    data: Any
    audience: Audience


class Event(_EventRequired, total=False):
    """One event for ``POST /v1/publish``.

    ``data`` (a string is sent as is, any other JSON value compactly
    serialized) and ``audience`` are required; give ``topics`` (1 to 100
    exact topics) or ``topic``.
    """

    topics: Sequence[str]
    topic: str
    type: str
    id: str
    retain: bool
    retry: int


class _RoleGrantRevokeRequired(TypedDict):
    type: Literal["role_grant_revoke"]
    account: str
    role: str


class RoleGrantRevoke(_RoleGrantRevokeRequired, total=False):
    """Closes the account's streams holding the role."""

    tenant: str


class _SessionRevokeRequired(TypedDict):
    type: Literal["session_revoke"]
    account: str
    session: str


class SessionRevoke(_SessionRevokeRequired, total=False):
    """Closes one session's streams and refuses every credential bound to it."""

    tenant: str


class _AccountRevokeRequired(TypedDict):
    type: Literal["session_revoke_all", "token_revoke_all", "password_change", "logout"]
    account: str


class AccountRevoke(_AccountRevokeRequired, total=False):
    """Closes all the account's streams; refuses its credentials issued before."""

    tenant: str


class _TokenRevokeRequired(TypedDict):
    type: Literal["token_revoke"]
    jti: str


class TokenRevoke(_TokenRevokeRequired, total=False):
    """Closes the streams of one token (and of SSE tokens minted from it)."""

    tenant: str


class TenantRevoke(TypedDict):
    """Closes all of a tenant's streams."""

    type: Literal["tenant_revoke"]
    tenant: str


Revocation = Union[RoleGrantRevoke, SessionRevoke, AccountRevoke, TokenRevoke, TenantRevoke]
"""A revocation in Herald's own shape, for ``POST /v1/revocations``."""

Tag = Sequence[Union[str, int]]
"""A tag: 1 to 16 segments, strings or numbers (a TanStack Query key)."""


@dataclass(frozen=True)
class Published:
    """The hub's answer for one published event."""

    id: str
    """The client id when one was given, else the sequence number as a string."""
    seq: int
    """The hub's sequence number."""


@dataclass(frozen=True)
class MintedToken:
    """The hub's answer to ``POST /v1/tokens``."""

    token: str
    """The SSE token, ``st_...``."""
    expires_at: int
    """Unix seconds at which it expires."""
    expires_in: int
    """Seconds it has left."""


@dataclass(frozen=True)
class RevokeResult:
    """The hub's answer to a revocation."""

    closed: int
    """Live streams it closed."""
    applied: bool
    """Whether a deny rule was recorded."""


@dataclass(frozen=True)
class InvalidationHeld:
    """Invalidations are paused: this one is held (``202``)."""


@dataclass(frozen=True)
class InvalidationDropped:
    """Every tag of the invalidation is disabled: nothing was sent."""


Invalidated = Union[Published, InvalidationHeld, InvalidationDropped]
"""The hub's answer to ``POST /v1/invalidate``."""
