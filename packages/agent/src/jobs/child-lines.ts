/** A child process's output as whole lines: chunks cut anywhere, each complete line handed on once. */
export function byLine(onLine: (line: string) => void): (chunk: Buffer) => void {
  let rest = '';
  return (chunk: Buffer) => {
    const parts = (rest + chunk.toString('utf8')).split('\n');
    rest = parts.pop()!;
    for (const line of parts) onLine(line);
  };
}
