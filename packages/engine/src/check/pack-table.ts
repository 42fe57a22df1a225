/**
 * What `check` knows of each pack, by number: its size in the store, who
 * names it, how far its chunks reach, whether a backup or WAL file needs it. Parallel arrays, not
 * an object per pack: the table is what check holds per pack of the
 * repository (about 100 bytes each, with the name), beside its id table,
 * which is a setting.
 */
export const LISTED_BY_INDEX = 1;
export const LOCATED_BY_WAL = 2;
export const NEEDED = 4;
/** Read whole and proven, or found damaged (reported once). */
export const VERIFIED = 8;
export const DAMAGED = 16;

export class PackTable {
  private readonly numbers = new Map<string, number>();
  readonly shas: string[] = [];
  /** The first index object or WAL record that names the pack, for messages ('' for none yet). */
  private readonly namers: string[] = [];
  /** Where its last chunk ends, by what names it. */
  private readonly ends: number[] = [];
  /** Its size in the store's listing, or -1. */
  private readonly sizes: number[] = [];
  private readonly flags: number[] = [];

  get size(): number {
    return this.shas.length;
  }

  /** The pack's number, numbering it when new; `namer` is kept when it is the first. */
  number(sha: string, namer = ''): number {
    let n = this.numbers.get(sha);
    if (n === undefined) {
      n = this.shas.length;
      this.numbers.set(sha, n);
      this.shas.push(sha);
      this.namers.push(namer);
      this.ends.push(0);
      this.sizes.push(-1);
      this.flags.push(0);
    } else if (namer && !this.namers[n]) this.namers[n] = namer;
    return n;
  }

  /** Records the pack's size as the store lists it. */
  stored(n: number, size: number): void {
    this.sizes[n] = size;
  }

  /** Its size in the store, or undefined when the listing did not have it. */
  storedSize(n: number): number | undefined {
    const s = this.sizes[n]!;
    return s < 0 ? undefined : s;
  }

  find(sha: string): number | undefined {
    return this.numbers.get(sha);
  }

  mark(n: number, flag: number): void {
    this.flags[n] = this.flags[n]! | flag;
  }

  /** Whether it has any of the `flag` bits. */
  has(n: number, flag: number): boolean {
    return (this.flags[n]! & flag) !== 0;
  }

  reach(n: number, end: number): void {
    if (end > this.ends[n]!) this.ends[n] = end;
  }

  dataEnd(n: number): number {
    return this.ends[n]!;
  }

  namedBy(n: number): string {
    return this.namers[n] || 'needed';
  }
}
