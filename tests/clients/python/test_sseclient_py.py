"""PyPI ``sseclient-py`` (on ``requests``) against a real hub.

sseclient-py parses a response someone else opened, so the application
owns the request: a user JWT in the Authorization header, ``Last-Event-ID``
on reconnect, the hub's ``retry`` (a string here) as the delay, stop on
``revoked`` and on a 401/403 (``follow`` below, as docs/clients.md shows).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Callable, Optional

import requests
import sseclient

from support import Hub, Pacer, take, until, user_jwt


class StreamEnded(Exception):
    """The stream ended for good: refused (401/403) or revoked."""

    def __init__(self, status: Optional[int], code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


def follow(
    session: requests.Session,
    url: str,
    credential: Callable[[], str],
    on_event: Callable[[sseclient.Event], None],
    *,
    last_event_id: str = "",
    sleep: Callable[[float], None] = time.sleep,
    handle_revoked: bool = True,
    stop: Optional[threading.Event] = None,
) -> None:
    """Follows a Herald stream across reconnects until revoked, refused or stopped."""
    retry_ms = 3000
    while stop is None or not stop.is_set():
        headers = {"Authorization": f"Bearer {credential()}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            # The read timeout is well above the hub's 15 s keepalive: a silent
            # connection is a dead one.
            with session.get(url, headers=headers, stream=True, timeout=(10, 60)) as response:
                if response.status_code in (401, 403):
                    raise StreamEnded(response.status_code, response.json()["error"]["code"])
                if response.status_code == 200:
                    for event in sseclient.SSEClient(response).events():
                        if event.retry and event.retry.isdigit():
                            retry_ms = int(event.retry)
                        if event.event == "revoked" and handle_revoked:
                            raise StreamEnded(None, json.loads(event.data)["reason"])
                        if event.id:  # control events carry none: the last real id stays
                            last_event_id = event.id
                        on_event(event)
        except requests.RequestException:
            pass  # the connection broke: reconnect
        sleep(retry_ms / 1000)


class Follower:
    """Runs ``follow`` in a thread; events and the end land in queues."""

    def __init__(self, hub: Hub, topic: str, credential: Callable[[], str], **options: object) -> None:
        self.events: "queue.Queue[sseclient.Event]" = queue.Queue()
        self.ended: "queue.Queue[BaseException | None]" = queue.Queue()
        self.stop = threading.Event()
        self.session = requests.Session()
        self.requests: list[dict[str, str]] = []
        url = f"{hub.base}/v1/events?topic={topic}"
        seen = self.requests
        self.session.hooks["response"].append(lambda r, **_: seen.append(dict(r.request.headers)))

        def run() -> None:
            try:
                follow(self.session, url, credential, self.events.put, stop=self.stop, **options)  # type: ignore[arg-type]
                self.ended.put(None)
            except BaseException as err:  # noqa: BLE001 - handed to the test
                self.ended.put(err)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def messages(self, n: int) -> list[tuple[str, int]]:
        """The next ``n`` events, as (id, data) pairs."""
        out = []
        while len(out) < n:
            event = take(self.events, f"event {len(out) + 1} of {n}")
            if event.event == "message":
                out.append((event.id, json.loads(event.data)["n"]))
        return out

    def close(self) -> None:
        self.stop.set()
        self.session.close()


def jwt_for(sub: str, topic: str) -> str:
    return user_jwt(sub=sub, sid="tab-1", herald={"subscribe": [topic]})


def test_a_jwt_in_the_header_resumes_across_a_cut_exactly_once(hub: Hub) -> None:
    token = jwt_for("sc-resume", "sc.resume")
    pacer = Pacer()
    f = Follower(hub, "sc.resume", lambda: token, sleep=pacer)
    try:
        hub.wait_streams("sc-resume", 1)
        sent = []
        for n in (1, 2):
            sent.append((hub.publish({"topic": "sc.resume", "audience": "public", "data": {"n": n}, "retry": 400})["id"], n))
        assert f.messages(2) == sent

        pacer.hold()
        assert hub.kick("sc-resume") == 1
        until("the loop to notice the cut", pacer.waiting.is_set)
        for n in (3, 4):
            sent.append((hub.publish({"topic": "sc.resume", "audience": "public", "data": {"n": n}})["id"], n))
        pacer.release()
        hub.wait_streams("sc-resume", 1)
        sent.append((hub.publish({"topic": "sc.resume", "audience": "public", "data": {"n": 5}})["id"], 5))

        assert f.messages(3) == sent[2:], "no gap, no duplicate"
        assert pacer.delays == [0.4], "the hub's retry is the reconnect delay"
        assert f.requests[1].get("Last-Event-ID") == sent[1][0]
    finally:
        f.close()


def test_stops_on_revoked(hub: Hub) -> None:
    token = jwt_for("sc-stop", "sc.stop")
    pacer = Pacer()
    f = Follower(hub, "sc.stop", lambda: token, sleep=pacer)
    try:
        hub.wait_streams("sc-stop", 1)
        hub.publish({"topic": "sc.stop", "audience": "public", "data": {"n": 1}})
        f.messages(1)
        assert hub.revoke({"type": "session_revoke", "account": "sc-stop", "session": "tab-1"})["closed"] == 1
        ended = take(f.ended, "the loop to end")
        assert isinstance(ended, StreamEnded) and ended.code == "session_revoke"
        assert pacer.delays == [], "it never tried to reconnect"
    finally:
        f.close()


def test_without_the_revoked_check_the_reconnect_is_refused_and_the_loop_ends(hub: Hub) -> None:
    token = jwt_for("sc-refused", "sc.refused")
    pacer = Pacer()
    f = Follower(hub, "sc.refused", lambda: token, sleep=pacer, handle_revoked=False)
    try:
        hub.wait_streams("sc-refused", 1)
        hub.publish({"topic": "sc.refused", "audience": "public", "data": {"n": 1}})
        f.messages(1)
        hub.revoke({"type": "token_revoke_all", "account": "sc-refused"})
        ended = take(f.ended, "the loop to end")
        assert isinstance(ended, StreamEnded)
        assert (ended.status, ended.code) == (401, "credential_revoked")
        assert len(pacer.delays) == 1, "one reconnect, refused"
    finally:
        f.close()
