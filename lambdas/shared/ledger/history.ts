import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LEDGER, type Outcome } from '../contracts';
import { AutopatchError } from '../errors';
import type { Key, LedgerTable } from './table';

/**
 * History and its outbox. Items:
 * - `SERVICE#<cluster>/<service>` / `REMEDIATION#<remediationId>`: one history record per finished
 *   remediation (no TTL: it is the audit trail).
 * - `OUTBOX` / `<serviceKey>#<remediationId>`: an outcome recorded and not yet announced.
 */

export interface OutcomeRecord {
  readonly serviceKey: string;
  readonly remediationId: string;
  readonly executionName: string;
  readonly outcome: Outcome;
  readonly reason: string;
  readonly images: ReadonlyArray<{
    readonly repository: string;
    readonly oldDigest: string;
    readonly newDigest?: string;
    readonly cves: readonly string[];
  }>;
  readonly cvesClosed: readonly string[];
  readonly oldTaskDefinition?: string;
  readonly newTaskDefinition?: string;
  readonly startedAt: string;
  /** ISO-8601; history() orders by it, newest first. */
  readonly finishedAt: string;
  /**
   * Seconds and counts (docs/metrics.md). Every key is optional: records from before a key existed
   * lack it, and the report says "not recorded" for what needs it.
   */
  readonly timings?: Readonly<Record<string, number>> & {
    /** Execution start → finish. */
    readonly totalSeconds?: number;
    /** Push of the patched image → Inspector's rescan verdict, of the slowest image (verified runs). */
    readonly verificationSeconds?: number;
    /** CodeBuild time of the builds the run timed (see `builds`), summed. */
    readonly buildSeconds?: number;
    /** The same builds as CodeBuild bills them: each rounded up to the whole minute, summed. */
    readonly buildMinutes?: number;
    /** Builds timed: verified images (platforms of an index each) and a build that failed. */
    readonly builds?: number;
    /** Builds planned; more than `builds` when a build's time was not kept (its rescan failed, or it was cancelled). */
    readonly buildsPlanned?: number;
  };
  /** Worst severity among the remediation's findings (records from before it existed have none). */
  readonly severity?: string;
  /** ISO-8601: when the first finding of this remediation was observed (the request's requestedAt). */
  readonly requestedAt?: string;
  /** ISO-8601: the deadline the policy enforced for the remediation (decision.deadline), if any. */
  readonly deadlineAt?: string;
  /** The alarms the gate found to watch (the target's and the service's own); empty: none was. */
  readonly watchedAlarms?: readonly string[];
  /** The watched alarm that fired and caused the rollback, and when. */
  readonly alarm?: { readonly name: string; readonly at?: string };
  /** Who approved the remediation (the approver's AWS identity ARN), when it waited for approval. */
  readonly approvedBy?: string;
  /** Who rejected it (outcome Rejected). */
  readonly rejectedBy?: string;
}

const HISTORY_PREFIX = 'REMEDIATION#';
/** Outcomes recorded and not yet announced (`OUTBOX` / `<serviceKey>#<remediationId>`). */
const OUTBOX_PK = 'OUTBOX';
const outboxKey = (serviceKey: string, remediationId: string): Key => ({
  pk: OUTBOX_PK,
  sk: `${serviceKey}#${remediationId}`,
});

/** A history item as the OutcomeRecord it was written from (the ledger's own bookkeeping removed). */
const toRecord = (item: Record<string, unknown>): OutcomeRecord => {
  const {
    pk: _pk,
    sk: _sk,
    recordedAt: _recordedAt,
    announced: _announced,
    announcedAt: _announcedAt,
    ...record
  } = item;
  return record as unknown as OutcomeRecord;
};

export class History {
  constructor(private readonly table: LedgerTable) {}

  /** Write the history record of a finished remediation. Idempotent: a retry overwrites it with the same content. */
  async recordOutcome(record: OutcomeRecord): Promise<void> {
    if (Number.isNaN(Date.parse(record.finishedAt))) {
      throw new AutopatchError(`ledger recordOutcome: finishedAt "${record.finishedAt}" is not a time`);
    }
    await this.table.send('recordOutcome', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            ...LEDGER.remediationKey(record.serviceKey, record.remediationId),
            ...record,
            recordedAt: this.table.now().toISOString(),
            announced: false,
          },
        }),
      ),
    );
    // The outbox entry stays until markAnnounced: the reconciler re-sends what is left in it.
    await this.table.send('recordOutcome', () =>
      this.table.doc.send(
        new PutCommand({
          TableName: this.table.tableName,
          Item: {
            ...outboxKey(record.serviceKey, record.remediationId),
            serviceKey: record.serviceKey,
            remediationId: record.remediationId,
            finishedAt: record.finishedAt,
          },
        }),
      ),
    );
  }

  /** The outcome was published (EventBridge and SNS): mark the history record and clear its outbox entry. Idempotent. */
  async markAnnounced(serviceKey: string, remediationId: string): Promise<void> {
    await this.table.conditional('markAnnounced', () =>
      this.table.doc.send(
        new UpdateCommand({
          TableName: this.table.tableName,
          Key: LEDGER.remediationKey(serviceKey, remediationId),
          UpdateExpression: 'SET #announced = :true, #announcedAt = if_not_exists(#announcedAt, :now)',
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { '#announced': 'announced', '#announcedAt': 'announcedAt', '#pk': 'pk' },
          ExpressionAttributeValues: { ':true': true, ':now': this.table.now().toISOString() },
        }),
      ),
    );
    await this.clearOutbox('markAnnounced', serviceKey, remediationId);
  }

  /**
   * Outcomes recorded but not announced, that finished before `finishedBefore` (give a finish in
   * progress time to announce its own). Outbox entries whose record says it was announced after all
   * are cleared on the way.
   */
  async unannounced(finishedBefore: Date): Promise<OutcomeRecord[]> {
    const entries = await this.table.query('unannounced', OUTBOX_PK);
    const out: OutcomeRecord[] = [];
    for (const entry of entries) {
      const { serviceKey, remediationId, finishedAt } = entry as {
        serviceKey: string;
        remediationId: string;
        finishedAt: string;
      };
      if (!(Date.parse(finishedAt) < finishedBefore.getTime())) continue;
      const item = await this.getOutcomeItem(serviceKey, remediationId);
      if (!item || item.announced === true) {
        await this.clearOutbox('unannounced', serviceKey, remediationId);
        continue;
      }
      out.push(toRecord(item));
    }
    return out;
  }

  /** One history record, if it was written. */
  async getOutcome(serviceKey: string, remediationId: string): Promise<OutcomeRecord | undefined> {
    const item = await this.getOutcomeItem(serviceKey, remediationId);
    return item ? toRecord(item) : undefined;
  }

  /**
   * A service's finished remediations, newest first (by `finishedAt`).
   *
   * The sort key is fixed by the contract as `REMEDIATION#<remediationId>` (a hash), so it does not
   * order by time; `finishedAt` is an attribute and the records are ordered here. That reads the
   * service's whole history, which stays small (a few remediations a month per service); if it ever
   * grows, an LSI on (pk, finishedAt) makes this a single bounded Query.
   */
  async history(serviceKey: string, limit = 20): Promise<OutcomeRecord[]> {
    const items = await this.table.query('history', LEDGER.serviceKey(serviceKey).pk, {
      prefix: HISTORY_PREFIX,
      consistent: false,
    });
    return items
      .map(toRecord)
      .sort(
        (a, b) =>
          Date.parse(b.finishedAt) - Date.parse(a.finishedAt) ||
          b.remediationId.localeCompare(a.remediationId),
      )
      .slice(0, Math.max(0, limit));
  }

  private getOutcomeItem(
    serviceKey: string,
    remediationId: string,
  ): Promise<Record<string, unknown> | undefined> {
    return this.table.get(LEDGER.remediationKey(serviceKey, remediationId), 'getOutcome');
  }

  private async clearOutbox(op: string, serviceKey: string, remediationId: string): Promise<void> {
    await this.table.send(op, () =>
      this.table.doc.send(
        new DeleteCommand({ TableName: this.table.tableName, Key: outboxKey(serviceKey, remediationId) }),
      ),
    );
  }
}
