/**
 * Connection settings as libpq reads them: a keyword/value string written
 * back from settings reads as the same settings, whatever their text, and a
 * URI yields the keywords its parts stand for.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { conninfoSettings, keywordValueString, parseKeywordValue } from '../src/postgres/connection-string.js';

const keyword = fc.stringMatching(/^[a-z_][a-z0-9_]{0,15}$/);
const value = fc.string({ maxLength: 24, unit: 'grapheme' });

describe('connection strings', () => {
  it('keyword/value settings survive being written and read back', () => {
    fc.assert(
      fc.property(fc.dictionary(keyword, value, { maxKeys: 6 }), (settings) => {
        expect(parseKeywordValue(keywordValueString(settings), { anyKeyword: true })).toEqual(settings);
      }),
      { numRuns: 500 },
    );
  });

  it("a URI's host, port, user, password, database and parameters become keywords", () => {
    expect(conninfoSettings('postgresql://app%20user:p%40ss@db.internal:5433/shop%2Feu?sslmode=verify-full')).toEqual({
      host: 'db.internal',
      port: '5433',
      user: 'app user',
      password: 'p@ss',
      dbname: 'shop/eu',
      sslmode: 'verify-full',
    });
    expect(conninfoSettings('postgres://db')).toEqual({ host: 'db' });
  });

  it('names the setting at fault in what it refuses', () => {
    expect(() => conninfoSettings("host='unterminated", 'drills.evacuate cluster')).toThrow(/drills\.evacuate cluster.*unterminated/);
  });
});
