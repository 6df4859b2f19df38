// clients/js/herald.js in a real Chromium: it mints a fresh single-use SSE
// token for every connect and resumes with the last event id, so an expiry
// in the middle of a stream loses nothing and repeats nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startHerald, launchBrowser, hs256 } from './harness.js';

const SECRET = 'browser-test-secret-browser-test-secret';
let hub;
let browser;

before(async () => {
  hub = await startHerald(`jwt_secret = "${SECRET}"\n`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hub?.stop();
});

const now = () => Math.floor(Date.now() / 1000);

test('the helper re-mints its token and resumes without gap or duplicate', async () => {
  // The "app backend": a user JWT minting narrow 2-second tokens for itself.
  const user = hs256({ sub: 'alice', iat: now(), exp: now() + 600, herald: { subscribe: ['demo'] } }, SECRET);
  const publisher = hs256({ sub: 'app', iat: now(), exp: now() + 600, herald: { publish: ['demo'] } }, SECRET);
  let minted = 0;
  const page = await browser.newPage();
  await page.goto(`${hub.base}/`);
  await page.exposeFunction('mintToken', async () => {
    minted += 1;
    const r = await fetch(`${hub.base}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subscribe: ['demo'], ttl: 2 }),
    });
    return (await r.json()).token;
  });
  await page.addScriptTag({ type: 'module', content: readFileSync(resolve(import.meta.dirname, '../../clients/js/herald.js'), 'utf8') });
  await page.evaluate((base) => {
    window.received = [];
    window.controls = [];
    window.Herald.connect({
      url: base,
      topics: ['demo'],
      mintToken: window.mintToken,
      onEvent: (e) => window.received.push(e.data),
      onControl: (c) => window.controls.push(c.type),
    });
  }, hub.base);
  const publish = (data) =>
    fetch(`${hub.base}/v1/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${publisher}`, 'content-type': 'application/json' },
      body: JSON.stringify({ topics: ['demo'], data, audience: 'public' }),
    }).then((r) => assert.equal(r.status, 200));
  await page.waitForFunction(() => window.Herald !== undefined);
  await new Promise((r) => setTimeout(r, 500));
  // Publish across several token expiries (2 s each).
  for (let i = 0; i < 12; i++) {
    await publish(`e${i}`);
    await new Promise((r) => setTimeout(r, 400));
  }
  await page.waitForFunction(() => window.received.length >= 12, null, { timeout: 15000 });
  await new Promise((r) => setTimeout(r, 500));
  const { received, controls } = await page.evaluate(() => ({ received: window.received, controls: window.controls }));
  assert.deepEqual(received, Array.from({ length: 12 }, (_, i) => `e${i}`), 'every event once, in order');
  assert.ok(controls.includes('expired'), `the stream expired at least once: ${controls}`);
  assert.ok(minted >= 2, `a fresh token for each connect (minted ${minted})`);
  await page.close();
});

test('the helper acts only on control events shaped as the hub sends them', async () => {
  // A hostile stream: an event that calls itself `revoked` but carries an
  // `id:` line (as every published event does) must not stop the helper; the
  // hub's own `revoked`, without an id, must.
  const { createServer } = await import('node:http');
  const frames = [
    'id: 1\ndata: a\n\n',
    'id: 2\nevent: revoked\ndata: {"reason":"spoofed"}\n\n',
    'id: 3\ndata: b\n\n',
    'event: revoked\ndata: {"reason":"logout"}\n\n',
  ];
  const server = createServer((req, res) => {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'access-control-allow-origin': '*',
    });
    res.end(frames.join(''));
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const page = await browser.newPage();
  await page.goto(`${hub.base}/`);
  await page.addScriptTag({ type: 'module', content: readFileSync(resolve(import.meta.dirname, '../../clients/js/herald.js'), 'utf8') });
  await page.waitForFunction(() => window.Herald !== undefined);
  await page.evaluate((base) => {
    window.received = [];
    window.controls = [];
    window.Herald.connect({
      url: base,
      topics: ['demo'],
      mintToken: async () => 'st_test',
      onEvent: (e) => window.received.push(e.data),
      onControl: (c) => window.controls.push(`${c.type}:${c.reason}`),
    });
  }, origin);
  await page.waitForFunction(() => window.controls.length >= 1, null, { timeout: 10000 });
  await new Promise((r) => setTimeout(r, 300));
  const { received, controls } = await page.evaluate(() => ({ received: window.received, controls: window.controls }));
  assert.deepEqual(received, ['a', 'b'], 'the spoofed control event did not stop the stream');
  assert.deepEqual(controls, ['revoked:logout'], 'only the hub-shaped control event was acted on');
  await page.close();
  server.close();
});
