/**
 * DNS cutover against a real BIND: Coffer's own RFC 2136 update, signed with
 * TSIG, replaces the name's address; a wrong secret or an unknown key is
 * refused with the server's answer named and changes nothing; a name outside
 * the zone is refused before anything is sent. The secret is in no message.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CutoverError, InvalidArgumentError } from '@coffer/engine';
import { DnsUpdateError, pointName, type DnsUpdateTarget } from '@coffer/failover';
import { startBind, type BindServer } from '../support/bind.js';

let bind: BindServer;
beforeAll(async () => {
  bind = await startBind('db.test', { primary: '127.0.0.2' });
}, 60_000);
afterAll(async () => {
  await bind?.stop();
});

const target = (over: Partial<DnsUpdateTarget> = {}): DnsUpdateTarget => ({
  server: '127.0.0.1',
  port: bind.port,
  zone: 'db.test',
  name: 'primary.db.test',
  ttl: 5,
  key: { name: bind.keyName, algorithm: 'hmac-sha256', secret: Buffer.from(bind.secret, 'base64') },
  ...over,
});

describe('DNS cutover (RFC 2136 with TSIG, against BIND)', () => {
  it('replaces the name\'s address, and only that', async () => {
    expect(await bind.addresses('primary.db.test')).toEqual(['127.0.0.2']);
    await pointName(target(), '127.0.0.3');
    expect(await bind.addresses('primary.db.test')).toEqual(['127.0.0.3']);
    await pointName(target(), '127.0.0.3');
    expect(await bind.addresses('primary.db.test')).toEqual(['127.0.0.3']);
    // A new name in the zone is created.
    await pointName(target({ name: 'Other.DB.test.' }), '127.0.0.4');
    expect(await bind.addresses('other.db.test')).toEqual(['127.0.0.4']);
    expect(await bind.addresses('ns.db.test')).toEqual(['127.0.0.1']);
  });

  it('any address, any number of times: the server ends with that one', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.ipV4(), { minLength: 1, maxLength: 4 }), async (addresses) => {
        for (const a of addresses) await pointName(target({ name: 'prop.db.test' }), a);
        expect(await bind.addresses('prop.db.test')).toEqual([addresses.at(-1)]);
      }),
      { numRuns: 15 },
    );
  });

  it('a wrong secret or an unknown key is refused, naming the answer, and changes nothing; the secret is in no message', async () => {
    await pointName(target(), '127.0.0.2');
    const wrong = Buffer.from('not the secret at all, 32 bytes!');
    const e1 = await pointName(target({ key: { name: bind.keyName, algorithm: 'hmac-sha256', secret: wrong } }), '127.0.0.9').then(() => new Error('accepted'), (e: unknown) => e as Error);
    expect(e1).toBeInstanceOf(DnsUpdateError);
    expect(e1).toBeInstanceOf(CutoverError);
    expect((e1 as DnsUpdateError).rcode).toMatch(/BADSIG|NOTAUTH/);
    expect(e1.message).not.toContain(wrong.toString('base64'));
    expect(e1.message).not.toContain(bind.secret);
    const e2 = await pointName(target({ key: { name: 'nobody', algorithm: 'hmac-sha256', secret: Buffer.from(bind.secret, 'base64') } }), '127.0.0.9').then(() => new Error('accepted'), (e: unknown) => e as Error);
    expect((e2 as DnsUpdateError).rcode).toMatch(/BADKEY|NOTAUTH/);
    expect(e2.message).not.toContain(bind.secret);
    expect(await bind.addresses('primary.db.test')).toEqual(['127.0.0.2']);
  });

  it('a name outside the zone or a bad address is refused before anything is sent; an unreachable server is named', async () => {
    await expect(pointName(target({ name: 'primary.elsewhere.test' }), '127.0.0.3')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(pointName(target(), 'not-an-address')).rejects.toBeInstanceOf(InvalidArgumentError);
    const down = await pointName(target({ port: 1, timeoutMs: 1000 }), '127.0.0.3').then(() => new DnsUpdateError('-', 'accepted', ''), (e: unknown) => e as DnsUpdateError);
    expect(down.rcode).toBe('UNREACHABLE');
    expect(await bind.addresses('primary.db.test')).toEqual(['127.0.0.2']);
  });
});
