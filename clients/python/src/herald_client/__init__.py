"""Typed publisher helpers for Herald: publish events, mint SSE tokens, revoke access.

>>> from herald_client import Herald
>>> with Herald("https://realtime.example.com", api_key) as herald:  # doctest: +SKIP
...     herald.publish({"topic": "orders.42", "audience": {"users": ["u42"]}, "data": {"status": "shipped"}})
"""

from ._client import AsyncCredential, AsyncHerald, Credential, Herald, HeraldError
from ._types import (
    AccountRevoke,
    Audience,
    AudienceFilter,
    Event,
    Invalidated,
    InvalidationDropped,
    InvalidationHeld,
    MintedToken,
    Published,
    Revocation,
    RevokeResult,
    RoleGrantRevoke,
    SessionRevoke,
    Tag,
    TenantRevoke,
    TokenRevoke,
)

__all__ = [
    "AccountRevoke",
    "AsyncCredential",
    "AsyncHerald",
    "Audience",
    "AudienceFilter",
    "Credential",
    "Event",
    "Herald",
    "HeraldError",
    "Invalidated",
    "InvalidationDropped",
    "InvalidationHeld",
    "MintedToken",
    "Published",
    "Revocation",
    "RevokeResult",
    "RoleGrantRevoke",
    "SessionRevoke",
    "Tag",
    "TenantRevoke",
    "TokenRevoke",
]
