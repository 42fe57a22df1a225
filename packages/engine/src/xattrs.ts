/**
 * Extended attributes (POSIX ACLs are the `system.posix_acl_*` ones) of files
 * and directories. The binding takes paths as UTF-8 text and follows no
 * descriptor, so a name that is not UTF-8 keeps no attributes of its own (a
 * recorded limit; a hard link's other, UTF-8 name carries them instead). The
 * binding is loaded on first use: a restore without attributes never loads it.
 */
import { requireCommonJs } from './commonjs.js';
import { fsPath } from './names.js';

type Binding = typeof import('@napi-rs/xattr');
let binding: Binding | undefined;
function xattr(): Binding {
  binding ??= requireCommonJs('@napi-rs/xattr') as Binding;
  return binding;
}

/** Whether the binding can reach `path` (its name is UTF-8). */
export function xattrReachable(path: string): boolean {
  return typeof fsPath(path) === 'string';
}

/** Attribute names and values (base64), sorted by name; empty when the file system keeps none or the name is not UTF-8. */
export async function readXattrs(path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (!xattrReachable(path)) return out;
  const x = xattr();
  // Synchronous calls: each is one small system call (microseconds), cheaper than a trip through the thread
  // pool and back — which, once per file of a tree walked in order, added up to a tenth of a second per thousand files.
  for (const name of x.listAttributesSync(path).sort()) {
    if (name === RESTORE_MARKER_XATTR) continue;
    const value = x.getAttributeSync(path, name);
    if (value) out[name] = value.toString('base64');
  }
  return out;
}

/**
 * The attribute a files restore leaves on its target directory: which
 * repository and source it restored, so a later `--delta` knows the directory
 * is its own. Never backed up.
 */
export const RESTORE_MARKER_XATTR = 'user.coffer.restore';

/** One attribute's value as text, or undefined when it is absent or attributes are unsupported. */
export async function readXattrText(path: string, name: string): Promise<string | undefined> {
  if (!xattrReachable(path)) return undefined;
  const x = xattr();
  try {
    return x.getAttributeSync(path, name)?.toString('utf8') ?? undefined;
  } catch {
    return undefined;
  }
}

/** Sets one attribute (value in base64). */
export async function writeXattr(path: string, name: string, value: string): Promise<void> {
  const x = xattr();
  await x.setAttribute(path, name, Buffer.from(value, 'base64'));
}
