/**
 * Deadlines the sweep watches: a remediation in flight, or queued behind one (the lock's queue), whose
 * policy deadline (request.decision.deadline) is within DEADLINE_APPROACHING_MS is "approaching", one
 * past it "missed". Each state is reported once per execution name (a queued request keeps the name it
 * starts with, so it is not reported again once it runs), whichever sweep (or concurrent sweep) sees it
 * first: a metric per severity
 * (DeadlineApproaching / DeadlineMissed, dimension Severity), and for a missed deadline a notification.
 *
 * "Once" is a conditional write to the ledger table (memory would not do: every sweep is a fresh
 * invocation, possibly in another execution environment):
 * - `DEADLINE#<serviceKey>` / `EXECUTION#<executionName>`: { state, deadline, expiresAt }
 * An item moves none → approaching → missed, never back; it expires (TTL) a week after the deadline.
 */
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SNSClient } from '@aws-sdk/client-sns';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER, type RemediationRequest, type Severity, severityRank } from '../shared/contracts';
import { ledgerDocumentClient } from '../shared/ledger/document-client';
import { emitMetrics, METRIC_DIMENSIONS, METRICS } from '../shared/metrics';
import { awsCall } from './aws';
import { publishNotification } from './notify';

/** A deadline this close is "approaching". */
export const DEADLINE_APPROACHING_MS = 24 * 3_600_000;
/** How long a mark is kept after its deadline (then DynamoDB's TTL removes it). */
const KEEP_AFTER_DEADLINE_MS = 7 * 24 * 3_600_000;

export type DeadlineState = 'approaching' | 'missed';

/** Where a deadline stands at `now`: undefined while it is more than a day away (or absent). */
export const deadlineState = (deadline: string | undefined, now: Date): DeadlineState | undefined => {
  if (deadline === undefined) return undefined;
  const at = Date.parse(deadline);
  if (Number.isNaN(at)) return undefined;
  if (at <= now.getTime()) return 'missed';
  return at - now.getTime() <= DEADLINE_APPROACHING_MS ? 'approaching' : undefined;
};

/** The worst severity of a request's images. */
export const worstSeverity = (request: RemediationRequest): Severity =>
  [...request.images].map((i) => i.severity).sort((a, b) => severityRank(a) - severityRank(b))[0] ??
  'UNTRIAGED';

const markKey = (serviceKey: string, executionName: string) => ({
  pk: `DEADLINE#${serviceKey}`,
  sk: `EXECUTION#${executionName}`,
});

/**
 * A remediation whose deadline is watched: the lock's run (an InFlight), or a request queued behind it
 * (status QUEUED, `queuedBehind` the run it waits for).
 */
export interface WatchedRemediation {
  readonly executionName: string;
  readonly status: string;
  readonly request: RemediationRequest;
  readonly queuedBehind?: string;
}

/** The once-per-state marks, in the ledger table. */
export class DeadlineMarks {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(options: { readonly client: DynamoDBClient; readonly tableName: string }) {
    this.doc = ledgerDocumentClient(options.client);
    this.tableName = options.tableName;
  }

  /**
   * Record that the execution's deadline reached `state`. True when this call moved it there (the
   * caller reports it), false when it was already there or further (someone reported it).
   */
  async mark(lock: WatchedRemediation, state: DeadlineState, deadline: string): Promise<boolean> {
    try {
      await awsCall('dynamodb UpdateItem', () =>
        this.doc.send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: markKey(lock.request.service.key, lock.executionName),
            UpdateExpression: 'SET #state = :state, #deadline = :deadline, #ttl = :ttl',
            // approaching may become missed; nothing goes back, and nothing is reported twice.
            ConditionExpression:
              state === 'missed'
                ? 'attribute_not_exists(#state) OR #state = :approaching'
                : 'attribute_not_exists(#state)',
            ExpressionAttributeNames: {
              '#state': 'state',
              '#deadline': 'deadline',
              '#ttl': LEDGER.ttlAttribute,
            },
            ExpressionAttributeValues: {
              ':state': state,
              ':deadline': deadline,
              ':ttl': Math.floor((Date.parse(deadline) + KEEP_AFTER_DEADLINE_MS) / 1000),
              ...(state === 'missed' ? { ':approaching': 'approaching' } : {}),
            },
          }),
        ),
      );
      return true;
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }
}

export interface DeadlineWatchDeps {
  readonly marks: Pick<DeadlineMarks, 'mark'>;
  readonly metrics: Pick<Metrics, 'addMetric' | 'singleMetric' | 'publishStoredMetrics'>;
  readonly sns: Pick<SNSClient, 'send'>;
  readonly topicArn: string;
}

/** The notification for a missed deadline: what it means and what to do (docs/runbook.md). */
export const missedMessage = (lock: WatchedRemediation, now: Date): { subject: string; message: string } => {
  const r = lock.request;
  const severity = worstSeverity(r);
  const cves = [...new Set(r.images.flatMap((i) => i.cves))].sort();
  return {
    subject: `[Autopatch] Deadline missed: ${severity} ${cves.length === 1 ? cves[0] : `${cves.length} CVEs`} on ${r.service.key}`,
    message: [
      `The remediation of ECS service ${r.service.key} has missed its policy deadline.`,
      '',
      `Deadline: ${r.decision.deadline}`,
      `Now: ${now.toISOString()}`,
      lock.queuedBehind
        ? `Execution: ${lock.executionName} (queued behind ${lock.queuedBehind}: it starts when that run ends)`
        : `Execution: ${lock.executionName} (${lock.status})`,
      `Why it runs: ${r.decision.reason}`,
      ...(r.decision.notBefore
        ? [`It was waiting for a maintenance window at ${r.decision.notBefore}.`]
        : []),
      ...(r.decision.action === 'approve' ? ['It needs an approval: answer it (npm run approve).'] : []),
      `CVEs (${cves.length}): ${cves.join(', ')}`,
      '',
      'Autopatch keeps going; see "Deadline missed" in docs/runbook.md for what to check.',
    ].join('\n'),
  };
};

/**
 * Look at one remediation's deadline (in flight or queued): report a state it reached for the first
 * time. Returns the state reported, if any.
 */
export const watchDeadline = async (
  deps: DeadlineWatchDeps,
  lock: WatchedRemediation,
  now: Date,
): Promise<DeadlineState | undefined> => {
  const deadline = lock.request.decision.deadline;
  const state = deadlineState(deadline, now);
  if (state === undefined || deadline === undefined) return undefined;
  if (!(await deps.marks.mark(lock, state, deadline))) return undefined;
  const severity = worstSeverity(lock.request);
  emitMetrics(deps.metrics, [
    {
      name: state === 'missed' ? METRICS.deadlineMissed : METRICS.deadlineApproaching,
      unit: 'Count',
      value: 1,
      dimensions: { [METRIC_DIMENSIONS.severity]: severity },
    },
  ]);
  if (state === 'missed') {
    await publishNotification(deps.sns, deps.topicArn, {
      ...missedMessage(lock, now),
      attributes: { kind: 'deadline-missed', service: lock.request.service.key, severity },
    });
  }
  return state;
};
