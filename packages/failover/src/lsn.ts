/** WAL positions (`X/Y`) as byte counts, for differences and comparisons (exact below 2^53 bytes). */
import { parseLsn } from '@coffer/engine';

export const lsnBytes = (lsn: string): number => Number(parseLsn(lsn));
