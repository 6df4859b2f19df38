"""Herald's publisher API over httpx, synchronous and asynchronous.

Both clients share the request building and answer parsing below; only the
transport call differs, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Union

import httpx

from ._types import (
    Audience,
    Event,
    Invalidated,
    InvalidationDropped,
    InvalidationHeld,
    MintedToken,
    Published,
    Revocation,
    RevokeResult,
    Tag,
)

Credential = Union[str, Callable[[], str]]
"""A credential, or a function returning the current one (e.g. a renewed JWT)."""

AsyncCredential = Union[str, Callable[[], str], Callable[[], Awaitable[str]]]
"""As :data:`Credential`; the function may also be a coroutine function."""


class HeraldError(Exception):
    """A refusal or failure.

    For an answer from the hub, ``status`` is the HTTP status and ``code`` /
    ``message`` are its JSON error's (``{"error": {"code", "message"}}``, e.g.
    ``400 audience_required``, ``401 invalid_token``, ``413 event_too_large``).
    Without a usable answer ``status`` is ``0`` (or the HTTP status of a body
    that was not Herald's) and ``code`` is ``network_error``, ``timeout`` or
    ``unexpected_response``.
    """

    def __init__(self, status: int, code: str, message: str, retry_after: Optional[int] = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        """The HTTP status, or ``0`` when no answer arrived."""
        self.code = code
        """The hub's ``error.code`` (snake_case), or a local code."""
        self.message = message
        """The hub's human sentence."""
        self.retry_after = retry_after
        """Seconds from the ``Retry-After`` header (``429``, ``503``), when sent."""


def _mint_body(
    subscribe: Sequence[str],
    sub: Optional[str],
    tenant: Optional[str],
    sid: Optional[str],
    roles: Optional[Sequence[str]],
    groups: Optional[Sequence[str]],
    ttl: Optional[int],
    single_use: Optional[bool],
    admin: Optional[bool],
) -> dict[str, Any]:
    # Only the fields given are sent, so the hub's defaults apply to the rest.
    fields: dict[str, Any] = {
        "subscribe": list(subscribe),
        "sub": sub,
        "tenant": tenant,
        "sid": sid,
        "roles": None if roles is None else list(roles),
        "groups": None if groups is None else list(groups),
        "ttl": ttl,
        "single_use": single_use,
        "admin": admin,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _encode(body: Any) -> bytes:
    # Sequences such as tuples are valid JSON arrays; everything else must be JSON already.
    return json.dumps(body, separators=(",", ":"), default=_sequence_as_list).encode()


def _sequence_as_list(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _error_from(response: httpx.Response, path: str) -> HeraldError:
    retry_after = response.headers.get("retry-after", "").strip()
    seconds = int(retry_after) if retry_after.isdigit() else None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        message = error.get("message")
        return HeraldError(
            response.status_code, error["code"], message if isinstance(message, str) else error["code"], seconds
        )
    return HeraldError(
        response.status_code,
        "unexpected_response",
        f"{path} answered {response.status_code}: {response.text[:200]}",
        seconds,
    )


def _json_answer(response: httpx.Response, path: str) -> dict[str, Any]:
    if not response.is_success:
        raise _error_from(response, path)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HeraldError(response.status_code, "unexpected_response", f"{path} answered without a JSON object")
    return body


def _field(body: Mapping[str, Any], name: str, kind: type, path: str) -> Any:
    value = body.get(name)
    # bool is an int in Python: never accept one for the other.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise HeraldError(0, "unexpected_response", f"{path} answered without a valid {name!r}")
    return value


def _published(body: Mapping[str, Any], path: str) -> Published:
    return Published(id=_field(body, "id", str, path), seq=_field(body, "seq", int, path))


def _batch(body: Mapping[str, Any], path: str) -> list[Published]:
    events = body.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise HeraldError(0, "unexpected_response", f"{path} answered without 'events'")
    return [_published(e, path) for e in events]


def _minted(body: Mapping[str, Any], path: str) -> MintedToken:
    return MintedToken(
        token=_field(body, "token", str, path),
        expires_at=_field(body, "expires_at", int, path),
        expires_in=_field(body, "expires_in", int, path),
    )


def _revoked(body: Mapping[str, Any], path: str) -> RevokeResult:
    return RevokeResult(closed=_field(body, "closed", int, path), applied=_field(body, "applied", bool, path))


def _invalidated(body: Mapping[str, Any], path: str) -> Invalidated:
    if body.get("held") is True:
        return InvalidationHeld()
    if body.get("dropped") is True:
        return InvalidationDropped()
    return _published(body, path)


def _transport_error(err: httpx.TransportError, base: str) -> HeraldError:
    if isinstance(err, httpx.TimeoutException):
        return HeraldError(0, "timeout", f"no answer from {base} in time")
    return HeraldError(0, "network_error", f"cannot reach {base}: {err}")


class Herald:
    """A synchronous client for Herald's publisher API: one per hub and credential.

    ``credential`` is a backend API key (``hk_...``) or a user JWT, sent as
    ``Authorization: Bearer``. Use it as a context manager, or call
    :meth:`close`, to release its connections.
    """

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        timeout: float = 10.0,
        client: Optional[httpx.Client] = None,
    ) -> None:
        # Joined by hand so a hub mounted under a path prefix keeps it.
        self._base = url.rstrip("/")
        self._credential = credential
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._owns_client = client is None

    def publish(self, event: Event) -> Published:
        """Publishes one event (``POST /v1/publish``); returns once it is durable."""
        return _published(self._post("/v1/publish", event), "/v1/publish")

    def publish_batch(self, events: Sequence[Event]) -> list[Published]:
        """Publishes several events atomically (at most ``limits.max_batch``)."""
        return _batch(self._post("/v1/publish", {"events": list(events)}), "/v1/publish")

    def mint_token(
        self,
        *,
        subscribe: Sequence[str],
        sub: Optional[str] = None,
        tenant: Optional[str] = None,
        sid: Optional[str] = None,
        roles: Optional[Sequence[str]] = None,
        groups: Optional[Sequence[str]] = None,
        ttl: Optional[int] = None,
        single_use: Optional[bool] = None,
        admin: Optional[bool] = None,
    ) -> MintedToken:
        """Mints an SSE token (``POST /v1/tokens``); ``sub`` is required with an API key.

        Single-use and short-lived by default: mint a fresh one for every connect.
        """
        body = _mint_body(subscribe, sub, tenant, sid, roles, groups, ttl, single_use, admin)
        return _minted(self._post("/v1/tokens", body), "/v1/tokens")

    def revoke(self, revocation: Revocation) -> RevokeResult:
        """Revokes access: matching streams close with ``event: revoked``, a deny rule stays."""
        return _revoked(self._post("/v1/revocations", revocation), "/v1/revocations")

    def forward_audit_event(self, event: Mapping[str, Any]) -> RevokeResult:
        """Forwards an application's own audit event to ``POST /v1/revocations`` as is."""
        return _revoked(self._post("/v1/revocations", event), "/v1/revocations")

    def invalidate(self, tags: Sequence[Tag], audience: Audience) -> Invalidated:
        """Tells ``$tags`` subscribers which cached queries went stale (``POST /v1/invalidate``)."""
        body = {"tags": [list(t) for t in tags], "audience": audience}
        return _invalidated(self._post("/v1/invalidate", body), "/v1/invalidate")

    def close(self) -> None:
        """Closes the connections of the client this object created."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Herald:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(self, path: str, body: Any) -> dict[str, Any]:
        credential = self._credential() if callable(self._credential) else self._credential
        try:
            response = self._client.post(
                self._base + path,
                content=_encode(body),
                headers={
                    "Authorization": f"Bearer {credential}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
        except httpx.TransportError as err:
            raise _transport_error(err, self._base) from err
        return _json_answer(response, path)


class AsyncHerald:
    """The asynchronous twin of :class:`Herald`, on ``httpx.AsyncClient``."""

    def __init__(
        self,
        url: str,
        credential: AsyncCredential,
        *,
        timeout: float = 10.0,
        client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        self._base = url.rstrip("/")
        self._credential = credential
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None

    async def publish(self, event: Event) -> Published:
        """Publishes one event (``POST /v1/publish``); returns once it is durable."""
        return _published(await self._post("/v1/publish", event), "/v1/publish")

    async def publish_batch(self, events: Sequence[Event]) -> list[Published]:
        """Publishes several events atomically (at most ``limits.max_batch``)."""
        return _batch(await self._post("/v1/publish", {"events": list(events)}), "/v1/publish")

    async def mint_token(
        self,
        *,
        subscribe: Sequence[str],
        sub: Optional[str] = None,
        tenant: Optional[str] = None,
        sid: Optional[str] = None,
        roles: Optional[Sequence[str]] = None,
        groups: Optional[Sequence[str]] = None,
        ttl: Optional[int] = None,
        single_use: Optional[bool] = None,
        admin: Optional[bool] = None,
    ) -> MintedToken:
        """Mints an SSE token (``POST /v1/tokens``); ``sub`` is required with an API key."""
        body = _mint_body(subscribe, sub, tenant, sid, roles, groups, ttl, single_use, admin)
        return _minted(await self._post("/v1/tokens", body), "/v1/tokens")

    async def revoke(self, revocation: Revocation) -> RevokeResult:
        """Revokes access: matching streams close with ``event: revoked``, a deny rule stays."""
        return _revoked(await self._post("/v1/revocations", revocation), "/v1/revocations")

    async def forward_audit_event(self, event: Mapping[str, Any]) -> RevokeResult:
        """Forwards an application's own audit event to ``POST /v1/revocations`` as is."""
        return _revoked(await self._post("/v1/revocations", event), "/v1/revocations")

    async def invalidate(self, tags: Sequence[Tag], audience: Audience) -> Invalidated:
        """Tells ``$tags`` subscribers which cached queries went stale (``POST /v1/invalidate``)."""
        body = {"tags": [list(t) for t in tags], "audience": audience}
        return _invalidated(await self._post("/v1/invalidate", body), "/v1/invalidate")

    async def aclose(self) -> None:
        """Closes the connections of the client this object created."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncHerald:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _post(self, path: str, body: Any) -> dict[str, Any]:
        credential: Any = self._credential() if callable(self._credential) else self._credential
        if not isinstance(credential, str):
            credential = await credential
        try:
            response = await self._client.post(
                self._base + path,
                content=_encode(body),
                headers={
                    "Authorization": f"Bearer {credential}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
            )
        except httpx.TransportError as err:
            raise _transport_error(err, self._base) from err
        return _json_answer(response, path)
