import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { SAFETY_SHARDS, safetyScenarioNames } from '../support/safety-scenarios';

test('every safety scenario runs in exactly one shard file', () => {
  const files = readdirSync(__dirname).filter((f) => /^safety-scenarios-\d+\.test\.ts$/.test(f));
  expect(files).toHaveLength(SAFETY_SHARDS);
  expect(safetyScenarioNames().length).toBeGreaterThan(20);
  expect(path.basename(__filename)).toBe('safety-scenarios-shards.test.ts');
});
