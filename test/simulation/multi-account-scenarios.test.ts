/**
 * The organization scenarios that need Lambdas of their own: each runs with a fresh copy of every
 * module. The hub's Lambda handlers read their settings (AUTOPATCH_FLEET, say) once, at cold start, and
 * a process that ran another scenario first would keep that one's (simulation/SCENARIOS.md, Limits).
 * The other organization scenarios are shipped ones (test/simulation/scenarios.test.ts runs them).
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';

const DIR = path.join(__dirname, '..', '..', 'simulation', 'scenarios', 'organization');

describe('organization scenarios with settings of their own', () => {
  it.each(readdirSync(DIR).filter((f) => f.endsWith('.json')))(
    '%s meets its expectations',
    async (file) => {
      let result: { mismatches: readonly string[]; errors: readonly string[] } | undefined;
      await jest.isolateModulesAsync(async () => {
        const { runScenario } = await import('../../simulation/runner');
        const { loadScenario } = await import('../../simulation/scenario');
        const report = await runScenario(loadScenario(path.join(DIR, file)));
        result = { mismatches: report.mismatches, errors: report.errors };
      });
      expect(result).toEqual({ mismatches: [], errors: [] });
    },
    // A cold cache synthesizes the hub with its fleet and organization settings first.
    300_000,
  );
});
