import { Logger } from '@aws-lambda-powertools/logger';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { AccountClients, HOME_ACCOUNT_ENV, type Place } from '../shared/accounts';
import { mapLimit } from '../shared/concurrency';
import { InventoryIndexWriter } from './index-writer';
import { type EcsFor, Indexer, parseServiceEvent, retryable, type ServiceEvent } from './indexer';

/**
 * The inventory indexer's two entry points (logic in ./indexer.ts):
 *
 * - `handler`: batches of ECS events from the indexer queue (EventBridge → SQS). Each names one
 *   service; a batch describes each named service once, however many events name it. A malformed or
 *   hostile event is logged with its reason and dropped: it never fails the batch. A throttled or
 *   failed call fails only the messages of that service (partial batch response), so they come back.
 * - `reconcileHandler`: the schedule. Walks every known account and Region whose last reconcile is
 *   older than the interval, oldest first, within the function's time.
 */

export const RECONCILE_INTERVAL_ENV = 'INVENTORY_RECONCILE_HOURS';
export const INVENTORY_PLACES_ENV = 'INVENTORY_PLACES';
const DEFAULT_RECONCILE_HOURS = 6;

export interface IndexerHandlerDeps {
  readonly indexer: Indexer;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface IndexerBatchReport {
  readonly response: SQSBatchResponse;
  readonly rejected: ReadonlyArray<{ readonly messageId: string; readonly reason: string }>;
  readonly refreshed: number;
}

/** The SQS batch: each service described once, failures reported per message. */
export const handleBatch = async (event: SQSEvent, deps: IndexerHandlerDeps): Promise<IndexerBatchReport> => {
  const rejected: Array<{ messageId: string; reason: string }> = [];
  const byService = new Map<string, { event: ServiceEvent; messageIds: string[] }>();
  for (const record of event.Records ?? []) {
    const parsed = parseServiceEvent(record.body);
    if (parsed.ok === true) {
      const e = parsed.event;
      const key = `${e.place.account}#${e.place.region}#${e.clusterArn}#${e.serviceName}`;
      const entry = byService.get(key) ?? { event: e, messageIds: [] };
      entry.messageIds.push(record.messageId);
      byService.set(key, entry);
    } else if (parsed.ok === 'ignored') {
      deps.logger.info('Ignored an ECS event', { messageId: record.messageId, reason: parsed.reason });
    } else {
      rejected.push({ messageId: record.messageId, reason: parsed.reason });
      deps.logger.warn('Rejected a malformed ECS event', {
        messageId: record.messageId,
        reason: parsed.reason,
      });
    }
  }
  const failed: string[] = [];
  let refreshed = 0;
  await mapLimit([...byService.values()], 4, async ({ event: e, messageIds }) => {
    try {
      const outcome = await deps.indexer.refresh(e);
      refreshed++;
      deps.logger.info('Indexed a service', {
        account: e.place.account,
        region: e.place.region,
        cluster: e.clusterArn,
        service: e.serviceName,
        trigger: e.trigger,
        outcome,
      });
    } catch (error) {
      if (retryable(error)) {
        failed.push(...messageIds);
        deps.logger.warn('Could not index a service; its events will be retried', {
          service: e.serviceName,
          cluster: e.clusterArn,
          error,
        });
      } else {
        // AccessDenied, a spoke that is not deployed: retrying cannot help; the reconcile reports it too.
        deps.logger.error('Could not index a service; its events are dropped', {
          account: e.place.account,
          region: e.place.region,
          service: e.serviceName,
          cluster: e.clusterArn,
          error,
        });
      }
    }
  });
  return {
    response: { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) },
    rejected,
    refreshed,
  };
};

/** The places the reconcile always walks: the hub's own, plus INVENTORY_PLACES ("acct:region,..."). */
export const configuredPlaces = (env: NodeJS.ProcessEnv): Place[] => {
  const places: Place[] = [];
  const home = env[HOME_ACCOUNT_ENV];
  if (home && env.AWS_REGION) places.push({ account: home, region: env.AWS_REGION });
  for (const part of (env[INVENTORY_PLACES_ENV] ?? '').split(',')) {
    const [account, region] = part.trim().split(':');
    if (account && region && /^\d{12}$/.test(account) && /^[a-z0-9-]+$/.test(region))
      places.push({ account, region });
  }
  return places;
};

// Module scope: created once per execution environment, reused across warm invocations.
const logger = new Logger({ serviceName: 'autopatch-inventory' });
let indexer: Indexer | undefined;
const indexerOf = (): Indexer => {
  if (!indexer) {
    const tableName = process.env.LEDGER_TABLE;
    if (!tableName) throw new Error('missing environment variable LEDGER_TABLE');
    const accounts = new AccountClients();
    const ecsFor: EcsFor = (place) => accounts.clientFor(ECSClient, place);
    indexer = new Indexer({
      writer: new InventoryIndexWriter({ client: new DynamoDBClient({}), tableName }),
      ecsFor,
      // Needs ecr:BatchGetImage for the indexer (and the spoke role); refused, triage reads ECR itself.
      ecrFor: (place) => accounts.clientFor(ECRClient, place),
    });
  }
  return indexer;
};

export const handler = async (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> => {
  if (context) logger.addContext(context);
  const report = await handleBatch(event, { indexer: indexerOf(), logger });
  return report.response;
};

export const reconcileHandler = async (_event: unknown, context?: Context) => {
  if (context) logger.addContext(context);
  const hours = Number(process.env[RECONCILE_INTERVAL_ENV] ?? DEFAULT_RECONCILE_HOURS);
  const intervalMs = (Number.isFinite(hours) && hours > 0 ? hours : DEFAULT_RECONCILE_HOURS) * 3_600_000;
  const result = await indexerOf().reconcileDue({
    places: configuredPlaces(process.env),
    // Ten minutes early: a place reconciled at 06:00 is due again at the 12:00 run, not at 13:00.
    intervalMs: Math.max(0, intervalMs - 600_000),
    now: () => new Date(),
    timeLeftMs: () => context?.getRemainingTimeInMillis() ?? Number.POSITIVE_INFINITY,
  });
  for (const r of result.reconciled) logger.info('Reconciled the inventory', { ...r });
  for (const f of result.failed) logger.error('Could not reconcile the inventory', { ...f });
  return {
    reconciled: result.reconciled.length,
    failed: result.failed.length,
    skipped: result.skipped,
  };
};
