/** The policy's JSON Schema, for editors (YAML language servers read it) and for `coffer policy schema`. */
import { toJSONSchema } from 'zod/v4/core';
import { policySchema } from './schema.js';

export function policyJsonSchema(): Record<string, unknown> {
  // Refinements (cron, time zones, references between names) have no JSON Schema form; the shape does.
  const schema = toJSONSchema(policySchema, { unrepresentable: 'any', io: 'input' }) as Record<string, unknown>;
  return { ...schema, $id: 'https://coffer.dev/schemas/backup-policy-1.json', title: 'Coffer backup policy, version 1' };
}
