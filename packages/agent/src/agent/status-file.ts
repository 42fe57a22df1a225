/** Reading what a running (or the last) agent wrote to status.json, for `coffer status`. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CofferError, InvalidArgumentError } from '@coffer/engine';
import type { AgentStatus } from './agent.js';

export interface AgentStatusReport {
  /** The agent that wrote it is running now. */
  running: boolean;
  status: AgentStatus;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The status an agent with this state directory last wrote; an error naming the file when there is none. */
export async function readAgentStatus(stateDir: string): Promise<AgentStatusReport> {
  const path = join(stateDir, 'status.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InvalidArgumentError('state directory', `${path} does not exist: no agent has run with this policy's agent.stateDir`);
    throw new CofferError('COFFER_FILE_ERROR', `cannot read ${path}: ${code ?? (e as Error).message}`);
  }
  let status: AgentStatus;
  try {
    status = JSON.parse(text) as AgentStatus;
  } catch {
    throw new CofferError('COFFER_FILE_ERROR', `${path} is not the JSON an agent writes`);
  }
  return { running: status.stoppedAt === undefined && alive(status.pid), status };
}
