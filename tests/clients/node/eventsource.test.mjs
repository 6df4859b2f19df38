// npm `eventsource` (the WHATWG EventSource for Node) against a real hub.
// Its `fetch` option is the secure way in: a fresh SSE token per connect in
// the Authorization header, so the library's own reconnect resumes with
// `Last-Event-ID` and never reuses a spent token. Without an application
// handler it reconnects after `revoked` too; the hub then refuses it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { startHerald, api, mintToken, publish, kick, revoke, connectionsOf, until, sleep, gate } from './harness.mjs';

let hub;
before(async () => {
  hub = await startHerald();
});
after(() => hub?.stop());

/**
 * Opens an EventSource the way docs/clients.md shows: `mint()` runs before
 * every connect and its token goes in the Authorization header. Records
 * what each request carried and, for refusals, the hub's error code.
 * `hold(n)` may return a promise that delays connect number `n`.
 */
function open(url, { mint, hold = () => undefined } = {}) {
  const requests = [];
  const got = [];
  const errors = [];
  const es = new EventSource(url, {
    fetch: async (input, init) => {
      const n = requests.length + 1;
      const record = { url: String(input), lastEventId: init.headers['Last-Event-ID'] ?? null, status: null, code: null };
      requests.push(record);
      await hold(n);
      // A mint the hub refused comes back as its answer: handing that to
      // the library is what ends it (docs/clients.md).
      const minted = mint ? await mint() : null;
      const res =
        minted instanceof Response
          ? minted
          : await fetch(input, { ...init, headers: minted ? { ...init.headers, authorization: `Bearer ${minted}` } : init.headers });
      record.status = res.status;
      if (res.status !== 200) record.code = JSON.parse(await res.clone().text()).error.code;
      return res;
    },
  });
  es.addEventListener('message', (e) => got.push({ id: e.lastEventId, n: JSON.parse(e.data).n }));
  es.addEventListener('error', (e) => errors.push({ code: e.code, state: es.readyState }));
  return { es, requests, got, errors };
}

test('a ?token= URL opens once: the library reconnects with the spent URL and the hub refuses it (401 token_used)', async () => {
  const token = await mintToken(hub.base, { sub: 'es-url', sid: 'tab', subscribe: ['es.url'] });
  const c = open(`${hub.base}/v1/events?topic=es.url&token=${token}`);
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'es-url')).length === 1);
    const first = await publish(hub.base, { topic: 'es.url', audience: 'public', data: { n: 1 }, retry: 100 });
    await until('event 1', () => c.got.length === 1);
    assert.deepEqual(c.got, [{ id: first.id, n: 1 }]);

    assert.equal(await kick(hub.base, 'es-url'), 1);
    await until('the refused reconnect', () => c.requests.length === 2 && c.requests[1].status !== null);
    assert.equal(c.requests[1].status, 401);
    assert.equal(c.requests[1].code, 'token_used');
    assert.equal(c.requests[1].lastEventId, first.id, 'the library did resume with Last-Event-ID');
    await until('the client to end', () => c.es.readyState === EventSource.CLOSED);
    assert.equal(c.errors.at(-1).code, 401);
  } finally {
    c.es.close();
  }
});

test('a fresh token per connect in the Authorization header resumes across a cut: every event exactly once', async () => {
  const mint = () => mintToken(hub.base, { sub: 'es-header', sid: 'tab', subscribe: ['es.resume'] });
  const reconnect = gate();
  const c = open(`${hub.base}/v1/events?topic=es.resume`, { mint, hold: (n) => (n === 2 ? reconnect.opened : undefined) });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'es-header')).length === 1);
    const sent = [];
    const send = async (n) => sent.push({ id: (await publish(hub.base, { topic: 'es.resume', audience: 'public', data: { n }, retry: 100 })).id, n });
    await send(1);
    await send(2);
    await until('events 1 and 2', () => c.got.length === 2);

    // The hub cuts the stream; two events are published while the client is away.
    assert.equal(await kick(hub.base, 'es-header'), 1);
    await until('the reconnect attempt', () => c.requests.length === 2);
    await send(3);
    await send(4);
    reconnect.open();
    await until('the resumed stream', async () => (await connectionsOf(hub.base, 'es-header')).length === 1);
    await send(5);
    await until('event 5', () => c.got.some((e) => e.n === 5));

    assert.deepEqual(c.got, sent, 'no gap, no duplicate');
    assert.equal(c.requests[1].lastEventId, sent[1].id, 'resumed after the last event received');
    assert.equal(c.requests[1].status, 200);
    assert.ok(c.requests.every((r) => !r.url.includes('token=')), 'no credential in any URL');
  } finally {
    c.es.close();
  }
});

test("the hub's retry field sets the library's reconnect delay", async () => {
  const mint = () => mintToken(hub.base, { sub: 'es-retry', subscribe: ['es.retry'] });
  const c = open(`${hub.base}/v1/events?topic=es.retry`, { mint });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'es-retry')).length === 1);
    await publish(hub.base, { topic: 'es.retry', audience: 'public', data: { n: 1 }, retry: 600000 });
    await until('event 1', () => c.got.length === 1);
    assert.equal(await kick(hub.base, 'es-retry'), 1);
    await until('the library to notice the cut', () => c.errors.length === 1);
    // The library's own default is 3 s; with the hub's 10 minutes it waits.
    await sleep(4500);
    assert.equal(c.requests.length, 1, 'no reconnect before the retry delay');
    assert.equal(c.es.readyState, EventSource.CONNECTING);
  } finally {
    c.es.close();
  }
});

test('an application handler stops on revoked: nothing reconnects', async () => {
  const mint = () => mintToken(hub.base, { sub: 'es-stop', sid: 'tab-1', subscribe: ['es.stop'] });
  const c = open(`${hub.base}/v1/events?topic=es.stop`, { mint });
  const reasons = [];
  // The handler docs/clients.md shows: access ended, never come back.
  c.es.addEventListener('revoked', (e) => {
    reasons.push(JSON.parse(e.data).reason);
    c.es.close();
  });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'es-stop')).length === 1);
    await publish(hub.base, { topic: 'es.stop', audience: 'public', data: { n: 1 }, retry: 100 });
    await until('event 1', () => c.got.length === 1);

    const answer = await revoke(hub.base, { type: 'session_revoke', account: 'es-stop', session: 'tab-1' });
    assert.equal(answer.closed, 1);
    await until('revoked', () => reasons.length === 1);
    assert.deepEqual(reasons, ['session_revoke']);
    assert.equal(c.es.readyState, EventSource.CLOSED);
    await sleep(500); // several times the 100 ms retry
    assert.equal(c.requests.length, 1, 'no reconnect after revoked');
  } finally {
    c.es.close();
  }
});

test('without a handler the library reconnects after revoked: the mint is refused and the client ends', async () => {
  // A session revocation refuses every credential bound to the session,
  // new ones included, so the backend's mint for the reconnect is refused
  // (403 subject_revoked) and the hook hands that answer to the library.
  const claims = { ttl: 300, sub: 'es-nohandler', sid: 'tab-1', subscribe: ['es.nohandler'] };
  const mint = async () => {
    const answer = await api(hub.base, '/v1/tokens', { method: 'POST', body: claims });
    if (answer.status === 200) return answer.body.token;
    return new Response(JSON.stringify(answer.body), { status: answer.status, headers: { 'content-type': 'application/json' } });
  };
  const c = open(`${hub.base}/v1/events?topic=es.nohandler`, { mint });
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'es-nohandler')).length === 1);
    await publish(hub.base, { topic: 'es.nohandler', audience: 'public', data: { n: 1 }, retry: 100 });
    await until('event 1', () => c.got.length === 1);

    await revoke(hub.base, { type: 'session_revoke', account: 'es-nohandler', session: 'tab-1' });
    await until('the client to end', () => c.es.readyState === EventSource.CLOSED);
    assert.equal(c.requests.length, 2, 'the library tried once more');
    assert.equal(c.requests[1].status, 403);
    assert.equal(c.requests[1].code, 'subject_revoked');
    assert.equal(c.errors.at(-1).code, 403, 'the error event carries the status');
    await sleep(500); // several times the 100 ms retry
    assert.equal(c.requests.length, 2, 'nothing tried again');
    assert.deepEqual(await connectionsOf(hub.base, 'es-nohandler'), []);
  } finally {
    c.es.close();
  }
});
