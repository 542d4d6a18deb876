/**
 * Inventory: what mapping a finding's image to services costs, with the scanning resolver (before:
 * every triage cold start lists and describes the account) and with the inventory index (after: the
 * indexer keeps IMAGE# items current, triage Queries one repository). One run, both resolvers, the
 * same fleet, burst and account (bench/account.ts: the simulation's ECS and ECR models, DynamoDB in
 * dynalite; calls counted at the SDK boundary, every attempt).
 *
 * Triage is modelled as the intake runs it: batches of TRIAGE_BATCH_SIZE findings handed round-robin
 * to `concurrency` execution environments, each a cold start with its own clients and resolver
 * (its caches). Both resolvers must return the same services for every finding: a mismatch is
 * reported (the index is only worth its calls if it answers what the scan answers).
 *
 * `npx tsx bench/inventory.ts [--services 10,100,1000] [--findings 1000,10000]` prints the table; the
 * bench's `--only inventory` runs it into the report.
 */
import type { ECSClient } from '@aws-sdk/client-ecs';
import { InventoryIndexReader } from '../lambdas/inventory/index-store';
import { InventoryIndexWriter } from '../lambdas/inventory/index-writer';
import { Indexer } from '../lambdas/inventory/indexer';
import { type ImageRef, InventoryResolver } from '../lambdas/triage/inventory';
import { type SimulatedClients, simulatedClients } from '../simulation/sdk';
import { LEDGER_TABLE, openTriageAccount, type TriageAccount } from './account';
import {
  ACCOUNT_ID,
  DISCOVER_TAG,
  type Fleet,
  type FleetService,
  generateFleet,
  REGION,
  REGISTRY_HOST,
} from './fleet';

export interface InventoryBenchRow {
  readonly services: number;
  readonly findings: number;
  readonly resolver: 'scan' | 'index';
  /** Execution environments (cold starts). */
  readonly coldStarts: number;
  /** ECS calls one cold start makes to answer its first finding (measured alone). */
  readonly ecsCallsPerColdStart: number;
  /** ECS + ECR + DynamoDB (index) calls of the whole burst. */
  readonly apiCalls: Readonly<Record<string, number>>;
  readonly apiCallsTotal: number;
  readonly apiCallsPerFinding: number;
  /** Findings whose services differ between the two resolvers (index rows only). */
  readonly mismatches: number;
  readonly wallMs: number;
}

export interface IndexerCosts {
  readonly services: number;
  /** ECS calls of one complete reconcile of the account (first build). */
  readonly reconcileEcsCalls: number;
  /** ECS calls of a second reconcile (task definitions known to the warm indexer). */
  readonly warmReconcileEcsCalls: number;
  /** ECS calls to re-index one service after an event (cold indexer). */
  readonly eventEcsCalls: number;
}

export interface InventoryBenchResult {
  readonly rows: readonly InventoryBenchRow[];
  readonly indexer: readonly IndexerCosts[];
}

export interface InventoryBenchOptions {
  readonly services?: readonly number[];
  readonly findings?: readonly number[];
  readonly batchSize?: number;
  readonly concurrency?: number;
  readonly seed?: number;
}

/** A fleet of `n` services: the default fleet's images, services cloned with unique names over clusters of 50. */
export const scaledFleet = (n: number): Fleet => {
  const base = generateFleet();
  const services: FleetService[] = [];
  const clusters = Math.max(1, Math.ceil(n / 50));
  for (let i = 0; i < n; i++) {
    const template = base.services[i % base.services.length] as FleetService;
    const cluster = `cluster-${i % clusters}`;
    const name = `${template.name}-${i}`;
    services.push({ ...template, cluster, name, key: `${cluster}/${name}` });
  }
  const runBy = new Map<string, string[]>();
  for (const s of services)
    for (const c of s.containers) {
      const list = runBy.get(c.digest) ?? [];
      if (!list.includes(s.key)) list.push(s.key);
      runBy.set(c.digest, list);
    }
  return { ...base, services, runBy };
};

/** The findings' images: every image of the fleet with equal chance (most of them run nowhere). */
const burstOf = (fleet: Fleet, size: number, seed: number): ImageRef[] => {
  let state = seed >>> 0 || 1;
  const random = () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state / 2 ** 32;
  };
  return Array.from({ length: size }, () => {
    const image = fleet.images[Math.floor(random() * fleet.images.length)] as Fleet['images'][number];
    return {
      registry: ACCOUNT_ID,
      repository: image.repository,
      repositoryUri: `${REGISTRY_HOST}/${image.repository}`,
      imageDigest: image.digest,
      imageTags: [...image.tags],
    };
  });
};

const diff = (after: Record<string, number>, before: Record<string, number>): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    const d = v - (before[k] ?? 0);
    if (d > 0 && /^(ecs|ecr|dynamodb):/.test(k)) out[k] = d;
  }
  return out;
};
const sum = (calls: Record<string, number>, prefix = ''): number =>
  Object.entries(calls)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((n, [, v]) => n + v, 0);

const HOME = { account: ACCOUNT_ID, region: REGION };

/** Run the burst through `concurrency` fresh resolvers; the services found per finding. */
const runBurst = async (
  account: TriageAccount,
  burst: readonly ImageRef[],
  mode: 'scan' | 'index',
  options: { batchSize: number; concurrency: number },
): Promise<{ answers: string[]; ecsFirst: number; calls: Record<string, number> }> => {
  const made: SimulatedClients[] = [];
  const environmentFor = (clients: SimulatedClients) =>
    new InventoryResolver({
      ecs: clients.ecs,
      ecr: clients.ecr,
      discoverByTag: DISCOVER_TAG,
      targets: [],
      ...(mode === 'index'
        ? {
            index: {
              reader: new InventoryIndexReader({ client: clients.dynamodb, tableName: LEDGER_TABLE }),
              home: HOME,
            },
          }
        : {}),
    });
  const environments = Array.from({ length: options.concurrency }, () => {
    const clients = simulatedClients(account.world, 3);
    made.push(clients);
    return environmentFor(clients);
  });
  // One more environment, alone, for the cost of a cold start: its first finding's ECS calls.
  const probe = simulatedClients(account.world, 3);
  made.push(probe);
  const lone = environmentFor(probe);
  const ecsBefore = sum(account.apiCalls(), 'ecs:');
  await lone.servicesForImage(burst[0] as ImageRef);
  const ecsFirst = sum(account.apiCalls(), 'ecs:') - ecsBefore;
  const before = account.apiCalls();
  const answers: string[] = new Array(burst.length);
  const batches: number[][] = [];
  for (let i = 0; i < burst.length; i += options.batchSize)
    batches.push(Array.from({ length: Math.min(options.batchSize, burst.length - i) }, (_, k) => i + k));
  // Environment e takes batches e, e + concurrency, …; the environments run at once.
  await Promise.all(
    environments.map(async (resolver, e) => {
      for (let b = e; b < batches.length; b += options.concurrency) {
        // A new batch (invocation): a warm resolver checks what it keeps against the index.
        resolver.startBatch();
        await Promise.all(
          (batches[b] as number[]).map(async (i) => {
            const uses = await resolver.servicesForImage(burst[i] as ImageRef);
            answers[i] = uses.map((u) => `${u.service.key}[${u.containers.join(',')}]`).join(' ');
          }),
        );
      }
    }),
  );
  const calls = diff(account.apiCalls(), before);
  for (const c of made) for (const client of Object.values(c)) (client as { destroy(): void }).destroy();
  return { answers, ecsFirst, calls };
};

export const measureInventory = async (
  options: InventoryBenchOptions = {},
): Promise<InventoryBenchResult> => {
  const batchSize = options.batchSize ?? 500;
  const concurrency = options.concurrency ?? 5;
  const rows: InventoryBenchRow[] = [];
  const indexer: IndexerCosts[] = [];
  for (const services of options.services ?? [10, 100, 1_000]) {
    const fleet = scaledFleet(services);
    const account = await openTriageAccount(fleet, { ledger: true });
    try {
      // The indexer's own costs: a first reconcile, a warm one, and one event.
      const indexClients = simulatedClients(account.world, 3);
      const dynamo = (account.dynamo as NonNullable<TriageAccount['dynamo']>).client;
      const writer = new InventoryIndexWriter({ client: dynamo, tableName: LEDGER_TABLE });
      const ix = new Indexer({
        writer,
        ecsFor: () => indexClients.ecs as Pick<ECSClient, 'send'>,
        // The indexer records what each digest services run is, so triage needs no ECR read.
        ecrFor: () => indexClients.ecr,
      });
      const first = await ix.reconcile(HOME);
      const warm = await ix.reconcile(HOME);
      const service = fleet.services[0] as FleetService;
      const coldIndexer = new Indexer({ writer, ecsFor: () => indexClients.ecs as Pick<ECSClient, 'send'> });
      await coldIndexer.refresh({
        place: HOME,
        clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT_ID}:cluster/${service.cluster}`,
        serviceName: service.name,
        trigger: 'bench',
      });
      indexer.push({
        services,
        reconcileEcsCalls: first.ecsCalls,
        warmReconcileEcsCalls: warm.ecsCalls,
        eventEcsCalls: coldIndexer.ecsCalls(HOME),
      });
      for (const c of Object.values(indexClients)) (c as { destroy(): void }).destroy();

      for (const findings of options.findings ?? [1_000, 10_000]) {
        const burst = burstOf(fleet, findings, options.seed ?? 11);
        let reference: string[] | undefined;
        for (const mode of ['scan', 'index'] as const) {
          const started = performance.now();
          const run = await runBurst(account, burst, mode, { batchSize, concurrency });
          reference ??= run.answers;
          const total = sum(run.calls);
          rows.push({
            services,
            findings,
            resolver: mode,
            coldStarts: Math.min(concurrency, Math.ceil(findings / batchSize)),
            ecsCallsPerColdStart: run.ecsFirst,
            apiCalls: run.calls,
            apiCallsTotal: total,
            apiCallsPerFinding: total / findings,
            mismatches: run.answers.filter((a, i) => a !== reference?.[i]).length,
            wallMs: performance.now() - started,
          });
        }
      }
    } finally {
      await account.close();
    }
  }
  return { rows, indexer };
};

/** The result as a Markdown table (before → after per fleet size and burst). */
export const renderInventory = (result: InventoryBenchResult): string => {
  const lines = [
    '| services | findings | resolver | ECS calls / cold start | API calls (ECS / ECR / DynamoDB) | API calls ÷ findings | mismatches |',
    '| ---: | ---: | --- | ---: | --- | ---: | ---: |',
  ];
  for (const r of result.rows) {
    lines.push(
      `| ${r.services} | ${r.findings} | ${r.resolver} | ${r.ecsCallsPerColdStart} | ${sum(r.apiCalls, 'ecs:')} / ${sum(r.apiCalls, 'ecr:')} / ${sum(r.apiCalls, 'dynamodb:')} | ${r.apiCallsPerFinding.toFixed(4)} | ${r.resolver === 'index' ? r.mismatches : '–'} |`,
    );
  }
  lines.push(
    '',
    '| services | ECS calls: first reconcile | warm reconcile | one event |',
    '| ---: | ---: | ---: | ---: |',
  );
  for (const c of result.indexer)
    lines.push(
      `| ${c.services} | ${c.reconcileEcsCalls} | ${c.warmReconcileEcsCalls} | ${c.eventEcsCalls} |`,
    );
  return lines.join('\n');
};

if (require.main === module) {
  const arg = (name: string): number[] | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? (process.argv[i + 1] ?? '').split(',').map(Number) : undefined;
  };
  const services = arg('services');
  const findings = arg('findings');
  measureInventory({ ...(services ? { services } : {}), ...(findings ? { findings } : {}) })
    .then((r) => {
      process.stdout.write(`${renderInventory(r)}\n`);
    })
    .catch((error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exitCode = 1;
    });
}
