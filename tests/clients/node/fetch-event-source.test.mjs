// npm `@microsoft/fetch-event-source` against a real hub. It sends headers
// (a user JWT as `Authorization: Bearer`), resends `Last-Event-ID` by itself
// and honours `retry`, but it needs an application's callbacks to be right:
// `onclose` must throw to reconnect after the hub ends a stream, `onopen`
// must end on a 401/403, and `onmessage` must end on `revoked`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { startHerald, userJwt, publish, kick, revoke, connectionsOf, until, sleep, gate } from './harness.mjs';

// In Node the library reaches for browser globals: `window.setTimeout`
// (and `window.fetch` unless `fetch` is passed) and, when the stream ends,
// `document.removeEventListener` even with `openWhenHidden: true`.
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

let hub;
before(async () => {
  hub = await startHerald();
});
after(() => hub?.stop());

/** The stream ended for good: refused (401/403) or revoked. Never retried. */
class StreamEnded extends Error {
  constructor(message, { status = null, code = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The hub ended the stream (kicked, shutdown, expired, …): reconnect and resume. */
class Reconnect extends Error {}

/**
 * Follows a stream the way docs/clients.md shows. `handleRevoked: false`
 * leaves out the `revoked` check to show what the hub does without it.
 * Records each request (its `Last-Event-ID`, status, error code) and lets
 * `hold(n)` delay connect number `n`.
 */
function follow(url, credential, { handleRevoked = true, hold = () => undefined, signal } = {}) {
  const requests = [];
  const got = [];
  const done = fetchEventSource(url, {
    headers: { authorization: `Bearer ${credential}` },
    openWhenHidden: true,
    signal,
    fetch: async (input, init) => {
      const record = { lastEventId: init.headers['last-event-id'] ?? null, status: null, code: null };
      requests.push(record);
      await hold(requests.length);
      const res = await fetch(input, init);
      record.status = res.status;
      return res;
    },
    async onopen(res) {
      if (res.ok && res.headers.get('content-type')?.startsWith('text/event-stream')) return;
      const code = (await res.json().catch(() => null))?.error?.code ?? null;
      requests.at(-1).code = code;
      if (res.status === 401 || res.status === 403) {
        throw new StreamEnded(`refused: ${res.status} ${code}`, { status: res.status, code });
      }
      throw new Reconnect(`${res.status} ${code}`); // 429, 503: retry after the hub's delay
    },
    onmessage(msg) {
      // The library hands over comment blocks (`: connected`, `: keepalive`)
      // as empty messages; every event of the hub has an id or a type.
      if (msg.id === '' && msg.event === '') return;
      if (handleRevoked && msg.event === 'revoked') throw new StreamEnded('revoked', { code: JSON.parse(msg.data).reason });
      if (msg.event === '' || msg.event === 'message') got.push({ id: msg.id, n: JSON.parse(msg.data).n });
    },
    onclose() {
      throw new Reconnect('the hub ended the stream');
    },
    onerror(err) {
      if (err instanceof StreamEnded) throw err; // stops the library: the promise rejects
      return undefined; // anything else: retry after the hub's `retry` (default 1 s)
    },
  });
  done.catch(() => {}); // awaited by the tests, possibly after it settled
  return { done, requests, got };
}

const jwtFor = (sub, topic) => userJwt({ sub, sid: 'tab-1', herald: { subscribe: [topic] } });

test('a JWT in the Authorization header; resumes across a cut with Last-Event-ID: every event exactly once', async () => {
  const ctrl = new AbortController();
  const reconnect = gate();
  const c = follow(`${hub.base}/v1/events?topic=fes.resume`, jwtFor('fes-resume', 'fes.resume'), {
    signal: ctrl.signal,
    hold: (n) => (n === 2 ? reconnect.opened : undefined),
  });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'fes-resume')).length === 1);
    const sent = [];
    const send = async (n) => sent.push({ id: (await publish(hub.base, { topic: 'fes.resume', audience: 'public', data: { n }, retry: 100 })).id, n });
    await send(1);
    await send(2);
    await until('events 1 and 2', () => c.got.length === 2);

    assert.equal(await kick(hub.base, 'fes-resume'), 1);
    await until('the reconnect attempt', () => c.requests.length === 2);
    await send(3);
    await send(4);
    reconnect.open();
    await until('the resumed stream', async () => (await connectionsOf(hub.base, 'fes-resume')).length === 1);
    await send(5);
    await until('event 5', () => c.got.some((e) => e.n === 5));

    assert.deepEqual(c.got, sent, 'no gap, no duplicate');
    assert.equal(c.requests[1].lastEventId, sent[1].id);
    assert.equal(c.requests[1].status, 200);
  } finally {
    ctrl.abort();
    await c.done;
  }
});

test("the hub's retry field sets the library's reconnect delay", async () => {
  const ctrl = new AbortController();
  const c = follow(`${hub.base}/v1/events?topic=fes.retry`, jwtFor('fes-retry', 'fes.retry'), { signal: ctrl.signal });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'fes-retry')).length === 1);
    await publish(hub.base, { topic: 'fes.retry', audience: 'public', data: { n: 1 }, retry: 600000 });
    await until('event 1', () => c.got.length === 1);
    assert.equal(await kick(hub.base, 'fes-retry'), 1);
    await until('the cut', async () => (await connectionsOf(hub.base, 'fes-retry')).length === 0);
    await sleep(3000); // the library's own default is 1 s
    assert.equal(c.requests.length, 1, 'no reconnect before the 10-minute retry');
  } finally {
    ctrl.abort();
    await c.done;
  }
});

test('the application stops on revoked: the promise rejects and nothing reconnects', async () => {
  const ctrl = new AbortController();
  const c = follow(`${hub.base}/v1/events?topic=fes.stop`, jwtFor('fes-stop', 'fes.stop'), { signal: ctrl.signal });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'fes-stop')).length === 1);
    await publish(hub.base, { topic: 'fes.stop', audience: 'public', data: { n: 1 }, retry: 100 });
    await until('event 1', () => c.got.length === 1);

    const answer = await revoke(hub.base, { type: 'logout', account: 'fes-stop' });
    assert.equal(answer.closed, 1);
    await assert.rejects(c.done, (err) => err instanceof StreamEnded && err.message === 'revoked' && err.code === 'logout');
    await sleep(500);
    assert.equal(c.requests.length, 1, 'no reconnect after revoked');
  } finally {
    ctrl.abort();
  }
});

test('without a revoked handler it reconnects: the hub refuses the revoked JWT (401) and onopen ends the client', async () => {
  const ctrl = new AbortController();
  const c = follow(`${hub.base}/v1/events?topic=fes.refused`, jwtFor('fes-refused', 'fes.refused'), {
    handleRevoked: false,
    signal: ctrl.signal,
  });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'fes-refused')).length === 1);
    await publish(hub.base, { topic: 'fes.refused', audience: 'public', data: { n: 1 }, retry: 100 });
    await until('event 1', () => c.got.length === 1);

    await revoke(hub.base, { type: 'logout', account: 'fes-refused' });
    await assert.rejects(c.done, (err) => err instanceof StreamEnded && err.status === 401 && err.code === 'credential_revoked');
    assert.equal(c.requests.length, 2);
    assert.equal(c.requests[1].status, 401);
  } finally {
    ctrl.abort();
  }
});

test('the library alone does not resume: when the hub ends a stream it just resolves', async () => {
  const requests = [];
  const messages = [];
  const ctrl = new AbortController();
  const done = fetchEventSource(`${hub.base}/v1/events?topic=fes.alone`, {
    headers: { authorization: `Bearer ${jwtFor('fes-alone', 'fes.alone')}` },
    openWhenHidden: true,
    signal: ctrl.signal,
    onmessage: (msg) => messages.push(msg),
    fetch: (input, init) => {
      requests.push(input);
      return fetch(input, init);
    },
  });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'fes-alone')).length === 1);
    // The hub's `: connected` comment, handed over as an empty message.
    await until('the first message', () => messages.length >= 1);
    assert.deepEqual({ ...messages[0] }, { data: '', event: '', id: '', retry: undefined });
    assert.equal(await kick(hub.base, 'fes-alone'), 1);
    await done; // resolves: no error, no reconnect (hence `onclose` throwing above)
    await sleep(1500); // past its 1 s default retry
    assert.equal(requests.length, 1);
  } finally {
    ctrl.abort();
  }
});

test('the library alone retries a refused connection forever: onopen must end it', async () => {
  const statuses = [];
  const ctrl = new AbortController();
  const done = fetchEventSource(`${hub.base}/v1/events?topic=fes.forever`, {
    headers: { authorization: 'Bearer not-a-valid-jwt' },
    openWhenHidden: true,
    signal: ctrl.signal,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      statuses.push(res.status);
      return res;
    },
  });
  try {
    // Its default onopen only checks the content type, and without an
    // onerror every error is retried after 1 s.
    await until('three refused attempts', () => statuses.length >= 3);
    assert.deepEqual(statuses.slice(0, 3), [401, 401, 401]);
  } finally {
    ctrl.abort();
    await done;
  }
});
