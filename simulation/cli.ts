/**
 * `npm run simulate [-- <scenario.json>... | --all] [--json] [--timeline] [--seed <n>]`: the CLI's
 * logic, separate from bin/simulate.ts so tests run exactly what the command runs.
 *
 * Exit codes: 0 every run met its expectations; 1 a run did not (each mismatch is printed on its own
 * line) or the simulated world reported errors; 2 bad usage or an invalid scenario (nothing ran).
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { renderOverview, renderReport } from './render';
import type { SimulationReport } from './report';
import { runScenario } from './runner';
import { loadScenario, type Scenario, ScenarioError } from './scenario';

export const SCENARIO_DIR = path.join(__dirname, 'scenarios');
export const DEFAULT_SCENARIO = path.join(SCENARIO_DIR, 'happy-path.json');

export const USAGE = `usage: npm run simulate [-- [<scenario.json>... | --all] [--json] [--timeline] [--seed <n>]]

  (no scenario)   run the default scenario (${path.relative(process.cwd(), DEFAULT_SCENARIO)})
  --all           run every scenario in ${path.relative(process.cwd(), SCENARIO_DIR)}/
  --json          print one JSON document instead of the execution histories
  --timeline      also print what happened in the simulated account, in order
  --seed <n>      seed for retry jitter (default 1): the same seed gives the same run
`;

export interface Io {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

const defaultIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** The shipped scenarios, in name order. */
export const shippedScenarios = (): string[] =>
  readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => path.join(SCENARIO_DIR, f));

export const main = async (argv: readonly string[], io: Io = defaultIo): Promise<number> => {
  let parsed: ReturnType<typeof parse>;
  const parse = () =>
    parseArgs({
      args: [...argv],
      options: {
        all: { type: 'boolean' },
        json: { type: 'boolean' },
        timeline: { type: 'boolean' },
        seed: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  try {
    parsed = parse();
  } catch (error) {
    io.err(`simulate: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  if (values.all && positionals.length > 0) {
    io.err(`simulate: give scenario files or --all, not both\n${USAGE}`);
    return 2;
  }
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  if (!Number.isInteger(seed)) {
    io.err(`simulate: --seed takes an integer, got ${values.seed}\n${USAGE}`);
    return 2;
  }

  const files = values.all ? shippedScenarios() : positionals.length > 0 ? positionals : [DEFAULT_SCENARIO];
  // Every scenario is validated before any runs: a typo in the fifth must not cost four runs.
  const scenarios: Scenario[] = [];
  const invalid: string[] = [];
  for (const file of files) {
    try {
      scenarios.push(loadScenario(file));
    } catch (error) {
      if (!(error instanceof ScenarioError)) throw error;
      invalid.push(error.message);
    }
  }
  if (invalid.length > 0) {
    io.err(`${invalid.join('\n')}\n`);
    return 2;
  }

  const reports: SimulationReport[] = [];
  for (const scenario of scenarios) {
    const report = await runScenario(scenario, { seed });
    reports.push(report);
    if (!values.json) io.out(`${renderReport(report, { timeline: values.timeline === true })}\n`);
  }
  if (values.json) {
    io.out(
      `${JSON.stringify(reports.length === 1 && !values.all ? reports[0] : { scenarios: reports }, null, 2)}\n`,
    );
  } else if (reports.length > 1) {
    io.out(renderOverview(reports));
  }
  const failed = reports.filter((r) => r.mismatches.length > 0 || r.errors.length > 0);
  for (const r of failed) {
    for (const m of r.mismatches) io.err(`${r.scenario.name}: ${m}\n`);
    for (const e of r.errors) io.err(`${r.scenario.name}: error: ${e}\n`);
  }
  return failed.length > 0 ? 1 : 0;
};
