/**
 * npm run simulate [-- <scenario.json>... | --all] [--json] [--timeline] [--seed <n>]
 *
 * The whole Autopatch loop on a laptop, no AWS account: an Inspector finding, triage, rebuild,
 * rescan, blue/green deployment, alarms and rollback, against a simulated account on a virtual
 * clock. See simulation/SCENARIOS.md.
 */
// First: the quiet environment must be in place before any AWS SDK or Powertools module loads.
import '../simulation/environment';
import { main } from '../simulation/cli';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`simulate: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
