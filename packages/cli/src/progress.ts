/** A progress bar on a TTY; nothing at all otherwise (cron logs stay clean). */
import cliProgress from 'cli-progress';
import { humanBytes } from '@coffer/engine';

export { humanBytes };

export interface Progress {
  update(done: number, total: number, detail: string): void;
  stop(): void;
}

export function progressBar(label: string, stream: NodeJS.WriteStream, enabled: boolean): Progress {
  if (!enabled || !stream.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {percentage}% | {doneH} / {totalH} | {detail}`,
      hideCursor: true,
      clearOnComplete: true,
      fps: 8,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, detail) {
      const payload = { doneH: humanBytes(done), totalH: humanBytes(total), detail };
      if (!started) {
        bar.start(Math.max(total, 1), done, payload);
        started = true;
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(done, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

