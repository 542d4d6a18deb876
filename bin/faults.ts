/**
 * npm run faults [-- [<scenario.json>] [--report-only] [--jobs <n>] [--filter <text>] [--json]]
 *
 * The fault matrix: every AWS call Autopatch makes × throttling / 5xx / access denied × once /
 * persistent / an outage that recovers, checked against the invariants. See simulation/SCENARIOS.md.
 */
// First: the quiet environment must be in place before any AWS SDK or Powertools module loads.
import '../simulation/environment';
import { mainFaults } from '../simulation/faults/cli';

mainFaults(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`faults: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
