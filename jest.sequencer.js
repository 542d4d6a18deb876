/**
 * Longest suites first, also on a fresh clone. Jest's own sequencer orders by the durations it cached
 * on earlier runs; without them (a fresh clone, CI) it falls back to file size, and the slowest
 * suites here are small files (the safety scenario shards are three lines each), so they started
 * last and ran alone at the end. KNOWN_SECONDS (CPU seconds per suite, measured; only their order
 * matters) stands in for the missing cache; a suite missing from it is guessed from what it imports
 * (the rest take a second or two).
 */
const { readFileSync } = require('node:fs');
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;

const KNOWN_SECONDS = {
  'test/simulation/safety-scenarios-2.test.ts': 44,
  'test/simulation/safety-scenarios-3.test.ts': 39,
  'test/simulation/safety-scenarios-1.test.ts': 30,
  'test/infra/autopatch.test.ts': 23,
  'test/report/cli.test.ts': 17,
  'test/infra/new-account.test.ts': 11,
  'test/unit/ledger-entries.test.ts': 10,
  'test/unit/ledger.test.ts': 10,
  'test/unit/ledger-contention.test.ts': 9,
  'test/cli/triage-cli.test.ts': 8,
  'test/infra/build-sources.test.ts': 8,
  'test/infra/organization.test.ts': 8,
  'test/bench/bench.test.ts': 8,
  'test/unit/inventory-index.test.ts': 6,
  'test/unit/hostile-input.test.ts': 6,
  // Cold, both synthesize the stacks simulation/stack.ts caches under node_modules/.cache.
  'test/iam/least-privilege.test.ts': 6,
  'test/iam/build-sources.test.ts': 5,
  'test/workflow/paths.test.ts': 5,
  'test/infra/props.test.ts': 5,
  'test/infra/dashboard.test.ts': 5,
  'test/infra/inventory.test.ts': 5,
  'test/workflow/definition.test.ts': 4,
  'test/workflow/lambdas/rescan-wait.test.ts': 4,
  'test/workflow/lambdas/reconcile.test.ts': 4,
  'test/docs/runbook.test.ts': 4,
  'test/workflow/spokes.test.ts': 4,
  'test/iam/nag.test.ts': 3,
  'test/unit/approve-cli.test.ts': 3,
  'test/unit/ledger-holds.test.ts': 3,
  'test/unit/preemption.test.ts': 3,
  'test/workflow/lambdas/finish.test.ts': 3,
  'test/unit/notify-digest.test.ts': 3,
  'test/iam/sdk-enforcement.test.ts': 3,
  'test/simulation/safety-scenarios-shards.test.ts': 1,
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
