/**
 * A BIND server (Debian's `bind9`) on a loopback port, authoritative for one
 * test zone that accepts RFC 2136 updates signed with a TSIG key, as a DNS
 * provider's primary would. Started by the test that needs it; fails loudly
 * when `named` is not installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './pg.js';

export interface BindServer {
  port: number;
  zone: string;
  keyName: string;
  /** The key's secret, base64 (as BIND and tsig-keygen write it). */
  secret: string;
  /** The A records of `name` as the server answers now. */
  addresses(name: string): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startBind(zone = 'db.test', records: Record<string, string> = {}): Promise<BindServer> {
  const dir = await mkdtemp(join(tmpdir(), 'coffer-bind-'));
  const port = await freePort();
  const keyName = 'coffer-failover';
  const secret = randomBytes(32).toString('base64');
  await writeFile(
    join(dir, 'named.conf'),
    `options {
  directory "${dir}";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  pid-file "${dir}/named.pid";
  recursion no;
  dnssec-validation no;
  allow-query { any; };
};
controls { };
key "${keyName}" { algorithm hmac-sha256; secret "${secret}"; };
zone "${zone}" { type primary; file "${dir}/${zone}.zone"; allow-update { key "${keyName}"; }; };
`,
  );
  await writeFile(
    join(dir, `${zone}.zone`),
    [`$TTL 60`, `@ IN SOA ns.${zone}. admin.${zone}. 1 60 60 600 60`, `@ IN NS ns.${zone}.`, `ns IN A 127.0.0.1`, ...Object.entries(records).map(([n, a]) => `${n} IN A ${a}`), ''].join('\n'),
  );
  let child: ChildProcess;
  try {
    child = spawn('/usr/sbin/named', ['-g', '-c', join(dir, 'named.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new Error(`these tests need BIND (Debian: bind9): ${(e as Error).message}`);
  }
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (e) => (log += `\n${e.message}`));
  const resolver = new Resolver({ timeout: 1000, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const until = Date.now() + 30_000;
  for (;;) {
    const up = await resolver.resolve4(`ns.${zone}`).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (child.exitCode !== null || Date.now() > until) throw new Error(`named did not start (is bind9 installed?):\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    zone,
    keyName,
    secret,
    addresses: (name) => resolver.resolve4(name).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOTFOUND' || e.code === 'ENODATA' ? [] : Promise.reject(e))),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
