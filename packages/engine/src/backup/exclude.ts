/**
 * Exclusion patterns for files backups, in the shape rsync, tar and restic
 * users know: `*` matches within a name, `**` across directories, `?` one
 * character; a pattern without `/` matches a name at any depth, one with `/`
 * matches the path from the backup root (a leading `/` anchors it there). An
 * excluded directory is left out with everything under it.
 */
import { InvalidArgumentError } from '../errors.js';

function toRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
      if (pattern[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** A predicate over paths relative to the backup root (`/`-separated) that says whether to leave the entry out. */
export function excludeMatcher(patterns: readonly string[]): (relPath: string) => boolean {
  const compiled = patterns.map((p) => {
    const trimmed = p.trim().replace(/\/+$/, '');
    if (!trimmed) throw new InvalidArgumentError('--exclude', `${JSON.stringify(p)} is an empty pattern`);
    const anchored = trimmed.includes('/');
    return { re: toRegExp(trimmed.replace(/^\//, '')), anchored };
  });
  return (relPath) => {
    const name = relPath.slice(relPath.lastIndexOf('/') + 1);
    return compiled.some(({ re, anchored }) => re.test(anchored ? relPath : name));
  };
}

/** Patterns from an exclude file: one a line; blank lines and lines starting with `#` are ignored. */
export function parseExcludeFile(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
}
