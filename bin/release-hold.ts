#!/usr/bin/env node
/**
 * npm run release-hold -- <cluster/service> [--cve <CVE>]... [--list] [--table <ledger table>] [--region <region>]
 *
 * Lifts a churn hold. After a remediation of a service ends RolledBack, PatchIneffective or
 * BuildFailed, Autopatch holds each of its (service, CVE) pairs: later findings of that CVE on the
 * same image digests are reported, not rebuilt, until a new image digest or a new fixed version
 * appears. Once the cause is fixed (the alarm, the buildspec, the base image), release the hold so
 * the next finding is remediated again. `--list` shows the holds and changes nothing.
 *
 * Exit status: 0 done (also when there was nothing to release); 1 AWS error; 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type Hold, Ledger } from '../lambdas/shared/ledger';

/** Where the ledger table name comes from when --table is not given (the same as npm run approve). */
export const TABLE_ENV = 'AUTOPATCH_LEDGER_TABLE';

export const USAGE = `usage: npm run release-hold -- <cluster/service> [--cve <CVE>]... [--list] [--table <ledger table>] [--region <region>]

  <cluster/service>  the service, as in the outcome notification (e.g. prod/payments-api)
  --cve <CVE>        release only this CVE's hold (repeat for several); default: every hold of the service
  --list             show the service's holds, release nothing
  --table <name>     the Autopatch ledger table (default: $${TABLE_ENV})
  --region <name>    default: your AWS configuration's
  --help             show this help

Runs with your AWS credentials: it needs Query and DeleteItem on the ledger table.`;

export interface ReleaseHoldIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly dynamodb: (region: string | undefined) => DynamoDBClient;
}

const describeHold = (h: Hold): string =>
  `${h.cve}: ${h.outcome} in ${h.executionName} at ${h.heldAt}; digests ${h.digests.join(', ')}` +
  `${h.fixedInVersion ? `; fixed in ${h.fixedInVersion}` : ''}\n    ${h.reason}`;

export const runReleaseHold = async (argv: readonly string[], io: ReleaseHoldIo): Promise<number> => {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    io.err(`release-hold: ${(error as Error).message}`);
    io.err(USAGE);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const [service, ...extra] = positionals;
  const problem =
    service === undefined
      ? 'name the service (<cluster>/<service>)'
      : extra.length > 0
        ? `one service at a time (got ${positionals.join(' ')})`
        : !/^[^/\s]+\/[^/\s]+$/.test(service)
          ? `"${service}" is not <cluster>/<service>`
          : !(values.table ?? io.env[TABLE_ENV])
            ? `name the ledger table with --table or $${TABLE_ENV}`
            : undefined;
  if (problem || service === undefined) {
    io.err(`release-hold: ${problem}`);
    io.err(USAGE);
    return 2;
  }
  const ledger = new Ledger({
    client: io.dynamodb(values.region),
    tableName: (values.table ?? io.env[TABLE_ENV]) as string,
  });
  try {
    if (values.list) {
      const holds = await ledger.holds(service);
      io.out(holds.length === 0 ? `${service} has no holds.` : `Holds of ${service}:`);
      for (const h of holds) io.out(`  ${describeHold(h)}`);
      return 0;
    }
    const released = await ledger.clearHolds(service, values.cve);
    if (released.length === 0) {
      io.out(
        `${service} has no hold${values.cve ? ` on ${values.cve.join(', ')}` : 's'}: nothing to release.`,
      );
      return 0;
    }
    io.out(`Released ${released.length} hold(s) of ${service}:`);
    for (const h of released) io.out(`  ${describeHold(h)}`);
    io.out('The next finding of these CVEs starts a remediation again.');
    return 0;
  } catch (error) {
    io.err(`release-hold: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    return 1;
  }
};

const parse = (argv: readonly string[]) =>
  parseArgs({
    args: [...argv],
    options: {
      cve: { type: 'string', multiple: true },
      list: { type: 'boolean' },
      table: { type: 'string' },
      region: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });

// Run only as a script (tsx bin/release-hold.ts), not when a test imports it.
if (require.main === module) {
  runReleaseHold(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
    dynamodb: (region) => new DynamoDBClient(region ? { region } : {}),
  }).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`release-hold: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
