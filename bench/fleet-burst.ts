/**
 * A large fleet under a long burst: 1,000 services in 50 spoke accounts (service keys
 * `<account>/<region>/<cluster>/<service>`), and a burst of findings spread over two hours of
 * simulated time, through the real triage handler with the inventory index.
 *
 * The index is written as the indexer writes it (InventoryIndexWriter: each service's entries and
 * record, each place noted and its watermark set, each digest's manifest), straight from the fleet:
 * the simulation models one account, so the spokes' ECS is not scanned (bench/inventory.ts measures
 * the indexer's own calls). Triage reaches no ECS or ECR: every call it would make is counted.
 *
 * The intake is modelled on the simulated clock: findings arrive at their `updatedAt` spread over
 * `spreadMs`; the event source hands out what arrived within each batching window (20 s) in batches
 * of at most the batch size, to at most `concurrency` warm execution environments. Nothing runs the
 * workflow, so a service's first execution holds its lock for the whole burst and later findings
 * merge into it or queue behind it: executions per affected service is 1.00 when nothing is started
 * twice. Failed follow-ups are messages triage returned as failed (each would come back) plus those
 * dead-lettered.
 */
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { InventoryIndexWriter } from '../lambdas/inventory/index-writer';
import { parseImageReference, serviceRef } from '../lambdas/inventory/scan';
import type { Place } from '../lambdas/shared/accounts';
import { HOME_ACCOUNT_ENV } from '../lambdas/shared/accounts';
import { TriageFleet } from '../simulation/triage';
import { LEDGER_TABLE, openTriageAccount, type TriageAccount } from './account';
import { meterWrites } from './amplification';
import { generateBurst } from './events';
import { ACCOUNT_ID, type Fleet, type FleetService, generateFleet, REGION } from './fleet';

export interface FleetBurstOptions {
  readonly services?: number;
  readonly accounts?: number;
  readonly size?: number;
  /** @default 2 hours */
  readonly spreadMs?: number;
  readonly batchSize?: number;
  readonly concurrency?: number;
  /** The event source's batching window. @default 20 s */
  readonly windowMs?: number;
}

export interface FleetBurstResult {
  readonly services: number;
  readonly accounts: number;
  readonly size: number;
  readonly spreadMs: number;
  readonly invocations: number;
  readonly coldStarts: number;
  readonly affectedServices: number;
  readonly expectedServices: number;
  readonly executionsStarted: number;
  readonly executionsPerService: number;
  /** Messages returned as failed (each received again), and dead-lettered. */
  readonly failedFollowUps: number;
  readonly deadLetters: number;
  readonly apiCalls: Readonly<Record<string, number>>;
  readonly apiCallsPerFinding: number;
  /** ECS and ECR calls triage made (the index answers everything: 0). */
  readonly ecsEcrCalls: number;
  readonly writeUnitsPerFinding: number;
  readonly writeUnitsByKind: Readonly<Record<string, number>>;
  readonly maxItemBytes: number;
  readonly wallMs: number;
}

/** The default fleet's services cloned `services` times over `accounts` spoke accounts. */
export const spokeFleet = (services: number, accounts: number): Fleet & { places: Place[] } => {
  const base = generateFleet();
  const places = Array.from({ length: accounts }, (_, a) => ({
    account: String(210_000_000_000 + a),
    region: REGION,
  }));
  const list: FleetService[] = [];
  for (let i = 0; i < services; i++) {
    const template = base.services[i % base.services.length] as FleetService;
    const place = places[i % accounts] as Place;
    const name = `${template.name}-${i}`;
    list.push({
      ...template,
      name,
      key: `${place.account}/${place.region}/${template.cluster}/${name}`,
    });
  }
  const runBy = new Map<string, string[]>();
  for (const s of list)
    for (const c of s.containers) {
      const l = runBy.get(c.digest) ?? [];
      if (!l.includes(s.key)) l.push(s.key);
      runBy.set(c.digest, l);
    }
  return { ...base, services: list, runBy, places };
};

const placeOfKey = (key: string): Place => {
  const [account, region] = key.split('/') as [string, string];
  return { account, region };
};

/** Write the index as the indexer would: every service, every place's watermark, every manifest. */
const writeIndex = async (account: TriageAccount, fleet: ReturnType<typeof spokeFleet>): Promise<void> => {
  const client = (account.dynamo as NonNullable<TriageAccount['dynamo']>).client;
  const writer = new InventoryIndexWriter({ client, tableName: LEDGER_TABLE });
  const manifests = new Map<string, { repository: string; digest: string; tags: Set<string> }>();
  const queue = [...fleet.services];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const place = placeOfKey(s.key);
        const clusterArn = `arn:aws:ecs:${place.region}:${place.account}:cluster/${s.cluster}`;
        const record = {
          service: serviceRef(clusterArn, s.name),
          taskDefinitionArn: `arn:aws:ecs:${place.region}:${place.account}:task-definition/${s.name}:1`,
          tags: { ...s.tags },
          deploymentController: 'ECS',
          containers: s.containers.map((c) => ({ name: c.name, image: c.image })),
          // Tasks report the digest of images named by tag.
          running: s.containers
            .filter((c) => !c.image.includes('@'))
            .map((c) => ({ name: c.name, image: c.image, imageDigest: c.digest })),
        };
        await writer.writeService(place, clusterArn, s.name, record, null);
        for (const c of s.containers) {
          const ref = parseImageReference(c.image);
          const key = `${ref.repository}@${c.digest}`;
          const m = manifests.get(key) ?? { repository: ref.repository, digest: c.digest, tags: new Set() };
          if (ref.tag) m.tags.add(ref.tag);
          manifests.set(key, m);
        }
      }
    }),
  );
  for (const m of manifests.values())
    await writer.putManifest(m.repository, m.digest, undefined, [...m.tags]);
  for (const place of fleet.places) {
    await writer.notePlace(place);
    await writer.putWatermark(place, fleet.services.length / fleet.places.length);
  }
  await writer.putWatermark({ account: ACCOUNT_ID, region: REGION }, 0);
};

const sqsRecord = (id: string, body: string, receives: number): SQSRecord => ({
  messageId: id,
  receiptHandle: `${id}:${receives}`,
  body,
  attributes: {
    ApproximateReceiveCount: String(receives),
    SentTimestamp: '0',
    SenderId: 'AIDAIENQZJOLO23YVJ4VO',
    ApproximateFirstReceiveTimestamp: '0',
  },
  messageAttributes: {},
  md5OfBody: '',
  eventSource: 'aws:sqs',
  eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:autopatch-intake`,
  awsRegion: REGION,
});

export const measureFleetBurst = async (options: FleetBurstOptions = {}): Promise<FleetBurstResult> => {
  const started = performance.now();
  const services = options.services ?? 1_000;
  const accounts = options.accounts ?? 50;
  const size = options.size ?? 100_000;
  const spreadMs = options.spreadMs ?? 2 * 3_600_000;
  const batchSize = options.batchSize ?? 500;
  const concurrency = options.concurrency ?? 5;
  const windowMs = options.windowMs ?? 20_000;
  const homeBefore = process.env[HOME_ACCOUNT_ENV];
  process.env[HOME_ACCOUNT_ENV] = ACCOUNT_ID;
  const fleet = spokeFleet(services, accounts);
  const startMs = Date.parse('2024-09-04T16:00:00.000Z');
  const burst = generateBurst(fleet, { size, startMs, spreadMs });
  const account = await openTriageAccount(fleet, { ledger: true });
  try {
    await writeIndex(account, fleet);
    const triage = new TriageFleet(account.world, {
      ...account.variables,
      [HOME_ACCOUNT_ENV]: ACCOUNT_ID,
      AWS_REGION: REGION,
    });
    const before = account.apiCalls();
    const meter = meterWrites();
    // Arrival times on the simulated clock: the finding's own updatedAt, as the generator spread it.
    const arrivals = burst.bodies.map((body, i) => ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      body,
      at: startMs + Math.floor((i * spreadMs) / Math.max(1, size)),
      receives: 0,
    }));
    let invocations = 0;
    let failedFollowUps = 0;
    let deadLetters = 0;
    let retry: typeof arrivals = [];
    try {
      for (let t = startMs, next = 0; next < arrivals.length || retry.length > 0; t += windowMs) {
        const window = [...retry];
        retry = [];
        while (next < arrivals.length && (arrivals[next] as (typeof arrivals)[number]).at < t + windowMs)
          window.push(arrivals[next++] as (typeof arrivals)[number]);
        const batches: Array<typeof arrivals> = [];
        for (let i = 0; i < window.length; i += batchSize) batches.push(window.slice(i, i + batchSize));
        // At most `concurrency` batches at once (the event source's maximum concurrency).
        for (let i = 0; i < batches.length; i += concurrency) {
          await Promise.all(
            batches.slice(i, i + concurrency).map(async (batch) => {
              invocations += 1;
              for (const m of batch) m.receives += 1;
              const event: SQSEvent = { Records: batch.map((m) => sqsRecord(m.id, m.body, m.receives)) };
              const failed = new Set(
                (await triage.consume(event)).batchItemFailures.map((f) => f.itemIdentifier),
              );
              for (const m of batch) {
                if (!failed.has(m.id)) continue;
                failedFollowUps += 1;
                if (m.receives >= 5) deadLetters += 1;
                else retry.push(m);
              }
            }),
          );
        }
      }
    } finally {
      meter.stop();
    }
    const after = account.apiCalls();
    const calls: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) calls[k] = v - (before[k] ?? 0);
    const affected = new Set<string>();
    for (const d of triage.decisions.values())
      if (d.action === 'remediate' || d.action === 'approve') for (const s of d.services) affected.add(s);
    const total = Object.values(calls).reduce((a, b) => a + b, 0);
    const ecsEcr = Object.entries(calls)
      .filter(([k]) => /^(ecs|ecr):/.test(k))
      .reduce((n, [, v]) => n + v, 0);
    return {
      services,
      accounts,
      size: burst.bodies.length,
      spreadMs,
      invocations,
      coldStarts: triage.coldStarts,
      affectedServices: affected.size,
      expectedServices: burst.expectedServices.length,
      executionsStarted: account.executions.length,
      executionsPerService: account.executions.length / affected.size,
      failedFollowUps,
      deadLetters,
      apiCalls: calls,
      apiCallsPerFinding: total / burst.bodies.length,
      ecsEcrCalls: ecsEcr,
      writeUnitsPerFinding: meter.units / burst.bodies.length,
      writeUnitsByKind: { ...meter.byKind },
      maxItemBytes: meter.maxItemBytes,
      wallMs: performance.now() - started,
    };
  } finally {
    await account.close();
    if (homeBefore === undefined) delete process.env[HOME_ACCOUNT_ENV];
    else process.env[HOME_ACCOUNT_ENV] = homeBefore;
  }
};
