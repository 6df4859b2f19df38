// Shared pieces of the browser tests: a real herald process on an
// ephemeral port and a headless Debian Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

export const HERALD_BIN = process.env.HERALD_BIN ?? resolve(import.meta.dirname, '../../target/debug/herald');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/**
 * Starts herald with `toml` appended to a minimal config; resolves to
 * {base, dir, stop, terminate}. `dir` and `listen` start it again on the
 * data and address of a hub that was stopped (`await hub.terminate()`).
 */
export async function startHerald(toml = '', { dir = mkdtempSync(join(tmpdir(), 'herald-browser-')), listen = '127.0.0.1:0' } = {}) {
  const config = join(dir, 'herald.toml');
  writeFileSync(config, `listen = "${listen}"\ndata_dir = "${dir}"\n${toml}\n`);
  const child = spawn(HERALD_BIN, ['serve', '--config', config], {
    env: { ...process.env, HERALD_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const base = await new Promise((ok, fail) => {
    let buf = '';
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = buf.match(/herald listening on (\S+)/);
      if (m) ok(m[1]);
    });
    child.on('exit', (code) => fail(new Error(`herald exited with ${code}`)));
  });
  child.stdout.resume();
  const exited = new Promise((ok) => child.on('exit', ok));
  return {
    base,
    dir,
    stop: () => child.kill('SIGKILL'),
    /** Stops it gracefully (SIGTERM) and resolves once it exited. */
    terminate: () => { child.kill('SIGTERM'); return exited; },
  };
}

/** Launches headless Chromium with the flags this sandbox needs. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** Signs an HS256 JWT. */
export function hs256(claims, secret) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
