// Herald operator console. Plain ES module, no dependencies, no build step.
//
// Security rules this file keeps (the page is served with a strict CSP):
//  * the admin credential lives in sessionStorage (this tab only) and goes
//    only in the Authorization header, never in a URL or in the DOM;
//  * every value from the hub is inserted with textContent/createElement,
//    never as HTML; every URL parameter goes through encodeURIComponent;
//  * no inline handlers, no eval, no style attributes (classes only).

const STORAGE_KEY = 'herald.console.credential';
const NOTICE_KEY = 'herald.console.notice';
const POLL_MS = 1000;
// Newest audit page: "before" anything (u64::MAX, kept as text: ids are u64).
const NEWEST = '18446744073709551615';
const AUDIT_PAGE = 100;
const AUDIT_KEEP = 5000;
const WATCH_KEEP = 500;
const SVG_NS = 'http://www.w3.org/2000/svg';
const HUB_WIDE = '(hub-wide)'; // how a missing tenant is shown, and typed in the audit filter
const CONTROL_EVENTS = new Set(['revoked', 'expired', 'evicted', 'kicked', 'overflow', 'shutdown', 'reset']);

// Which fields each revocation type needs (tenant is optional for all but tenant_revoke).
const REVOCATION_FIELDS = {
  role_grant_revoke: ['account', 'role'],
  session_revoke: ['account', 'session'],
  session_revoke_all: ['account'],
  token_revoke_all: ['account'],
  password_change: ['account'],
  logout: ['account'],
  token_revoke: ['jti'],
  tenant_revoke: ['tenant'],
};

// ---------------------------------------------------------------- helpers

const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => Array.from(document.querySelectorAll(sel));
const enc = encodeURIComponent;

/** Creates an element; `props.text` becomes textContent, `props.cls` the class, the rest attributes. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'cls') node.className = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  node.append(...children);
  return node;
}

/** Sets text only when it changed, so live regions and selections are not disturbed every second. */
function setText(node, text) {
  const t = String(text);
  if (node && node.textContent !== t) node.textContent = t;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** Builds "a=1&b=2" from the non-empty entries, every key and value encoded. */
function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(String(v))}`)
    .join('&');
}

const show = (x) => (x === undefined || x === null || x === '' ? '—' : String(x));
const list = (text) => text.split(/[\s,]+/).filter(Boolean);
const fmtTime = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
const fmtMs = (v) => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) : v.toFixed(1));
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function fmtNum(n) {
  if (n === null || n === undefined) return '–';
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function status(message) { setText($('#status'), message); }

// ---------------------------------------------------------------- session and API

const session = {
  credential: null,
  gen: 0,          // bumped at sign-in/out: answers to an older session are dropped
  tenant: null,    // the admin's scope, from /v1/overview
  view: 'overview',
  timer: 0,
  inflight: new Set(),
};

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}
class Stale extends Error {}

/** Calls the hub with the credential in the Authorization header; throws ApiError with the hub's message. */
async function api(path, { method = 'GET', body } = {}) {
  const gen = session.gen;
  const headers = { authorization: `Bearer ${session.credential}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(path, {
    method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await r.json().catch(() => null);
  if (gen !== session.gen) throw new Stale();
  if (!r.ok) {
    const e = data?.error ?? {};
    throw new ApiError(r.status, e.code ?? `http_${r.status}`, e.message ?? `HTTP ${r.status}`);
  }
  return data;
}

/** Shows an error where it belongs; a refused credential ends the session. */
function report(err, where) {
  if (err instanceof Stale) return;
  if (err instanceof ApiError && err.status === 401) {
    signOut(`The hub refused the credential: ${err.message} (${err.code})`);
    return;
  }
  const text = err instanceof ApiError ? `${err.message} (${err.code})` : `Cannot reach the hub: ${err.message}`;
  if (where) setText(where, text);
}

/** Runs `fn` unless the same job is still running (a slow hub must not pile up requests). */
async function once(name, fn) {
  if (session.inflight.has(name)) return;
  session.inflight.add(name);
  try { await fn(); } finally { session.inflight.delete(name); }
}

async function signIn(credential) {
  session.gen += 1;
  session.credential = credential;
  status('Signing in…');
  let ov;
  try {
    ov = await api('/v1/overview');
  } catch (err) {
    if (err instanceof Stale) return;
    session.credential = null;
    sessionStorage.removeItem(STORAGE_KEY);
    status('');
    const why = err instanceof ApiError ? `${err.message} (${err.code})` : `Cannot reach the hub: ${err.message}`;
    setText($('#signin-error'), `Sign-in failed: ${why}`);
    $('#credential').focus();
    return;
  }
  setText($('#signin-error'), '');
  sessionStorage.setItem(STORAGE_KEY, credential);
  session.tenant = ov.tenant ?? null;
  const kind = credential.startsWith('hk_') ? 'API key' : 'JWT';
  setText($('#whoami'), session.tenant ? `Tenant admin of ${session.tenant} (${kind})` : `Hub admin (${kind})`);
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#whoami').hidden = false;
  $('#signout').hidden = false;
  if (session.tenant) $('#watch-tenant').value = session.tenant;
  status('Signed in.');
  renderOverview(ov);
  session.timer = setInterval(tick, POLL_MS);
  startTail();
  showView(viewFromHash() ?? 'overview');
}

/**
 * Forgets the credential, then reloads: the simplest way to be sure no hub
 * data, stream, timer or pending answer of this session survives it. A
 * reason to show (never a secret) is passed on through sessionStorage.
 */
function signOut(message = '') {
  session.gen += 1;
  session.credential = null;
  sessionStorage.removeItem(STORAGE_KEY);
  if (message) sessionStorage.setItem(NOTICE_KEY, message);
  location.reload();
}

// ---------------------------------------------------------------- navigation and polling

const VIEWS = ['overview', 'streams', 'audit', 'actions'];

function viewFromHash() {
  const v = location.hash.slice(1);
  return VIEWS.includes(v) ? v : null;
}

function showView(view) {
  session.view = view;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const b of $$('nav [data-view]')) {
    if (b.dataset.view === view) b.setAttribute('aria-current', 'page');
    else b.removeAttribute('aria-current');
  }
  // The view is kept in the fragment so a reload stays on it (never anything secret there).
  if (location.hash !== `#${view}`) history.replaceState(null, '', `#${view}`);
  if (view === 'actions') loadInvalidation();
  if (view === 'audit' && !audit.loaded) loadAudit();
  tick();
}

/** One poll of what the visible view shows; nothing while the browser tab is hidden. */
function tick() {
  if (!session.credential || document.hidden) return;
  if (session.view === 'overview') once('overview', pollOverview);
  if (session.view === 'streams') once('streams', pollStreams);
}

// ---------------------------------------------------------------- overview

async function pollOverview() {
  try {
    renderOverview(await api('/v1/overview'));
    setText($('#ov-error'), '');
  } catch (err) {
    report(err, $('#ov-error'));
  }
}

function renderOverview(ov) {
  const samples = ov.samples ?? [];
  const last = samples.at(-1) ?? {};
  const totals = ov.totals ?? {};
  // Rates are the latest sample's: samples are closed seconds. Latencies are those of the
  // latest second that had publishes (null in quiet seconds, and always for a tenant admin).
  const lastLatency = (key) => [...samples].reverse().find((s) => s[key])?.[key] ?? null;
  const pub = lastLatency('publish_ms');
  const fan = lastLatency('fanout_ms');
  const cards = {
    streams: fmtNum(ov.streams?.total ?? 0),
    'published-rate': fmtNum(last.published ?? 0),
    'delivered-rate': fmtNum(last.delivered ?? 0),
    'published-total': fmtNum(totals.published ?? 0),
    'delivered-total': fmtNum(totals.delivered ?? 0),
    refused: fmtNum(totals.refused ?? 0),
    'refused-recent': fmtNum(samples.reduce((n, s) => n + (s.refused ?? 0), 0)),
    overflowed: fmtNum(totals.overflowed ?? 0),
    revoked: fmtNum(totals.revoked ?? 0),
    'publish-p50': fmtMs(pub?.p50),
    'publish-p99': fmtMs(pub?.p99),
    'fanout-p50': fmtMs(fan?.p50),
    'fanout-p99': fmtMs(fan?.p99),
  };
  for (const [id, text] of Object.entries(cards)) setText($(`#ov-${id}`), text);

  const series = (key) => samples.map((s) => s[key] ?? 0);
  drawChart($('#chart-published'), 'Events published per second', [{ values: series('published') }], '/s');
  drawChart($('#chart-delivered'), 'Deliveries per second', [{ values: series('delivered') }], '/s');
  drawChart($('#chart-streams'), 'Open streams', [{ values: series('streams') }], '');
  drawChart($('#chart-latency'), 'Publish latency p50 and p99', [
    { values: samples.map((s) => s.publish_ms?.p50 ?? null), label: 'p50' },
    { values: samples.map((s) => s.publish_ms?.p99 ?? null), label: 'p99', cls: 'b' },
  ], ' ms', false);

  renderTenants(ov.streams?.by_tenant ?? []);
  renderRefusals(totals.refused_by ?? {}, samples);
  renderHealth(ov.health ?? {});
}

function renderTenants(byTenant) {
  const rows = [...byTenant].sort((a, b) => b.streams - a.streams);
  const body = $('#ov-tenants tbody');
  if (!rows.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 2, cls: 'hint', text: 'No open streams.' })));
    return;
  }
  body.replaceChildren(...rows.map((r) => el('tr', { 'data-tenant': r.tenant ?? '' },
    el('th', { scope: 'row', text: r.tenant ?? HUB_WIDE }),
    el('td', { cls: 'n', text: r.streams }))));
}

function refusalKind(key) {
  if (key.startsWith('cap:')) return 'stream cap';
  if (key.startsWith('auth:')) return 'authentication';
  if (key.startsWith('origin')) return 'origin';
  return 'other';
}

function renderRefusals(totalBy, samples) {
  const recent = {};
  for (const s of samples) {
    for (const [k, n] of Object.entries(s.refused_by ?? {})) recent[k] = (recent[k] ?? 0) + n;
  }
  const keys = [...new Set([...Object.keys(totalBy), ...Object.keys(recent)])];
  keys.sort((a, b) => (totalBy[b] ?? 0) - (totalBy[a] ?? 0) || a.localeCompare(b));
  const body = $('#ov-refusals tbody');
  if (!keys.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 4, cls: 'hint', text: 'Nothing refused.' })));
    return;
  }
  body.replaceChildren(...keys.map((k) => el('tr', { 'data-reason': k },
    el('th', { scope: 'row', text: k.replace(/^(cap|auth):/, '') }),
    el('td', { text: refusalKind(k) }),
    el('td', { cls: 'n', text: recent[k] ?? 0 }),
    el('td', { cls: 'n', text: totalBy[k] ?? 0 }))));
}

function renderHealth(h) {
  const parts = [h.ready === false ? 'Not ready' : 'Ready'];
  if (h.draining) parts.push('draining');
  // The rest is only given to hub admins: show what is there, assume nothing.
  if (h.history_head !== undefined) parts.push(`history head ${h.history_head}`);
  if (h.deny_rules !== undefined) parts.push(plural(h.deny_rules, 'deny rule', 'deny rules'));
  if (h.sse_tokens_outstanding !== undefined) parts.push(`${h.sse_tokens_outstanding} SSE tokens outstanding`);
  if (h.store) parts.push(`store ${h.store.events} events (${fmtBytes(h.store.bytes)})`);
  if (h.cluster) parts.push(h.cluster.connected ? 'cluster connected' : 'cluster DISCONNECTED');
  const node = $('#ov-health');
  setText(node, parts.join(' · '));
  node.className = `health ${h.ready === false || h.draining || h.cluster?.connected === false ? 'bad' : 'ok'}`;
}

/**
 * Draws line series into a 300×60 SVG: the x axis is a fixed window of at least
 * a minute (the newest sample on the right), y from 0 to the peak. A null value
 * (a second without data) breaks the line instead of drawing a false zero.
 */
function drawChart(node, label, series, unit, area = true) {
  const W = 300;
  const H = 60;
  const slots = Math.max(60, ...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  const peak = Math.max(1e-9, ...all);
  const x = (i, n) => W - (n - 1 - i) * (W / (slots - 1));
  const y = (v) => H - (v / peak) * (H - 4);
  const children = [svg('line', { x1: 0, y1: H, x2: W, y2: H, class: 'axis' })];
  for (const s of series) {
    let d = '';
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(i, s.values.length).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (!d) continue;
    if (area && s.values.length > 1) {
      const first = x(0, s.values.length).toFixed(1);
      children.push(svg('path', { d: `${d}L${W},${H}L${first},${H}Z`, class: 'area' }));
    }
    children.push(svg('path', { d, class: `line ${s.cls ?? ''}`, 'vector-effect': 'non-scaling-stroke' }));
  }
  const latest = series.map((s) => {
    const v = [...s.values].reverse().find((z) => z !== null);
    return `${s.label ? `${s.label} ` : ''}${v === undefined ? 'none' : fmtNum(v) + unit}`;
  }).join(', ');
  const text = all.length
    ? `${label}: latest ${latest}; peak ${fmtNum(Math.max(...all))}${unit} over the last ${Math.ceil(slots / 60)} min`
    : `${label}: no data yet`;
  const title = svg('title');
  title.textContent = text;
  node.replaceChildren(title, ...children);
  node.setAttribute('aria-label', text);
}

// ---------------------------------------------------------------- streams

// Streams are listed a page at a time, oldest first, by the API's `after`
// cursor: a hub with 100,000 streams is not fetched whole every second.
// `starts` holds the `after` of every page before this one, for "Previous".
// `?streams_page=N` in the console's address picks another page size.
const STREAMS_PAGE = Math.min(10000, Math.max(1, Math.floor(Number(new URLSearchParams(location.search).get('streams_page'))) || 1000));
const streams = {
  list: [], total: 0, sort: { key: 'id', dir: 1 }, selected: null, soon: 0,
  after: 0, next: null, starts: [], seq: 0,
};

// Column key -> [cell text, sort value].
const STREAM_COLUMNS = {
  id: (c) => [c.id, Number(c.id)],
  tenant: (c) => [c.tenant ?? HUB_WIDE, c.tenant ?? ''],
  account: (c) => [c.account, c.account ?? ''],
  session: (c) => [show(c.session), c.session ?? ''],
  selectors: (c) => [(c.selectors ?? []).join(' '), (c.selectors ?? []).join(' ')],
  ip: (c) => [c.ip, c.ip ?? ''],
  protocol: (c) => [c.protocol ?? c.kind, c.protocol ?? c.kind ?? ''],
  opened: (c) => [fmtTime(c.opened_at * 1000), c.opened_at],
  queue: (c) => [show(c.queue), c.queue ?? -1],
  sent: (c) => [show(c.sent), c.sent ?? -1],
};
const NUMERIC = new Set(['queue', 'sent']);
const DETAIL_ORDER = ['id', 'kind', 'protocol', 'tenant', 'account', 'session', 'ip', 'selectors', 'roles', 'groups',
  'opened_at', 'expires_at', 'queue', 'sent'];

async function pollStreams() {
  const seq = ++streams.seq;
  try {
    const data = await api(`/v1/connections?limit=${STREAMS_PAGE}&after=${streams.after}`);
    if (seq !== streams.seq) return; // a page change overtook this answer
    streams.list = data.connections ?? [];
    streams.total = data.total ?? streams.list.length;
    streams.next = data.next ?? null;
    if (!streams.list.length && streams.starts.length) {
      // Every stream of this page closed: show the last page that has some
      // (called directly: this poll still holds the `once` guard).
      streams.after = streams.starts.pop();
      await pollStreams();
      return;
    }
    setText($('#streams-error'), '');
    renderStreams();
  } catch (err) {
    report(err, $('#streams-error'));
  }
}

/** Moves one page on (`dir` 1) or back (-1), and lists it at once. */
function pageStreams(dir) {
  if (dir > 0 && streams.next !== null) {
    streams.starts.push(streams.after);
    streams.after = Number(streams.next);
  } else if (dir < 0 && streams.starts.length) {
    streams.after = streams.starts.pop();
  } else {
    return;
  }
  streams.next = null;
  if (streams.selected) {
    $('#stream-details').hidden = true;
    streams.selected = null;
  }
  renderPager();
  // At once, even while a poll of the old page is on its way: that answer
  // is dropped by its sequence number.
  pollStreams();
}

/** The pager's text and buttons: shown only when the streams fill more than one page. */
function renderPager() {
  const paged = streams.starts.length > 0 || streams.next !== null;
  $('#streams-pager').hidden = !paged;
  $('#streams-prev').disabled = !streams.starts.length;
  $('#streams-next').disabled = streams.next === null;
  // Earlier pages may have lost streams since they were shown, so the
  // page is named by its number, not by a range of positions.
  setText($('#streams-page'), streams.list.length
    ? `Page ${streams.starts.length + 1}: ${plural(streams.list.length, 'stream', 'streams')} of ${fmtNum(streams.total)} live, oldest first; the filter and sorting apply to this page.`
    : '');
}

/** An audit record said a stream opened or closed: refresh shortly (coalescing bursts). */
function streamsChanged() {
  if (session.view !== 'streams' || streams.soon) return;
  streams.soon = setTimeout(() => { streams.soon = 0; once('streams', pollStreams); }, 150);
}

function visibleStreams() {
  const needle = $('#streams-filter').value.trim().toLowerCase();
  const { key, dir } = streams.sort;
  const rows = streams.list
    .map((c) => ({ c, cells: Object.values(STREAM_COLUMNS).map((f) => String(f(c)[0] ?? '')) }))
    .filter((r) => !needle || r.cells.some((t) => t.toLowerCase().includes(needle)));
  rows.sort((a, b) => {
    const va = STREAM_COLUMNS[key](a.c)[1];
    const vb = STREAM_COLUMNS[key](b.c)[1];
    const order = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
    return dir * (order || Number(a.c.id) - Number(b.c.id));
  });
  return rows;
}

/**
 * Updates the table in place: rows are kept by stream id, so the focused row
 * or button survives a refresh (rebuilding every second would steal focus).
 */
function renderStreams() {
  const body = $('#streams-body');
  const existing = new Map([...body.querySelectorAll('tr[data-id]')].map((tr) => [tr.dataset.id, tr]));
  const focused = document.activeElement;
  const rows = visibleStreams().map(({ c, cells }) => {
    const tr = existing.get(c.id) ?? newStreamRow(c.id, cells.length);
    cells.forEach((t, i) => setText(tr.children[i], t));
    tr.classList.toggle('selected', streams.selected === c.id);
    return tr;
  });
  const same = rows.length === body.children.length && rows.every((tr, i) => body.children[i] === tr);
  if (!same) {
    body.replaceChildren(...rows);
    if (focused && body.contains(focused) && document.activeElement !== focused) focused.focus();
  }
  if (!rows.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 11, cls: 'hint', text: streams.list.length ? 'No stream matches the filter.' : 'No live streams.' })));
  }
  const shown = rows.length === streams.list.length ? '' : `${rows.length} shown of `;
  const listed = streams.list.length < streams.total ? ` (${fmtNum(streams.list.length)} on this page)` : '';
  setText($('#streams-count'), `${shown}${plural(streams.total, 'live stream', 'live streams')}${listed}`);
  renderPager();
  renderStreamDetails();
}

function newStreamRow(id, n) {
  const tr = el('tr', { 'data-id': id, tabindex: 0, 'aria-label': `Stream ${id}, show details` });
  tr.append(el('th', { scope: 'row' }));
  for (let i = 1; i < n; i++) tr.append(el('td', { cls: NUMERIC.has(Object.keys(STREAM_COLUMNS)[i]) ? 'n' : undefined }));
  tr.append(el('td', {}, el('button', { type: 'button', cls: 'danger', 'data-cut': id, text: 'Cut', 'aria-label': `Cut stream ${id}` })));
  return tr;
}

function sortStreams(key) {
  const s = streams.sort;
  streams.sort = { key, dir: s.key === key ? -s.dir : 1 };
  for (const b of $$('#streams-table th button[data-sort]')) {
    const th = b.parentElement;
    if (b.dataset.sort === key) th.setAttribute('aria-sort', streams.sort.dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
  renderStreams();
}

function openStreamDetails(id) {
  streams.selected = id;
  renderStreams();
  $('#stream-details').hidden = false;
  $('#stream-details-title').focus();
}

/** Every field of the selected connection, as the hub sent it. */
function renderStreamDetails() {
  const id = streams.selected;
  if (id === null) return;
  const c = streams.list.find((x) => x.id === id);
  setText($('#stream-details-title'), `Stream ${id}`);
  setText($('#stream-details-state'), c ? 'Open.' : 'This stream has closed.');
  $('#stream-details-cut').disabled = !c;
  if (!c) return;
  // Known fields in a useful order, then whatever else the hub sends.
  const rank = (k) => (DETAIL_ORDER.includes(k) ? DETAIL_ORDER.indexOf(k) : DETAIL_ORDER.length);
  const entries = Object.entries(c).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  const items = entries.flatMap(([k, v]) => {
    let text = Array.isArray(v) ? v.join(' ') : show(v);
    if (k.endsWith('_at') && typeof v === 'number') text = `${new Date(v * 1000).toISOString()} (${fmtTime(v * 1000)})`;
    return [el('dt', { text: k }), el('dd', { 'data-field': k, text: text || '—' })];
  });
  const dl = $('#stream-details-list');
  if (dl.textContent !== items.map((n) => n.textContent).join('')) dl.replaceChildren(...items);
}

function closeStreamDetails() {
  const id = streams.selected;
  streams.selected = null;
  $('#stream-details').hidden = true;
  renderStreams();
  $(`#streams-body tr[data-id="${CSS.escape(id ?? '')}"]`)?.focus();
}

/** Asks in a modal dialog; resolves true on Confirm (Escape and Cancel are false). */
function confirmDialog(title, text, yes) {
  const dialog = $('#confirm-dialog');
  setText($('#confirm-title'), title);
  setText($('#confirm-text'), text);
  setText($('#confirm-yes'), yes);
  dialog.returnValue = '';
  dialog.showModal();
  $('#confirm-no').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
  });
}

async function cutStream(id) {
  const c = streams.list.find((x) => x.id === id);
  const who = c ? ` of ${c.account}${c.tenant ? ` (${c.tenant})` : ''}` : '';
  if (!(await confirmDialog('Cut this stream?', `Stream ${id}${who} will receive "kicked" and close.`, 'Cut stream'))) return;
  try {
    await api(`/v1/connections/${enc(id)}`, { method: 'DELETE' });
    status(`Stream ${id} cut.`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) status(`Stream ${id} had already closed.`);
    else report(err, $('#streams-error'));
  }
  once('streams', pollStreams);
}

// ---------------------------------------------------------------- audit

const audit = {
  byId: new Map(), prev: null, more: true, loaded: false, seq: 0,
  tail: null, lastId: null, retry: 0, backoff: 1000, openedAt: 0, renderSoon: 0,
};

function auditFilters() {
  return { kind: $('#audit-kind').value, tenant: $('#audit-tenant').value.trim(), account: $('#audit-account').value.trim() };
}

function matchesFilters(r, f) {
  const tenant = !f.tenant || (f.tenant === HUB_WIDE ? !r.tenant : r.tenant === f.tenant);
  return tenant && (!f.kind || r.kind === f.kind) && (!f.account || r.account === f.account);
}

/** The query of a page; "(hub-wide)" asks for records without a tenant (the API's empty `tenant=`). */
function auditQuery(before, f) {
  const q = query({ before, limit: AUDIT_PAGE, ...f, tenant: f.tenant === HUB_WIDE ? '' : f.tenant });
  return f.tenant === HUB_WIDE ? `${q}&tenant=` : q;
}

/** What a record is about, from whichever detail field its kind uses. */
function auditReason(r) {
  const d = r.detail ?? {};
  if (r.kind === 'revocation_applied') {
    return [d.revocation?.type, d.closed !== undefined ? `closed ${d.closed}` : null].filter(Boolean).join(' · ');
  }
  if (r.kind === 'origin_forbidden') return [d.from, d.path].filter(Boolean).join(' → ');
  return [d.code, d.reason, d.cap, d.action].filter((v) => typeof v === 'string' && v).join(' — ');
}

/**
 * Loads a page matching the filters: the newest one (replacing what was loaded),
 * or with `older` the page before the oldest loaded (`before` = the last `prev`).
 */
async function loadAudit(older = false) {
  if (older && audit.prev === null) return;
  const f = auditFilters();
  // Filters may change while a page is on its way: only the latest query's answer counts.
  const seq = older ? audit.seq : ++audit.seq;
  try {
    const data = await api(`/v1/audit?${auditQuery(older ? audit.prev : NEWEST, f)}`);
    if (seq !== audit.seq) return;
    const records = data.records ?? [];
    if (!older) {
      // Live records newer than the page (arrived while it was on its way) stay; older
      // ones are replaced by the page, so the table never shows a gap. An empty partial
      // page looked back only to its `prev`: nothing older than that stays either.
      const newest = records.length ? records[records.length - 1].id : (data.partial === true ? data.prev ?? -1 : -1);
      const live = [...audit.byId.values()].filter((r) => r.id > newest && matchesFilters(r, f));
      audit.byId.clear();
      addRecords(live);
    }
    addRecords(records, older);
    audit.prev = data.prev ?? null;
    // A partial page stopped at the hub's bound on records looked at per
    // request (a rare filter): older matches may lie past it.
    audit.more = audit.prev !== null && (records.length >= AUDIT_PAGE || data.partial === true);
    audit.loaded = true;
    setText($('#audit-error'), '');
    if (older) {
      const more = data.partial === true ? ' Load older looks further back.' : '';
      status(records.length ? `Loaded ${plural(records.length, 'older record', 'older records')}.${more}` : `No older records${data.partial === true ? ' among the next ones looked at.' : '.'}${more}`);
    }
    renderAudit();
  } catch (err) {
    report(err, $('#audit-error'));
  }
}

/**
 * Adds records, within AUDIT_KEEP. Live and newest records push out the oldest (paging
 * back then continues from the oldest kept); records loaded by paging back push out the
 * newest instead, so Load older always shows what it loaded and keeps going back.
 */
function addRecords(records, older = false) {
  for (const r of records) audit.byId.set(r.id, r);
  if (audit.byId.size > AUDIT_KEEP) {
    const ids = [...audit.byId.keys()].sort((a, b) => a - b);
    if (older) {
      for (const id of ids.slice(AUDIT_KEEP)) audit.byId.delete(id);
    } else {
      for (const id of ids.slice(0, ids.length - AUDIT_KEEP)) audit.byId.delete(id);
      audit.prev = ids[ids.length - AUDIT_KEEP];
      audit.more = true;
    }
  }
}

/** Coalesces bursts of live records into one render per 100 ms. */
function renderAuditSoon() {
  if (!audit.renderSoon) audit.renderSoon = setTimeout(() => { audit.renderSoon = 0; renderAudit(); }, 100);
}

function renderAudit() {
  const f = auditFilters();
  const rows = [...audit.byId.values()].filter((r) => matchesFilters(r, f)).sort((a, b) => b.id - a.id);
  $('#audit-body').replaceChildren(...rows.map((r) => el('tr', { 'data-id': r.id, tabindex: 0, 'aria-label': `${r.kind} at ${fmtTime(r.time_ms)}, show details` },
    el('th', { scope: 'row', text: fmtTime(r.time_ms), title: new Date(r.time_ms).toISOString() }),
    el('td', { text: r.kind }),
    el('td', { text: show(r.tenant) }),
    el('td', { text: show(r.account) }),
    el('td', { text: auditReason(r) }),
    el('td', { text: show(r.ip) }),
    el('td', { text: show(r.stream) }))));
  if (!rows.length) $('#audit-body').append(el('tr', {}, el('td', { colspan: 7, cls: 'hint', text: audit.more ? 'No record matches among those looked at so far: Load older looks further back.' : 'No record matches.' })));
  $('#audit-older').disabled = !audit.more;
  setText($('#audit-count'), plural(rows.length, 'record', 'records'));
}

function showAuditRecord(id) {
  const r = audit.byId.get(Number(id));
  if (!r) return;
  setText($('#audit-details-title'), `Record ${r.id} — ${r.kind}`);
  // Pretty-printed JSON as text: nothing in a record is ever interpreted as markup.
  $('#audit-detail-json').textContent = JSON.stringify(r, null, 2);
  $('#audit-details').hidden = false;
  $('#audit-details-title').focus();
}

/**
 * Mints a short-lived SSE token for the audit stream: an API key names a
 * principal ("console", admin); a JWT can only mint for itself.
 */
async function mintAuditToken() {
  const body = session.credential.startsWith('hk_')
    ? { sub: 'console', subscribe: ['*'], admin: true, ttl: 300, ...(session.tenant ? { tenant: session.tenant } : {}) }
    : { ttl: 300 };
  return (await api('/v1/tokens', { method: 'POST', body })).token;
}

function tailStatus(text) { setText($('#audit-tail-status'), `Live tail: ${text}`); }

/** Opens the live tail, resuming after the last record it delivered so a reconnect loses nothing. */
async function startTail() {
  stopTail();
  $('#audit-reconnect').hidden = true;
  tailStatus('connecting…');
  const gen = session.gen;
  let token;
  try {
    token = await mintAuditToken();
  } catch (err) {
    if (err instanceof Stale) return;
    report(err);
    if (!session.credential) return;
    tailStatus(`unavailable (${err.message}); retrying`);
    if (!audit.loaded) loadAudit();
    retryTail();
    return;
  }
  if (gen !== session.gen) return;
  // EventSource cannot send headers; the single-use SSE token (never the credential) goes in the URL.
  const es = new EventSource(`/v1/audit/events?${query({ token, last_event_id: audit.lastId })}`);
  audit.tail = es;
  es.onopen = () => {
    audit.openedAt = Date.now();
    tailStatus('connected');
    // Loaded after the tail opened, so nothing falls between the page and the tail.
    if (!audit.loaded || audit.lastId === null) loadAudit();
  };
  es.addEventListener('audit', (e) => {
    const r = JSON.parse(e.data);
    audit.lastId = r.id;
    addRecords([r]);
    renderAuditSoon();
    if (r.kind === 'stream_opened' || r.kind === 'stream_closed') streamsChanged();
  });
  for (const type of ['expired', 'shutdown', 'revoked', 'kicked']) {
    es.addEventListener(type, () => {
      stopTail();
      if (type === 'kicked') {
        // An administrator cut this stream on purpose: do not reopen it behind their back.
        tailStatus('cut by an administrator');
        $('#audit-reconnect').hidden = false;
      } else {
        tailStatus(`${type}; reconnecting`);
        retryTail();
      }
    });
  }
  // A dropped stream would be retried by EventSource with the spent token: close and mint anew.
  es.onerror = () => {
    if (audit.tail !== es) return;
    stopTail();
    tailStatus('disconnected; retrying');
    retryTail();
  };
}

function retryTail() {
  if (!session.credential) return;
  // Back off 1 s, 2 s, 4 s… up to 30 s; a stream that stayed open a while starts over.
  if (audit.openedAt && Date.now() - audit.openedAt > 10000) audit.backoff = 1000;
  clearTimeout(audit.retry);
  audit.retry = setTimeout(startTail, audit.backoff);
  audit.backoff = Math.min(audit.backoff * 2, 30000);
}

function stopTail() {
  clearTimeout(audit.retry);
  audit.tail?.close();
  audit.tail = null;
}

// ---------------------------------------------------------------- actions: revocation

let pendingRevocation = null;

function updateRevokeFields() {
  const type = $('#revoke-type').value;
  const needed = REVOCATION_FIELDS[type];
  for (const field of $$('#revoke-form [data-field]')) {
    const name = field.dataset.field;
    const shown = name === 'tenant' || needed.includes(name);
    field.hidden = !shown;
    const input = field.querySelector('input');
    input.disabled = !shown; // hidden fields are neither validated nor sent
    input.required = needed.includes(name);
  }
  $('#revoke-tenant-note').hidden = type === 'tenant_revoke';
  hideRevokeConfirm();
}

function revocationBody() {
  const type = $('#revoke-type').value;
  const body = { type };
  for (const name of [...REVOCATION_FIELDS[type], 'tenant']) {
    const v = $(`#revoke-${name}`).value.trim();
    if (v) body[name] = v;
  }
  return body;
}

function describeRevocation(b) {
  const parts = [b.type, ...['account', 'session', 'role', 'jti'].filter((k) => b[k]).map((k) => `${k} ${b[k]}`)];
  parts.push(b.tenant ? `tenant ${b.tenant}` : 'every tenant the credential covers');
  return `${parts.join(' · ')}. The credentials it names are refused from now on.`;
}

function hideRevokeConfirm() {
  pendingRevocation = null;
  $('#revoke-confirm').hidden = true;
}

/** Step 1: a dry run says what would close; nothing changes yet. */
async function previewRevocation() {
  setText($('#revoke-error'), '');
  setText($('#revoke-result'), '');
  const body = revocationBody();
  try {
    const r = await api('/v1/revocations?dry_run=true', { method: 'POST', body });
    pendingRevocation = body;
    const n = r.would_close ?? 0;
    setText($('#revoke-confirm-text'), n ? `This will close ${plural(n, 'live stream', 'live streams')}.` : 'This will close no live stream.');
    setText($('#revoke-confirm-what'), describeRevocation(body));
    $('#revoke-confirm').hidden = false;
    $('#revoke-confirm-yes').focus();
  } catch (err) {
    report(err, $('#revoke-error'));
  }
}

/** Step 2: the revocation itself, with exactly the body that was previewed. */
async function applyRevocation() {
  const body = pendingRevocation;
  if (!body) return;
  hideRevokeConfirm();
  try {
    const r = await api('/v1/revocations', { method: 'POST', body });
    setText($('#revoke-result'), `Closed ${plural(r.closed ?? 0, 'stream', 'streams')}. ${r.applied ? 'The revocation is in force.' : 'Nothing was revoked.'}`);
  } catch (err) {
    report(err, $('#revoke-error'));
  }
  $('#revoke-type').focus();
}

// ---------------------------------------------------------------- actions: invalidation

function renderInvalidation(s) {
  const tags = (s.disabled_tags ?? []).map((t) => JSON.stringify(t)).join(', ') || 'none';
  setText($('#inval-state'), `Invalidations are ${s.paused ? 'PAUSED' : 'running'} · ${plural(s.held ?? 0, 'tag held', 'tags held')} · disabled tags: ${tags}`);
  $('#inval-pause').disabled = !!s.paused;
  $('#inval-resume').disabled = !s.paused;
}

/** Runs an invalidation call; a tenant admin's 403 is shown, and the controls are disabled. */
async function invalidation(path, body) {
  setText($('#inval-error'), '');
  try {
    const s = await api(path, body === undefined ? {} : { method: 'POST', body });
    renderInvalidation(s);
    return s;
  } catch (err) {
    report(err, $('#inval-error'));
    if (err instanceof ApiError && err.status === 403) {
      setText($('#inval-state'), 'Not available with this credential.');
      for (const b of $$('#inval-pause, #inval-resume, #inval-tags-form button')) b.disabled = true;
    }
    return null;
  }
}

const loadInvalidation = () => invalidation('/v1/invalidation');

/** "todos, users/42" -> [["todos"], ["users", 42]]; JSON ("[[...]]") is taken as is. */
function parseTags(text) {
  const t = text.trim();
  if (t.startsWith('[')) {
    const v = JSON.parse(t);
    if (!Array.isArray(v)) throw new Error('tags must be a JSON array');
    return v.map((tag) => (Array.isArray(tag) ? tag : [tag]));
  }
  return list(t).map((tag) => tag.split('/').filter(Boolean).map((s) => (/^-?\d{1,15}$/.test(s) ? Number(s) : s)));
}

async function changeTags(action) {
  let tags;
  try {
    tags = parseTags($('#inval-tags').value);
  } catch (err) {
    setText($('#inval-error'), `Cannot read the tags: ${err.message}`);
    return;
  }
  if (await invalidation(`/v1/invalidation/tags/${action}`, { tags })) status(`Tags ${action}d.`);
}

// ---------------------------------------------------------------- actions: test subscriber

let watch = null; // {abort: AbortController}

function watchLog(type, id, data, cls) {
  const log = $('#watch-log');
  log.append(el('li', { cls, 'data-type': type },
    el('span', { cls: 'w-time', text: fmtTime(Date.now()) }),
    el('span', { cls: 'w-type', text: type }),
    id ? el('span', { cls: 'w-id', text: `id ${id}` }) : '',
    el('span', { cls: 'w-data', text: data })));
  while (log.children.length > WATCH_KEEP) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

/**
 * A minimal SSE parser (the WHATWG rules that matter here). fetch() is used
 * rather than EventSource because EventSource only reports the event types one
 * listens for by name, and the operator must see every type the user gets.
 */
function sseParser(onEvent, onComment) {
  let buf = '';
  let ev = { type: '', id: '', data: [] };
  return (chunk) => {
    buf += chunk;
    const lines = buf.split(/\r\n|\r|\n/);
    buf = lines.pop();
    // A chunk ending in "\r" may be half of "\r\n": keep that line for the next chunk.
    if (lines.length && chunk.endsWith('\r')) { buf = `${lines.pop()}\r${buf}`; }
    for (const line of lines) {
      if (line === '') {
        if (ev.data.length) onEvent(ev.type || 'message', ev.id, ev.data.join('\n'));
        ev = { type: '', id: '', data: [] };
        continue;
      }
      if (line.startsWith(':')) { onComment(line.slice(1).trim()); continue; }
      const at = line.indexOf(':');
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
      if (field === 'event') ev.type = value;
      else if (field === 'data') ev.data.push(value);
      else if (field === 'id') ev.id = value;
    }
  };
}

function watchPrincipal() {
  const body = { sub: $('#watch-sub').value.trim(), subscribe: list($('#watch-topics').value), ttl: 300 };
  const tenant = $('#watch-tenant').value.trim();
  const sid = $('#watch-sid').value.trim();
  if (tenant) body.tenant = tenant;
  if (sid) body.sid = sid;
  const roles = list($('#watch-roles').value);
  const groups = list($('#watch-groups').value);
  if (roles.length) body.roles = roles;
  if (groups.length) body.groups = groups;
  return body;
}

async function startWatch() {
  stopWatch();
  setText($('#watch-error'), '');
  const body = watchPrincipal();
  let token;
  try {
    token = (await api('/v1/tokens', { method: 'POST', body })).token;
  } catch (err) {
    report(err, $('#watch-error'));
    return;
  }
  const current = { abort: new AbortController() };
  watch = current;
  $('#watch-stop').disabled = false;
  $('#watch-log').replaceChildren();
  setText($('#watch-state'), `Watching ${body.subscribe.join(' ')} as ${body.sub}${body.tenant ? ` (${body.tenant})` : ''}…`);
  try {
    // The SSE token goes in the Authorization header: it stays out of URLs and logs.
    const r = await fetch(`/v1/events?${body.subscribe.map((t) => `topic=${enc(t)}`).join('&')}`, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
      cache: 'no-store',
      signal: current.abort.signal,
    });
    if (!r.ok) {
      const e = (await r.json().catch(() => null))?.error ?? {};
      throw new ApiError(r.status, e.code ?? `http_${r.status}`, e.message ?? `HTTP ${r.status}`);
    }
    const feed = sseParser(
      (type, id, data) => watchLog(type, id, data, CONTROL_EVENTS.has(type) && !id ? 'control' : undefined),
      (comment) => { if (comment === 'connected') watchLog('(connected)', '', 'the stream is open', 'info'); },
    );
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      feed(value);
    }
    watchLog('(ended)', '', 'the hub closed the stream', 'info');
  } catch (err) {
    if (err.name === 'AbortError') return;
    setText($('#watch-error'), err instanceof ApiError ? `${err.message} (${err.code})` : `Stream failed: ${err.message}`);
  } finally {
    if (watch === current) {
      watch = null;
      $('#watch-stop').disabled = true;
      setText($('#watch-state'), 'Idle.');
    }
  }
}

function stopWatch() {
  if (!watch) return;
  watch.abort.abort();
  watch = null;
  $('#watch-stop').disabled = true;
  setText($('#watch-state'), 'Stopped.');
}

// ---------------------------------------------------------------- wiring

function onSubmit(sel, fn) {
  $(sel).addEventListener('submit', (e) => {
    e.preventDefault(); // first: the CSP's form-action 'none' forbids a real submission anyway
    fn(e);
  });
}

/** Rows open their details on click, Enter or Space (the Cut button inside is its own action). */
function onRowActivate(bodySel, fn) {
  const body = $(bodySel);
  body.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-id]');
    if (tr && !e.target.closest('button')) fn(tr.dataset.id);
  });
  body.addEventListener('keydown', (e) => {
    if ((e.key === 'Enter' || e.key === ' ') && e.target.matches('tr[data-id]')) {
      e.preventDefault();
      fn(e.target.dataset.id);
    }
  });
}

function wire() {
  onSubmit('#signin-form', () => {
    const input = $('#credential');
    const credential = input.value.trim().replace(/^Bearer\s+/i, '');
    input.value = ''; // the credential must not stay in the DOM
    if (credential) signIn(credential);
  });
  $('#signout').addEventListener('click', () => signOut());
  for (const b of $$('nav [data-view]')) b.addEventListener('click', () => showView(b.dataset.view));
  window.addEventListener('hashchange', () => { const v = viewFromHash(); if (v && session.credential) showView(v); });
  document.addEventListener('visibilitychange', tick);

  $('#streams-filter').addEventListener('input', renderStreams);
  $('#streams-prev').addEventListener('click', () => pageStreams(-1));
  $('#streams-next').addEventListener('click', () => pageStreams(1));
  for (const b of $$('#streams-table th button[data-sort]')) b.addEventListener('click', () => sortStreams(b.dataset.sort));
  onRowActivate('#streams-body', openStreamDetails);
  $('#streams-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-cut]');
    if (b) cutStream(b.dataset.cut);
  });
  $('#stream-details-close').addEventListener('click', closeStreamDetails);
  $('#stream-details-cut').addEventListener('click', () => streams.selected && cutStream(streams.selected));
  for (const id of ['#confirm-yes', '#confirm-no']) {
    $(id).addEventListener('click', () => $('#confirm-dialog').close(id === '#confirm-yes' ? 'yes' : ''));
  }

  // Filters act at once on what is loaded, and the server is asked for the newest matching page.
  let refilter = 0;
  const applyFilters = () => { clearTimeout(refilter); renderAudit(); refilter = setTimeout(() => loadAudit(), 250); };
  onSubmit('#audit-filters', applyFilters);
  $('#audit-kind').addEventListener('change', applyFilters);
  for (const id of ['#audit-tenant', '#audit-account']) $(id).addEventListener('input', applyFilters);
  $('#audit-clear').addEventListener('click', () => {
    $('#audit-kind').value = '';
    $('#audit-tenant').value = '';
    $('#audit-account').value = '';
    applyFilters();
  });
  $('#audit-older').addEventListener('click', () => loadAudit(true));
  $('#audit-reconnect').addEventListener('click', () => { audit.backoff = 1000; startTail(); });
  onRowActivate('#audit-body', showAuditRecord);
  $('#audit-details-close').addEventListener('click', () => { $('#audit-details').hidden = true; });

  $('#revoke-type').addEventListener('change', updateRevokeFields);
  $('#revoke-form').addEventListener('input', hideRevokeConfirm); // a changed form needs a new preview
  onSubmit('#revoke-form', previewRevocation);
  $('#revoke-confirm-yes').addEventListener('click', applyRevocation);
  $('#revoke-confirm-no').addEventListener('click', () => {
    hideRevokeConfirm();
    setText($('#revoke-result'), 'Cancelled: nothing was revoked.');
    $('#revoke-type').focus();
  });
  updateRevokeFields();

  $('#inval-pause').addEventListener('click', () => invalidation('/v1/invalidation/pause', {}));
  $('#inval-resume').addEventListener('click', () => invalidation('/v1/invalidation/resume', {}));
  onSubmit('#inval-tags-form', (e) => changeTags(e.submitter?.value === 'enable' ? 'enable' : 'disable'));

  onSubmit('#watch-form', startWatch);
  $('#watch-stop').addEventListener('click', stopWatch);
}

wire();
setText($('#signin-error'), sessionStorage.getItem(NOTICE_KEY) ?? '');
sessionStorage.removeItem(NOTICE_KEY);
const saved = sessionStorage.getItem(STORAGE_KEY);
if (saved) signIn(saved);
else $('#credential').focus();
