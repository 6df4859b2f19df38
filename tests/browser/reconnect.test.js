// A plain `EventSource` (no helper library) opened with a single-use SSE
// token survives the hub cutting its stream and the hub restarting: its
// automatic reconnect reuses the spent token's URL together with the
// reconnect grant cookie the hub set on first use, and resumes with
// `Last-Event-ID`, without gap or duplicate. A revocation ends it for good.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startHerald, launchBrowser } from './harness.js';
import { userJwt, publish, adminApi } from './console-helpers.js';

const SECRET = 'reconnect-test-secret-reconnect-test-secret';
const KEY = 'hk_reconnect_admin_key_0123456789abcdef0123';
const sha = (k) => createHash('sha256').update(k).digest('hex');
const CONFIG =
  `jwt_secret = "${SECRET}"\n` +
  `[[api_keys]]\nid = "app"\nhash = "sha256:${sha(KEY)}"\nscopes = ["tokens", "admin", "revoke", "publish"]\n`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let hub;
let browser;

before(async () => {
  hub = await startHerald(CONFIG);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hub?.stop();
});

async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

test('a plain EventSource resumes across a kick and a restart, and stops on revoked', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${hub.base}/`);

  // The app's backend mints a single-use token for its user.
  const minted = await adminApi(hub.base, KEY, '/v1/tokens', {
    method: 'POST',
    body: JSON.stringify({ sub: 'alice', sid: 'tab-1', subscribe: ['demo'], ttl: 300 }),
  });
  assert.equal(minted.status, 200, JSON.stringify(minted.body));
  const url = `${hub.base}/v1/events?topic=demo&token=${minted.body.token}`;
  await page.evaluate((u) => {
    window.got = [];
    window.controls = [];
    window.opens = 0;
    const es = new EventSource(u);
    window.es = es;
    es.onopen = () => { window.opens += 1; };
    es.onmessage = (e) => window.got.push({ id: e.lastEventId, data: JSON.parse(e.data).n });
    for (const type of ['kicked', 'shutdown', 'revoked']) {
      es.addEventListener(type, () => window.controls.push(type));
    }
  }, url);
  const state = () => page.evaluate(() => ({ got: window.got, controls: window.controls, opens: window.opens, ready: window.es.readyState }));
  const send = (n) => publish(hub.base, KEY, { topic: 'demo', audience: 'public', data: { n } });

  await until('the stream to open', async () => (await state()).opens === 1);
  await send(1);
  await until('event 1', async () => (await state()).got.length === 1);

  // The hub cuts the stream; two events are published while it is away.
  const list = await adminApi(hub.base, KEY, '/v1/connections?account=alice');
  assert.equal(list.status, 200);
  const [conn] = list.body.connections;
  assert.ok(conn, 'the stream is listed');
  const kick = await adminApi(hub.base, KEY, `/v1/connections/${conn.id}`, { method: 'DELETE' });
  assert.ok([200, 204].includes(kick.status), `kicked: ${kick.status}`);
  await until('the kick to arrive', async () => (await state()).controls.includes('kicked'));
  await send(2);
  await send(3);
  await until('the reconnect after the kick', async () => (await state()).opens === 2);
  await until('events 2 and 3', async () => (await state()).got.length >= 3);

  // The hub restarts on the same address and data.
  await hub.terminate();
  hub = await startHerald(CONFIG, { dir: hub.dir, listen: new URL(hub.base).host });
  await send(4);
  await until('the reconnect after the restart', async () => (await state()).opens === 3, 30000);
  await until('event 4', async () => (await state()).got.length >= 4);

  let s = await state();
  assert.deepEqual(s.got.map((e) => e.data), [1, 2, 3, 4], 'no gap, no duplicate');
  assert.equal(new Set(s.got.map((e) => e.id)).size, 4, 'every id once');

  // The URL alone (a leaked log line) opens nothing: the token is spent.
  const leaked = await fetch(url);
  assert.equal(leaked.status, 401);
  assert.equal((await leaked.json()).error.code, 'token_used');
  // The grant cookie is not readable by the page's scripts.
  assert.equal(await page.evaluate(() => document.cookie), '');

  // A revocation closes the stream, and the reconnect is refused for good.
  const revoke = await adminApi(hub.base, KEY, '/v1/revocations', {
    method: 'POST',
    body: JSON.stringify({ type: 'session_revoke', account: 'alice', session: 'tab-1' }),
  });
  assert.equal(revoke.status, 200, JSON.stringify(revoke.body));
  await until('the revocation to arrive', async () => (await state()).controls.includes('revoked'));
  await until('EventSource to give up', async () => (await state()).ready === 2);
  await send(5);
  await sleep(500);
  s = await state();
  assert.deepEqual(s.got.map((e) => e.data), [1, 2, 3, 4], 'nothing after the revocation');
  assert.deepEqual(errors, []);
  await page.close();
});
