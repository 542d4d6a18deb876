/**
 * Lock contention: N concurrent triage invocations, each carrying one distinct finding for the same
 * service, race for its lock in a real DynamoDB-compatible server (dynalite on loopback), the way N
 * SQS batches of one message would arrive at once. Measured: executions started, item failures (each
 * would be an SQS redelivery), the highest receive count, DynamoDB calls and the wall time, for a
 * service with no run in flight (the findings merge into the one run they start) and for one whose
 * run has sealed (they queue behind it and start as one next run on release).
 */
import { ExecutionAlreadyExists, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import type { AffectedImage, RemediationRequest } from '../lambdas/shared/contracts';
import { Ledger } from '../lambdas/shared/ledger';
import { executionName, remediationId } from '../lambdas/shared/remediation';
import { executePlan, type TriagePlan } from '../lambdas/triage/triage';
import { startDynalite } from '../local/dynalite';
import { meterWrites } from './amplification';

const REGION = 'eu-central-1';
const ACCOUNT = '123456789012';
const STATE_MACHINE = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:autopatch-bench`;

export interface ContentionResult {
  readonly findings: number;
  /** 'idle': no run in flight; 'sealed': a run in flight that took its findings already. */
  readonly lock: 'idle' | 'sealed';
  readonly executionsStarted: number;
  /** Messages a triage invocation returned as failed items (each an SQS redelivery). */
  readonly itemFailures: number;
  readonly maxReceives: number;
  /** For 'sealed': the requests the next run starts with, after the release (1 = one merged run). */
  readonly nextRuns: number;
  readonly wallMs: number;
}

const request = (serviceKey: string, i: number): RemediationRequest => {
  const [cluster, serviceName] = serviceKey.split('/') as [string, string];
  const image: AffectedImage = {
    repository: 'bench/api',
    registry: ACCOUNT,
    repositoryUri: `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/bench/api`,
    imageDigest: `sha256:${'a1'.repeat(32)}`,
    imageTags: ['1.0.0'],
    containers: ['app'],
    platform: 'DEBIAN_12',
    architecture: 'arm64',
    packageManagers: ['OS'],
    cves: [`CVE-2024-${String(10_000 + i)}`],
    severity: 'HIGH',
    findingArns: [`arn:aws:inspector2:${REGION}:${ACCOUNT}:finding/bench-${i}`],
    rebuild: { mode: 'patch-os' },
  };
  const service = {
    clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/${cluster}`,
    serviceName,
    key: serviceKey,
  };
  const name = executionName(service, [image], new Date(Date.parse('2026-01-01T00:00:00Z') + i * 1000));
  return {
    remediationId: remediationId(serviceKey, name),
    executionName: name,
    service,
    images: [image],
    decision: { action: 'remediate', reason: 'bench' },
    target: {
      alarmNames: [],
      bakeTimeMinutes: 60,
      deploymentTimeoutSeconds: 7200,
      rescanTimeoutSeconds: 3600,
      approvalTimeoutSeconds: 86400,
      gatherSeconds: 300,
      gatherMaxSeconds: 1800,
    },
    findingsCount: 1,
    requestedAt: '2026-01-01T00:00:00.000Z',
  };
};

const planOf = (r: RemediationRequest, id: string): TriagePlan => ({
  findings: [],
  remediations: [{ request: r, itemIds: [id] }],
  seenKeys: [
    {
      findingArn: r.images[0]?.findingArns[0] as string,
      updatedAt: 'u1',
      updatedAtIso: '2026-01-01T00:00:00.000Z',
      itemIds: [id],
    },
  ],
  failedIds: [],
});

/** Step Functions as far as names go: a name starts once; again, it is ExecutionAlreadyExists. */
const fakeStepFunctions = () => {
  const started: string[] = [];
  const client = {
    send: async (command: unknown) => {
      if (!(command instanceof StartExecutionCommand)) throw new Error('bench: only StartExecution');
      const name = command.input.name as string;
      if (started.includes(name)) throw new ExecutionAlreadyExists({ message: 'exists', $metadata: {} });
      started.push(name);
      return { executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${name}` };
    },
  } as unknown as SFNClient;
  return { client, started };
};

export const measureContention = async (findings = 100): Promise<ContentionResult[]> => {
  const dynamo = await startDynalite();
  try {
    const out: ContentionResult[] = [];
    for (const lock of ['idle', 'sealed'] as const) {
      const serviceKey = `bench/contention-${lock}`;
      const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
      const first = request(serviceKey, 1_000_000);
      if (lock === 'sealed') {
        await ledger.claim(first);
        await ledger.markStarted(serviceKey, first.executionName, 'arn:bench:first');
        await ledger.acquire(serviceKey, first.executionName);
        await ledger.seal(serviceKey, first.executionName);
      }
      const sfn = fakeStepFunctions();
      const requests = Array.from({ length: findings }, (_, i) => request(serviceKey, i));
      const receives = new Map<string, number>();
      let pending = requests.map((r, i) => ({ r, id: `m${i}` }));
      let itemFailures = 0;
      const started = performance.now();
      for (let round = 0; pending.length > 0 && round < 5; round++) {
        for (const m of pending) receives.set(m.id, (receives.get(m.id) ?? 0) + 1);
        const outcomes = await Promise.all(
          pending.map((m) =>
            executePlan(planOf(m.r, m.id), {
              ledger,
              sfn: sfn.client,
              stateMachineArn: STATE_MACHINE,
              remainingTimeMs: () => 120_000,
            }),
          ),
        );
        const failed = new Set(outcomes.flatMap((o) => o.failedIds));
        itemFailures += failed.size;
        pending = pending.filter((m) => failed.has(m.id));
      }
      const wallMs = performance.now() - started;
      let nextRuns = 0;
      if (lock === 'sealed') {
        const { next } = await ledger.release(serviceKey, first.executionName);
        nextRuns = next ? 1 : 0;
      }
      out.push({
        findings,
        lock,
        executionsStarted: sfn.started.length,
        itemFailures,
        maxReceives: Math.max(0, ...receives.values()),
        nextRuns,
        wallMs: Math.round(wallMs),
      });
    }
    return out;
  } finally {
    await dynamo.stop();
  }
};

export interface OrderContentionResult {
  /** How each invocation walked its plan: the plan's (sorted) order, or an order of its own. */
  readonly walk: 'plan' | 'shuffled';
  readonly invocations: number;
  readonly services: number;
  readonly executionsStarted: number;
  readonly itemFailures: number;
  /** Conditional writes that failed: each one an invocation that met another on the same lock. */
  readonly conditionFailures: number;
  readonly writeUnits: number;
  readonly wallMs: number;
}

/** A fixed pseudo-random sequence (the bench is repeatable). */
const lcg = (seed: number): (() => number) => {
  let state = seed >>> 0 || 1;
  return () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state / 2 ** 32;
  };
};

/**
 * Order contention: `invocations` concurrent triage invocations whose plans each name the same
 * `services` (one finding of their own for each, as the batches of a burst do), all claiming at once
 * in a real DynamoDB-compatible server. Walked in the plan's order, they all race for the first
 * service's lock, then the second's…; walked in an order of their own, they meet only by chance.
 */
export const measureOrderContention = async (
  options: { readonly invocations?: number; readonly services?: number } = {},
): Promise<OrderContentionResult[]> => {
  const invocations = options.invocations ?? 5;
  const services = options.services ?? 20;
  const dynamo = await startDynalite();
  try {
    const out: OrderContentionResult[] = [];
    for (const walk of ['plan', 'shuffled'] as const) {
      const ledger = new Ledger({ client: dynamo.client, tableName: dynamo.tableName });
      const sfn = fakeStepFunctions();
      const keys = Array.from(
        { length: services },
        (_, s) => `bench/order-${walk}-${String(s).padStart(3, '0')}`,
      );
      const plans = Array.from({ length: invocations }, (_, i): TriagePlan => {
        const remediations = keys.map((key, s) => ({
          request: request(key, i * services + s),
          itemIds: [`m${i}-${s}`],
        }));
        return { findings: [], remediations, seenKeys: [], failedIds: [] };
      });
      const meter = meterWrites();
      const started = performance.now();
      let outcomes: Awaited<ReturnType<typeof executePlan>>[];
      try {
        outcomes = await Promise.all(
          plans.map((plan, i) =>
            executePlan(plan, {
              ledger,
              sfn: sfn.client,
              stateMachineArn: STATE_MACHINE,
              remainingTimeMs: () => 120_000,
              walk,
              random: lcg(7 + i),
            }),
          ),
        );
      } finally {
        meter.stop();
      }
      out.push({
        walk,
        invocations,
        services,
        executionsStarted: sfn.started.length,
        itemFailures: outcomes.reduce((n, o) => n + o.failedIds.length, 0),
        conditionFailures: meter.conditionFailures,
        writeUnits: meter.units,
        wallMs: Math.round(performance.now() - started),
      });
    }
    return out;
  } finally {
    await dynamo.stop();
  }
};
