/**
 * `npm run report`: the CLI's logic, separate from bin/report.ts so tests run exactly what the
 * command runs.
 *
 * Exit codes: 0 the report was made; 1 its source could not be read; 2 bad usage.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeReport, type Period } from './metrics';
import { renderHtml } from './render-html';
import { renderTerminal } from './render-terminal';
import { fromSimulation, fromTable, type History, ReportSourceError } from './source';

export const USAGE = `usage: npm run report -- [--table <name> | --simulate <scenario>] [options]

  --table <name>         the ledger table (default: $AUTOPATCH_LEDGER_TABLE); AWS credentials and
                         Region from the environment, as for the AWS CLI
  --simulate <scenario>  run a scenario (a file, or a name in simulation/scenarios/) and report on
                         the ledger it leaves; no AWS account needed
  --since <time>         start of the period (ISO-8601 date or time; default 30 days before --until,
                         or the scenario's start)
  --until <time>         end of the period (default now, or the end of the scenario's run)
  --json                 print the report as one JSON document instead of tables
  --html <file>          also write the report as one self-contained HTML page with charts
`;

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

const DAY_MS = 86_400_000;

const parseTime = (value: string, option: string): Date => {
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new Error(`${option} takes an ISO-8601 date or time, got "${value}"`);
  return new Date(t);
};

/** Reads the history of a ledger table in an account (the default source). */
const accountSource = async (tableName: string): Promise<History> => {
  const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
  const { Inspector2Client } = await import('@aws-sdk/client-inspector2');
  const dynamo = new DynamoDBClient({});
  const inspector = new Inspector2Client({});
  try {
    return await fromTable(tableName, { dynamo, inspector });
  } finally {
    dynamo.destroy();
    inspector.destroy();
  }
};

export const main = async (
  argv: readonly string[],
  io: Io = defaultIo,
  env: NodeJS.ProcessEnv = process.env,
  now: () => Date = () => new Date(),
): Promise<number> => {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        table: { type: 'string' },
        simulate: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        json: { type: 'boolean' },
        html: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    io.err(`report: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const simulate = typeof values.simulate === 'string' ? values.simulate : undefined;
  const table = typeof values.table === 'string' ? values.table : env.AUTOPATCH_LEDGER_TABLE;
  if (simulate !== undefined && typeof values.table === 'string') {
    io.err(`report: give --table or --simulate, not both\n${USAGE}`);
    return 2;
  }
  if (simulate === undefined && !table) {
    io.err(
      `report: no ledger: give --table <name>, set AUTOPATCH_LEDGER_TABLE, or --simulate <scenario>\n${USAGE}`,
    );
    return 2;
  }
  let since: Date | undefined;
  let until: Date | undefined;
  try {
    if (typeof values.since === 'string') since = parseTime(values.since, '--since');
    if (typeof values.until === 'string') until = parseTime(values.until, '--until');
  } catch (error) {
    io.err(`report: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (since && until && since > until) {
    io.err(`report: --since ${since.toISOString()} is after --until ${until.toISOString()}\n`);
    return 2;
  }

  let history: History;
  try {
    history = simulate !== undefined ? await fromSimulation(simulate) : await accountSource(table as string);
  } catch (error) {
    if (error instanceof ReportSourceError) {
      io.err(`report: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  for (const w of history.warnings) io.err(`report: warning: ${w}\n`);

  const end = until ?? history.period?.until ?? now();
  const period: Period = {
    since:
      since ??
      (until === undefined ? history.period?.since : undefined) ??
      new Date(end.getTime() - 30 * DAY_MS),
    until: end,
  };
  const report = computeReport(history.records, period, history.coverage, history.coverageUnavailable);
  io.out(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderTerminal(report));
  if (typeof values.html === 'string') {
    writeFileSync(values.html, renderHtml(report));
    io.err(`report: wrote ${values.html}\n`);
  }
  return 0;
};
