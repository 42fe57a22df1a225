/**
 * A network of its own for a sandbox server. Settings are not isolation: a
 * restored subscription connects to its publisher, a foreign server to its
 * host, a scheduled job to whatever it calls. The sandbox server starts in a
 * new network namespace whose only interface is loopback, so nothing it runs
 * reaches another machine or a server of this one; Coffer talks to it over a
 * Unix socket, which is a file and crosses namespaces.
 *
 * As root: `unshare --net`, loopback brought up, then the server user. As
 * another user: a user namespace maps that user to itself and grants the
 * rights over the new network namespace only (`--keep-caps`), so PostgreSQL
 * (which refuses root) still runs as its own user.
 */
import { spawnSync } from 'node:child_process';
import type { OsUser } from './postgres-sandbox.js';

const UP = 'PATH="$PATH:/usr/sbin:/sbin" ip link set lo up';

/** The command line that runs `argv` in a new network namespace with only loopback, as `user` when we are root. */
export function isolatedArgv(argv: readonly string[], user: OsUser | undefined): string[] {
  if (process.getuid?.() === 0) {
    const as = user ? `exec setpriv --reuid=${user.uid} --regid=${user.gid} --clear-groups -- "$@"` : 'exec "$@"';
    return ['unshare', '--net', '--', 'sh', '-c', `${UP} && ${as}`, 'sh', ...argv];
  }
  return ['unshare', '--user', '--map-current-user', '--net', '--keep-caps', '--', 'sh', '-c', `${UP} && exec "$@"`, 'sh', ...argv];
}

let probed: string | undefined | null = null;

/** Why isolation cannot work here (unshare, ip or namespaces missing), or undefined when it can; probed once. */
export function isolationProblem(): string | undefined {
  if (probed !== null) return probed;
  const argv = isolatedArgv(['true'], undefined);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  probed = r.error ? `${argv[0]}: ${r.error.message} (install util-linux and iproute2)` : r.status !== 0 ? `${r.stderr.trim() || `exit ${r.status}`} (run as root, or allow unprivileged user namespaces)` : undefined;
  return probed;
}
