import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECRClient } from '@aws-sdk/client-ecr';
import { ECSClient } from '@aws-sdk/client-ecs';
import { Inspector2Client } from '@aws-sdk/client-inspector2';
import { SFNClient } from '@aws-sdk/client-sfn';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { InventoryIndexReader } from '../inventory/index-store';
import { accountClients, HOME_ACCOUNT_ENV, type Place } from '../shared/accounts';
import { type TriageRuntimeConfig, triageRuntimeConfigSchema } from '../shared/config';
import { ConfigurationError, TransientError } from '../shared/errors';
import { Ledger } from '../shared/ledger';
import { METRIC_DIMENSIONS, METRICS } from '../shared/metrics';
import { FindingDetailsReader, policyNeedsExploitation } from './finding-details';
import { InventoryResolver } from './inventory';
import { noticesOf } from './notices';
import { type Policy, parsePolicy } from './policy';
import { formatIssues } from './schema';
import { executePlan, planBatch, type TriagePlan } from './triage';

export interface TriageEnvironment {
  readonly config: TriageRuntimeConfig;
  readonly policy: Policy;
  readonly tableName: string;
  readonly stateMachineArn: string;
  /**
   * The hub's account and Region (AUTOPATCH_HOME_ACCOUNT, AWS_REGION): with it, the inventory answers
   * from the index once the indexer has reconciled them, and scans ECS until then. Without it, scans.
   */
  readonly inventoryHome?: Place;
}

/** Read and validate the Lambda's environment once, at cold start: a bad config fails loudly, early. */
export const loadEnvironment = (env: NodeJS.ProcessEnv): TriageEnvironment => {
  const missing = ['AUTOPATCH_CONFIG', 'LEDGER_TABLE', 'STATE_MACHINE_ARN'].filter((k) => !env[k]);
  if (missing.length > 0)
    throw new ConfigurationError(`missing environment variables: ${missing.join(', ')}`);
  let raw: unknown;
  try {
    raw = JSON.parse(env.AUTOPATCH_CONFIG as string);
  } catch (error) {
    throw new ConfigurationError('AUTOPATCH_CONFIG is not JSON', { cause: error });
  }
  const parsed = triageRuntimeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigurationError(`AUTOPATCH_CONFIG is invalid: ${formatIssues(parsed.error.issues)}`, {
      cause: parsed.error,
    });
  }
  return {
    config: parsed.data,
    policy: parsePolicy(parsed.data.policy),
    tableName: env.LEDGER_TABLE as string,
    stateMachineArn: env.STATE_MACHINE_ARN as string,
    ...(env[HOME_ACCOUNT_ENV] && env.AWS_REGION
      ? { inventoryHome: { account: env[HOME_ACCOUNT_ENV], region: env.AWS_REGION } }
      : {}),
  };
};

export interface TriageClients {
  readonly ecs: ECSClient;
  readonly sfn: SFNClient;
  readonly dynamodb: DynamoDBClient;
  /** Maps platform digests to the image indexes services run; without it only direct matches count. */
  readonly ecr?: ECRClient;
  /** The ECR client of a registry's account and Region (the spoke role away from home). */
  readonly ecrFor?: (place: { readonly account: string; readonly region: string }) => ECRClient;
  /** Reads exploitation facts (CISA KEV, observed exploitation) when policy needs them; without it such rules are skipped. */
  readonly inspector?: Inspector2Client;
}

/**
 * Build the SQS batch handler around injected clients and configuration, so that tests and the
 * simulation run exactly this code against mocks or a model of the account.
 */
export const createHandler = (
  env: TriageEnvironment,
  clients: TriageClients,
  tools: { logger: Logger; metrics: Metrics; now?: () => Date },
) => {
  const { config } = env;
  const now = tools.now ?? (() => new Date());
  const ledger = new Ledger({
    client: clients.dynamodb,
    tableName: env.tableName,
    now,
    // A lock nobody can read is taken away so the service is not blocked for good: say so loudly.
    onPoisonedLock: (poisoned) => tools.logger.warn('Poisoned lock taken away', { ...poisoned }),
  });
  // Kept across warm invocations: the inventory cache is what keeps a burst from multiplying ECS calls.
  const resolver = new InventoryResolver({
    ecs: clients.ecs,
    ...(clients.ecr ? { ecr: clients.ecr } : {}),
    ...(clients.ecrFor ? { ecrFor: clients.ecrFor } : {}),
    targets: config.targets,
    ...(config.discoverByTag ? { discoverByTag: config.discoverByTag } : {}),
    now,
    // The image index the indexer keeps (lambdas/inventory/): one Query per repository instead of a
    // scan of the account, once the indexer has reconciled the hub's account and Region.
    ...(env.inventoryHome
      ? {
          index: {
            reader: new InventoryIndexReader({ client: clients.dynamodb, tableName: env.tableName }),
            home: env.inventoryHome,
          },
        }
      : {}),
  });
  // Kept across warm invocations too: a burst reads each finding's details once.
  const findingDetails =
    clients.inspector && policyNeedsExploitation(env.policy)
      ? new FindingDetailsReader(clients.inspector)
      : undefined;
  const { logger, metrics } = tools;

  /** Every message of the batch as a failure: the whole batch is retried (and dead-lettered if it persists). */
  const retryAll = (event: SQSEvent): SQSBatchResponse => ({
    batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })),
  });

  return async (event: SQSEvent, context?: Context): Promise<SQSBatchResponse> => {
    let plan: TriagePlan;
    try {
      plan = await planBatch(
        event.Records.map((r) => ({ id: r.messageId, event: r.body })),
        {
          policy: env.policy,
          resolver,
          targets: config.targets,
          defaults: config.defaults,
          now,
          ledger,
          ...(findingDetails ? { findingDetails } : {}),
        },
      );
    } catch (error) {
      // Bad events never get here (they are rejected one by one); this is the ledger or a bug.
      logger.error('Could not triage the batch; every message will be retried', { error });
      return retryAll(event);
    }

    const byAction = new Map<string, number>();
    for (const f of plan.findings) {
      byAction.set(f.action, (byAction.get(f.action) ?? 0) + 1);
      if (f.action === 'reject') {
        // A poison record: logged with its reason and counted, never retried, never blocks the batch.
        logger.warn('Rejected a malformed event', { messageId: f.id, reason: f.reason });
      } else if (f.action === 'retry') {
        logger.error('Could not triage an event; it will be retried', { messageId: f.id, reason: f.reason });
      } else {
        logger.info('Decision', {
          messageId: f.id,
          findingArn: f.findingArn,
          action: f.action,
          reason: f.reason,
          services: f.services,
        });
      }
    }
    for (const [action, count] of byAction) {
      const m = metrics.singleMetric();
      m.addDimension(METRIC_DIMENSIONS.action, action);
      m.addMetric(METRICS.findings, MetricUnit.Count, count);
    }
    let poison = byAction.get('reject') ?? 0;
    // Notify decisions go to their service's digest (the sweep sends it once per period). Before the
    // plan is carried out: messages whose notices could not be recorded are not marked seen, and retried.
    const notices = noticesOf(
      plan.findings,
      event.Records.map((r) => ({ id: r.messageId, event: r.body })),
    );
    if (notices.length > 0) {
      try {
        await ledger.recordNotices(notices.flatMap((n) => n.notices));
      } catch (error) {
        logger.error('Could not record notify decisions; their messages will be retried', { error });
        plan = { ...plan, failedIds: [...plan.failedIds, ...notices.map((n) => n.id)] };
      }
    }
    let failed = new Set(plan.failedIds);
    if (config.dryRun) {
      for (const r of plan.remediations) {
        logger.info('Dry run: would start a remediation', {
          executionName: r.request.executionName,
          request: r.request,
        });
      }
      metrics.addMetric(METRICS.remediationsPlanned, MetricUnit.Count, plan.remediations.length);
    } else {
      let outcome: Awaited<ReturnType<typeof executePlan>>;
      try {
        outcome = await executePlan(plan, {
          ledger,
          sfn: clients.sfn,
          stateMachineArn: env.stateMachineArn,
        });
      } catch (error) {
        logger.error('Could not carry out the batch; every message will be retried', { error });
        metrics.publishStoredMetrics();
        return retryAll(event);
      }
      failed = new Set(outcome.failedIds);
      poison += outcome.rejected.size;
      for (const r of outcome.results) {
        if (r.kind === 'failed')
          logger.error('Could not start a remediation; its messages will be retried', {
            service: r.service,
            error: r.error,
          });
        else if (r.kind === 'rejected')
          // Never retried, and its lock is left: it cannot block the service.
          logger.error('Dropped a remediation that can never start', {
            service: r.service,
            executionName: r.executionName,
            reason: r.reason,
            resumed: r.resumed,
            messageIds: r.itemIds,
          });
        else logger.info(`Remediation ${r.kind}`, { ...r });
      }
      if (outcome.markSeenError)
        logger.warn('Could not mark findings as seen', { error: outcome.markSeenError });
      metrics.addMetric(
        METRICS.remediationsStarted,
        MetricUnit.Count,
        outcome.results.filter((r) => r.kind === 'started' || r.kind === 'resumed').length,
      );
      metrics.addMetric(
        METRICS.remediationsQueued,
        MetricUnit.Count,
        outcome.results.filter((r) => r.kind === 'queued').length,
      );
      metrics.addMetric(
        METRICS.remediationsMerged,
        MetricUnit.Count,
        outcome.results.filter((r) => r.kind === 'merged').length,
      );
    }
    metrics.addMetric(METRICS.poisonEvents, MetricUnit.Count, poison);
    metrics.publishStoredMetrics();

    return processPartialResponse(
      event,
      async (record: { messageId: string }) => {
        if (failed.has(record.messageId)) {
          throw new TransientError(
            `message ${record.messageId} is retried: its service could not be settled`,
          );
        }
      },
      new BatchProcessor(EventType.SQS),
      { ...(context ? { context } : {}), throwOnFullBatchFailure: false },
    );
  };
};

// Module scope: created once per execution environment, reused across warm invocations.
const logger = new Logger({ serviceName: 'autopatch-triage' });
const metrics = new Metrics({ namespace: METRICS.namespace, serviceName: METRICS.triageService });
let cached: ((event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>) | undefined;

export const handler = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
  cached ??= createHandler(
    loadEnvironment(process.env),
    {
      ecs: new ECSClient({}),
      ecr: new ECRClient({}),
      ecrFor: (place) => accountClients().clientFor(ECRClient, place),
      sfn: new SFNClient({}),
      dynamodb: new DynamoDBClient({}),
      inspector: new Inspector2Client({}),
    },
    { logger, metrics },
  );
  logger.addContext(context);
  return cached(event, context);
};
