/**
 * Longest suites first, also on a fresh clone. Jest's own sequencer orders by the durations it cached
 * on earlier runs; without them (a fresh clone, CI) it falls back to file size, and the slowest
 * suites here are small files (the safety scenario shards are three lines each), so they started
 * last and ran alone at the end. KNOWN_SECONDS (CPU seconds per suite on a quiet two-core machine,
 * roughly; only their order matters) stands in for the missing cache; a suite missing from it is
 * guessed from what it imports.
 */
const { readFileSync } = require('node:fs');
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

const KNOWN_SECONDS = {
  'test/simulation/safety-scenarios-1.test.ts': 40,
  'test/simulation/safety-scenarios-2.test.ts': 40,
  'test/simulation/safety-scenarios-3.test.ts': 40,
  'test/infra/organization.test.ts': 16,
  'test/cli/triage-cli.test.ts': 14,
  'test/infra/new-account.test.ts': 12,
  'test/infra/build-sources.test.ts': 12,
  'test/infra/autopatch.test.ts': 12,
  'test/unit/ledger-contention.test.ts': 12,
  'test/infra/dashboard.test.ts': 10,
  'test/infra/inventory.test.ts': 9,
  'test/iam/nag.test.ts': 8,
  'test/report/cli.test.ts': 8,
  'test/unit/ledger-entries.test.ts': 8,
  'test/unit/ledger.test.ts': 8,
  'test/infra/props.test.ts': 6,
  'test/unit/hostile-input.test.ts': 6,
  'test/workflow/paths.test.ts': 5,
  'test/iam/least-privilege.test.ts': 5,
};

/** A guess for a suite with no known duration: CDK synths and simulations are the slow ones. */
const guessSeconds = (file) => {
  let source = '';
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    return 2;
  }
  if (/safety-scenarios|runScenario|simulation\/runner/.test(source)) return 20;
  if (/synthAutopatch|support\/synth|aws-cdk-lib/.test(source)) return 8;
  return 2;
};

class LongestFirstSequencer extends Sequencer {
  sort(tests) {
    // Durations jest cached on this machine win; otherwise the known or guessed ones, in ms as jest keeps them.
    for (const test of tests) {
      const cached = this.time(test);
      const relative = path.relative(test.context.config.rootDir, test.path).split(path.sep).join('/');
      test.duration = cached ?? 1000 * (KNOWN_SECONDS[relative] ?? guessSeconds(test.path));
    }
    return [...tests].sort((a, b) => {
      const failedA = this.hasFailed(a);
      const failedB = this.hasFailed(b);
      if (failedA !== failedB) return failedA ? -1 : 1;
      return b.duration - a.duration;
    });
  }
}

module.exports = LongestFirstSequencer;
