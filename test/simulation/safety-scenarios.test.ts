import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { SCENARIO_DIR } from '../../simulation/cli';
import { runScenario } from '../../simulation/runner';
import { loadScenario } from '../../simulation/scenario';

// A file of its own, so jest runs these beside the shipped scenarios on the other worker.
describe('safety scenarios', () => {
  // simulation/scenarios/safety/ states the safety promise under changes to the world, lost events and
  // ECS trouble: every one of them must hold.
  it.each(
    readdirSync(path.join(SCENARIO_DIR, 'safety'))
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.basename(f, '.json')),
  )('%s meets its expectations', async (name) => {
    const report = await runScenario(loadScenario(path.join(SCENARIO_DIR, 'safety', `${name}.json`)));
    expect({ mismatches: report.mismatches, errors: report.errors }).toEqual({
      mismatches: [],
      errors: [],
    });
  });
});
