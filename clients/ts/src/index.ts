/**
 * Publisher helpers for Herald: publish events, mint SSE tokens for your
 * users, revoke access. For Node >= 20 (global `fetch`); no dependencies.
 *
 * @example
 * import { Herald } from 'herald-client';
 * const herald = new Herald({ url: 'https://realtime.example.com', credential: process.env.HERALD_API_KEY! });
 * await herald.publish({ topic: 'orders.42', audience: { users: ['u42'] }, data: { status: 'shipped' } });
 */
import type {
  AuditEventRevocation,
  Invalidated,
  InvalidateRequest,
  MintedToken,
  MintTokenRequest,
  Published,
  PublishEvent,
  Revocation,
  RevokeResult,
} from './types.js';

export type * from './types.js';

/** Codes of errors that did not come from the hub's own JSON error body. */
export type LocalErrorCode = 'network_error' | 'timeout' | 'unexpected_response';

/**
 * A refusal or failure. For an answer from the hub, `status` is the HTTP
 * status and `code`/`message` are its JSON error's (`{"error": {"code",
 * "message"}}`, e.g. `400 audience_required`, `401 invalid_token`, `413
 * event_too_large`). Without a usable answer `status` is `0` (or the HTTP
 * status of a body that was not Herald's) and `code` is a {@link LocalErrorCode}.
 */
export class HeraldError extends Error {
  /** The HTTP status, or `0` when no answer arrived. */
  readonly status: number;
  /** The hub's `error.code` (snake_case), or a {@link LocalErrorCode}. */
  readonly code: string;
  /** Seconds from the `Retry-After` header (`429`, `503`), when sent. */
  readonly retryAfter: number | undefined;

  /** Builds an error; `cause` keeps the underlying failure, if any. */
  constructor(status: number, code: string, message: string, options: { retryAfter?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HeraldError';
    this.status = status;
    this.code = code;
    this.retryAfter = options.retryAfter;
  }
}

/** A credential, or a function returning the current one (e.g. a JWT that is renewed). */
export type Credential = string | (() => string | Promise<string>);

/** Options of {@link Herald}. */
export interface HeraldOptions {
  /** The hub's base URL, e.g. `https://realtime.example.com` (a path prefix is kept). */
  url: string | URL;
  /** A backend API key (`hk_...`) or a user JWT, sent as `Authorization: Bearer`. */
  credential: Credential;
  /** Give up on a request after this many milliseconds (default 10000). */
  timeoutMs?: number;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof globalThis.fetch;
}

/** A client for Herald's publisher API: one per hub and credential. */
export class Herald {
  readonly #base: string;
  readonly #credential: Credential;
  readonly #timeoutMs: number;
  readonly #fetch: typeof globalThis.fetch;

  /** Creates a client; no request is made until a method is called. */
  constructor(options: HeraldOptions) {
    // Joined by hand, not with `new URL(path, base)`, so a hub mounted under
    // a path prefix keeps it.
    this.#base = String(options.url).replace(/\/+$/, '');
    this.#credential = options.credential;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** Publishes one event (`POST /v1/publish`); resolves once it is durable. */
  publish(event: PublishEvent): Promise<Published> {
    return this.#post<Published>('/v1/publish', event);
  }

  /**
   * Publishes several events atomically (`{"events": [...]}`, at most
   * `limits.max_batch`); resolves with their ids in order.
   */
  async publishBatch(events: readonly PublishEvent[]): Promise<Published[]> {
    const answer = await this.#post<{ events: Published[] }>('/v1/publish', { events });
    return answer.events;
  }

  /**
   * Mints an SSE token (`POST /v1/tokens`) for one of your users: hand it to
   * the browser, which opens `GET /v1/events?token=...`. Single-use and
   * short-lived by default; mint a fresh one for every connect.
   */
  mintToken(request: MintTokenRequest): Promise<MintedToken> {
    return this.#post<MintedToken>('/v1/tokens', request);
  }

  /**
   * Revokes access (`POST /v1/revocations`): matching live streams close with
   * `event: revoked` and a deny rule keeps the old credentials out.
   */
  revoke(revocation: Revocation): Promise<RevokeResult> {
    return this.#post<RevokeResult>('/v1/revocations', revocation);
  }

  /** Forwards an application's own audit event to `POST /v1/revocations` as is. */
  forwardAuditEvent(event: AuditEventRevocation): Promise<RevokeResult> {
    return this.#post<RevokeResult>('/v1/revocations', event);
  }

  /** Tells subscribers of `$tags` which cached queries went stale (`POST /v1/invalidate`). */
  invalidate(request: InvalidateRequest): Promise<Invalidated> {
    return this.#post<Invalidated>('/v1/invalidate', request);
  }

  async #post<T>(path: string, body: unknown): Promise<T> {
    const credential = typeof this.#credential === 'function' ? await this.#credential() : this.#credential;
    let response: Response;
    try {
      response = await this.#fetch(this.#base + path, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${credential}`,
          'content-type': 'application/json',
          accept: 'application/json',
        },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.#timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      if (err instanceof Error && err.name === 'TimeoutError') {
        throw new HeraldError(0, 'timeout', `no answer from ${this.#base} within ${this.#timeoutMs} ms`, { cause: err });
      }
      throw new HeraldError(0, 'network_error', `cannot reach ${this.#base}: ${String(err)}`, { cause: err });
    }
    const text = await response.text();
    const json = parseJson(text);
    if (response.ok) {
      if (json === undefined) {
        throw new HeraldError(response.status, 'unexpected_response', `${path} answered ${response.status} without a JSON body`);
      }
      return json as T;
    }
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
    const options = retryAfter === undefined ? {} : { retryAfter };
    const error = hubError(json);
    if (error) throw new HeraldError(response.status, error.code, error.message, options);
    throw new HeraldError(response.status, 'unexpected_response', `${path} answered ${response.status}: ${text.slice(0, 200)}`, options);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The `{"error": {"code", "message"}}` body every Herald error carries. */
function hubError(json: unknown): { code: string; message: string } | undefined {
  if (typeof json !== 'object' || json === null || !('error' in json)) return undefined;
  const error: unknown = json.error;
  if (typeof error !== 'object' || error === null || !('code' in error) || typeof error.code !== 'string') return undefined;
  const message = 'message' in error && typeof error.message === 'string' ? error.message : error.code;
  return { code: error.code, message };
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim());
}
