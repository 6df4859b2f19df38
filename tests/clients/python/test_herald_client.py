"""The Python publisher helper (clients/python, ``herald_client``) against a
real hub, with httpx-sse streams as the subscribers."""

from __future__ import annotations

import asyncio
from typing import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from herald_client import (
    AsyncHerald,
    Herald,
    HeraldError,
    InvalidationHeld,
    MintedToken,
    Published,
    RevokeResult,
)
from support import Hub, Subscriber, take, user_jwt


@pytest.fixture
def herald(hub: Hub) -> Iterator[Herald]:
    with Herald(hub.base, hub.key) as h:
        yield h


def stream(hub: Hub, herald: Herald, sub: str, topic: str) -> Subscriber:
    """A subscriber opened with a freshly minted token in ``?token=``."""
    token = herald.mint_token(sub=sub, sid="tab-1", subscribe=[topic]).token
    s = Subscriber(f"{hub.base}/v1/events?topic={quote(topic)}&token={token}")
    hub.wait_streams(sub, 1)
    return s


def refusal(call: Callable[[], object]) -> HeraldError:
    with pytest.raises(HeraldError) as err:
        call()
    return err.value


def test_publish_reaches_a_subscriber(hub: Hub, herald: Herald) -> None:
    s = stream(hub, herald, "py-pub", "py.orders.42")
    try:
        answer = herald.publish(
            {
                "topics": ["py.orders.42"],
                "type": "order.updated",
                "id": "ord-42-v1",
                "audience": {"users": ["py-pub"]},
                "data": {"status": "shipped"},
                "retry": 1500,
            }
        )
        assert isinstance(answer, Published) and answer.id == "ord-42-v1" and answer.seq > 0
        sse = take(s.events, "the event")
        assert (sse.event, sse.id, sse.retry, sse.json()) == ("order.updated", "ord-42-v1", 1500, {"status": "shipped"})
    finally:
        s.close()


def test_publish_batch_arrives_in_order(hub: Hub, herald: Herald) -> None:
    s = stream(hub, herald, "py-batch", "py.batch")
    try:
        answers = herald.publish_batch(
            [{"topic": "py.batch", "audience": "public", "data": f"line {n}"} for n in (1, 2, 3)]
        )
        assert [a.seq for a in answers] == [answers[0].seq + i for i in range(3)]
        got = [take(s.events, "a batch event") for _ in range(3)]
        assert [(e.id, e.data) for e in got] == [(a.id, f"line {i + 1}") for i, a in enumerate(answers)]
    finally:
        s.close()


def test_a_minted_token_opens_a_stream_once(hub: Hub, herald: Herald) -> None:
    minted = herald.mint_token(sub="py-mint", sid="tab-1", subscribe=["py.mint"], ttl=60)
    assert isinstance(minted, MintedToken) and minted.token.startswith("st_")
    assert 0 < minted.expires_in <= 60
    url = f"{hub.base}/v1/events?topic=py.mint&token={minted.token}"
    s = Subscriber(url)
    try:
        hub.wait_streams("py-mint", 1)
        herald.publish({"topic": "py.mint", "audience": "public", "data": "hello"})
        assert take(s.events, "the event").data == "hello"
        again = httpx.get(url)
        assert (again.status_code, again.json()["error"]["code"]) == (401, "token_used")
    finally:
        s.close()


def test_revoke_closes_a_live_stream(hub: Hub, herald: Herald) -> None:
    s = stream(hub, herald, "py-revoke", "py.revoke")
    try:
        result = herald.revoke({"type": "session_revoke", "account": "py-revoke", "session": "tab-1"})
        assert result == RevokeResult(closed=1, applied=True)
        sse = take(s.events, "revoked")
        assert (sse.event, sse.json()) == ("revoked", {"reason": "session_revoke"})
        hub.wait_streams("py-revoke", 0)
    finally:
        s.close()


def test_invalidate_and_forwarded_audit_events(hub: Hub, herald: Herald) -> None:
    s = stream(hub, herald, "py-tags", "$tags")
    try:
        answer = herald.invalidate([["todos"], ["users", 42]], {"users": ["py-tags"]})
        assert isinstance(answer, Published)
        sse = take(s.events, "the invalidation")
        assert (sse.event, sse.json()) == ("invalidate", {"tags": [["todos"], ["users", 42]]})
    finally:
        s.close()
    failed = herald.forward_audit_event({"type": "logout", "outcome": "failure", "account_id": "py-audit"})
    assert failed == RevokeResult(closed=0, applied=False)
    assert not isinstance(answer, InvalidationHeld)


def test_errors_carry_the_hub_status_and_code(hub: Hub, herald: Herald) -> None:
    missing = refusal(lambda: herald.publish({"topic": "py.err", "data": "x"}))  # type: ignore[typeddict-item]
    assert (missing.status, missing.code) == (400, "audience_required")
    assert missing.message

    huge = refusal(lambda: herald.publish({"topic": "py.err", "audience": "public", "data": "x" * (1024 * 1024 + 1)}))
    assert (huge.status, huge.code) == (413, "event_too_large")

    herald.publish({"topic": "py.err", "audience": "public", "data": "x", "id": "py-dup"})
    dup = refusal(lambda: herald.publish({"topic": "py.err", "audience": "public", "data": "x", "id": "py-dup"}))
    assert (dup.status, dup.code) == (409, "duplicate_id")

    with Herald(hub.base, "hk_not_a_key_of_this_hub_0123456789abcdef") as stranger:
        unknown = refusal(lambda: stranger.publish({"topic": "py.err", "audience": "public", "data": "x"}))
    assert (unknown.status, unknown.code) == (401, "invalid_token")

    # A user JWT may only narrow itself.
    with Herald(hub.base, lambda: user_jwt(sub="py-user", herald={"subscribe": ["py.user"]})) as user:
        widen = refusal(lambda: user.mint_token(subscribe=["py.other"]))
        assert (widen.status, widen.code) == (403, "token_widening_forbidden")
        assert user.mint_token(subscribe=["py.user"]).token.startswith("st_")

    with Herald("http://127.0.0.1:9", hub.key) as down:
        network = refusal(lambda: down.publish({"topic": "py.err", "audience": "public", "data": "x"}))
    assert (network.status, network.code) == (0, "network_error")


def test_the_async_client(hub: Hub, herald: Herald) -> None:
    s = stream(hub, herald, "py-async", "py.async")

    async def main() -> None:
        async def credential() -> str:
            return hub.key

        async with AsyncHerald(hub.base, credential) as h:
            published = await h.publish({"topic": "py.async", "audience": "public", "data": {"n": 1}})
            batch = await h.publish_batch([{"topic": "py.async", "audience": "public", "data": {"n": 2}}])
            assert batch[0].seq == published.seq + 1
            minted = await h.mint_token(sub="py-async-2", subscribe=["py.async"])
            assert minted.token.startswith("st_")
            with pytest.raises(HeraldError) as err:
                await h.publish({"topic": "$tags", "audience": "public", "data": "x"})
            assert (err.value.status, err.value.code) == (400, "reserved_topic")

    try:
        asyncio.run(main())
        assert [take(s.events, "event").json()["n"] for _ in range(2)] == [1, 2]
    finally:
        s.close()
