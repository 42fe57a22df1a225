/**
 * A failover test topology with real parts: a primary (db1, 127.0.0.2) and
 * a streaming standby built by `coffer restore --standby` (db2, 127.0.0.3;
 * and db3, 127.0.0.4, when asked for), the same port on each as on hosts; BIND serving the name clients use;
 * a decision store (a directory, or a radosgw bucket); and `coffer failover`
 * roles started as processes with a policy file per role (so one role can
 * reach the store or a server through a proxy the test cuts).
 */
import { appendFile, chown, mkdir, writeFile } from 'node:fs/promises';
import { Resolver } from 'node:dns/promises';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterEach } from 'vitest';
import { FileStore, shellQuote, type ObjectStore } from '@coffer/engine';
import { HttpFailsafeQuorum, ObjectStoreDecisions } from '@coffer/failover';
import { startBind, type BindServer } from './bind.js';
import { COFFER_COMMAND, startCoffer } from './cli.js';
import { archivingCluster, Cluster, cofferAsPostgres, debianInstall, freePort, postgresUser } from './pg.js';
import { newBucket, s3Server, s3Store } from './s3.js';

export const NAME = 'primary.db.test';
export const ADDRESSES = { db1: '127.0.0.2', db2: '127.0.0.3', db3: '127.0.0.4' } as const;
export type Node = keyof typeof ADDRESSES;

const env = { COFFER_PASSPHRASE: 'failover passphrase' };

export interface TopologyOptions {
  /** The standby is synchronous (synchronous_standby_names = db2). */
  synchronous?: boolean;
  /** The decision store in a radosgw bucket (default: a directory). */
  s3?: boolean;
  /** A second asynchronous standby of db1, db3. */
  thirdNode?: boolean;
  /** The policy has the cluster and its repository, and the new primary's guard backs it up once promoted. */
  backupAfterPromotion?: boolean;
  /** The policy has the cluster and its repository, and a named standby replays the repository's WAL before promotion. */
  replayFrom?: boolean;
  /** The primary lease's time-to-live in seconds (default: the policy's default, 10). */
  ttlSeconds?: number;
  /** Failsafe: observers listen for promise requests, guards ask them (default true; false: a primary cut off from the store fences). */
  failsafe?: boolean;
  /**
   * Each node has a rejoin command (`failover.nodes[].rejoin`): after a switchover away from it, its guard
   * runs `coffer failover rejoin` and starts its server again, as the postgres user.
   */
  rejoin?: boolean;
}

export const OBSERVERS = ['region-a', 'region-b', 'witness'] as const;
export type ObserverName = (typeof OBSERVERS)[number];

export interface RoleOptions {
  /** The S3 endpoint this role reaches the decision store through (a proxy). */
  storeEndpoint?: string;
  /** How this role reaches each node, when not directly (a TCP proxy's port on 127.0.0.1). */
  nodeVia?: Partial<Record<Node, number>>;
  /** More top-level policy lines (e.g. an agent's metrics and state directory). */
  extra?: string[];
  /** How this role reaches each observer's failsafe endpoint, when not directly (a TCP proxy's port on 127.0.0.1). */
  observerVia?: Partial<Record<ObserverName, number>>;
}

export class Topology {
  readonly logs: string[] = [];
  private readonly roles: ReturnType<typeof startCoffer>[] = [];
  private policies = 0;
  private writers = 0;

  private constructor(
    readonly work: { dir: string; cleanup: () => Promise<void> },
    /** The repository both archive to (the standby once promoted: its archive_command came with the backup). */
    readonly repo: string,
    readonly primary: Cluster,
    readonly standby: Cluster,
    readonly bind: BindServer,
    readonly port: number,
    readonly decisionStore: ObjectStore,
    private readonly decisionYaml: (endpoint?: string) => string,
    readonly roleEnv: Record<string, string>,
    /** db3, when the topology has it. */
    readonly third: Cluster | undefined,
    private readonly options: TopologyOptions,
    /** Each observer's failsafe port on 127.0.0.1, when failsafe is on. */
    readonly failsafePorts: Partial<Record<ObserverName, number>>,
  ) {}

  /** The nodes this topology has. */
  get nodes(): Node[] {
    return this.third ? ['db1', 'db2', 'db3'] : ['db1', 'db2'];
  }

  /** A node's cluster. */
  cluster(node: Node): Cluster {
    const c = node === 'db1' ? this.primary : node === 'db2' ? this.standby : this.third;
    if (!c) throw new Error(`this topology has no ${node}`);
    return c;
  }

  static async build(prefix: string, options: TopologyOptions = {}): Promise<Topology> {
    const install = debianInstall();
    const bind = await startBind('db.test', { primary: ADDRESSES.db1 });
    const { work, repo, cluster: primary } = await archivingCluster(prefix, install, env.COFFER_PASSPHRASE);
    const port = primary.port;
    await primary.query('CREATE TABLE commits (id bigint PRIMARY KEY, side text)');
    const b = await cofferAsPostgres(['--repo', repo, 'backup'], { ...env, ...primary.pgEnv });
    if (b.status !== 0) throw new Error(b.stderr);
    const { uid, gid } = postgresUser();
    const restoreStandby = async (node: Node): Promise<Cluster> => {
      const parent = join(work.dir, node === 'db2' ? 'sb' : `sb-${node}`);
      await mkdir(parent);
      await chown(parent, uid, gid);
      const standbyDir = join(parent, 'standby');
      const r = await cofferAsPostgres(['--repo', repo, 'restore', 'latest', '--to', standbyDir, '--standby'], env);
      if (r.status !== 0) throw new Error(r.stderr);
      await appendFile(join(standbyDir, 'postgresql.auto.conf'), `primary_conninfo = 'host=${ADDRESSES.db1} port=${port} user=postgres application_name=${node}'\n`);
      return Cluster.adopt(install, standbyDir, { passphrase: env.COFFER_PASSPHRASE });
    };
    const standby = await restoreStandby('db2');
    const third = options.thirdNode ? await restoreStandby('db3') : undefined;
    await primary.stop();
    await primary.start({ listen_addresses: ADDRESSES.db1, ...(options.synchronous ? { synchronous_standby_names: 'db2' } : {}) });
    // archive_mode always: the standby archives what it receives too, so WAL the old primary never archived
    // (it died first) is in the repository; once promoted, its history file first.
    await standby.start({ archive_mode: 'always', hot_standby: 'on', listen_addresses: ADDRESSES.db2, port });
    await third?.start({ archive_mode: 'always', hot_standby: 'on', listen_addresses: ADDRESSES.db3, port });
    const roleEnv: Record<string, string> = { COFFER_TEST_TSIG: bind.secret };
    let decisionStore: ObjectStore;
    let decisionYaml: (endpoint?: string) => string;
    if (options.s3) {
      const s = s3Server();
      const bucket = await newBucket();
      decisionStore = s3Store(bucket, { prefix: 'decide' });
      Object.assign(roleEnv, { COFFER_TEST_AK: s.accessKeyId, COFFER_TEST_SK: s.secretAccessKey });
      decisionYaml = (endpoint = s.endpoint) => `{ location: "s3://${bucket}/decide", region: ${s.region}, endpoint: "${endpoint}", credentials: { accessKeyId: { env: COFFER_TEST_AK }, secretAccessKey: { env: COFFER_TEST_SK } } }`;
    } else {
      const dir = join(work.dir, 'decisions');
      decisionStore = new FileStore(dir);
      decisionYaml = () => `{ location: ${dir} }`;
    }
    // A rejoin command starts the server from the guard's environment: archive_command needs the key and this Node.
    if (options.backupAfterPromotion || options.replayFrom || options.rejoin) roleEnv.COFFER_PASSPHRASE = env.COFFER_PASSPHRASE;
    if (options.rejoin) roleEnv.COFFER_NODE = process.execPath;
    const failsafePorts: Partial<Record<ObserverName, number>> = {};
    if (options.failsafe !== false) for (const o of OBSERVERS) failsafePorts[o] = await freePort();
    return new Topology(work, repo, primary, standby, bind, port, decisionStore, decisionYaml, roleEnv, third, options, failsafePorts);
  }

  get decisions(): ObjectStoreDecisions {
    return new ObjectStoreDecisions(this.decisionStore, 'main');
  }

  /** Writes a policy file for a role and returns its path. */
  async policy(role: RoleOptions = {}): Promise<string> {
    const file = join(this.work.dir, `policy-${++this.policies}.yaml`);
    // Straight connections as libpq keyword/value strings, those through a proxy as URIs: roles take both.
    const conn = (n: Node) => (role.nodeVia?.[n] !== undefined ? `postgresql://postgres@127.0.0.1:${role.nodeVia[n]}/postgres` : `host=${ADDRESSES[n]} port=${this.port} user=postgres dbname=postgres`);
    await writeFile(
      file,
      [
        'version: 1',
        ...(this.options.backupAfterPromotion || this.options.replayFrom
          ? ['clusters:', `  main: { connection: "host=${ADDRESSES.db1} port=${this.port} user=postgres dbname=postgres", repository: main }`, 'repositories:', `  main: { location: ${this.repo}, keys: { passphrase: { env: COFFER_PASSPHRASE } } }`]
          : ['clusters: {}', 'repositories: {}']),
        'schedules: []',
        ...(role.extra ?? []),
        'failover:',
        '  cluster: main',
        ...(this.options.backupAfterPromotion ? ['  backupAfterPromotion: main'] : []),
        ...(this.options.replayFrom ? ['  replayFrom: main'] : []),
        `  decision: ${this.decisionYaml(role.storeEndpoint)}`,
        '  nodes:',
        // Standbys stream straight from each other, whatever way this role reaches the servers.
        ...this.nodes.map((n) => `    - { name: ${n}, connection: "${conn(n)}", replication: "host=${ADDRESSES[n]} port=${this.port} user=postgres", address: ${ADDRESSES[n]}${this.options.rejoin ? `, rejoin: ${JSON.stringify(this.rejoinCommand(n, file))}` : ''} }`),
        `  observers: [${OBSERVERS.join(', ')}]`,
        ...(this.options.ttlSeconds !== undefined ? [`  lease: { ttlSeconds: ${this.options.ttlSeconds} }`] : []),
        ...(this.options.failsafe !== false
          ? ['  failsafe:', `    stateDir: ${join(this.work.dir, 'failsafe')}`, '    endpoints:', ...OBSERVERS.map((o) => `      ${o}: "127.0.0.1:${role.observerVia?.[o] ?? this.failsafePorts[o]}"`)]
          : []),
        '  cutover:',
        `    dns: { server: 127.0.0.1, port: ${this.bind.port}, zone: db.test, name: ${NAME}, ttlSeconds: 1, key: { name: ${this.bind.keyName}, secret: { env: COFFER_TEST_TSIG } } }`,
        '',
      ].join('\n'),
    );
    return file;
  }

  /** A node's rejoin command: `coffer failover rejoin` and the server started as the tests start it, as the postgres user. */
  private rejoinCommand(n: Node, policyFile: string): string[] {
    const c = this.cluster(n);
    const bin = debianInstall().bin;
    const opts = `-p ${this.port} -c listen_addresses=${ADDRESSES[n]} -c unix_socket_directories=${dirname(c.data)} -c archive_mode=always -c hot_standby=on`;
    const script = [
      `${shellQuote(COFFER_COMMAND)} failover rejoin --policy ${shellQuote(policyFile)} --node ${n} --pgdata ${shellQuote(c.data)} --pg-bin ${shellQuote(bin)}`,
      `${shellQuote(join(bin, 'pg_ctl'))} -D ${shellQuote(c.data)} -o ${shellQuote(opts)} -l ${shellQuote(`${c.data}.log`)} -w -t 120 start`,
    ].join(' && ');
    return ['runuser', '-u', 'postgres', '--', 'sh', '-c', script];
  }

  /** Starts `coffer failover <args>` with a policy of its own; its output goes to `logs`. */
  async start(args: string[], role: RoleOptions = {}): Promise<ReturnType<typeof startCoffer>> {
    const p = startCoffer(['failover', ...args, '--policy', await this.policy(role), '--json'], this.roleEnv);
    this.roles.push(p);
    const i = this.logs.push(`--- ${args.slice(0, 3).join(' ')}\n`) - 1;
    p.child.stdout!.on('data', (d: Buffer) => (this.logs[i] += d.toString()));
    p.child.stderr!.on('data', (d: Buffer) => (this.logs[i] += d.toString()));
    return p;
  }

  /** The process of the role started with these arguments (`guard --node db1`, `watch --observer witness`). */
  role(args: string): ReturnType<typeof startCoffer>['child'] {
    const i = this.logs.findIndex((l) => l.startsWith(`--- ${args}\n`));
    if (i < 0) throw new Error(`no role ${args}`);
    return this.roles[i]!.child;
  }

  /** The usual cast: init, both guards, three observers (each reaching what `roles` says). */
  async startAll(roles: Partial<Record<Node | ObserverName, RoleOptions>> = {}): Promise<void> {
    const init = startCoffer(['failover', 'init', '--policy', await this.policy(), '--primary', 'db1'], this.roleEnv);
    const r = await init.done;
    if (r.status !== 0) throw new Error(`failover init: ${r.stderr}`);
    // Observers first: with failsafe they vote no one down until they have run a promise's length.
    for (const o of OBSERVERS) await this.start(['watch', '--observer', o], roles[o]);
    await this.start(['guard', '--node', 'db1', '--pgdata', this.primary.data], roles.db1);
    await this.start(['guard', '--node', 'db2', '--pgdata', this.standby.data], roles.db2);
    if (this.third) await this.start(['guard', '--node', 'db3', '--pgdata', this.third.data], roles.db3);
    const until = Date.now() + 60_000;
    while ((await this.decisions.watchLease(1, { clock: () => performance.now() }).ended()) !== false) {
      if (Date.now() > until) throw new Error(`the primary's guard did not take its lease\n${this.logs.join('\n')}`);
      await new Promise((res) => setTimeout(res, 100));
    }
    // With failsafe on, every observer able to vote (and to promise) before the test begins.
    const quorum = new HttpFailsafeQuorum({ cluster: 'main', endpoints: Object.fromEntries(Object.entries(this.failsafePorts).map(([o, port]) => [o, `127.0.0.1:${port}`])), timeoutMs: 1000 });
    while (Object.keys(this.failsafePorts).length > 0 && !Object.values(await quorum.states()).every((st) => 'promising' in st && st.promising)) {
      if (Date.now() > until) throw new Error(`the observers did not come up\n${this.logs.join('\n')}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  async sql<T extends pg.QueryResultRow>(node: Node, text: string): Promise<T[]> {
    const c = new pg.Client({ host: ADDRESSES[node], port: this.port, user: 'postgres', database: 'postgres' });
    c.on('error', () => undefined);
    await c.connect();
    try {
      return (await c.query<T>(text)).rows;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /**
   * Inserts numbered rows marked `side` — through the DNS name, resolved again
   * for every new connection, or straight at one address — and remembers
   * every commit acknowledged with when, and where.
   */
  writer(side: string, to: 'name' | Node) {
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([`127.0.0.1:${this.bind.port}`]);
    const acked: { id: number; at: number; address: string }[] = [];
    let stopped = false;
    // Each writer numbers its rows in a range of its own.
    let next = this.writers++ * 1_000_000_000 + 1;
    const done = (async () => {
      while (!stopped) {
        let client: pg.Client | undefined;
        try {
          const address = to === 'name' ? (await resolver.resolve4(NAME))[0]! : ADDRESSES[to];
          client = new pg.Client({ host: address, port: this.port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000, query_timeout: 5000 });
          client.on('error', () => undefined);
          await client.connect();
          while (!stopped) {
            const id = next++;
            await client.query('INSERT INTO commits VALUES ($1, $2)', [id, side]);
            acked.push({ id, at: performance.now(), address });
          }
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        } finally {
          await client?.end().catch(() => undefined);
        }
      }
    })();
    return { acked, last: () => acked.at(-1), stop: async () => ((stopped = true), await done) };
  }

  async close(): Promise<void> {
    for (const p of this.roles) p.child.kill('SIGCONT'), p.child.kill('SIGKILL');
    await Promise.all(this.roles.map((p) => p.done.catch(() => undefined)));
    await this.standby.stop('immediate').catch(() => undefined);
    await this.third?.stop('immediate').catch(() => undefined);
    await this.primary.stop('immediate').catch(() => undefined);
    await this.bind.stop();
    await this.work.cleanup();
  }
}

/**
 * For a test file: the topology its test builds (`scope.t`) and what else it
 * must stop (`scope.cleanups`), closed after each test whatever happened.
 */
export function topologyScope(): { t: Topology | undefined; cleanups: (() => Promise<void>)[] } {
  const scope: { t: Topology | undefined; cleanups: (() => Promise<void>)[] } = { t: undefined, cleanups: [] };
  afterEach(async () => {
    for (const c of scope.cleanups.splice(0)) await c().catch(() => undefined);
    await scope.t?.close();
    scope.t = undefined;
  });
  return scope;
}
