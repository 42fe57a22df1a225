import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { splitHostPort } from '../src/host-port.js';

describe('splitHostPort', () => {
  it('splits host:port and [v6]:port; an empty host stays empty', () => {
    expect(splitHostPort('127.0.0.1:9187')).toEqual({ host: '127.0.0.1', port: 9187 });
    expect(splitHostPort('[::1]:8008')).toEqual({ host: '::1', port: 8008 });
    expect(splitHostPort(':0')).toEqual({ host: '', port: 0 });
    fc.assert(
      fc.property(fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6().map((a) => `[${a}]`)), fc.integer({ min: 0, max: 65535 }), (host, port) => {
        expect(splitHostPort(`${host}:${port}`)).toEqual({ host: host.replace(/^\[|\]$/g, ''), port });
      }),
    );
  });

  it('refuses what is not host:port, naming it', () => {
    for (const bad of ['localhost', 'localhost:', 'host:65536', 'host:port', 'host:123456', '']) expect(() => splitHostPort(bad), bad).toThrow(JSON.stringify(bad));
  });
});
