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
import { createRequire } from 'node:module';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { Ledger } from '../lambdas/shared/ledger';
import { TriageFleet } from '../simulation/triage';
import { LEDGER_TABLE, openTriageAccount } from './account';
import { type Burst, generateBurst } from './events';
import { type Fleet, generateFleet } from './fleet';

/**
 * DynamoDB write units, computed from item sizes the way DynamoDB bills them (Developer Guide,
 * "Capacity unit consumption for write operations"): one write unit per KB, rounded up per item, at
 * least one; PutItem, UpdateItem and DeleteItem by the LARGER of the item's size before and after
 * the write; a conditional write whose condition fails still consumes units, by the size of the
 * existing item; BatchWriteItem as one PutItem or DeleteItem per item. dynalite reports
 * ConsumedCapacity only when asked and never for a failed condition, so the meter hooks dynalite's
 * own write path instead (in this process: the bench runs dynalite in memory here), where it knows
 * the item before and after, and sizes items with dynalite's implementation of DynamoDB's item size
 * (attribute names plus values).
 */
interface DynaliteDb {
  itemSize(item: unknown): number;
  checkConditional(data: unknown, existing: unknown): unknown;
  addConsumedCapacity(data: unknown, isRead: boolean, newItem?: unknown, oldItem?: unknown): unknown;
}

export interface WriteMeter {
  /** Write units consumed so far (successful and failed conditional writes). */
  readonly units: number;
  /** Write requests (items) so far, successful or not. */
  readonly writes: number;
  /** Writes whose condition failed. */
  readonly conditionFailures: number;
  /** Largest item written (bytes, DynamoDB's item size). */
  readonly maxItemBytes: number;
  /** Write units by kind of item (`<pk prefix>/<sk prefix>`, each up to its first '#'). */
  readonly byKind: Readonly<Record<string, number>>;
  /** Stop metering (restores dynalite). */
  stop(): void;
}

const writeUnitsOf = (bytes: number): number => Math.max(1, Math.ceil(bytes / 1024));

/** `<pk prefix>/<sk prefix>` of the item a write request names (DynamoDB JSON). */
const kindOf = (data: unknown): string => {
  const d = data as { Key?: Record<string, { S?: string }>; Item?: Record<string, { S?: string }> };
  const key = d.Key ?? d.Item ?? {};
  const pk = (key.pk?.S ?? '?').split('#')[0];
  const sk = key.sk?.S ?? '?';
  // Digest parts (`<scope>#<time>#<id>`), parts scopes share (`SHARED#…`) and old-layout digests (`<scope>`).
  if (pk === 'DIGEST')
    return sk.startsWith('SHARED#') ? 'DIGEST/shared' : sk.includes('#') ? 'DIGEST/part' : 'DIGEST/scope';
  return `${pk}/${sk.includes('#') ? `${sk.split('#')[0]}#` : /^[A-Z_]+$/.test(sk) ? sk : '*'}`;
};

/** Meter every write dynalite serves in this process until `stop()`. */
export const meterWrites = (): WriteMeter => {
  const db = createRequire(__filename)('dynalite/db') as DynaliteDb;
  const { checkConditional, addConsumedCapacity } = db;
  const size = (item: unknown): number => (item ? db.itemSize(item) : 0);
  const meter = { units: 0, writes: 0, conditionFailures: 0, maxItemBytes: 0 };
  const byKind: Record<string, number> = {};
  const count = (data: unknown, units: number) => {
    meter.units += units;
    const kind = kindOf(data);
    byKind[kind] = (byKind[kind] ?? 0) + units;
  };
  db.checkConditional = (data, existing) => {
    const invalid = checkConditional(data, existing);
    if (invalid != null) {
      meter.writes += 1;
      meter.conditionFailures += 1;
      count(data, writeUnitsOf(size(existing)));
    }
    return invalid;
  };
  db.addConsumedCapacity = (data, isRead, newItem, oldItem) => {
    if (!isRead) {
      // deleteItem passes the deleted item alone; putItem (old, new); updateItem (old, new).
      const bytes = Math.max(size(newItem), size(oldItem));
      meter.writes += 1;
      count(data, writeUnitsOf(bytes));
      meter.maxItemBytes = Math.max(meter.maxItemBytes, bytes);
    }
    return addConsumedCapacity(data, isRead, newItem, oldItem);
  };
  return {
    get units() {
      return meter.units;
    },
    get writes() {
      return meter.writes;
    },
    get conditionFailures() {
      return meter.conditionFailures;
    },
    get maxItemBytes() {
      return meter.maxItemBytes;
    },
    byKind,
    stop: () => {
      db.checkConditional = checkConditional;
      db.addConsumedCapacity = addConsumedCapacity;
    },
  };
};

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
  /** DynamoDB write units triage consumed (see meterWrites), and per finding. */
  readonly writeUnits: number;
  readonly writeUnitsPerFinding: number;
  /** DynamoDB writes (items), and how many failed their condition (contention, mostly). */
  readonly dynamoWrites: number;
  readonly conditionFailures: number;
  /** Largest ledger item written during the burst (bytes, before or after the write). */
  readonly maxItemBytes: number;
  /** Write units by kind of item (see WriteMeter.byKind). */
  readonly writeUnitsByKind: Readonly<Record<string, number>>;
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
  const meter = meterWrites();
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
    meter.stop();

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
      writeUnits: meter.units,
      writeUnitsPerFinding: meter.units / findings,
      dynamoWrites: meter.writes,
      conditionFailures: meter.conditionFailures,
      maxItemBytes: meter.maxItemBytes,
      writeUnitsByKind: { ...meter.byKind },
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
    meter.stop();
    await account.close();
  }
};
