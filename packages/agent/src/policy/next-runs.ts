/** When each scheduled job of a policy runs next, by its cron expression and time zone. */
import { Cron } from 'croner';
import type { Policy } from './schema.js';

export interface NextRun {
  /** The job (`drill verify` for the nightly drill). */
  job: string;
  /** The cluster or repository it is about. */
  about: string;
  cron: string;
  timeZone: string;
  next: Date | undefined;
}

export function nextRuns(policy: Policy, from = new Date()): NextRun[] {
  return policy.schedules
    .filter((s) => s.cron !== undefined)
    .map((s) => {
      const timeZone = s.timeZone ?? 'UTC';
      const next = new Cron(s.cron!, { paused: true, timezone: timeZone }).nextRun(from) ?? undefined;
      return { job: s.drill === 'verify' ? 'drill verify' : s.job, about: s.cluster ?? s.repository ?? '', cron: s.cron!, timeZone, next };
    });
}
