/**
 * The bench's figures as one document (`--json`), the goals they are held to, and the Markdown
 * tables `npm run bench` prints and docs/performance.md carries.
 */

import type { AmplificationResult } from './amplification';
import type { BurstSimulationResult } from './burst-simulation';
import { type ColdStartRow, FLOOR, TRIAGE } from './cold-start';
import type { ContentionResult, OrderContentionResult } from './contention';
import type { DevLoopResult } from './dev-loop';
import type { FleetBurstResult } from './fleet-burst';
import { type InventoryBenchResult, renderInventory } from './inventory';
import type { ThroughputResult } from './throughput';
import { VARIANTS, type WorkflowRun } from './workflow';

export interface ThroughputFigures extends ThroughputResult {
  readonly memory: {
    /** Peak resident set size of the process that generated and triaged the burst. */
    readonly peakRssBytes: number;
    /** Resident set size once the modules were loaded, before the burst was generated. */
    readonly rssBeforeBytes: number;
    readonly heapUsedAfterBytes: number;
  };
}

export interface BenchMeta {
  readonly command: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly node: string;
  readonly os: string;
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGb: number;
  readonly commit?: string;
  readonly sizes: readonly number[];
  readonly bakeTimes: readonly number[];
  /** The intake settings of the synthesized stack the triage benchmarks use. */
  readonly batchSize: number;
  readonly concurrency: number;
}

export interface GoalResult {
  readonly id: string;
  readonly measure: string;
  readonly goal: string;
  /** The figures the goal was checked against, as printed. */
  readonly values: string;
  /** undefined: not measured in this run. */
  readonly met?: boolean | undefined;
}

export interface BenchReport {
  readonly meta: BenchMeta;
  readonly throughput: readonly ThroughputFigures[];
  readonly amplification: readonly AmplificationResult[];
  readonly endToEnd: readonly BurstSimulationResult[];
  readonly coldStart: readonly ColdStartRow[];
  readonly workflow: readonly WorkflowRun[];
  /** Absent in reports from before the contention section existed. */
  readonly contention?: readonly ContentionResult[];
  /** Concurrent invocations claiming the same services, in the plan's order and in their own; absent in older reports. */
  readonly orderContention?: readonly OrderContentionResult[];
  readonly devLoop: readonly DevLoopResult[];
  /** The inventory index against the scanning resolver (bench/inventory.ts); absent in older reports. */
  readonly inventory?: InventoryBenchResult;
  /** 1,000 services in 50 accounts under a burst over two simulated hours; absent unless asked for. */
  readonly fleetBurst?: FleetBurstResult;
  /** Sections not run, with why. */
  readonly skipped: readonly string[];
  /** Sections that failed to run, with the error. */
  readonly errors: readonly string[];
  readonly goals: readonly GoalResult[];
}

// ------------------------------------------------------------------------------------------- format

export const integer = (n: number): string => Math.round(n).toLocaleString('en-US');
export const fixed = (n: number, digits = 2): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
export const percent = (ratio: number, digits = 1): string =>
  Number.isFinite(ratio) ? `${(ratio * 100).toFixed(digits)} %` : 'n/a';
export const megabytes = (bytes: number): string => `${(bytes / 1_048_576).toFixed(0)} MB`;
export const kilobytes = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KB`;
export const seconds = (ms: number): string => {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
};

const mark = (met: boolean | undefined): string => (met === undefined ? '—' : met ? 'yes' : '**no**');

/** A Markdown table; the first row is the header. */
export const table = (rows: ReadonlyArray<readonly string[]>): string => {
  const [header, ...body] = rows;
  if (!header) return '';
  const widths = header.map((_, c) => Math.max(3, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: readonly string[]) =>
    `| ${r.map((cell, c) => cell.padEnd(widths[c] as number)).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...body.map(line)].join('\n');
};

// ------------------------------------------------------------------------------------------- goals

const EPSILON = 1e-9;

const all = <T>(items: readonly T[], test: (t: T) => boolean): boolean | undefined =>
  items.length === 0 ? undefined : items.every(test);

/** Bursts that affected some service (a ratio per affected service is undefined otherwise). */
const measured = <T extends { executionsPerService: number }>(items: readonly T[]): T[] =>
  items.filter((i) => Number.isFinite(i.executionsPerService));

const list = <T>(items: readonly T[], show: (t: T) => string): string =>
  items.length === 0 ? 'not measured' : items.map(show).join(' / ');

/** Check every goal of the issue against the figures. */
export const checkGoals = (r: Omit<BenchReport, 'goals'>): GoalResult[] => {
  const triage = r.coldStart.find((c) => c.lambda === TRIAGE);
  const patched = r.workflow.filter((w) => w.variant === 'Patched' && w.overhead);
  const watched = r.workflow.filter((w) => w.rollbackBy === 'autopatch' && w.reactionSeconds !== undefined);
  const byVariant = VARIANTS.map((v) => r.workflow.filter((w) => w.variant === v)).filter(
    (runs) => runs.length > 0,
  );
  return [
    {
      id: 'throughput',
      measure: 'triage throughput ÷ JSON.parse floor',
      goal: '≥ 0.50',
      values: list(r.throughput, (t) => fixed(t.ratioToFloor)),
      met: all(r.throughput, (t) => t.ratioToFloor >= 0.5),
    },
    {
      id: 'executions-triage',
      measure: 'executions started ÷ affected services (triage, burst)',
      goal: '= 1.00',
      values: list(r.amplification, (a) => fixed(a.executionsPerService)),
      met: all(measured(r.amplification), (a) => Math.abs(a.executionsPerService - 1) < EPSILON),
    },
    {
      id: 'executions-end-to-end',
      measure: 'executions ÷ affected services (end to end, simulation)',
      goal: '= 1.00',
      values: list(r.endToEnd, (e) => fixed(e.executionsPerService)),
      met: all(measured(r.endToEnd), (e) => Math.abs(e.executionsPerService - 1) < EPSILON),
    },
    {
      id: 'api-calls',
      measure: 'AWS API calls ÷ findings (triage)',
      goal: '≤ 0.02',
      values: list(r.amplification, (a) => fixed(a.apiCallsPerFinding, 3)),
      met: all(r.amplification, (a) => a.apiCallsPerFinding <= 0.02),
    },
    {
      id: 'write-units',
      measure: 'DynamoDB write units ÷ findings (triage)',
      goal: '≤ 1.50',
      values: list(r.amplification, (a) => fixed(a.writeUnitsPerFinding, 3)),
      met: all(r.amplification, (a) => a.writeUnitsPerFinding <= 1.5),
    },
    {
      id: 'inventory-calls',
      measure: 'inventory API calls ÷ findings (index, 1,000 services)',
      goal: '≤ 0.05',
      values: list(
        (r.inventory?.rows ?? []).filter((x) => x.resolver === 'index' && x.services === 1_000),
        (x) => fixed(x.apiCallsPerFinding, 4),
      ),
      met: all(
        (r.inventory?.rows ?? []).filter((x) => x.resolver === 'index' && x.services === 1_000),
        (x) => x.apiCallsPerFinding <= 0.05,
      ),
    },
    {
      id: 'cold-start',
      measure: 'triage cold start ÷ floor',
      goal: '≤ 1.30',
      values: triage && !triage.error ? fixed(triage.ratioToFloor) : 'not measured',
      ...(triage && !triage.error ? { met: triage.ratioToFloor <= 1.3 } : {}),
    },
    {
      id: 'transitions',
      measure: 'state transitions per execution do not grow with bake time',
      goal: 'same at every bake time',
      values: list(byVariant, (runs) => runs.map((w) => w.transitions).join('→')),
      met: all(byVariant, (runs) => runs.every((w) => w.transitions === runs[0]?.transitions)),
    },
    {
      id: 'reaction',
      measure: 'alarm in ALARM → rollback request (alarm Autopatch watches)',
      goal: '≤ 60 s',
      values: list(watched, (w) => `${fixed(w.reactionSeconds ?? Number.NaN, 0)} s`),
      met: all(watched, (w) => (w.reactionSeconds ?? Number.POSITIVE_INFINITY) <= 60),
    },
    {
      id: 'overhead',
      measure: 'engine overhead ÷ finding-to-patched time',
      goal: '≤ 1 %',
      values: list(patched, (w) => percent(w.overhead?.overheadRatio ?? Number.NaN, 2)),
      met: all(patched, (w) => (w.overhead?.overheadRatio ?? Number.POSITIVE_INFINITY) <= 0.01),
    },
  ];
};

// ------------------------------------------------------------------------------------------- tables

const goalOf = (goals: readonly GoalResult[], id: string) => goals.find((g) => g.id === id);

const sizeHeader = (sizes: readonly number[]) => sizes.map((s) => `${integer(s)} findings`);

/** One row per figure, one column per burst size, then goal and met?. */
const growthTable = <T extends { size: number }>(
  sizes: readonly number[],
  results: readonly T[],
  rows: ReadonlyArray<{
    label: string;
    value: (t: T) => string;
    /** undefined: the row has no goal (its goal was not checked). */
    goal?: string | undefined;
    met?: boolean | undefined;
  }>,
): string => {
  const at = (size: number) => results.find((r) => r.size === size);
  return table([
    ['measure', ...sizeHeader(sizes), 'goal', 'met?'],
    ...rows.map((row) => [
      row.label,
      ...sizes.map((s) => {
        const r = at(s);
        return r ? row.value(r) : 'not run';
      }),
      row.goal ?? '—',
      row.goal === undefined ? '—' : mark(row.met),
    ]),
  ]);
};

const throughputSection = (r: BenchReport): string => {
  const g = goalOf(r.goals, 'throughput');
  return [
    `### 1. Triage throughput (in-process, batches of ${r.meta.batchSize}, warm inventory cache)`,
    '',
    growthTable(r.meta.sizes, r.throughput, [
      { label: 'triage: findings / s', value: (t) => integer(t.findingsPerSecond) },
      { label: 'floor (JSON.parse alone): findings / s', value: (t) => integer(t.floorFindingsPerSecond) },
      { label: 'triage ÷ floor', value: (t) => fixed(t.ratioToFloor), goal: g?.goal, met: g?.met },
      { label: 'time per finding: triage', value: (t) => `${fixed((t.triageMs * 1000) / t.size, 1)} µs` },
      {
        label: 'of which the event schema alone (parseEvent)',
        value: (t) => `${fixed((t.schemaMs * 1000) / t.size, 1)} µs`,
      },
      { label: 'time per finding: floor', value: (t) => `${fixed((t.floorMs * 1000) / t.size, 1)} µs` },
      {
        label: 'decisions: remediate / notify (+ remediations planned)',
        value: (t) =>
          `${integer(t.actions.remediate ?? 0)} / ${integer(t.actions.notify ?? 0)} (+${integer(t.remediations)})`,
      },
      { label: 'ECS calls while timed (warm cache: 0)', value: (t) => integer(t.ecsCallsWhileTimed) },
      { label: 'events (JSON)', value: (t) => megabytes(t.eventBytes) },
      {
        label: 'heap triage keeps after the passes (after a full GC)',
        value: (t) => (t.heapRetainedBytes === undefined ? 'n/a' : kilobytes(t.heapRetainedBytes)),
      },
      {
        label: 'peak RSS of the process (it holds the whole burst)',
        value: (t) => megabytes(t.memory.peakRssBytes),
      },
      {
        label: 'peak RSS above the loaded process',
        value: (t) => megabytes(t.memory.peakRssBytes - t.memory.rssBeforeBytes),
      },
    ]),
  ].join('\n');
};

const amplificationSection = (r: BenchReport): string => {
  const ex = goalOf(r.goals, 'executions-triage');
  const e2e = goalOf(r.goals, 'executions-end-to-end');
  const calls = goalOf(r.goals, 'api-calls');
  const wcu = goalOf(r.goals, 'write-units');
  const perService = (a: AmplificationResult, service: string) =>
    fixed(a.perFindingByService[service] ?? 0, 4);
  const triage = growthTable(r.meta.sizes, r.amplification, [
    {
      label: 'affected services (triage / generator)',
      value: (a) => `${a.affectedServices} / ${a.expectedServices}`,
    },
    {
      label: 'executions started ÷ affected services',
      value: (a) => fixed(a.executionsPerService),
      goal: ex?.goal,
      met: ex?.met,
    },
    {
      label: 'requests queued behind a run (services) ⇒ ÷ eventually',
      value: (a) => `${a.servicesWithQueue} ⇒ ${fixed(a.executionsPerServiceEventually)}`,
    },
    {
      label: 'AWS API calls ÷ findings',
      value: (a) => fixed(a.apiCallsPerFinding, 3),
      goal: calls?.goal,
      met: calls?.met,
    },
    { label: '↳ DynamoDB calls ÷ findings', value: (a) => perService(a, 'dynamodb') },
    { label: '↳ ECS calls ÷ findings', value: (a) => perService(a, 'ecs') },
    { label: '↳ Step Functions calls ÷ findings', value: (a) => perService(a, 'sfn') },
    { label: 'AWS API calls', value: (a) => integer(a.apiCallsTotal) },
    {
      label: 'calls per invocation: DynamoDB / ECS',
      value: (a) =>
        `${fixed(((a.perFindingByService.dynamodb ?? 0) * a.size) / a.invocations, 1)} / ${fixed(((a.perFindingByService.ecs ?? 0) * a.size) / a.invocations, 1)}`,
    },
    { label: 'invocations (cold starts)', value: (a) => `${a.invocations} (${a.coldStarts})` },
    {
      label: 'DynamoDB write units ÷ findings (from item sizes)',
      value: (a) => (a.writeUnits === undefined ? 'not measured' : fixed(a.writeUnitsPerFinding, 3)),
      goal: wcu?.goal,
      met: wcu?.met,
    },
    {
      label: '↳ write units / writes (condition failed)',
      value: (a) =>
        a.writeUnits === undefined
          ? 'not measured'
          : `${integer(a.writeUnits)} / ${integer(a.dynamoWrites)} (${integer(a.conditionFailures)})`,
    },
    {
      label: 'largest ledger item written',
      value: (a) => (a.maxItemBytes === undefined ? 'not measured' : kilobytes(a.maxItemBytes)),
    },
    {
      label: 'largest in-flight request in the ledger (findings)',
      value: (a) => `${kilobytes(a.largestLockRequestBytes)} (${integer(a.largestLockRequestFindings)})`,
    },
    { label: 'messages failed / dead-lettered', value: (a) => `${a.itemFailures} / ${a.deadLetters}` },
    { label: 'wall time', value: (a) => seconds(a.wallMs) },
  ]);
  const endToEnd = growthTable(r.meta.sizes, r.endToEnd, [
    {
      label: 'affected services (with an execution)',
      value: (e) => `${e.affectedServices} (${e.affectedServices - e.servicesWithoutExecution.length})`,
    },
    {
      label: 'executions ÷ affected services',
      value: (e) => fixed(e.executionsPerService),
      goal: e2e?.goal,
      met: e2e?.met,
    },
    {
      label: 'outcomes',
      value: (e) =>
        Object.entries(e.outcomes)
          .map(([o, n]) => `${o} ${n}`)
          .join(', ') || 'none',
    },
    { label: 'AWS API calls ÷ findings (triage and workflow)', value: (e) => fixed(e.apiCallsPerFinding, 3) },
    {
      label: '↳ DynamoDB / ECS / Step Functions / other',
      value: (e) => {
        const f = e.perFindingByService;
        const other = Object.entries(f)
          .filter(([k]) => !['dynamodb', 'ecs', 'sfn'].includes(k))
          .reduce((n, [, v]) => n + v, 0);
        return [f.dynamodb ?? 0, f.ecs ?? 0, f.sfn ?? 0, other].map((v) => fixed(v, 3)).join(' / ');
      },
    },
    { label: 'virtual time to the last outcome', value: (e) => seconds(e.virtualMinutes * 60_000) },
    { label: 'wall time', value: (e) => seconds(e.wallMs) },
  ]);
  const spread = r.endToEnd[0]?.spread ?? '10m';
  return [
    '### 2. Amplification',
    ...(r.amplification.length > 0
      ? [
          '',
          `Triage only: the real triage handler with its ECS resolver, cache and ledger, batches of ${r.meta.batchSize}, ` +
            `${r.meta.concurrency} concurrent environments; calls counted at the SDK boundary (every attempt). Nothing ` +
            'runs the workflow, so no remediation seals its request: later batches merge into it.',
          '',
          triage,
        ]
      : []),
    ...(r.endToEnd.length > 0
      ? [
          '',
          `End to end: the same fleet as a simulation scenario, a burst of HIGH OS findings on every image spread over ${spread}, ` +
            'every remediation run to its outcome by the real workflow on the virtual clock.',
          '',
          endToEnd,
        ]
      : []),
  ].join('\n');
};

const coldStartSection = (r: BenchReport): string => {
  const g = goalOf(r.goals, 'cold-start');
  return [
    '### 3. Cold start (esbuild bundle as NodejsFunction builds it; `require` in a fresh `node --enable-source-maps`)',
    '',
    table([
      ['Lambda', 'bundle', 'gzip', 'load (median)', '÷ floor', 'goal', 'met?'],
      ...r.coldStart.map((c) => {
        const isTriage = c.lambda === TRIAGE;
        return [
          c.lambda,
          c.error ? 'n/a' : kilobytes(c.bytes),
          c.error ? 'n/a' : kilobytes(c.gzipBytes),
          c.error ? `failed: ${c.error}` : `${fixed(c.loadMs, 1)} ms`,
          c.error ? 'n/a' : c.lambda === FLOOR ? '1.00' : fixed(c.ratioToFloor),
          isTriage ? (g?.goal ?? '≤ 1.30') : '—',
          isTriage ? mark(g?.met) : '—',
        ];
      }),
    ]),
  ].join('\n');
};

const contentionSection = (r: BenchReport): string =>
  [
    '### Lock contention (concurrent findings for one service)',
    '',
    'Each finding arrives in its own triage invocation, all at once, against dynalite: the lock is ' +
      'settled inside the invocation, so no message comes back for redelivery.',
    '',
    table([
      [
        'findings',
        'lock found',
        'executions started',
        'item failures',
        'highest receive',
        'next runs on release',
        'wall',
      ],
      ...(r.contention ?? []).map((c) => [
        integer(c.findings),
        c.lock === 'idle' ? 'free' : 'held by a sealed run',
        integer(c.executionsStarted),
        integer(c.itemFailures),
        integer(c.maxReceives),
        c.lock === 'sealed' ? integer(c.nextRuns) : '—',
        seconds(c.wallMs),
      ]),
    ]),
  ].join('\n');

const orderContentionSection = (r: BenchReport): string =>
  [
    '### Claim order (concurrent invocations naming the same services)',
    '',
    'Each invocation carries one finding for every service, all at once, against dynalite (as the ' +
      'batches of a burst do). Failed conditions are writes that met another invocation on the same lock.',
    '',
    table([
      [
        'services walked',
        'invocations × services',
        'executions started',
        'item failures',
        'failed conditions',
        'write units',
        'wall',
      ],
      ...(r.orderContention ?? []).map((c) => [
        c.walk === 'plan' ? 'in the plan’s (sorted) order' : 'in an order of each invocation’s own',
        `${integer(c.invocations)} × ${integer(c.services)}`,
        integer(c.executionsStarted),
        integer(c.itemFailures),
        integer(c.conditionFailures),
        integer(c.writeUnits),
        seconds(c.wallMs),
      ]),
    ]),
  ].join('\n');

const fleetSection = (f: FleetBurstResult): string =>
  [
    `### Fleet burst: ${integer(f.services)} services in ${integer(f.accounts)} accounts, ${integer(f.size)} findings over ${f.spreadMs / 3_600_000} simulated hours`,
    '',
    'The real triage handler with the inventory index (written as the indexer writes it), batches ' +
      'formed per 20 s batching window on the simulated clock, warm environments reused; nothing runs ' +
      'the workflow. Service keys of spoke accounts are `<account>/<region>/<cluster>/<service>`.',
    '',
    table([
      ['measure', 'value', 'goal', 'met?'],
      ['invocations (cold starts)', `${integer(f.invocations)} (${integer(f.coldStarts)})`, '—', '—'],
      [
        'affected services (triage / generator)',
        `${integer(f.affectedServices)} / ${integer(f.expectedServices)}`,
        '—',
        '—',
      ],
      [
        'executions ÷ affected services',
        fixed(f.executionsPerService),
        '= 1.00',
        mark(Math.abs(f.executionsPerService - 1) < EPSILON),
      ],
      [
        'failed follow-ups (messages retried / dead-lettered)',
        `${integer(f.failedFollowUps)} / ${integer(f.deadLetters)}`,
        '0',
        mark(f.failedFollowUps === 0 && f.deadLetters === 0),
      ],
      ['ECS + ECR calls (the index answers)', integer(f.ecsEcrCalls), '—', '—'],
      ['AWS API calls ÷ findings', fixed(f.apiCallsPerFinding, 3), '—', '—'],
      [
        'DynamoDB write units ÷ findings',
        fixed(f.writeUnitsPerFinding, 3),
        '≤ 1.50',
        mark(f.writeUnitsPerFinding <= 1.5),
      ],
      [
        '↳ by item kind ÷ findings',
        Object.entries(f.writeUnitsByKind)
          .sort(([, a], [, b]) => b - a)
          .map(([k, v]) => `${k} ${fixed(v / f.size, 3)}`)
          .join(', '),
        '—',
        '—',
      ],
      ['largest item written', `${integer(f.maxItemBytes)} B`, '—', '—'],
      ['wall time', seconds(f.wallMs), '—', '—'],
    ]),
  ].join('\n');

const workflowSection = (r: BenchReport): string => {
  const bakes = r.meta.bakeTimes;
  const runs = (variant: string) => r.workflow.filter((w) => w.variant === variant);
  const at = (variant: string, bake: number) =>
    r.workflow.find((w) => w.variant === variant && w.bakeMinutes === bake);
  const transitionsGoal = goalOf(r.goals, 'transitions');
  const reaction = goalOf(r.goals, 'reaction');
  const overhead = goalOf(r.goals, 'overhead');
  const header = ['measure', ...bakes.map((b) => `bake ${b} min`), 'goal', 'met?'];
  const transitionRows = VARIANTS.filter((v) => runs(v).length > 0).map((v) => {
    const list = runs(v);
    const same = list.every((w) => w.transitions === list[0]?.transitions);
    const outcome = list[0]?.outcomes.join(', ') ?? '';
    return [
      `transitions: ${v}${outcome && !v.startsWith(outcome.split(',')[0] ?? '') ? ` (got ${outcome})` : ''}`,
      ...bakes.map((b) => {
        const w = at(v, b);
        return w ? `${w.transitions} (${w.statesEntered} + ${w.retries} retries)` : 'not run';
      }),
      transitionsGoal?.goal ?? '—',
      mark(same),
    ];
  });
  const cell = (variant: string, show: (w: WorkflowRun) => string) =>
    bakes.map((b) => {
      const w = at(variant, b);
      return w ? show(w) : 'not run';
    });
  const o = (w: WorkflowRun, f: (x: NonNullable<WorkflowRun['overhead']>) => string) =>
    w.overhead ? f(w.overhead) : 'n/a';
  return [
    '### 4. Workflow cost and reaction (simulation, virtual time; one service, one HIGH OS finding)',
    '',
    table([
      header,
      ...transitionRows,
      [
        'alarm Autopatch watches → StopServiceDeployment(ROLLBACK)',
        ...cell('RolledBack (alarm Autopatch watches)', (w) =>
          w.reactionSeconds === undefined ? 'n/a' : `${fixed(w.reactionSeconds, 0)} s`,
        ),
        reaction?.goal ?? '≤ 60 s',
        mark(reaction?.met),
      ],
      [
        'ECS deployment alarm → ECS rolls back by itself',
        ...cell('RolledBack (ECS deployment alarm)', (w) =>
          w.reactionSeconds === undefined ? 'n/a' : `${fixed(w.reactionSeconds, 0)} s`,
        ),
        '—',
        '—',
      ],
      ['finding → patched', ...cell('Patched', (w) => o(w, (x) => seconds(x.findingToPatchedMs))), '—', '—'],
      [
        "the account's own time (build, scan, deployment and bake)",
        ...cell('Patched', (w) => o(w, (x) => seconds(x.accountMs))),
        '—',
        '—',
      ],
      [
        'engine overhead ÷ finding → patched',
        ...cell('Patched', (w) => o(w, (x) => `${percent(x.overheadRatio, 2)} (${seconds(x.overheadMs)})`)),
        overhead?.goal ?? '≤ 1 %',
        mark(overhead?.met),
      ],
      [
        '↳ overhead before the build / between / after the deployment',
        ...cell('Patched', (w) =>
          o(
            w,
            (x) => `${seconds(x.beforeBuildMs)} / ${seconds(x.betweenMs)} / ${seconds(x.afterDeploymentMs)}`,
          ),
        ),
        '—',
        '—',
      ],
      [
        '↳ of which the gather window (defaults.gatherSeconds)',
        ...cell('Patched', (w) => o(w, (x) => seconds(x.gatherMs))),
        '—',
        '—',
      ],
      [
        '↳ overhead without the gather window ÷ finding → patched',
        ...cell('Patched', (w) =>
          o(w, (x) => percent((x.overheadMs - x.gatherMs) / x.findingToPatchedMs, 2)),
        ),
        '—',
        '—',
      ],
    ]),
  ].join('\n');
};

const devLoopSection = (r: BenchReport): string =>
  [
    '### 5. Developer loop (reported, not asserted)',
    '',
    table([
      ['command', 'wall time', 'exit code'],
      ...r.devLoop.map((d) => [`\`${d.command}\``, seconds(d.wallMs), String(d.exitCode)]),
    ]),
  ].join('\n');

const goalsSection = (r: BenchReport): string =>
  [
    '### Goals',
    '',
    table([
      ['goal', 'target', 'measured', 'met?'],
      ...r.goals.map((g) => [g.measure, g.goal, g.values, mark(g.met)]),
    ]),
  ].join('\n');

/** Everything `npm run bench` prints: the run's context, one table per measurement, the goals. */
export const renderReport = (r: BenchReport): string => {
  const m = r.meta;
  const parts = [
    [
      `- Command: \`${m.command}\``,
      `- Run: ${m.startedAt} (${seconds(m.durationMs)}), Node ${m.node}, ${m.os}, ${m.cores} × ${m.cpu}, ${m.memoryGb} GB` +
        `${m.commit ? `, commit ${m.commit}` : ''}`,
      `- Burst sizes: ${m.sizes.map(integer).join(', ')} findings; bake times: ${m.bakeTimes.join(', ')} min; ` +
        `intake from the synthesized stack: batches of ${m.batchSize}, ${m.concurrency} concurrent triage invocations`,
    ].join('\n'),
  ];
  if (r.throughput.length > 0) parts.push(throughputSection(r));
  if (r.amplification.length > 0 || r.endToEnd.length > 0) parts.push(amplificationSection(r));
  if (r.coldStart.length > 0) parts.push(coldStartSection(r));
  if (r.workflow.length > 0) parts.push(workflowSection(r));
  if ((r.contention ?? []).length > 0) parts.push(contentionSection(r));
  if ((r.orderContention ?? []).length > 0) parts.push(orderContentionSection(r));
  if (r.devLoop.length > 0) parts.push(devLoopSection(r));
  if (r.inventory && r.inventory.rows.length > 0)
    parts.push(`### Inventory: scanning resolver vs index\n\n${renderInventory(r.inventory)}`);
  if (r.fleetBurst) parts.push(fleetSection(r.fleetBurst));
  parts.push(goalsSection(r));
  if (r.skipped.length > 0) parts.push(`Not run: ${r.skipped.join('; ')}.`);
  if (r.errors.length > 0) parts.push(['Errors:', ...r.errors.map((e) => `- ${e}`)].join('\n'));
  const problems = [
    ...r.amplification.flatMap((a) => [
      ...(a.servicesWithoutExecution.length > 0
        ? [
            `${integer(a.size)} findings (triage): no execution was started for ${a.servicesWithoutExecution.join(', ')}, which triage decided to remediate`,
          ]
        : []),
      ...a.nameClashes.map(
        (c) =>
          `${integer(a.size)} findings (triage): StartExecution for ${c.service} was refused with ExecutionAlreadyExists: ${c.takenBy}'s execution already has the name ${c.name}`,
      ),
      ...(a.serviceMismatch.length > 0
        ? [
            `${integer(a.size)} findings: triage and the generator disagree on ${a.serviceMismatch.join(', ')}`,
          ]
        : []),
      ...a.triageErrors.map((e) => `${integer(a.size)} findings: triage logged ${e}`),
    ]),
    ...r.endToEnd.flatMap((e) => [
      ...(e.servicesWithoutExecution.length > 0
        ? [
            `end to end, ${integer(e.size)} findings: no execution for ${e.servicesWithoutExecution.join(', ')}`,
          ]
        : []),
      ...e.errors.map((x) => `end to end, ${integer(e.size)} findings: ${x}`),
    ]),
    ...r.workflow.flatMap((w) => w.errors.map((x) => `${w.variant}, bake ${w.bakeMinutes} min: ${x}`)),
    ...r.devLoop.flatMap((d) =>
      d.exitCode === 0 ? [] : [`\`${d.command}\` exited ${d.exitCode}: ${d.tail ?? ''}`],
    ),
  ];
  if (problems.length > 0)
    parts.push(['Noticed while measuring:', ...problems.map((p) => `- ${p}`)].join('\n'));
  return `${parts.join('\n\n')}\n`;
};
