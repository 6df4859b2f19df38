// The TypeScript publisher helper (clients/ts, installed from its path as
// `herald-client`) against a real hub, with `eventsource` as the subscriber.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { Herald, HeraldError } from 'herald-client';
import { startHerald, KEY, userJwt, connectionsOf, until } from './harness.mjs';

let hub;
let herald;
before(async () => {
  hub = await startHerald();
  herald = new Herald({ url: hub.base, credential: KEY });
});
after(() => hub?.stop());

/** Subscribes with a freshly minted token in the header; collects every event by type. */
async function subscribe(sub, topic, types = []) {
  const got = [];
  const es = new EventSource(`${hub.base}/v1/events?topic=${encodeURIComponent(topic)}`, {
    fetch: async (input, init) => {
      const { token } = await herald.mintToken({ sub, sid: 'tab-1', subscribe: [topic] });
      return fetch(input, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
    },
  });
  for (const type of ['message', 'revoked', ...types]) {
    es.addEventListener(type, (e) => got.push({ type, id: e.lastEventId, data: e.data }));
  }
  await until('the stream', async () => (await connectionsOf(hub.base, sub)).length === 1);
  return { es, got };
}

/** Runs `fn` and returns the HeraldError it must throw. */
async function refusal(fn) {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof HeraldError, `a HeraldError, got ${err}`);
    return err;
  }
  assert.fail('expected a refusal');
}

test('publish: a subscriber receives the event with its type, client id and data', async () => {
  const s = await subscribe('ts-pub', 'ts.orders.42', ['order.updated']);
  try {
    const answer = await herald.publish({
      topics: ['ts.orders.42'],
      type: 'order.updated',
      id: 'ord-42-v1',
      audience: { users: ['ts-pub'] },
      data: { status: 'shipped' },
    });
    assert.equal(answer.id, 'ord-42-v1');
    assert.equal(typeof answer.seq, 'number');
    await until('the event', () => s.got.length === 1);
    assert.deepEqual(s.got, [{ type: 'order.updated', id: 'ord-42-v1', data: '{"status":"shipped"}' }]);
  } finally {
    s.es.close();
  }
});

test('publishBatch: every event arrives, in order, with the ids the hub answered', async () => {
  const s = await subscribe('ts-batch', 'ts.batch');
  try {
    const answers = await herald.publishBatch(
      [1, 2, 3].map((n) => ({ topic: 'ts.batch', audience: 'public', data: `line ${n}` })),
    );
    assert.equal(answers.length, 3);
    assert.deepEqual(answers.map((a) => a.seq), [answers[0].seq, answers[0].seq + 1, answers[0].seq + 2]);
    await until('three events', () => s.got.length === 3);
    assert.deepEqual(s.got, answers.map((a, i) => ({ type: 'message', id: a.id, data: `line ${i + 1}` })));
  } finally {
    s.es.close();
  }
});

test('mintToken: the minted token opens a stream once', async () => {
  const minted = await herald.mintToken({ sub: 'ts-mint', sid: 'tab-1', subscribe: ['ts.mint'], ttl: 60 });
  assert.match(minted.token, /^st_/);
  assert.ok(minted.expires_in > 0 && minted.expires_in <= 60);
  assert.ok(minted.expires_at >= Math.floor(Date.now() / 1000));

  const url = `${hub.base}/v1/events?topic=ts.mint&token=${minted.token}`;
  const es = new EventSource(url);
  const got = [];
  es.addEventListener('message', (e) => got.push(e.data));
  try {
    await until('the stream', async () => (await connectionsOf(hub.base, 'ts-mint')).length === 1);
    await herald.publish({ topic: 'ts.mint', audience: 'public', data: 'hello' });
    await until('the event', () => got.length === 1);
    assert.deepEqual(got, ['hello']);
    const again = await fetch(url);
    assert.equal(again.status, 401, 'single-use');
    assert.equal((await again.json()).error.code, 'token_used');
  } finally {
    es.close();
  }
});

test('revoke closes a live stream with event: revoked', async () => {
  const s = await subscribe('ts-revoke', 'ts.revoke');
  try {
    const result = await herald.revoke({ type: 'session_revoke', account: 'ts-revoke', session: 'tab-1' });
    assert.deepEqual(result, { closed: 1, applied: true });
    await until('revoked', () => s.got.some((e) => e.type === 'revoked'));
    assert.deepEqual(JSON.parse(s.got.find((e) => e.type === 'revoked').data), { reason: 'session_revoke' });
  } finally {
    s.es.close();
  }
});

test("forwardAuditEvent: a failed application event revokes nothing", async () => {
  const result = await herald.forwardAuditEvent({ type: 'logout', outcome: 'failure', account_id: 'ts-audit' });
  assert.deepEqual(result, { closed: 0, applied: false });
});

test('invalidate reaches $tags subscribers', async () => {
  const s = await subscribe('ts-tags', '$tags', ['invalidate']);
  try {
    const answer = await herald.invalidate({ tags: [['todos'], ['users', 42]], audience: { users: ['ts-tags'] } });
    assert.equal(typeof answer.seq, 'number');
    await until('the invalidation', () => s.got.length === 1);
    assert.equal(s.got[0].type, 'invalidate');
    assert.deepEqual(JSON.parse(s.got[0].data), { tags: [['todos'], ['users', 42]] });
  } finally {
    s.es.close();
  }
});

test("errors carry the hub's status, error.code and message", async () => {
  const missing = await refusal(() => herald.publish({ topic: 'ts.err', data: 'x' }));
  assert.equal(missing.status, 400);
  assert.equal(missing.code, 'audience_required');
  assert.ok(missing.message.length > 0);

  const huge = await refusal(() => herald.publish({ topic: 'ts.err', audience: 'public', data: 'x'.repeat(1024 * 1024 + 1) }));
  assert.equal(huge.status, 413);
  assert.equal(huge.code, 'event_too_large');

  await herald.publish({ topic: 'ts.err', audience: 'public', data: 'x', id: 'ts-dup' });
  const dup = await refusal(() => herald.publish({ topic: 'ts.err', audience: 'public', data: 'x', id: 'ts-dup' }));
  assert.equal(dup.status, 409);
  assert.equal(dup.code, 'duplicate_id');

  const wrongKey = new Herald({ url: hub.base, credential: 'hk_not_a_key_of_this_hub_0123456789abcdef' });
  const unknown = await refusal(() => wrongKey.publish({ topic: 'ts.err', audience: 'public', data: 'x' }));
  assert.equal(unknown.status, 401);
  assert.equal(unknown.code, 'invalid_token');

  // A user JWT may only narrow itself: asking for more is refused.
  const user = new Herald({ url: hub.base, credential: () => userJwt({ sub: 'ts-user', herald: { subscribe: ['ts.user'] } }) });
  const widen = await refusal(() => user.mintToken({ subscribe: ['ts.other'] }));
  assert.equal(widen.status, 403);
  assert.equal(widen.code, 'token_widening_forbidden');
  assert.match((await user.mintToken({ subscribe: ['ts.user'] })).token, /^st_/);

  const down = new Herald({ url: 'http://127.0.0.1:9', credential: KEY });
  const network = await refusal(() => down.publish({ topic: 'ts.err', audience: 'public', data: 'x' }));
  assert.equal(network.status, 0);
  assert.equal(network.code, 'network_error');
});
