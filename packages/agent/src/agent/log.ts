/**
 * The agent's log: one JSON line per event (pino) with the job, cluster and
 * repository it is about, or a short human line on a terminal. What goes in
 * is names, locations, statuses and coffer's own messages — never a secret:
 * secrets live in children's environments, which are never logged.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type { Logger };

export interface LogSettings {
  level?: 'debug' | 'info' | 'warn' | 'error';
  /** json (default when the output is not a terminal) or pretty. */
  format?: 'json' | 'pretty';
  /** Where lines go (default: standard output). */
  destination?: NodeJS.WritableStream;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** A pino stream that writes each line for people: time, level, message, then key=value. */
function prettyStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        const o = JSON.parse(line) as Record<string, unknown>;
        const extra = Object.entries(o)
          .filter(([k]) => !OMIT.has(k))
          .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`);
        const time = new Date(o.time as number).toISOString().slice(11, 19);
        out.write(`${time} ${(LEVELS[o.level as number] ?? String(o.level)).padEnd(5)} ${String(o.msg ?? '')}${extra.length ? `  ${extra.join(' ')}` : ''}\n`);
      }
      done();
    },
  });
}

export function createLogger(settings: LogSettings = {}): Logger {
  const out = settings.destination ?? process.stdout;
  const tty = (out as NodeJS.WriteStream).isTTY === true;
  const format = settings.format ?? (tty ? 'pretty' : 'json');
  const options = { level: settings.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  if (format === 'pretty') return pino({ ...options, timestamp: pino.stdTimeFunctions.epochTime }, prettyStream(out));
  return pino(options, out);
}
