// A browser's own EventSource against Herald's Mercure endpoint, from a
// page the hub serves: the way existing Mercure front ends use a hub.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, launchBrowser, hs256 } from './harness.js';

const KEY = '!ChangeThisMercureHubJWTSecretKey!';
let hub;
let browser;

before(async () => {
  hub = await startHerald(`[mercure]\nanonymous = true\njwt_key = "${KEY}"\n`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hub?.stop();
});

test('an anonymous EventSource receives public updates but never private ones', async () => {
  const page = await browser.newPage();
  await page.goto(`${hub.base}/`);
  const publisher = hs256({ exp: Math.floor(Date.now() / 1000) + 3600, mercure: { publish: ['*'] } }, KEY);
  const topic = `https://example.net/books/${Date.now()}`;
  const result = await page.evaluate(
    async ({ topic, publisher }) => {
      const url = new URL('/.well-known/mercure', window.origin);
      url.searchParams.append('topic', 'https://example.net/books/{id}');
      const es = new EventSource(url);
      const seen = [];
      const fence = new Promise((resolve) => {
        es.onmessage = (e) => {
          seen.push({ id: e.lastEventId, data: e.data, type: e.type });
          if (e.data === 'fence') resolve();
        };
      });
      await new Promise((resolve, reject) => {
        es.onopen = resolve;
        es.onerror = () => reject(new Error('EventSource failed to open'));
      });
      const publish = async (fields) => {
        const body = new URLSearchParams({ topic, ...fields });
        const r = await fetch('/.well-known/mercure', {
          method: 'POST',
          headers: { Authorization: `Bearer ${publisher}` },
          body,
        });
        return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
      };
      const first = await publish({ id: 'book-1', data: 'line one\n\nline three' });
      const secret = await publish({ data: 'secret', private: 'on' });
      const last = await publish({ data: 'fence' });
      await Promise.race([fence, new Promise((r) => setTimeout(r, 5000))]);
      es.close();
      return { first, secret, last, seen };
    },
    { topic, publisher },
  );
  assert.equal(result.first.status, 200);
  assert.match(result.first.type, /^text\/plain/);
  assert.equal(result.first.body, 'book-1', 'client ids are honoured');
  assert.equal(result.secret.status, 200);
  assert.deepEqual(
    result.seen.map((e) => e.data),
    ['line one\n\nline three', 'fence'],
    'blank lines survive and the private update never arrives',
  );
  assert.equal(result.seen[0].id, 'book-1');
  await page.close();
});

test('a subscriber whose token covers the topic receives private updates', async () => {
  const page = await browser.newPage();
  await page.goto(`${hub.base}/`);
  const topic = `https://example.net/orders/${Date.now()}`;
  const publisher = hs256({ exp: Math.floor(Date.now() / 1000) + 3600, mercure: { publish: [topic] } }, KEY);
  const subscriber = hs256({ exp: Math.floor(Date.now() / 1000) + 3600, mercure: { subscribe: ['https://example.net/orders/{id}'] } }, KEY);
  const seen = await page.evaluate(
    async ({ topic, publisher, subscriber }) => {
      document.cookie = `mercureAuthorization=${subscriber}; path=/.well-known/mercure`;
      const url = new URL('/.well-known/mercure', window.origin);
      url.searchParams.append('topic', topic);
      const es = new EventSource(url, { withCredentials: true });
      const got = [];
      const done = new Promise((resolve) => {
        es.onmessage = (e) => {
          got.push(e.data);
          if (got.length === 1) resolve();
        };
      });
      await new Promise((resolve) => (es.onopen = resolve));
      await fetch('/.well-known/mercure', {
        method: 'POST',
        headers: { Authorization: `Bearer ${publisher}` },
        body: new URLSearchParams({ topic, data: 'for your eyes', private: '' }),
      });
      await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
      es.close();
      return got;
    },
    { topic, publisher, subscriber },
  );
  assert.deepEqual(seen, ['for your eyes']);
  await page.close();
});
