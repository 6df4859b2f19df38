// The operator console (/admin/) in a real Chromium against a real hub:
// overview numbers, the live streams table and cutting a stream, audit
// filters and paging, a revocation previewed then applied, a tenant admin's
// confinement, the credential's handling, keyboard use and a narrow screen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { startHerald, launchBrowser, hs256 } from './harness.js';
import {
  userJwt, openStream, publish, adminApi, signIn, showView, numberIn, waitNumberAtLeast, columnTexts,
} from './console-helpers.js';

const SECRET = 'console-test-secret-console-test-secret';
const HUB_KEY = 'hk_console_hub_admin_key_0123456789abcdef';
const ACME_KEY = 'hk_console_acme_admin_key_0123456789abcdef';
const SCOPES = '["tokens", "admin", "revoke", "publish"]';
const SHOTS = resolve(import.meta.dirname, '../../target/browser-screenshots');
const sha = (k) => createHash('sha256').update(k).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Column indexes of the two tables.
const S = { id: 0, tenant: 1, account: 2, session: 3 };
const A = { kind: 1, tenant: 2, account: 3 };

let hub;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  hub = await startHerald(
    `jwt_secret = "${SECRET}"\nstore = "memory"\n` +
      `[[api_keys]]\nid = "ops"\nhash = "sha256:${sha(HUB_KEY)}"\nscopes = ${SCOPES}\n` +
      `[[api_keys]]\nid = "acme-ops"\nhash = "sha256:${sha(ACME_KEY)}"\nscopes = ${SCOPES}\ntenant = "acme"\n`,
  );
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hub?.stop();
});

/** A fresh page that fails the test on any script error or CSP violation. */
async function newPage(viewport = { width: 1280, height: 900 }) {
  const page = await browser.newPage({ viewport });
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) page.problems.push(m.text());
  });
  return page;
}

async function closePage(page) {
  const problems = page.problems;
  await page.close();
  assert.deepEqual(problems, [], 'no script error and no CSP violation');
}

const shot = (page, name) => page.screenshot({ path: resolve(SHOTS, `${name}.png`), fullPage: true });

/** Waits until some row of `body` has `text` in column `col`. */
const waitRow = (page, body, col, text, timeout = 5000) =>
  page.waitForFunction(
    ([b, c, t]) => [...document.querySelectorAll(`${b} tr[data-id]`)].some((tr) => tr.children[c].textContent === t),
    [body, col, text],
    { timeout },
  );

test('the console files are served with a strict CSP', async () => {
  for (const [path, type] of [['/admin/', 'text/html'], ['/admin/console.js', 'javascript'], ['/admin/console.css', 'text/css']]) {
    const r = await fetch(`${hub.base}${path}`);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get('content-type'), new RegExp(type), path);
    const csp = r.headers.get('content-security-policy') ?? '';
    assert.match(csp, /frame-ancestors 'none'/, `${path}: ${csp}`);
    assert.match(csp, /script-src 'self'/, `${path}: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${path}: ${csp}`);
  }
  const html = await (await fetch(`${hub.base}/admin/`)).text();
  assert.doesNotMatch(html, /<script>|<style|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
});

test('overview: the numbers follow streams opening and events flowing', async () => {
  const page = await newPage();
  await signIn(page, hub.base, HUB_KEY);
  // The console's own audit stream is open: at least 1.
  await waitNumberAtLeast(page, '#ov-streams', 1);
  const streams0 = await numberIn(page, '#ov-streams');
  const published0 = await numberIn(page, '#ov-published-total');
  const delivered0 = await numberIn(page, '#ov-delivered-total');

  const subs = await Promise.all([1, 2, 3].map((i) => openStream(hub.base, userJwt(SECRET, { sub: `ov-user-${i}`, subscribe: ['ov.topic'] }), ['ov.topic'])));
  await waitNumberAtLeast(page, '#ov-streams', streams0 + 3);
  await page.waitForFunction(() => /\(hub-wide\)/.test(document.querySelector('#ov-tenants').textContent), null, { timeout: 3000 });

  // Publish until the per-second rate card shows it (a second is closed once a second).
  let sent = 0;
  let stop = false;
  const publisher = (async () => {
    while (!stop && sent < 60) {
      await publish(hub.base, HUB_KEY, { topics: ['ov.topic'], data: `ov-${sent}`, audience: 'public' });
      sent += 1;
      await sleep(100);
    }
  })();
  try {
    await waitNumberAtLeast(page, '#ov-published-rate', 1, 6000);
    await waitNumberAtLeast(page, '#ov-delivered-rate', 3, 6000);
  } finally {
    stop = true;
    await publisher;
  }
  await Promise.all(subs.map((s) => s.waitFor(new RegExp(`data: ov-${sent - 1}\\n`))));
  await waitNumberAtLeast(page, '#ov-published-total', published0 + sent);
  await waitNumberAtLeast(page, '#ov-delivered-total', delivered0 + 3 * sent);
  // The charts' text alternative carries the numbers too.
  const label = await page.$eval('#chart-published', (s) => s.getAttribute('aria-label'));
  const peak = Number(label.match(/peak (\d+)/)?.[1]);
  assert.ok(peak >= 1, `chart label names a peak: ${label}`);
  assert.equal(await page.$eval('#chart-published title', (t) => t.textContent), label);
  assert.match(await page.textContent('#ov-health'), /Ready/);
  await shot(page, 'overview');

  for (const s of subs) s.close();
  await page.waitForFunction((n) => Number(document.querySelector('#ov-streams').textContent) <= n, streams0, { timeout: 8000 });
  await closePage(page);
});

test('streams: a new stream is listed within 2 s, has details, and is cut from the console', async () => {
  const page = await newPage();
  await signIn(page, hub.base, HUB_KEY);
  await showView(page, 'streams');
  await page.waitForSelector('#streams-body tr[data-id]'); // the console's own audit stream

  const victim = await openStream(hub.base, userJwt(SECRET, { sub: 'st-cut-me', tenant: 'acme', sid: 'cut-session' }));
  const bystander = await openStream(hub.base, userJwt(SECRET, { sub: 'st-stays', tenant: 'acme', sid: 'other' }));
  await waitRow(page, '#streams-body', S.account, 'st-cut-me', 2000);
  assert.ok(Date.now() - victim.connectedAt <= 2000, 'listed within 2 s, without pressing anything');
  const id = await page.$$eval('#streams-body tr[data-id]', (trs) => trs.find((tr) => tr.children[2].textContent === 'st-cut-me').dataset.id);
  const row = `#streams-body tr[data-id="${id}"]`;
  assert.equal(await page.textContent(`${row} > :nth-child(2)`), 'acme');
  assert.match(await page.textContent(`${row} > :nth-child(4)`), /^[0-9a-f]{8}$/, 'session prefix');

  // Filter on any column.
  await page.fill('#streams-filter', 'cut-me');  // matches part of a column
  await page.waitForFunction(() => document.querySelectorAll('#streams-body tr[data-id]').length === 1, null, { timeout: 3000 });
  assert.deepEqual(await columnTexts(page, '#streams-body', S.account), ['st-cut-me']);
  await page.fill('#streams-filter', 'st-');
  await waitRow(page, '#streams-body', S.account, 'st-stays');
  assert.ok((await columnTexts(page, '#streams-body', S.tenant)).every((t) => t === 'acme'));

  // Sort by account: the header says so, and the rows follow.
  await page.click('#streams-table th button[data-sort="account"]');
  assert.equal(await page.getAttribute('th:has(button[data-sort="account"])', 'aria-sort'), 'ascending');
  assert.deepEqual(await columnTexts(page, '#streams-body', S.account), ['st-cut-me', 'st-stays']);
  await page.click('#streams-table th button[data-sort="account"]');
  assert.equal(await page.getAttribute('th:has(button[data-sort="account"])', 'aria-sort'), 'descending');
  assert.deepEqual(await columnTexts(page, '#streams-body', S.account), ['st-stays', 'st-cut-me']);
  assert.equal(await page.getAttribute('th:has(button[data-sort="id"])', 'aria-sort'), null);

  // Enter on a row opens every field.
  await page.focus(row);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#stream-details:not([hidden])');
  const fields = await page.$$eval('#stream-details-list dd', (dds) => Object.fromEntries(dds.map((d) => [d.dataset.field, d.textContent])));
  assert.equal(fields.id, id);
  assert.equal(fields.account, 'st-cut-me');
  assert.equal(fields.tenant, 'acme');
  for (const k of ['ip', 'selectors', 'protocol', 'opened_at', 'queue', 'sent']) assert.ok(k in fields, `details show ${k}`);
  await shot(page, 'streams');

  // Cut, with a confirmation.
  await page.click(`${row} button[data-cut]`);
  await page.waitForSelector('#confirm-dialog[open]');
  assert.match(await page.textContent('#confirm-text'), new RegExp(`Stream ${id} of st-cut-me`));
  await page.click('#confirm-yes');
  await victim.waitFor(/event: kicked/);
  await page.waitForSelector(row, { state: 'detached', timeout: 3000 });
  await page.waitForFunction(() => /closed/.test(document.querySelector('#stream-details-state').textContent), null, { timeout: 3000 });
  assert.ok(!bystander.isEnded() && !/kicked/.test(bystander.text()), 'the other stream is untouched');
  victim.close();
  bystander.close();
  await closePage(page);
});

test('streams: a hub with more streams than a page lists them all, page by page, oldest first', async () => {
  const opened = [];
  for (let i = 1; i <= 5; i++) {
    opened.push(await openStream(hub.base, userJwt(SECRET, { sub: `pg-${i}`, tenant: 'paged' })));
  }
  const page = await newPage();
  const queries = [];
  page.on('request', (r) => { if (r.url().includes('/v1/connections?')) queries.push(r.url()); });
  await page.goto(`${hub.base}/admin/?streams_page=2`);
  await signIn(page, hub.base, HUB_KEY);
  await showView(page, 'streams');
  await page.waitForSelector('#streams-pager:not([hidden])', { timeout: 5000 });
  assert.ok(queries.every((q) => /limit=2(&|$)/.test(q)), `every listing asks for one page: ${queries}`);
  assert.equal(await page.isDisabled('#streams-prev'), true, 'no page before the first');
  assert.match(await page.textContent('#streams-page'), /^Page 1: 2 streams of \d+ live, oldest first/);

  // Next until the last page: every stream shows up once, in id order.
  const ids = [];
  const accounts = [];
  for (let n = 0; ; n++) {
    assert.ok(n < 50, 'the pager reaches a last page');
    const rowIds = await page.$$eval('#streams-body tr[data-id]', (trs) => trs.map((tr) => Number(tr.dataset.id)));
    assert.ok(rowIds.length >= 1 && rowIds.length <= 2, `a page holds 1 or 2 rows: ${rowIds}`);
    ids.push(...rowIds);
    accounts.push(...await columnTexts(page, '#streams-body', S.account));
    if (await page.isDisabled('#streams-next')) break;
    const before = rowIds.join();
    await page.click('#streams-next');
    await page.waitForFunction(
      (b) => [...document.querySelectorAll('#streams-body tr[data-id]')].map((tr) => tr.dataset.id).join() !== b,
      before, { timeout: 3000 },
    );
  }
  assert.deepEqual([...ids].sort((a, b) => a - b), ids, 'pages run oldest first');
  assert.equal(new Set(ids).size, ids.length, 'no stream on two pages');
  for (let i = 1; i <= 5; i++) assert.equal(accounts.filter((a) => a === `pg-${i}`).length, 1, `pg-${i} listed once`);
  assert.ok(queries.some((q) => /after=[1-9]/.test(q)), 'later pages ask with the cursor');

  // Previous goes back to the first page.
  while (!(await page.isDisabled('#streams-prev'))) {
    const before = await page.$$eval('#streams-body tr[data-id]', (trs) => trs.map((tr) => tr.dataset.id).join());
    await page.click('#streams-prev');
    await page.waitForFunction(
      (b) => [...document.querySelectorAll('#streams-body tr[data-id]')].map((tr) => tr.dataset.id).join() !== b,
      before, { timeout: 3000 },
    );
  }
  assert.deepEqual(await page.$$eval('#streams-body tr[data-id]', (trs) => trs.map((tr) => Number(tr.dataset.id))), ids.slice(0, 2));
  for (const s of opened) s.close();
  await closePage(page);
});

test('audit: live tail, filters by kind and account, details and paging back', async () => {
  const page = await newPage();
  const queries = [];
  page.on('request', (r) => { if (r.url().includes('/v1/audit?')) queries.push(r.url()); });
  await signIn(page, hub.base, HUB_KEY);
  await showView(page, 'audit');
  await page.waitForFunction(() => /connected/.test(document.querySelector('#audit-tail-status').textContent), null, { timeout: 5000 });

  // Records made now arrive through the live tail.
  const refused = await fetch(`${hub.base}/v1/events?topic=demo`, { headers: { authorization: 'Bearer not-a-token' } });
  assert.equal(refused.status, 401);
  const s = await openStream(hub.base, userJwt(SECRET, { sub: 'audit-bob', tenant: 'acme' }));
  s.close();
  await waitRow(page, '#audit-body', A.account, 'audit-bob');
  await page.waitForFunction(() => [...document.querySelectorAll('#audit-body tr[data-id]')].some((tr) => tr.children[1].textContent === 'auth_failed'), null, { timeout: 5000 });

  const rowsAre = (col, value) => page.waitForFunction(
    ([c, v]) => {
      const trs = [...document.querySelectorAll('#audit-body tr[data-id]')];
      return trs.length > 0 && trs.every((tr) => tr.children[c].textContent === v);
    },
    [col, value],
    { timeout: 5000 },
  );
  await page.selectOption('#audit-kind', 'auth_failed');
  await rowsAre(A.kind, 'auth_failed');
  assert.match(await page.textContent('#audit-body'), /invalid_token/, 'the reason column shows the code');
  // "(hub-wide)" is the API's empty tenant filter: records without a tenant.
  const hubWide = page.waitForResponse((r) => /\/v1\/audit\?.*kind=auth_failed.*&tenant=(&|$)/.test(r.url()), { timeout: 5000 });
  await page.fill('#audit-tenant', '(hub-wide)');
  assert.equal((await hubWide).status(), 200);
  await rowsAre(A.tenant, '—');
  await page.fill('#audit-tenant', '');
  await page.selectOption('#audit-kind', 'stream_opened');
  await rowsAre(A.kind, 'stream_opened');
  // The filters also go to the server (for records not loaded yet).
  const filtered = page.waitForResponse((r) => /\/v1\/audit\?.*kind=stream_opened.*account=audit-bob/.test(r.url()), { timeout: 5000 });
  await page.fill('#audit-account', 'audit-bob');
  assert.equal((await filtered).status(), 200);
  await rowsAre(A.account, 'audit-bob');
  assert.deepEqual(await columnTexts(page, '#audit-body', A.kind), ['stream_opened']);
  await page.selectOption('#audit-kind', '');
  await page.waitForFunction(() => document.querySelectorAll('#audit-body tr[data-id]').length >= 2, null, { timeout: 5000 });
  await rowsAre(A.account, 'audit-bob');

  // A record's details, as JSON text.
  await page.click('#audit-body tr[data-id]');
  await page.waitForSelector('#audit-details:not([hidden])');
  const record = JSON.parse(await page.textContent('#audit-detail-json'));
  assert.equal(record.account, 'audit-bob');
  assert.equal(typeof record.detail, 'object');

  // Paging back: 105 token_minted records of tenant "paging"; the newest 100 first.
  await Promise.all(Array.from({ length: 105 }, (_, i) =>
    adminApi(hub.base, HUB_KEY, '/v1/tokens', { method: 'POST', body: JSON.stringify({ sub: `pager-${i}`, tenant: 'paging', subscribe: ['demo'] }) })
      .then((r) => assert.equal(r.status, 200))));
  await page.fill('#audit-account', '');
  await page.fill('#audit-tenant', 'paging');
  await page.selectOption('#audit-kind', 'token_minted');
  // The newest page of the server's answer: 100 rows, and more to load.
  await page.waitForSelector('#audit-older:not([disabled])', { timeout: 5000 });
  await page.waitForFunction(() => document.querySelectorAll('#audit-body tr[data-id]').length === 100, null, { timeout: 5000 });
  await page.click('#audit-older');
  await page.waitForFunction(() => document.querySelectorAll('#audit-body tr[data-id]').length === 105, null, { timeout: 5000 });
  await page.waitForSelector('#audit-older[disabled]');
  assert.ok(queries.some((u) => /before=\d+/.test(u) && !/before=18446744073709551615/.test(u)), 'paged with before=prev');
  const accounts = await columnTexts(page, '#audit-body', A.account);
  assert.equal(new Set(accounts).size, 105, 'no record twice');
  await page.click('#audit-clear');
  await page.waitForFunction(() => document.querySelectorAll('#audit-body tr[data-id]').length > 0, null, { timeout: 5000 });

  // An admin cuts the console's own tail: it says so and waits; Reconnect resumes it live.
  const { body } = await adminApi(hub.base, HUB_KEY, '/v1/connections');
  const tail = body.connections.filter((c) => c.kind === 'audit').sort((a, b) => Number(b.id) - Number(a.id))[0];
  await adminApi(hub.base, HUB_KEY, `/v1/connections/${tail.id}`, { method: 'DELETE' });
  await page.waitForFunction(() => /cut by an administrator/.test(document.querySelector('#audit-tail-status').textContent), null, { timeout: 5000 });
  await page.click('#audit-reconnect');
  await page.waitForFunction(() => /connected/.test(document.querySelector('#audit-tail-status').textContent), null, { timeout: 5000 });
  (await openStream(hub.base, userJwt(SECRET, { sub: 'after-reconnect' }))).close();
  await waitRow(page, '#audit-body', A.account, 'after-reconnect');
  await shot(page, 'audit');
  await closePage(page);
});

test('actions: a revocation closes exactly the streams its preview announced', async () => {
  const alice = userJwt(SECRET, { sub: 'alice', tenant: 'acme', sid: 's1' });
  const s1 = await Promise.all([1, 2, 3].map(() => openStream(hub.base, alice)));
  const other = await openStream(hub.base, userJwt(SECRET, { sub: 'alice', tenant: 'acme', sid: 's2' }));
  const page = await newPage();
  await signIn(page, hub.base, HUB_KEY);
  await showView(page, 'actions');

  await page.selectOption('#revoke-type', 'session_revoke');
  assert.equal(await page.isVisible('#revoke-jti'), false, 'fields follow the type');
  await page.fill('#revoke-account', 'alice');
  await page.fill('#revoke-session', 's1');
  await page.fill('#revoke-tenant', 'acme');
  await page.click('#revoke-form button[type=submit]');
  await page.waitForSelector('#revoke-confirm:not([hidden])');
  assert.equal(await page.textContent('#revoke-confirm-text'), 'This will close 3 live streams.');
  // The preview changed nothing.
  await sleep(200);
  assert.ok(s1.every((s) => !s.isEnded() && !/revoked/.test(s.text())), 'nothing closed by the preview');
  await page.click('#revoke-confirm-yes');
  await page.waitForFunction(() => /Closed 3 streams/.test(document.querySelector('#revoke-result').textContent), null, { timeout: 5000 });
  await Promise.all(s1.map((s) => s.waitFor(/event: revoked/)));
  await Promise.all(s1.map((s) => s.ended));
  const { body } = await adminApi(hub.base, HUB_KEY, '/v1/connections?account=alice');
  assert.equal(body.connections.filter((c) => c.account === 'alice').length, 1, 'the other session stays');
  assert.ok(!other.isEnded() && !/revoked/.test(other.text()));
  // The revoked token is refused from now on.
  const again = await fetch(`${hub.base}/v1/events?topic=demo`, { headers: { authorization: `Bearer ${alice}` } });
  assert.equal(again.status, 401);
  other.close();

  // Cancel leaves everything as it was.
  await page.selectOption('#revoke-type', 'tenant_revoke');
  await page.fill('#revoke-tenant', 'nobody-here');
  await page.click('#revoke-form button[type=submit]');
  await page.waitForSelector('#revoke-confirm:not([hidden])');
  assert.equal(await page.textContent('#revoke-confirm-text'), 'This will close no live stream.');
  await page.click('#revoke-confirm-no');
  await page.waitForSelector('#revoke-confirm', { state: 'hidden' });
  assert.match(await page.textContent('#revoke-result'), /nothing was revoked/);
  await closePage(page);
});

test('actions: the test subscriber sees what the user gets, and invalidation controls', async () => {
  const page = await newPage();
  await signIn(page, hub.base, HUB_KEY);
  await showView(page, 'actions');
  await page.fill('#watch-sub', 'watcher');
  await page.fill('#watch-tenant', 'acme');
  await page.fill('#watch-topics', 'demo');
  await page.click('#watch-start');
  await page.waitForSelector('#watch-log li[data-type="(connected)"]', { timeout: 5000 });
  await publish(hub.base, HUB_KEY, { topics: ['demo'], type: 'greeting', data: '<b>hello</b> watcher', audience: { tenant: 'acme', users: ['watcher'] } });
  await publish(hub.base, HUB_KEY, { topics: ['demo'], data: 'not for the watcher', audience: { tenant: 'acme', users: ['someone-else'] } });
  await page.waitForSelector('#watch-log li[data-type="greeting"]', { timeout: 5000 });
  assert.equal(await page.textContent('#watch-log li[data-type="greeting"] .w-data'), '<b>hello</b> watcher', 'data shown as text');
  assert.equal(await page.$('#watch-log b'), null, 'never parsed as HTML');
  // A control event, as the user would get it: cut the watcher's stream.
  const { body } = await adminApi(hub.base, HUB_KEY, '/v1/connections?account=watcher');
  const watcher = body.connections.find((c) => c.account === 'watcher');
  assert.ok(watcher, 'the test subscriber is a real stream');
  await adminApi(hub.base, HUB_KEY, `/v1/connections/${watcher.id}`, { method: 'DELETE' });
  await page.waitForSelector('#watch-log li.control[data-type="kicked"]', { timeout: 5000 });
  assert.doesNotMatch(await page.textContent('#watch-log'), /not for the watcher/);

  // Invalidation: pause, disable a tag, resume.
  await page.waitForFunction(() => /running/.test(document.querySelector('#inval-state').textContent), null, { timeout: 5000 });
  await page.click('#inval-pause');
  await page.waitForFunction(() => /PAUSED/.test(document.querySelector('#inval-state').textContent), null, { timeout: 5000 });
  await page.fill('#inval-tags', 'todos, users/42');
  await page.click('#inval-tags-form button[value=disable]');
  await page.waitForFunction(() => /\["users",42\]/.test(document.querySelector('#inval-state').textContent), null, { timeout: 5000 });
  const state = (await adminApi(hub.base, HUB_KEY, '/v1/invalidation')).body;
  assert.deepEqual(state.disabled_tags, [['todos'], ['users', 42]]);
  await page.click('#inval-tags-form button[value=enable]');
  await page.waitForFunction(() => /disabled tags: none/.test(document.querySelector('#inval-state').textContent), null, { timeout: 5000 });
  await page.click('#inval-resume');
  await page.waitForFunction(() => /running .* disabled tags: none/.test(document.querySelector('#inval-state').textContent), null, { timeout: 5000 });
  await shot(page, 'actions');
  await closePage(page);
});

test('a tenant admin sees its tenant only', async () => {
  const subs = await Promise.all([
    openStream(hub.base, userJwt(SECRET, { sub: 'globex-user', tenant: 'globex' })),
    openStream(hub.base, userJwt(SECRET, { sub: 'hubwide-user' })),
    openStream(hub.base, userJwt(SECRET, { sub: 'acme-user', tenant: 'acme' })),
  ]);
  const page = await newPage();
  await signIn(page, hub.base, ACME_KEY);
  assert.match(await page.textContent('#whoami'), /acme/);

  await waitNumberAtLeast(page, '#ov-streams', 1);
  await page.waitForSelector('#ov-tenants tbody tr[data-tenant]');
  assert.deepEqual(await page.$$eval('#ov-tenants tbody tr', (trs) => trs.map((tr) => tr.dataset.tenant)), ['acme']);
  assert.doesNotMatch(await page.textContent('#ov-health'), /history|deny|store/, 'no hub-wide health details');

  await showView(page, 'streams');
  await waitRow(page, '#streams-body', S.account, 'acme-user');
  const accounts = await columnTexts(page, '#streams-body', S.account);
  assert.ok(!accounts.includes('globex-user') && !accounts.includes('hubwide-user'), `only acme: ${accounts}`);
  assert.ok((await columnTexts(page, '#streams-body', S.tenant)).every((t) => t === 'acme'));

  await showView(page, 'audit');
  await waitRow(page, '#audit-body', A.account, 'acme-user');
  const tenants = await columnTexts(page, '#audit-body', A.tenant);
  assert.ok(tenants.length > 0 && tenants.every((t) => t === 'acme'), `only acme records: ${[...new Set(tenants)]}`);
  assert.doesNotMatch(await page.textContent('#audit-body'), /globex|hubwide-user/);

  // Hub-admin-only controls answer 403: shown, and the page goes on working.
  await showView(page, 'actions');
  await page.waitForFunction(() => document.querySelector('#inval-error').textContent.length > 0, null, { timeout: 5000 });
  assert.match(await page.textContent('#inval-error'), /admin_required/);
  await page.fill('#watch-sub', 'spy');
  await page.fill('#watch-tenant', 'globex');
  await page.fill('#watch-topics', 'demo');
  await page.click('#watch-start');
  await page.waitForFunction(() => /tenant_forbidden/.test(document.querySelector('#watch-error').textContent), null, { timeout: 5000 });
  await showView(page, 'overview');
  for (const s of subs) s.close();
  await closePage(page);
});

test('credentials: a wrong one is refused; a right one stays in the tab, out of URLs and the DOM', async () => {
  const page = await newPage();
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  await page.goto(`${hub.base}/admin/`);
  const WRONG = 'hk_wrong_credential_0123456789';
  await page.fill('#credential', WRONG);
  await page.click('#signin-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#signin-error').textContent.length > 0, null, { timeout: 5000 });
  assert.equal(await page.getAttribute('#signin-error', 'role'), 'alert');
  assert.equal(await page.isVisible('#app'), false);
  assert.equal(await page.$$eval('#streams-body tr, #audit-body tr, #ov-tenants tbody tr', (x) => x.length), 0, 'nothing listed');
  assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);

  // A user JWT that is not an admin: refused with the hub's reason.
  const user = userJwt(SECRET, { sub: 'not-admin' });
  await page.fill('#credential', user);
  await page.click('#signin-form button[type=submit]');
  await page.waitForFunction(() => /admin_required/.test(document.querySelector('#signin-error').textContent), null, { timeout: 5000 });

  await signIn(page, hub.base, HUB_KEY);
  assert.equal(await page.inputValue('#credential'), '', 'the input is cleared');
  const stored = await page.evaluate(() => ({
    session: Object.values(sessionStorage),
    local: Object.values(localStorage),
    dom: document.documentElement.outerHTML,
  }));
  assert.ok(stored.session.includes(HUB_KEY), 'in sessionStorage');
  assert.ok(!stored.local.some((v) => v.includes('hk_')), 'not in localStorage');
  assert.ok(!stored.dom.includes(HUB_KEY), 'not in the DOM');
  // A reload of the tab keeps the session.
  await page.reload();
  await page.waitForSelector('#app:not([hidden])', { timeout: 5000 });
  await showView(page, 'streams');
  await page.waitForSelector('#streams-body tr[data-id]');
  await page.click('#signout');
  await page.waitForSelector('#signin:not([hidden])');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'sign out forgets it');
  assert.equal(await page.$$eval('#streams-body tr, #audit-body tr', (x) => x.length), 0, 'and every listed thing');

  // An admin JWT works too, its audit tail through a token it mints for itself.
  const adminJwt = hs256({ sub: 'root', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, herald: { admin: true } }, SECRET);
  await signIn(page, hub.base, adminJwt);
  await showView(page, 'audit');
  await page.waitForFunction(() => /connected/.test(document.querySelector('#audit-tail-status').textContent), null, { timeout: 5000 });
  // It cannot mint for someone else: the hub's message is shown.
  await showView(page, 'actions');
  await page.fill('#watch-sub', 'someone');
  await page.fill('#watch-topics', 'demo');
  await page.click('#watch-start');
  await page.waitForFunction(() => /token_widening_forbidden/.test(document.querySelector('#watch-error').textContent), null, { timeout: 5000 });
  await page.click('#signout');

  for (const secret of [WRONG, user, HUB_KEY, adminJwt]) {
    assert.ok(!urls.some((u) => u.includes(secret)), 'no credential in any URL');
  }
  assert.ok(urls.some((u) => /\/v1\/audit\/events\?token=st_/.test(u)), 'the audit stream used an SSE token');
  await closePage(page);
});

test('keyboard navigation, and a 390 px screen without horizontal overflow', async () => {
  const page = await newPage();
  await signIn(page, hub.base, HUB_KEY);
  // Tab from the top of the page to the Streams entry, then Enter.
  await page.evaluate(() => document.activeElement?.blur());
  let reached = false;
  for (let i = 0; i < 20 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.dataset?.view === 'streams');
  }
  assert.ok(reached, 'the nav is reachable with Tab');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#view-streams:not([hidden])');
  assert.equal(await page.getAttribute('nav [data-view="streams"]', 'aria-current'), 'page');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.dataset.view), 'audit');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#view-audit:not([hidden])');
  assert.equal(await page.isVisible('#view-streams'), false);
  // A row opens with the keyboard as well.
  await page.waitForSelector('#audit-body tr[data-id]');
  await page.focus('#audit-body tr[data-id]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#audit-details:not([hidden])');

  await page.setViewportSize({ width: 390, height: 844 });
  for (const view of ['overview', 'streams', 'audit', 'actions']) {
    await showView(page, view);
    if (view === 'streams') await page.waitForSelector('#streams-body tr[data-id]');
    if (view === 'overview') await waitNumberAtLeast(page, '#ov-streams', 1);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 392, `${view} at 390 px: scrollWidth ${width}`);
    if (view === 'streams') await shot(page, 'narrow-390');
  }
  await closePage(page);
});
