import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  accountOf,
  computeReport,
  DEFINITIONS,
  type Figure,
  type Group,
  historyMetrics,
  NOT_RECORDED,
  ORCHESTRATION_ESTIMATE,
  PRICES,
  type ReportRecord,
} from '../../report/metrics';

/**
 * A hand-built history whose answers were worked out by hand (the comments give the arithmetic).
 * The period is January 2026, 30 days.
 */
const PERIOD = { since: new Date('2026-01-01T00:00:00Z'), until: new Date('2026-01-31T00:00:00Z') };
const TD_A = 'arn:aws:ecs:eu-central-1:111111111111:task-definition/a:7';
const TD_B = 'arn:aws:ecs:eu-central-1:222222222222:task-definition/b:3';

const record = (over: Partial<ReportRecord> & Pick<ReportRecord, 'outcome' | 'startedAt' | 'finishedAt'>) =>
  ({
    serviceKey: 'prod/a',
    remediationId: `r-${over.startedAt}`,
    executionName: `e-${over.startedAt}`,
    reason: 'hand-built',
    images: [{ repository: 'a', oldDigest: 'sha256:old', cves: ['CVE-2026-0001'] }],
    cvesClosed: [],
    ...over,
  }) as ReportRecord;

const pushed = [
  { repository: 'a', oldDigest: 'sha256:old', newDigest: 'sha256:new', cves: ['CVE-2026-0001'] },
];

const HISTORY: ReportRecord[] = [
  // 1: prod/a CRITICAL Patched, 1 h in the workflow, lead 2 h, deadline met.
  record({
    outcome: 'Patched',
    severity: 'CRITICAL',
    requestedAt: '2026-01-01T23:00:00Z',
    startedAt: '2026-01-02T00:00:00Z',
    finishedAt: '2026-01-02T01:00:00Z',
    oldTaskDefinition: TD_A,
    newTaskDefinition: TD_A.replace(':7', ':8'),
    images: pushed,
    // Two builds, 290 s and 310 s: billed 5 + 6 = 11 minutes.
    timings: { totalSeconds: 3600, verificationSeconds: 300, buildSeconds: 600, buildMinutes: 11 },
    stateTransitions: 40,
    lambdaInvocations: 15,
    watchedAlarms: ['a-5xx'],
    deadlineAt: '2026-01-03T00:00:00Z',
  }),
  // 2: prod/a CRITICAL RolledBack by an alarm; a deadline, not met (not Patched).
  record({
    outcome: 'RolledBack',
    severity: 'CRITICAL',
    startedAt: '2026-01-05T00:00:00Z',
    finishedAt: '2026-01-05T02:00:00Z',
    oldTaskDefinition: TD_A,
    images: pushed,
    alarm: { name: 'a-5xx', at: '2026-01-05T01:30:00Z' },
    timings: { verificationSeconds: 600, buildSeconds: 1200 },
    stateTransitions: 60,
    lambdaInvocations: 20,
    watchedAlarms: ['a-5xx'],
    deadlineAt: '2026-01-06T00:00:00Z',
  }),
  // 3: prod/b HIGH Patched, 30 min in the workflow, lead 1 day 30 min, deadline missed.
  record({
    serviceKey: 'prod/b',
    outcome: 'Patched',
    severity: 'HIGH',
    requestedAt: '2026-01-09T00:00:00Z',
    startedAt: '2026-01-10T00:00:00Z',
    finishedAt: '2026-01-10T00:30:00Z',
    oldTaskDefinition: TD_B,
    newTaskDefinition: TD_B.replace(':3', ':4'),
    images: pushed,
    timings: { verificationSeconds: 900, buildSeconds: 300 },
    stateTransitions: 30,
    lambdaInvocations: 10,
    watchedAlarms: [],
    deadlineAt: '2026-01-09T12:00:00Z',
  }),
  // 4: prod/b HIGH BuildFailed: nothing pushed, nothing deployed, no task definition (no account).
  record({
    serviceKey: 'prod/b',
    outcome: 'BuildFailed',
    severity: 'HIGH',
    startedAt: '2026-01-12T00:00:00Z',
    finishedAt: '2026-01-12T00:10:00Z',
    timings: { buildSeconds: 180 },
    stateTransitions: 10,
    lambdaInvocations: 5,
    watchedAlarms: [],
  }),
  // 5: prod/b HIGH Failed after registering the patched task definition: it tried to deploy.
  record({
    serviceKey: 'prod/b',
    outcome: 'Failed',
    severity: 'HIGH',
    startedAt: '2026-01-15T00:00:00Z',
    finishedAt: '2026-01-15T01:00:00Z',
    oldTaskDefinition: TD_B,
    images: pushed,
    timings: { verificationSeconds: 120, buildSeconds: 300 },
    stateTransitions: 50,
    watchedAlarms: [],
  }),
  // Outside the period: left out of everything.
  record({
    outcome: 'Patched',
    severity: 'CRITICAL',
    startedAt: '2025-12-20T00:00:00Z',
    finishedAt: '2025-12-20T05:00:00Z',
    oldTaskDefinition: TD_A,
  }),
];

const COVERAGE = { active: 9, total: 10, source: 'test' };

const ok = (figure: Figure) => {
  if (figure.status !== 'ok') throw new Error(`expected a figure, got ${JSON.stringify(figure)}`);
  return figure;
};
const group = (groups: readonly Group[], key: string): Group => {
  const found = groups.find((g) => g.key === key);
  if (!found) throw new Error(`no group ${key} in ${groups.map((g) => g.key).join(', ')}`);
  return found;
};

describe('computeReport over a hand-built history', () => {
  const report = computeReport(HISTORY, PERIOD, COVERAGE);

  it('keeps the records that finished in the period', () => {
    expect(report.remediations).toBe(5);
    expect(report.period.days).toBe(30);
    expect(report.outcomes).toEqual({ Patched: 2, RolledBack: 1, BuildFailed: 1, Failed: 1 });
  });

  it('computes the ten metrics overall', () => {
    const m = report.overall;
    // Tried to deploy: 1, 2, 3, 5 (Patched, RolledBack, Failed with a task definition). Patched: 1, 3.
    expect(m.patchSuccessRate).toMatchObject({ value: 0.5, of: { numerator: 2, denominator: 4 } });
    // Patched: 3600 s and 1800 s. Median 2700; p90 (nearest rank, ⌈0.9 × 2⌉ = 2nd) 3600.
    expect(ok(m.timeToRemediate).distribution).toMatchObject({
      count: 2,
      median: 2700,
      p90: 3600,
      max: 3600,
    });
    expect(m.canaryFailureRate).toMatchObject({ value: 0.25, of: { numerator: 1, denominator: 4 } });
    // 1 rollback ÷ 2 services ÷ (30 days ÷ 30).
    expect(ok(m.rollbackFrequency).value).toBe(0.5);
    expect(m.patchCausedIncidents).toMatchObject({ status: 'ok', value: 1, unit: 'count' });
    // Pushed a patched image: 1, 2, 3, 5 → 300, 600, 900, 120 s; median (300 + 600) / 2; p90 the 4th.
    expect(ok(m.timeToVerification).distribution).toMatchObject({
      count: 4,
      median: 450,
      p90: 900,
      max: 900,
    });
    expect(m.fleetCoverage).toMatchObject({ value: 0.9, of: { numerator: 9, denominator: 10 } });
    // ≥ 1 watched alarm: 1, 2 of 5.
    expect(m.observabilityCoverage).toMatchObject({ value: 0.4, of: { numerator: 2, denominator: 5 } });
    // 7200 s and 88200 s (1 day + 30 min).
    expect(ok(m.leadTime).distribution).toMatchObject({ count: 2, median: 47_700, max: 88_200 });
    // CodeBuild: 11 (billed, recorded) + ⌈1200/60⌉ 20 + 5 + 3 + 5 = 44 min × $0.01 = $0.44.
    // Step Functions: 40 + 60 + 30 + 10 + 50 = 190 transitions × $0.000025 = $0.00475.
    // Lambda: 15 + 20 + 10 + 5 recorded + 11 estimated (record 5 has none) = 61 invocations ×
    // ($0.0000002 + 0.25 × $0.0000166667). All ÷ 4 rollouts.
    const perInvocation = 0.0000002 + 0.25 * 0.0000166667;
    expect(PRICES.lambdaPerInvocation).toBeCloseTo(perInvocation, 12);
    expect(ORCHESTRATION_ESTIMATE.lambdaInvocations).toBe(11);
    const cost = ok(m.costPerRollout);
    expect(cost.value).toBeCloseTo((0.44 + 0.00475 + 61 * perInvocation) / 4, 10);
    expect(cost.cost).toMatchObject({ buildMinutes: 44, listPrices: true, orchestrationEstimated: 1 });
    expect(cost.cost?.codeBuild).toBeCloseTo(0.44, 10);
    expect(cost.cost?.stepFunctions).toBeCloseTo(0.00475, 10);
    expect(cost.note).toContain('list prices (AWS list prices, us-east-1 on-demand');
    expect(cost.note).toContain('estimated for 1 remediation(s)');
  });

  it('computes deadlines met: Patched by the deadline ÷ remediations with one', () => {
    // 1 met; 2 not Patched; 3 Patched after its deadline; 4 and 5 have none.
    expect(report.deadlines).toMatchObject({
      value: 1 / 3,
      of: { numerator: 1, denominator: 3 },
      note: '2 of 5 record(s) left out: no deadlineAt',
    });
  });

  it('computes them per severity', () => {
    expect(report.bySeverity.map((g) => [g.key, g.remediations])).toEqual([
      ['CRITICAL', 2],
      ['HIGH', 3],
    ]);
    const critical = group(report.bySeverity, 'CRITICAL').metrics;
    expect(critical.patchSuccessRate).toMatchObject({ value: 0.5, of: { numerator: 1, denominator: 2 } });
    expect(ok(critical.timeToRemediate).distribution).toMatchObject({ median: 3600, count: 1 });
    expect(critical.canaryFailureRate).toMatchObject({ value: 0.5 });
    expect(ok(critical.rollbackFrequency).value).toBe(1);
    expect(ok(critical.leadTime).value).toBe(7200);
    const high = group(report.bySeverity, 'HIGH').metrics;
    expect(high.patchSuccessRate).toMatchObject({ value: 0.5, of: { numerator: 1, denominator: 2 } });
    expect(ok(high.timeToRemediate).value).toBe(1800);
    expect(high.canaryFailureRate).toMatchObject({ value: 0, of: { numerator: 0, denominator: 2 } });
    expect(high.patchCausedIncidents).toMatchObject({ value: 0 });
    expect(ok(high.leadTime).value).toBe(88_200);
    expect(high.observabilityCoverage).toMatchObject({ value: 0, of: { numerator: 0, denominator: 3 } });
    expect(high.fleetCoverage.status).toBe('not-measured');
  });

  it('computes them per account (from the task definition ARNs) and per service', () => {
    expect(report.byAccount.map((g) => [g.key, g.remediations])).toEqual([
      ['111111111111', 2],
      ['222222222222', 2],
      [NOT_RECORDED, 1],
    ]);
    expect(report.byService.map((g) => [g.key, g.remediations])).toEqual([
      ['prod/a', 2],
      ['prod/b', 3],
    ]);
    expect(group(report.byService, 'prod/a').metrics.canaryFailureRate).toMatchObject({ value: 0.5 });
  });

  it('counts outcomes per day', () => {
    expect(report.outcomesByDay).toEqual([
      { day: '2026-01-02', outcomes: { Patched: 1 } },
      { day: '2026-01-05', outcomes: { RolledBack: 1 } },
      { day: '2026-01-10', outcomes: { Patched: 1 } },
      { day: '2026-01-12', outcomes: { BuildFailed: 1 } },
      { day: '2026-01-15', outcomes: { Failed: 1 } },
    ]);
  });
});

describe('edge cases', () => {
  it('an empty period has nothing to compute, and says so', () => {
    // Act
    const report = computeReport(HISTORY, {
      since: new Date('2027-01-01T00:00:00Z'),
      until: new Date('2027-01-31T00:00:00Z'),
    });

    // Assess
    expect(report.remediations).toBe(0);
    const m = report.overall;
    for (const figure of [
      m.patchSuccessRate,
      m.timeToRemediate,
      m.canaryFailureRate,
      m.rollbackFrequency,
      m.timeToVerification,
      m.observabilityCoverage,
      m.leadTime,
      m.costPerRollout,
      report.deadlines,
    ])
      expect(figure.status).toBe('none');
    // No RolledBack, so no incident: a count of zero, not a guess.
    expect(m.patchCausedIncidents).toMatchObject({ status: 'ok', value: 0 });
    expect(m.fleetCoverage.status).toBe('not-measured');
    expect(report.bySeverity).toEqual([]);
  });

  it('without a Patched run, rates are computed and durations are not', () => {
    const rolledBackOnly = HISTORY.filter((_, i) => i === 1);
    const m = historyMetrics(rolledBackOnly, 30);
    expect(m.patchSuccessRate).toMatchObject({ value: 0, of: { numerator: 0, denominator: 1 } });
    expect(m.canaryFailureRate).toMatchObject({ value: 1 });
    expect(m.timeToRemediate).toEqual({ status: 'none', why: 'no remediation was Patched in the period' });
    expect(m.leadTime.status).toBe('none');
  });

  it('without a deployment, the rates have no denominator', () => {
    const m = historyMetrics([HISTORY[3] as ReportRecord], 30);
    expect(m.patchSuccessRate.status).toBe('none');
    expect(m.canaryFailureRate.status).toBe('none');
    expect(m.costPerRollout.status).toBe('none');
    expect(m.timeToVerification.status).toBe('none');
  });

  it('records as finish writes them today: what they lack is "not recorded", naming the field', () => {
    // Prepare: only OutcomeRecord's own fields.
    const bare = HISTORY.slice(0, 5).map(
      ({
        severity,
        requestedAt,
        watchedAlarms,
        alarm,
        deadlineAt,
        stateTransitions,
        lambdaInvocations,
        timings,
        ...r
      }) => r as ReportRecord,
    );

    // Act
    const report = computeReport(bare, PERIOD);

    // Assess: the rates and time to remediate need nothing more.
    const m = report.overall;
    expect(m.patchSuccessRate).toMatchObject({ value: 0.5 });
    expect(ok(m.timeToRemediate).value).toBe(2700);
    expect(m.canaryFailureRate).toMatchObject({ value: 0.25 });
    expect(ok(m.rollbackFrequency).value).toBe(0.5);
    expect(m.timeToVerification).toEqual({ status: 'not-recorded', needs: ['timings.verificationSeconds'] });
    expect(m.observabilityCoverage).toEqual({ status: 'not-recorded', needs: ['watchedAlarms'] });
    expect(m.leadTime).toEqual({ status: 'not-recorded', needs: ['requestedAt'] });
    expect(m.costPerRollout).toEqual({ status: 'not-recorded', needs: ['timings.buildSeconds'] });
    expect(m.patchCausedIncidents).toMatchObject({
      status: 'not-recorded',
      needs: ['alarm'],
      note: '1 RolledBack run(s) do not say whether an alarm caused the rollback: between 0 and 1',
    });
    expect(report.deadlines).toEqual({ status: 'not-recorded', needs: ['deadlineAt'] });
    expect(m.fleetCoverage).toEqual({ status: 'not-measured', why: 'no coverage source' });
    expect(report.bySeverity.map((g) => g.key)).toEqual([NOT_RECORDED]);
  });

  it('old records among new ones: left out of time to verification and cost, and counted', () => {
    // Prepare: records 1 and 3 as written before timings existed; 2, 4, 5 as written now.
    const mixed = HISTORY.slice(0, 5).map((r, i) => {
      if (i !== 0 && i !== 2) return r;
      const { timings: _t, stateTransitions: _s, lambdaInvocations: _l, ...old } = r;
      return old as ReportRecord;
    });

    // Act
    const m = historyMetrics(mixed, 30);

    // Assess: verification from 2 and 5 only (600 s and 120 s).
    expect(m.timeToVerification).toMatchObject({
      status: 'ok',
      value: 360,
      note: '2 of 4 record(s) left out: no timings.verificationSeconds',
    });
    // Cost over 2, 4, 5: 20 + 3 + 5 = 28 min, 120 transitions, 20 + 5 + 11 invocations; rollouts 2 and 5.
    const perInvocation = 0.0000002 + 0.25 * 0.0000166667;
    const cost = ok(m.costPerRollout);
    expect(cost.value).toBeCloseTo((0.28 + 120 * 0.000025 + 36 * perInvocation) / 2, 10);
    expect(cost.note).toContain('2 of 5 record(s) left out: no timings.buildSeconds');
  });

  it('cost counts runs whose builds were not all timed, and says the total is a lower bound', () => {
    const r = HISTORY[1] as ReportRecord;
    const m = historyMetrics(
      [
        {
          ...r,
          timings: { ...r.timings, buildSeconds: 1200, buildMinutes: 20, builds: 1, buildsPlanned: 2 },
        },
      ],
      30,
    );
    expect(ok(m.costPerRollout).cost).toMatchObject({ buildsUntimed: 1, buildMinutes: 20 });
    expect(ok(m.costPerRollout).note).toContain(
      '1 remediation(s) ran builds whose time was not kept: a lower bound',
    );
  });

  it('cost with no recorded transitions estimates them for every run, at the documented counts', () => {
    const { stateTransitions: _s, lambdaInvocations: _l, ...r } = HISTORY[0] as ReportRecord;
    const cost = ok(historyMetrics([r as ReportRecord], 30).costPerRollout);
    // 11 min + 31 transitions + 11 invocations, one rollout.
    expect(cost.value).toBeCloseTo(0.11 + 31 * 0.000025 + 11 * (0.0000002 + 0.25 * 0.0000166667), 10);
    expect(cost.cost?.orchestrationEstimated).toBe(1);
  });

  it('a duration some records lack says how many were left out', () => {
    const patched = HISTORY.filter((r) => r.outcome === 'Patched').slice(0, 2);
    const { requestedAt: _, ...withoutLead } = patched[1] as ReportRecord;
    const m = historyMetrics([patched[0] as ReportRecord, withoutLead as ReportRecord], 30);
    expect(m.leadTime).toMatchObject({
      status: 'ok',
      value: 7200,
      note: '1 of 2 record(s) left out: no requestedAt',
    });
  });

  it('fleet coverage with an empty inventory is "none", not 0 %', () => {
    const report = computeReport([], PERIOD, { active: 0, total: 0, source: 'test' });
    expect(report.overall.fleetCoverage).toEqual({ status: 'none', why: 'test lists no container image' });
  });

  it('the account is the record’s own, else the one in its task definition ARN', () => {
    const base = HISTORY[0] as ReportRecord;
    expect(accountOf(base)).toBe('111111111111');
    expect(accountOf({ ...base, account: '333333333333' })).toBe('333333333333');
    const { oldTaskDefinition: _o, newTaskDefinition: _n, ...none } = base;
    expect(accountOf(none as ReportRecord)).toBeUndefined();
  });
});

describe('docs/metrics.md', () => {
  it('states every definition the report prints, word for word', () => {
    const doc = readFileSync(path.join(__dirname, '..', '..', 'docs', 'metrics.md'), 'utf8');
    // The table is formatted (biome pads the cells): a row is the title, then the definition.
    const cell = (text: string) => `\\| ${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} +`;
    for (const { title, definition } of Object.values(DEFINITIONS))
      expect(doc).toMatch(new RegExp(`${cell(title)}${cell(definition)}\\|`));
  });
});
