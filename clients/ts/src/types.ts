// The request and answer bodies of Herald's HTTP API (docs/api.md), field
// for field: the names are the hub's own, so a body can be checked against
// the API reference by eye.

/**
 * Who may see an event. `"public"` is everyone allowed on the topic; an
 * object restricts by every field it sets (all must match, an empty list
 * matches nobody). The hub refuses `{}` as ambiguous.
 */
export type Audience =
  | 'public'
  | {
      /** The principal's tenant. A tenant-bound publisher's events always carry its tenant. */
      tenant?: string;
      /** Account `sub`s (in the event's own tenant). */
      users?: readonly string[];
      /** Session ids (`sid`); the hub hashes them on arrival. */
      sessions?: readonly string[];
      /** At least one of these roles. */
      roles?: readonly string[];
      /** At least one of these groups. */
      groups?: readonly string[];
    };

/** The topics of an event: `topics` (1 to 100 exact topics) or a single `topic`. */
export type EventTopics =
  | {
      /** 1 to 100 exact topics (not selectors); topics starting with `$` are reserved. */
      topics: readonly string[];
      topic?: never;
    }
  | {
      /** One exact topic. */
      topic: string;
      topics?: never;
    };

/** One event for `POST /v1/publish`. */
export type PublishEvent = EventTopics & {
  /** Required. A string is sent as is; any other JSON value is serialized compactly. */
  data: unknown;
  /** Required: who may see it. */
  audience: Audience;
  /** The SSE `event:` type (default `message`); the hub's control types are refused. */
  type?: string;
  /** A client id, unique within the tenant while in history; not made only of digits. */
  id?: string;
  /** Make this event the snapshot of its topics for its audience. */
  retain?: boolean;
  /** The SSE `retry:` field, whole milliseconds. */
  retry?: number;
};

/** The hub's answer for one published event. */
export interface Published {
  /** The event's id: the client id when given, else the sequence number as a string. */
  id: string;
  /** The hub's sequence number. */
  seq: number;
}

/** The body of `POST /v1/tokens`. */
export interface MintTokenRequest {
  /** Selectors the token may subscribe to (required). */
  subscribe: readonly string[];
  /** The subject. Required with an API key; with a user JWT it may only repeat the JWT's own. */
  sub?: string;
  /** The subject's tenant (a tenant-bound key may only mint inside its own). */
  tenant?: string;
  /** The session id (lets `session_revoke` end the token's streams). */
  sid?: string;
  /** Roles of the principal. */
  roles?: readonly string[];
  /** Groups of the principal. */
  groups?: readonly string[];
  /** Lifetime in seconds (default `limits.sse_token_ttl_secs`, at most `sse_token_max_ttl_secs`). */
  ttl?: number;
  /** Whether the token opens one stream only (default `true`). */
  single_use?: boolean;
  /** An admin token (only from a key holding the `admin` scope). */
  admin?: boolean;
}

/** The hub's answer to `POST /v1/tokens`. */
export interface MintedToken {
  /** The SSE token, `st_...`. */
  token: string;
  /** Unix seconds at which it expires. */
  expires_at: number;
  /** Seconds it has left. */
  expires_in: number;
}

/** Narrows a revocation that names an account to one tenant (hub-wide revokers only). */
interface TenantScope {
  /** Act on this tenant's accounts only. */
  tenant?: string;
}

/** A revocation in Herald's own shape, for `POST /v1/revocations`. */
export type Revocation =
  | ({ type: 'role_grant_revoke'; account: string; role: string } & TenantScope)
  | ({ type: 'session_revoke'; account: string; session: string } & TenantScope)
  | ({
      type: 'session_revoke_all' | 'token_revoke_all' | 'password_change' | 'logout';
      account: string;
    } & TenantScope)
  | ({ type: 'token_revoke'; jti: string } & TenantScope)
  | { type: 'tenant_revoke'; tenant: string };

/**
 * An application's own audit event, forwarded as is to `POST /v1/revocations`
 * (the target account wins; `"outcome": "failure"` revokes nothing).
 */
export interface AuditEventRevocation {
  /** The audit event's type, e.g. `logout` or `role_grant_revoke`. */
  type: string;
  /** `success` or `failure`. */
  outcome?: string;
  /** The acting account. */
  account_id?: string;
  /** The account acted upon. */
  target_account_id?: string;
  /** Details: `role`, `session_id` (the JWT `sid`), `tenant`. */
  metadata?: { role?: string; session_id?: string; tenant?: string };
}

/** The hub's answer to a revocation. */
export interface RevokeResult {
  /** Live streams it closed. */
  closed: number;
  /** Whether a deny rule was recorded (`false` for a forwarded event that revokes nothing). */
  applied: boolean;
}

/** A tag: 1 to 16 segments, strings or numbers (a TanStack Query key). */
export type Tag = readonly (string | number)[];

/** The body of `POST /v1/invalidate`. */
export interface InvalidateRequest {
  /** 1 to 100 tags. */
  tags: readonly Tag[];
  /** Who the invalidation is for, exactly as for a publish. */
  audience: Audience;
}

/** The hub's answer to an invalidation: published, held while paused, or dropped. */
export type Invalidated = Published | { held: true } | { dropped: true };
