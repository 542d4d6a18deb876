import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type Io, main } from '../../report/cli';
import type { Report } from '../../report/metrics';

/** Run the CLI as `npm run report` does, capturing what it prints. */
const cli = async (argv: string[], env: NodeJS.ProcessEnv = {}) => {
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
  const code = await main(argv, io, env);
  return { code, out, err };
};

describe('npm run report -- --simulate happy-path', () => {
  const html = path.join(mkdtempSync(path.join(tmpdir(), 'report-')), 'report.html');
  let run: Awaited<ReturnType<typeof cli>>;
  let report: Report;

  beforeAll(async () => {
    run = await cli(['--simulate', 'happy-path', '--json', '--html', html]);
    report = JSON.parse(run.out) as Report;
  });

  it('reports on the ledger the scenario leaves', () => {
    expect(run.code).toBe(0);
    expect(run.err).toBe(`report: wrote ${html}\n`);
    // The scenario's time span: from its startTime.
    expect(report.period.since).toBe('2024-09-04T16:00:00.000Z');
    expect(report.remediations).toBe(1);
    expect(report.outcomes).toEqual({ Patched: 1 });
    expect(report.overall.patchSuccessRate).toMatchObject({ value: 1, of: { numerator: 1, denominator: 1 } });
    expect(report.overall.canaryFailureRate).toMatchObject({ value: 0 });
    expect(report.overall.patchCausedIncidents).toMatchObject({ status: 'ok', value: 0 });
  });

  it('times the remediation as the scenario plays it: at least build + rescan + bake, well under 3 h', () => {
    // The scenario: a 7-minute build, a 4-minute rescan, a 30-minute bake.
    const ttr = report.overall.timeToRemediate;
    expect(ttr.status).toBe('ok');
    const seconds = ttr.status === 'ok' ? ttr.value : Number.NaN;
    expect(seconds).toBeGreaterThanOrEqual((7 + 4 + 30) * 60);
    expect(seconds).toBeLessThan(3 * 3600);
  });

  it('measures fleet coverage from the simulated Inspector, lead time and observability coverage from the record', () => {
    expect(report.overall.fleetCoverage).toMatchObject({ status: 'ok', value: 1 });
    // The finding was observed before the run started: lead time is at least the time to remediate.
    const lead = report.overall.leadTime;
    const ttr = report.overall.timeToRemediate;
    expect(lead.status).toBe('ok');
    if (lead.status === 'ok' && ttr.status === 'ok') expect(lead.value).toBeGreaterThanOrEqual(ttr.value);
    // The service's deployment alarm was watched.
    expect(report.overall.observabilityCoverage).toMatchObject({ status: 'ok', value: 1 });
    expect(report.byAccount.map((g) => g.key)).toEqual(['123456789012']);
    expect(report.byService.map((g) => g.key)).toEqual(['prod/checkout']);
  });

  it('writes one self-contained HTML page with the charts', () => {
    const page = readFileSync(html, 'utf8');
    expect(page).toMatch(/^<!doctype html>/);
    expect(page).not.toMatch(/<script|<link|<iframe|<img/i);
    expect(page).not.toMatch(/https?:\/\//);
    expect(page).toContain('data-chart="time-to-remediate"');
    expect(page).toContain('data-chart="outcomes-over-time"');
    // Deadlines are not recorded: the page says so where the chart would be.
    expect(page).toContain('not recorded (needs `deadlineAt`)');
  });
});

describe('npm run report -- --simulate alarm-rollback', () => {
  it('counts both rollbacks as canary failures, and the one an alarm Autopatch watched caused as an incident', async () => {
    // Act
    const { code, out } = await cli(['--simulate', 'simulation/scenarios/alarm-rollback.json']);

    // Assess: the terminal tables.
    expect(code).toBe(0);
    expect(out).toContain('2 remediation(s): RolledBack 2');
    expect(out).toMatch(/Patch success rate +0\.0 % \(0\/2\)/);
    expect(out).toMatch(/Canary failure rate +100\.0 % \(2\/2\)/);
    expect(out).toMatch(/Time to remediate +— \(no remediation was Patched in the period\)/);
    // The rollback Autopatch made names its alarm; the one ECS made by itself does not say which.
    expect(out).toMatch(/Patch-caused incidents +not recorded \(needs `alarm`\); .*between 1 and 2/);
    // No Patched run: nothing to time, whatever the records carry.
    expect(out).toMatch(/Lead time +— \(no remediation was Patched in the period\)/);
  });
});

describe('usage', () => {
  it('wants a ledger', async () => {
    const { code, err } = await cli([]);
    expect(code).toBe(2);
    expect(err).toContain('no ledger');
  });

  it('refuses --table with --simulate, and a period that ends before it starts', async () => {
    expect((await cli(['--table', 't', '--simulate', 'happy-path'])).code).toBe(2);
    const { code, err } = await cli(['--table', 't', '--since', '2026-02-01', '--until', '2026-01-01']);
    expect(code).toBe(2);
    expect(err).toContain('is after --until');
  });

  it('names a scenario it cannot find', async () => {
    const { code, err } = await cli(['--simulate', 'no-such-scenario']);
    expect(code).toBe(1);
    expect(err).toContain('no scenario "no-such-scenario"');
  });
});
