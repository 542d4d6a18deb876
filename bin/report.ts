/**
 * npm run report -- [--table <name> | --simulate <scenario>] [--since <time>] [--until <time>]
 *                   [--json] [--html <file>]
 *
 * The ten remediation metrics (patch success rate, time to remediate, canary failure rate, rollback
 * frequency, patch-caused incidents, time to verification, fleet coverage, observability coverage,
 * lead time, cost per rollout) from the ledger's history, overall and per severity, account and
 * service. See README.md, "Report", and docs/metrics.md.
 */
const argv = process.argv.slice(2);

const run = async (): Promise<number> => {
  // A simulation needs its quiet, account-less environment before any AWS SDK module loads; a real
  // table needs the caller's own credentials, untouched.
  if (argv.some((a) => a === '--simulate' || a.startsWith('--simulate=')))
    await import('../simulation/environment');
  const { main } = await import('../report/cli');
  return main(argv);
};

run().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`report: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
