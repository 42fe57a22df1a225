import { InvalidArgumentError } from '../errors.js';
import type { ByteRange } from './object-store.js';

export function checkRange(key: string, size: number, range: ByteRange): void {
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new InvalidArgumentError('byte range', `${offset}+${length} lies outside ${key} (${size} bytes)`);
  }
}
