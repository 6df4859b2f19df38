"""PyPI ``mercure-publisher`` (a typed Mercure publisher on httpx) against
Herald's Mercure endpoint, ``POST /.well-known/mercure``.

It signs its own publisher JWT (``mercure.publish`` = ``publish_topics``,
with ``exp``) from ``publisher_jwt_key``; without a ``redis_config`` it
caches nothing and needs no Redis.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from mercure_publisher import MercureConfig, MercurePublisher, MercurePublishError

from support import MERCURE_PUBLISHER_KEY, Hub, Subscriber, mercure_subscriber_jwt, take, user_jwt

BOOKS = "https://example.com/books/{id}"


@pytest.fixture
def publisher(hub: Hub) -> Iterator[MercurePublisher]:
    config = MercureConfig(
        hub_url=f"{hub.base}/.well-known/mercure",
        publisher_jwt_key=MERCURE_PUBLISHER_KEY,
        publish_topics=[BOOKS],
        jwt_ttl_seconds=600,
        jwt_additional_claims={"sub": "books-backend"},
    )
    with MercurePublisher(config) as p:
        yield p


def test_a_mercure_update_reaches_mercure_and_native_subscribers(hub: Hub, publisher: MercurePublisher) -> None:
    mercure = Subscriber(
        f"{hub.base}/.well-known/mercure?topic={BOOKS}", mercure_subscriber_jwt([BOOKS])
    )
    native = Subscriber(
        f"{hub.base}/v1/events?topic={BOOKS}", user_jwt(sub="mp-native", herald={"subscribe": [BOOKS]})
    )
    try:
        answer = publisher.publish(
            "https://example.com/books/1", {"title": "Dune"}, id="book-1-v1", type="book.updated", retry=2500
        )
        assert answer == "book-1-v1", "the hub answers the update's id"
        for sub in (mercure, native):
            sse = take(sub.events, "the update")
            assert (sse.event, sse.id, sse.retry, sse.json()) == ("book.updated", "book-1-v1", 2500, {"title": "Dune"})
    finally:
        mercure.close()
        native.close()


def test_a_private_update_reaches_only_granted_mercure_subscribers(hub: Hub, publisher: MercurePublisher) -> None:
    mercure = Subscriber(
        f"{hub.base}/.well-known/mercure?topic={BOOKS}", mercure_subscriber_jwt([BOOKS], sub="mp-reader")
    )
    native = Subscriber(
        f"{hub.base}/v1/events?topic={BOOKS}", user_jwt(sub="mp-native-private", herald={"subscribe": ["*"]})
    )
    try:
        publisher.publish("https://example.com/books/2", "secret", private=True)
        publisher.publish("https://example.com/books/2", "public")
        assert [take(mercure.events, "update").data for _ in range(2)] == ["secret", "public"]
        assert take(native.events, "the public update").data == "public", "native streams never get private updates"
    finally:
        mercure.close()
        native.close()


def test_refusals_surface_as_publish_errors_with_the_hub_body(hub: Hub, publisher: MercurePublisher) -> None:
    with pytest.raises(MercurePublishError) as forbidden:
        publisher.publish("https://example.com/authors/1", "x")
    assert forbidden.value.status_code == 403
    assert '"code":"topic_forbidden"' in (forbidden.value.response_body or "")

    with pytest.raises(MercurePublishError) as reserved:
        publisher.publish("https://example.com/books/3", "x", type="revoked")
    assert reserved.value.status_code == 400
    assert '"code":"reserved_type"' in (reserved.value.response_body or "")
