/**
 * herald.js — a dependency-free browser helper for Herald streams.
 *
 * `EventSource` cannot send an Authorization header, and a long-lived JWT in
 * a URL ends up in logs. So before every (re)connect this helper asks YOUR
 * backend for a fresh short-lived, single-use SSE token (your backend calls
 * Herald's `POST /v1/tokens` with its API key), opens the stream with it,
 * and resumes from the last event it saw, so a reconnect loses nothing.
 *
 * @example
 * import { connect } from './herald.js';
 * const stream = connect({
 *   url: 'https://realtime.example.com',
 *   topics: ['orders.*'],
 *   mintToken: async () => (await fetch('/api/sse-token', { method: 'POST' })).json().then((r) => r.token),
 *   onEvent: (e) => console.log(e.type, e.id, e.data),
 *   onControl: (c) => { if (c.type === 'reset') refetchEverything(); },
 * });
 * // later: stream.close();
 *
 * Works as an ES module, and as a classic script (it then defines `window.Herald`).
 */

/** Control events Herald sends on a stream, and whether to reconnect after each. */
const CONTROL = {
  revoked: false, // access ended: do not come back with the same identity
  kicked: false, // an administrator cut this stream
  expired: true, // the token expired: mint a fresh one and resume
  shutdown: true, // the hub is restarting: resume on the next node
  evicted: true, // this session opened too many streams; the oldest goes
  overflow: true, // the client fell behind; resume from history
  reset: null, // history no longer covers the last id: refetch state (stream continues)
};

/**
 * Whether a control event is one the hub itself sent. Herald refuses these
 * types on publish, and as a second line of defence the helper checks their
 * shape: the hub writes control events without an `id:` line (so the
 * event's `lastEventId` is still the one of the last real event), except
 * `overflow`, whose `id:` is the resume point also named in its data.
 */
function fromHub(type, e, streamLastId, reason) {
  if (typeof reason !== 'string') return false;
  if (type === 'overflow') return true;
  return e.lastEventId === streamLastId;
}

/**
 * Opens a Herald stream that re-mints its token and resumes on every reconnect.
 *
 * @param {object} options
 * @param {string} options.url Herald's base URL, e.g. `https://realtime.example.com`.
 * @param {string[]} options.topics Topic selectors (`orders.42`, `orders.*`, `https://x/{id}`).
 * @param {() => Promise<string>} options.mintToken Returns a fresh SSE token from your backend.
 * @param {string[]} [options.eventTypes] Event types to listen for besides `message`.
 *   List every type published on the subscribed topics: the helper recognises
 *   the hub's control events by the id of the last event it was handed, and
 *   an event of a type it does not listen to still moves the stream's id.
 * @param {(e: {type: string, id: string, data: string, json: () => any}) => void} options.onEvent
 *   Called for every event.
 * @param {(c: {type: string, reason?: string}) => void} [options.onControl]
 *   Called for `revoked`, `expired`, `kicked`, `shutdown`, `evicted`, `overflow` and `reset`.
 * @param {(err: unknown) => void} [options.onError] Called when minting or connecting fails.
 * @param {string} [options.lastEventId] Resume from this id on the first connect.
 * @param {number} [options.maxBackoffMs=30000] Longest wait between reconnects.
 * @returns {{ close: () => void, lastEventId: () => string | undefined }}
 */
export function connect(options) {
  const { url, topics, mintToken, onEvent, onControl = () => {}, onError = () => {} } = options;
  const eventTypes = options.eventTypes ?? [];
  const maxBackoff = options.maxBackoffMs ?? 30000;
  let lastId = options.lastEventId;
  let source = null;
  let closed = false;
  let attempt = 0;
  let timer = null;

  const schedule = () => {
    if (closed) return;
    // Jittered exponential backoff: many tabs must not reconnect in step.
    const base = Math.min(maxBackoff, 500 * 2 ** Math.min(attempt, 10));
    attempt += 1;
    timer = setTimeout(open, base / 2 + Math.random() * (base / 2));
  };

  const deliver = (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    attempt = 0;
    onEvent({ type: e.type, id: e.lastEventId, data: e.data, json: () => JSON.parse(e.data) });
  };

  async function open() {
    if (closed) return;
    let token;
    try {
      token = await mintToken();
    } catch (err) {
      onError(err);
      schedule();
      return;
    }
    if (closed) return;
    const u = new URL('/v1/events', url);
    for (const t of topics) u.searchParams.append('topic', t);
    u.searchParams.set('token', token);
    // Each connect uses a new URL, so the browser's own Last-Event-ID header
    // is not available: the query parameter carries it.
    if (lastId) u.searchParams.set('last_event_id', lastId);
    const es = new EventSource(u);
    source = es;
    // The last id this stream delivered: a control event that changes it
    // carried an `id:` line, so it was not written by the hub.
    let streamLastId = '';
    const onData = (e) => {
      streamLastId = e.lastEventId;
      deliver(e);
    };
    es.onmessage = onData;
    for (const type of eventTypes) es.addEventListener(type, onData);
    for (const [type, reconnect] of Object.entries(CONTROL)) {
      es.addEventListener(type, (e) => {
        let body;
        try {
          body = JSON.parse(e.data);
        } catch {
          body = {};
        }
        const reason = body?.reason;
        if (!fromHub(type, e, streamLastId, reason)) return;
        const hubId = typeof body.last_event_id === 'string' && /^[0-9]+$/.test(body.last_event_id);
        if (type === 'overflow' && hubId && body.last_event_id === e.lastEventId) {
          // Resume exactly where the hub says delivery stopped, even if
          // nothing had arrived yet.
          lastId = body.last_event_id;
        }
        onControl({ type, reason });
        if (reconnect === null) return;
        es.close();
        if (reconnect) schedule();
        else closed = true;
      });
    }
    es.onerror = () => {
      // The native retry would reuse a spent single-use token: close and
      // reconnect ourselves with a fresh one.
      es.close();
      if (source === es) {
        onError(new Error('stream interrupted'));
        schedule();
      }
    };
  }

  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
    },
    lastEventId: () => lastId,
  };
}

if (typeof window !== 'undefined') window.Herald = { connect };
