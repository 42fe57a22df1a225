/** Listen and connect addresses as policies and options write them. */

/** `host:port` or `[v6]:port` split; an empty host stays empty (the caller says what that means). TypeError for anything else. */
export function splitHostPort(s: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new TypeError(`${JSON.stringify(s)} is not host:port`);
  return { host: m[1]!, port };
}
