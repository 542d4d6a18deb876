/**
 * Amplification: how many executions and AWS API calls a burst of findings turns into.
 *
 * The burst goes through the real triage handler (`createHandler`, as simulation/triage.ts runs it:
 * one instance per Lambda execution environment, each with its own SDK clients and inventory cache)
 * with its real ECS resolver, ledger and StartExecution code. The account behind the SDK clients is
 * the simulation's (bench/account.ts); calls are counted at the SDK boundary, every attempt.
 *
 * The SQS event source is reduced to what matters here: batches of the stack's batch size, handed to
 * at most the stack's maximum concurrency of invocations at once; batch item failures are received
 * again (at once, not after the visibility timeout) until maxReceiveCount, then dead-lettered.
 *
 * Nothing runs the workflow, so the locks triage takes are never released: requests that arrive for
 * a service while its remediation is in flight stay queued in the ledger. Each service with a queue
 * gets exactly one more execution when its first one ends (the ledger merges the queue into one
 * request): the "eventually" figure counts those.
 */
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { Ledger } from '../lambdas/shared/ledger';
import { TriageFleet } from '../simulation/triage';
import { LEDGER_TABLE, openTriageAccount } from './account';
import { type Burst, generateBurst } from './events';
import { type Fleet, generateFleet } from './fleet';

export interface AmplificationOptions {
  readonly size: number;
  readonly batchSize: number;
  /** Concurrent triage invocations (the event source's maximum concurrency). */
  readonly concurrency: number;
  readonly maxReceiveCount?: number;
  readonly fleet?: Fleet;
  readonly burst?: Burst;
}

export interface AmplificationResult {
  readonly size: number;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly invocations: number;
  /** Execution environments created (each builds its own inventory). */
  readonly coldStarts: number;
  /** Services triage decided to remediate (or ask approval for). */
  readonly affectedServices: number;
  /** The generator's independent count of the services policy should remediate. */
  readonly expectedServices: number;
  /** Services in one list and not the other (empty when triage agrees with the generator). */
  readonly serviceMismatch: readonly string[];
  readonly executionsStarted: number;
  /** Services triage decided to remediate that no execution was started for. */
  readonly servicesWithoutExecution: readonly string[];
  /** StartExecution calls Step Functions refused because another service's execution had the name. */
  readonly nameClashes: ReadonlyArray<{
    readonly name: string;
    readonly service: string;
    readonly takenBy: string;
  }>;
  /** Services started more than once during the burst. */
  readonly servicesStartedTwice: number;
  readonly executionsPerService: number;
  /** Services with requests queued behind their in-flight execution: one more execution each, later. */
  readonly servicesWithQueue: number;
  /** Largest number of requests queued behind one execution. */
  readonly longestQueue: number;
  /**
   * Largest in-flight request (JSON bytes) a service's ledger lock holds after the burst: triage merges
   * the burst's findings into it, and a DynamoDB item is limited to 400 KB.
   */
  readonly largestLockRequestBytes: number;
  /** How many findings that request carries. */
  readonly largestLockRequestFindings: number;
  readonly executionsPerServiceEventually: number;
  readonly apiCalls: Readonly<Record<string, number>>;
  readonly apiCallsTotal: number;
  readonly apiCallsPerFinding: number;
  /** API calls per finding, by AWS service. */
  readonly perFindingByService: Readonly<Record<string, number>>;
  /** Messages triage reported failed (each received again, or dead-lettered). */
  readonly itemFailures: number;
  readonly deadLetters: number;
  /** Messages by the action triage last decided for them. */
  readonly actions: Readonly<Record<string, number>>;
  /** Errors triage logged (first few), e.g. a ledger write that failed. */
  readonly triageErrors: readonly string[];
  readonly wallMs: number;
}

interface Message {
  readonly id: string;
  readonly body: string;
  receives: number;
}

const record = (m: Message, arn: string): SQSRecord => ({
  messageId: m.id,
  receiptHandle: `${m.id}:${m.receives}`,
  body: m.body,
  attributes: {
    ApproximateReceiveCount: String(m.receives),
    SentTimestamp: String(Date.now()),
    SenderId: 'AIDAIENQZJOLO23YVJ4VO',
    ApproximateFirstReceiveTimestamp: String(Date.now()),
  },
  messageAttributes: {},
  md5OfBody: '',
  eventSource: 'aws:sqs',
  eventSourceARN: arn,
  awsRegion: 'eu-central-1',
});

export const measureAmplification = async (options: AmplificationOptions): Promise<AmplificationResult> => {
  const started = performance.now();
  const fleet = options.fleet ?? generateFleet();
  const burst = options.burst ?? generateBurst(fleet, { size: options.size });
  const maxReceiveCount = options.maxReceiveCount ?? 5;
  const account = await openTriageAccount(fleet, { ledger: true });
  try {
    const triage = new TriageFleet(account.world, account.variables);
    const queueArn = `arn:aws:sqs:eu-central-1:${account.world.accountId}:autopatch-intake`;
    const pending: Message[] = burst.bodies.map((body, i) => ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      body,
      receives: 0,
    }));
    let next = 0;
    let invocations = 0;
    let itemFailures = 0;
    let deadLetters = 0;
    const failures: string[] = [];

    const worker = async (): Promise<void> => {
      for (;;) {
        const batch = pending.slice(next, next + options.batchSize);
        next += batch.length;
        if (batch.length === 0) return;
        invocations += 1;
        for (const m of batch) m.receives += 1;
        const event: SQSEvent = { Records: batch.map((m) => record(m, queueArn)) };
        let failed: Set<string>;
        try {
          const response = await triage.consume(event);
          failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
        } catch (error) {
          // A thrown error fails the whole batch.
          failures.push(`${(error as Error).name}: ${(error as Error).message}`);
          failed = new Set(batch.map((m) => m.id));
        }
        for (const m of batch) {
          if (!failed.has(m.id)) continue;
          itemFailures += 1;
          if (m.receives >= maxReceiveCount) deadLetters += 1;
          else pending.push(m);
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    // Snapshot before reading the ledger: the reads below are the benchmark's, not triage's.
    const apiCalls = account.apiCalls();

    const actions: Record<string, number> = {};
    const affected = new Set<string>();
    for (const d of triage.decisions.values()) {
      actions[d.action] = (actions[d.action] ?? 0) + 1;
      if (d.action === 'remediate' || d.action === 'approve') for (const s of d.services) affected.add(s);
    }
    const expected = new Set(burst.expectedServices);
    const serviceMismatch = [
      ...[...affected].filter((s) => !expected.has(s)).map((s) => `${s} (triage only)`),
      ...[...expected].filter((s) => !affected.has(s)).map((s) => `${s} (generator only)`),
    ].sort();

    const startsByService = new Map<string, number>();
    for (const e of account.executions)
      startsByService.set(e.service, (startsByService.get(e.service) ?? 0) + 1);
    let servicesWithQueue = 0;
    let longestQueue = 0;
    let largestLockRequestBytes = 0;
    let largestLockRequestFindings = 0;
    const dynamo = account.dynamo;
    if (dynamo) {
      const ledger = new Ledger({ client: dynamo.client, tableName: LEDGER_TABLE });
      for (const service of affected) {
        const inFlight = await ledger.getInFlight(service);
        const bytes = inFlight ? JSON.stringify(inFlight.request).length : 0;
        if (inFlight && bytes > largestLockRequestBytes) {
          largestLockRequestBytes = bytes;
          largestLockRequestFindings = inFlight.request.findingsCount;
        }
        if (inFlight && inFlight.queued > 0) {
          servicesWithQueue += 1;
          longestQueue = Math.max(longestQueue, inFlight.queued);
        }
      }
    }

    const total = Object.values(apiCalls).reduce((a, b) => a + b, 0);
    const byService: Record<string, number> = {};
    for (const [key, n] of Object.entries(apiCalls)) {
      const service = key.split(':')[0] as string;
      byService[service] = (byService[service] ?? 0) + n;
    }
    const findings = burst.bodies.length;
    const executionsStarted = account.executions.length;
    const withExecution = new Set(account.executions.map((e) => e.service));
    return {
      size: findings,
      batchSize: options.batchSize,
      concurrency: options.concurrency,
      invocations,
      coldStarts: triage.coldStarts,
      affectedServices: affected.size,
      expectedServices: expected.size,
      serviceMismatch,
      executionsStarted,
      servicesWithoutExecution: [...affected].filter((s) => !withExecution.has(s)).sort(),
      nameClashes: [...account.nameClashes],
      servicesStartedTwice: [...startsByService.values()].filter((n) => n > 1).length,
      // Undefined (NaN) when the burst affects no service.
      executionsPerService: executionsStarted / affected.size,
      servicesWithQueue,
      longestQueue,
      largestLockRequestBytes,
      largestLockRequestFindings,
      executionsPerServiceEventually: (executionsStarted + servicesWithQueue) / affected.size,
      apiCalls,
      apiCallsTotal: total,
      apiCallsPerFinding: total / findings,
      perFindingByService: Object.fromEntries(
        Object.entries(byService).map(([service, n]) => [service, n / findings]),
      ),
      itemFailures,
      deadLetters,
      actions,
      triageErrors: [
        ...failures,
        ...triage.log
          .filter((l) => l.level === 'ERROR')
          .map((l) => `${l.message}: ${String(l.attributes.error ?? JSON.stringify(l.attributes))}`),
      ].slice(0, 5),
      wallMs: performance.now() - started,
    };
  } finally {
    await account.close();
  }
};
