/**
 * Triage throughput: a burst through triage's own code path in-process, batch by batch as the SQS
 * event source hands it over: `planBatch` parses each body (JSON.parse and the event schema), decides
 * by policy, resolves the image's services and aggregates one remediation per service. The resolver
 * is the real ECS-backed InventoryResolver, warmed (its inventory built from the simulated account)
 * before anything is timed, as in a warm Lambda; no ledger and no StartExecution (that is I/O, counted
 * by the amplification benchmark instead).
 *
 * The floor is JSON.parse of the same bodies alone. Floor and triage alternate batch by batch in one
 * process and each pass's ratio is taken, so the ratio holds on a noisy machine even when rates do not.
 */
import { workflowDefaultsSchema } from '../lambdas/shared/config';
import { InventoryResolver } from '../lambdas/triage/inventory';
import { DEFAULT_POLICY_PARSED } from '../lambdas/triage/policy';
import { parseEvent } from '../lambdas/triage/schema';
import { planBatch, type TriageInput } from '../lambdas/triage/triage';
import { openTriageAccount } from './account';
import { type Burst, generateBurst } from './events';
import { ACCOUNT_ID, DISCOVER_TAG, type Fleet, generateFleet, REGISTRY_HOST } from './fleet';
import { chunk, median } from './stats';

export interface ThroughputOptions {
  readonly size: number;
  /** Timed passes over the burst; one untimed warm-up pass comes first. */
  readonly rounds?: number;
  readonly batchSize: number;
  readonly fleet?: Fleet;
  readonly burst?: Burst;
}

export interface ThroughputResult {
  readonly size: number;
  readonly batchSize: number;
  readonly rounds: number;
  /** Median wall ms of one pass over the burst. */
  readonly triageMs: number;
  readonly floorMs: number;
  /** Median wall ms of the event schema alone (parseEvent over the already-parsed events). */
  readonly schemaMs: number;
  readonly findingsPerSecond: number;
  readonly floorFindingsPerSecond: number;
  /** triage rate ÷ floor rate (= floorMs ÷ triageMs). */
  readonly ratioToFloor: number;
  /** What triage decided in the last pass, by action, and the remediations it planned (all batches). */
  readonly actions: Record<string, number>;
  readonly remediations: number;
  /** ECS calls the resolver made while timed: 0 means every lookup was served by the warm cache. */
  readonly ecsCallsWhileTimed: number;
  readonly eventBytes: number;
  /**
   * Heap still in use after the timed passes, minus before them, both after a full collection (only
   * when the process runs with --expose-gc): what triage keeps from a burst (0 up to its bounded memos).
   */
  readonly heapRetainedBytes?: number;
}

/** A full collection, when the process runs with --expose-gc. */
const collectGarbage = Object.assign(
  (): void => {
    (globalThis as { gc?: () => void }).gc?.();
  },
  { available: typeof (globalThis as { gc?: unknown }).gc === 'function' },
);

export const measureThroughput = async (options: ThroughputOptions): Promise<ThroughputResult> => {
  const fleet = options.fleet ?? generateFleet();
  const burst = options.burst ?? generateBurst(fleet, { size: options.size });
  const rounds = Math.max(1, options.rounds ?? 5);
  const account = await openTriageAccount(fleet, { ledger: false });
  try {
    const now = new Date('2024-09-04T16:30:00Z');
    const resolver = new InventoryResolver({
      ecs: account.clients().ecs,
      discoverByTag: DISCOVER_TAG,
      targets: [],
      now: () => new Date(),
    });
    const first = fleet.images[0];
    if (first) {
      // Warm the cache: the first lookup builds the whole inventory.
      await resolver.servicesForImage({
        registry: ACCOUNT_ID,
        repository: first.repository,
        repositoryUri: `${REGISTRY_HOST}/${first.repository}`,
        imageDigest: first.digest,
        imageTags: first.tags,
      });
    }
    const deps = {
      policy: DEFAULT_POLICY_PARSED,
      resolver,
      targets: [],
      defaults: workflowDefaultsSchema.parse({}),
      now: () => now,
    };
    // As the handler builds them from the SQS records: the id and the raw body.
    const batches: TriageInput[][] = chunk(
      burst.bodies.map((body, i) => ({ id: `m-${i}`, event: body })),
      options.batchSize,
    );

    let sink = 0;
    let actions: Record<string, number> = {};
    let remediations = 0;
    /**
     * One pass over the burst, batch by batch: for each batch the floor (JSON.parse of its bodies),
     * triage (planBatch) and the event schema alone (parseEvent over the batch parsed beforehand,
     * untimed), in an order that rotates from batch to batch. Interleaving at the batch keeps a spell of
     * noise on the machine from landing on one of the three only.
     */
    const pass = async (round: number): Promise<{ floor: number; triage: number; schema: number }> => {
      const counts: Record<string, number> = {};
      let planned = 0;
      const ms = { floor: 0, triage: 0, schema: 0 };
      const floor = (batch: readonly TriageInput[]) => {
        const t = performance.now();
        for (const input of batch)
          sink += (JSON.parse(input.event as string) as { id?: string }).id?.length ?? 0;
        ms.floor += performance.now() - t;
      };
      const triage = async (batch: readonly TriageInput[]) => {
        const t = performance.now();
        const plan = await planBatch(batch, deps);
        ms.triage += performance.now() - t;
        planned += plan.remediations.length;
        for (const f of plan.findings) counts[f.action] = (counts[f.action] ?? 0) + 1;
      };
      const schema = (batch: readonly TriageInput[]) => {
        const parsed = batch.map((input) => JSON.parse(input.event as string) as unknown);
        const t = performance.now();
        for (const event of parsed) {
          try {
            sink += parseEvent(event).kind.length;
          } catch {
            sink += 1;
          }
        }
        ms.schema += performance.now() - t;
      };
      const steps: Array<(batch: readonly TriageInput[]) => void | Promise<void>> = [floor, triage, schema];
      for (const [k, batch] of batches.entries()) {
        for (let i = 0; i < steps.length; i++) await steps[(k + round + i) % steps.length]?.(batch);
      }
      actions = counts;
      remediations = planned;
      return ms;
    };

    await pass(0); // warm-up: JIT, the timestamp memo, the policy's compiled form
    const callsBefore = resolver.apiCalls;
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    const passes: Array<{ floor: number; triage: number; schema: number }> = [];
    for (let r = 1; r <= rounds; r++) passes.push(await pass(r));
    collectGarbage();
    const heapAfter = process.memoryUsage().heapUsed;
    if (sink < 0) throw new Error('unreachable'); // keeps the parse results observable
    const triageMs = median(passes.map((p) => p.triage));
    const floorMs = median(passes.map((p) => p.floor));
    return {
      size: burst.bodies.length,
      batchSize: options.batchSize,
      rounds,
      triageMs,
      floorMs,
      schemaMs: median(passes.map((p) => p.schema)),
      findingsPerSecond: (burst.bodies.length / triageMs) * 1000,
      floorFindingsPerSecond: (burst.bodies.length / floorMs) * 1000,
      // The ratio of each pass, then the median: both sides of a ratio share that pass's conditions.
      ratioToFloor: median(passes.map((p) => p.floor / p.triage)),
      ...(heapBefore > 0 && collectGarbage.available ? { heapRetainedBytes: heapAfter - heapBefore } : {}),
      actions,
      remediations,
      ecsCallsWhileTimed: resolver.apiCalls - callsBefore,
      eventBytes: burst.bytes,
    };
  } finally {
    await account.close();
  }
};
