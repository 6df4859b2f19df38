"""PyPI ``httpx-sse`` against a real hub.

httpx-sse parses the stream and exposes ``id`` and ``retry``; reconnecting
is the application's loop (``follow`` below, as docs/clients.md shows): a
fresh credential in the Authorization header per connect, ``Last-Event-ID``
from the last event received, the hub's ``retry`` as the delay, stop on
``revoked`` and on a 401/403.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from support import Hub, Pacer, start_hub, take, until, user_jwt
from herald_client import Herald


class StreamEnded(Exception):
    """The stream ended for good: refused (401/403) or revoked."""

    def __init__(self, status: Optional[int], code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


def follow(
    client: httpx.Client,
    url: str,
    credential: Callable[[], str],
    on_event: Callable[[ServerSentEvent], None],
    *,
    last_event_id: str = "",
    sleep: Callable[[float], None] = time.sleep,
    handle_revoked: bool = True,
    stop: Optional[threading.Event] = None,
) -> None:
    """Follows a Herald stream across reconnects until revoked, refused or stopped."""
    retry_ms = 3000  # until the hub sends `retry:`
    while stop is None or not stop.is_set():
        headers = {"Authorization": f"Bearer {credential()}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            with connect_sse(client, "GET", url, headers=headers) as source:
                response = source.response
                if response.status_code in (401, 403):
                    response.read()
                    raise StreamEnded(response.status_code, response.json()["error"]["code"])
                if response.status_code == 200:
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            retry_ms = sse.retry
                        # httpx-sse turns the blank line after a `: keepalive`
                        # comment into an empty `message` repeating the last id.
                        if sse.event == "message" and sse.data == "" and sse.id == last_event_id:
                            continue
                        if sse.event == "revoked" and handle_revoked:
                            raise StreamEnded(None, sse.json()["reason"])
                        if sse.id:  # control events carry none: the last real id stays
                            last_event_id = sse.id
                        on_event(sse)
        except httpx.TransportError:
            pass  # the connection broke: reconnect
        sleep(retry_ms / 1000)


class Follower:
    """Runs ``follow`` in a thread; events and the end land in queues."""

    def __init__(self, hub: Hub, topic: str, credential: Callable[[], str], **options: object) -> None:
        self.events: "queue.Queue[ServerSentEvent]" = queue.Queue()
        self.ended: "queue.Queue[BaseException | None]" = queue.Queue()
        self.stop = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        url = f"{hub.base}/v1/events?topic={topic}"

        def run() -> None:
            try:
                follow(self.client, url, credential, self.events.put, stop=self.stop, **options)  # type: ignore[arg-type]
                self.ended.put(None)
            except BaseException as err:  # noqa: BLE001 - handed to the test
                self.ended.put(err)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def messages(self, n: int) -> list[tuple[str, object]]:
        """The next ``n`` events, as (id, data) pairs."""
        out = []
        while len(out) < n:
            sse = take(self.events, f"event {len(out) + 1} of {n}")
            if sse.event == "message":
                out.append((sse.id, sse.json()["n"]))
        return out

    def close(self) -> None:
        self.stop.set()
        self.client.close()


def test_fresh_token_per_connect_in_the_header_resumes_across_a_cut_exactly_once(hub: Hub) -> None:
    herald = Herald(hub.base, hub.key)
    mints: list[str] = []

    def credential() -> str:
        mints.append(herald.mint_token(sub="hx-resume", sid="tab-1", subscribe=["hx.resume"]).token)
        return mints[-1]

    pacer = Pacer()
    f = Follower(hub, "hx.resume", credential, sleep=pacer)
    try:
        hub.wait_streams("hx-resume", 1)
        sent = []
        for n in (1, 2):
            sent.append((hub.publish({"topic": "hx.resume", "audience": "public", "data": {"n": n}, "retry": 250})["id"], n))
        assert f.messages(2) == sent

        pacer.hold()
        assert hub.kick("hx-resume") == 1
        until("the loop to notice the cut", pacer.waiting.is_set)
        for n in (3, 4):
            sent.append((hub.publish({"topic": "hx.resume", "audience": "public", "data": {"n": n}})["id"], n))
        pacer.release()
        hub.wait_streams("hx-resume", 1)
        sent.append((hub.publish({"topic": "hx.resume", "audience": "public", "data": {"n": 5}})["id"], 5))

        assert f.messages(3) == sent[2:], "no gap, no duplicate"
        assert pacer.delays == [0.25], "the hub's retry is the reconnect delay"
        assert len(mints) == 2 and mints[0] != mints[1], "a fresh token for each connect"
    finally:
        f.close()
        herald.close()


def test_keepalives_reported_as_events_by_httpx_sse_are_skipped() -> None:
    # A hub with 1 s keepalives. Once an id was seen, httpx-sse reports the
    # blank line after each `: keepalive` comment as an empty `message`
    # repeating that id; `follow` must not hand those to the application.
    hubs = start_hub("[limits]\nkeepalive_secs = 1\n")
    fast = next(hubs)
    token = user_jwt(sub="hx-ka", herald={"subscribe": ["hx.ka"]})
    f = Follower(fast, "hx.ka", lambda: token)
    try:
        raw: list[ServerSentEvent] = []
        with httpx.Client(timeout=30) as client:
            headers = {"Authorization": f"Bearer {token}"}
            with connect_sse(client, "GET", f"{fast.base}/v1/events?topic=hx.ka", headers=headers) as source:
                fast.wait_streams("hx-ka", 2)
                first = fast.publish({"topic": "hx.ka", "audience": "public", "data": {"n": 1}})
                for sse in source.iter_sse():
                    raw.append(sse)
                    if len(raw) == 3:  # the event, then two keepalive ticks
                        break
        assert [(e.event, e.data, e.id) for e in raw[1:]] == [("message", "", first["id"])] * 2
        second = fast.publish({"topic": "hx.ka", "audience": "public", "data": {"n": 2}})
        assert f.messages(2) == [(first["id"], 1), (second["id"], 2)]
        assert f.events.empty(), "nothing but the two events"
    finally:
        f.close()
        hubs.close()


def test_stops_on_revoked(hub: Hub) -> None:
    token = user_jwt(sub="hx-stop", sid="tab-1", herald={"subscribe": ["hx.stop"]})
    pacer = Pacer()
    f = Follower(hub, "hx.stop", lambda: token, sleep=pacer)
    try:
        hub.wait_streams("hx-stop", 1)
        hub.publish({"topic": "hx.stop", "audience": "public", "data": {"n": 1}})
        f.messages(1)
        assert hub.revoke({"type": "session_revoke", "account": "hx-stop", "session": "tab-1"})["closed"] == 1
        ended = take(f.ended, "the loop to end")
        assert isinstance(ended, StreamEnded) and ended.code == "session_revoke"
        assert pacer.delays == [], "it never tried to reconnect"
    finally:
        f.close()


def test_without_the_revoked_check_the_reconnect_is_refused_and_the_loop_ends(hub: Hub) -> None:
    token = user_jwt(sub="hx-refused", herald={"subscribe": ["hx.refused"]})
    pacer = Pacer()
    f = Follower(hub, "hx.refused", lambda: token, sleep=pacer, handle_revoked=False)
    try:
        hub.wait_streams("hx-refused", 1)
        hub.publish({"topic": "hx.refused", "audience": "public", "data": {"n": 1}})
        f.messages(1)
        hub.revoke({"type": "logout", "account": "hx-refused"})
        ended = take(f.ended, "the loop to end")
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.code) == (401, "credential_revoked")
        assert len(pacer.delays) == 1, "one reconnect, refused"
        revoked = [e for e in list(f.events.queue) if e.event == "revoked"]
        assert [e.json() for e in revoked] == [{"reason": "logout"}]
    finally:
        f.close()
