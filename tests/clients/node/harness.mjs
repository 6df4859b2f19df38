// Shared pieces of the client-library tests: a real herald process on an
// ephemeral port, its admin API, and JWTs signed like an application's
// auth service would sign them.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHash, createHmac, randomBytes } from 'node:crypto';

export const HERALD_BIN = process.env.HERALD_BIN ?? resolve(import.meta.dirname, '../../../target/debug/herald');
/** HS256 secret of the test hub's user JWTs. */
export const SECRET = 'clients-test-secret-clients-test-secret-0123';
/** A hub-wide backend key with every scope, as an application's backend holds. */
export const KEY = `hk_clients_${randomBytes(18).toString('hex')}`;

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts herald with `toml` appended to the test configuration; resolves to
 * `{base, stop}`. HERALD_* variables of the test's own environment are not
 * passed on: the hub would read them as configuration.
 */
export async function startHerald(toml = '') {
  const dir = mkdtempSync(join(tmpdir(), 'herald-clients-'));
  const config = join(dir, 'herald.toml');
  writeFileSync(
    config,
    `listen = "127.0.0.1:0"\ndata_dir = "${dir}"\njwt_secret = "${SECRET}"\nfsync = "never"\n` +
      `[[api_keys]]\nid = "app"\nhash = "sha256:${sha256(KEY)}"\nscopes = ["publish", "tokens", "revoke", "admin"]\n` +
      `${toml}\n`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
  const child = spawn(HERALD_BIN, ['serve', '--config', config], {
    env: { ...env, HERALD_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise((ok, fail) => {
    let buf = '';
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = buf.match(/herald listening on (\S+)/);
      if (m) ok(m[1]);
    });
    child.on('error', fail);
    child.on('exit', (code) => fail(new Error(`herald (${HERALD_BIN}) exited with ${code}`)));
  });
  child.stdout.resume();
  return {
    base,
    stop: () => {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Calls the hub with the backend key; resolves to `{status, body}`. */
export async function api(base, path, { method = 'GET', body } = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function ok(base, path, options) {
  const answer = await api(base, path, options);
  if (answer.status !== 200) throw new Error(`${options?.method ?? 'GET'} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** What an application's backend does for its user: `POST /v1/tokens`, returns the `st_` token. */
export async function mintToken(base, claims) {
  return (await ok(base, '/v1/tokens', { method: 'POST', body: { ttl: 300, ...claims } })).token;
}

/** Publishes one event with the backend key; resolves to `{id, seq}`. */
export function publish(base, event) {
  return ok(base, '/v1/publish', { method: 'POST', body: event });
}

/** The live connections of one account. */
export async function connectionsOf(base, account) {
  return (await ok(base, `/v1/connections?account=${encodeURIComponent(account)}`)).connections;
}

/** Cuts every live stream of `account` (`DELETE /v1/connections/{id}`); resolves to how many. */
export async function kick(base, account) {
  const conns = await connectionsOf(base, account);
  for (const c of conns) await ok(base, `/v1/connections/${c.id}`, { method: 'DELETE' });
  return conns.length;
}

/** Posts a revocation; resolves to `{closed, applied}`. */
export function revoke(base, revocation) {
  return ok(base, '/v1/revocations', { method: 'POST', body: revocation });
}

/** Signs an HS256 user JWT with the hub's secret (`iat`/`exp` filled in). */
export function userJwt(claims) {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ iat: now, exp: now + 600, ...claims });
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Polls `check` until it returns a truthy value (generous deadline: the machine is shared). */
export async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A promise with its resolve function, to hold a reconnect until the test lets it go. */
export function gate() {
  let open;
  const opened = new Promise((r) => {
    open = r;
  });
  return { opened, open };
}
