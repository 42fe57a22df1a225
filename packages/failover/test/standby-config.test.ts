/**
 * primary_conninfo as guards and rejoin write it: whatever the settings'
 * text, it reads back as the same settings, never carries a password or a
 * database, and a repoint changes only where the standby connects.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conninfoSettings } from '@coffer/engine';
import { repointedConninfo, standbyConninfo } from '../src/standby-config.js';

const text = fc.string({ minLength: 1, maxLength: 24, unit: 'grapheme' });

describe('standby connection settings', () => {
  it('read back as written, whatever the text: no password, no database, the standby named', () => {
    fc.assert(
      fc.property(text, text, text, text, (user, rootcert, password, app) => {
        const source = `postgresql://${encodeURIComponent(user)}@db2.internal:5433/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(rootcert)}&password=${encodeURIComponent(password)}`;
        const line = standbyConninfo(source, app);
        expect(conninfoSettings(line)).toEqual({ host: 'db2.internal', port: '5433', user, sslmode: 'verify-full', sslrootcert: rootcert, application_name: app });
      }),
      { numRuns: 300 },
    );
  });

  it('keeps libpq settings it does not know from a keyword/value source, drops password and dbname', () => {
    const line = standbyConninfo("host=10.0.0.2 port=5432 user=replicator dbname=postgres password='s e' passfile='/etc/coffer/pg pass' keepalives_idle=5", 'db3');
    expect(line).toBe("host=10.0.0.2 port=5432 user=replicator passfile='/etc/coffer/pg pass' keepalives_idle=5 application_name=db3");
  });

  it('a repoint moves host, hostaddr and port and keeps the rest; none when it points there already', () => {
    fc.assert(
      fc.property(text, fc.option(fc.ipV4(), { nil: undefined }), fc.integer({ min: 1, max: 65535 }), (passfile, hostaddr, port) => {
        const current = standbyConninfo(`postgresql://rep@old.internal:5432/postgres?hostaddr=10.0.0.1&passfile=${encodeURIComponent(passfile)}`, 'db3');
        const before = conninfoSettings(current);
        const source = `host=new.internal ${hostaddr ? `hostaddr=${hostaddr} ` : ''}port=${port} user=other`;
        const moved = repointedConninfo(current, source, 'ignored')!;
        const after = conninfoSettings(moved);
        const { hostaddr: _old, ...rest } = before;
        expect(after).toEqual({ ...rest, host: 'new.internal', ...(hostaddr ? { hostaddr } : {}), port: String(port) });
        expect(repointedConninfo(moved, source, 'ignored')).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('a standby without the setting, or with one it cannot read, gets the whole line', () => {
    expect(repointedConninfo('', 'postgresql://rep@db1:5432/postgres', 'db2')).toBe('host=db1 port=5432 user=rep application_name=db2');
    expect(repointedConninfo("host='unterminated", 'postgresql://rep@db1:5432/postgres', 'db2')).toBe('host=db1 port=5432 user=rep application_name=db2');
  });
});
