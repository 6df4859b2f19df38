"""Test support: a real herald process, its admin API, signed JWTs, waits.

The hub binary is ``target/debug/herald`` (``HERALD_BIN`` overrides it). The
test's own ``HERALD_*`` variables are not passed on: the hub would read them
as configuration.
"""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import httpx
import jwt
from httpx_sse import ServerSentEvent, connect_sse

ROOT = Path(__file__).resolve().parents[3]
HERALD_BIN = os.environ.get("HERALD_BIN", str(ROOT / "target" / "debug" / "herald"))
SECRET = "clients-test-secret-clients-test-secret-0123"
MERCURE_PUBLISHER_KEY = "clients-mercure-publisher-key-0123456789abcdef"
MERCURE_SUBSCRIBER_KEY = "clients-mercure-subscriber-key-0123456789abcdef"


class Hub:
    """A running hub and what an application's backend does with it."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.key = key
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def _ok(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/publish`` with the backend key."""
        return dict(self._ok("POST", "/v1/publish", event))

    def mint(self, **claims: Any) -> str:
        """``POST /v1/tokens`` for a user; returns the ``st_`` token."""
        return str(self._ok("POST", "/v1/tokens", {"ttl": 300, **claims})["token"])

    def connections_of(self, account: str) -> list[dict[str, Any]]:
        """The live streams of one account."""
        return list(self._ok("GET", f"/v1/connections?account={account}")["connections"])

    def kick(self, account: str) -> int:
        """Cuts every live stream of ``account``; returns how many."""
        conns = self.connections_of(account)
        for c in conns:
            self._ok("DELETE", f"/v1/connections/{c['id']}")
        return len(conns)

    def revoke(self, revocation: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/revocations``."""
        return dict(self._ok("POST", "/v1/revocations", revocation))

    def wait_streams(self, account: str, n: int) -> None:
        """Waits until ``account`` has exactly ``n`` live streams."""
        until(f"{n} streams of {account}", lambda: len(self.connections_of(account)) == n)


def user_jwt(**claims: Any) -> str:
    """An HS256 user JWT signed with the hub's secret (``iat``/``exp`` filled in)."""
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, **claims}, SECRET, algorithm="HS256")


def mercure_subscriber_jwt(topics: list[str], sub: str = "mercure-reader") -> str:
    """A Mercure subscriber JWT (``mercure.subscribe``), as a Mercure app signs it."""
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 600, "mercure": {"subscribe": topics}}
    return jwt.encode(claims, MERCURE_SUBSCRIBER_KEY, algorithm="HS256")


def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Polls ``check`` until it returns something truthy (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def take(q: "queue.Queue[Any]", what: str, timeout: float = 20.0) -> Any:
    """The next item of ``q``, or a failure naming what was awaited."""
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"timed out waiting for {what}") from None


def start_hub(extra: str = "") -> Iterator[Hub]:
    """Starts herald on an ephemeral port; yields a :class:`Hub`; kills it afterwards."""
    key = f"hk_clients_{secrets.token_hex(18)}"
    with tempfile.TemporaryDirectory(prefix="herald-clients-") as data:
        config = Path(data) / "herald.toml"
        config.write_text(
            f'listen = "127.0.0.1:0"\ndata_dir = "{data}"\njwt_secret = "{SECRET}"\nfsync = "never"\n'
            f'[[api_keys]]\nid = "app"\nhash = "sha256:{hashlib.sha256(key.encode()).hexdigest()}"\n'
            'scopes = ["publish", "tokens", "revoke", "admin"]\n'
            f"{extra}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env["HERALD_LOG"] = "warn"
        child = subprocess.Popen(
            [HERALD_BIN, "serve", "--config", str(config)], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            base: Optional[str] = None
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("herald listening on "):
                    base = line.split()[-1]
                    break
            assert base, f"herald ({HERALD_BIN}) exited before listening"
            stdout = child.stdout
            # Keep draining stdout so the hub never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
            hub = Hub(base, key)
            yield hub
            hub.http.close()
        finally:
            child.kill()
            child.wait()


MERCURE_TOML = f"""
[mercure]
publisher_jwt_key = "{MERCURE_PUBLISHER_KEY}"
publisher_jwt_alg = "HS256"
subscriber_jwt_key = "{MERCURE_SUBSCRIBER_KEY}"
subscriber_jwt_alg = "HS256"
"""


class Pacer:
    """The ``sleep`` of a reconnect loop: records each delay asked for, and
    holds the next reconnect while ``hold()`` is in force, so a test can
    publish during the gap."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._open = threading.Event()
        self._open.set()
        self.waiting = threading.Event()

    def hold(self) -> None:
        """Hold reconnects until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        """Let the held reconnect go."""
        self._open.set()

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.waiting.set()
        self._open.wait(30)


class Subscriber:
    """An httpx-sse stream in a thread; every event lands in a queue."""

    def __init__(self, url: str, credential: Optional[str] = None) -> None:
        self.events: "queue.Queue[ServerSentEvent]" = queue.Queue()
        self.opened = threading.Event()
        self.status = 0
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=60))

        def run() -> None:
            headers = {"Authorization": f"Bearer {credential}"} if credential else {}
            try:
                with connect_sse(self.client, "GET", url, headers=headers) as source:
                    self.status = source.response.status_code
                    self.opened.set()
                    if self.status != 200:
                        return
                    for sse in source.iter_sse():
                        if sse.data:  # drops httpx-sse's empty keepalive events
                            self.events.put(sse)
            except (httpx.TransportError, RuntimeError):
                pass  # closed by the test

        threading.Thread(target=run, daemon=True).start()
        assert self.opened.wait(20), "no answer to the stream request"
        assert self.status == 200, f"the stream was refused: {self.status}"

    def close(self) -> None:
        self.client.close()
