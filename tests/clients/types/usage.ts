// Compiled with `tsc --noEmit` by scripts/clients.sh: the helper's types
// accept what the hub accepts and refuse, at compile time, bodies the hub
// would refuse. Each `@ts-expect-error` fails the build if the line compiles.
import { Herald, HeraldError, type MintedToken, type PublishEvent, type Revocation } from 'herald-client';

const herald = new Herald({ url: 'https://realtime.example.com', credential: 'hk_example' });

const event: PublishEvent = { topics: ['orders.42'], audience: { users: ['u42'] }, data: { status: 'shipped' }, retain: true };
const single: PublishEvent = { topic: 'orders.42', audience: 'public', data: 'text', type: 'order.updated', id: 'ord-42', retry: 3000 };

// @ts-expect-error the audience is required
const noAudience: PublishEvent = { topic: 'orders.42', data: 'x' };
// @ts-expect-error `data` is required
const noData: PublishEvent = { topic: 'orders.42', audience: 'public' };
// @ts-expect-error `topic` and `topics` are exclusive
const both: PublishEvent = { topic: 'a', topics: ['b'], audience: 'public', data: 'x' };
// @ts-expect-error the hub knows no `private` field on native events
const unknownField: PublishEvent = { topic: 'a', audience: 'public', data: 'x', private: true };

const session: Revocation = { type: 'session_revoke', account: 'u42', session: 's1' };
// @ts-expect-error a session revocation names the session
const noSession: Revocation = { type: 'session_revoke', account: 'u42' };
// @ts-expect-error not a revocation type
const unknownType: Revocation = { type: 'delete_everything', account: 'u42' };

export async function example(): Promise<MintedToken | undefined> {
  try {
    await herald.publish(event);
    await herald.publishBatch([event, single]);
    await herald.revoke(session);
    // @ts-expect-error `subscribe` is required
    await herald.mintToken({ sub: 'u42' });
    return await herald.mintToken({ sub: 'u42', sid: 's1', subscribe: ['orders.*'], ttl: 300 });
  } catch (err) {
    if (err instanceof HeraldError) {
      const status: number = err.status;
      const code: string = err.code;
      const retryAfter: number | undefined = err.retryAfter;
      console.error(status, code, retryAfter, err.message);
    }
    return undefined;
  }
}

export { noAudience, noData, both, unknownField, noSession, unknownType };
