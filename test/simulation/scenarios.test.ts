import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type Io, main, shippedScenarios } from '../../simulation/cli';
import type { SimulationReport } from '../../simulation/report';
import { runScenario } from '../../simulation/runner';
import { loadScenario, parseScenario, type ScenarioInput } from '../../simulation/scenario';

/** Run the CLI as `npm run simulate` does, capturing what it prints. */
const cli = async (...argv: string[]) => {
  let out = '';
  let err = '';
  const io: Io = {
    out: (t) => {
      out += t;
    },
    err: (t) => {
      err += t;
    },
  };
  const code = await main(argv, io);
  return { code, out, err };
};

describe('shipped scenarios', () => {
  // Each runs through the same code path as `npm run simulate -- <file> --json` and must meet its `expect`.
  it.each(shippedScenarios().map((file) => [path.basename(file, '.json'), file]))(
    '%s meets its expectations',
    async (_name, file) => {
      // Act
      const { code, out, err } = await cli(file, '--json');

      // Assess: a mismatch fails the test with the CLI's own explanation, one line each.
      const report = JSON.parse(out) as SimulationReport;
      expect({ mismatches: report.mismatches, errors: report.errors }).toEqual({
        mismatches: [],
        errors: [],
      });
      expect(err).toBe('');
      expect(code).toBe(0);
      expect(loadScenario(file).expect).toBeDefined();
    },
    // The burst (1,000 findings, 8 services, a heartbeat a minute for two virtual hours) takes seconds
    // alone, and far longer on a machine busy with other work.
    240_000,
  );
});

describe('npm run simulate', () => {
  it('prints the execution history the way the console does, then a summary', async () => {
    const { code, out } = await cli();
    expect(code).toBe(0);
    expect(out).toMatch(/^▶ happy-path/);
    expect(out).toMatch(
      /Execution checkout-CVE-2024-6119-\S+\n {2}service prod\/checkout · SUCCEEDED · outcome Patched · T\+01:21 → /,
    );
    expect(out).toMatch(/ {2}\d+ T\+\d\d:\d\d\s+\S+ {2}✓ Task {4}Watch the deployment through the bake time/);
    expect(out).toMatch(/Summary\n {2}Executions {9}1 · Patched 1\n {2}Findings by action 1 · remediate 1/);
  });

  it('fails with the mismatches, one per line, when reality differs from expect', async () => {
    // Prepare: the happy path, expecting the wrong outcome and count.
    const raw = JSON.parse(
      JSON.stringify(loadScenario(shippedScenarios().find((f) => f.endsWith('happy-path.json')) as string)),
    );
    delete raw.source;
    raw.expect = { executions: 2, outcomes: { 'prod/checkout': 'RolledBack' } };
    const dir = mkdtempSync(path.join(tmpdir(), 'simulate-'));
    const file = path.join(dir, 'wrong.json');
    writeFileSync(file, JSON.stringify(raw));

    // Act
    const { code, err } = await cli(file);

    // Assess
    expect(code).toBe(1);
    expect(err.trim().split('\n')).toEqual([
      'happy-path: executions: expected 2, got 1',
      'happy-path: outcomes.prod/checkout: expected RolledBack, got Patched',
    ]);
  });

  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--all', 'x.json'], /give scenario files or --all, not both/],
    [['--seed', 'abc'], /--seed takes an integer/],
  ])('exits 2 with the usage on bad usage: %j', async (argv, message) => {
    const { code, err } = await cli(...argv);
    expect(code).toBe(2);
    expect(err).toMatch(message);
    expect(err).toMatch(/^usage: npm run simulate/m);
  });

  it('rejects an invalid scenario before running anything, naming the field', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'simulate-'));
    const file = path.join(dir, 'bad.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'bad',
        description: 'x',
        startTime: '2024-09-04T16:00:00Z',
        account: { alarm: [] },
      }),
    );
    const { code, out, err } = await cli(file);
    expect(code).toBe(2);
    expect(out).toBe('');
    expect(err).toContain('bad.json is not a valid scenario:\n  account: Unrecognized key: "alarm"');
  });
});

describe('virtual time', () => {
  const withBake = (bakeTimeMinutes: number): ScenarioInput => ({
    name: 'long-bake',
    description: 'a service with a long bake time',
    startTime: '2024-09-04T16:00:00Z',
    account: {
      repositories: [
        {
          name: 'shop/app',
          images: [{ tags: ['v1'], findings: [{ cve: 'CVE-2024-6119', severity: 'HIGH' }] }],
        },
      ],
      clusters: [
        {
          name: 'prod',
          services: [
            {
              name: 'app',
              containers: [{ name: 'app', image: 'shop/app:v1' }],
              bakeTimeMinutes,
              alarms: ['app-5xx'],
              tags: { 'autopatch:enabled': 'true' },
            },
          ],
        },
      ],
      alarms: [{ name: 'app-5xx' }],
    },
    events: [{ at: '+1m', kind: 'finding', repository: 'shop/app', image: 'v1', cve: 'CVE-2024-6119' }],
  });

  it('bakes for the whole 60 virtual minutes after ECS completes, in about one clock step a minute', async () => {
    // Act
    const report = await runScenario(parseScenario(withBake(60)));

    // Assess: the watch state spans the deployment and the whole 60-minute bake Autopatch applies after
    // ECS completed it; time jumps from event to event, plus the one-minute heartbeat while it runs.
    const execution = report.executions[0];
    const watch = execution?.states.find((s) => s.name === 'Watch the deployment through the bake time');
    expect(execution?.outcome).toBe('Patched');
    expect(watch?.durationMs).toBeGreaterThanOrEqual(60 * 60_000);
    expect(report.virtual.durationMs).toBeGreaterThan(70 * 60_000);
    expect(report.virtual.steps).toBeLessThan((report.virtual.durationMs / 60_000) * 2);
  });

  it('gives the same run for the same scenario and seed', async () => {
    const scenario = parseScenario(withBake(15));
    const strip = (r: SimulationReport) => ({ ...r, wallMs: 0 });
    const [first, second] = [
      await runScenario(scenario, { seed: 3 }),
      await runScenario(scenario, { seed: 3 }),
    ];
    expect(strip(second)).toEqual(strip(first as SimulationReport));
  });
});
