import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { SCENARIO_DIR } from '../../simulation/cli';
import { runScenario } from '../../simulation/runner';
import { loadScenario } from '../../simulation/scenario';

/** How many test files share the safety scenarios (test/simulation/safety-scenarios-<n>.test.ts). */
export const SAFETY_SHARDS = 3;

/** Every safety scenario, by name, sorted. */
export const safetyScenarioNames = (): string[] =>
  readdirSync(path.join(SCENARIO_DIR, 'safety'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => path.basename(f, '.json'))
    .sort();

/**
 * One shard of the safety scenarios (every SAFETY_SHARDS-th, from `shard`). They are split over
 * several files so that jest's two workers share them: as one file they were the last 100 s of a
 * run on a fresh clone, where jest has no timings yet and starts small files last.
 */
export const describeSafetyShard = (shard: number): void => {
  describe(`safety scenarios (${shard + 1} of ${SAFETY_SHARDS})`, () => {
    // simulation/scenarios/safety/ states the safety promise under changes to the world, lost events
    // and ECS trouble: every one of them must hold.
    it.each(safetyScenarioNames().filter((_, i) => i % SAFETY_SHARDS === shard))(
      '%s meets its expectations',
      async (name) => {
        const report = await runScenario(loadScenario(path.join(SCENARIO_DIR, 'safety', `${name}.json`)));
        expect({ mismatches: report.mismatches, errors: report.errors }).toEqual({
          mismatches: [],
          errors: [],
        });
      },
    );
  });
};
