/**
 * Workflow cost and reaction, from the simulation (simulation/runner.ts: the synthesized state
 * machine, the real workflow Lambdas and triage, a simulated account on a virtual clock).
 *
 * One service, one HIGH OS finding, one scenario per outcome and bake time, built in code:
 * - state transitions per execution: every state entered, plus every retry of a state (Step
 *   Functions bills both as transitions), for each outcome at each bake time;
 * - reaction: virtual time from an alarm entering ALARM to the rollback request, for an alarm only
 *   Autopatch watches (targets[].alarmNames: Autopatch calls StopServiceDeployment) and for one of the
 *   service's own deployment alarms (ECS rolls back by itself);
 * - engine overhead: finding-to-patched time minus the time the account itself was busy (the
 *   CodeBuild build, Inspector's scan of the pushed image, the ECS deployment and its bake), read from
 *   what the models did (the run's timeline), not from the workflow's own view of it.
 */
import type { SimulationReport } from '../simulation/report';
import { runScenario } from '../simulation/runner';
import { parseScenario, type ScenarioInput } from '../simulation/scenario';

export const SERVICE = 'prod/checkout';
const WATCHED_ALARM = 'checkout-latency';
const ECS_ALARM = 'checkout-5xx';
const DEPLOY_MINUTES = 4;
const BUILD_MINUTES = 7;
const SCAN_MINUTES = 4;

export type Variant =
  | 'Patched'
  | 'Patched after approval'
  | 'RolledBack (alarm Autopatch watches)'
  | 'RolledBack (ECS deployment alarm)'
  | 'BuildFailed'
  | 'PatchIneffective'
  | 'RescanTimedOut'
  | 'Rejected'
  | 'ApprovalExpired';

export const VARIANTS: readonly Variant[] = [
  'Patched',
  'Patched after approval',
  'RolledBack (alarm Autopatch watches)',
  'RolledBack (ECS deployment alarm)',
  'BuildFailed',
  'PatchIneffective',
  'RescanTimedOut',
  'Rejected',
  'ApprovalExpired',
];

const APPROVAL_POLICY = {
  rules: [{ name: 'approve-high', match: { severities: ['CRITICAL', 'HIGH'] }, action: 'approve' }],
  defaultAction: 'notify',
};

/** The scenario of one variant at one bake time. */
export const workflowScenario = (variant: Variant, bakeMinutes: number): ScenarioInput => {
  const ecsAlarm = variant === 'RolledBack (ECS deployment alarm)';
  const approval =
    variant === 'Patched after approval' || variant === 'Rejected' || variant === 'ApprovalExpired';
  // Halfway through the bake.
  const alarmAt = `${(DEPLOY_MINUTES + bakeMinutes / 2) * 60}s`;
  return {
    name: `bench-${variant
      .toLowerCase()
      .replace(/[^a-z]+/g, '-')
      .replace(/-$/, '')}-${bakeMinutes}m`,
    description: `${variant}, bake time ${bakeMinutes} minutes`,
    startTime: '2024-09-04T16:00:00Z',
    account: {
      repositories: [
        {
          name: 'payments/checkout',
          images: [
            {
              tags: ['v1.4.2'],
              findings: [
                {
                  cve: 'CVE-2024-6119',
                  severity: 'HIGH',
                  packageManager: 'OS',
                  package: 'openssl',
                  fixAvailable: 'YES',
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'prod',
          services: [
            {
              name: 'checkout',
              containers: [{ name: 'app', image: 'payments/checkout:v1.4.2' }],
              bakeTimeMinutes: bakeMinutes,
              deployMinutes: DEPLOY_MINUTES,
              alarms: ecsAlarm ? [ECS_ALARM] : [],
              tags: { 'autopatch:enabled': 'true' },
            },
          ],
        },
      ],
      alarms: [{ name: ECS_ALARM }, { name: WATCHED_ALARM }],
    },
    ...(approval ? { policy: APPROVAL_POLICY } : {}),
    targets: [
      { cluster: 'prod', service: 'checkout', alarmNames: [WATCHED_ALARM], bakeTimeMinutes: bakeMinutes },
    ],
    events: [
      { at: '+1m', kind: 'finding', repository: 'payments/checkout', image: 'v1.4.2', cve: 'CVE-2024-6119' },
    ],
    builds: [
      variant === 'BuildFailed'
        ? { outcome: 'FAILED', durationMinutes: BUILD_MINUTES, failedPhase: 'BUILD' }
        : {
            outcome: 'SUCCEEDED',
            durationMinutes: BUILD_MINUTES,
            fixes: variant === 'PatchIneffective' ? [] : 'all',
          },
    ],
    scans: variant === 'RescanTimedOut' ? { never: true } : { delayMinutes: SCAN_MINUTES },
    alarms:
      variant === 'RolledBack (alarm Autopatch watches)' || ecsAlarm
        ? [
            {
              name: ecsAlarm ? ECS_ALARM : WATCHED_ALARM,
              state: 'ALARM',
              afterDeploymentOf: SERVICE,
              at: alarmAt,
            },
          ]
        : [],
    approvals:
      variant === 'Patched after approval'
        ? [{ service: SERVICE, at: '+20m', decision: 'approve' }]
        : variant === 'Rejected'
          ? [{ service: SERVICE, at: '+20m', decision: 'reject' }]
          : [],
  };
};

export interface WorkflowRun {
  readonly variant: Variant;
  readonly bakeMinutes: number;
  readonly executions: number;
  /** Outcome of each execution, in order. */
  readonly outcomes: readonly string[];
  /** States entered + retries, per execution (the first when there are several). */
  readonly transitions: number;
  readonly statesEntered: number;
  readonly retries: number;
  /** Seconds (virtual) from the alarm entering ALARM to the rollback request, for the alarm variants. */
  readonly reactionSeconds?: number;
  /** Which rollback was requested: by Autopatch (StopServiceDeployment) or by ECS itself. */
  readonly rollbackBy?: 'autopatch' | 'ecs';
  readonly overhead?: EngineOverhead;
  readonly errors: readonly string[];
}

export interface EngineOverhead {
  /** Virtual ms from the finding's delivery to the end of the execution that patched the service. */
  readonly findingToPatchedMs: number;
  /** The account's own time: build, scan of the pushed image, deployment and bake (union of the spans). */
  readonly accountMs: number;
  readonly overheadMs: number;
  readonly overheadRatio: number;
  /** The configured wait for more findings of a burst (defaults.gatherSeconds) that the overhead includes. */
  readonly gatherMs: number;
  /** Where the overhead went: before the build, between the account's steps, after the deployment. */
  readonly beforeBuildMs: number;
  readonly betweenMs: number;
  readonly afterDeploymentMs: number;
}

type Timeline = SimulationReport['timeline'];

const find = (timeline: Timeline, source: string, pattern: RegExp): number | undefined =>
  timeline.find((t) => t.source === source && pattern.test(t.text))?.offsetMs;

/** The account's busy spans, from what the models noted: build, scan, deployment (first of each). */
export const accountSpans = (timeline: Timeline): Array<[number, number]> | undefined => {
  const buildStart = find(timeline, 'codebuild', /^build \S+ started/);
  const pushed = find(timeline, 'codebuild', /^build \S+ SUCCEEDED: pushed/);
  const scanned = find(timeline, 'inspector', /^scanned /);
  const deployStart = find(timeline, 'ecs', /: deployment 1 started/);
  const deployEnd = find(timeline, 'ecs', /: deployment 1 completed/);
  if ([buildStart, pushed, scanned, deployStart, deployEnd].some((x) => x === undefined)) return undefined;
  return [
    [buildStart as number, pushed as number],
    [pushed as number, scanned as number],
    [deployStart as number, deployEnd as number],
  ];
};

const unionLength = (spans: ReadonlyArray<[number, number]>): number => {
  const sorted = [...spans].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = Number.NEGATIVE_INFINITY;
  for (const [s, e] of sorted) {
    if (e <= end) continue;
    total += e - Math.max(s, end);
    end = e;
  }
  return total;
};

const overheadOf = (report: SimulationReport, gatherMs: number): EngineOverhead | undefined => {
  const total = report.findingToPatchedMs[SERVICE];
  const spans = accountSpans(report.timeline);
  const execution = report.executions.find((e) => e.service === SERVICE && e.outcome === 'Patched');
  if (total === undefined || !spans || !execution || execution.durationMs === undefined) return undefined;
  const accountMs = unionLength(spans);
  const end = execution.startOffsetMs + execution.durationMs;
  const firstFinding = end - total;
  const [[buildStart], , [, deployEnd]] = spans as [[number, number], [number, number], [number, number]];
  const beforeBuildMs = buildStart - firstFinding;
  const afterDeploymentMs = end - deployEnd;
  const overheadMs = total - accountMs;
  return {
    findingToPatchedMs: total,
    accountMs,
    overheadMs,
    overheadRatio: overheadMs / total,
    gatherMs,
    beforeBuildMs,
    betweenMs: overheadMs - beforeBuildMs - afterDeploymentMs,
    afterDeploymentMs,
  };
};

const reactionOf = (
  report: SimulationReport,
  variant: Variant,
): { reactionSeconds?: number; rollbackBy?: 'autopatch' | 'ecs' } => {
  const ecs = variant === 'RolledBack (ECS deployment alarm)';
  if (!ecs && variant !== 'RolledBack (alarm Autopatch watches)') return {};
  const alarm = ecs ? ECS_ALARM : WATCHED_ALARM;
  const escaped = alarm.replace(/[-]/g, '\\-');
  const fired = find(report.timeline, 'cloudwatch', new RegExp(`^alarm ${escaped}: \\S+ -> ALARM`));
  const requested = ecs
    ? find(
        report.timeline,
        'ecs',
        new RegExp(`alarm ${escaped} in ALARM during deployment \\d+: ECS rolls back`),
      )
    : find(report.timeline, 'ecs', /: rollback of deployment \d+ requested/);
  if (fired === undefined || requested === undefined) return {};
  return { reactionSeconds: (requested - fired) / 1000, rollbackBy: ecs ? 'ecs' : 'autopatch' };
};

export const runWorkflowVariant = async (variant: Variant, bakeMinutes: number): Promise<WorkflowRun> => {
  const scenario = parseScenario(workflowScenario(variant, bakeMinutes), 'bench');
  const report = await runScenario(scenario);
  const first = report.executions[0];
  const statesEntered = first?.states.length ?? 0;
  const retries = first?.states.reduce((n, s) => n + s.retries, 0) ?? 0;
  const overhead =
    variant === 'Patched' ? overheadOf(report, scenario.defaults.gatherSeconds * 1000) : undefined;
  return {
    variant,
    bakeMinutes,
    executions: report.executions.length,
    outcomes: report.executions.map((e) => e.outcome ?? e.status),
    transitions: statesEntered + retries,
    statesEntered,
    retries,
    ...reactionOf(report, variant),
    ...(overhead ? { overhead } : {}),
    errors: [...report.errors, ...report.mismatches].slice(0, 5),
  };
};

export const measureWorkflow = async (
  bakeTimes: readonly number[],
  variants: readonly Variant[] = VARIANTS,
): Promise<WorkflowRun[]> => {
  const runs: WorkflowRun[] = [];
  for (const variant of variants) {
    for (const bake of bakeTimes) runs.push(await runWorkflowVariant(variant, bake));
  }
  return runs;
};
