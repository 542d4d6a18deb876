/**
 * The ten remediation metrics of `npm run report`, as pure functions over the ledger's history
 * (OutcomeRecord, one per finished remediation) and, for fleet coverage, Inspector's coverage.
 *
 * Every figure says what it was computed from. A figure the history cannot give is `not-recorded`
 * with the record fields that would give it; nothing is estimated from what is not there.
 */
import { OUTCOMES, type Outcome } from '../lambdas/shared/contracts';
import type { OutcomeRecord } from '../lambdas/shared/ledger';

/**
 * Fields the report reads when a history record carries them and that `finish` does not record, or
 * did not before (older records lack them). Each is named in the "not recorded" figures it would turn
 * into numbers. Optional: a record without them is still an OutcomeRecord.
 */
export interface ProposedFields {
  /** The account the service runs in (read from the task definition ARNs when absent). */
  readonly account?: string;
  /**
   * Step Functions state transitions and Lambda invocations of the execution. Not recorded (the
   * workflow cannot count them without reading its own execution history): cost per rollout uses
   * {@link ORCHESTRATION_ESTIMATE} for a record without them, and says so.
   */
  readonly stateTransitions?: number;
  readonly lambdaInvocations?: number;
}

/** A history record as the report reads it. */
export type ReportRecord = OutcomeRecord & ProposedFields;

export const METRIC_KEYS = [
  'patchSuccessRate',
  'timeToRemediate',
  'canaryFailureRate',
  'rollbackFrequency',
  'patchCausedIncidents',
  'timeToVerification',
  'fleetCoverage',
  'observabilityCoverage',
  'leadTime',
  'costPerRollout',
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

/**
 * List prices used for cost per rollout: us-east-1, on-demand, no free tier, as published on the AWS
 * pricing pages (aws.amazon.com/codebuild/pricing, /step-functions/pricing, /lambda/pricing) in 2026.
 * What an account pays may differ (Region, free tier, savings plans): the report says these are list
 * prices.
 */
export const PRICES = {
  /**
   * CodeBuild BUILD_GENERAL1_MEDIUM (x86_64, the builders' x86 compute type), USD per build minute;
   * a build is billed by the minute, rounded up. The arm64 builders (ARM LARGE, $0.015) cost more:
   * the record does not say which ran.
   */
  codeBuildPerMinute: 0.01,
  /** Step Functions standard workflows, USD per state transition ($0.025 per 1,000). */
  stateTransition: 0.000025,
  /**
   * Lambda, USD per invocation of 1 s at 256 MB (the workflow functions' memory): $0.20 per million
   * requests + 0.25 GB-s × $0.0000166667.
   */
  lambdaPerInvocation: 0.0000002 + 0.25 * 0.0000166667,
  /** Where the prices come from, printed with every cost. */
  source: 'AWS list prices, us-east-1 on-demand, no free tier (2026)',
} as const;

/**
 * Step Functions state transitions and Lambda invocations of one remediation, for records that do
 * not carry them (all, so far): a one-image Patched run of the simulation (`npm run simulate --
 * simulation/scenarios/happy-path.json`) enters 31 states, 11 of them Lambda tasks (the 12th is the
 * CodeBuild build). A rollback run enters 31–34, a BuildFailed run 21. At list prices this is about
 * $0.0008 + $0.00005 per run, against $0.01 per build minute.
 */
export const ORCHESTRATION_ESTIMATE = { stateTransitions: 31, lambdaInvocations: 11 } as const;

export const DEFINITIONS: Readonly<
  Record<MetricKey, { readonly title: string; readonly definition: string }>
> = {
  patchSuccessRate: {
    title: 'Patch success rate',
    definition:
      'Patched ÷ remediations that tried to deploy (Patched, RolledBack, and Failed after a patched task definition was registered).',
  },
  timeToRemediate: {
    title: 'Time to remediate',
    definition:
      'Patched runs only: workflow start (startedAt) → Patched (finishedAt); median, 90th percentile and max.',
  },
  canaryFailureRate: {
    title: 'Canary failure rate',
    definition: 'RolledBack ÷ remediations that tried to deploy (see patch success rate).',
  },
  rollbackFrequency: {
    title: 'Rollback frequency',
    definition:
      'RolledBack per service per 30 days: rollbacks ÷ services remediated in the period ÷ (period days ÷ 30).',
  },
  patchCausedIncidents: {
    title: 'Patch-caused incidents',
    definition:
      'RolledBack runs whose rollback a watched alarm caused (an alarm that fired during the bake); ECS or CodeDeploy rolling back by itself is not counted.',
  },
  timeToVerification: {
    title: 'Time to verification',
    definition: 'Push of the patched image → Inspector rescan verdict; median and max.',
  },
  fleetCoverage: {
    title: 'Fleet coverage',
    definition:
      'Container images with an ACTIVE Inspector scan ÷ all images Inspector lists (ListCoverage, resource type AWS_ECR_CONTAINER_IMAGE).',
  },
  observabilityCoverage: {
    title: 'Observability coverage',
    definition: 'Remediations whose service had ≥ 1 watched alarm during the bake ÷ all remediations.',
  },
  leadTime: {
    title: 'Lead time',
    definition: 'Patched runs only: first finding observed by triage → Patched; median and max.',
  },
  costPerRollout: {
    title: 'Cost per rollout',
    definition:
      'Cost of every remediation in the period at list prices (CodeBuild minutes billed × price + Step Functions transitions × price + Lambda invocations × price; transitions and invocations estimated per run) ÷ remediations that tried to deploy.',
  },
};

export type Unit = 'ratio' | 'seconds' | 'per-30-days' | 'count' | 'usd';

/** One metric's figure, or why there is none. */
export type Figure =
  | {
      readonly status: 'ok';
      readonly value: number;
      readonly unit: Unit;
      /** For rates: what was divided. */
      readonly of?: { readonly numerator: number; readonly denominator: number };
      /** For durations: the distribution (seconds, ascending). */
      readonly distribution?: {
        readonly count: number;
        readonly median: number;
        readonly p90: number;
        readonly max: number;
        readonly samples: readonly number[];
      };
      /** A caveat the reader needs (records left out, assumptions). */
      readonly note?: string;
      /** Cost per rollout only: the parts of the total (USD), and what is estimated. */
      readonly cost?: CostBreakdown;
    }
  /** The history does not carry what this figure needs: `needs` names the record fields. */
  | { readonly status: 'not-recorded'; readonly needs: readonly string[]; readonly note?: string }
  /** Measured outside the history (fleet coverage) and not available here. */
  | { readonly status: 'not-measured'; readonly why: string }
  /** Recorded, but nothing in the period to compute it over (e.g. no deployment). */
  | { readonly status: 'none'; readonly why: string };

/** What cost per rollout added up, over the remediations it counted. */
export interface CostBreakdown {
  /** USD, over every counted remediation (not per rollout). */
  readonly codeBuild: number;
  readonly stepFunctions: number;
  readonly lambda: number;
  readonly buildMinutes: number;
  /** Always true: the prices are list prices ({@link PRICES}), not the account's bill. */
  readonly listPrices: true;
  /** Remediations whose transitions and invocations are {@link ORCHESTRATION_ESTIMATE}, not recorded. */
  readonly orchestrationEstimated: number;
  /** Remediations with builds planned whose time the run did not keep: the total is a lower bound. */
  readonly buildsUntimed: number;
}

export type Metrics = Readonly<Record<MetricKey, Figure>>;

/** Inspector's coverage: how many images it lists, and how many of those with an ACTIVE scan. */
export interface Coverage {
  readonly active: number;
  readonly total: number;
  /** Where the numbers come from ("inspector2 ListCoverage", "simulation"). */
  readonly source: string;
}

export interface Period {
  readonly since: Date;
  readonly until: Date;
}

export interface Group {
  readonly key: string;
  readonly remediations: number;
  readonly metrics: Metrics;
}

export interface Report {
  readonly period: { readonly since: string; readonly until: string; readonly days: number };
  readonly remediations: number;
  readonly outcomes: Readonly<Partial<Record<Outcome, number>>>;
  readonly overall: Metrics;
  readonly bySeverity: readonly Group[];
  readonly byAccount: readonly Group[];
  readonly byService: readonly Group[];
  /** Remediations finished per day (UTC), by outcome, for the outcomes-over-time chart. */
  readonly outcomesByDay: ReadonlyArray<{
    readonly day: string;
    readonly outcomes: Partial<Record<Outcome, number>>;
  }>;
  /** Deadlines met: Patched by the deadline ÷ remediations with a deadline. */
  readonly deadlines: Figure;
  readonly definitions: typeof DEFINITIONS;
  readonly prices: typeof PRICES;
}

/** The group name of a record without the field to group it by. */
export const NOT_RECORDED = 'not recorded';
const DAY_MS = 86_400_000;

const time = (iso: string | undefined): number | undefined => {
  if (iso === undefined) return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
};

/** Nearest-rank percentile of ascending values (p in 0..1). */
const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? Number.NaN;

const median = (sorted: readonly number[]): number => {
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

const durations = (samples: readonly number[], note?: string): Figure => {
  const sorted = [...samples].sort((a, b) => a - b);
  const distribution = {
    count: sorted.length,
    median: median(sorted),
    p90: percentile(sorted, 0.9),
    max: sorted.at(-1) as number,
    samples: sorted,
  };
  return {
    status: 'ok',
    value: distribution.median,
    unit: 'seconds',
    distribution,
    ...(note ? { note } : {}),
  };
};

const rate = (numerator: number, denominator: number, note?: string): Figure => ({
  status: 'ok',
  value: numerator / denominator,
  unit: 'ratio',
  of: { numerator, denominator },
  ...(note ? { note } : {}),
});

const leftOut = (missing: number, total: number, field: string): string | undefined =>
  missing > 0 ? `${missing} of ${total} record(s) left out: no ${field}` : undefined;

/** Remediations that tried to deploy the patched revision. */
export const triedToDeploy = (r: ReportRecord): boolean =>
  r.outcome === 'Patched' ||
  r.outcome === 'RolledBack' ||
  (r.outcome === 'Failed' && r.oldTaskDefinition !== undefined);

/** The account of a record: its own field, else the account in its task definition ARNs. */
export const accountOf = (r: ReportRecord): string | undefined =>
  r.account ??
  [r.oldTaskDefinition, r.newTaskDefinition]
    .map((arn) => arn?.split(':')[4])
    .find((id): id is string => id !== undefined && /^\d{12}$/.test(id));

/** Seconds between two ISO times, when both are times and the second is not before the first. */
const secondsBetween = (from: string | undefined, to: string | undefined): number | undefined => {
  const a = time(from);
  const b = time(to);
  return a === undefined || b === undefined || b < a ? undefined : (b - a) / 1000;
};

/** Duration metric over some records: one sample each, or "not recorded" naming `field`. */
const durationOf = (
  records: readonly ReportRecord[],
  sample: (r: ReportRecord) => number | undefined,
  field: string,
  none: string,
): Figure => {
  if (records.length === 0) return { status: 'none', why: none };
  const samples = records.map(sample).filter((s): s is number => s !== undefined);
  if (samples.length === 0) return { status: 'not-recorded', needs: [field] };
  return durations(samples, leftOut(records.length - samples.length, records.length, field));
};

/** The nine metrics the history alone gives (all but fleet coverage), over `records` in a period of `days`. */
export const historyMetrics = (
  records: readonly ReportRecord[],
  days: number,
): Omit<Metrics, 'fleetCoverage'> => {
  const deployed = records.filter(triedToDeploy);
  const patched = records.filter((r) => r.outcome === 'Patched');
  const rolledBack = records.filter((r) => r.outcome === 'RolledBack');
  const noDeploy = 'no remediation tried to deploy in the period';
  const noPatched = 'no remediation was Patched in the period';

  const patchSuccessRate =
    deployed.length === 0
      ? ({ status: 'none', why: noDeploy } as const)
      : rate(patched.length, deployed.length);
  const canaryFailureRate =
    deployed.length === 0
      ? ({ status: 'none', why: noDeploy } as const)
      : rate(rolledBack.length, deployed.length);

  const services = new Set(records.map((r) => r.serviceKey)).size;
  const rollbackFrequency: Figure =
    services === 0 || days <= 0
      ? { status: 'none', why: 'no remediation in the period' }
      : {
          status: 'ok',
          value: rolledBack.length / services / (days / 30),
          unit: 'per-30-days',
          note: `${rolledBack.length} rollback(s), ${services} service(s), ${round(days, 1)} day(s)`,
        };

  // A rollback an alarm caused is a RolledBack run naming the alarm: no RolledBack, no incident.
  const withAlarm = rolledBack.filter((r) => r.alarm !== undefined).length;
  const unknown = rolledBack.filter((r) => r.alarm === undefined).length;
  const patchCausedIncidents: Figure =
    unknown === 0
      ? { status: 'ok', value: withAlarm, unit: 'count' }
      : {
          status: 'not-recorded',
          needs: ['alarm'],
          note: `${unknown} RolledBack run(s) do not say whether an alarm caused the rollback: between ${withAlarm} and ${withAlarm + unknown}`,
        };

  const timeToRemediate = durationOf(
    patched,
    (r) => secondsBetween(r.startedAt, r.finishedAt),
    'startedAt',
    noPatched,
  );
  const leadTime = durationOf(
    patched,
    (r) => secondsBetween(r.requestedAt, r.finishedAt),
    'requestedAt',
    noPatched,
  );
  const timeToVerification = durationOf(
    records.filter((r) => r.images.some((i) => i.newDigest !== undefined)),
    (r) => r.timings?.verificationSeconds,
    'timings.verificationSeconds',
    'no patched image was pushed in the period',
  );

  const known = records.filter((r) => r.watchedAlarms !== undefined);
  const observabilityCoverage: Figure =
    records.length === 0
      ? { status: 'none', why: 'no remediation in the period' }
      : known.length === 0
        ? { status: 'not-recorded', needs: ['watchedAlarms'] }
        : rate(
            known.filter((r) => (r.watchedAlarms?.length ?? 0) > 0).length,
            known.length,
            leftOut(records.length - known.length, records.length, 'watchedAlarms'),
          );

  const costPerRollout = cost(records);

  return {
    patchSuccessRate,
    timeToRemediate,
    canaryFailureRate,
    rollbackFrequency,
    patchCausedIncidents,
    timeToVerification,
    observabilityCoverage,
    leadTime,
    costPerRollout,
  };
};

/**
 * Cost per rollout: every remediation in the period costs (failed builds too), the rollouts share it.
 * A record without its build time (written before `timings.buildSeconds`) is left out, with its
 * rollout; none with one is "not recorded".
 */
const cost = (records: readonly ReportRecord[]): Figure => {
  if (!records.some(triedToDeploy))
    return { status: 'none', why: 'no remediation tried to deploy in the period' };
  const timed = records.filter((r) => r.timings?.buildSeconds !== undefined);
  if (timed.length === 0) return { status: 'not-recorded', needs: ['timings.buildSeconds'] };
  const rollouts = timed.filter(triedToDeploy).length;
  if (rollouts === 0)
    return {
      status: 'none',
      why: `no remediation with its build time recorded tried to deploy (${records.length - timed.length} left out: no timings.buildSeconds)`,
    };
  let buildMinutes = 0;
  let transitions = 0;
  let invocations = 0;
  let orchestrationEstimated = 0;
  let buildsUntimed = 0;
  for (const r of timed) {
    const t = r.timings ?? {};
    // Billed minutes when recorded; else the total rounded up (one build's worth of rounding).
    buildMinutes += t.buildMinutes ?? Math.ceil((t.buildSeconds ?? 0) / 60);
    if (r.stateTransitions === undefined || r.lambdaInvocations === undefined) orchestrationEstimated++;
    transitions += r.stateTransitions ?? ORCHESTRATION_ESTIMATE.stateTransitions;
    invocations += r.lambdaInvocations ?? ORCHESTRATION_ESTIMATE.lambdaInvocations;
    if (t.builds !== undefined && t.buildsPlanned !== undefined && t.builds < t.buildsPlanned)
      buildsUntimed++;
  }
  const breakdown: CostBreakdown = {
    codeBuild: buildMinutes * PRICES.codeBuildPerMinute,
    stepFunctions: transitions * PRICES.stateTransition,
    lambda: invocations * PRICES.lambdaPerInvocation,
    buildMinutes,
    listPrices: true,
    orchestrationEstimated,
    buildsUntimed,
  };
  const total = breakdown.codeBuild + breakdown.stepFunctions + breakdown.lambda;
  const notes = [
    `USD ${round(total, 4)} over ${timed.length} remediation(s), ${rollouts} rollout(s): CodeBuild ${buildMinutes} min $${round(breakdown.codeBuild, 4)}, Step Functions $${round(breakdown.stepFunctions, 5)}, Lambda $${round(breakdown.lambda, 5)}`,
    `list prices (${PRICES.source})`,
    ...(orchestrationEstimated > 0
      ? [
          `transitions and invocations estimated for ${orchestrationEstimated} remediation(s) (${ORCHESTRATION_ESTIMATE.stateTransitions} and ${ORCHESTRATION_ESTIMATE.lambdaInvocations} each: not recorded)`,
        ]
      : []),
    ...(buildsUntimed > 0
      ? [`${buildsUntimed} remediation(s) ran builds whose time was not kept: a lower bound`]
      : []),
    ...(timed.length < records.length
      ? [`${records.length - timed.length} of ${records.length} record(s) left out: no timings.buildSeconds`]
      : []),
  ];
  return {
    status: 'ok',
    value: total / rollouts,
    unit: 'usd',
    note: notes.join('; '),
    cost: breakdown,
  };
};

export const round = (n: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

/** Fleet coverage from Inspector's coverage, or "not measured". */
export const fleetCoverage = (coverage: Coverage | undefined, unavailable = 'no coverage source'): Figure => {
  if (!coverage) return { status: 'not-measured', why: unavailable };
  if (coverage.total === 0) return { status: 'none', why: `${coverage.source} lists no container image` };
  return rate(coverage.active, coverage.total, `from ${coverage.source}`);
};

const byKey = (
  records: readonly ReportRecord[],
  keyOf: (r: ReportRecord) => string,
  days: number,
): Group[] => {
  const groups = new Map<string, ReportRecord[]>();
  for (const r of records) {
    const key = keyOf(r);
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups]
    .sort(([a], [b]) => (a === NOT_RECORDED ? 1 : b === NOT_RECORDED ? -1 : a.localeCompare(b)))
    .map(([key, rs]) => ({
      key,
      remediations: rs.length,
      metrics: {
        ...historyMetrics(rs, days),
        fleetCoverage: { status: 'not-measured', why: 'measured for the whole fleet only' },
      },
    }));
};

const SEVERITY_ORDER = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'INFORMATIONAL', 'UNTRIAGED'];

/**
 * The report over the records that finished in [since, until]: the ten metrics overall and per
 * severity, account and service, outcomes per day and deadlines met. Pure.
 */
export const computeReport = (
  all: readonly ReportRecord[],
  period: Period,
  coverage?: Coverage,
  coverageUnavailable?: string,
): Report => {
  const from = period.since.getTime();
  const to = period.until.getTime();
  const records = all.filter((r) => {
    const t = time(r.finishedAt);
    return t !== undefined && t >= from && t <= to;
  });
  const days = Math.max(0, (to - from) / DAY_MS);
  const outcomes: Partial<Record<Outcome, number>> = {};
  for (const o of OUTCOMES) {
    const n = records.filter((r) => r.outcome === o).length;
    if (n > 0) outcomes[o] = n;
  }
  const byDay = new Map<string, Partial<Record<Outcome, number>>>();
  for (const r of [...records].sort((a, b) => a.finishedAt.localeCompare(b.finishedAt))) {
    const day = new Date(time(r.finishedAt) as number).toISOString().slice(0, 10);
    const counts = byDay.get(day) ?? {};
    counts[r.outcome] = (counts[r.outcome] ?? 0) + 1;
    byDay.set(day, counts);
  }
  const bySeverity = byKey(records, (r) => r.severity ?? NOT_RECORDED, days).sort(
    (a, b) => rank(a.key) - rank(b.key),
  );
  return {
    period: { since: period.since.toISOString(), until: period.until.toISOString(), days: round(days, 3) },
    remediations: records.length,
    outcomes,
    overall: {
      ...historyMetrics(records, days),
      fleetCoverage: fleetCoverage(coverage, coverageUnavailable),
    },
    bySeverity,
    byAccount: byKey(records, (r) => accountOf(r) ?? NOT_RECORDED, days),
    byService: byKey(records, (r) => r.serviceKey, days),
    outcomesByDay: [...byDay].map(([day, counts]) => ({ day, outcomes: counts })),
    deadlines: deadlinesMet(records),
    definitions: DEFINITIONS,
    prices: PRICES,
  };
};

const rank = (severity: string): number => {
  const i = SEVERITY_ORDER.indexOf(severity);
  return i < 0 ? SEVERITY_ORDER.length + (severity === NOT_RECORDED ? 1 : 0) : i;
};

/** Deadlines met: remediations Patched by their deadline ÷ remediations that had one. */
export const deadlinesMet = (records: readonly ReportRecord[]): Figure => {
  if (records.length === 0) return { status: 'none', why: 'no remediation in the period' };
  const withDeadline = records.filter((r) => time(r.deadlineAt) !== undefined);
  if (withDeadline.length === 0) return { status: 'not-recorded', needs: ['deadlineAt'] };
  const met = withDeadline.filter(
    (r) => r.outcome === 'Patched' && (time(r.finishedAt) as number) <= (time(r.deadlineAt) as number),
  ).length;
  return rate(
    met,
    withDeadline.length,
    leftOut(records.length - withDeadline.length, records.length, 'deadlineAt'),
  );
};
