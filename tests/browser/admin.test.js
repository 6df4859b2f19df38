// The admin page in a real Chromium: an operator pastes an admin API key,
// sees the live streams and the audit log arriving live, and can cut a stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { startHerald, launchBrowser } from './harness.js';

const KEY = 'hk_admin_page_test_key_0123456789abcdef';
let hub;
let browser;

before(async () => {
  const hash = createHash('sha256').update(KEY).digest('hex');
  hub = await startHerald(
    `jwt_secret = "admin-page-secret-admin-page-secret"\n[[api_keys]]\nid = "ops"\nhash = "sha256:${hash}"\nscopes = ["tokens", "admin"]\n`,
  );
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  hub?.stop();
});

test('the admin page lists live streams and follows the audit log', async () => {
  const page = await browser.newPage();
  const response = await page.goto(`${hub.base}/admin/`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'], /frame-ancestors 'none'/);
  await page.fill('#credential', KEY);
  await page.click('button[type=submit]');
  // The page's own audit stream is a live stream, and its opening is audited.
  await page.waitForFunction(() => document.querySelectorAll('#audit div').length > 0, null, { timeout: 10000 });
  await page.click('#refresh');
  await page.waitForFunction(() => document.querySelectorAll('#connections tr').length > 0, null, { timeout: 10000 });
  const rows = await page.$$eval('#connections tr', (trs) => trs.map((tr) => tr.children[1].textContent));
  assert.ok(rows.includes('audit'), `the audit stream is listed: ${rows}`);
  const first = await page.$eval('#audit div', (d) => JSON.parse(d.textContent));
  assert.equal(typeof first.kind, 'string');
  assert.ok(!JSON.stringify(first).includes(KEY), 'no credential in the audit log');
  await page.close();
});

test('a wrong credential shows an error and lists nothing', async () => {
  const page = await browser.newPage();
  await page.goto(`${hub.base}/admin/`);
  await page.fill('#credential', 'hk_wrong');
  await page.click('button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#status').className === 'err', null, { timeout: 10000 });
  assert.equal(await page.$$eval('#connections tr', (trs) => trs.length), 0);
  await page.close();
});
