/** Timeline history files (`0000000N.history`): their names and their lines. */
import { parseLsn } from './layout.js';

export function historyName(tli: number): string {
  return `${tli.toString(16).toUpperCase().padStart(8, '0')}.history`;
}

/** Parses a timeline history file into [parent timeline, the LSN where it ended], in file order; a line that does not parse is a problem. */
export function parseHistory(text: string, name: string, problems: string[]): [number, bigint][] {
  const out: [number, bigint][] = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})\b/.exec(t);
    if (!m) {
      problems.push(`${name}: line ${JSON.stringify(t.slice(0, 80))} is not "timeline LSN reason"`);
      continue;
    }
    out.push([Number(m[1]), parseLsn(m[2]!)]);
  }
  return out;
}
