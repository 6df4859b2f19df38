// Helpers for the console tests: subscriber streams opened from Node (as a
// real client would, the credential in the Authorization header), publishing,
// and signing the console in.
import assert from 'node:assert/strict';
import { hs256 } from './harness.js';

const now = () => Math.floor(Date.now() / 1000);

/** A user JWT for `sub` (claims: tenant, sid, roles, ...), subscribing to `subscribe`. */
export function userJwt(secret, { sub, tenant, sid, roles, subscribe = ['demo'] }) {
  const claims = { sub, iat: now(), exp: now() + 600, herald: { subscribe } };
  if (tenant) claims.tenant = tenant;
  if (sid) claims.sid = sid;
  if (roles) claims.roles = roles;
  return hs256(claims, secret);
}

/**
 * Opens `GET /v1/events` and keeps reading it. Resolves once `: connected`
 * arrived. `text()` is everything received so far, `waitFor(re)` waits for a
 * match, `ended` resolves when the hub closes the stream.
 */
export async function openStream(base, credential, topics = ['demo']) {
  const abort = new AbortController();
  const qs = topics.map((t) => `topic=${encodeURIComponent(t)}`).join('&');
  const r = await fetch(`${base}/v1/events?${qs}`, {
    headers: { authorization: `Bearer ${credential}` },
    signal: abort.signal,
  });
  assert.equal(r.status, 200, `stream opened: ${r.status} ${r.status === 200 ? '' : await r.text()}`);
  let buf = '';
  let done = false;
  const waiters = new Set();
  const wake = () => { for (const w of waiters) w(); };
  const decoder = new TextDecoder();
  const ended = (async () => {
    try {
      for await (const chunk of r.body) {
        buf += decoder.decode(chunk, { stream: true });
        wake();
      }
    } catch {
      // aborted by close()
    }
    done = true;
    wake();
  })();
  const stream = {
    connectedAt: 0,
    text: () => buf,
    isEnded: () => done,
    ended,
    close: () => abort.abort(),
    /** Waits until the received text matches `re` (rejects after `ms`). */
    waitFor(re, ms = 5000) {
      return new Promise((ok, fail) => {
        const check = () => {
          if (re.test(buf)) { waiters.delete(check); clearTimeout(timer); ok(buf); }
          else if (done) { waiters.delete(check); clearTimeout(timer); fail(new Error(`stream ended without ${re}: ${buf}`)); }
        };
        const timer = setTimeout(() => { waiters.delete(check); fail(new Error(`no ${re} within ${ms} ms: ${buf}`)); }, ms);
        waiters.add(check);
        check();
      });
    },
  };
  await stream.waitFor(/: connected/);
  stream.connectedAt = Date.now();
  return stream;
}

/** POST /v1/publish with `credential`; asserts success. */
export async function publish(base, credential, event) {
  const r = await fetch(`${base}/v1/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    body: JSON.stringify(event),
  });
  assert.equal(r.status, 200, `published: ${await r.clone().text()}`);
  return r.json();
}

/** Any admin API call from Node. */
export async function adminApi(base, credential, path, init = {}) {
  const r = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Opens the console and signs in; resolves once the app shows. */
export async function signIn(page, base, credential) {
  if (!page.url().startsWith(`${base}/admin/`)) await page.goto(`${base}/admin/`);
  await page.fill('#credential', credential);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#app:not([hidden])', { timeout: 10000 });
}

/** Clicks a nav entry and waits for its view. */
export async function showView(page, view) {
  await page.click(`nav [data-view="${view}"]`);
  await page.waitForSelector(`#view-${view}:not([hidden])`, { timeout: 5000 });
}

/** The number shown in `sel` (NaN until the first poll). */
export function numberIn(page, sel) {
  return page.$eval(sel, (n) => Number(n.textContent));
}

/** Waits until the number in `sel` satisfies `min` (>=), within `ms`. */
export async function waitNumberAtLeast(page, sel, min, ms = 8000) {
  await page.waitForFunction(
    ([s, m]) => Number(document.querySelector(s)?.textContent) >= m,
    [sel, min],
    { timeout: ms },
  ).catch(async (e) => {
    throw new Error(`${sel} did not reach ${min} (shows ${await page.$eval(sel, (n) => n.textContent)}): ${e.message}`);
  });
}

/** Texts of a column (by header index) of the visible rows of a table body. */
export function columnTexts(page, bodySel, index) {
  return page.$$eval(`${bodySel} tr[data-id]`, (trs, i) => trs.map((tr) => tr.children[i].textContent), index);
}
